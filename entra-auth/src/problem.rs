//! The RFC 9457 `application/problem+json` body every refusal is answered with, and that an
//! application can extend with its own members for its own errors (`#[serde(flatten)]` it into
//! a larger struct, as the tasks API does).

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, HeaderValue};
use serde::Serialize;
use std::rc::Rc;

/// The request's id, which the application's own request-id middleware puts in the request's
/// extensions (`req.extensions_mut().insert(RequestId(id))`): refusals quote it in their body, so
/// that a caller reporting a 401 can name the log line. Without it the body's `request_id` is
/// empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub Rc<str>);

impl RequestId {
    /// The caller's `X-Request-Id` when it is 1–64 characters of `[A-Za-z0-9._-]`, else a fresh
    /// one: it goes into logs, response headers and problem bodies, so anything else (newlines,
    /// quotes, megabytes) is replaced. One allocation, shared by every holder of the id.
    pub fn incoming_or_new(incoming: Option<&HeaderValue>) -> Self {
        let sane = incoming.and_then(|v| v.to_str().ok()).filter(|v| {
            (1..=64).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        });
        Self(match sane {
            Some(id) => Rc::from(id),
            None => {
                // A v4 UUID from the thread's CSPRNG: `Uuid::new_v4` (this build of uuid has
                // no `fast-rng`) makes a getrandom syscall for every id, ~400 ns against ~60 ns.
                let mut buffer = uuid::Uuid::encode_buffer();
                Rc::from(
                    &*uuid::Builder::from_random_bytes(rand::random())
                        .into_uuid()
                        .simple()
                        .encode_lower(&mut buffer),
                )
            }
        })
    }
}

/// An RFC 9457 problem: `type`, `title`, `status`, `detail`, plus the stable `reason` clients key
/// on, the roles a refused route would have taken, and the request id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    /// `urn:m2m-entra:problem:{reason}`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable, machine-readable.
    pub reason: String,
    /// For `missing_role`: any one of these roles would do (also in `WWW-Authenticate`'s
    /// `scope`).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub required_roles: Vec<String>,
    /// Also in the `X-Request-Id` response header; quote it when reporting a problem.
    pub request_id: String,
}

impl Problem {
    /// The body for `reason` at `status`.
    pub fn new(status: StatusCode, reason: &str, detail: String, request_id: String) -> Self {
        Self {
            kind: format!("urn:m2m-entra:problem:{reason}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            reason: reason.to_owned(),
            required_roles: Vec::new(),
            request_id,
        }
    }
}

/// An RFC 9457 answer: `application/problem+json`, never stored by caches.
pub fn problem_response(status: StatusCode, body: &impl Serialize) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/problem+json")
        .insert_header((CACHE_CONTROL, "no-store"))
        .json(body)
}
