//! The real Entra emulator in-process: HTTPS on port 0 with its development CA in a temporary
//! directory, serving the demo directory. One spawner for every suite: the emulator's own, the
//! API's and the caller's against it, and the validation benchmark.

use crate::TempDir;
use crate::demo::{TENANT, demo_dir};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use entra_emulator::settings::EmulatorSettings;
use serde_json::Value;
use shared::clock::SharedClock;
use std::path::PathBuf;
use std::sync::Arc;

pub struct Emulator {
    /// `https://127.0.0.1:<port>`: the public URL and authority host, what real clients use.
    pub url: String,
    /// The plain-HTTP listener when the settings open one (`server.http_port`), for tests that
    /// need no TLS; otherwise the HTTPS URL. Both serve the same routes.
    pub http_url: String,
    /// The development CA's certificate, for clients to trust.
    pub ca: PathBuf,
    pub handle: actix_web::dev::ServerHandle,
    /// Trusts the development CA; follows no redirect (the authorize endpoint's carries the code).
    pub http: reqwest::Client,
    /// The clock the emulator stamps its tokens and judges expiry with.
    pub clock: SharedClock,
    /// Held so the directory outlives the server using it.
    pub dir: Arc<TempDir>,
}

impl Emulator {
    /// A client-credentials token for the API, as `mesh` gets one.
    pub async fn app_token(&self, client_id: &str, secret: &str) -> String {
        mesh::app_token(&self.http, &self.url, client_id, secret)
            .await
            .unwrap_or_else(|error| panic!("a token for {client_id}: {error:#}"))
    }

    /// Ada's user-delegated token for the API, from the PKCE flow, as `mesh` gets one.
    pub async fn user_token(&self) -> String {
        mesh::user_token(&self.http, &self.url)
            .await
            .unwrap_or_else(|error| panic!("Ada's token: {error:#}"))
    }

    /// The emulator's time now, in Unix seconds.
    pub fn now(&self) -> i64 {
        self.clock.unix()
    }

    /// The demo tenant's v2 token endpoint, on [`Emulator::http_url`].
    pub fn token_url(&self) -> String {
        format!("{}/{TENANT}/oauth2/v2.0/token", self.http_url)
    }

    /// The audience a client assertion names: the token endpoint at the public URL.
    pub fn assertion_audience(&self) -> String {
        format!("{}/{TENANT}/oauth2/v2.0/token", self.url)
    }

    pub async fn post_token(&self, form: &[(&str, &str)]) -> reqwest::Response {
        self.post_token_at(&self.token_url(), form).await
    }

    pub async fn post_token_at(&self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
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

    /// The token endpoint's JSON answer to a secret request that must succeed.
    pub async fn secret_token(&self, client_id: &str, secret: &str, scope: &str) -> Value {
        let response = self.post_secret(client_id, secret, scope).await;
        assert_eq!(response.status(), 200, "token request should succeed");
        response.json().await.expect("json")
    }

    /// `GET path` on [`Emulator::http_url`]: the status and the JSON body.
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.http_url))
            .send()
            .await
            .expect("answers");
        let status = response.status().as_u16();
        (status, response.json().await.expect("json body"))
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // Best effort: stop accepting; the runtime is going away with the test anyway.
        drop(self.handle.stop(false));
    }
}

/// The emulator's settings for tests: the demo directory, data under `dir`, HTTPS on port 0, one
/// worker.
pub fn emulator_settings(dir: &TempDir) -> EmulatorSettings {
    let mut settings = EmulatorSettings {
        data_dir: dir.0.clone(),
        directory: demo_dir().join("directory.toml"),
        ..Default::default()
    };
    settings.server.https_port = 0;
    settings.server.http_port = None;
    settings.server.workers = Some(1);
    settings
}

/// Starts the emulator on `clock` in a fresh directory; `customise` changes its settings first.
pub async fn spawn_emulator_with(
    clock: SharedClock,
    customise: impl FnOnce(&mut EmulatorSettings),
) -> Emulator {
    spawn_emulator_in(Arc::new(TempDir::new("emulator")), clock, customise).await
}

/// Starts the emulator on `dir`, which may hold a previous run's keys and CA (a restart).
pub async fn spawn_emulator_in(
    dir: Arc<TempDir>,
    clock: SharedClock,
    customise: impl FnOnce(&mut EmulatorSettings),
) -> Emulator {
    shared::telemetry::init_for_tests();
    let mut settings = emulator_settings(&dir);
    customise(&mut settings);
    let app = entra_emulator::Application::build_with_clock(settings, clock.clone())
        .await
        .expect("emulator starts");
    let ca = app.ca_cert_path().clone();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .tls_certs_merge(shared::http::read_ca_bundle(&ca).expect("the CA file"))
        .build()
        .expect("HTTP client");
    let url = app.public_url().to_owned();
    let emulator = Emulator {
        http_url: app
            .http_addr()
            .map_or_else(|| url.clone(), |addr| format!("http://{addr}")),
        url,
        ca,
        handle: app.handle(),
        http,
        clock,
        dir,
    };
    tokio::spawn(app.run_until_stopped());
    emulator
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
