//! Against the in-process Entra emulator: real tokens from secret and certificate credentials,
//! and the daemon running a job on schedule.

use caller_service::Application;
use caller_service::settings::{CredentialKind, IdentityConfig, JobSettings, Settings};
use mesh_tests::caller::*;
use mesh_tests::emulator::{Emulator, spawn_emulator_with};
use shared::clock::ManualClock;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The emulator on a clock frozen at the start, as the caller's manual clock starts.
pub async fn spawn_emulator() -> Emulator {
    init_logs();
    let clock = Arc::new(ManualClock::at_system_time());
    spawn_emulator_with(clock, |_| {}).await
}

pub fn identity(emu: &Emulator, client_id: &str) -> IdentityConfig {
    IdentityConfig {
        tenant_id: Some(TENANT.into()),
        client_id: Some(client_id.into()),
        authority_host: Some(emu.url.clone()),
        ..Default::default()
    }
}

/// The demo directory's certificate caller, its certificate and key in two files.
pub fn certificate_identity(emu: &Emulator) -> IdentityConfig {
    IdentityConfig {
        credential: Some(CredentialKind::Certificate),
        client_certificate_path: Some(demo_certs().join("cert-job.crt")),
        client_certificate_key_path: Some(demo_certs().join("cert-job.key")),
        ..identity(emu, CERT_ID)
    }
}

fn demo_certs() -> PathBuf {
    demo_dir().join("certs")
}

pub fn settings(emu: &Emulator, identity: IdentityConfig) -> Settings {
    let mut settings = Settings {
        identity,
        ..Default::default()
    };
    settings.http.extra_ca_file = Some(emu.ca.clone());
    settings.server.port = 0;
    settings
}

fn claims(token: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("claims")
}

#[tokio::test]
async fn the_daemon_runs_the_writer_job_on_schedule_with_an_emulator_token() {
    let emu = spawn_emulator().await;
    let api = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/tasks"))
        .respond_with(ResponseTemplate::new(201))
        .expect(2)
        .mount(&api)
        .await;
    let mut settings = settings(
        &emu,
        IdentityConfig {
            client_secret: Some(WRITER_SECRET.into()),
            ..identity(&emu, WRITER_ID)
        },
    );
    settings.jobs.push(JobSettings {
        method: "POST".into(),
        body: Some(serde_json::json!({"title": "from the caller"})),
        success_status: vec![201],
        ..interval_job("writer", format!("{}/tasks", api.uri()))
    });
    let clock = Arc::new(ManualClock::new(start_time()));
    let app = Application::build_with_clock(settings, clock.clone())
        .await
        .expect("builds");
    let port = app.port();
    let tokens = app.tokens().clone();
    let stop = app.shutdown_handle();
    let running = tokio::spawn(app.run_until_stopped());
    let ops = reqwest::Client::new();
    let readyz = format!("http://127.0.0.1:{port}/readyz");

    // Ready once the warm-up acquired the writer's token.
    eventually("/readyz answers 200", || async {
        ops.get(&readyz)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    let token = tokens.get_token(SCOPE).await.expect("token");
    let claims = claims(token.secret());
    assert_eq!(claims["azp"], WRITER_ID);
    assert_eq!(claims["roles"], serde_json::json!(["Tasks.ReadWrite.All"]));

    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    for runs in 1..=2 {
        // The job loop and the token refresher are both waiting on the clock.
        sleepers(&clock, 2).await;
        clock.advance(Duration::from_secs(60));
        let done = format!(r#"caller_job_runs_total{{job="writer",outcome="success"}} {runs}"#);
        eventually(&format!("{runs} successful writer runs"), || async {
            let text = ops
                .get(&metrics_url)
                .send()
                .await
                .expect("metrics")
                .text()
                .await;
            text.is_ok_and(|t| t.contains(&done))
        })
        .await;
    }
    assert_eq!(api.received_requests().await.expect("recorded").len(), 2);
    let request = &api.received_requests().await.expect("recorded")[0];
    assert_eq!(
        request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Some(format!("Bearer {}", token.secret()).as_str())
    );
    let body: serde_json::Value = serde_json::from_slice(&request.body).expect("json body");
    assert_eq!(body["title"], "from the caller");

    let metrics = ops
        .get(&metrics_url)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(!metrics.contains(r#"outcome="skipped""#), "{metrics}");
    assert!(
        metrics.contains(r#"caller_idp_requests_total{status="200"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"caller_token_serving_stale{scope="api://tasks-api/.default"} 0"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("caller_token_seconds_until_expiry"),
        "{metrics}"
    );

    stop.shutdown();
    running.await.expect("joins").expect("stops cleanly");
    api.verify().await;
}

#[tokio::test]
async fn a_certificate_credential_gets_a_certificate_token_from_the_emulator() {
    let emu = spawn_emulator().await;
    let settings = settings(&emu, certificate_identity(&emu));
    let (core, _) = core_for(&settings);
    let token = core.tokens.get_token(SCOPE).await.expect("token");
    let claims = claims(token.secret());
    assert_eq!(claims["azp"], CERT_ID);
    assert_eq!(claims["azpacr"], "2", "certificate-authenticated");
    assert_eq!(token.kind, "app");
}

#[tokio::test]
async fn a_wrong_secret_against_the_emulator_is_a_permanent_aadsts_error() {
    let emu = spawn_emulator().await;
    let settings = settings(
        &emu,
        IdentityConfig {
            client_secret: Some("definitely-not-the-secret".into()),
            ..identity(&emu, WRITER_ID)
        },
    );
    let (core, _) = core_for(&settings);
    let error = core.tokens.get_token(SCOPE).await.expect_err("refused");
    assert!(error.is_permanent());
    assert_eq!(error.reason(), "aadsts_7000215");
}

/// `AZURE_CLIENT_CERTIFICATE_PATH` files hold the certificate and its key in one PEM.
#[tokio::test]
async fn a_single_pem_with_certificate_and_key_is_enough() {
    let emu = spawn_emulator().await;
    let dir = TempDir::new("caller");
    let combined = dir.0.join("cert-job.pem");
    let mut pem = std::fs::read(demo_certs().join("cert-job.crt")).expect("cert");
    pem.extend(std::fs::read(demo_certs().join("cert-job.key")).expect("key"));
    std::fs::write(&combined, pem).expect("write");
    let settings = settings(
        &emu,
        IdentityConfig {
            client_certificate_path: Some(combined),
            ..identity(&emu, CERT_ID)
        },
    );
    let (identity, _) = settings.validate().expect("valid");
    assert_eq!(
        identity.credential.kind(),
        "certificate",
        "inferred from the path"
    );
    let (core, _) = core_for(&settings);
    let token = core.tokens.get_token(SCOPE).await.expect("token");
    assert_eq!(claims(token.secret())["azpacr"], "2");
}
