//! `entra-gateway`: the tasks API's token checks in front of any HTTP service, in any language.
//!
//! One binary, two shapes, the same decisions (the `entra-auth` validator and a route policy
//! table from the configuration file):
//! - **reverse proxy** ([`proxy`]): every request that is not one of the gateway's own paths is
//!   checked, then streamed to the one upstream with the caller's identity in `X-Entra-*`
//!   headers;
//! - **forward-auth** ([`forward_auth`]) for a gateway already in place: nginx `auth_request`,
//!   Traefik `forwardAuth` and Envoy's HTTP `ext_authz` ask `/forward-auth/…` about the original
//!   request and copy the identity headers of a 200 to their upstream.
//!
//! The gateway's own paths: `/healthz`, `/readyz`, `/metrics` and `/forward-auth/…`; an
//! upstream's paths of the same names are not reachable through the proxy.

pub mod forward_auth;
pub mod identity;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod settings;

use actix_web::dev::{Server, ServerHandle};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{App, HttpRequest, HttpResponse, web};
use anyhow::Context;
use entra_auth::{AppCaller, AuthError, AuthOutcomes, Protection, Validator};
use metrics::Metrics;
use policy::Rule;
use serde_json::json;
use shared::clock::SharedClock;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub use settings::GatewaySettings;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What every handler shares.
pub struct State {
    pub validator: Arc<Validator>,
    pub rules: Vec<Rule>,
    pub outcomes: AuthOutcomes,
    pub metrics: Metrics,
    /// The upstream as configured; each server worker proxies through its own copy
    /// ([`proxy::WorkerUpstream`]).
    pub upstream: Option<proxy::Upstream>,
    pub max_body_bytes: u64,
}

/// One decision: the rule that matched (its label for metrics), and the verdict.
pub struct Decision<'s> {
    pub route: &'s str,
    pub verdict: Result<AppCaller, AuthError>,
}

impl State {
    /// The token, then the policy of the first rule matching `method` and `target` (the
    /// original request's path and query). `mode` labels the metrics.
    pub async fn decide(
        &self,
        mode: &str,
        method: &Method,
        target: &str,
        headers: &HeaderMap,
    ) -> Decision<'_> {
        let found = policy::find(&self.rules, method, target);
        let route = found.map_or("unmatched", |(_, r)| r.label.as_str());
        let access = found.map(|(_, r)| r.access);
        let verdict = entra_auth::authorize(&self.validator, headers, access).await;
        match &verdict {
            Ok(_) => {
                self.outcomes.accepted.fetch_add(1, Ordering::Relaxed);
                // Accepted means a rule matched.
                let index = found.map_or(usize::MAX, |(i, _)| i);
                self.metrics.accepted(mode, index, route);
            }
            Err(refusal) => {
                self.outcomes.refused[refusal.reason.index()].fetch_add(1, Ordering::Relaxed);
                self.metrics.decided(mode, route, refusal.reason.as_str());
                tracing::info!(
                    mode,
                    route,
                    reason = refusal.reason.as_str(),
                    status = refusal.reason.status().as_u16(),
                    client_app_id = refusal.client_app_id.as_deref().unwrap_or("-"),
                    "request refused"
                );
            }
        }
        Decision { route, verdict }
    }
}

/// The caller's `X-Request-Id` when it is a sane token, else a fresh one
/// ([`entra_auth::RequestId::incoming_or_new`]): it goes into logs, problem bodies and the
/// upstream request.
pub fn request_id(req: &HttpRequest) -> std::rc::Rc<str> {
    entra_auth::RequestId::incoming_or_new(req.headers().get(&REQUEST_ID)).0
}

/// A refusal or failure of the gateway's own, as problem+json quoting the request id.
pub fn problem(status: StatusCode, reason: &str, detail: &str, id: &str) -> HttpResponse {
    let body = entra_auth::Problem::new(status, reason, detail.to_owned(), id.to_owned());
    with_request_id(entra_auth::problem_response(status, &body), id)
}

pub fn with_request_id(mut response: HttpResponse, id: &str) -> HttpResponse {
    if let Ok(value) = HeaderValue::from_str(id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Ready when every accepted tenant's keys are loaded and fresh enough.
async fn readyz(state: web::Data<State>) -> HttpResponse {
    let keys = state.validator.keys();
    let body = json!({ "keys": keys.readiness_report() });
    if keys.readiness().is_ready() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn metrics(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render(&state.outcomes, &state.validator))
}

pub struct Gateway {
    server: Server,
    address: SocketAddr,
    state: web::Data<State>,
    protection: Protection,
}

impl Gateway {
    pub async fn build(settings: GatewaySettings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, shared::clock::system()).await
    }

    /// As [`Gateway::build`] with a clock the caller controls (tests).
    pub async fn build_with_clock(
        settings: GatewaySettings,
        clock: SharedClock,
    ) -> anyhow::Result<Self> {
        settings.check()?;
        let rules = settings.rules()?;
        let upstream = match &settings.upstream {
            Some(upstream) => Some(proxy::Upstream::new(upstream, &settings.http)?),
            None => None,
        };
        let protection = Protection::start(
            &settings.entra,
            &settings.auth,
            &settings.keys,
            &settings.http,
            clock,
        )
        .await?;
        let mut counters = Metrics::new();
        counters.bind_rules(rules.iter().map(|r| r.label.as_str()));
        let state = web::Data::new(State {
            validator: protection.validator.clone(),
            rules,
            outcomes: AuthOutcomes::default(),
            metrics: counters,
            upstream,
            max_body_bytes: settings.server.max_body_bytes,
        });
        let listener = TcpListener::bind((settings.server.host.as_str(), settings.server.port))
            .with_context(|| {
                format!(
                    "cannot listen on {}:{} (`server.host`, `server.port`)",
                    settings.server.host, settings.server.port
                )
            })?;
        let address = listener.local_addr()?;
        let app_state = state.clone();
        let mut server = actix_web::HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .app_data(web::Data::new(proxy::WorkerUpstream(
                    app_state.upstream.as_ref().map(proxy::Upstream::for_worker),
                )))
                .route("/healthz", web::get().to(healthz))
                .route("/readyz", web::get().to(readyz))
                .route("/metrics", web::get().to(metrics))
                .configure(forward_auth::configure)
                .default_service(web::to(proxy::forward))
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
        if !settings.server.handle_signals {
            server = server.disable_signals();
        }
        tracing::info!(
            %address,
            upstream = settings.upstream.as_ref().map_or("-", |u| u.url.as_str()),
            rules = state.rules.len(),
            "entra-gateway listening"
        );
        Ok(Self {
            server: server.run(),
            address,
            state,
            protection,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    pub fn validator(&self) -> Arc<Validator> {
        self.state.validator.clone()
    }

    /// Serves until SIGINT/SIGTERM (or the handle stops it), letting in-flight requests finish
    /// within `server.shutdown_timeout_secs`.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        drop(self.protection);
        tracing::info!("entra-gateway stopped");
        result
    }
}
