//! The API against the real emulator over HTTPS (its development CA trusted through
//! `http.extra_ca_file`): tokens of the demo directory's callers, a user token from the PKCE flow,
//! and a key rotation picked up without a restart.

use entra_emulator::clock::SystemClock;
use mesh_tests::api::*;
use mesh_tests::emulator::{Emulator, spawn_emulator_with};
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::Arc;

struct Mesh {
    emulator_url: String,
    /// Trusts the emulator's CA; does not follow redirects (the PKCE flow reads them).
    idp: reqwest::Client,
    api: TestApi,
    _emulator: Emulator,
}

async fn spawn_mesh() -> Mesh {
    shared::telemetry::init_for_tests();
    let emulator = spawn_emulator_with(Arc::new(SystemClock), |s| s.admin.enabled = true).await;
    let (emulator_url, ca) = (emulator.url.clone(), emulator.ca.clone());
    let idp = reqwest::Client::builder()
        .tls_certs_only(
            reqwest::Certificate::from_pem_bundle(&std::fs::read(&ca).expect("ca")).expect("pem"),
        )
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let api = spawn_api_with(
        &emulator_url,
        &TestClock::system(),
        Arc::new(TempDir::new("db")),
        |s| {
            s.http.extra_ca_file = Some(ca.clone());
        },
    )
    .await;
    Mesh {
        emulator_url,
        idp,
        api,
        _emulator: emulator,
    }
}

impl Mesh {
    /// The access token the emulator's token endpoint answers `form` with.
    async fn token(&self, form: &[(&str, &str)]) -> String {
        let response = self
            .idp
            .post(format!("{}/{TENANT}/oauth2/v2.0/token", self.emulator_url))
            .form(form)
            .send()
            .await
            .expect("token endpoint answers");
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.expect("json");
        body["access_token"].as_str().expect("token").to_owned()
    }

    async fn app_token(&self, client_id: &str, secret: &str) -> String {
        self.token(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            ("scope", SCOPE),
        ])
        .await
    }

    /// Ada signs in to the public CLI client with PKCE and gets a delegated token for the API.
    async fn user_token(&self) -> String {
        let verifier = "pkce-verifier-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGH";
        let challenge = entra_emulator::codes::s256(verifier);
        let redirect = self
            .idp
            .get(format!(
                "{}/{TENANT}/oauth2/v2.0/authorize",
                self.emulator_url
            ))
            .query(&[
                ("client_id", CLI_ID),
                ("response_type", "code"),
                ("redirect_uri", CLI_REDIRECT),
                ("scope", "api://tasks-api/Tasks.Read"),
                ("login_hint", "ada@contoso.onmicrosoft.com"),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
            ])
            .send()
            .await
            .expect("authorize answers");
        assert_eq!(redirect.status(), 302);
        let location =
            url::Url::parse(redirect.headers()["location"].to_str().expect("ascii")).expect("url");
        let code = location
            .query_pairs()
            .find(|(k, _)| k == "code")
            .expect("code")
            .1
            .into_owned();
        self.token(&[
            ("grant_type", "authorization_code"),
            ("client_id", CLI_ID),
            ("code", code.as_str()),
            ("redirect_uri", CLI_REDIRECT),
            ("code_verifier", verifier),
        ])
        .await
    }
}

#[tokio::test]
async fn demo_callers_are_let_in_or_refused_as_the_directory_says() {
    let mesh = spawn_mesh().await;
    assert_eq!(mesh.api.get("/readyz", None).await.status(), 200);
    let reader = mesh.app_token(READER_ID, READER_SECRET).await;
    let writer = mesh.app_token(WRITER_ID, WRITER_SECRET).await;

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

    let stranger = mesh.app_token(STRANGER_ID, STRANGER_SECRET).await;
    let (status, _, reason) = refusal(mesh.api.get("/api/whoami", Some(&stranger)).await).await;
    assert_eq!((status, reason.as_str()), (403, "client_not_allowed"));

    let user = mesh.user_token().await;
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
    let before = mesh.app_token(READER_ID, READER_SECRET).await;
    assert_eq!(
        mesh.api.get("/api/whoami", Some(&before)).await.status(),
        200
    );
    let rotated = mesh
        .idp
        .post(format!("{}/admin/keys/rotate", mesh.emulator_url))
        .send()
        .await
        .expect("admin answers");
    assert_eq!(rotated.status(), 200);
    let after = mesh.app_token(READER_ID, READER_SECRET).await;
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
