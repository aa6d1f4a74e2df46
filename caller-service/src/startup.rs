//! Building the daemon from settings, and running it until a signal.

use crate::idp::AzureTokenSource;
use crate::metrics::Metrics;
use crate::routes;
use crate::runner::JobRunner;
use crate::scheduler::Scheduler;
use crate::settings::{Identity, Settings, Sidecar};
use crate::sidecar::SidecarState;
use crate::token_manager::TokenManager;
use actix_web::{App, HttpServer, web};
use anyhow::Context as _;
use shared::clock::{Clock, SystemClock};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The parts every mode needs: `run`, `once` and `token`.
#[derive(Debug, Clone)]
pub struct Core {
    pub tokens: TokenManager,
    pub runner: JobRunner,
    pub metrics: Metrics,
}

impl Core {
    pub fn build(
        settings: &Settings,
        identity: Identity,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        // Checked here, where every command (run, once, token) builds its token manager.
        settings.token_manager.validate()?;
        let metrics = Metrics::new();
        // One client for the identity provider and the target APIs, trusting the extra CA.
        let http = shared::http::build_client(&settings.http)?;
        let source = AzureTokenSource::new(identity, http.clone(), metrics.clone())?;
        let tokens = TokenManager::new(
            Arc::new(source),
            &settings.token_manager,
            clock,
            metrics.clone(),
        );
        let runner = JobRunner::new(http, tokens.clone(), metrics.clone());
        Ok(Self {
            tokens,
            runner,
            metrics,
        })
    }
}

pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    /// The token sidecar's port and server, when configured.
    sidecar: Option<(u16, actix_web::dev::Server)>,
    core: Core,
    scheduler: Scheduler,
    scopes: Vec<String>,
    shutdown: watch::Sender<bool>,
    handle_signals: bool,
}

/// Stops a running [`Application`] as SIGTERM would.
#[derive(Debug, Clone)]
pub struct ShutdownHandle(watch::Sender<bool>);

impl ShutdownHandle {
    pub fn shutdown(&self) {
        self.0.send_replace(true);
    }
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// Validates everything and binds the operator endpoint (port 0 picks a free one); nothing
    /// runs until [`Application::run_until_stopped`].
    pub async fn build_with_clock(
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let (identity, jobs) = settings.validate()?;
        let sidecar = settings.sidecar.validate()?;
        let mut extra_scopes = settings.token_manager.scopes.clone();
        if let Some(sidecar) = &sidecar {
            extra_scopes.extend(sidecar.scopes());
        }
        let scopes = Settings::scopes(&jobs, &extra_scopes);
        let client_id = identity.client_id.clone();
        let core = Core::build(&settings, identity, clock.clone())?;
        let sidecar = match sidecar {
            Some(sidecar) => Some(Self::bind_sidecar(&settings, &sidecar, &core, client_id)?),
            None => None,
        };
        let address = (settings.server.host.as_str(), settings.server.port);
        let listener = TcpListener::bind(address).with_context(|| {
            format!(
                "binding the operator endpoint to {}:{}",
                address.0, address.1
            )
        })?;
        let port = listener.local_addr()?.port();
        let state = web::Data::new(routes::OpsState {
            tokens: core.tokens.clone(),
            metrics: core.metrics.clone(),
            scopes: scopes.clone(),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .route("/healthz", web::get().to(routes::healthz))
                .route("/readyz", web::get().to(routes::readyz))
                .route("/metrics", web::get().to(routes::metrics))
        })
        .workers(1)
        // We handle SIGTERM/SIGINT ourselves: jobs must drain before the server stops.
        .disable_signals()
        .listen(listener)?
        .run();
        let scheduler = Scheduler::new(
            jobs,
            core.runner.clone(),
            clock,
            core.metrics.clone(),
            Duration::from_secs(settings.server.shutdown_deadline_secs),
        );
        Ok(Self {
            port,
            server,
            sidecar,
            core,
            scheduler,
            scopes,
            shutdown: watch::Sender::new(false),
            handle_signals: settings.server.handle_signals,
        })
    }

    /// Binds the token sidecar's listener (nothing is served until the daemon runs).
    fn bind_sidecar(
        settings: &Settings,
        sidecar: &Sidecar,
        core: &Core,
        client_id: String,
    ) -> anyhow::Result<(u16, actix_web::dev::Server)> {
        let state = SidecarState::new(
            sidecar,
            core.tokens.clone(),
            core.metrics.clone(),
            client_id,
            settings.http.extra_ca_file.as_deref(),
        )?;
        let state = web::Data::new(state);
        let address = (sidecar.host.as_str(), sidecar.port);
        let listener = TcpListener::bind(address)
            .with_context(|| format!("binding the sidecar to {}:{}", address.0, address.1))?;
        let port = listener.local_addr()?.port();
        if sidecar.exposed {
            tracing::warn!(
                host = %sidecar.host,
                port,
                "the sidecar listens beyond loopback: anyone who reaches it borrows this identity"
            );
        }
        let server = HttpServer::new(move || {
            let client = state.worker_client();
            App::new().configure(crate::sidecar::configure(state.clone(), client))
        })
        .workers(sidecar.workers)
        // In-flight requests get the daemon's shutdown deadline, not actix's own 30 s.
        .shutdown_timeout(settings.server.shutdown_deadline_secs)
        .disable_signals()
        .listen(listener)?
        .run();
        Ok((port, server))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The token sidecar's port, when one is configured.
    pub fn sidecar_port(&self) -> Option<u16> {
        self.sidecar.as_ref().map(|(port, _)| *port)
    }

    pub fn tokens(&self) -> &TokenManager {
        &self.core.tokens
    }

    pub fn metrics(&self) -> &Metrics {
        &self.core.metrics
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown.clone())
    }

    /// Acquires tokens for every configured scope, runs the jobs on schedule and serves the
    /// operator endpoint until SIGTERM/SIGINT (or [`ShutdownHandle::shutdown`]); then stops
    /// scheduling, lets running jobs finish up to the deadline, and returns.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self {
            server,
            sidecar,
            core,
            scheduler,
            scopes,
            shutdown,
            handle_signals,
            ..
        } = self;
        tracing::info!(scopes = ?scopes, "starting");
        core.tokens.warm_up(&scopes);
        let server_handle = server.handle();
        let server_task = tokio::spawn(server);
        let sidecar = sidecar.map(|(port, server)| {
            tracing::info!(port, "token sidecar listening");
            let handle = server.handle();
            (handle, tokio::spawn(server))
        });
        let mut stop = shutdown.subscribe();
        let jobs = tokio::spawn(scheduler.run(shutdown.subscribe()));
        tokio::select! {
            signal = shared::signal::shutdown_signal(), if handle_signals => {
                tracing::info!(signal, "stopping: no new job runs; waiting for running ones");
                shutdown.send_replace(true);
            }
            _ = stop.wait_for(|stopped| *stopped) => {
                tracing::info!("stopping on request");
            }
        }
        // Running jobs and the apps' requests in flight finish side by side, each within the
        // shutdown deadline (the sidecar's graceful stop is bounded by it too), before the tokens
        // go. A failure of the sidecar is logged, not returned: the steps after it still run.
        let sidecar_stopped = async {
            if let Some((handle, task)) = sidecar {
                handle.stop(true).await;
                match task.await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::error!(%error, "token sidecar"),
                    Err(error) => tracing::error!(%error, "token sidecar task"),
                }
            }
        };
        let (jobs, ()) = tokio::join!(jobs, sidecar_stopped);
        jobs.context("job scheduler")?;
        core.tokens.shutdown();
        server_handle.stop(true).await;
        server_task.await.context("operator endpoint")??;
        tracing::info!("stopped");
        Ok(())
    }
}
