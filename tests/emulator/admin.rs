//! Key rotation and persistence, and fault injection through the admin API.

use crate::helpers::*;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

async fn kids(emu: &Emulator) -> Vec<String> {
    let (_, jwks) = emu
        .get_json(&format!("/{TENANT}/discovery/v2.0/keys"))
        .await;
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_owned())
        .collect()
}

async fn token_kid(emu: &Emulator) -> String {
    let body = emu.secret_token(READER_ID, READER_SECRET, API_SCOPE).await;
    decode_parts(body["access_token"].as_str().expect("token")).0["kid"]
        .as_str()
        .expect("kid")
        .to_owned()
}

async fn admin_post(emu: &Emulator, path: &str, body: Option<Value>) -> reqwest::Response {
    let mut request = emu.http.post(format!("{}{path}", emu.http_url));
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("admin answers")
}

/// Injects `fault` through the admin API, which accepts it.
async fn inject(emu: &Emulator, fault: Value) {
    assert_eq!(
        admin_post(emu, "/admin/faults", Some(fault)).await.status(),
        201
    );
}

#[tokio::test]
async fn rotation_publishes_then_signs_then_retires() {
    let emu = spawn_emulator().await;
    let old = token_kid(&emu).await;
    let before = kids(&emu).await;
    assert!(before.contains(&old));

    let response = admin_post(&emu, "/admin/keys/rotate", None).await;
    assert_eq!(response.status(), 200);
    let new = response.json::<Value>().await.expect("json")["active_kid"]
        .as_str()
        .expect("kid")
        .to_owned();
    assert_ne!(new, old);
    let after = kids(&emu).await;
    assert!(
        after.contains(&new) && after.contains(&old),
        "old key stays published: {after:?}"
    );
    assert_eq!(
        token_kid(&emu).await,
        new,
        "new tokens are signed with the new key"
    );

    assert_eq!(
        admin_post(&emu, &format!("/admin/keys/{new}/retire"), None)
            .await
            .status(),
        409,
        "the signing key cannot be retired"
    );
    assert_eq!(
        admin_post(&emu, &format!("/admin/keys/{old}/retire"), None)
            .await
            .status(),
        200
    );
    assert!(!kids(&emu).await.contains(&old), "retired key is withdrawn");
    assert_eq!(
        admin_post(&emu, "/admin/keys/nope/retire", None)
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn keys_and_ca_survive_a_restart() {
    let data_dir = Arc::new(TempDir::new("emulator"));
    let first = spawn_in(data_dir.clone(), |_| {}).await;
    assert_eq!(
        admin_post(&first, "/admin/keys/rotate", None)
            .await
            .status(),
        200
    );
    let kids_before = kids(&first).await;
    assert_eq!(
        kids_before.len(),
        3,
        "two initial keys and the rotated-in one"
    );
    let token_kid_before = token_kid(&first).await;
    let ca_before = std::fs::read(&first.ca).expect("ca");
    first.handle.stop(true).await;
    drop(first);

    let second = spawn_in(data_dir, |_| {}).await;
    assert_eq!(kids(&second).await, kids_before);
    assert_eq!(token_kid(&second).await, token_kid_before);
    assert_eq!(
        std::fs::read(&second.ca).expect("ca"),
        ca_before,
        "clients keep trusting the same CA"
    );
}

#[tokio::test]
async fn throttling_for_n_requests_then_recovery() {
    let emu = spawn_emulator().await;
    let fault = serde_json::json!({"target": "token", "kind": "throttle", "retry_after_secs": 7, "requests": 2});
    inject(&emu, fault).await;
    for _ in 0..2 {
        let response = emu
            .post_token(&[("grant_type", "client_credentials")])
            .await;
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "7");
        assert!(
            response
                .text()
                .await
                .expect("body")
                .starts_with("Too many requests"),
            "plain text, as Entra's front end"
        );
    }
    emu.secret_token(READER_ID, READER_SECRET, API_SCOPE).await;
}

#[tokio::test]
async fn unavailable_for_n_seconds_then_recovery() {
    let clock = Arc::new(ManualClock::at_system_time());
    let emu = spawn_on(Arc::new(TempDir::new("emulator")), clock.clone(), |_| {}).await;
    let fault = serde_json::json!({"target": "token", "kind": "unavailable", "seconds": 30});
    inject(&emu, fault).await;
    let response = emu.post_secret(READER_ID, READER_SECRET, API_SCOPE).await;
    assert_aadsts(response, 503, "temporarily_unavailable", 90033).await;
    clock.advance_secs(31);
    emu.secret_token(READER_ID, READER_SECRET, API_SCOPE).await;
}

#[tokio::test]
async fn jwks_fault_and_clearing_faults() {
    let emu = spawn_emulator().await;
    let fault = serde_json::json!({"target": "jwks", "kind": "unavailable", "seconds": 600});
    inject(&emu, fault).await;
    let response = emu
        .http
        .get(format!("{}/{TENANT}/discovery/v2.0/keys", emu.http_url))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 503);
    emu.secret_token(READER_ID, READER_SECRET, API_SCOPE).await;
    let cleared = emu
        .http
        .delete(format!("{}/admin/faults", emu.http_url))
        .send()
        .await
        .expect("answers");
    assert_eq!(cleared.json::<Value>().await.expect("json")["cleared"], 1);
    assert_eq!(kids(&emu).await.len(), 2);
}

#[tokio::test]
async fn hanging_token_endpoint_makes_clients_time_out() {
    let emu = spawn_emulator().await;
    let fault =
        serde_json::json!({"target": "token", "kind": "hang", "hang_secs": 30, "requests": 1});
    inject(&emu, fault).await;
    let err = emu
        .http
        .post(emu.token_url())
        .timeout(Duration::from_millis(300))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect_err("no answer within the client's timeout");
    assert!(err.is_timeout(), "{err}");
}

#[tokio::test]
async fn invalid_fault_requests_are_refused() {
    let emu = spawn_emulator().await;
    for bad in [
        serde_json::json!({"target": "token", "kind": "unavailable"}),
        serde_json::json!({"target": "token", "kind": "unavailable", "seconds": 5, "requests": 5}),
        serde_json::json!({"target": "nowhere", "kind": "unavailable", "seconds": 5}),
        serde_json::json!({"target": "token", "kind": "explode", "seconds": 5}),
    ] {
        assert_eq!(
            admin_post(&emu, "/admin/faults", Some(bad.clone()))
                .await
                .status(),
            400,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn admin_api_is_absent_unless_enabled() {
    let emu = spawn_with(|s| s.admin.enabled = false).await;
    assert_eq!(
        admin_post(&emu, "/admin/keys/rotate", None).await.status(),
        404
    );
}
