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
use actix_web::body::{BodyStream, SizedStream};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, web};
use entra_auth::AppCaller;
use futures_util::StreamExt;
use shared::config::ConfigError;
use shared::http::HttpClientSettings;
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

/// What the upstream client is built from, kept to build one per worker.
#[derive(Clone)]
struct ClientRecipe {
    connect_timeout: Duration,
    read_timeout: Duration,
    max_idle: usize,
    extra_roots: Vec<reqwest::Certificate>,
}

impl ClientRecipe {
    fn build(&self) -> reqwest::Result<reqwest::Client> {
        reqwest::Client::builder()
            // A redirect is the upstream's answer to the caller, not something to follow here.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.connect_timeout)
            // Each read, headers included: a stalled upstream fails, a slow download does not.
            .read_timeout(self.read_timeout)
            .pool_max_idle_per_host(self.max_idle)
            .pool_idle_timeout(Duration::from_secs(60))
            .tls_certs_merge(self.extra_roots.iter().cloned())
            .build()
    }
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

    /// The same upstream with a connection pool of its own, for one server worker. Each actix
    /// worker is a single-threaded runtime, and a pooled connection is driven by the runtime that
    /// opened it: with one pool for all workers, a request on one worker would wait on another
    /// worker's thread to move its bytes. (Building the same client a second time does not fail;
    /// if it ever did, the worker shares the first pool.)
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

/// RFC 9110 §7.6.1's hop-by-hop fields, plus the de-facto ones (`keep-alive`,
/// `proxy-connection`): they describe one connection, not the message.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The end-to-end fields of a message: `headers` minus the hop-by-hop ones and those its
/// `Connection` header names. Names come lower-case from both HTTP stacks.
fn end_to_end<'h>(
    headers: impl Iterator<Item = (&'h str, &'h [u8])>,
) -> impl Iterator<Item = (&'h str, &'h [u8])> {
    let headers: Vec<(&str, &[u8])> = headers.collect();
    let named_by_connection: Vec<String> = headers
        .iter()
        .filter(|(name, _)| *name == "connection")
        .filter_map(|(_, value)| std::str::from_utf8(value).ok())
        .flat_map(|value| value.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    headers.into_iter().filter(move |(name, _)| {
        !HOP_BY_HOP.contains(name) && !named_by_connection.iter().any(|n| n == name)
    })
}

/// What goes to the upstream: the caller's end-to-end headers without `Host`, without any
/// `X-Entra-*` it sent, without `Authorization` unless configured, then the identity and
/// forwarding headers.
fn upstream_headers(
    req: &HttpRequest,
    caller: &AppCaller,
    forward_authorization: bool,
    id: &str,
) -> reqwest::header::HeaderMap {
    let incoming = req
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_bytes()));
    let mut out = reqwest::header::HeaderMap::with_capacity(req.headers().len() + 10);
    for (name, value) in end_to_end(incoming) {
        // `Forwarded` goes too: the X-Forwarded-* set below say what this gateway saw, and an
        // upstream that reads `Forwarded` first would otherwise take the client's word for it.
        if name == "host"
            || name == "forwarded"
            || identity::is_identity(name)
            || (name == "authorization" && !forward_authorization)
        {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(name.as_bytes()),
            reqwest::header::HeaderValue::from_bytes(value),
        ) {
            out.append(name, value);
        }
    }
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
    let declared_length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > state.max_body_bytes) {
        return too_large(state.max_body_bytes, &id);
    }

    let headers = upstream_headers(&req, &caller, upstream.forward_authorization, &id);

    let has_body = declared_length.is_some_and(|length| length > 0)
        || req.headers().contains_key(header::TRANSFER_ENCODING);
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
            tracing::warn!(route, error = %error_chain(&e), "upstream unreachable");
            return unavailable(&id);
        }
    };
    state
        .metrics
        .upstream_answered(route, answer.status().as_u16(), started.elapsed());
    respond(req.method(), answer, &id).await
}

fn unavailable(id: &str) -> HttpResponse {
    problem(
        StatusCode::BAD_GATEWAY,
        "upstream_unavailable",
        "The service behind this gateway could not be reached; retry later.",
        id,
    )
}

/// Answers of at most this many bytes (by their `Content-Length`) are read whole before the
/// gateway answers: head and body then leave in one write instead of two or more. Longer ones,
/// and those of unknown length, are streamed.
const SMALL_BODY_BYTES: u64 = 16 * 1024;

/// The upstream's answer, minus hop-by-hop fields; its body streamed back unless small.
async fn respond(method: &Method, answer: reqwest::Response, id: &str) -> HttpResponse {
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = HttpResponse::build(status);
    let headers = answer
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_bytes()));
    for (name, value) in end_to_end(headers) {
        if name == "content-length" {
            continue;
        }
        if let Ok(value) = HeaderValue::from_bytes(value) {
            response.append_header((name, value));
        }
    }
    if !answer.headers().contains_key("x-request-id") {
        response.insert_header((crate::REQUEST_ID, id));
    }
    let bodiless = *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if bodiless {
        return response.finish();
    }
    match answer.content_length() {
        Some(length) if length <= SMALL_BODY_BYTES => match answer.bytes().await {
            Ok(body) => response.body(body),
            // The upstream went away mid-answer; nothing has been sent yet.
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "upstream answer cut short");
                unavailable(id)
            }
        },
        Some(length) => response.body(SizedStream::new(length, answer.bytes_stream())),
        None => response.body(BodyStream::new(answer.bytes_stream())),
    }
}

/// The request body as a `Send` stream for the upstream client: actix's payload is read on this
/// worker and handed over through a bounded channel; past `limit` bytes the stream fails and
/// `too_big` says why.
fn stream_body(mut payload: web::Payload, limit: u64, too_big: Arc<AtomicBool>) -> reqwest::Body {
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<web::Bytes, std::io::Error>>(4);
    actix_web::rt::spawn(async move {
        let mut total: u64 = 0;
        while let Some(chunk) = payload.next().await {
            let item = match chunk {
                Ok(bytes) => {
                    total += bytes.len() as u64;
                    if total > limit {
                        too_big.store(true, Ordering::Relaxed);
                        Err(std::io::Error::other(
                            "request body over server.max_body_bytes",
                        ))
                    } else {
                        Ok(bytes)
                    }
                }
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            let failed = item.is_err();
            if sender.send(item).await.is_err() || failed {
                break;
            }
        }
    });
    reqwest::Body::wrap_stream(futures_util::stream::unfold(
        receiver,
        |mut receiver| async move { receiver.recv().await.map(|item| (item, receiver)) },
    ))
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

/// reqwest's message plus its causes (its own Display stops at "error sending request").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
