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
    _dir: TempDir,
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
    let emulator = Emulator {
        url: app.public_url().to_owned(),
        ca: app.ca_cert_path().clone(),
        handle: app.handle(),
        _dir: dir,
    };
    tokio::spawn(app.run_until_stopped());
    emulator
}
