//! A local stand-in for Microsoft Entra ID: OpenID discovery, instance discovery, JWKS, the token
//! endpoint (client credentials with secrets and certificate assertions, authorization code with
//! PKCE) with Entra's AADSTS errors, key rotation and fault injection, so a mesh of services and
//! its tests run with no tenant and no internet. Real clients (azure_identity, MSAL) talk to it
//! unmodified: only the authority host and the CA they trust change.
#![forbid(unsafe_code)]

pub mod aadsts;
pub mod assertion;
pub mod cli;
pub mod cluster;
pub mod codes;
/// The demo directory's identities (`demo/directory.toml`) as constants, generated at build time
/// (`build.rs`): one module per application (`CLIENT_ID`, `SECRET`, `SCOPE`, …) and per user.
/// Every secret in it is a DEMO value, committed on purpose so the mesh runs offline.
#[allow(missing_docs)]
pub mod demo {
    include!(concat!(env!("OUT_DIR"), "/demo.rs"));
}
pub mod directory;
pub mod faults;
pub mod federation;
mod fsutil;
pub mod keys;
pub mod mint;
pub mod routes;
pub mod settings;
pub mod state;
pub mod tls;

use actix_web::dev::{Server, ServerHandle, Service};
use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use mint::TokenService;
use settings::EmulatorSettings;
use shared::clock::{Clock, SystemClock};
use state::AppState;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;

/// The emulator, bound and ready to run. Binding happens in `build`, so port 0 works and the
/// chosen ports are known before the first request.
pub struct Application {
    server: Server,
    https_addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    public_url: String,
    ca_cert_path: PathBuf,
    state: web::Data<AppState>,
}

impl Application {
    pub async fn build(settings: EmulatorSettings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(
        settings: EmulatorSettings,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let host = settings.server.host;
        let https = TcpListener::bind((host, settings.server.https_port)).with_context(|| {
            format!(
                "`server.https_port`: cannot bind {host}:{}",
                settings.server.https_port
            )
        })?;
        let https_addr = https.local_addr()?;
        let http = match settings.server.http_port {
            Some(port) => Some(
                TcpListener::bind((host, port))
                    .with_context(|| format!("`server.http_port`: cannot bind {host}:{port}"))?,
            ),
            None => None,
        };
        let http_addr = http.as_ref().map(TcpListener::local_addr).transpose()?;
        let public_url = settings.public_url(https_addr.port());
        let tokens = TokenService::open(&settings, clock, public_url.clone())?;
        routes::managed_identity::check(&settings.managed_identity, &tokens.directory)?;

        let ca_cert_path = settings.ca_cert_out();
        let pki = tls::load_or_create(
            &settings.data_dir.join("tls"),
            &settings.server.tls_names,
            &ca_cert_path,
        )?;

        let federation_ca = settings
            .federation
            .extra_ca_file
            .clone()
            .unwrap_or_else(|| ca_cert_path.clone());
        let state = web::Data::new(AppState::new(
            tokens,
            settings.clone(),
            Some(federation_ca),
        )?);
        let admin = settings.admin.enabled;
        let app_state = state.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .wrap_fn(|req, srv| {
                    let method = req.method().clone();
                    let path = req.path().to_owned();
                    let started = std::time::Instant::now();
                    let fut = srv.call(req);
                    async move {
                        let res = fut.await?;
                        tracing::debug!(%method, %path, status = res.status().as_u16(), elapsed_ms = started.elapsed().as_secs_f64() * 1e3, "request");
                        Ok(res)
                    }
                })
                .configure(|cfg| routes::configure(cfg, admin))
                .default_service(web::to(|| async {
                    HttpResponse::NotFound().json(serde_json::json!({"error": "not_found"}))
                }))
        })
        .shutdown_timeout(5)
        .listen_rustls_0_23(https, (*pki.server_config).clone())?;
        if let Some(listener) = http {
            server = server.listen(listener)?;
        }
        if let Some(workers) = settings.server.workers {
            server = server.workers(workers);
        }
        if !settings.server.handle_signals {
            server = server.disable_signals();
        }
        let server = server.run();
        tracing::info!(
            https = %https_addr,
            http = ?http_addr,
            %public_url,
            ca = %ca_cert_path.display(),
            tenants = state.directory().tenants.len(),
            admin,
            "entra-emulator listening"
        );
        Ok(Self {
            server,
            https_addr,
            http_addr,
            public_url,
            ca_cert_path,
            state,
        })
    }

    pub fn https_addr(&self) -> SocketAddr {
        self.https_addr
    }

    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// `https://localhost:{port}` unless configured: the issuer's host and discovery's base.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    pub fn ca_cert_path(&self) -> &PathBuf {
        &self.ca_cert_path
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Runs until SIGINT/SIGTERM (graceful: in-flight requests finish, up to 5 s) or `handle().stop()`.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
