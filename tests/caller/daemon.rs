//! The daemon as operators see it: readiness, overlap, shutdown, workload identity.

use caller_service::settings::CredentialKind;
use mesh_tests::caller::*;
use std::time::Duration;
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, ResponseTemplate};

#[tokio::test]
async fn readyz_is_503_with_the_aadsts_code_while_no_token_can_be_had() {
    let mut app = spawn_app(
        |settings, _| settings.token_manager.scopes = vec![SCOPE.into()],
        |idp| async move {
            token_request()
                .respond_with(entra_error(
                    400,
                    "unauthorized_client",
                    700016,
                    "Application not found in the directory.",
                ))
                .expect(1)
                .mount(&idp)
                .await;
            idp
        },
    )
    .await;
    eventually("the scope is marked permanently failed", || async {
        app.tokens
            .status()
            .first()
            .is_some_and(|s| s.permanent_failure)
    })
    .await;
    let (status, body) = app.readyz().await;
    assert_eq!(status, 503);
    assert_eq!(body["status"], "not_ready");
    let error = body["scopes"][0]["last_error"]
        .as_str()
        .expect("error shown");
    assert!(
        error.contains("AADSTS700016") && error.contains("check identity.client_id"),
        "{error}"
    );
    assert_eq!(app.get("/healthz").await.0, 200, "alive though not ready");
    app.shut_down().await;
    app.idp.verify().await;
}

#[tokio::test]
async fn readyz_says_degraded_while_a_stale_token_is_served() {
    let mut app = spawn_app(
        |settings, _| {
            settings.token_manager.scopes = vec![SCOPE.into()];
            settings.token_manager.refresh_jitter_fraction = 0.0;
        },
        one_token_then_unavailable,
    )
    .await;
    eventually("/readyz answers 200", || async {
        app.readyz().await.0 == 200
    })
    .await;
    assert_eq!(app.readyz().await.1["status"], "ready");
    let mut events = app.tokens.subscribe();
    sleepers(&app.clock, 1).await;
    app.clock.advance(Duration::from_secs(1800));
    next_event(&mut events, is_failed).await;
    let (status, body) = app.readyz().await;
    assert_eq!(status, 200, "still serving a valid token");
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["scopes"][0]["serving_stale"], true);
    let (_, metrics) = app.get("/metrics").await;
    assert!(
        metrics.contains(r#"caller_token_serving_stale{scope="api://tasks-api/.default"} 1"#),
        "{metrics}"
    );
    app.shut_down().await;
}

#[tokio::test]
async fn a_run_still_going_makes_the_next_one_skip_and_shutdown_lets_it_finish() {
    let mut app = spawn_app(
        |settings, api| {
            settings
                .jobs
                .push(interval_job("slow", format!("{api}/slow")))
        },
        |idp| async move {
            token_request()
                .respond_with(Tokens::lasting(3600))
                .mount(&idp)
                .await;
            idp
        },
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/slow"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(500)))
        .expect(1)
        .mount(&app.api)
        .await;
    eventually("the daemon holds its token", || async {
        app.tokens.status().first().is_some_and(|s| s.has_token)
    })
    .await;
    sleepers(&app.clock, 2).await;
    app.clock.advance(Duration::from_secs(60));
    eventually("the first run reached the API", || async {
        received(&app.api).await == 1
    })
    .await;
    // The first run is waiting for its answer: the next tick is skipped.
    app.clock.advance(Duration::from_secs(60));
    eventually("the overlapping run is counted as skipped", || async {
        app.metrics
            .render()
            .contains(r#"caller_job_runs_total{job="slow",outcome="skipped"} 1"#)
    })
    .await;
    // Shutdown while the run is in flight: it finishes, nothing new starts.
    app.shut_down().await;
    let metrics = app.metrics.render();
    assert!(
        metrics.contains(r#"caller_job_runs_total{job="slow",outcome="success"} 1"#),
        "{metrics}"
    );
    app.api.verify().await;
}

#[tokio::test]
async fn workload_identity_reads_the_rotated_federated_token_on_every_acquisition() {
    let dir = TempDir::new("caller");
    let token_file = dir.0.join("azure-identity-token");
    std::fs::write(&token_file, "projected-token-1\n").expect("write");
    let caller = spawn_caller(|settings| {
        settings.identity.client_secret = None;
        settings.identity.credential = Some(CredentialKind::WorkloadIdentity);
        settings.identity.federated_token_file = Some(token_file.clone());
    })
    .await;
    for n in 1..=2 {
        token_request()
            .and(body_string_contains(format!("client_assertion=projected-token-{n}").as_str()))
            .and(body_string_contains("client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"))
            .respond_with(Tokens::lasting(3600).numbered_from(n * 100))
            .expect(1)
            .mount(&caller.idp)
            .await;
    }
    let first = caller.core.tokens.get_token(SCOPE).await.expect("token");
    std::fs::write(&token_file, "projected-token-2\n").expect("rotate");
    assert!(caller.core.tokens.invalidate(SCOPE, &first));
    let second = caller
        .core
        .tokens
        .get_token(SCOPE)
        .await
        .expect("token with the rotated file");
    assert_ne!(first.fingerprint, second.fingerprint);
    caller.idp.verify().await;
}

#[tokio::test]
async fn a_missing_federated_token_file_is_reported_with_its_path() {
    let caller = spawn_caller(|settings| {
        settings.identity.client_secret = None;
        settings.identity.credential = Some(CredentialKind::WorkloadIdentity);
        settings.identity.federated_token_file = Some("/nonexistent/azure-identity-token".into());
    })
    .await;
    expect_token_requests(&caller.idp, 0).await;
    let error = caller
        .core
        .tokens
        .get_token(SCOPE)
        .await
        .expect_err("no file");
    assert_eq!(error.reason(), "credential_input");
    assert!(
        error
            .to_string()
            .contains("/nonexistent/azure-identity-token"),
        "{error}"
    );
    caller.idp.verify().await;
}
