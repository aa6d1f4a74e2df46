//! The real Entra emulator in-process: HTTPS on port 0 with its development CA in a temporary
//! directory, serving the demo directory.

use crate::TempDir;
use crate::demo::demo_dir;
use entra_emulator::clock::Clock;
use entra_emulator::settings::EmulatorSettings;
use std::path::PathBuf;
use std::sync::Arc;

pub struct Emulator {
    /// `https://127.0.0.1:<port>`: the authority host.
    pub url: String,
    /// The development CA's certificate, for clients to trust.
    pub ca: PathBuf,
    pub handle: actix_web::dev::ServerHandle,
    /// Trusts the development CA; follows no redirect (the authorize endpoint's carries the code).
    pub http: reqwest::Client,
    _dir: TempDir,
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
}

/// Starts the emulator on `clock`; `customise` changes its settings first.
pub async fn spawn_emulator_with(
    clock: Arc<dyn Clock>,
    customise: impl FnOnce(&mut EmulatorSettings),
) -> Emulator {
    let dir = TempDir::new("emulator");
    let mut settings = EmulatorSettings {
        data_dir: dir.0.clone(),
        directory: demo_dir().join("directory.toml"),
        ..Default::default()
    };
    settings.server.https_port = 0;
    settings.server.http_port = None;
    settings.server.workers = Some(1);
    customise(&mut settings);
    let app = entra_emulator::Application::build_with_clock(settings, clock)
        .await
        .expect("emulator starts");
    let ca = app.ca_cert_path().clone();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .tls_certs_merge(shared::http::read_ca_bundle(&ca).expect("the CA file"))
        .build()
        .expect("HTTP client");
    let emulator = Emulator {
        url: app.public_url().to_owned(),
        ca,
        handle: app.handle(),
        http,
        _dir: dir,
    };
    tokio::spawn(app.run_until_stopped());
    emulator
}
