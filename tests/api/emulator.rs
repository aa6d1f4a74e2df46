//! The API against the real emulator over HTTPS (its development CA trusted through
//! `http.extra_ca_file`): tokens of the demo directory's callers, a user token from the PKCE flow,
//! and a key rotation picked up without a restart.

use mesh_tests::api::*;
use mesh_tests::emulator::{Emulator, spawn_emulator_with};
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::Arc;

struct Mesh {
    emulator: Emulator,
    api: TestApi,
}

async fn spawn_mesh() -> Mesh {
    shared::telemetry::init_for_tests();
    // One clock for both, at the real time: the emulator stamps its tokens with it.
    let clock = Arc::new(ManualClock::at_system_time());
    let emulator = spawn_emulator_with(clock.clone(), |s| s.admin.enabled = true).await;
    let ca = emulator.ca.clone();
    let api = spawn_api_with(&emulator.url, &clock, Arc::new(TempDir::new("db")), |s| {
        s.http.extra_ca_file = Some(ca)
    })
    .await;
    Mesh { emulator, api }
}

#[tokio::test]
async fn demo_callers_are_let_in_or_refused_as_the_directory_says() {
    let mesh = spawn_mesh().await;
    assert_eq!(mesh.api.get("/readyz", None).await.status(), 200);
    let reader = mesh.emulator.app_token(READER_ID, READER_SECRET).await;
    let writer = mesh.emulator.app_token(WRITER_ID, WRITER_SECRET).await;

    let created = mesh
        .api
        .send_json(
            Method::POST,
            "/api/tasks",
            &writer,
            &json!({ "title": "import" }),
        )
        .await;
    assert_eq!(created.status(), 201);
    let task: Value = created.json().await.expect("json");
    assert_eq!(task["created_by"], WRITER_ID);

    let listed = mesh.api.get("/api/tasks", Some(&reader)).await;
    assert_eq!(listed.status(), 200);
    let listed: Value = listed.json().await.expect("json");
    assert_eq!(listed["items"][0]["id"], task["id"]);

    let (status, error, reason) = refusal(
        mesh.api
            .send_json(
                Method::POST,
                "/api/tasks",
                &reader,
                &json!({ "title": "x" }),
            )
            .await,
    )
    .await;
    assert_eq!(
        (status, error.as_deref(), reason.as_str()),
        (403, Some("insufficient_scope"), "missing_role")
    );

    let stranger = mesh.emulator.app_token(STRANGER_ID, STRANGER_SECRET).await;
    let (status, _, reason) = refusal(mesh.api.get("/api/whoami", Some(&stranger)).await).await;
    assert_eq!((status, reason.as_str()), (403, "client_not_allowed"));

    let user = mesh.emulator.user_token().await;
    let response = mesh.api.get("/api/whoami", Some(&user)).await;
    let (status, error, reason) = refusal(response).await;
    assert_eq!(
        (status, error.as_deref(), reason.as_str()),
        (403, Some("insufficient_scope"), "user_delegated_token")
    );

    let whoami = mesh.api.get_json("/api/whoami", Some(&reader)).await;
    assert_eq!(whoami["client_app_id"], READER_ID);
    assert_eq!(whoami["roles"], json!(["Tasks.Read.All"]));
    assert_eq!(whoami["token_version"], "2.0");
}

#[tokio::test]
async fn a_key_rotation_is_picked_up_without_a_restart() {
    let mesh = spawn_mesh().await;
    let before = mesh.emulator.app_token(READER_ID, READER_SECRET).await;
    assert_eq!(
        mesh.api.get("/api/whoami", Some(&before)).await.status(),
        200
    );
    let rotated = mesh
        .emulator
        .http
        .post(format!("{}/admin/keys/rotate", mesh.emulator.url))
        .send()
        .await
        .expect("admin answers");
    assert_eq!(rotated.status(), 200);
    let after = mesh.emulator.app_token(READER_ID, READER_SECRET).await;
    let kid = |token: &str| {
        jsonwebtoken::decode_header(token)
            .expect("header")
            .kid
            .expect("kid")
    };
    assert_ne!(kid(&before), kid(&after), "signed with the new key");
    assert_eq!(
        mesh.api.get("/api/whoami", Some(&after)).await.status(),
        200,
        "new kid fetched on demand"
    );
    assert_eq!(
        mesh.api.get("/api/whoami", Some(&before)).await.status(),
        200,
        "old key still published"
    );
    let metrics = mesh
        .api
        .get("/metrics", None)
        .await
        .text()
        .await
        .expect("text");
    assert!(
        metrics.lines().any(|l| l == "api_jwks_fetches_total 2"),
        "{metrics}"
    );
}
