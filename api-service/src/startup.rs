//! Builds the API from its settings: key store (loaded before the listener answers ready), task
//! store, validator, routes; binds the listener first so tests can use port 0.

use crate::metrics::Metrics;
use crate::problem::{self, ApiError};
use crate::routes::{self, AppState, health, openapi};
use crate::settings::ApiSettings;
use crate::store::TaskStore;
use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use entra_auth::{AppOnly, Protection, Validator};
use shared::clock::SharedClock;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub struct Application {
    server: Server,
    address: SocketAddr,
    state: web::Data<AppState>,
    /// Keeps the key store refreshing while the server runs.
    protection: Protection,
    /// Signals are ours to handle (`server.handle_signals`) and a drain is set.
    drain_on_signal: bool,
}

/// Whether a stop has begun draining, shared by `/readyz` and [`Drain`]; and the drain period,
/// which is also how long before its signing keys pass their stale bound `/readyz` turns a replica
/// away (`keys_expiring`), so that the balancer has moved before the keys fail closed.
#[derive(Debug, Clone)]
pub struct Draining {
    flag: Arc<AtomicBool>,
    period: Duration,
}

impl Draining {
    /// `period`: `server.drain_secs`.
    pub fn new(period: Duration) -> Self {
        Self {
            flag: Arc::default(),
            period,
        }
    }

    pub fn is_draining(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// `server.drain_secs`: how long a stop serves on while not ready, and the lead before the
    /// keys' stale bound.
    pub fn lead(&self) -> Duration {
        self.period
    }
}

/// A stop in two steps: not ready at once, still serving for the drain period, then the
/// graceful stop (the listener closed, in-flight requests given `server.shutdown_timeout_secs`).
#[derive(Clone)]
pub struct Drain {
    draining: Draining,
    server: ServerHandle,
    clock: SharedClock,
    period: Duration,
}

impl Drain {
    /// Drains for `period` on the application's clock, then stops the server gracefully.
    pub async fn drain_and_stop(self) {
        self.draining.flag.store(true, Ordering::Relaxed);
        tracing::info!(
            drain_secs = self.period.as_secs(),
            "draining: /readyz answers 503, serving on until the load balancer has moved away"
        );
        shared::clock::sleep(&*self.clock, self.period).await;
        tracing::info!("drained: closing the listener, in-flight requests finishing");
        self.server.stop(true).await;
    }
}

impl Application {
    pub async fn build(settings: ApiSettings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, shared::clock::system()).await
    }

    /// As [`Application::build`] with a clock the caller controls (tests).
    pub async fn build_with_clock(
        settings: ApiSettings,
        clock: SharedClock,
    ) -> anyhow::Result<Self> {
        let protection = Protection::start(
            &settings.entra,
            &settings.auth,
            &settings.keys,
            &settings.http,
            clock.clone(),
        )
        .await?;
        let validator = protection.validator.clone();
        let store = Arc::new(
            TaskStore::open(&settings.database)
                .await
                .context("`database`")?,
        );
        tracing::info!(backend = store.backend(), database = %settings.database.shown(), "task store open");
        let table = routes::table();
        let tenant = &settings.entra.tenants[0];
        let token_url = format!(
            "{}/{tenant}/oauth2/v2.0/token",
            settings.entra.authority_host.trim_end_matches('/')
        );
        let scope_base = settings
            .auth
            .audiences
            .iter()
            .find(|a| a.contains("://"))
            .unwrap_or(&settings.auth.audiences[0]);
        let document = openapi::document(&table, &token_url, &format!("{scope_base}/.default"));
        let auth = AppOnly::new(validator.clone(), table.policies());
        let state = web::Data::new(AppState {
            store,
            validator,
            outcomes: auth.outcomes().clone(),
            clock,
            openapi: serde_json::to_vec(&document)
                .context("rendering the OpenAPI document")?
                .into(),
            draining: Draining::new(Duration::from_secs(settings.server.drain_secs)),
        });
        let metrics = web::Data::new(Metrics::new());

        let listener = TcpListener::bind((settings.server.host.as_str(), settings.server.port))
            .with_context(|| {
                format!(
                    "cannot listen on {}:{} (`server.host`, `server.port`)",
                    settings.server.host, settings.server.port
                )
            })?;
        let address = listener.local_addr()?;
        let max_body = settings.server.max_body_bytes;
        let app_state = state.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(crate::observe::middleware))
                .app_data(app_state.clone())
                .app_data(metrics.clone())
                .app_data(
                    web::JsonConfig::default()
                        .limit(max_body)
                        .error_handler(|e, _| problem::json_error(e).into()),
                )
                .app_data(
                    web::QueryConfig::default()
                        .error_handler(|e, _| problem::query_error(e).into()),
                )
                .route("/healthz", web::get().to(health::healthz))
                .route("/readyz", web::get().to(health::readyz))
                .route("/metrics", web::get().to(health::metrics))
                .route("/openapi.json", web::get().to(openapi::serve))
                .service(
                    web::scope("/api")
                        .wrap(auth.clone())
                        .configure(|cfg| table.register(cfg)),
                )
                .default_service(web::to(|| async {
                    Err::<actix_web::HttpResponse, _>(ApiError::NotFound)
                }))
        })
        .shutdown_timeout(settings.server.shutdown_timeout_secs)
        // Idle keep-alive connections stay open 75 s (nginx's default) rather than actix-web's 5 s:
        // a client calling every few seconds on a pooled connection would otherwise race the
        // server's close (a 408, or the connection closed under its request).
        .keep_alive(std::time::Duration::from_secs(75))
        .listen(listener)?;
        if let Some(workers) = settings.server.workers {
            server = server.workers(workers);
        }
        let drain_on_signal = settings.server.handle_signals && settings.server.drain_secs > 0;
        // Draining on a signal is ours to do; actix-web's own handling would stop at once.
        if !settings.server.handle_signals || drain_on_signal {
            server = server.disable_signals();
        }
        tracing::info!(%address, tenants = ?settings.entra.tenants, authority = %settings.entra.authority_host, "api-service listening");
        Ok(Self {
            server: server.run(),
            address,
            state,
            protection,
            drain_on_signal,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    pub fn validator(&self) -> Arc<Validator> {
        self.state.validator.clone()
    }

    /// A two-step stop of this server over `server.drain_secs` (see [`Drain`]): what SIGTERM
    /// does when it is set; for an embedding process that handles signals itself, and tests.
    pub fn drain(&self) -> Drain {
        Drain {
            draining: self.state.draining.clone(),
            server: self.server.handle(),
            clock: self.state.clock.clone(),
            period: self.state.draining.lead(),
        }
    }

    /// Serves until SIGINT/SIGTERM (or the handle stops it): stops accepting, lets in-flight
    /// requests finish within `server.shutdown_timeout_secs`, then returns. With
    /// `server.drain_secs`, the signal first drains (see [`Drain`]); a second one stops at once.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let watcher = self.drain_on_signal.then(|| {
            let drain = self.drain();
            tokio::spawn(async move {
                shared::signal::shutdown_signal().await;
                let server = drain.server.clone();
                tokio::select! {
                    () = drain.drain_and_stop() => {}
                    _ = shared::signal::shutdown_signal() => {
                        tracing::warn!("a second signal: stopping without the rest of the drain");
                        server.stop(true).await;
                    }
                }
            })
        });
        let result = self.server.await;
        if let Some(watcher) = watcher {
            watcher.abort();
        }
        drop(self.protection);
        tracing::info!("api-service stopped");
        result
    }
}
