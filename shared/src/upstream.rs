//! The upstream client of the mesh's two proxies (the gateway and the caller's token sidecar):
//! HTTP/1.1 on hyper's connection API, one pool per server worker and upstream.
//!
//! Why not reqwest, which every other outbound call here uses: a proxy makes one upstream request
//! per request it serves, so the client's own work is on the hot path. Each actix worker is a
//! single-threaded runtime; a client that belongs to it needs no lock on its pool, no task per
//! request body (the request's payload is read straight into the upstream connection on the same
//! thread), no URL parsing, and no layers for redirects, cookies or proxies that a relay never
//! uses. Measured in BENCHMARKS.md against the reqwest path it replaced.
//!
//! What it keeps from a full client: connect and read timeouts, TLS with the platform's roots
//! plus the extra CA (rustls, as reqwest is configured), keep-alive reuse, and a retry on a fresh
//! connection when a pooled one turns out to be closed before the request left.

use crate::config::ConfigError;
use actix_web::web;
use futures_util::{Stream, StreamExt};
use hyper::Request;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::Path;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};

pub use hyper::Method;
pub use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};

/// A pooled connection unused for this long is closed rather than reused: shorter than the
/// shortest keep-alive servers commonly keep (actix-web's and Node's: 5 s), so that a request
/// does not race the server closing the connection.
const IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// Why an upstream request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection within the connect timeout, no answer head within the read timeout
    /// (counted from the start: connecting, a wait for a pooled connection and the upload are in
    /// it), or, reading a small body whole, no chunk within it.
    #[error("the upstream did not answer in time")]
    Timeout,
    /// Refused, reset, closed, or not speaking HTTP; the text names the cause.
    #[error("{0}")]
    Failed(String),
}

impl SendError {
    fn failed(error: &dyn std::error::Error) -> Self {
        Self::Failed(crate::proxy::error_chain(error))
    }
}

/// The TLS set-up for these upstreams when one of them is `https://` (else `None`: no trust
/// store is loaded for plain HTTP): the platform's roots plus the PEM bundle `extra_ca_file`,
/// HTTP/1.1 by ALPN. Errors name `http.extra_ca_file`, or `url_key` when the platform's roots
/// cannot be loaded.
pub fn tls_for<'u>(
    urls: impl IntoIterator<Item = &'u url::Url>,
    extra_ca_file: Option<&Path>,
    url_key: &str,
) -> Result<Option<Arc<rustls::ClientConfig>>, ConfigError> {
    if !urls.into_iter().any(|url| url.scheme() == "https") {
        return Ok(None);
    }
    let extra_roots = match extra_ca_file {
        Some(path) => crate::http::pem_certificates(path).map_err(|reason| {
            ConfigError::key(
                "http.extra_ca_file",
                format!("{}: {reason}", path.display()),
            )
        })?,
        None => Vec::new(),
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra_roots, provider.clone())
            .map_err(|e| {
                ConfigError::key(
                    url_key,
                    format!("cannot load the platform's TLS roots: {e}"),
                )
            })?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::key(url_key, e))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

/// Where and how to reach one upstream: `Send + Sync`, built once at start; each server worker
/// makes its own [`Client`] from it.
#[derive(Clone)]
pub struct Recipe {
    /// The name or address to connect to (an IPv6 address without brackets).
    host: String,
    port: u16,
    /// The `Host` header: `host[:port]` as the URL gave it.
    authority: HeaderValue,
    /// The URL's path without its trailing `/`: every request path is appended to it.
    base_path: String,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    connect_timeout: Duration,
    /// The answer's head within this from the start, then each body chunk within this of the
    /// last: a stalled upstream fails, a slow download does not.
    read_timeout: Duration,
    max_idle: usize,
}

impl Recipe {
    /// An `http://` or `https://` URL with a host (no query); `tls` is needed only for `https`.
    pub fn new(
        url: &url::Url,
        tls: Option<&Arc<rustls::ClientConfig>>,
        connect_timeout: Duration,
        read_timeout: Duration,
        max_idle: usize,
    ) -> Result<Self, String> {
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not carry a user name or password (they would not be sent)".into());
        }
        let host = match url.host() {
            Some(url::Host::Domain(name)) => name.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err("has no host".into()),
        };
        let port = url
            .port_or_known_default()
            .ok_or_else(|| "has no port".to_owned())?;
        let authority = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        let authority = HeaderValue::from_str(&authority).map_err(|e| e.to_string())?;
        let tls = match url.scheme() {
            "http" => None,
            "https" => {
                let config = tls.ok_or_else(|| "needs TLS, which is not set up".to_owned())?;
                let name = ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
                Some((tokio_rustls::TlsConnector::from(config.clone()), name))
            }
            other => return Err(format!("has scheme {other}, not http or https")),
        };
        Ok(Self {
            host,
            port,
            authority,
            base_path: url.path().trim_end_matches('/').to_owned(),
            tls,
            connect_timeout,
            read_timeout,
            max_idle,
        })
    }

    /// A client with a pool of its own, for the server worker this runs on: each actix worker
    /// is a single-threaded runtime, and a connection is driven by the runtime that opened it.
    pub fn client(&self) -> Client {
        Client {
            recipe: self.clone(),
            idle: Rc::new(RefCell::new(VecDeque::new())),
        }
    }

    /// `/base` + `path_and_query` (which starts with `/`).
    pub fn path(&self, path_and_query: &str) -> String {
        let mut path = String::with_capacity(self.base_path.len() + path_and_query.len());
        path.push_str(&self.base_path);
        path.push_str(path_and_query);
        path
    }
}

struct Idle {
    sender: SendRequest<OutBody>,
    since: Instant,
}

type Pool = Rc<RefCell<VecDeque<Idle>>>;

/// One worker's client for one upstream (see [`Recipe::client`]).
pub struct Client {
    recipe: Recipe,
    idle: Pool,
}

impl Client {
    pub fn recipe(&self) -> &Recipe {
        &self.recipe
    }

    /// Sends `method path` with `headers` (`Host` is set here) and `body`, on a pooled
    /// connection when one is open. The answer's head comes within the read timeout; its body
    /// is read by [`Answer`]'s owner.
    pub async fn send(
        &self,
        method: hyper::Method,
        path: &str,
        mut headers: HeaderMap,
        body: OutBody,
    ) -> Result<Answer, SendError> {
        headers.insert(hyper::header::HOST, self.recipe.authority.clone());
        let mut request = Request::new(body);
        *request.method_mut() = method;
        *request.uri_mut() = path
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| SendError::Failed(e.to_string()))?;
        *request.headers_mut() = headers;
        let uploaded = request.body().uploaded();
        let sending = async {
            loop {
                let (mut sender, reused) = self.lease().await?;
                match sender.try_send_request(request).await {
                    Ok(response) => {
                        return Ok(Answer {
                            response,
                            lease: Some(Lease {
                                sender,
                                pool: self.idle.clone(),
                                max_idle: self.recipe.max_idle,
                                uploaded,
                            }),
                            read_timeout: self.recipe.read_timeout,
                        });
                    }
                    Err(mut error) => match error.take_message() {
                        // A pooled connection found closed before the request left: the same
                        // request on another one (a fresh connection at worst).
                        Some(unsent) if reused => request = unsent,
                        _ => return Err(SendError::failed(error.error())),
                    },
                }
            }
        };
        tokio::time::timeout(self.recipe.read_timeout, sending)
            .await
            .unwrap_or(Err(SendError::Timeout))
    }

    /// The most recently used open connection, or a new one; `true` when pooled.
    async fn lease(&self) -> Result<(SendRequest<OutBody>, bool), SendError> {
        loop {
            let popped = self.idle.borrow_mut().pop_back();
            let Some(mut idle) = popped else { break };
            if idle.sender.is_closed() || idle.since.elapsed() > IDLE_TIMEOUT {
                continue;
            }
            // Ready at once, or as soon as the connection has finished the previous answer.
            if idle.sender.ready().await.is_ok() {
                return Ok((idle.sender, true));
            }
        }
        let connecting = self.connect();
        match tokio::time::timeout(self.recipe.connect_timeout, connecting).await {
            Ok(connected) => connected.map(|sender| (sender, false)),
            Err(_) => Err(SendError::Timeout),
        }
    }

    async fn connect(&self) -> Result<SendRequest<OutBody>, SendError> {
        let recipe = &self.recipe;
        let tcp = tokio::net::TcpStream::connect((recipe.host.as_str(), recipe.port))
            .await
            .map_err(|e| SendError::failed(&e))?;
        // Heads and small bodies leave at once, not after the peer's delayed ACK.
        tcp.set_nodelay(true).map_err(|e| SendError::failed(&e))?;
        match &recipe.tls {
            None => handshake(tcp).await,
            Some((connector, name)) => {
                let stream = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| SendError::failed(&e))?;
                handshake(stream).await
            }
        }
    }
}

async fn handshake<T>(io: T) -> Result<SendRequest<OutBody>, SendError>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| SendError::failed(&e))?;
    // Driven on this worker until the peer or the pool lets the connection go.
    actix_web::rt::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(error = %crate::proxy::error_chain(&error), "upstream connection ended");
        }
    });
    Ok(sender)
}

/// A connection lent to one request: back to its pool once the answer has been read to its end
/// and the request body sent to its end, closed if it is dropped before.
struct Lease {
    sender: SendRequest<OutBody>,
    pool: Pool,
    max_idle: usize,
    /// `None` for a body that left whole with the head; else whether it has been sent to its end.
    uploaded: Option<Rc<Cell<bool>>>,
}

impl Lease {
    fn release(self) {
        // An upstream may answer before it has read the whole upload (a 401, a 413): the
        // connection is still sending, and the next request would wait behind that upload.
        if self.uploaded.is_some_and(|done| !done.get()) {
            return;
        }
        let now = Instant::now();
        let mut idle = self.pool.borrow_mut();
        // The oldest sit at the front: those past their time are closed here, not kept open
        // until a burst reaches them.
        while idle
            .front()
            .is_some_and(|oldest| now.duration_since(oldest.since) > IDLE_TIMEOUT)
        {
            idle.pop_front();
        }
        if idle.len() < self.max_idle && !self.sender.is_closed() {
            idle.push_back(Idle {
                sender: self.sender,
                since: now,
            });
        }
    }
}

/// The upstream's answer: its head, and its body still to read (see [`Answer::into_body`] and
/// [`Answer::read_whole`]).
pub struct Answer {
    response: hyper::Response<Incoming>,
    lease: Option<Lease>,
    read_timeout: Duration,
}

impl Answer {
    pub fn status(&self) -> u16 {
        self.response.status().as_u16()
    }

    pub fn headers(&self) -> &HeaderMap {
        self.response.headers()
    }

    /// The `Content-Length` the upstream declared.
    pub fn declared_length(&self) -> Option<u64> {
        self.response
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    }

    /// The whole body (for small ones), within the read timeout.
    pub async fn read_whole(self) -> Result<web::Bytes, SendError> {
        let timeout = self.read_timeout;
        let mut stream = self.into_body();
        let reading = async {
            let mut whole = web::BytesMut::new();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| match e.kind() {
                    std::io::ErrorKind::TimedOut => SendError::Timeout,
                    _ => SendError::Failed(e.to_string()),
                })?;
                if whole.is_empty() {
                    whole = web::BytesMut::from(chunk);
                } else {
                    whole.extend_from_slice(&chunk);
                }
            }
            Ok(whole.freeze())
        };
        tokio::time::timeout(timeout, reading)
            .await
            .unwrap_or(Err(SendError::Timeout))
    }

    /// The body as a stream of chunks, each within the read timeout; the connection goes back
    /// to the pool after the last.
    pub fn into_body(self) -> AnswerBody {
        AnswerBody {
            body: self.response.into_body(),
            lease: self.lease,
            read_timeout: self.read_timeout,
            deadline: None,
            armed: false,
        }
    }
}

/// See [`Answer::into_body`].
pub struct AnswerBody {
    body: Incoming,
    lease: Option<Lease>,
    read_timeout: Duration,
    /// Made on the first wait, then reset for each later one.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Whether `deadline` counts for the read now waiting.
    armed: bool,
}

impl Stream for AnswerBody {
    type Item = Result<web::Bytes, std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    this.armed = false;
                    match frame.into_data() {
                        Ok(data) if !data.is_empty() => return Poll::Ready(Some(Ok(data))),
                        // Empty data, or trailers (not relayed): read on.
                        _ => continue,
                    }
                }
                Poll::Ready(Some(Err(error))) => {
                    this.lease = None;
                    return Poll::Ready(Some(Err(std::io::Error::other(
                        crate::proxy::error_chain(&error),
                    ))));
                }
                Poll::Ready(None) => {
                    if let Some(lease) = this.lease.take() {
                        lease.release();
                    }
                    return Poll::Ready(None);
                }
                Poll::Pending => {
                    let timeout = this.read_timeout;
                    let deadline = this
                        .deadline
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                    if !this.armed {
                        deadline
                            .as_mut()
                            .reset(tokio::time::Instant::now() + timeout);
                        this.armed = true;
                    }
                    ready!(deadline.as_mut().poll(cx));
                    this.lease = None;
                    this.armed = false;
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the upstream stopped sending its answer",
                    ))));
                }
            }
        }
    }
}

/// What goes to the upstream as the request body.
pub enum OutBody {
    Empty,
    /// Sent whole (a body kept for a possible second send).
    Full(Option<web::Bytes>),
    /// The incoming request's body, read on this worker as the upstream connection takes it:
    /// never held whole. Past `limit` bytes it fails and `over_limit` says why.
    Payload {
        payload: web::Payload,
        /// The `Content-Length` the client declared, if any.
        length: Option<u64>,
        limit: u64,
        read: u64,
        over_limit: Rc<Cell<bool>>,
        /// Set once all of it has been handed to the connection: at the declared length (hyper
        /// stops asking there), or at the payload's end.
        uploaded: Rc<Cell<bool>>,
    },
}

impl OutBody {
    /// `length`: the `Content-Length` the request declared, if it did.
    pub fn payload(
        payload: web::Payload,
        length: Option<u64>,
        limit: u64,
        over_limit: Rc<Cell<bool>>,
    ) -> Self {
        Self::Payload {
            payload,
            length,
            limit,
            read: 0,
            over_limit,
            uploaded: Rc::new(Cell::new(false)),
        }
    }

    /// For a streamed body, the flag that says it has been sent to its end.
    fn uploaded(&self) -> Option<Rc<Cell<bool>>> {
        match self {
            Self::Payload { uploaded, .. } => Some(uploaded.clone()),
            Self::Empty | Self::Full(_) => None,
        }
    }
}

impl Body for OutBody {
    type Data = web::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.get_mut() {
            Self::Empty => Poll::Ready(None),
            Self::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Self::Payload {
                payload,
                length,
                limit,
                read,
                over_limit,
                uploaded,
            } => match ready!(Pin::new(payload).poll_next(cx)) {
                None => {
                    uploaded.set(true);
                    Poll::Ready(None)
                }
                Some(Err(e)) => Poll::Ready(Some(Err(std::io::Error::other(e.to_string())))),
                Some(Ok(chunk)) => {
                    *read += chunk.len() as u64;
                    if *read > *limit {
                        over_limit.set(true);
                        return Poll::Ready(Some(Err(std::io::Error::other(
                            "request body over the size limit",
                        ))));
                    }
                    if length.is_some_and(|length| *read >= length) {
                        uploaded.set(true);
                    }
                    Poll::Ready(Some(Ok(Frame::data(chunk))))
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Full(bytes) => bytes.is_none(),
            Self::Payload { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Empty => SizeHint::with_exact(0),
            Self::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Self::Payload { .. } => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::FromRequest;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An upstream on a free loopback port that answers every request `ok` (reading heads only:
    /// the tests send no body), keeping the connection unless `close_after_answer`; it counts
    /// the connections it accepted.
    async fn upstream(close_after_answer: bool) -> (url::Url, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = url::Url::parse(&format!(
            "http://{}/base/",
            listener.local_addr().expect("addr")
        ))
        .expect("url");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        actix_web::rt::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                actix_web::rt::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while let Ok(n @ 1..) = stream.read(&mut buf).await {
                        head.extend_from_slice(&buf[..n]);
                        while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                            let request = String::from_utf8_lossy(&head[..end]).into_owned();
                            head.drain(..end + 4);
                            let path = request.split(' ').nth(1).unwrap_or("").to_owned();
                            let answer = format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{path}",
                                path.len()
                            );
                            if stream.write_all(answer.as_bytes()).await.is_err() {
                                return;
                            }
                            if close_after_answer {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (url, accepted)
    }

    fn client(url: &url::Url) -> Client {
        Recipe::new(url, None, Duration::from_secs(5), Duration::from_secs(5), 8)
            .expect("recipe")
            .client()
    }

    async fn get(client: &Client, path: &str) -> (u16, web::Bytes) {
        let answer = client
            .send(
                Method::GET,
                &client.recipe().path(path),
                HeaderMap::new(),
                OutBody::Empty,
            )
            .await
            .expect("answered");
        let status = answer.status();
        (status, answer.read_whole().await.expect("body"))
    }

    #[actix_web::test]
    async fn one_connection_serves_requests_one_after_another() {
        let (url, accepted) = upstream(false).await;
        let client = client(&url);
        for i in 0..5 {
            let (status, body) = get(&client, &format!("/r{i}?q=1")).await;
            assert_eq!(status, 200);
            assert_eq!(body, format!("/base/r{i}?q=1"), "the base path is kept");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[actix_web::test]
    async fn an_upstream_closing_after_each_answer_is_still_answered() {
        let (url, accepted) = upstream(true).await;
        let client = client(&url);
        for _ in 0..5 {
            assert_eq!(get(&client, "/x").await.0, 200);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 5);
    }

    #[actix_web::test]
    async fn nothing_listening_is_a_failure_that_names_the_cause() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = url::Url::parse(&format!("http://{}/", listener.local_addr().expect("addr")))
            .expect("url");
        drop(listener);
        let sent = client(&url)
            .send(Method::GET, "/", HeaderMap::new(), OutBody::Empty)
            .await;
        match sent {
            Err(SendError::Failed(cause)) => assert!(cause.contains("refused"), "{cause}"),
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("answered"),
        }
    }

    #[actix_web::test]
    async fn a_request_body_past_its_limit_fails_and_says_so() {
        let (req, mut payload) = actix_web::test::TestRequest::post()
            .set_payload(web::Bytes::from(vec![b'x'; 100]))
            .to_http_parts();
        let payload = web::Payload::from_request(&req, &mut payload)
            .await
            .expect("payload");
        let over_limit = Rc::new(Cell::new(false));
        let mut body = OutBody::payload(payload, None, 99, over_limit.clone());
        let mut failed = false;
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            failed |= frame.is_err();
        }
        assert!(failed && over_limit.get());
    }

    #[actix_web::test]
    async fn a_connection_still_uploading_is_not_pooled() {
        // The upstream answers on the head alone, as a 401 or 413 does; the upload has sent 10
        // of its declared 100 bytes and waits for more.
        let (url, accepted) = upstream(false).await;
        let client = client(&url);
        let (req, _) = actix_web::test::TestRequest::post().to_http_parts();
        let stalled = futures_util::stream::iter([Ok(web::Bytes::from_static(b"0123456789"))])
            .chain(futures_util::stream::pending());
        let mut stalled: actix_web::dev::Payload = actix_web::dev::Payload::Stream {
            payload: Box::pin(stalled),
        };
        let payload = web::Payload::from_request(&req, &mut stalled)
            .await
            .expect("payload");
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("100"));
        let body = OutBody::payload(payload, Some(100), 1000, Rc::new(Cell::new(false)));
        let answer = client
            .send(Method::POST, "/upload", headers, body)
            .await
            .expect("answered on the head");
        assert_eq!(answer.read_whole().await.expect("body"), "/upload");
        // Pooled, the next request would wait behind the upload until its timeout.
        assert_eq!(get(&client, "/next").await.0, 200);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn recipes_take_the_host_header_and_base_path_from_the_url() {
        let url = url::Url::parse("http://[::1]:8080/api/").expect("url");
        let recipe = Recipe::new(&url, None, Duration::ZERO, Duration::ZERO, 1).expect("recipe");
        assert_eq!(recipe.host, "::1");
        assert_eq!(recipe.authority, "[::1]:8080");
        assert_eq!(recipe.path("/x?y"), "/api/x?y");
        let https = url::Url::parse("https://tasks.internal/").expect("url");
        let refused = Recipe::new(&https, None, Duration::ZERO, Duration::ZERO, 1);
        assert!(refused.is_err(), "https without TLS set up");
        let credentials = url::Url::parse("http://user:pw@tasks.internal/").expect("url");
        let refused = Recipe::new(&credentials, None, Duration::ZERO, Duration::ZERO, 1);
        assert!(refused.is_err(), "credentials in the URL");
    }
}
