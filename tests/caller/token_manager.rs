//! The token manager driving the real azure_identity code path against wiremock.

use caller_service::token_manager::{TokenEvent, Trigger};
use mesh_tests::caller::*;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use wiremock::ResponseTemplate;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_first_calls_make_one_token_request() {
    let caller = spawn_caller(|_| {}).await;
    expect_token_requests(&caller.idp, 1).await;

    let calls: Vec<_> = (0..100)
        .map(|_| {
            let tokens = caller.core.tokens.clone();
            tokio::spawn(async move { tokens.get_token(SCOPE).await })
        })
        .collect();
    let mut fingerprints = std::collections::HashSet::new();
    for call in calls {
        let token = call.await.expect("joins").expect("token");
        fingerprints.insert(token.fingerprint.clone());
        assert_eq!(token.kind, "app");
    }
    assert_eq!(fingerprints.len(), 1, "everyone got the one token");
    caller.idp.verify().await;
}

#[tokio::test]
async fn refresh_happens_at_about_half_life_without_any_caller_waiting() {
    let caller = spawn_caller(|_| {}).await;
    token_request()
        .respond_with(Tokens::lasting(3600))
        .up_to_n_times(1)
        .expect(1)
        .mount(&caller.idp)
        .await;
    let tokens = &caller.core.tokens;
    let mut events = tokens.subscribe();
    let first = tokens.get_token(SCOPE).await.expect("token");
    let status = &tokens.status()[0];
    let refresh_in = (status.next_attempt_at.expect("planned") - first.acquired_at).whole_seconds();
    assert!(
        (1620..=1800).contains(&refresh_in),
        "half-life minus up to 5% jitter: {refresh_in}"
    );

    // The refresh answer is slow, so the refresh is still in flight when a job reads.
    token_request()
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"token_type": "Bearer", "expires_in": 3600, "access_token": fake_jwt(99)}))
                .set_delay(Duration::from_millis(300)),
        )
        .expect(1)
        .mount(&caller.idp)
        .await;
    sleepers(&caller.clock, 1).await;
    caller.clock.advance(Duration::from_secs(1800));
    eventually("the second token request arrived", || async {
        received(&caller.idp).await == 2
    })
    .await;

    let read = tokens.get_token(SCOPE);
    let mut read = std::pin::pin!(read);
    let Poll::Ready(Ok(during)) = read.as_mut().poll(&mut Context::from_waker(Waker::noop()))
    else {
        panic!("a job must not wait while the refresh is in flight");
    };
    assert_eq!(during.fingerprint, first.fingerprint);

    let TokenEvent::Acquired {
        trigger,
        fingerprint,
        ..
    } = next_event(&mut events, |e| {
        matches!(
            e,
            TokenEvent::Acquired {
                trigger: Trigger::Background,
                ..
            }
        )
    })
    .await
    else {
        unreachable!()
    };
    assert_eq!(trigger, Trigger::Background);
    assert_ne!(fingerprint, first.fingerprint);
    assert_eq!(
        tokens.get_token(SCOPE).await.expect("token").fingerprint,
        fingerprint
    );
    caller.idp.verify().await;
}

#[tokio::test]
async fn a_503_then_a_429_during_refresh_fail_no_job_and_retry_after_is_honoured() {
    let caller = spawn_caller(|settings| {
        settings.token_manager.refresh_jitter_fraction = 0.0;
    })
    .await;
    tasks_with_token(0)
        .respond_with(ResponseTemplate::new(200))
        .expect(3)
        .mount(&caller.api)
        .await;
    token_request()
        .respond_with(Tokens::lasting(3600))
        .up_to_n_times(1)
        .expect(1)
        .mount(&caller.idp)
        .await;
    token_request()
        .respond_with(ResponseTemplate::new(503).set_body_string("upstream unavailable"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&caller.idp)
        .await;
    token_request()
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "120")
                .set_body_string("Too Many Requests"),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&caller.idp)
        .await;
    let tokens = &caller.core.tokens;
    let mut events = tokens.subscribe();
    let job = job("refresh-outage", &format!("{}/tasks", caller.api.uri()));
    assert!(caller.core.runner.run(&job).await.succeeded());

    sleepers(&caller.clock, 1).await;
    caller.clock.advance(Duration::from_secs(1800));
    let Failure {
        error,
        next_attempt_in,
        ..
    } = next_failure(&mut events, None).await;
    assert_eq!(error.reason(), "server_error");
    assert!(
        next_attempt_in <= Duration::from_secs(1),
        "first backoff: {next_attempt_in:?}"
    );
    assert!(
        caller.core.runner.run(&job).await.succeeded(),
        "served the current token"
    );
    assert!(tokens.status()[0].serving_stale);

    sleepers(&caller.clock, 1).await;
    caller.clock.advance(next_attempt_in);
    let Failure {
        error,
        next_attempt_in,
        ..
    } = next_failure(&mut events, None).await;
    assert_eq!(error.reason(), "throttled");
    assert_eq!(error.retry_after(), Some(Duration::from_secs(120)));
    assert_eq!(
        next_attempt_in,
        Duration::from_secs(120),
        "Retry-After honoured"
    );
    assert!(caller.core.runner.run(&job).await.succeeded());

    expect_token_requests(&caller.idp, 1).await;
    caller.clock.advance(Duration::from_secs(120));
    next_event(&mut events, is_acquired).await;
    assert!(!tokens.status()[0].serving_stale);
    caller.idp.verify().await;
    caller.api.verify().await;
}

#[tokio::test]
async fn a_permanent_aadsts_error_causes_no_retry_storm() {
    let caller = spawn_caller(|_| {}).await;
    token_request()
        .respond_with(entra_error(
            401,
            "invalid_client",
            7000215,
            "Invalid client secret provided.",
        ))
        .expect(2)
        .mount(&caller.idp)
        .await;
    let tokens = &caller.core.tokens;
    let mut events = tokens.subscribe();
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let tokens = tokens.clone();
            tokio::spawn(async move { tokens.get_token(SCOPE).await })
        })
        .collect();
    for call in calls {
        let error = call.await.expect("joins").expect_err("refused");
        assert_eq!(error.reason(), "aadsts_7000215");
        assert!(
            error
                .to_string()
                .contains("Fix: the client secret is wrong"),
            "{error}"
        );
    }
    for _ in 0..20 {
        assert!(tokens.get_token(SCOPE).await.is_err());
    }
    assert_eq!(received(&caller.idp).await, 1);

    // One slow retry after 5 minutes, by the refresher.
    sleepers(&caller.clock, 1).await;
    caller.clock.advance(Duration::from_secs(300));
    let Failure {
        trigger,
        next_attempt_in,
        ..
    } = next_failure(&mut events, Some(Trigger::Background)).await;
    assert_eq!(trigger, Trigger::Background);
    assert_eq!(next_attempt_in, Duration::from_secs(300));
    assert!(tokens.status()[0].permanent_failure);
    let metrics = caller.core.metrics.render();
    assert!(
        metrics.contains(r#"caller_token_acquisitions_total{reason="aadsts_7000215",result="error",scope="api://tasks-api/.default"} 2"#),
        "{metrics}"
    );
    caller.idp.verify().await;
}

#[tokio::test]
async fn malformed_token_responses_are_retried_not_cached() {
    let caller = spawn_caller(|_| {}).await;
    token_request()
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>captive portal</html>"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&caller.idp)
        .await;
    token_request()
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({})))
        .up_to_n_times(1)
        .expect(1)
        .mount(&caller.idp)
        .await;
    expect_token_requests(&caller.idp, 1).await;
    let tokens = &caller.core.tokens;
    let mut events = tokens.subscribe();
    let error = tokens.get_token(SCOPE).await.expect_err("not JSON");
    assert_eq!(error.reason(), "malformed_response");
    let Failure {
        next_attempt_in, ..
    } = next_failure(&mut events, None).await;
    sleepers(&caller.clock, 1).await;
    caller.clock.advance(next_attempt_in);
    let Failure {
        error,
        next_attempt_in,
        ..
    } = next_failure(&mut events, None).await;
    assert_eq!(
        error.reason(),
        "malformed_response",
        "an empty object is no token"
    );
    sleepers(&caller.clock, 1).await;
    caller.clock.advance(next_attempt_in);
    next_event(&mut events, is_acquired).await;
    assert_eq!(tokens.get_token(SCOPE).await.expect("token").kind, "app");
    caller.idp.verify().await;
}

#[tokio::test]
async fn a_hanging_token_endpoint_times_out_on_the_clock() {
    let caller = spawn_caller(|_| {}).await;
    token_request()
        .respond_with(Tokens::lasting(3600).hanging())
        .expect(1)
        .mount(&caller.idp)
        .await;
    let tokens = caller.core.tokens.clone();
    let call = tokio::spawn(async move { tokens.get_token(SCOPE).await });
    // The acquisition's timeout is waiting on the clock, and the request has arrived.
    sleepers(&caller.clock, 1).await;
    eventually("the token request arrived", || async {
        received(&caller.idp).await == 1
    })
    .await;
    caller.clock.advance(Duration::from_secs(10));
    let error = call.await.expect("joins").expect_err("timed out");
    assert_eq!(error.reason(), "timeout");
    assert!(!caller.core.tokens.status()[0].has_token);
}
