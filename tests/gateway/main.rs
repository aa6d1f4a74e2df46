//! The gateway in front of a service that is not Rust: a Python standard-library app that echoes
//! what it receives, with tokens from the real emulator. Once as a reverse proxy, once behind a
//! real nginx with `auth_request` (Debian's package; `.ci/run` installs it, and sets
//! `REQUIRE_NGINX=1` and `REQUIRE_PYTHON=1` so that a missing nginx or python3 fails there
//! instead of being skipped).

use mesh_tests::api::challenge_error;
use mesh_tests::demo::*;
use mesh_tests::emulator::{Emulator, spawn_emulator_with};
use mesh_tests::{ManualClock, TempDir};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// The Python echo app on a free port; killed on drop.
struct EchoApp {
    child: Child,
    url: String,
}

impl EchoApp {
    fn start(python: &std::path::Path) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/gateway/echo_app.py");
        let mut child = Command::new(python)
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the echo app");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the echo app prints its port");
        let port: u16 = line.trim().parse().expect("a port number");
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for EchoApp {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Setup {
    clock: Arc<ManualClock>,
    emulator: Emulator,
    app: EchoApp,
    gateway: String,
    http: reqwest::Client,
}

/// The policy both tests use: reading under /echo takes either task role, writing the writer's.
const ROUTES: &str = r#"
[[routes]]
method = "GET"
path = "/echo/**"
roles = ["Tasks.Read.All", "Tasks.ReadWrite.All"]
[[routes]]
method = "POST"
path = "/echo/**"
roles = ["Tasks.ReadWrite.All"]
[[routes]]
method = "POST"
path = "/echo-body"
roles = ["Tasks.ReadWrite.All"]
[[routes]]
method = "GET"
path = "/hang"
any_allowed_app = true
"#;

async fn setup(python: &std::path::Path) -> Setup {
    shared::telemetry::init_for_tests();
    let clock = Arc::new(ManualClock::at_system_time());
    let emulator = spawn_emulator_with(clock.clone(), |s| s.admin.enabled = true).await;
    let app = EchoApp::start(python);
    let routes: entra_gateway::GatewaySettings = toml::from_str(ROUTES).expect("routes parse");
    let mut settings = entra_gateway::GatewaySettings {
        routes: routes.routes,
        ..Default::default()
    };
    settings.server.port = 0;
    settings.server.workers = Some(1);
    settings.server.handle_signals = false;
    settings.entra.authority_host = emulator.url.clone();
    settings.entra.tenants = vec![TENANT.to_owned()];
    settings.http.extra_ca_file = Some(emulator.ca.clone());
    settings.auth.audiences = vec![API_CLIENT_ID.to_owned(), API_APP_ID_URI.to_owned()];
    settings.auth.allowed_clients = vec![READER_ID.to_owned(), WRITER_ID.to_owned()];
    settings.upstream = Some(entra_gateway::settings::UpstreamSettings {
        url: app.url.clone(),
        timeout_secs: 1,
        ..Default::default()
    });
    let gateway = entra_gateway::Gateway::build_with_clock(settings, clock.clone())
        .await
        .expect("gateway starts");
    let url = format!("http://{}", gateway.address());
    tokio::spawn(gateway.run_until_stopped());
    Setup {
        clock,
        emulator,
        app,
        gateway: url,
        http: reqwest::Client::new(),
    }
}

async fn get(http: &reqwest::Client, url: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = http
        .get(url)
        .header("x-entra-client-id", "spoofed-by-the-client");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("answers")
}

/// The gateway's `/metrics` text.
async fn metrics(http: &reqwest::Client, base: &str) -> String {
    let answer = http.get(format!("{base}/metrics")).send().await;
    answer.expect("metrics").text().await.expect("text")
}

/// Status, the challenge's `error` (None for a bare `Bearer`), and the problem's reason.
async fn refused(response: reqwest::Response) -> (u16, Option<String>, String) {
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().expect("ascii").to_owned())
        .expect("a WWW-Authenticate challenge");
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    let body: Value = response.json().await.expect("problem+json");
    (
        status,
        challenge_error(&challenge),
        body["reason"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The table both gateways must answer alike: `base` is the gateway's or nginx's URL.
async fn the_table(setup: &Setup, base: &str) {
    let http = &setup.http;
    let reader = setup.emulator.app_token(READER_ID, READER_SECRET).await;
    let stranger = setup.emulator.app_token(STRANGER_ID, STRANGER_SECRET).await;
    let user = setup.emulator.user_token().await;

    let seen = get(http, &format!("{base}/echo/reports?x=1"), Some(&reader)).await;
    assert_eq!(seen.status(), 200);
    let seen: Value = seen.json().await.expect("echo");
    let headers = &seen["headers"];
    assert_eq!(headers["x-entra-client-id"], READER_ID, "{seen}");
    assert_eq!(headers["x-entra-tenant-id"], TENANT);
    assert_eq!(headers["x-entra-roles"], "Tasks.Read.All");
    assert_eq!(headers["x-entra-token-version"], "2.0");
    assert_eq!(headers["x-entra-object-id"], READER_SP);
    assert!(
        headers["x-entra-token-id"]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    );
    assert_eq!(seen["path"], "/echo/reports?x=1");
    assert!(
        headers.get("authorization").is_none(),
        "the token stays at the gateway"
    );

    let write = http
        .post(format!("{base}/echo/reports"))
        .bearer_auth(&reader)
        .body("{}")
        .send()
        .await
        .expect("answers");
    assert_eq!(
        refused(write).await,
        (
            403,
            Some("insufficient_scope".into()),
            "missing_role".into()
        )
    );
    assert_eq!(
        refused(get(http, &format!("{base}/echo/x"), Some(&stranger)).await).await,
        (
            403,
            Some("insufficient_scope".into()),
            "client_not_allowed".into()
        )
    );
    assert_eq!(
        refused(get(http, &format!("{base}/echo/x"), Some(&user)).await).await,
        (
            403,
            Some("insufficient_scope".into()),
            "user_delegated_token".into()
        )
    );
    assert_eq!(
        refused(get(http, &format!("{base}/echo/x"), None).await).await,
        (401, None, "missing_token".into())
    );
    assert_eq!(
        refused(get(http, &format!("{base}/undeclared"), Some(&reader)).await).await,
        (
            403,
            Some("insufficient_scope".into()),
            "route_has_no_policy".into()
        )
    );
    assert_eq!(
        refused(
            get(
                http,
                &format!("{base}/echo/%2e%2e/undeclared"),
                Some(&reader)
            )
            .await
        )
        .await,
        (
            403,
            Some("insufficient_scope".into()),
            "route_has_no_policy".into()
        ),
        "an encoded dot-dot borrows no policy"
    );
}

/// An hour and more later the same token is expired.
async fn expired(setup: &Setup, base: &str) {
    let reader = setup.emulator.app_token(READER_ID, READER_SECRET).await;
    setup.clock.advance_secs(2 * 3600);
    assert_eq!(
        refused(get(&setup.http, &format!("{base}/echo/x"), Some(&reader)).await).await,
        (401, Some("invalid_token".into()), "expired".into())
    );
}

#[tokio::test]
async fn the_reverse_proxy_in_front_of_a_python_app() {
    let Some(python) = mesh_tests::python3_or_skip() else {
        return;
    };
    let mut setup = setup(&python).await;
    let base = setup.gateway.clone();
    the_table(&setup, &base).await;

    // 5 MiB up and back down, byte for byte, streamed both ways.
    let writer = setup.emulator.app_token(WRITER_ID, WRITER_SECRET).await;
    let body: Vec<u8> = (0..5 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let echoed = setup
        .http
        .post(format!("{base}/echo-body"))
        .bearer_auth(&writer)
        .body(body.clone())
        .send()
        .await
        .expect("answers");
    assert_eq!(echoed.status(), 200);
    let echoed = echoed.bytes().await.expect("body");
    assert_eq!(echoed.len(), body.len());
    assert!(echoed == body, "byte-identical");

    // A rotation at the emulator: the new key is fetched on demand, no restart.
    let rotated = setup
        .emulator
        .http
        .post(format!("{}/admin/keys/rotate", setup.emulator.url))
        .send()
        .await
        .expect("admin answers");
    assert_eq!(rotated.status(), 200);
    let after = setup.emulator.app_token(READER_ID, READER_SECRET).await;
    assert_eq!(
        get(&setup.http, &format!("{base}/echo/after"), Some(&after))
            .await
            .status(),
        200
    );

    // Upstream hanging: 504 within the 1 s timeout (plus slack), as problem+json.
    let reader = setup.emulator.app_token(READER_ID, READER_SECRET).await;
    let started = std::time::Instant::now();
    let hung = get(&setup.http, &format!("{base}/hang"), Some(&reader)).await;
    assert_eq!(hung.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(10));
    let body: Value = hung.json().await.expect("problem");
    assert_eq!(body["reason"], "upstream_timeout");

    // Upstream stopped: 502.
    setup.app.stop();
    let gone = get(&setup.http, &format!("{base}/echo/x"), Some(&reader)).await;
    assert_eq!(gone.status(), 502);
    let body: Value = gone.json().await.expect("problem");
    assert_eq!(body["reason"], "upstream_unavailable");

    let metrics = metrics(&setup.http, &base).await;
    assert!(
        metrics.contains(
            r#"gateway_decisions_total{mode="proxy",outcome="missing_role",route="POST /echo/**"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"gateway_upstream_responses_total{route="GET /hang",status="504"} 1"#)
    );

    expired(&setup, &base).await;
}

/// nginx's configuration for `auth_request` in front of the app, as the README gives it: the
/// identity headers copied from the gateway's 200, and a refusal asked again of the gateway so
/// that the client gets its status, challenge and problem body.
fn nginx_conf(dir: &std::path::Path, listen: u16, gateway: &str, app: &str) -> String {
    let identity = [
        ("client_id", "X-Entra-Client-Id"),
        ("tenant_id", "X-Entra-Tenant-Id"),
        ("object_id", "X-Entra-Object-Id"),
        ("roles", "X-Entra-Roles"),
        ("token_version", "X-Entra-Token-Version"),
        ("token_id", "X-Entra-Token-Id"),
    ];
    let captured: String = identity
        .iter()
        .map(|(var, header)| {
            format!(
                "      auth_request_set $entra_{var} $upstream_http_{};\n      proxy_set_header {header} $entra_{var};\n",
                header.to_ascii_lowercase().replace('-', "_")
            )
        })
        .collect();
    let dir = dir.display();
    let gateway = gateway.trim_start_matches("http://");
    let app = app.trim_start_matches("http://");
    format!(
        r#"daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  upstream entra_gateway {{ server {gateway}; keepalive 16; }}
  upstream app {{ server {app}; keepalive 16; }}
  server {{
    listen 127.0.0.1:{listen};
    location / {{
      auth_request /_entra_auth;
      error_page 401 403 = @entra_refused;
{captured}      # As the gateway's default: the token stays here, the app gets the identity headers.
      proxy_set_header Authorization "";
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass http://app;
    }}
    location = /_entra_auth {{
      internal;
      proxy_pass http://entra_gateway/forward-auth/nginx;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Original-URI $request_uri;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
    location @entra_refused {{
      rewrite ^ /forward-auth/nginx break;
      proxy_pass http://entra_gateway;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Original-URI $request_uri;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"#
    )
}

fn nginx_binary() -> Option<&'static str> {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|path| std::path::Path::new(path).exists())
}

struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn nginx_auth_request_in_front_of_a_python_app() {
    let Some(nginx) = nginx_binary() else {
        mesh_tests::skip_unless_required(
            "REQUIRE_NGINX",
            "nginx is not installed (apt-get install nginx-light; .ci/run does)",
        );
        return;
    };
    let Some(python) = mesh_tests::python3_or_skip() else {
        return;
    };
    let setup = setup(&python).await;
    let dir = TempDir::new("nginx");
    let port = mesh_tests::free_port();
    let conf = dir.0.join("nginx.conf");
    std::fs::write(
        &conf,
        nginx_conf(&dir.0, port, &setup.gateway, &setup.app.url),
    )
    .expect("write nginx.conf");
    let child = Command::new(nginx)
        .arg("-p")
        .arg(&dir.0)
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(dir.0.join("error.log"))
        .stdout(Stdio::null())
        .spawn()
        .expect("nginx starts");
    let _nginx = Nginx(child);
    let base = format!("http://127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        up,
        "nginx listening: {}",
        std::fs::read_to_string(dir.0.join("error.log")).unwrap_or_default()
    );
    the_table(&setup, &base).await;
    expired(&setup, &base).await;
}

/// Traefik's `forwardAuth` and Envoy's HTTP `ext_authz` (neither packaged by Debian, so not run
/// here): each asks in its own dialect, as their documentation gives it, and the policy is judged
/// on the original request.
#[tokio::test]
async fn traefik_and_envoy_ask_in_their_own_dialects() {
    let Some(python) = mesh_tests::python3_or_skip() else {
        return;
    };
    let setup = setup(&python).await;
    let http = &setup.http;
    let base = &setup.gateway;
    let reader = setup.emulator.app_token(READER_ID, READER_SECRET).await;
    let ask = |method: reqwest::Method, url: String, headers: &[(&'static str, &'static str)]| {
        let mut request = http.request(method, url).bearer_auth(&reader);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    let accepted = |response: reqwest::Response| {
        assert_eq!(response.status(), 200);
        let headers = response.headers();
        assert_eq!(headers["x-entra-client-id"], READER_ID);
        assert_eq!(headers["x-entra-roles"], "Tasks.Read.All");
        assert!(headers.contains_key("x-request-id"));
    };

    let missing_role = || {
        (
            403,
            Some("insufficient_scope".to_owned()),
            "missing_role".to_owned(),
        )
    };

    // Traefik: the original method and URI in X-Forwarded-Method and -Uri, asked with GET.
    let traefik = format!("{base}/forward-auth/traefik");
    let read = [
        ("x-forwarded-method", "GET"),
        ("x-forwarded-uri", "/echo/reports?x=1"),
    ];
    accepted(
        ask(reqwest::Method::GET, traefik.clone(), &read)
            .await
            .expect("answers"),
    );
    let write = [
        ("x-forwarded-method", "POST"),
        ("x-forwarded-uri", "/echo/reports"),
    ];
    assert_eq!(
        refused(
            ask(reqwest::Method::GET, traefik.clone(), &write)
                .await
                .expect("answers")
        )
        .await,
        missing_role()
    );
    let misconfigured = ask(reqwest::Method::GET, traefik, &[])
        .await
        .expect("answers");
    assert_eq!(misconfigured.status(), 500);
    let body: Value = misconfigured.json().await.expect("problem");
    assert_eq!(body["reason"], "forward_auth_misconfigured");

    // Envoy: the original method, and the original path after the prefix.
    accepted(
        ask(
            reqwest::Method::GET,
            format!("{base}/forward-auth/envoy/echo/reports?x=1"),
            &[],
        )
        .await
        .expect("answers"),
    );
    assert_eq!(
        refused(
            ask(
                reqwest::Method::POST,
                format!("{base}/forward-auth/envoy/echo/reports"),
                &[]
            )
            .await
            .expect("answers")
        )
        .await,
        missing_role()
    );
    // The bare prefix, with a slash or a query, is the original `/`, which no rule covers; a
    // path that only starts with the prefix's letters is not Envoy's but proxied, and no rule
    // covers it either (the metrics below tell the two apart by mode).
    for path in ["", "/", "?x=1", "x"] {
        let url = format!("{base}/forward-auth/envoy{path}");
        let answer = ask(reqwest::Method::GET, url, &[]).await.expect("answers");
        assert_eq!(
            refused(answer).await.2,
            "route_has_no_policy",
            "envoy{path}"
        );
    }

    let metrics = metrics(http, base).await;
    for line in [
        r#"gateway_decisions_total{mode="traefik",outcome="accepted",route="GET /echo/**"} 1"#,
        r#"gateway_decisions_total{mode="traefik",outcome="missing_role",route="POST /echo/**"} 1"#,
        r#"gateway_decisions_total{mode="envoy",outcome="accepted",route="GET /echo/**"} 1"#,
        r#"gateway_decisions_total{mode="envoy",outcome="missing_role",route="POST /echo/**"} 1"#,
        r#"gateway_decisions_total{mode="envoy",outcome="route_has_no_policy",route="unmatched"} 3"#,
        r#"gateway_decisions_total{mode="proxy",outcome="route_has_no_policy",route="unmatched"} 1"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
}
