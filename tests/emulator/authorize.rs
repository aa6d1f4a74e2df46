//! Authorization code with PKCE: a genuine user-delegated token, and the ways a code is refused.

use crate::helpers::*;
use serde_json::Value;
use std::sync::Arc;

const VERIFIER: &str = "x-verifier-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFG";

/// `defaults`, each replaced by the parameter of the same name in `extra`, then the rest of
/// `extra`: a repeated parameter would make the request malformed.
fn overridden<'a>(
    mut defaults: Vec<(&'a str, &'a str)>,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    defaults.retain(|(name, _)| !extra.iter().any(|(n, _)| n == name));
    defaults.extend_from_slice(extra);
    defaults
}

async fn get_authorize(emu: &Emulator, query: &[(&str, &str)]) -> reqwest::Response {
    emu.http
        .get(format!("{}/{TENANT}/oauth2/v2.0/authorize", emu.http_url))
        .query(query)
        .send()
        .await
        .expect("answers")
}

async fn authorize(emu: &Emulator, extra: &[(&str, &str)]) -> reqwest::Response {
    let challenge = entra_emulator::codes::s256(VERIFIER);
    let defaults = vec![
        ("client_id", CLI_ID),
        ("response_type", "code"),
        ("redirect_uri", CLI_REDIRECT),
        (
            "scope",
            "api://tasks-api/Tasks.Read openid profile offline_access",
        ),
        ("state", "st-123"),
        ("nonce", "n-456"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    get_authorize(emu, &overridden(defaults, extra)).await
}

fn redirect_params(response: &reqwest::Response) -> std::collections::HashMap<String, String> {
    assert_eq!(response.status(), 302);
    let location = response.headers()["location"].to_str().expect("location");
    assert!(location.starts_with(CLI_REDIRECT), "{location}");
    url::Url::parse(location)
        .expect("url")
        .query_pairs()
        .into_owned()
        .collect()
}

/// A code for the demo user, signed in by `login_hint` on the default request.
async fn user_code(emu: &Emulator) -> String {
    redirect_params(&authorize(emu, &[("login_hint", USER)]).await)["code"].clone()
}

/// Redeems `code` as the CLI client with `VERIFIER`, but for the parameters `extra` gives.
async fn redeem_with(emu: &Emulator, code: &str, extra: &[(&str, &str)]) -> reqwest::Response {
    let defaults = vec![
        ("grant_type", "authorization_code"),
        ("client_id", CLI_ID),
        ("code", code),
        ("redirect_uri", CLI_REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    emu.post_token(&overridden(defaults, extra)).await
}

async fn redeem(emu: &Emulator, code: &str, verifier: &str) -> reqwest::Response {
    redeem_with(emu, code, &[("code_verifier", verifier)]).await
}

#[tokio::test]
async fn login_hint_signs_in_without_a_page_and_yields_a_user_token() {
    let emu = spawn_emulator().await;
    let params = redirect_params(&authorize(&emu, &[("login_hint", USER)]).await);
    assert_eq!(params["state"], "st-123");
    let response = redeem(&emu, &params["code"], VERIFIER).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["scope"], "api://tasks-api/Tasks.Read");
    let (_, claims) = decode_parts(body["access_token"].as_str().expect("token"));
    assert_eq!(claims["aud"], API_CLIENT_ID);
    assert_eq!(claims["scp"], "Tasks.Read");
    assert_eq!(claims["idtyp"], "user");
    assert_eq!(claims["azp"], CLI_ID);
    assert_eq!(claims["azpacr"], "0", "public client");
    assert_eq!(claims["oid"], USER_OID);
    assert_ne!(
        claims["sub"], USER_OID,
        "sub is pairwise, not the object ID"
    );
    assert_eq!(claims["preferred_username"], USER);
    assert_eq!(claims["name"], "Ada Lovelace");
    assert!(claims.get("roles").is_none());
    let (_, id_token) = decode_parts(
        body["id_token"]
            .as_str()
            .expect("id_token when openid was asked"),
    );
    assert_eq!(id_token["aud"], CLI_ID);
    assert_eq!(id_token["nonce"], "n-456");
}

#[tokio::test]
async fn a_code_is_single_use() {
    let emu = spawn_emulator().await;
    let code = user_code(&emu).await;
    assert_eq!(redeem(&emu, &code, VERIFIER).await.status(), 200);
    assert_aadsts(
        redeem(&emu, &code, VERIFIER).await,
        400,
        "invalid_grant",
        54005,
    )
    .await;
}

#[tokio::test]
async fn a_wrong_verifier_is_501481_and_burns_the_code() {
    let emu = spawn_emulator().await;
    let code = user_code(&emu).await;
    let wrong = "another-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";
    assert_aadsts(
        redeem(&emu, &code, wrong).await,
        400,
        "invalid_grant",
        501481,
    )
    .await;
    assert_aadsts(
        redeem(&emu, &code, VERIFIER).await,
        400,
        "invalid_grant",
        54005,
    )
    .await;
}

#[tokio::test]
async fn a_code_expires_after_its_lifetime() {
    let clock = Arc::new(ManualClock::at_system_time());
    let emu = spawn_on(Arc::new(TempDir::new("emulator")), clock.clone(), |_| {}).await;
    let code = user_code(&emu).await;
    clock.advance_secs(601);
    assert_aadsts(
        redeem(&emu, &code, VERIFIER).await,
        400,
        "invalid_grant",
        70008,
    )
    .await;
}

#[tokio::test]
async fn without_login_hint_a_sign_in_form_is_shown() {
    let emu = spawn_emulator().await;
    let response = authorize(&emu, &[]).await;
    assert_eq!(response.status(), 200);
    let html = response.text().await.expect("html");
    assert!(html.contains("name=\"login_hint\""), "{html}");
    assert!(
        html.contains("name=\"code_challenge\""),
        "the form keeps the request's parameters"
    );
}

#[tokio::test]
async fn an_unregistered_redirect_uri_is_never_redirected_to() {
    let emu = spawn_emulator().await;
    let challenge = entra_emulator::codes::s256(VERIFIER);
    let response = get_authorize(
        &emu,
        &[
            ("client_id", CLI_ID),
            ("response_type", "code"),
            ("redirect_uri", "https://evil.example/cb"),
            ("scope", "api://tasks-api/Tasks.Read"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("login_hint", USER),
        ],
    )
    .await;
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("location").is_none());
    assert!(response.text().await.expect("html").contains("AADSTS50011"));
}

#[tokio::test]
async fn pkce_is_required() {
    let emu = spawn_emulator().await;
    let response = get_authorize(
        &emu,
        &[
            ("client_id", CLI_ID),
            ("response_type", "code"),
            ("redirect_uri", CLI_REDIRECT),
            ("scope", "api://tasks-api/Tasks.Read"),
            ("state", "s"),
            ("login_hint", USER),
        ],
    )
    .await;
    let params = redirect_params(&response);
    assert_eq!(params["error"], "invalid_request");
    assert!(params["error_description"].starts_with("AADSTS9002325"));
    assert_eq!(params["state"], "s");
}

#[tokio::test]
async fn a_code_is_bound_to_its_client_and_redirect_uri() {
    let emu = spawn_emulator().await;
    let code = user_code(&emu).await;
    let response = redeem_with(
        &emu,
        &code,
        &[("client_id", READER_ID), ("client_secret", READER_SECRET)],
    )
    .await;
    assert_aadsts(response, 400, "invalid_grant", 70000).await;

    let code = user_code(&emu).await;
    let response = redeem_with(
        &emu,
        &code,
        &[("redirect_uri", "http://localhost:8400/other")],
    )
    .await;
    assert_aadsts(response, 400, "invalid_grant", 70000).await;
}

#[tokio::test]
async fn client_info_is_answered_when_msal_asks_for_it() {
    let emu = spawn_emulator().await;
    let params = redirect_params(
        &authorize(
            &emu,
            &[
                ("login_hint", USER),
                ("scope", "api://tasks-api/Tasks.Read OpenID"),
            ],
        )
        .await,
    );
    let response = redeem_with(&emu, &params["code"], &[("client_info", "1")]).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    use base64::Engine;
    let info = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body["client_info"].as_str().expect("client_info"))
        .expect("base64url");
    let info: Value = serde_json::from_slice(&info).expect("json");
    assert_eq!(info["uid"], USER_OID);
    assert_eq!(info["utid"], TENANT);
    assert!(
        body.get("id_token").is_some(),
        "OIDC scopes compare case-insensitively"
    );
}

#[tokio::test]
async fn a_bare_permission_for_a_registered_graph_is_refused_not_a_crash() {
    let dir = TempDir::new("emulator");
    let directory = write_directory(
        &dir,
        &format!(
            "[[tenants]]\nid = \"{TENANT}\"\ndomain = \"{TENANT_DOMAIN}\"\n\
             [[tenants.applications]]\nname = \"graph\"\nclient_id = \"00000003-0000-0000-c000-000000000000\"\nservice_principal_id = \"a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d\"\nidentifier_uris = [\"https://graph.microsoft.com\"]\ndelegated_scopes = [\"User.Read\"]\n\
             [[tenants.applications]]\nname = \"cli\"\nclient_id = \"{CLI_ID}\"\nservice_principal_id = \"a7b8c9d0-e1f2-4a3b-8c4d-6e7f8a9b0c1d\"\npublic_client = true\nredirect_uris = [\"{CLI_REDIRECT}\"]\n"
        ),
        &[],
    );
    let emu = spawn_with(|s| s.directory = directory).await;
    let params =
        redirect_params(&authorize(&emu, &[("scope", "User.Read"), ("login_hint", USER)]).await);
    assert_eq!(params["error"], "invalid_scope");
    // The worker survived: the emulator still answers.
    let (status, _) = emu
        .get_json(&format!("/{TENANT}/v2.0/.well-known/openid-configuration"))
        .await;
    assert_eq!(status, 200);
}

/// The v1 endpoints: `resource=` instead of `scope` asks for every scope the user consented to on
/// that API, and the v1 token endpoint redeems the code with v1's answer.
#[tokio::test]
async fn the_v1_authorize_endpoint_and_its_code_redemption() {
    let emu = spawn_emulator().await;
    let challenge = entra_emulator::codes::s256(VERIFIER);
    let response = emu
        .http
        .get(format!("{}/{TENANT}/oauth2/authorize", emu.http_url))
        .query(&[
            ("client_id", CLI_ID),
            ("response_type", "code"),
            ("redirect_uri", CLI_REDIRECT),
            ("resource", API_APP_ID_URI),
            ("state", "v1-state"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("login_hint", USER),
        ])
        .send()
        .await
        .expect("answers");
    let params = redirect_params(&response);
    assert_eq!(params["state"], "v1-state");
    let redeemed = emu
        .post_token_at(
            &format!("{}/{TENANT}/oauth2/token", emu.http_url),
            &[
                ("grant_type", "authorization_code"),
                ("client_id", CLI_ID),
                ("code", params["code"].as_str()),
                ("redirect_uri", CLI_REDIRECT),
                ("code_verifier", VERIFIER),
            ],
        )
        .await;
    assert_eq!(redeemed.status(), 200);
    let body: Value = redeemed.json().await.expect("json");
    assert!(body["expires_in"].is_string(), "v1 answers strings: {body}");
    let (_, claims) = decode_parts(body["access_token"].as_str().expect("token"));
    assert_eq!(claims["scp"], "Tasks.Read", "what Ada consented to");
    assert_eq!(claims["aud"], API_CLIENT_ID);
}

/// v2's authorize endpoint has no `resource` parameter: Entra answers AADSTS901002.
#[tokio::test]
async fn resource_on_the_v2_endpoint_is_901002() {
    let emu = spawn_emulator().await;
    let response = authorize(&emu, &[("resource", API_APP_ID_URI), ("login_hint", USER)]).await;
    let params = redirect_params(&response);
    assert_eq!(params["error"], "invalid_request");
    assert!(
        params["error_description"].starts_with("AADSTS901002: "),
        "{params:?}"
    );
}
