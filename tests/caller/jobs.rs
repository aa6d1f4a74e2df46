//! Job runs: success statuses, the problem+json reason on 4xx, the retry after a 401, and the one
//! repeat after no answer or a 429/502/503/504 where repeating is safe.

use mesh_tests::caller::*;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

#[tokio::test]
async fn a_401_invalid_token_causes_one_refresh_and_one_retry() {
    let caller = spawn_caller(|_| {}).await;
    expect_token_requests(&caller.idp, 2).await;
    tasks_with_token(0)
        .respond_with(invalid_token())
        .expect(1)
        .mount(&caller.api)
        .await;
    tasks_with_token(1)
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&caller.api)
        .await;
    let report = caller
        .core
        .runner
        .run(&job("reader", &format!("{}/tasks", caller.api.uri())))
        .await;
    assert!(report.succeeded(), "{report:?}");
    assert!(report.retried_with_new_token);
    assert_eq!(report.status, Some(200));
    caller.idp.verify().await;
    caller.api.verify().await;
}

#[tokio::test]
async fn an_api_refusing_every_token_gets_one_new_token_not_a_storm() {
    let caller = spawn_caller(|_| {}).await;
    expect_token_requests(&caller.idp, 2).await;
    Mock::given(method("GET"))
        .and(path("/tasks"))
        .respond_with(invalid_token())
        .expect(6)
        .mount(&caller.api)
        .await;
    let job = job("reader", &format!("{}/tasks", caller.api.uri()));
    let first = caller.core.runner.run(&job).await;
    assert!(first.retried_with_new_token && !first.succeeded());
    for _ in 0..4 {
        let report = caller.core.runner.run(&job).await;
        assert_eq!(report.status, Some(401));
        assert!(!report.retried_with_new_token, "rate-limited");
    }
    caller.idp.verify().await;
    caller.api.verify().await;
}

#[tokio::test]
async fn a_403_reports_the_problem_reason_and_counts_as_failure() {
    let caller = spawn_caller(|_| {}).await;
    expect_token_requests(&caller.idp, 1).await;
    Mock::given(method("POST"))
        .and(path("/tasks"))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("content-type", "application/problem+json")
                .set_body_json(serde_json::json!({
                    "type": "urn:m2m-entra:problem:client_not_allowed", "title": "Forbidden",
                    "status": 403, "detail": "This client may not call this API.",
                    "reason": "client_not_allowed", "request_id": "r1"
                })),
        )
        .expect(1)
        .mount(&caller.api)
        .await;
    let mut job = job("stranger", &format!("{}/tasks", caller.api.uri()));
    job.method = reqwest::Method::POST;
    job.body = Some(serde_json::json!({"title": "x"}));
    let report = caller.core.runner.run(&job).await;
    assert!(!report.succeeded());
    assert_eq!(report.status, Some(403));
    assert_eq!(report.reason.as_deref(), Some("client_not_allowed"));
    let metrics = caller.core.metrics.render();
    assert!(
        metrics.contains(r#"caller_job_runs_total{job="stranger",outcome="failure"} 1"#),
        "{metrics}"
    );
    caller.api.verify().await;
}

/// Runs `job` on `caller` in the background, moving the manual clock a second at a time whenever
/// something waits on it (the retry's delay), until the run is over; 10 s of real time at most.
async fn run_with_retry_delay(
    caller: &TestCaller,
    job: caller_service::job::Job,
) -> caller_service::runner::JobReport {
    // The token first: its refresh timer is then already among the sleepers counted below.
    caller
        .core
        .tokens
        .get_token(&job.scope)
        .await
        .expect("a token");
    let runner = caller.core.runner.clone();
    let waiting = caller.clock.sleepers();
    let run = tokio::spawn(async move { runner.run(&job).await });
    let give_up = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !run.is_finished() {
        assert!(tokio::time::Instant::now() < give_up, "the run did not end");
        if caller.clock.sleepers() > waiting {
            caller.clock.advance(std::time::Duration::from_secs(1));
        }
        tokio::task::yield_now().await;
    }
    run.await.expect("the run finishes")
}

#[tokio::test]
async fn a_get_answered_503_is_repeated_once_a_second_later() {
    let caller = spawn_caller(|_| {}).await;
    expect_token_requests(&caller.idp, 1).await;
    Mock::given(method("GET"))
        .and(path("/tasks"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .expect(1)
        .mount(&caller.api)
        .await;
    Mock::given(method("GET"))
        .and(path("/tasks"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&caller.api)
        .await;
    let report = run_with_retry_delay(
        &caller,
        job("reader", &format!("{}/tasks", caller.api.uri())),
    )
    .await;
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(report.retried_after.as_deref(), Some("status_503"));
    let metrics = caller.core.metrics.render();
    assert!(
        metrics.contains(r#"caller_job_retries_total{cause="status_503",job="reader"} 1"#),
        "{metrics}"
    );
    caller.api.verify().await;
}

#[tokio::test]
async fn a_get_that_gets_no_answer_is_repeated_once_then_reported() {
    let caller = spawn_caller(|_| {}).await;
    expect_token_requests(&caller.idp, 1).await;
    // A port nothing listens on: connection refused, twice.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/tasks", closed.local_addr().expect("addr"));
    drop(closed);
    let report = run_with_retry_delay(&caller, job("reader", &url)).await;
    assert!(!report.succeeded());
    assert_eq!(report.retried_after.as_deref(), Some("no_answer"));
    assert_eq!(report.status, None);
}

/// The tasks API's idempotency: the run's key goes in `external_id`, the same on the retry; a 409
/// `duplicate_external_id` answering the retry means the first attempt landed.
#[tokio::test]
async fn a_post_with_an_idempotency_key_is_repeated_with_the_same_key() {
    let caller = spawn_caller(|_| {}).await;
    expect_token_requests(&caller.idp, 1).await;
    Mock::given(method("POST"))
        .and(path("/tasks"))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(1)
        .expect(1)
        .mount(&caller.api)
        .await;
    Mock::given(method("POST"))
        .and(path("/tasks"))
        .respond_with(
            ResponseTemplate::new(409)
                .insert_header("content-type", "application/problem+json")
                .set_body_json(serde_json::json!({
                    "status": 409, "reason": "duplicate_external_id", "existing_id": "t-1"
                })),
        )
        .expect(1)
        .mount(&caller.api)
        .await;
    let mut job = job("create task", &format!("{}/tasks", caller.api.uri()));
    job.method = reqwest::Method::POST;
    job.body = Some(serde_json::json!({"title": "x"}));
    job.success_status = vec![201];
    job.external_id_field = Some("external_id".into());
    let report = run_with_retry_delay(&caller, job.clone()).await;
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(report.retried_after.as_deref(), Some("status_502"));

    let sent: Vec<serde_json::Value> = caller
        .api
        .received_requests()
        .await
        .expect("recorded")
        .iter()
        .map(|r| serde_json::from_slice(&r.body).expect("json"))
        .collect();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0], sent[1], "the same body and key twice");
    assert_eq!(sent[0]["title"], "x");
    let key = sent[0]["external_id"].as_str().expect("a key");
    assert!(key.starts_with("create-task:"), "{key}");
    assert!(
        key.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".:_-".contains(c)),
        "{key}"
    );

    // The next run carries a key of its own.
    caller.api.reset().await;
    Mock::given(method("POST"))
        .and(path("/tasks"))
        .respond_with(ResponseTemplate::new(201))
        .expect(1)
        .mount(&caller.api)
        .await;
    assert!(caller.core.runner.run(&job).await.succeeded());
    let next = &caller.api.received_requests().await.expect("recorded")[0];
    let next: serde_json::Value = serde_json::from_slice(&next.body).expect("json");
    assert_ne!(next["external_id"].as_str(), Some(key));
}

#[tokio::test]
async fn a_post_without_an_idempotency_key_or_a_403_is_never_repeated() {
    let caller = spawn_caller(|_| {}).await;
    expect_token_requests(&caller.idp, 1).await;
    Mock::given(method("POST"))
        .and(path("/tasks"))
        .respond_with(ResponseTemplate::new(502))
        .expect(1)
        .mount(&caller.api)
        .await;
    Mock::given(method("GET"))
        .and(path("/tasks"))
        .respond_with(ResponseTemplate::new(403))
        .expect(1)
        .mount(&caller.api)
        .await;
    let mut post = job("writer", &format!("{}/tasks", caller.api.uri()));
    post.method = reqwest::Method::POST;
    post.body = Some(serde_json::json!({"title": "x"}));
    let report = caller.core.runner.run(&post).await;
    assert_eq!((report.status, report.retried_after), (Some(502), None));
    let get = job("reader", &format!("{}/tasks", caller.api.uri()));
    let report = caller.core.runner.run(&get).await;
    assert_eq!((report.status, report.retried_after), (Some(403), None));
    caller.api.verify().await;
}
