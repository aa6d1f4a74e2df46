//! The reverse proxy: a request the policy lets in is streamed to the upstream, and the upstream's
//! answer streamed back. Neither body is ever held whole: the request body goes through a small
//! channel (backpressure: at most a few chunks in flight), the response body straight through.
//!
//! On the way in: hop-by-hop headers (and those `Connection` names) are dropped, every `X-Entra-*`
//! header a client sent is removed before the gateway's own are set, `Authorization` is removed
//! unless `upstream.forward_authorization`, and `X-Forwarded-For/-Proto/-Host` and `X-Request-Id`
//! are set. The upstream refusing connections is a 502, the upstream slower than
//! `upstream.timeout_secs` a 504, a body over `server.max_body_bytes` a 413, all problem+json.

use crate::settings::UpstreamSettings;
use crate::{State, identity, problem, request_id, with_request_id};
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use entra_auth::AppCaller;
use shared::config::ConfigError;
use shared::http::HttpClientSettings;
use shared::proxy::{ClientRecipe, declared_body, error_chain, forwardable, relay, stream_body};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The one upstream, with its pooled keep-alive client.
pub struct Upstream {
    client: reqwest::Client,
    /// The upstream URL without a trailing `/`; the request's path and query are appended.
    base: String,
    timeout: Duration,
    forward_authorization: bool,
    recipe: ClientRecipe,
}

impl Upstream {
    pub fn new(
        settings: &UpstreamSettings,
        http: &HttpClientSettings,
    ) -> Result<Self, ConfigError> {
        let url = settings.validate()?;
        let timeout = Duration::from_secs(settings.timeout_secs);
        let extra_roots = match &http.extra_ca_file {
            Some(path) => shared::http::read_ca_bundle(path)
                .map_err(|e| ConfigError::key("http.extra_ca_file", e))?,
            None => Vec::new(),
        };
        let recipe = ClientRecipe {
            connect_timeout: Duration::from_millis(settings.connect_timeout_ms),
            read_timeout: timeout,
            max_idle: settings.max_idle_connections,
            extra_roots,
        };
        let client = recipe
            .build()
            .map_err(|e| ConfigError::key("upstream", format!("cannot build its client: {e}")))?;
        Ok(Self {
            client,
            base: url.as_str().trim_end_matches('/').to_owned(),
            timeout,
            forward_authorization: settings.forward_authorization,
            recipe,
        })
    }

    /// The same upstream with a connection pool of its own, for one server worker (see
    /// [`ClientRecipe`]). Building the same client a second time does not fail; if it ever did,
    /// the worker shares the first pool.
    pub fn for_worker(&self) -> Self {
        Self {
            client: self.recipe.build().unwrap_or_else(|_| self.client.clone()),
            base: self.base.clone(),
            timeout: self.timeout,
            forward_authorization: self.forward_authorization,
            recipe: self.recipe.clone(),
        }
    }
}

/// The upstream of one server worker (see [`Upstream::for_worker`]); `None` for a forward-auth
/// only gateway.
pub struct WorkerUpstream(pub Option<Upstream>);

/// What goes to the upstream: the caller's end-to-end headers without `Host`, without any
/// `X-Entra-*` it sent, without `Authorization` unless configured, then the identity and
/// forwarding headers.
fn upstream_headers(
    req: &HttpRequest,
    caller: &AppCaller,
    forward_authorization: bool,
    id: &str,
) -> reqwest::header::HeaderMap {
    // `Forwarded` goes too: the X-Forwarded-* set below say what this gateway saw, and an
    // upstream that reads `Forwarded` first would otherwise take the client's word for it.
    let mut out = forwardable(
        req.headers(),
        |name| {
            name == "host"
                || name == "forwarded"
                || identity::is_identity(name)
                || (name == "authorization" && !forward_authorization)
        },
        10,
    );
    let mut set = |name: &'static str, value: &str| {
        if let Ok(value) = reqwest::header::HeaderValue::from_str(value) {
            out.insert(name, value);
        }
    };
    for (name, value) in identity::values(caller) {
        if !value.is_empty() {
            set(name, &value);
        }
    }
    if let Some(peer) = req.peer_addr() {
        match req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(earlier) => set("x-forwarded-for", &format!("{earlier}, {}", peer.ip())),
            None => set("x-forwarded-for", &peer.ip().to_string()),
        }
    }
    // This listener's own scheme: `connection_info()` would believe a client's `Forwarded` or
    // `X-Forwarded-Proto`.
    set(
        "x-forwarded-proto",
        if req.app_config().secure() {
            "https"
        } else {
            "http"
        },
    );
    if let Some(host) = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
    {
        set("x-forwarded-host", host);
    }
    set("x-request-id", id);
    out
}

/// The default service: everything that is not one of the gateway's own paths.
pub async fn forward(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<State>,
    worker: web::Data<WorkerUpstream>,
) -> HttpResponse {
    let id = request_id(&req);
    let Some(upstream) = &worker.0 else {
        return problem(
            StatusCode::NOT_FOUND,
            "not_found",
            "This gateway has no upstream; it answers forward-auth only.",
            &id,
        );
    };
    let target = req
        .uri()
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let decision = state
        .decide("proxy", req.method(), &target, req.headers())
        .await;
    let caller = match decision.verdict {
        Ok(caller) => caller,
        Err(refusal) => return with_request_id(refusal.response(Some(&id)), &id),
    };
    let (declared_length, has_body) = declared_body(req.headers());
    if declared_length.is_some_and(|length| length > state.max_body_bytes) {
        return too_large(state.max_body_bytes, &id);
    }

    let headers = upstream_headers(&req, &caller, upstream.forward_authorization, &id);
    // The same token on both sides (actix parsed it already): never another method than the one
    // the policy judged.
    let Ok(method) = reqwest::Method::from_bytes(req.method().as_str().as_bytes()) else {
        return problem(
            StatusCode::NOT_IMPLEMENTED,
            "method_not_supported",
            "This gateway cannot forward that method.",
            &id,
        );
    };
    let too_big = Arc::new(AtomicBool::new(false));
    let mut request = upstream
        .client
        .request(method, format!("{}{target}", upstream.base))
        .headers(headers);
    if has_body {
        request = request.body(stream_body(payload, state.max_body_bytes, too_big.clone()));
    }

    let started = Instant::now();
    let sent = tokio::time::timeout(upstream.timeout, request.send()).await;
    let route = decision.route;
    let answer = match sent {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) if too_big.load(Ordering::Relaxed) => {
            return too_large(state.max_body_bytes, &id);
        }
        Ok(Err(e)) if e.is_timeout() => {
            state
                .metrics
                .upstream_answered(route, 504, started.elapsed());
            return upstream_timeout(&id);
        }
        Err(_elapsed) => {
            state
                .metrics
                .upstream_answered(route, 504, started.elapsed());
            return upstream_timeout(&id);
        }
        Ok(Err(e)) => {
            state
                .metrics
                .upstream_answered(route, 502, started.elapsed());
            // Without the URL: the caller's query string may hold a signature or a key.
            tracing::warn!(route, error = %error_chain(&e.without_url()), "upstream unreachable");
            return unavailable(&id);
        }
    };
    state
        .metrics
        .upstream_answered(route, answer.status().as_u16(), started.elapsed());
    match relay(req.method(), answer).await {
        Ok(response) if response.headers().contains_key(crate::REQUEST_ID) => response,
        Ok(response) => with_request_id(response, &id),
        Err(e) => {
            tracing::warn!(error = %error_chain(&e.without_url()), "upstream answer cut short");
            unavailable(&id)
        }
    }
}

fn unavailable(id: &str) -> HttpResponse {
    problem(
        StatusCode::BAD_GATEWAY,
        "upstream_unavailable",
        "The service behind this gateway could not be reached; retry later.",
        id,
    )
}

fn too_large(limit: u64, id: &str) -> HttpResponse {
    problem(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        &format!("The body is larger than {limit} bytes."),
        id,
    )
}

fn upstream_timeout(id: &str) -> HttpResponse {
    problem(
        StatusCode::GATEWAY_TIMEOUT,
        "upstream_timeout",
        "The service behind this gateway did not answer in time; retry later.",
        id,
    )
}
