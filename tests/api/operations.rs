//! Health, readiness, metrics, the OpenAPI document and request ids; the API with its
//! PostgreSQL down and back.

use mesh_tests::api::*;
use serde_json::{Value, json};
use wiremock::ResponseTemplate;

#[tokio::test]
async fn not_ready_until_keys_load_then_ready_without_a_restart() {
    let idp = TestIdp::start().await;
    idp.serve_discovery().await;
    let key = TestKey::generate("k1");
    // The identity provider is down when the API starts.
    TestIdp::on_jwks(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .expect(1)
        .mount(&idp.server)
        .await;
    let clock = test_clock();
    let api = spawn_api(&idp, &clock).await;
    assert_eq!(
        api.get("/healthz", None).await.status(),
        200,
        "alive regardless"
    );
    let ready = api.get("/readyz", None).await;
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.expect("json");
    assert_eq!(body["keys"]["state"], "not_loaded");
    assert_eq!(body["store"], "ok");
    assert_eq!(body["database"]["state"], "ok");
    assert_eq!(body["down"], json!(["keys"]));
    // A check can be left out of the verdict, still reported; a check that does not exist is a 400.
    let excluding = api.get("/readyz?exclude=keys", None).await;
    assert_eq!(excluding.status(), 200);
    let body: Value = excluding.json().await.expect("json");
    assert_eq!(
        (&body["down"], &body["excluded"]),
        (&json!(["keys"]), &json!(["keys"]))
    );
    assert_eq!(
        api.get("/readyz?exclude=database", None).await.status(),
        503
    );
    let (status, _, reason) = refusal(api.get("/readyz?exclude=disk", None).await).await;
    assert_eq!((status, reason.as_str()), (400, "malformed_request"));

    let token = key.mint(clock.unix(), |_| {});
    let refused = api.get("/api/whoami", Some(&token)).await;
    assert_eq!(refused.headers()["retry-after"], "30");
    assert!(
        refused.headers().get("www-authenticate").is_none(),
        "not the token's fault"
    );
    let (status, _, reason) = refusal(refused).await;
    assert_eq!((status, reason.as_str()), (503, "keys_unavailable"));

    // The provider recovers; five minutes later a request may fetch again.
    idp.serve_jwks(&[&key], 1).await;
    clock.advance_secs(301);
    let token = key.mint(clock.unix(), |_| {});
    assert_eq!(api.get("/api/whoami", Some(&token)).await.status(), 200);
    assert_eq!(api.get("/readyz", None).await.status(), 200);
}

#[tokio::test]
async fn during_a_jwks_outage_old_keys_serve_until_the_bound_then_fail_closed() {
    let key = TestKey::generate("k1");
    let idp = publishing_once_then_failing(&key).await;
    let clock = test_clock();
    let api = spawn_api(&idp, &clock).await;
    api.validator
        .keys()
        .refresh()
        .await
        .expect_err("the outage begins");

    clock.advance_secs(23 * 3600);
    let token = key.mint(clock.unix(), |_| {});
    assert_eq!(
        api.get("/api/whoami", Some(&token)).await.status(),
        200,
        "last good keys"
    );
    let cached = token.clone();
    let ready = api.get_json("/readyz", None).await;
    assert_eq!(ready["keys"]["state"], "ready");
    assert_eq!(ready["keys"]["age_secs"], 23 * 3600);

    clock.advance_secs(3600 + 1);
    let token = key.mint(clock.unix(), |_| {});
    let (status, _, reason) = refusal(api.get("/api/whoami", Some(&token)).await).await;
    assert_eq!(
        (status, reason.as_str()),
        (503, "keys_unavailable"),
        "fails closed"
    );
    let (status, _, reason) = refusal(api.get("/api/whoami", Some(&cached)).await).await;
    assert_eq!(
        (status, reason.as_str()),
        (503, "keys_unavailable"),
        "a token verified before the bound fails closed too, cached or not"
    );
    let ready = api.get("/readyz", None).await;
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.expect("json");
    assert_eq!(ready["keys"]["state"], "stale");
    let metrics = api.get("/metrics", None).await.text().await.expect("text");
    assert!(metrics.contains("api_jwks_usable 0"), "{metrics}");
}

#[tokio::test]
async fn metrics_count_requests_outcomes_keys_and_cache_hits() {
    let key = TestKey::generate("k1");
    let (_idp, clock, api) = spawn_api_publishing(&key, 1).await;
    let token = key.mint(clock.unix(), |_| {});
    for _ in 0..3 {
        assert_eq!(api.get("/api/whoami", Some(&token)).await.status(), 200);
    }
    assert_eq!(api.get("/api/whoami", None).await.status(), 401);
    for made_up in ["FOO", "BAR"] {
        let method = reqwest::Method::from_bytes(made_up.as_bytes()).expect("method");
        api.request(method, "/healthz", None)
            .send()
            .await
            .expect("answers");
    }
    let response = api.get("/metrics", None).await;
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain")
    );
    let text = response.text().await.expect("text");
    for line in [
        "api_http_requests_total{method=\"GET\",route=\"/api/whoami\",status=\"200\"} 3",
        "api_http_requests_total{method=\"GET\",route=\"/api/whoami\",status=\"401\"} 1",
        "api_auth_outcomes_total{outcome=\"accepted\"} 3",
        "api_auth_outcomes_total{outcome=\"missing_token\"} 1",
        "api_jwks_fetches_total 1",
        "api_jwks_fetch_failures_total 0",
        "api_jwks_age_seconds 0",
        "api_jwks_usable 1",
        "api_token_cache_hits_total 2",
        "api_token_signature_checks_total 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in\n{text}"
        );
    }
    assert!(text.contains("api_http_request_duration_seconds_bucket{route=\"/api/whoami\""));
    assert!(
        !text.contains("FOO") && !text.contains("BAR"),
        "made-up methods are not labels"
    );
    assert!(text.contains("method=\"other\""), "{text}");
}

#[tokio::test]
async fn request_ids_are_echoed_or_made_and_bad_ones_replaced() {
    let (_idp, _clock, api) = spawn_api_publishing(&TestKey::generate("k1"), 1).await;
    let kept = api
        .request(reqwest::Method::GET, "/api/whoami", None)
        .header("x-request-id", "job-42.run_7")
        .send()
        .await
        .expect("answers");
    assert_eq!(kept.headers()["x-request-id"], "job-42.run_7");
    let body: Value = kept.json().await.expect("json");
    assert_eq!(body["request_id"], "job-42.run_7");
    let replaced = api
        .request(reqwest::Method::GET, "/healthz", None)
        .header("x-request-id", "a\"b")
        .send()
        .await
        .expect("answers");
    let id = replaced.headers()["x-request-id"].to_str().expect("ascii");
    assert_eq!(id.len(), 32, "a fresh id: {id}");
}

#[tokio::test]
async fn the_openapi_document_names_the_token_url_and_each_routes_roles() {
    let (idp, _clock, api) = spawn_api_publishing(&TestKey::generate("k1"), 1).await;
    let doc = api.get_json("/openapi.json", None).await;
    let flow = &doc["components"]["securitySchemes"]["entra"]["flows"]["clientCredentials"];
    assert_eq!(
        flow["tokenUrl"],
        format!("{}/{TENANT}/oauth2/v2.0/token", idp.server.uri())
    );
    assert!(
        flow["scopes"].get("api://tasks-api/.default").is_some(),
        "{flow}"
    );
    assert_eq!(
        doc["paths"]["/api/tasks"]["get"]["x-required-app-roles"],
        json!(["Tasks.Read.All", "Tasks.ReadWrite.All"])
    );
    assert_eq!(
        doc["paths"]["/api/tasks"]["post"]["x-required-app-roles"],
        json!(["Tasks.ReadWrite.All"])
    );
    assert_eq!(
        doc["paths"]["/api/whoami"]["get"]["x-required-app-roles"],
        json!([])
    );
}

/// PostgreSQL down at start, then up, then down again, then up, without restarting the API: task
/// routes answer 503 problem+json with `Retry-After` while it is down (nothing acknowledged),
/// `whoami` and body validation keep working, `/readyz` names the database as what is down, and
/// the pool reconnects by itself (the schema migrated when the server first answers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_down_tasks_answer_503_the_rest_works_and_it_recovers_by_itself() {
    let Some(server) = mesh_tests::postgres::PgServer::start() else {
        return;
    };
    let db = Db::Postgres(server.fresh_database().await);
    server.stop_now();

    let key = TestKey::generate("k1");
    let (_idp, clock, api) = spawn_api_publishing_on(&key, 1, &db).await;
    let writer = key.mint(clock.unix(), |c| {
        c["azp"] = json!(WRITER_ID);
        c["roles"] = json!(["Tasks.ReadWrite.All"]);
    });
    let body = json!({ "title": "while it is down", "external_id": "outage-1" });
    let create = || api.send_json(reqwest::Method::POST, "/api/tasks", &writer, &body);
    let unavailable = std::sync::atomic::AtomicU32::new(0);
    let counted = &unavailable;
    let assert_unavailable = move |response: reqwest::Response| async move {
        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(response.headers()["retry-after"], "5");
        let (status, _, reason) = refusal(response).await;
        assert_eq!((status, reason.as_str()), (503, "database_unavailable"));
    };
    let assert_down = |ready: reqwest::Response| async move {
        assert_eq!(ready.status(), 503);
        let body: Value = ready.json().await.expect("json");
        assert_eq!(body["down"], json!(["database"]), "{body}");
        assert_eq!(body["database"]["state"], "unreachable", "{body}");
        assert_eq!(body["database"]["backend"], "postgres", "{body}");
        assert_eq!(body["keys"]["state"], "ready", "{body}");
    };

    // Down since before the API started.
    assert_unavailable(create().await).await;
    assert_unavailable(api.get("/api/tasks", Some(&writer)).await).await;
    assert_down(api.get("/readyz", None).await).await;
    // What a load balancer in front of replicas sharing this database asks: still worth sending
    // requests to (whoami works, task routes say 503 with Retry-After).
    assert_eq!(
        api.get("/readyz?exclude=database", None).await.status(),
        200
    );
    assert_eq!(api.get("/api/whoami", Some(&writer)).await.status(), 200);
    let (status, _, reason) = refusal(
        api.send_json(
            reqwest::Method::POST,
            "/api/tasks",
            &writer,
            &json!({ "title": " " }),
        )
        .await,
    )
    .await;
    assert_eq!((status, reason.as_str()), (422, "invalid_field"));

    // Up: the schema is migrated on the first request, and the task is created once.
    server.start_again();
    let created = create().await;
    assert_eq!(created.status(), 201);
    let task: Value = created.json().await.expect("json");
    let path = format!("/api/tasks/{}", task["id"].as_str().expect("id"));
    assert_eq!(api.get("/readyz", None).await.status(), 200);

    // Down again, with pooled connections that the server has just dropped.
    server.stop_now();
    assert_unavailable(api.get(&path, Some(&writer)).await).await;
    assert_unavailable(create().await).await;
    assert_down(api.get("/readyz", None).await).await;
    assert_eq!(api.get("/api/whoami", Some(&writer)).await.status(), 200);

    // Back: no restart of the API, the pool makes new connections.
    server.start_again();
    assert_eq!(api.get_json(&path, Some(&writer)).await, task);
    let (status, _, reason) = refusal(create().await).await;
    assert_eq!(
        (status, reason.as_str()),
        (409, "duplicate_external_id"),
        "created once"
    );
    let ready = api.get("/readyz", None).await;
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.expect("json");
    assert_eq!(body["down"], json!([]));
    assert_eq!(body["database"]["state"], "ok");
    println!(
        "resilience: PostgreSQL outage: down at the API's start and again mid-run (pg_ctl stop -m \
         immediate): {} task requests answered 503 database_unavailable with Retry-After 5, \
         whoami 200 and validation 422 meanwhile, /readyz down [database]; after each restart \
         served again without restarting the API, the task created once",
        unavailable.load(std::sync::atomic::Ordering::Relaxed)
    );
}

/// `server.drain_secs`, as SIGTERM runs it: `/readyz` answers 503 `draining` at once (whatever is
/// excluded) while requests are still served, and the server stops only once the period is over.
#[tokio::test]
async fn a_drain_turns_readiness_off_at_once_serves_on_then_stops() {
    let key = TestKey::generate("k1");
    let idp = TestIdp::start().await;
    idp.serve_discovery().await;
    idp.serve_jwks(&[&key], 1).await;
    let clock = test_clock();
    let dir = TempDir::new("db");
    let mut settings = api_settings(&idp.server.uri(), &dir.0);
    settings.server.drain_secs = 5;
    let app = api_service::Application::build_with_clock(settings, clock.clone())
        .await
        .expect("api starts");
    let url = format!("http://{}", app.address());
    let drain = app.drain();
    let running = tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();
    let token = key.mint(clock.unix(), |_| {});
    let ready = |path: &'static str| {
        let request = client.get(format!("{url}{path}"));
        async move { request.send().await.expect("answers") }
    };
    assert_eq!(ready("/readyz").await.status(), 200);

    let waiting = clock.sleepers();
    let draining = tokio::spawn(drain.drain_and_stop());
    mesh_tests::eventually("the drain waits on the clock", || async {
        clock.sleepers() > waiting
    })
    .await;
    for path in ["/readyz", "/readyz?exclude=database&exclude=keys"] {
        let answer = ready(path).await;
        assert_eq!(answer.status(), 503, "{path}");
        let body: Value = answer.json().await.expect("json");
        assert_eq!(body["draining"], true);
        assert_eq!(body["down"], json!(["draining"]), "{body}");
    }
    let whoami = client
        .get(format!("{url}/api/whoami"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("still served while draining");
    assert_eq!(whoami.status(), 200);

    clock.advance_secs(5);
    draining.await.expect("drained");
    running.await.expect("joined").expect("stopped cleanly");
    assert!(
        reqwest::Client::new()
            .get(format!("{url}/healthz"))
            .send()
            .await
            .is_err(),
        "the listener is closed"
    );
}

/// With `server.drain_secs`, a replica whose keys near their stale bound leaves the rotation
/// first: `/readyz` answers 503 `keys_expiring` in the last `drain_secs` before it while the keys
/// still serve (their own state `ready`); past the bound, `stale`, and tokens are refused.
#[tokio::test]
async fn keys_nearing_their_stale_bound_turn_readiness_off_before_they_fail_closed() {
    let key = TestKey::generate("k1");
    let idp = publishing_once_then_failing(&key).await;
    let clock = test_clock();
    let api = spawn_api_with(
        &idp.server.uri(),
        &clock,
        std::sync::Arc::new(TempDir::new("db")),
        |s| {
            s.server.drain_secs = 5;
            s.keys.max_stale_secs = 90;
        },
    )
    .await;
    clock.advance_secs(85);
    let ready = api.get_json("/readyz?exclude=database", None).await;
    assert_eq!(ready["status"], "ready", "{ready}");

    clock.advance_secs(1);
    let answer = api.get("/readyz?exclude=database", None).await;
    let status = answer.status();
    let body: Value = answer.json().await.expect("json");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["down"], json!(["keys_expiring"]), "{body}");
    assert_eq!(body["keys"]["state"], "ready");
    let token = key.mint(clock.unix(), |_| {});
    assert_eq!(
        api.get("/api/whoami", Some(&token)).await.status(),
        200,
        "still serving"
    );
    assert_eq!(
        api.get("/readyz?exclude=keys", None).await.status(),
        200,
        "excluding keys excludes their lead"
    );

    clock.advance_secs(5);
    let body = api.get_json("/readyz", None).await;
    assert_eq!(body["keys"]["state"], "stale", "{body}");
    let token = key.mint(clock.unix(), |_| {});
    let (status, _, reason) = refusal(api.get("/api/whoami", Some(&token)).await).await;
    assert_eq!((status, reason.as_str()), (503, "keys_unavailable"));
}

/// An identity provider that publishes `key` once (the API's start) and answers 500 after.
async fn publishing_once_then_failing(key: &TestKey) -> TestIdp {
    let idp = TestIdp::start().await;
    idp.serve_discovery().await;
    TestIdp::on_jwks(TestIdp::publishing(&[key]))
        .up_to_n_times(1)
        .mount(&idp.server)
        .await;
    TestIdp::on_jwks(ResponseTemplate::new(500))
        .mount(&idp.server)
        .await;
    idp
}
