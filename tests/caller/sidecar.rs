//! The token sidecar as an app sees it: requests with no token code forwarded with the token
//! manager's token, a 401 answered by one resend for idempotent methods only, upstream and
//! identity-provider failures as problem+json, and the managed-identity endpoint the Azure SDKs
//! speak. Wiremock plays the identity provider and the upstream, on a manual clock.

use caller_service::settings::SidecarUpstreamSettings;
use mesh_tests::caller::*;
use mesh_tests::{python_get, python3_or_skip};
use shared::clock::Clock as _;
use std::time::Duration;
use wiremock::matchers::{body_string, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const IDENTITY_HEADER: &str = "sidecar-test-identity-header-0001";

/// The daemon with the sidecar forwarding `/tasks/…` to the wiremock API (timeout `timeout_secs`)
/// and `/gone/…` to a port nobody listens on, and serving `api://tasks-api` on `/msi/token`;
/// `mount` sets up the identity provider.
async fn sidecar_app<F, Fut>(timeout_secs: u64, mount: F) -> TestApp
where
    F: FnOnce(MockServer) -> Fut,
    Fut: std::future::Future<Output = MockServer>,
{
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    spawn_app(
        move |settings, api| {
            settings.token_manager.refresh_jitter_fraction = 0.0;
            settings.sidecar.port = 0;
            settings.sidecar.upstreams = vec![
                SidecarUpstreamSettings {
                    name: "tasks".into(),
                    url: api.to_owned(),
                    scope: SCOPE.into(),
                    timeout_secs,
                },
                SidecarUpstreamSettings {
                    name: "gone".into(),
                    url: format!("http://127.0.0.1:{closed}"),
                    scope: SCOPE.into(),
                    timeout_secs,
                },
            ];
            settings.sidecar.resources = vec![API_APP_ID_URI.into()];
            settings.sidecar.identity_header = Some(IDENTITY_HEADER.into());
        },
        mount,
    )
    .await
}

async fn hour_tokens(idp: MockServer) -> MockServer {
    token_request()
        .respond_with(Tokens::lasting(3600))
        .mount(&idp)
        .await;
    idp
}

/// `path` on `app`'s sidecar.
trait SidecarUrl {
    fn sidecar(&self, path: &str) -> String;
}

impl SidecarUrl for TestApp {
    fn sidecar(&self, path: &str) -> String {
        let port = self.sidecar_port.expect("sidecar configured");
        format!("http://127.0.0.1:{port}{path}")
    }
}

fn metric_line<'m>(metrics: &'m str, prefix: &str) -> Option<&'m str> {
    metrics.lines().find(|line| line.starts_with(prefix))
}

#[tokio::test]
async fn forwards_with_the_managers_token_in_place_of_the_apps_own() {
    let mut app = sidecar_app(30, hour_tokens).await;
    tasks_with_token(0)
        .and(query_param("page", "2"))
        .and(header("x-app-header", "kept"))
        .respond_with(ResponseTemplate::new(200).set_body_string("[]"))
        .expect(1)
        .mount(&app.api)
        .await;
    let response = app
        .http
        .get(app.sidecar("/tasks/tasks?page=2"))
        .header("authorization", "Bearer the-apps-own-stale-token")
        .header("x-app-header", "kept")
        .send()
        .await
        .expect("sidecar answers");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), "[]");
    let (_, metrics) = app.get("/metrics").await;
    assert_eq!(
        metric_line(&metrics, "caller_sidecar_authorization_replaced_total"),
        Some(r#"caller_sidecar_authorization_replaced_total{upstream="tasks"} 1"#)
    );
    assert_eq!(
        metric_line(&metrics, "caller_sidecar_requests_total"),
        Some(r#"caller_sidecar_requests_total{status="200",upstream="tasks"} 1"#)
    );
    app.shut_down().await;
    app.api.verify().await;
}

#[tokio::test]
async fn an_unknown_upstream_is_404_naming_the_known_ones() {
    let mut app = sidecar_app(30, hour_tokens).await;
    let response = app
        .http
        .get(app.sidecar("/billing/x"))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 404);
    let problem: serde_json::Value = response.json().await.expect("json");
    assert_eq!(problem["reason"], "unknown_upstream");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("tasks")),
        "{problem}"
    );
    assert_eq!(received(&app.api).await, 0);
    app.shut_down().await;
}

#[tokio::test]
async fn a_401_is_resent_once_with_a_new_token_for_a_get_and_never_for_a_post() {
    let mut app = sidecar_app(30, hour_tokens).await;
    tasks_with_token(0)
        .respond_with(invalid_token())
        .expect(1)
        .mount(&app.api)
        .await;
    tasks_with_token(1)
        .respond_with(ResponseTemplate::new(200).set_body_string("[]"))
        .expect(1)
        .mount(&app.api)
        .await;
    let get = app
        .http
        .get(app.sidecar("/tasks/tasks"))
        .send()
        .await
        .expect("answers");
    assert_eq!(get.status(), 200, "resent with the new token");

    // The new token is refused too, now for a POST: passed back, not resent.
    app.clock.advance(Duration::from_secs(60));
    Mock::given(method("POST"))
        .and(path("/tasks"))
        .respond_with(invalid_token())
        .expect(1)
        .mount(&app.api)
        .await;
    let post = app
        .http
        .post(app.sidecar("/tasks/tasks"))
        .body(r#"{"title":"once"}"#)
        .header("content-type", "application/json")
        .send()
        .await
        .expect("answers");
    assert_eq!(post.status(), 401);
    assert!(
        post.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("invalid_token")),
        "the upstream's challenge reaches the app"
    );
    let (_, metrics) = app.get("/metrics").await;
    assert_eq!(
        metric_line(&metrics, "caller_sidecar_token_retries_total"),
        Some(r#"caller_sidecar_token_retries_total{upstream="tasks"} 1"#),
        "the GET was resent, the POST was not"
    );
    // The POST's 401 dropped the refused token all the same: the next request gets a new one.
    eventually("a third token, after the POST's 401", || async {
        app.metrics.idp_requests.with_label_values(&["200"]).get() == 3
    })
    .await;
    app.shut_down().await;
    app.api.verify().await;
}

#[tokio::test]
async fn a_small_put_body_is_sent_again_with_the_new_token() {
    let mut app = sidecar_app(30, hour_tokens).await;
    for (n, answer) in [(0, invalid_token()), (1, ResponseTemplate::new(204))] {
        Mock::given(method("PUT"))
            .and(path("/tasks/7"))
            .and(header(
                "authorization",
                format!("Bearer {}", fake_jwt(n)).as_str(),
            ))
            .and(body_string(r#"{"title":"same"}"#))
            .respond_with(answer)
            .expect(1)
            .mount(&app.api)
            .await;
    }
    let put = app
        .http
        .put(app.sidecar("/tasks/tasks/7"))
        .body(r#"{"title":"same"}"#)
        .send()
        .await
        .expect("answers");
    assert_eq!(put.status(), 204);
    app.shut_down().await;
    app.api.verify().await;
}

#[tokio::test]
async fn a_head_answer_keeps_the_upstreams_length() {
    let mut app = sidecar_app(30, hour_tokens).await;
    Mock::given(method("HEAD"))
        .and(path("/files/report.csv"))
        .respond_with(ResponseTemplate::new(200).set_body_string("a,b,c\n1,2,3\n"))
        .expect(1)
        .mount(&app.api)
        .await;
    let response = app
        .http
        .head(app.sidecar("/tasks/files/report.csv"))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok()),
        Some("12"),
        "the length a GET would get"
    );
    app.shut_down().await;
    app.api.verify().await;
}

#[tokio::test]
async fn web_pages_and_rebound_names_are_refused() {
    let mut app = sidecar_app(30, hour_tokens).await;
    for (name, value, reason) in [
        ("origin", "https://evil.example", "browser_request"),
        ("sec-fetch-site", "cross-site", "browser_request"),
        ("host", "evil.example:9091", "host_not_loopback"),
    ] {
        let response = app
            .http
            .post(app.sidecar("/tasks/tasks"))
            .header(name, value)
            .body("{}")
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), 403, "{name}");
        let problem: serde_json::Value = response.json().await.expect("json");
        assert_eq!(problem["reason"], reason, "{name}");
    }
    let localhost = app
        .http
        .get(app.sidecar("/tasks/tasks"))
        .header("host", "localhost")
        .send()
        .await
        .expect("answers");
    assert_eq!(
        localhost.status(),
        404,
        "let through to the (unmocked) upstream"
    );
    assert_eq!(
        received(&app.api).await,
        1,
        "only the localhost request went on"
    );
    app.shut_down().await;
}

#[tokio::test]
async fn a_403_is_a_decision_passed_back_untouched() {
    let mut app = sidecar_app(30, hour_tokens).await;
    Mock::given(method("DELETE"))
        .and(path("/tasks/7"))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("www-authenticate", r#"Bearer error="insufficient_scope""#)
                .set_body_string(r#"{"reason":"missing_role"}"#),
        )
        .expect(1)
        .mount(&app.api)
        .await;
    let response = app
        .http
        .delete(app.sidecar("/tasks/tasks/7"))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 403);
    assert_eq!(
        response.text().await.expect("body"),
        r#"{"reason":"missing_role"}"#
    );
    let (_, metrics) = app.get("/metrics").await;
    assert_eq!(
        metric_line(&metrics, "caller_idp_requests_total"),
        Some(r#"caller_idp_requests_total{status="200"} 1"#),
        "a 403 drops no token"
    );
    app.shut_down().await;
    app.api.verify().await;
}

#[tokio::test]
async fn a_slow_upstream_is_504_and_one_not_listening_502() {
    let mut app = sidecar_app(1, hour_tokens).await;
    tasks_with_token(0)
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .mount(&app.api)
        .await;
    let slow = app
        .http
        .get(app.sidecar("/tasks/tasks"))
        .send()
        .await
        .expect("answers");
    assert_eq!(slow.status(), 504);
    let problem: serde_json::Value = slow.json().await.expect("json");
    assert_eq!(problem["reason"], "upstream_timeout");

    let gone = app
        .http
        .get(app.sidecar("/gone/tasks"))
        .send()
        .await
        .expect("answers");
    assert_eq!(gone.status(), 502);
    assert_eq!(
        gone.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let problem: serde_json::Value = gone.json().await.expect("json");
    assert_eq!(problem["reason"], "upstream_unavailable");
    app.shut_down().await;
}

#[tokio::test]
async fn no_token_to_be_had_is_503_naming_the_aadsts_error() {
    let mut app = sidecar_app(30, |idp| async move {
        token_request()
            .respond_with(entra_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided.",
            ))
            .mount(&idp)
            .await;
        idp
    })
    .await;
    let response = app
        .http
        .get(app.sidecar("/tasks/tasks"))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let problem: serde_json::Value = response.json().await.expect("json");
    assert_eq!(problem["reason"], "no_token");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("AADSTS7000215")),
        "{problem}"
    );
    assert_eq!(received(&app.api).await, 0, "nothing sent without a token");
    app.shut_down().await;
}

#[tokio::test]
async fn fifty_concurrent_apps_from_a_cold_start_cost_one_token_request() {
    let mut app = sidecar_app(30, |idp| async move {
        expect_token_requests(&idp, 1).await;
        idp
    })
    .await;
    tasks_with_token(0)
        .respond_with(ResponseTemplate::new(200))
        .expect(50)
        .mount(&app.api)
        .await;
    let requests = (0..50).map(|_| {
        let http = app.http.clone();
        let url = app.sidecar("/tasks/tasks");
        tokio::spawn(async move { http.get(url).send().await.map(|r| r.status().as_u16()) })
    });
    for request in requests {
        assert_eq!(request.await.expect("joins").expect("answers"), 200);
    }
    app.shut_down().await;
    app.idp.verify().await;
    app.api.verify().await;
}

#[tokio::test]
async fn a_python_client_rides_an_identity_provider_outage_until_the_safety_margin() {
    let Some(python) = python3_or_skip() else {
        return;
    };
    let mut app = sidecar_app(30, one_token_then_unavailable).await;
    tasks_with_token(0)
        .respond_with(ResponseTemplate::new(200))
        .mount(&app.api)
        .await;
    let url = app.sidecar("/tasks/tasks");
    let t0 = app.clock.now();
    let ask = |url: String| {
        let python = python.clone();
        tokio::task::spawn_blocking(move || python_get(&python, &url))
    };
    assert_eq!(ask(url.clone()).await.expect("joins"), 200);

    // Past the refresh point (half-life) the identity provider answers 503 to every refresh.
    let mut events = app.tokens.subscribe();
    sleepers(&app.clock, 1).await;
    app.clock.advance(Duration::from_secs(1800));
    next_event(&mut events, is_failed).await;
    // Every 5 minutes of the outage, then just inside the safety margin (expiry − 60 s).
    let mut answered = 0;
    for step in [0, 300, 300, 300, 300, 300, 239] {
        app.clock.advance(Duration::from_secs(step));
        let elapsed = app.clock.now() - t0;
        assert_eq!(ask(url.clone()).await.expect("joins"), 200, "at {elapsed}");
        answered += 1;
    }

    // Past the safety margin no token can be served any more.
    app.clock.advance(Duration::from_secs(2));
    assert_eq!(ask(url).await.expect("joins"), 503, "at 59 min 1 s");
    let refused = app.metrics.idp_requests.with_label_values(&["503"]).get();
    assert!(refused >= 1, "refresh attempts were made and refused");
    println!(
        "resilience: sidecar through an idp outage: a Python client (urllib, no token code) got \
         {answered} of {answered} answers 200 through the sidecar from the refresh point (30 min) to \
         58 min 59 s of a 60 min token while {refused} refresh attempts were refused (503); at \
         59 min 1 s, past the 60 s safety margin, 503 no_token"
    );
    app.shut_down().await;
}

/// `GET /msi/token` as the Azure SDKs send it, with `header` as `X-IDENTITY-HEADER`.
async fn identity_request(
    app: &TestApp,
    query: &str,
    identity_header: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut request = app
        .http
        .get(app.sidecar(&format!("/msi/token?{query}")))
        .header("metadata", "true");
    if let Some(value) = identity_header {
        request = request.header("x-identity-header", value);
    }
    let response = request.send().await.expect("answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

#[tokio::test]
async fn the_managed_identity_endpoint_answers_as_app_service_does() {
    let mut app = sidecar_app(30, hour_tokens).await;
    let resource = format!("resource={API_APP_ID_URI}&api-version=2019-08-01");
    let (status, body) = identity_request(&app, &resource, Some(IDENTITY_HEADER)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["access_token"], fake_jwt(0));
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["resource"], API_APP_ID_URI);
    assert_eq!(body["client_id"], READER_ID);
    let expires_on = body["expires_on"]
        .as_str()
        .expect("a string, as the SDKs parse it");
    let expected = app.clock.now().unix_timestamp() + 3600;
    let expires_on: i64 = expires_on.parse().expect("epoch seconds");
    assert!(
        (expected - 2..=expected).contains(&expires_on),
        "{expires_on} vs {expected}"
    );

    let own = format!("{resource}&client_id={READER_ID}");
    assert_eq!(
        identity_request(&app, &own, Some(IDENTITY_HEADER)).await.0,
        200
    );
    let trailing_slash = format!("resource={API_APP_ID_URI}/&api-version=2019-08-01");
    assert_eq!(
        identity_request(&app, &trailing_slash, Some(IDENTITY_HEADER))
            .await
            .0,
        200
    );

    for (query, header, status, words) in [
        (resource.as_str(), None, 401, "X-IDENTITY-HEADER"),
        (
            resource.as_str(),
            Some("sidecar-test-identity-header-0002"),
            401,
            "X-IDENTITY-HEADER",
        ),
        (
            "resource=https://vault.azure.net&api-version=2019-08-01",
            Some(IDENTITY_HEADER),
            400,
            "https://vault.azure.net is not served",
        ),
        (
            &format!("resource={API_APP_ID_URI}&api-version=2017-09-01"),
            Some(IDENTITY_HEADER),
            400,
            "2017-09-01 is not supported",
        ),
        (
            &format!("{resource}&client_id=00000000-0000-0000-0000-000000000001"),
            Some(IDENTITY_HEADER),
            400,
            "client_id 00000000-0000-0000-0000-000000000001",
        ),
        (
            &format!(
                "{resource}&object_id=00000000-0000-0000-0000-000000000001&client_id={READER_ID}"
            ),
            Some(IDENTITY_HEADER),
            400,
            "at most once",
        ),
    ] {
        let (got, body) = identity_request(&app, query, header).await;
        assert_eq!(got, status, "{query}: {body}");
        assert_eq!(body["statusCode"], status);
        assert!(
            body["message"].as_str().is_some_and(|m| m.contains(words)),
            "{query}: {body}"
        );
        assert!(body.get("access_token").is_none());
    }
    let (_, metrics) = app.get("/metrics").await;
    for line in [
        r#"caller_sidecar_identity_requests_total{result="ok"} 3"#,
        r#"caller_sidecar_identity_requests_total{result="wrong_header"} 2"#,
        r#"caller_sidecar_identity_requests_total{result="unknown_resource"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    app.shut_down().await;
}

#[tokio::test]
async fn readyz_waits_for_the_sidecars_scopes() {
    let mut app = sidecar_app(30, hour_tokens).await;
    eventually("/readyz answers 200", || async {
        app.readyz().await.0 == 200
    })
    .await;
    let (_, body) = app.readyz().await;
    assert_eq!(body["scopes"][0]["scope"], SCOPE, "{body}");
    assert_eq!(body["scopes"].as_array().map(Vec::len), Some(1), "{body}");
    app.shut_down().await;
}

#[tokio::test]
async fn an_https_upstream_is_trusted_through_the_extra_ca() {
    init_logs();
    let dir = TempDir::new("sidecar-tls");
    let idp = hour_tokens(MockServer::start().await).await;
    let api = MockServer::start().await;
    tasks_with_token(0)
        .respond_with(ResponseTemplate::new(200).set_body_string("[]"))
        .expect(1)
        .mount(&api)
        .await;
    // Both behind TLS fronts signed by one development CA: the only extra trust configured.
    let (idp_port, ca) = tls_front(*idp.address(), &dir).await;
    let (api_port, _) = tls_front(*api.address(), &dir).await;
    let mut settings = caller_service::settings::Settings {
        identity: caller_service::settings::IdentityConfig {
            tenant_id: Some(TENANT.into()),
            client_id: Some(READER_ID.into()),
            client_secret: Some(READER_SECRET.into()),
            authority_host: Some(format!("https://localhost:{idp_port}")),
            ..Default::default()
        },
        ..Default::default()
    };
    settings.http.extra_ca_file = Some(ca);
    settings.server.port = 0;
    settings.server.handle_signals = false;
    settings.sidecar.port = 0;
    settings.sidecar.upstreams = vec![SidecarUpstreamSettings {
        name: "secure".into(),
        url: format!("https://localhost:{api_port}"),
        scope: SCOPE.into(),
        timeout_secs: 10,
    }];
    let clock = std::sync::Arc::new(shared::clock::ManualClock::new(start_time()));
    let app = caller_service::Application::build_with_clock(settings, clock)
        .await
        .expect("builds");
    let port = app.sidecar_port().expect("sidecar");
    let stop = app.shutdown_handle();
    let running = tokio::spawn(app.run_until_stopped());
    let response = reqwest::get(format!("http://127.0.0.1:{port}/secure/tasks"))
        .await
        .expect("answers");
    assert_eq!(response.status(), 200);
    stop.shutdown();
    running.await.expect("joins").expect("stops cleanly");
    api.verify().await;
}
