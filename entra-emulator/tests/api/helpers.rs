use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use entra_emulator::Application;
use entra_emulator::clock::{Clock, ManualClock, SystemClock};
use entra_emulator::settings::EmulatorSettings;
use serde_json::Value;
use shared::assertion::{AssertionAlgorithm, CertificateAssertion};
use std::path::PathBuf;
use std::sync::Arc;

pub const TENANT: &str = "72f1c3d4-5b6a-4c8d-9e0f-1a2b3c4d5e6f";
pub const TENANT_DOMAIN: &str = "contoso.onmicrosoft.com";
pub const API_CLIENT_ID: &str = "6e1f4a8b-2c3d-4e5f-8a9b-0c1d2e3f4a5b";
pub const API_SCOPE: &str = "api://tasks-api/.default";
pub const AUDIT_SCOPE: &str = "api://audit-api/.default";
pub const READER_ID: &str = "0b9a1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d";
pub const READER_SP: &str = "c3d4e5f6-a7b8-4c9d-8e0f-2a3b4c5d6e7f";
pub const READER_SECRET: &str = "rdr8Q~demo.reader.secret.not-for-production";
pub const WRITER_ID: &str = "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f";
pub const WRITER_SECRET: &str = "wrt8Q~demo.writer.secret.not-for-production";
pub const WRITER_EXPIRED_SECRET: &str = "old8Q~demo.writer.expired.secret.value";
pub const CERT_ID: &str = "2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a";
pub const STRANGER_ID: &str = "3e4f5a6b-7c8d-4e9f-8a0b-2c3d4e5f6a7b";
pub const STRANGER_SECRET: &str = "str8Q~demo.stranger.secret.not-for-production";
pub const CLI_ID: &str = "4f5a6b7c-8d9e-4f0a-9b1c-3d4e5f6a7b8c";
pub const CLI_REDIRECT: &str = "http://localhost:8400/callback";
pub const USER: &str = "ada@contoso.onmicrosoft.com";
pub const USER_OID: &str = "5a6b7c8d-9e0f-4a1b-8c2d-4e5f6a7b8c9d";

pub fn demo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("demo")
}

pub fn demo_cert(algorithm: AssertionAlgorithm) -> CertificateAssertion {
    let cert = std::fs::read(demo_dir().join("certs/cert-job.crt")).expect("demo cert");
    let key = std::fs::read(demo_dir().join("certs/cert-job.key")).expect("demo key");
    CertificateAssertion::from_pem(CERT_ID, &cert, &key, algorithm).expect("demo credential")
}

/// A fresh data directory per test, removed when the test's emulator is dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let path =
            std::env::temp_dir().join(format!("entra-emulator-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).expect("temp dir");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct TestEmulator {
    /// `https://localhost:{port}`: the public URL, what real clients use.
    pub https_url: String,
    /// Plain HTTP on the same server, for the bulk of the tests.
    pub http_url: String,
    pub ca_path: PathBuf,
    pub client: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub handle: actix_web::dev::ServerHandle,
    /// Held so the directory outlives the server using it.
    _data_dir: Arc<TempDir>,
}

pub async fn spawn_emulator() -> TestEmulator {
    spawn_with(|_| {}).await
}

pub fn test_settings(data_dir: &TempDir) -> EmulatorSettings {
    let mut settings = EmulatorSettings {
        data_dir: data_dir.0.clone(),
        directory: demo_dir().join("directory.toml"),
        ..Default::default()
    };
    settings.server.https_port = 0;
    settings.server.http_port = Some(0);
    settings.server.workers = Some(1);
    settings.admin.enabled = true;
    settings
}

pub async fn spawn_with(customise: impl FnOnce(&mut EmulatorSettings)) -> TestEmulator {
    spawn_in(Arc::new(TempDir::new()), customise).await
}

/// Starts an emulator on `data_dir`, which may hold a previous run's keys and CA.
pub async fn spawn_in(
    data_dir: Arc<TempDir>,
    customise: impl FnOnce(&mut EmulatorSettings),
) -> TestEmulator {
    shared::telemetry::init_for_tests();
    let mut settings = test_settings(&data_dir);
    customise(&mut settings);
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let app = Application::build_with_clock(settings, clock.clone())
        .await
        .expect("emulator starts");
    let https_url = app.public_url().to_owned();
    let http_url = format!("http://{}", app.http_addr().expect("http listener"));
    let ca_path = app.ca_cert_path().clone();
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::builder()
        .tls_certs_only(shared::http::read_ca_bundle(&ca_path).expect("ca"))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    TestEmulator {
        https_url,
        http_url,
        ca_path,
        client,
        clock,
        handle,
        _data_dir: data_dir,
    }
}

impl TestEmulator {
    pub fn token_url(&self) -> String {
        format!("{}/{TENANT}/oauth2/v2.0/token", self.http_url)
    }

    /// The audience a client assertion names: the token endpoint at the public URL.
    pub fn assertion_audience(&self) -> String {
        format!("{}/{TENANT}/oauth2/v2.0/token", self.https_url)
    }

    pub async fn post_token(&self, form: &[(&str, &str)]) -> reqwest::Response {
        self.post_token_at(&self.token_url(), form).await
    }

    pub async fn post_token_at(&self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(url)
            .form(form)
            .send()
            .await
            .expect("token endpoint answers")
    }

    /// Client credentials with a secret in the body: the request most tests make.
    pub async fn post_secret(
        &self,
        client_id: &str,
        secret: &str,
        scope: &str,
    ) -> reqwest::Response {
        self.post_secret_at(&self.token_url(), client_id, secret, scope)
            .await
    }

    pub async fn post_secret_at(
        &self,
        url: &str,
        client_id: &str,
        secret: &str,
        scope: &str,
    ) -> reqwest::Response {
        self.post_token_at(
            url,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", secret),
                ("scope", scope),
            ],
        )
        .await
    }

    pub async fn secret_token(&self, client_id: &str, secret: &str, scope: &str) -> Value {
        let response = self.post_secret(client_id, secret, scope).await;
        assert_eq!(response.status(), 200, "token request should succeed");
        response.json().await.expect("json")
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.http_url))
            .send()
            .await
            .expect("answers");
        let status = response.status().as_u16();
        (status, response.json().await.expect("json body"))
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }
}

impl Drop for TestEmulator {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        // Best effort: stop accepting; the runtime is going away with the test anyway.
        drop(handle.stop(false));
    }
}

/// The header and claims of a JWT, without verifying it (verification has its own tests).
pub fn decode_parts(jwt: &str) -> (Value, Value) {
    let mut parts = jwt.split('.');
    let mut next = || {
        let part = parts.next().expect("JWT part");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
    };
    (next(), next())
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
