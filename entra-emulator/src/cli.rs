//! The CLI's `token`, `rotate-keys`, `sa-token` and `project-token` commands, here rather than in `main.rs` so they are tested
//! like the rest of the library.

use crate::mint::TokenService;
use crate::settings::EmulatorSettings;
use shared::claims::ClientAuth;
use shared::clock::{Clock as _, SystemClock};
use std::sync::Arc;

/// Mints locally from the directory and the data directory's keys: no running emulator needed,
/// and the same grant rules as the token endpoint (scope, role assignment).
pub fn token(
    settings: &EmulatorSettings,
    client: &str,
    scope: &str,
    tenant: Option<&str>,
    raw: bool,
) -> anyhow::Result<String> {
    let service = TokenService::open(
        settings,
        Arc::new(SystemClock),
        settings.public_url(settings.server.https_port),
    )?;
    let directory = service.directory.clone();
    let tenant_ref = tenant
        .unwrap_or_else(|| directory.tenants[0].id.as_str())
        .to_owned();
    let tenant = directory.tenant(&tenant_ref).ok_or_else(|| {
        anyhow::anyhow!(
            "--tenant: no tenant '{tenant_ref}' in {}",
            directory.source.display()
        )
    })?;
    let app = tenant.application(client).ok_or_else(|| {
        anyhow::anyhow!(
            "--client: no application '{client}' in tenant {}",
            tenant.domain
        )
    })?;
    let auth = if app.certificates.is_empty() {
        ClientAuth::Secret
    } else {
        ClientAuth::Certificate
    };
    let issued = service
        .resolve_default_scope(tenant, &tenant_ref, scope)
        .and_then(|resource| service.app_token(tenant, app, &resource, auth))?;
    if raw {
        return Ok(issued.access_token);
    }
    Ok(serde_json::to_string_pretty(&serde_json::json!({
        "accessToken": issued.access_token,
        "expiresOn": issued.expires_on,
        "tenant": tenant.id,
        "tokenType": "Bearer",
        "claims": issued.claims,
    }))?)
}

/// Rotates through the running emulator's admin API (it holds the keys in memory); returns the
/// lines to print.
pub async fn rotate_keys(
    settings: &EmulatorSettings,
    url: Option<url::Url>,
    retire_inactive: bool,
) -> anyhow::Result<Vec<String>> {
    let base = match url {
        Some(url) => url.as_str().trim_end_matches('/').to_owned(),
        None if settings.server.public_url.is_none() && settings.server.https_port == 0 => {
            anyhow::bail!(
                "--url: the emulator's port is chosen at start (server.https_port = 0); give its URL"
            )
        }
        None => settings.public_url(settings.server.https_port),
    };
    let mut lines = Vec::new();
    let client = shared::http::build_client(&shared::http::HttpClientSettings {
        extra_ca_file: Some(settings.ca_cert_out()),
        ..Default::default()
    })?;
    let with_auth = |rb: reqwest::RequestBuilder| match &settings.admin.secret {
        Some(secret) => rb.bearer_auth(secret.expose()),
        None => rb,
    };
    let response = with_auth(client.post(format!("{base}/admin/keys/rotate")))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the emulator's admin API at {base}: {e} (is it running with admin.enabled = true?)"))?;
    if !response.status().is_success() {
        anyhow::bail!(
            "rotation refused: HTTP {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }
    let body: serde_json::Value = response.json().await?;
    let active = body["active_kid"].as_str().unwrap_or_default().to_owned();
    lines.push(format!("new signing key: {active}"));
    if retire_inactive {
        for key in body["keys"].as_array().into_iter().flatten() {
            let kid = key["kid"].as_str().unwrap_or_default();
            if kid == active {
                continue;
            }
            let response = with_auth(client.post(format!("{base}/admin/keys/{kid}/retire")))
                .send()
                .await?;
            if !response.status().is_success() {
                anyhow::bail!("retiring {kid}: HTTP {}", response.status());
            }
            lines.push(format!("retired: {kid}"));
        }
    }
    Ok(lines)
}

/// The stand-in cluster issuer, at the emulator's public URL from the settings.
fn cluster_issuer(settings: &EmulatorSettings) -> anyhow::Result<crate::cluster::ClusterIssuer> {
    if settings.server.public_url.is_none() && settings.server.https_port == 0 {
        anyhow::bail!(
            "server.public_url: the issuer is {{public_url}}/cluster, and the emulator's port is chosen at start (server.https_port = 0); set server.public_url"
        );
    }
    let public_url = settings.public_url(settings.server.https_port);
    crate::cluster::ClusterIssuer::open(&settings.data_dir, &public_url, SystemClock.unix())
}

/// One projected token, minted from the data directory's cluster keys (no running emulator).
pub fn sa_token(
    settings: &EmulatorSettings,
    projector: &crate::cluster::Projector,
) -> anyhow::Result<String> {
    let issuer = cluster_issuer(settings)?;
    let projected = issuer.mint(
        &projector.account,
        &projector.audience,
        projector.lifetime_secs,
        SystemClock.unix(),
    )?;
    Ok(projected.token)
}

/// Writes the token file now and again at 75% of each token's life until SIGINT/SIGTERM. The first
/// write must succeed (a path that cannot be written is a configuration error); a later failure is
/// logged and retried every 10 s while the previous token is still valid, and once it is past its
/// end the projector exits with an error (so that a supervisor restarts it, or says it is down).
pub async fn project_token(
    settings: &EmulatorSettings,
    projector: &crate::cluster::Projector,
) -> anyhow::Result<()> {
    let issuer = cluster_issuer(settings)?;
    let subject = projector.account.subject();
    let mut expires_at = projector
        .write_once(&issuer, SystemClock.unix())
        .map_err(|e| anyhow::anyhow!("--out {}: {e:#}", projector.out.display()))?;
    tracing::info!(out = %projector.out.display(), %subject, issuer = issuer.issuer(), expires_at, "projected service-account token written");
    let mut wait = projector.refresh_after();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shared::signal::shutdown_signal() => {
                tracing::info!("projector stopped");
                return Ok(());
            }
        }
        match projector.write_once(&issuer, SystemClock.unix()) {
            Ok(ends) => {
                expires_at = ends;
                tracing::info!(out = %projector.out.display(), %subject, expires_at, "projected service-account token rewritten");
                wait = projector.refresh_after();
            }
            Err(e) if SystemClock.unix() >= expires_at => {
                anyhow::bail!(
                    "--out {}: the token in it has expired and no new one can be written: {e:#}",
                    projector.out.display()
                );
            }
            Err(e) => {
                tracing::warn!(out = %projector.out.display(), error = format!("{e:#}"), "cannot rewrite the projected token; retrying in 10 s");
                wait = std::time::Duration::from_secs(10);
            }
        }
    }
}
