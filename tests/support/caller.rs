//! The caller under test: its token manager, jobs and whole daemon against wiremock as the token
//! endpoint (behind a small TLS front, because `azure_identity` refuses plain-HTTP authorities)
//! and as the target API, on a manual clock; and the one log subscriber of a test binary, with
//! per-test capture.

pub use crate::demo::*;
pub use crate::{TempDir, eventually};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use caller_service::Core;
use caller_service::idp::AcquireError;
use caller_service::settings::{CredentialKind, IdentityConfig, Settings};
use caller_service::token_manager::{TokenEvent, Trigger};
use shared::clock::ManualClock;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The demo tenant's v2 token endpoint path.
pub fn token_path() -> String {
    format!("/{TENANT}/oauth2/v2.0/token")
}

/// TLS on 127.0.0.1, bytes passed through to `target`: makes a wiremock server reachable as an
/// `https://` authority. Returns the port and the CA to trust.
pub async fn tls_front(target: std::net::SocketAddr, dir: &TempDir) -> (u16, PathBuf) {
    let ca_path = dir.0.join("ca.pem");
    let pki = entra_emulator::tls::load_or_create(
        &dir.0.join("tls"),
        &["localhost".to_owned(), "127.0.0.1".to_owned()],
        &ca_path,
    )
    .expect("dev PKI");
    let mut config = (*pki.server_config).clone();
    // wiremock speaks HTTP/1.1 only; the bytes are passed through unchanged.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut upstream) = TcpStream::connect(target).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
            });
        }
    });
    (port, ca_path)
}

/// An unsigned JWT-shaped app token: enough for kind and fingerprint, never verified here.
pub fn fake_jwt(n: u32) -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"RS256"}"#);
    let claims = serde_json::json!({
        "aud": API_CLIENT_ID, "iss": "https://idp/v2.0", "exp": 0,
        "idtyp": "app", "oid": "sp", "sub": "sp", "ver": "2.0", "uti": format!("token-{n}"),
    });
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{claims}.c2ln")
}

/// A token endpoint answering a new token per request.
pub struct Tokens {
    pub lifetime: u64,
    issued: AtomicU32,
    delay: Option<Duration>,
}

impl Tokens {
    pub fn lasting(lifetime: u64) -> Self {
        Self {
            lifetime,
            issued: AtomicU32::new(0),
            delay: None,
        }
    }

    /// Numbers its tokens from `first` (tokens from different mocks stay distinct).
    pub fn numbered_from(self, first: u32) -> Self {
        Self {
            issued: AtomicU32::new(first),
            ..self
        }
    }

    /// Answers only after 10 minutes of real time: a hung identity provider.
    pub fn hanging(self) -> Self {
        Self {
            delay: Some(Duration::from_secs(600)),
            ..self
        }
    }
}

impl Respond for Tokens {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.issued.fetch_add(1, Ordering::SeqCst);
        let response = ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "token_type": "Bearer",
            "expires_in": self.lifetime,
            "ext_expires_in": self.lifetime,
            "access_token": fake_jwt(n),
        }));
        match self.delay {
            Some(delay) => response.set_delay(delay),
            None => response,
        }
    }
}

pub fn token_request() -> wiremock::MockBuilder {
    Mock::given(method("POST")).and(path(token_path()))
}

/// The token endpoint of `idp` issuing hour-long tokens, expecting exactly `requests` requests
/// (checked when the server is verified or dropped): the count is what most tests assert.
pub async fn expect_token_requests(idp: &MockServer, requests: u64) {
    token_request()
        .respond_with(Tokens::lasting(3600))
        .expect(requests)
        .mount(idp)
        .await;
}

/// The token endpoint of `idp` issuing one hour-long token, then answering 503 to every request:
/// an identity provider that goes down after the first acquisition.
pub async fn one_token_then_unavailable(idp: MockServer) -> MockServer {
    token_request()
        .respond_with(Tokens::lasting(3600))
        .up_to_n_times(1)
        .mount(&idp)
        .await;
    token_request()
        .respond_with(ResponseTemplate::new(503))
        .mount(&idp)
        .await;
    idp
}

/// `GET /tasks` on the target API, sent with the `n`-th token [`Tokens`] issued.
pub fn tasks_with_token(n: u32) -> wiremock::MockBuilder {
    Mock::given(method("GET")).and(path("/tasks")).and(header(
        "authorization",
        format!("Bearer {}", fake_jwt(n)).as_str(),
    ))
}

pub fn entra_error(status: u16, error: &str, code: u32, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(serde_json::json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {message}\r\nTrace ID: 0000aaaa\r\nCorrelation ID: aaaa0000\r\nTimestamp: 2026-11-21 08:00:00Z"),
        "error_codes": [code],
    }))
}

pub struct TestCaller {
    pub idp: MockServer,
    pub api: MockServer,
    pub clock: Arc<ManualClock>,
    pub core: Core,
    _dir: TempDir,
}

pub fn start_time() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// The caller with a client secret, signing in at `idp` through a TLS front (its CA in `dir`).
async fn secret_caller_settings(idp: &MockServer, dir: &TempDir) -> Settings {
    let (port, ca) = tls_front(*idp.address(), dir).await;
    let mut settings = Settings {
        identity: IdentityConfig {
            tenant_id: Some(TENANT.into()),
            client_id: Some(READER_ID.into()),
            client_secret: Some(READER_SECRET.into()),
            credential: Some(CredentialKind::Secret),
            authority_host: Some(format!("https://localhost:{port}")),
            ..Default::default()
        },
        ..Default::default()
    };
    settings.http.extra_ca_file = Some(ca);
    settings.server.port = 0;
    settings
}

/// The token manager and job runner from valid `settings`, on a manual clock.
pub fn core_for(settings: &Settings) -> (Core, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(start_time()));
    let (identity, _) = settings.validate().expect("valid settings");
    let core = Core::build(settings, identity, clock.clone()).expect("core");
    (core, clock)
}

/// The caller with a client secret, wiremock as identity provider and as target API.
pub async fn spawn_caller(customise: impl FnOnce(&mut Settings)) -> TestCaller {
    init_logs();
    let dir = TempDir::new("caller");
    let idp = MockServer::start().await;
    let api = MockServer::start().await;
    let mut settings = secret_caller_settings(&idp, &dir).await;
    customise(&mut settings);
    let (core, clock) = core_for(&settings);
    TestCaller {
        idp,
        api,
        clock,
        core,
        _dir: dir,
    }
}

/// How many requests `server` has received.
pub async fn received(server: &MockServer) -> usize {
    server.received_requests().await.map_or(0, |r| r.len())
}

/// Waits (without sleeping) until `n` tasks are waiting on the clock.
pub async fn sleepers(clock: &ManualClock, n: usize) {
    eventually(&format!("{n} tasks wait on the clock"), || async {
        clock.sleepers() >= n
    })
    .await;
}

/// The next event matching `wanted`, other events skipped; 10 s safety net as above.
pub async fn next_event(
    events: &mut broadcast::Receiver<TokenEvent>,
    wanted: impl Fn(&TokenEvent) -> bool,
) -> TokenEvent {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let event = events.recv().await.expect("event stream open");
            if wanted(&event) {
                return event;
            }
        }
    })
    .await
    .expect("event within 10 s")
}

/// A [`TokenEvent::Failed`], unpacked.
pub struct Failure {
    pub error: AcquireError,
    pub next_attempt_in: Duration,
    pub trigger: Trigger,
}

/// The next failed acquisition (by `trigger` when given), other events skipped.
pub async fn next_failure(
    events: &mut broadcast::Receiver<TokenEvent>,
    trigger: Option<Trigger>,
) -> Failure {
    let wanted = |event: &TokenEvent| match event {
        TokenEvent::Failed { trigger: t, .. } => trigger.is_none_or(|wanted| *t == wanted),
        _ => false,
    };
    match next_event(events, wanted).await {
        TokenEvent::Failed {
            error,
            next_attempt_in,
            trigger,
            ..
        } => Failure {
            error,
            next_attempt_in,
            trigger,
        },
        _ => unreachable!("only failures are wanted"),
    }
}

pub fn is_acquired(event: &TokenEvent) -> bool {
    matches!(event, TokenEvent::Acquired { .. })
}

pub fn is_failed(event: &TokenEvent) -> bool {
    matches!(event, TokenEvent::Failed { .. })
}

/// The whole daemon (`Application`) against wiremock, running until `stop`.
pub struct TestApp {
    pub idp: MockServer,
    pub api: MockServer,
    pub clock: Arc<ManualClock>,
    pub port: u16,
    /// The token sidecar's port, when the settings configure one.
    pub sidecar_port: Option<u16>,
    pub tokens: caller_service::token_manager::TokenManager,
    pub metrics: caller_service::metrics::Metrics,
    pub stop: caller_service::startup::ShutdownHandle,
    pub running: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub http: reqwest::Client,
    _dir: TempDir,
}

/// Mount the identity provider's mocks in `before_start`: the daemon acquires at once.
pub async fn spawn_app<F, Fut>(
    customise: impl FnOnce(&mut Settings, &str),
    before_start: F,
) -> TestApp
where
    F: FnOnce(MockServer) -> Fut,
    Fut: std::future::Future<Output = MockServer>,
{
    init_logs();
    let dir = TempDir::new("caller");
    let idp = before_start(MockServer::start().await).await;
    let api = MockServer::start().await;
    let mut settings = secret_caller_settings(&idp, &dir).await;
    customise(&mut settings, &api.uri());
    let clock = Arc::new(ManualClock::new(start_time()));
    let app = caller_service::Application::build_with_clock(settings, clock.clone())
        .await
        .expect("builds");
    TestApp {
        idp,
        port: app.port(),
        sidecar_port: app.sidecar_port(),
        tokens: app.tokens().clone(),
        metrics: app.metrics().clone(),
        stop: app.shutdown_handle(),
        running: Some(tokio::spawn(app.run_until_stopped())),
        api,
        clock,
        http: reqwest::Client::new(),
        _dir: dir,
    }
}

impl TestApp {
    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = self
            .http
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .send()
            .await
            .expect("operator endpoint answers");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    pub async fn readyz(&self) -> (u16, serde_json::Value) {
        let (status, body) = self.get("/readyz").await;
        (status, serde_json::from_str(&body).expect("json"))
    }

    /// Stops the daemon as SIGTERM would and waits for it to return.
    pub async fn shut_down(&mut self) {
        self.stop.shutdown();
        let running = self.running.take().expect("running");
        running.await.expect("joins").expect("stops cleanly");
    }
}

/// [`interval_job`] for `GET url`, validated as the daemon would.
pub fn job(name: &str, url: &str) -> caller_service::job::Job {
    interval_job(name, url.into())
        .validate()
        .expect("valid job")
}

/// The target API refusing the token: 401 with an RFC 6750 `invalid_token` challenge.
pub fn invalid_token() -> ResponseTemplate {
    ResponseTemplate::new(401).insert_header(
        "WWW-Authenticate",
        r#"Bearer error="invalid_token", error_description="The token has been revoked""#,
    )
}

pub fn interval_job(name: &str, url: String) -> caller_service::settings::JobSettings {
    caller_service::settings::JobSettings {
        name: name.into(),
        schedule: None,
        interval_secs: Some(60),
        jitter_secs: 0,
        method: "GET".into(),
        url,
        body: None,
        scope: SCOPE.into(),
        timeout_secs: 30,
        success_status: vec![],
        overlap: caller_service::settings::OverlapPolicy::Skip,
        retry: true,
        external_id_field: None,
    }
}

thread_local! {
    static CAPTURE: std::cell::RefCell<Option<Arc<std::sync::Mutex<Vec<u8>>>>> =
        const { std::cell::RefCell::new(None) };
}

/// One global subscriber at TRACE for the whole test binary, writing to the capture buffer of
/// the current thread if a test set one, else to stderr when `TEST_LOG` is set, else nowhere.
/// Why not `tracing::subscriber::set_default` in the capturing test: tracing caches per-callsite
/// interest globally, and a test thread without a subscriber can cache "never" for a callsite the
/// capturing test then silently misses.
pub fn init_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let print = std::env::var_os("TEST_LOG").is_some();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || Router { print })
            .try_init();
    });
}

struct Router {
    print: bool,
}

impl std::io::Write for Router {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let captured = CAPTURE.with(|c| match &*c.borrow() {
            Some(buffer) => {
                buffer.lock().expect("lock").extend_from_slice(bytes);
                true
            }
            None => false,
        });
        if !captured && self.print {
            eprint!("{}", String::from_utf8_lossy(bytes));
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures every log line written on this thread until dropped.
pub struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    pub fn start() -> Self {
        init_logs();
        let buffer = Arc::new(std::sync::Mutex::new(Vec::new()));
        CAPTURE.with(|c| *c.borrow_mut() = Some(buffer.clone()));
        Self(buffer)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

impl Drop for Captured {
    fn drop(&mut self) {
        CAPTURE.with(|c| *c.borrow_mut() = None);
    }
}
