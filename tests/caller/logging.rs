//! No secret and no token in any log line, at any level, from us or the libraries we drive.

use mesh_tests::caller::*;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

/// Current-thread runtime: every task of the test runs on this thread, under this subscriber.
#[tokio::test]
async fn trace_level_logs_hold_fingerprints_never_secrets_or_tokens() {
    let captured = Captured::start();

    let caller = spawn_caller(|_| {}).await;
    expect_token_requests(&caller.idp, 2).await;
    Mock::given(method("GET"))
        .and(path("/tasks"))
        .respond_with(invalid_token())
        .up_to_n_times(1)
        .mount(&caller.api)
        .await;
    Mock::given(method("GET"))
        .and(path("/tasks"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&caller.api)
        .await;
    let report = caller
        .core
        .runner
        .run(&job("reader", &format!("{}/tasks", caller.api.uri())))
        .await;
    assert!(report.succeeded() && report.retried_with_new_token);

    let logs = captured.text();
    assert!(
        logs.contains(&shared::fingerprint(&fake_jwt(0))),
        "token events are logged by fingerprint"
    );
    assert!(logs.contains("job succeeded"));
    for secret in [READER_SECRET.to_owned(), fake_jwt(0), fake_jwt(1)] {
        assert!(
            !logs.contains(&secret),
            "a secret or token reached the logs"
        );
    }
    // The payload alone (what a partial log of the JWT would show) must not appear either.
    assert!(!logs.contains(fake_jwt(0).split('.').nth(1).expect("payload")));
    caller.idp.verify().await;
}
