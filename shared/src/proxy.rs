//! The HTTP relaying that both proxies of the mesh do the same way: the gateway in front of a
//! service (ingress) and the caller's token sidecar in front of an app (egress). Hop-by-hop fields
//! are dropped both ways, the request body is read into the upstream connection as it takes it
//! (never held whole), and the answer is streamed back unless it is small. The upstream client
//! itself is [`crate::upstream`].

use crate::upstream::{Answer, HeaderMap, HeaderName, SendError};
use actix_web::body::{BodyStream, SizedStream};
use actix_web::http::header::HeaderValue;
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpResponse, web};

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
) -> HeaderMap {
    let incoming = headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_bytes()));
    let mut out = HeaderMap::with_capacity(headers.len() + room);
    for (name, value) in end_to_end(incoming) {
        if skip(name) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            crate::upstream::HeaderValue::from_bytes(value),
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
/// unless small. An error means the upstream went away (or stalled) while a small body was being
/// read: nothing has been sent yet, and the caller answers 502 (or 504).
pub async fn relay(method: &Method, answer: Answer) -> Result<HttpResponse, SendError> {
    let status = StatusCode::from_u16(answer.status()).unwrap_or(StatusCode::BAD_GATEWAY);
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
    let declared = answer.declared_length();
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if bodiless || *method == Method::HEAD {
        // Nothing follows the head (the connection goes back to the pool).
        answer.read_whole().await?;
        if bodiless {
            return Ok(response.finish());
        }
        // The length of the body a GET would get, as the upstream said it; actix sends it and
        // writes no body for a HEAD, where `finish()` would say 0.
        return Ok(match declared {
            Some(length) => response.body(SizedStream::new(
                length,
                futures_util::stream::empty::<Result<web::Bytes, std::io::Error>>(),
            )),
            None => response.finish(),
        });
    }
    Ok(match declared {
        Some(length) if length <= SMALL_BODY_BYTES => response.body(answer.read_whole().await?),
        Some(length) => response.body(SizedStream::new(length, answer.into_body())),
        None => response.body(BodyStream::new(answer.into_body())),
    })
}

/// An error's message plus its causes on one line (hyper's and reqwest's own Display stop at the
/// outermost, "error sending request" or "connection error").
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
