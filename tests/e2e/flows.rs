//! Who gets in: the reader reads, the writer writes, the app the API does not allow and a user's
//! delegated token are refused, and an expired token is answered 401.

use crate::helpers::*;
use std::time::Duration;

#[tokio::test]
async fn reader_reads_writer_writes_and_the_others_are_refused() {
    let test = start().await;
    for runs in 1..=3 {
        test.advance_to_run(EVERY, runs).await;
    }
    assert_eq!(test.runs("reader", "success"), 3);
    assert_eq!(test.runs("writer", "success"), 3, "each POST answered 201");
    assert_eq!(test.runs("stranger", "failure"), 3, "each answered 403");
    for name in ["reader", "writer", "stranger"] {
        assert_eq!(
            test.runs(name, "error"),
            0,
            "{name}: every call was answered"
        );
        assert_eq!(
            test.mesh.caller(name).idp_requests(),
            1,
            "{name}: one token, reused for every run"
        );
    }

    // What the writer created, the reader sees.
    let reader = test.token("reader").await;
    let listed: serde_json::Value = test
        .mesh
        .http
        .get(format!("{}/api/tasks?limit=10", test.mesh.api.url))
        .bearer_auth(reader.secret())
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let items = listed["items"].as_array().expect("items");
    assert_eq!(items.len(), 3, "{listed}");
    let writer_id = test.mesh.caller("writer").client_id;
    assert!(
        items.iter().all(|t| t["created_by"] == writer_id),
        "{listed}"
    );

    // The stranger's refusals carry their reason; so does a user's delegated token.
    let stranger = test.token("stranger").await;
    assert_eq!(
        test.mesh
            .call_api("/api/tasks", stranger.secret())
            .await
            .expect("answered"),
        (403, Some("client_not_allowed".into()))
    );
    let user = test
        .mesh
        .user_token()
        .await
        .expect("Ada signs in with PKCE");
    assert_eq!(
        test.mesh
            .call_api("/api/whoami", &user)
            .await
            .expect("answered"),
        (403, Some("user_delegated_token".into()))
    );
    let metrics = test.api_metrics().await;
    for line in [
        r#"api_auth_outcomes_total{outcome="client_not_allowed"} 4"#,
        r#"api_auth_outcomes_total{outcome="user_delegated_token"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} not in {metrics}");
    }
    test.mesh.stop().await.expect("stops cleanly");
}

#[tokio::test]
async fn an_expired_token_is_answered_401_expired() {
    let test = start_with(vec![], |_| {}).await;
    let reader = &mesh::demo_callers(EVERY)[0];
    let token = test
        .mesh
        .app_token(reader.client_id, reader.secret)
        .await
        .expect("the emulator issues it");
    // Three hours later on the mesh's one clock, the token (1-1.5 h of life) has expired.
    test.clock.advance(Duration::from_secs(3 * 3600));
    let response = test
        .mesh
        .http
        .get(format!("{}/api/whoami", test.mesh.api.url))
        .bearer_auth(&token)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
    let body: serde_json::Value = response.json().await.expect("problem+json");
    assert_eq!(body["reason"], "expired");
    test.mesh.stop().await.expect("stops cleanly");
}
