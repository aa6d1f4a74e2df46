//! Job runs: success statuses, the problem+json reason on 4xx, the retry after a 401.

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
