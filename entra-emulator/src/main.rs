//! `entra-emulator`: serve, print a token for a configured client, rotate the signing keys.

use clap::{Parser, Subcommand};
use entra_emulator::Application;
use entra_emulator::clock::{Clock, SystemClock};
use entra_emulator::directory::Directory;
use entra_emulator::keys::KeyStore;
use entra_emulator::mint::TokenService;
use entra_emulator::settings::EmulatorSettings;
use shared::claims::ClientAuth;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    version,
    about = "A local stand-in for Microsoft Entra ID's token, discovery and key endpoints"
)]
struct Cli {
    /// TOML settings file; `EMULATOR__SECTION__KEY` variables override it.
    #[arg(long, short, env = "EMULATOR_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the endpoints until SIGINT/SIGTERM.
    Serve {
        /// Once listening, write {https_url, http_url, public_url, ca_cert} here as JSON (for scripts).
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// Print an app token for a configured client, like `az account get-access-token`.
    Token {
        /// The client application, by name or client ID.
        #[arg(long)]
        client: String,
        /// `{resource}/.default`, e.g. `api://tasks-api/.default`.
        #[arg(long)]
        scope: String,
        /// Tenant GUID or domain. Default: the directory's first tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Print only the token, for `curl -H "Authorization: Bearer $(…)"`.
        #[arg(long)]
        raw: bool,
    },
    /// Publish a new signing key and sign with it (through the running emulator's admin API).
    RotateKeys {
        /// Also withdraw every key but the new one from the JWKS: tokens they signed stop validating.
        #[arg(long)]
        retire_inactive: bool,
        /// The emulator's URL. Default: its public URL from the settings.
        #[arg(long)]
        url: Option<url::Url>,
    },
    /// Check the settings and the directory file, then exit.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match EmulatorSettings::load(cli.config.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("entra-emulator: {e}");
            return ExitCode::from(2);
        }
    };
    shared::telemetry::init(&settings.log, "info,actix_server=warn");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("entra-emulator: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("entra-emulator: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: EmulatorSettings) -> anyhow::Result<()> {
    match command {
        Command::Serve { ready_file } => serve(settings, ready_file).await,
        Command::Token {
            client,
            scope,
            tenant,
            raw,
        } => token(&settings, &client, &scope, tenant.as_deref(), raw),
        Command::RotateKeys {
            retire_inactive,
            url,
        } => rotate(&settings, url, retire_inactive).await,
        Command::Check => {
            let directory = Directory::load(&settings.directory)?;
            for t in &directory.tenants {
                println!(
                    "tenant {} ({}): {} applications, {} users",
                    t.domain,
                    t.id,
                    t.applications.len(),
                    t.users.len()
                );
            }
            Ok(())
        }
    }
}

async fn serve(settings: EmulatorSettings, ready_file: Option<PathBuf>) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    if let Some(path) = ready_file {
        let ready = serde_json::json!({
            "https_url": format!("https://{}", app.https_addr()),
            "http_url": app.http_addr().map(|a| format!("http://{a}")),
            "public_url": app.public_url(),
            "ca_cert": app.ca_cert_path(),
        });
        std::fs::write(&path, serde_json::to_vec_pretty(&ready)?)?;
    }
    app.run_until_stopped().await?;
    tracing::info!("entra-emulator stopped");
    Ok(())
}

/// Mints locally from the directory and the data directory's keys: no running emulator needed,
/// and the same grant rules as the token endpoint (scope, role assignment).
fn token(
    settings: &EmulatorSettings,
    client: &str,
    scope: &str,
    tenant: Option<&str>,
    raw: bool,
) -> anyhow::Result<()> {
    let directory = Arc::new(Directory::load(&settings.directory)?);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let keys = Arc::new(KeyStore::open(&settings.data_dir, clock.now())?);
    let tenant_ref = tenant
        .unwrap_or_else(|| directory.tenants[0].id.as_str())
        .to_owned();
    let public_url = settings
        .server
        .public_url
        .as_ref()
        .map(|u| u.as_str().trim_end_matches('/').to_owned())
        .unwrap_or_else(|| format!("https://localhost:{}", settings.server.https_port));
    let service = TokenService {
        directory: directory.clone(),
        keys,
        clock,
        public_url,
        settings: settings.tokens.clone(),
    };
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
        .and_then(|resource| service.app_token(tenant, app, &resource, auth))
        .map_err(|e| anyhow::anyhow!("AADSTS{}: {}", e.code, e.message))?;
    if raw {
        println!("{}", issued.access_token);
    } else {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "accessToken": issued.access_token,
                "expiresOn": issued.expires_on,
                "tenant": tenant.id,
                "tokenType": "Bearer",
                "claims": issued.claims,
            }))?
        );
    }
    Ok(())
}

async fn rotate(
    settings: &EmulatorSettings,
    url: Option<url::Url>,
    retire_inactive: bool,
) -> anyhow::Result<()> {
    let base = url
        .or_else(|| settings.server.public_url.clone())
        .map(|u| u.as_str().trim_end_matches('/').to_owned())
        .unwrap_or_else(|| format!("https://localhost:{}", settings.server.https_port));
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
    println!("new signing key: {active}");
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
            println!("retired: {kid}");
        }
    }
    Ok(())
}
