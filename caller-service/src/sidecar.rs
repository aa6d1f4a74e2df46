//! The token sidecar: the token manager next to an app in any language, with none of the app's
//! code changed. Two ways in, on one loopback listener:
//!
//! - **Egress forwarding.** `http://127.0.0.1:9091/{upstream}/…` goes to that upstream's URL with
//!   `Authorization: Bearer` from the token manager (an `Authorization` the app sent is replaced,
//!   and counted). An upstream's 401 `invalid_token` drops the token and resends once with a new
//!   one, for idempotent methods whose body could be kept (none, or at most
//!   [`REPLAY_BODY_BYTES`]); a 403 is a decision and goes back untouched. Bodies are streamed both
//!   ways otherwise; hop-by-hop headers are dropped; the upstream down is 502, too slow 504, and no
//!   token to be had 503 naming the identity provider's reason, all problem+json.
//! - **A managed-identity endpoint** (`/msi/token`), the App Service protocol 2019-08-01 that
//!   the Azure SDKs' `ManagedIdentityCredential` speaks when `IDENTITY_ENDPOINT` and
//!   `IDENTITY_HEADER` are set: tokens from the same cache, for the configured resources only,
//!   and only to a request carrying the `X-IDENTITY-HEADER` secret.

use crate::metrics::Metrics;
use crate::runner::is_invalid_token;
use crate::settings::{IdentityEndpoint, Sidecar, SidecarUpstream};
use crate::token_manager::{CachedToken, TokenManager};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde_json::json;
use shared::managed_identity::{self, TokenRequest};
use shared::proxy::{declared_body, forwardable, relay};
use shared::upstream::{self, Client, HeaderMap, OutBody, Recipe, SendError};
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// An idempotent request's body up to this size is kept, so that it can be resent after a 401;
/// a larger one is streamed and never resent.
pub const REPLAY_BODY_BYTES: u64 = 64 * 1024;

/// What every sidecar worker shares.
pub struct SidecarState {
    pub tokens: TokenManager,
    pub metrics: Metrics,
    pub upstreams: Vec<SidecarUpstream>,
    pub identity: Option<IdentityEndpoint>,
    /// The identity's client id, as the managed-identity answer names it.
    pub client_id: String,
    pub max_body_bytes: u64,
    /// Bound beyond loopback (`sidecar.allow_non_loopback`): the `Host` check is off.
    exposed: bool,
    /// One per upstream, in the same order: each reads with its own upstream's timeout.
    recipes: Vec<Recipe>,
}

/// One worker's upstream clients, one per upstream, each with its own connection pool (see
/// [`Recipe::client`]).
pub struct WorkerClient(Vec<Client>);

impl SidecarState {
    /// Fails, naming the setting, when an `https` upstream's TLS cannot be set up.
    pub fn new(
        sidecar: &Sidecar,
        tokens: TokenManager,
        metrics: Metrics,
        client_id: String,
        extra_ca_file: Option<&std::path::Path>,
    ) -> anyhow::Result<Self> {
        let urls = sidecar.upstreams.iter().map(|u| &u.url);
        let tls = upstream::tls_for(urls, extra_ca_file, "sidecar.upstreams")?;
        let recipes = sidecar
            .upstreams
            .iter()
            .map(|u| {
                Recipe::new(
                    &u.url,
                    tls.as_ref(),
                    Duration::from_secs(5).min(u.timeout),
                    u.timeout,
                    64,
                )
                .map_err(|e| anyhow::anyhow!("sidecar.upstreams.{}.url {e}", u.name))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            tokens,
            metrics,
            upstreams: sidecar.upstreams.clone(),
            identity: sidecar.identity.clone(),
            client_id,
            max_body_bytes: sidecar.max_body_bytes,
            exposed: sidecar.exposed,
            recipes,
        })
    }

    /// The clients of the server worker this runs on.
    pub fn worker_client(&self) -> WorkerClient {
        WorkerClient(self.recipes.iter().map(Recipe::client).collect())
    }
}

/// Registers the sidecar's routes on one worker's app.
pub fn configure(
    state: web::Data<SidecarState>,
    client: WorkerClient,
) -> impl FnOnce(&mut web::ServiceConfig) {
    move |config| {
        config
            .app_data(state)
            .app_data(web::Data::new(client))
            .route("/msi/token", web::get().to(identity_token))
            .default_service(web::to(egress));
    }
}

fn problem(status: StatusCode, reason: &str, detail: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/problem+json")
        .json(json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": detail,
            "reason": reason,
        }))
}

/// `/{name}/rest…` → the upstream named `name` and `/rest…`.
fn split_upstream(path: &str) -> (&str, &str) {
    let path = path.strip_prefix('/').unwrap_or(path);
    match path.find('/') {
        Some(at) => (&path[..at], &path[at..]),
        None => (path, "/"),
    }
}

/// Whether `rest` has a `.` or `..` segment (percent-encoded too; `\` separates as `/` does in
/// an http URL): once the URL is normalised it would leave the upstream's base path.
fn leaves_base(rest: &str) -> bool {
    rest.split(['/', '\\']).any(|segment| {
        // Each `.` as itself or as `%2e`/`%2E`; one or two of them, nothing else.
        let mut dots = 0;
        let mut rest = segment.as_bytes();
        while !rest.is_empty() {
            if rest[0] == b'.' {
                rest = &rest[1..];
            } else if rest.len() >= 3 && rest[..3].eq_ignore_ascii_case(b"%2e") {
                rest = &rest[3..];
            } else {
                return false;
            }
            dots += 1;
        }
        dots == 1 || dots == 2
    })
}

/// A request no app sends: one from a web page (`Origin`, `Sec-Fetch-Site`: a page on another
/// site could otherwise make this identity's calls), or, on loopback, one whose `Host` is not a
/// loopback name (DNS rebinding: a site's name re-resolved to 127.0.0.1 would read the answers).
fn browser_or_rebinding(req: &HttpRequest, exposed: bool) -> Option<HttpResponse> {
    if req.headers().contains_key(header::ORIGIN) || req.headers().contains_key("sec-fetch-site") {
        return Some(problem(
            StatusCode::FORBIDDEN,
            "browser_request",
            "Requests from web pages are refused: the sidecar lends its identity to the apps next to it only.",
        ));
    }
    if exposed {
        return None;
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let loopback = name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    (!loopback).then(|| {
        problem(
            StatusCode::FORBIDDEN,
            "host_not_loopback",
            "The Host header must name this loopback listener (127.0.0.1, [::1] or localhost).",
        )
    })
}

/// RFC 9110 §9.2.2: the methods whose repetition has the effect of one request.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The app's end-to-end headers minus `Host` (the upstream's is set from its URL), with
/// `Authorization` replaced by ours (`forward` has checked that the token has one).
fn upstream_headers(req: &HttpRequest, token: &CachedToken) -> HeaderMap {
    let mut headers = forwardable(
        req.headers(),
        |name| name == "host" || name == "authorization",
        2,
    );
    if let Some(bearer) = token.bearer() {
        headers.insert(upstream::header::AUTHORIZATION, bearer.clone());
    }
    headers
}

/// The request body as sent upstream: none, kept (resendable), or streamed (sent once).
enum Body {
    Empty,
    Kept(web::Bytes),
    Streamed(Option<OutBody>),
}

impl Body {
    fn replayable(&self) -> bool {
        !matches!(self, Self::Streamed(_))
    }

    fn take(&mut self) -> OutBody {
        match self {
            Self::Empty => OutBody::Empty,
            Self::Kept(bytes) => OutBody::Full(Some(bytes.clone())),
            Self::Streamed(body) => body.take().unwrap_or(OutBody::Empty),
        }
    }
}

/// Everything that is not `/msi/token`: forwarded to the upstream named by the first segment.
pub async fn egress(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<SidecarState>,
    client: web::Data<WorkerClient>,
) -> HttpResponse {
    let (name, _) = split_upstream(req.uri().path());
    if let Some(refusal) = browser_or_rebinding(&req, state.exposed) {
        return refusal;
    }
    let Some((index, upstream)) = state
        .upstreams
        .iter()
        .enumerate()
        .find(|(_, u)| u.name == name)
    else {
        let known: Vec<&str> = state.upstreams.iter().map(|u| u.name.as_str()).collect();
        return problem(
            StatusCode::NOT_FOUND,
            "unknown_upstream",
            &format!(
                "No upstream is named `{name}`; this sidecar forwards /{{name}}/… for: {}.",
                known.join(", ")
            ),
        );
    };
    let started = Instant::now();
    let response = forward(&req, payload, &state, &client.0[index], upstream).await;
    state
        .metrics
        .sidecar_requests
        .with_label_values(&[upstream.name.as_str(), response.status().as_str()])
        .inc();
    state
        .metrics
        .sidecar_duration
        .with_label_values(&[upstream.name.as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}

async fn forward(
    req: &HttpRequest,
    payload: web::Payload,
    state: &SidecarState,
    client: &Client,
    upstream: &SidecarUpstream,
) -> HttpResponse {
    let (_, rest) = split_upstream(req.uri().path());
    if leaves_base(rest) {
        return problem(
            StatusCode::BAD_REQUEST,
            "path_not_allowed",
            "The path has a `.` or `..` segment, which would leave the upstream's base path.",
        );
    }
    let target = match req.uri().query() {
        Some(query) => client.recipe().path(&format!("{rest}?{query}")),
        None => client.recipe().path(rest),
    };
    let Ok(method) = upstream::Method::from_bytes(req.method().as_str().as_bytes()) else {
        return problem(
            StatusCode::NOT_IMPLEMENTED,
            "method_not_supported",
            "This sidecar cannot forward that method.",
        );
    };
    if req.headers().contains_key(header::AUTHORIZATION) {
        state
            .metrics
            .sidecar_authorization_replaced
            .with_label_values(&[upstream.name.as_str()])
            .inc();
    }
    let (declared_length, has_body) = declared_body(req.headers());
    if declared_length.is_some_and(|length| length > state.max_body_bytes) {
        return too_large(state.max_body_bytes);
    }
    let over_limit = Rc::new(Cell::new(false));
    let mut body = if !has_body {
        Body::Empty
    } else if is_idempotent(req.method())
        && declared_length.is_some_and(|length| length <= REPLAY_BODY_BYTES)
    {
        match read_whole(payload, REPLAY_BODY_BYTES).await {
            Ok(bytes) => Body::Kept(bytes),
            Err(response) => return response,
        }
    } else {
        Body::Streamed(Some(OutBody::payload(
            payload,
            declared_length,
            state.max_body_bytes,
            over_limit.clone(),
        )))
    };
    let mut token = match state.tokens.get_token(&upstream.scope).await {
        Ok(token) if token.bearer().is_none() => return unsendable(upstream),
        Ok(token) => token,
        Err(error) => return no_token(upstream, &error),
    };
    // The headers are built for each send (the second one is rare) rather than cloned for both.
    let send = |token: &CachedToken, body: OutBody| {
        client.send(method.clone(), &target, upstream_headers(req, token), body)
    };
    let mut sent = send(&token, body.take()).await;
    let refused = matches!(&sent, Ok(first) if is_invalid_token(first.status(), first.headers()));
    if refused {
        // The refused token goes whatever the method (only if it is still the cached one and
        // none was dropped very recently), so the app's next request gets a new one.
        state.tokens.invalidate(&upstream.scope, &token);
    }
    if refused && is_idempotent(req.method()) && body.replayable() {
        // Resent once, with a token other than the refused one.
        match state.tokens.get_token(&upstream.scope).await {
            Ok(fresh) if fresh.bearer().is_none() => return unsendable(upstream),
            Ok(fresh) if fresh.fingerprint != token.fingerprint => {
                token = fresh;
                state
                    .metrics
                    .sidecar_token_retries
                    .with_label_values(&[upstream.name.as_str()])
                    .inc();
                tracing::info!(
                    upstream = %upstream.name,
                    fingerprint = %token.fingerprint,
                    "upstream refused the token (401 invalid_token); resent with a new one"
                );
                // The refusal read to its end first: its connection goes back to the pool.
                if let Ok(first) = sent {
                    let _ = first.read_whole().await;
                }
                sent = send(&token, body.take()).await;
            }
            Ok(_) => {}
            Err(error) => return no_token(upstream, &error),
        }
    }
    let answer = match sent {
        Ok(answer) => answer,
        Err(_) if over_limit.get() => return too_large(state.max_body_bytes),
        Err(SendError::Failed(error)) => {
            // The error names no URL: the app's query string may hold a signature or a key.
            tracing::warn!(upstream = %upstream.name, %error, "upstream unreachable");
            return problem(
                StatusCode::BAD_GATEWAY,
                "upstream_unavailable",
                &format!(
                    "The upstream `{}` could not be reached; retry later.",
                    upstream.name
                ),
            );
        }
        Err(SendError::Timeout) => return timed_out(upstream),
    };
    match relay(req.method(), answer).await {
        Ok(response) => response,
        Err(SendError::Timeout) => timed_out(upstream),
        Err(SendError::Failed(error)) => {
            tracing::warn!(upstream = %upstream.name, %error, "upstream answer cut short");
            problem(
                StatusCode::BAD_GATEWAY,
                "upstream_unavailable",
                &format!(
                    "The upstream `{}` went away mid-answer; retry later.",
                    upstream.name
                ),
            )
        }
    }
}

fn timed_out(upstream: &SidecarUpstream) -> HttpResponse {
    problem(
        StatusCode::GATEWAY_TIMEOUT,
        "upstream_timeout",
        &format!(
            "The upstream `{}` did not answer within {} s; retry later.",
            upstream.name,
            upstream.timeout.as_secs()
        ),
    )
}

/// A small body, read whole so that it can be sent twice.
async fn read_whole(mut payload: web::Payload, limit: u64) -> Result<web::Bytes, HttpResponse> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            problem(
                StatusCode::BAD_REQUEST,
                "bad_request_body",
                &format!("The request body could not be read: {e}"),
            )
        })?;
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn too_large(limit: u64) -> HttpResponse {
    problem(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        &format!("The body is larger than {limit} bytes."),
    )
}

/// 503: the identity provider's token has bytes no `Authorization` header can carry (never the
/// case for Entra's); nothing is sent without it.
fn unsendable(upstream: &SidecarUpstream) -> HttpResponse {
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "no_token",
        &format!(
            "The token for `{}` cannot be sent in an Authorization header.",
            upstream.name
        ),
    )
}

/// 503 naming why the identity provider gave no token (an AADSTS code when it refused), with its
/// `Retry-After` when it sent one.
fn no_token(upstream: &SidecarUpstream, error: &crate::idp::AcquireError) -> HttpResponse {
    let mut response = problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "no_token",
        &format!(
            "No token for `{}` ({}): {error}",
            upstream.name, upstream.scope
        ),
    );
    let retry_after = error.retry_after().map_or(5, |d| d.as_secs().max(1));
    if let Ok(value) = HeaderValue::from_str(&retry_after.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// The managed-identity protocol's error shape (App Service's `statusCode` + `message`; MSAL
/// shows both).
fn identity_error(
    state: &SidecarState,
    status: StatusCode,
    result: &str,
    message: &str,
) -> HttpResponse {
    state
        .metrics
        .sidecar_identity_requests
        .with_label_values(&[result])
        .inc();
    HttpResponse::build(status).json(managed_identity::error_body(status.as_u16(), message))
}

/// `GET /msi/token?api-version=2019-08-01&resource=…[&client_id=…]` with `X-IDENTITY-HEADER`.
pub async fn identity_token(req: HttpRequest, state: web::Data<SidecarState>) -> HttpResponse {
    let Some(endpoint) = &state.identity else {
        return identity_error(
            &state,
            StatusCode::NOT_FOUND,
            "disabled",
            "This sidecar serves no managed-identity tokens: sidecar.resources is empty.",
        );
    };
    let header_ok = req
        .headers()
        .get(managed_identity::SECRET_HEADER)
        .is_some_and(|given| endpoint.header.matches(given.as_bytes()));
    if !header_ok {
        return identity_error(
            &state,
            StatusCode::UNAUTHORIZED,
            "wrong_header",
            "The X-IDENTITY-HEADER header is missing or wrong: send the value of IDENTITY_HEADER.",
        );
    }
    let request = match TokenRequest::parse(req.query_string()) {
        Ok(request) => request,
        Err(error) => {
            return identity_error(
                &state,
                StatusCode::BAD_REQUEST,
                "bad_request",
                &error.to_string(),
            );
        }
    };
    match &request.identity {
        None => {}
        Some((key, value))
            if key == "client_id" && value.eq_ignore_ascii_case(&state.client_id) => {}
        Some((key, value)) => {
            return identity_error(
                &state,
                StatusCode::BAD_REQUEST,
                "unknown_identity",
                &format!(
                    "No identity with {key} {value} is assigned here; this sidecar holds one, client_id {}.",
                    state.client_id
                ),
            );
        }
    }
    let resource = request.resource;
    let wanted = resource.trim_end_matches('/');
    let Some(served) = endpoint.resources.iter().find(|r| r.as_str() == wanted) else {
        return identity_error(
            &state,
            StatusCode::BAD_REQUEST,
            "unknown_resource",
            &format!(
                "Resource {resource} is not served by this sidecar (sidecar.resources): it serves {}.",
                endpoint.resources.join(", ")
            ),
        );
    };
    let token = match state.tokens.get_token(&format!("{served}/.default")).await {
        Ok(token) => token,
        Err(error) => {
            let mut response = identity_error(
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                "no_token",
                &format!("No token for {resource}: {error}"),
            );
            let retry_after = error.retry_after().map_or(5, |d| d.as_secs().max(1));
            if let Ok(value) = HeaderValue::from_str(&retry_after.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return response;
        }
    };
    state
        .metrics
        .sidecar_identity_requests
        .with_label_values(&["ok"])
        .inc();
    HttpResponse::Ok().json(managed_identity::token_body(
        token.secret(),
        token.expires_at.unix_timestamp(),
        &resource,
        &state.client_id,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_segment_names_the_upstream() {
        assert_eq!(split_upstream("/tasks/api/tasks"), ("tasks", "/api/tasks"));
        assert_eq!(split_upstream("/tasks"), ("tasks", "/"));
        assert_eq!(split_upstream("/tasks/"), ("tasks", "/"));
        assert_eq!(split_upstream("/"), ("", "/"));
    }

    #[test]
    fn dot_segments_are_caught_however_spelled() {
        for path in [
            "/..",
            "/a/../b",
            "/%2e%2E/x",
            "/.%2e",
            "/a/./b",
            "/a\\..\\b",
            "/.",
        ] {
            assert!(leaves_base(path), "{path}");
        }
        for path in ["/", "/a/b", "/a..b/c", "/...", "/.well-known/x", "/a%2fb"] {
            assert!(!leaves_base(path), "{path}");
        }
    }

    #[test]
    fn only_idempotent_methods_are_resent() {
        for method in [Method::GET, Method::HEAD, Method::PUT, Method::DELETE] {
            assert!(is_idempotent(&method), "{method}");
        }
        for method in [Method::POST, Method::PATCH, Method::CONNECT] {
            assert!(!is_idempotent(&method), "{method}");
        }
    }
}
