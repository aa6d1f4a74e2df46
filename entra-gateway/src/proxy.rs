//! The reverse proxy: a request the policy lets in is streamed to the upstream, and the upstream's
//! answer streamed back. Neither body is ever held whole: the request body is read as the upstream
//! connection takes it (backpressure), the response body goes straight through.
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
use shared::proxy::{declared_body, forwardable, relay};
use shared::upstream::{
    self, Client, HeaderMap, HeaderName, HeaderValue, OutBody, Recipe, SendError,
};
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The one upstream: where it is and how it is reached (each server worker has its own pool of
/// connections to it, [`WorkerUpstream`]).
pub struct Upstream {
    recipe: Recipe,
    forward_authorization: bool,
}

impl Upstream {
    pub fn new(
        settings: &UpstreamSettings,
        http: &HttpClientSettings,
    ) -> Result<Self, ConfigError> {
        let url = settings.validate()?;
        let tls = upstream::tls_for([&url], http.extra_ca_file.as_deref(), "upstream.url")?;
        let recipe = Recipe::new(
            &url,
            tls.as_ref(),
            Duration::from_millis(settings.connect_timeout_ms),
            Duration::from_secs(settings.timeout_secs),
            settings.max_idle_connections,
        )
        .map_err(|e| ConfigError::key("upstream.url", e))?;
        Ok(Self {
            recipe,
            forward_authorization: settings.forward_authorization,
        })
    }

    /// A connection pool of its own, for one server worker (see [`Recipe::client`]).
    pub fn for_worker(&self) -> Client {
        self.recipe.client()
    }
}

/// The upstream client of one server worker (see [`Upstream::for_worker`]); `None` for a
/// forward-auth only gateway.
pub struct WorkerUpstream(pub Option<Client>);

/// What goes to the upstream: the caller's end-to-end headers without `Host`, without any
/// `X-Entra-*` it sent, without `Authorization` unless configured, then the identity and
/// forwarding headers.
fn upstream_headers(
    req: &HttpRequest,
    caller: &AppCaller,
    forward_authorization: bool,
    id: &str,
) -> HeaderMap {
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
    // The caller's identity, as values made once per token on this worker.
    let prepared = identity::prepared(caller);
    for (name, value) in identity::CLIENT_NAMES.iter().zip(&prepared.client) {
        if let Some(value) = value {
            out.insert(name.clone(), value.clone());
        }
    }
    // Names built at compile time: a `&str` name would be parsed again on every request.
    let mut set = |name: &HeaderName, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            out.insert(name.clone(), value);
        }
    };
    if let Some(peer) = req.peer_addr() {
        match req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(earlier) => set(&FORWARDED_FOR, &format!("{earlier}, {}", peer.ip())),
            None => set(&FORWARDED_FOR, &peer.ip().to_string()),
        }
    }
    // This listener's own scheme: `connection_info()` would believe a client's `Forwarded` or
    // `X-Forwarded-Proto`.
    set(
        &FORWARDED_PROTO,
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
        set(&FORWARDED_HOST, host);
    }
    set(&UPSTREAM_REQUEST_ID, id);
    out
}

const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const UPSTREAM_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The default service: everything that is not one of the gateway's own paths.
pub async fn forward(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<State>,
    worker: web::Data<WorkerUpstream>,
) -> HttpResponse {
    let id = request_id(&req);
    let (Some(client), Some(upstream)) = (&worker.0, &state.upstream) else {
        return problem(
            StatusCode::NOT_FOUND,
            "not_found",
            "This gateway has no upstream; it answers forward-auth only.",
            &id,
        );
    };
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let decision = state
        .decide("proxy", req.method(), target, req.headers())
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
    let Ok(method) = upstream::Method::from_bytes(req.method().as_str().as_bytes()) else {
        return problem(
            StatusCode::NOT_IMPLEMENTED,
            "method_not_supported",
            "This gateway cannot forward that method.",
            &id,
        );
    };
    let over_limit = Rc::new(Cell::new(false));
    let body = if has_body {
        OutBody::payload(
            payload,
            declared_length,
            state.max_body_bytes,
            over_limit.clone(),
        )
    } else {
        OutBody::Empty
    };

    let started = Instant::now();
    let sent = client
        .send(method, &client.recipe().path(target), headers, body)
        .await;
    let route = decision.route;
    let answer = match sent {
        Ok(answer) => answer,
        Err(_) if over_limit.get() => return too_large(state.max_body_bytes, &id),
        Err(SendError::Timeout) => {
            state
                .metrics
                .upstream_answered(route, 504, started.elapsed());
            return upstream_timeout(&id);
        }
        Err(SendError::Failed(error)) => {
            state
                .metrics
                .upstream_answered(route, 502, started.elapsed());
            // The error names no URL: the caller's query string may hold a signature or a key.
            tracing::warn!(route, %error, "upstream unreachable");
            return unavailable(&id);
        }
    };
    state
        .metrics
        .upstream_answered(route, answer.status(), started.elapsed());
    match relay(req.method(), answer).await {
        Ok(response) if response.headers().contains_key(crate::REQUEST_ID) => response,
        Ok(response) => with_request_id(response, &id),
        Err(SendError::Timeout) => upstream_timeout(&id),
        Err(SendError::Failed(error)) => {
            tracing::warn!(%error, "upstream answer cut short");
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
