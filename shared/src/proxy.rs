//! The HTTP relaying that both proxies of the mesh do the same way: the gateway in front of a
//! service (ingress) and the caller's token sidecar in front of an app (egress). Hop-by-hop fields
//! are dropped both ways, the request body goes through a small bounded channel (never held
//! whole), and the answer is streamed back unless it is small.

use actix_web::body::{BodyStream, SizedStream};
use actix_web::http::header::HeaderValue;
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpResponse, web};
use futures_util::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What an upstream client is built from, kept so that each server worker can build its own.
///
/// Each actix worker is a single-threaded runtime, and a pooled connection is driven by the
/// runtime that opened it: with one pool for all workers, a request on one worker would wait on
/// another worker's thread to move its bytes. So every worker gets a client of its own.
#[derive(Clone)]
pub struct ClientRecipe {
    pub connect_timeout: Duration,
    /// Each read, headers included: a stalled upstream fails, a slow download does not.
    pub read_timeout: Duration,
    pub max_idle: usize,
    pub extra_roots: Vec<reqwest::Certificate>,
}

impl ClientRecipe {
    pub fn build(&self) -> reqwest::Result<reqwest::Client> {
        reqwest::Client::builder()
            // A redirect is the upstream's answer to the caller, not something to follow here.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.connect_timeout)
            .read_timeout(self.read_timeout)
            .pool_max_idle_per_host(self.max_idle)
            .pool_idle_timeout(Duration::from_secs(60))
            .tls_certs_merge(self.extra_roots.iter().cloned())
            .build()
    }
}

/// RFC 9110 §7.6.1's hop-by-hop fields, plus the de-facto ones (`keep-alive`,
/// `proxy-connection`): they describe one connection, not the message.
pub const HOP_BY_HOP: [&str; 9] = [
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
pub fn end_to_end<'h>(
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

/// The end-to-end fields of an incoming request (see [`end_to_end`]) as the upstream client's
/// header map, without those `skip` names (lower-case); `room` more fields fit without growing.
pub fn forwardable(
    headers: &actix_web::http::header::HeaderMap,
    skip: impl Fn(&str) -> bool,
    room: usize,
) -> reqwest::header::HeaderMap {
    let incoming = headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_bytes()));
    let mut out = reqwest::header::HeaderMap::with_capacity(headers.len() + room);
    for (name, value) in end_to_end(incoming) {
        if skip(name) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(name.as_bytes()),
            reqwest::header::HeaderValue::from_bytes(value),
        ) {
            out.append(name, value);
        }
    }
    out
}

/// What a request says of its body: its `Content-Length` when it gives one, and whether it has a
/// body at all (a length above 0, or `Transfer-Encoding`).
pub fn declared_body(headers: &actix_web::http::header::HeaderMap) -> (Option<u64>, bool) {
    let length = headers
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let present = length.is_some_and(|length| length > 0)
        || headers.contains_key(actix_web::http::header::TRANSFER_ENCODING);
    (length, present)
}

/// Answers of at most this many bytes (by their `Content-Length`) are read whole before the
/// proxy answers: head and body then leave in one write instead of two or more. Longer ones,
/// and those of unknown length, are streamed.
pub const SMALL_BODY_BYTES: u64 = 16 * 1024;

/// The upstream's answer to a `method` request, minus hop-by-hop fields, its body streamed back
/// unless small. An error means the upstream went away while a small body was being read: nothing
/// has been sent yet, and the caller answers 502.
pub async fn relay(method: &Method, answer: reqwest::Response) -> reqwest::Result<HttpResponse> {
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
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if bodiless {
        return Ok(response.finish());
    }
    if *method == Method::HEAD {
        // The length of the body a GET would get, as the upstream said it (reqwest's
        // `content_length()` is the empty HEAD body's, 0); actix sends it and writes no body for
        // a HEAD, where `finish()` would say 0.
        let declared = answer
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        return Ok(match declared {
            Some(length) => response.body(SizedStream::new(
                length,
                futures_util::stream::empty::<Result<web::Bytes, std::io::Error>>(),
            )),
            None => response.finish(),
        });
    }
    Ok(match answer.content_length() {
        Some(length) if length <= SMALL_BODY_BYTES => response.body(answer.bytes().await?),
        Some(length) => response.body(SizedStream::new(length, answer.bytes_stream())),
        None => response.body(BodyStream::new(answer.bytes_stream())),
    })
}

/// The request body as a `Send` stream for the upstream client: actix's payload is read on this
/// worker and handed over through a bounded channel (at most a few chunks in flight); past
/// `limit` bytes the stream fails and `too_big` says why.
pub fn stream_body(
    mut payload: web::Payload,
    limit: u64,
    too_big: Arc<AtomicBool>,
) -> reqwest::Body {
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<web::Bytes, std::io::Error>>(4);
    actix_web::rt::spawn(async move {
        let mut total: u64 = 0;
        while let Some(chunk) = payload.next().await {
            let item = match chunk {
                Ok(bytes) => {
                    total += bytes.len() as u64;
                    if total > limit {
                        too_big.store(true, Ordering::Relaxed);
                        Err(std::io::Error::other("request body over the size limit"))
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

/// An error's message plus its causes on one line (reqwest's own Display stops at "error sending
/// request").
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_fields_and_those_connection_names_are_dropped() {
        let headers = [
            ("connection", b"keep-alive, x-secret-hop".as_slice()),
            ("keep-alive", b"timeout=5".as_slice()),
            ("x-secret-hop", b"1".as_slice()),
            ("transfer-encoding", b"chunked".as_slice()),
            ("content-type", b"application/json".as_slice()),
            ("x-request-id", b"abc".as_slice()),
        ];
        let kept: Vec<&str> = end_to_end(headers.into_iter())
            .map(|(name, _)| name)
            .collect();
        assert_eq!(kept, ["content-type", "x-request-id"]);
    }

    #[test]
    fn an_error_chain_names_every_cause() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("error sending request")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let chained = Outer(std::io::Error::other("connection refused"));
        assert_eq!(
            error_chain(&chained),
            "error sending request: connection refused"
        );
    }
}
