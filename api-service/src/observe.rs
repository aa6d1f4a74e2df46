//! Per-request plumbing every route gets: a request id (the caller's `X-Request-Id` when it is a
//! sane token, else a fresh one), echoed in the response and in problem bodies; a tracing span;
//! and the request counters and latency histogram, labelled by route pattern (never by raw path,
//! which would let any client create unbounded label values).

use crate::metrics::Metrics;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, web};
use std::rc::Rc;
use std::time::Instant;
use tracing::Instrument;

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    /// The current request's id, so an error rendered deep in a handler or extractor can name it
    /// without every handler passing it along.
    static REQUEST_ID: Rc<str>;
}

/// The id of the request being served, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(|id| id.to_string()).ok()
}

/// The middleware (`App::wrap(from_fn(observe::middleware))`), outermost, so that it sees every
/// answer including refusals.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let id = entra_auth::RequestId::incoming_or_new(req.headers().get(&REQUEST_ID_HEADER)).0;
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    // Any token is a valid HTTP method to actix; only the standard ones become label values
    // and log fields, so made-up methods cannot grow `/metrics` or the logs without bound.
    let method: &'static str = match *req.method() {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    // Made before the id moves into the task-local; an id that passed the filter, or a fresh one,
    // is always a valid header value.
    let echoed = HeaderValue::from_str(&id).ok();
    let span = tracing::info_span!("request", request_id = %id, method, %route);
    // The validator quotes it in its refusals.
    req.extensions_mut()
        .insert(entra_auth::RequestId(Rc::clone(&id)));
    let started = Instant::now();
    let result = REQUEST_ID
        .scope(id, next.call(req).instrument(span.clone()))
        .await;
    let status = match &result {
        Ok(response) => response.status(),
        Err(e) => e.as_response_error().status_code(),
    };
    let elapsed = started.elapsed();
    if let Some(metrics) = metrics {
        metrics.observe_request(&route, method, status, elapsed);
    }
    span.in_scope(|| {
        if status.is_server_error() {
            tracing::warn!(
                status = status.as_u16(),
                elapsed_ms = elapsed.as_secs_f64() * 1e3,
                "request failed"
            );
        } else {
            tracing::debug!(
                status = status.as_u16(),
                elapsed_ms = elapsed.as_secs_f64() * 1e3,
                "request served"
            );
        }
    });
    result.map(|mut response| {
        if let Some(value) = echoed {
            response.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        response
    })
}
