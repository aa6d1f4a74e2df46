//! What only the emulator's own suite needs: the emulator with its plain-HTTP listener and admin
//! API on, Entra's error shape asserted, and the demo certificate's assertions. The emulator, its
//! spawner, the demo identities and `TempDir` are the shared harness's (`mesh_tests`).

pub use mesh_tests::demo::*;
pub use mesh_tests::emulator::{Emulator, decode_parts, spawn_emulator_in};
pub use mesh_tests::{ManualClock, TempDir};
use serde_json::Value;
use shared::assertion::{AssertionAlgorithm, CertificateAssertion};
use std::path::PathBuf;
use std::sync::Arc;

/// The demo directory's emulator as this suite uses it: a plain-HTTP listener beside HTTPS, the
/// admin API on, and a clock of its own at the real time (clients compare token times to theirs).
pub async fn spawn_emulator() -> Emulator {
    spawn_with(|_| {}).await
}

pub async fn spawn_with(
    customise: impl FnOnce(&mut entra_emulator::settings::EmulatorSettings),
) -> Emulator {
    spawn_in(Arc::new(TempDir::new("emulator")), customise).await
}

/// As [`spawn_with`], on `data_dir`, which may hold a previous run's keys and CA.
pub async fn spawn_in(
    data_dir: Arc<TempDir>,
    customise: impl FnOnce(&mut entra_emulator::settings::EmulatorSettings),
) -> Emulator {
    spawn_on(data_dir, Arc::new(ManualClock::at_system_time()), customise).await
}

/// As [`spawn_in`], on a clock the test moves.
pub async fn spawn_on(
    data_dir: Arc<TempDir>,
    clock: Arc<ManualClock>,
    customise: impl FnOnce(&mut entra_emulator::settings::EmulatorSettings),
) -> Emulator {
    spawn_emulator_in(data_dir, clock, |settings| {
        settings.server.http_port = Some(0);
        settings.admin.enabled = true;
        customise(settings);
    })
    .await
}

pub fn demo_cert(algorithm: AssertionAlgorithm) -> CertificateAssertion {
    let cert = std::fs::read(demo_dir().join("certs/cert-job.crt")).expect("demo cert");
    let key = std::fs::read(demo_dir().join("certs/cert-job.key")).expect("demo key");
    CertificateAssertion::from_pem(CERT_ID, &cert, &key, algorithm).expect("demo credential")
}

/// Asserts an Entra error: status, `error`, `error_codes`, the AADSTS prefix and trace lines.
pub async fn assert_aadsts(
    response: reqwest::Response,
    status: u16,
    error: &str,
    code: u32,
) -> Value {
    assert_eq!(
        response.status().as_u16(),
        status,
        "HTTP status for AADSTS{code}"
    );
    let body: Value = response.json().await.expect("JSON error body");
    assert_eq!(body["error"], error, "error for AADSTS{code}: {body}");
    assert_eq!(body["error_codes"], serde_json::json!([code]), "{body}");
    let description = body["error_description"].as_str().expect("description");
    assert!(
        description.starts_with(&format!("AADSTS{code}: ")),
        "{description}"
    );
    assert!(description.contains("\r\nTrace ID: "), "{description}");
    assert!(
        description.contains("\r\nCorrelation ID: "),
        "{description}"
    );
    assert!(description.contains("\r\nTimestamp: "), "{description}");
    assert_eq!(
        body["error_uri"],
        format!("https://login.microsoftonline.com/error?code={code}")
    );
    body
}

/// An error body's `error_description` ("" when it has none).
pub fn description(body: &Value) -> &str {
    body["error_description"].as_str().unwrap_or_default()
}

/// A directory file written for one test (with any certificate files it names), for cases the
/// demo directory must not contain (an expired certificate, a Graph-like resource).
pub fn write_directory(dir: &TempDir, toml: &str, certificates: &[(&str, &str)]) -> PathBuf {
    for (name, pem) in certificates {
        std::fs::write(dir.0.join(name), pem).expect("certificate");
    }
    let path = dir.0.join("directory.toml");
    std::fs::write(&path, toml).expect("directory");
    path
}

/// Signs arbitrary assertion claims with the demo certificate's key, naming it by `x5t#S256`.
pub fn demo_signed(claims: &Value) -> String {
    demo_cert(AssertionAlgorithm::Ps256)
        .sign_claims(claims)
        .expect("signs")
        .expose()
        .to_owned()
}
