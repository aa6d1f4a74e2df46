//! Tokens as Entra shapes them: response fields and headers, v2 and v1 claims, signatures that
//! verify against the published JWKS.

use crate::helpers::*;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

async fn verify_with_jwks(emu: &Emulator, token: &str, audience: &str, issuer: &str) -> Value {
    let (header, _) = decode_parts(token);
    let (_, jwks) = emu
        .get_json(&format!("/{TENANT}/discovery/v2.0/keys"))
        .await;
    let kid = header["kid"].as_str().expect("kid");
    let jwk = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == kid)
        .expect("signing key is published");
    let key = DecodingKey::from_rsa_components(
        jwk["n"].as_str().expect("n"),
        jwk["e"].as_str().expect("e"),
    )
    .expect("key");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[issuer]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .expect("token verifies")
        .claims
}

#[tokio::test]
async fn v2_app_token_has_entras_shape_and_verifies() {
    let emu = spawn_emulator().await;
    let response = emu.post_secret(READER_ID, READER_SECRET, API_SCOPE).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store, no-cache");
    assert_eq!(response.headers()["pragma"], "no-cache");
    let body: Value = response.json().await.expect("json");
    let fields: Vec<&str> = body
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields.len(),
        4,
        "exactly token_type, expires_in, ext_expires_in, access_token: {fields:?}"
    );
    assert_eq!(body["token_type"], "Bearer");
    let expires_in = body["expires_in"].as_i64().expect("number");
    assert!(
        (3599..=5399).contains(&expires_in),
        "Entra's 60–90 minutes: {expires_in}"
    );
    assert_eq!(body["ext_expires_in"], body["expires_in"]);

    let token = body["access_token"].as_str().expect("token");
    let (header, _) = decode_parts(token);
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["alg"], "RS256");
    assert!(header.get("x5t").is_none(), "v2 tokens carry kid only");
    let issuer = format!("{}/{TENANT}/v2.0", emu.url);
    let claims = verify_with_jwks(&emu, token, API_CLIENT_ID, &issuer).await;
    assert_eq!(
        claims["aud"], API_CLIENT_ID,
        "v2 aud is the API's client ID even when api:// was asked"
    );
    assert_eq!(claims["azp"], READER_ID);
    assert_eq!(claims["azpacr"], "1");
    assert_eq!(claims["idtyp"], "app");
    assert_eq!(claims["oid"], READER_SP);
    assert_eq!(claims["sub"], READER_SP);
    assert_eq!(claims["tid"], TENANT);
    assert_eq!(claims["ver"], "2.0");
    assert_eq!(claims["roles"], serde_json::json!(["Tasks.Read.All"]));
    assert!(claims.get("scp").is_none());
    assert!(claims.get("appid").is_none());
    let (iat, nbf, exp) = (
        claims["iat"].as_i64(),
        claims["nbf"].as_i64(),
        claims["exp"].as_i64(),
    );
    let (iat, nbf, exp) = (iat.expect("iat"), nbf.expect("nbf"), exp.expect("exp"));
    assert_eq!(iat, nbf);
    assert_eq!(
        iat,
        emu.now() - 300,
        "back-dated five minutes as Entra does"
    );
    assert_eq!(exp - emu.now(), expires_in + 1);
}

#[tokio::test]
async fn http_basic_and_guid_scope_and_oidc_extras_work() {
    let emu = spawn_emulator().await;
    let response = emu
        .http
        .post(emu.token_url())
        .basic_auth(WRITER_ID, Some(WRITER_SECRET))
        .form(&[
            ("grant_type", "client_credentials"),
            (
                "scope",
                &format!("{API_CLIENT_ID}/.default openid profile offline_access"),
            ),
        ])
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    let (_, claims) = decode_parts(body["access_token"].as_str().expect("token"));
    assert_eq!(claims["azp"], WRITER_ID);
    assert_eq!(claims["roles"], serde_json::json!(["Tasks.ReadWrite.All"]));
}

#[tokio::test]
async fn tenant_domain_works_like_its_guid() {
    let emu = spawn_emulator().await;
    let url = format!("{}/{TENANT_DOMAIN}/oauth2/v2.0/token", emu.http_url);
    let response = emu
        .post_secret_at(&url, READER_ID, READER_SECRET, API_SCOPE)
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(
        decode_parts(body["access_token"].as_str().expect("token")).1["tid"],
        TENANT
    );
}

#[tokio::test]
async fn a_client_without_roles_gets_a_token_without_a_roles_claim() {
    let emu = spawn_emulator().await;
    let body = emu
        .secret_token(STRANGER_ID, STRANGER_SECRET, API_SCOPE)
        .await;
    let (_, claims) = decode_parts(body["access_token"].as_str().expect("token"));
    assert_eq!(claims["azp"], STRANGER_ID);
    assert!(claims.get("roles").is_none(), "absent, not empty: {claims}");
}

#[tokio::test]
async fn v1_resource_gets_a_v1_token_from_the_v2_endpoint() {
    let emu = spawn_emulator().await;
    let body = emu
        .secret_token(READER_ID, READER_SECRET, AUDIT_SCOPE)
        .await;
    let token = body["access_token"].as_str().expect("token");
    let (header, claims) = decode_parts(token);
    assert_eq!(header["x5t"], header["kid"], "v1 tokens carry x5t = kid");
    assert_eq!(claims["ver"], "1.0");
    assert_eq!(
        claims["aud"], "api://audit-api",
        "v1 aud is the resource as requested"
    );
    assert_eq!(claims["iss"], format!("{}/{TENANT}/", emu.url));
    assert_eq!(claims["appid"], READER_ID);
    assert_eq!(claims["appidacr"], "1");
    assert!(claims.get("azp").is_none());
    assert!(
        claims.get("idtyp").is_none(),
        "audit-api has not enabled idtyp"
    );
    assert_eq!(claims["roles"], serde_json::json!(["Audit.Read"]));
}

#[tokio::test]
async fn v1_endpoint_takes_resource_and_answers_numbers_as_strings() {
    let emu = spawn_emulator().await;
    let url = format!("{}/{TENANT}/oauth2/token", emu.http_url);
    let response = emu
        .post_token_at(
            &url,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", READER_ID),
                ("client_secret", READER_SECRET),
                ("resource", "api://audit-api"),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert!(body["expires_in"].is_string());
    assert!(
        body["expires_on"]
            .as_str()
            .expect("string")
            .parse::<i64>()
            .is_ok()
    );
    assert_eq!(body["resource"], "api://audit-api");
}

#[tokio::test]
async fn lifetime_is_configurable() {
    let emu = spawn_with(|s| {
        s.tokens.lifetime_min_secs = 300;
        s.tokens.lifetime_max_secs = 300;
    })
    .await;
    let body = emu.secret_token(READER_ID, READER_SECRET, API_SCOPE).await;
    assert_eq!(body["expires_in"], 299);
    let (_, claims) = decode_parts(body["access_token"].as_str().expect("token"));
    assert_eq!(claims["exp"].as_i64(), Some(emu.now() + 300));
}

#[tokio::test]
async fn default_lifetimes_spread_over_60_to_90_minutes() {
    let emu = spawn_emulator().await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let body = emu.secret_token(READER_ID, READER_SECRET, API_SCOPE).await;
        let expires_in = body["expires_in"].as_i64().expect("number");
        assert!((3599..=5399).contains(&expires_in), "{expires_in}");
        seen.insert(expires_in);
    }
    assert!(
        seen.len() > 10,
        "lifetimes must be drawn at random, saw {seen:?}"
    );
}

/// Every tenant holds Microsoft's first-party resources, as Entra's do: client credentials for
/// Graph, Azure Resource Manager (both spellings the SDKs and the az CLI send), Key Vault and
/// Storage get v1 tokens whose `aud` is the resource as requested, and verify.
#[tokio::test]
async fn first_party_resources_answer_in_every_tenant() {
    let emu = spawn_emulator().await;
    for (scope, audience) in [
        (
            "https://graph.microsoft.com/.default",
            "https://graph.microsoft.com",
        ),
        (
            "https://management.azure.com/.default",
            "https://management.azure.com",
        ),
        (
            "https://management.core.windows.net//.default",
            "https://management.core.windows.net/",
        ),
        (
            "https://vault.azure.net/.default",
            "https://vault.azure.net",
        ),
        (
            "https://storage.azure.com/.default",
            "https://storage.azure.com",
        ),
        (
            "00000003-0000-0000-c000-000000000000/.default",
            "00000003-0000-0000-c000-000000000000",
        ),
    ] {
        let body = emu.secret_token(READER_ID, READER_SECRET, scope).await;
        let token = body["access_token"].as_str().expect("token");
        let claims =
            verify_with_jwks(&emu, token, audience, &format!("{}/{TENANT}/", emu.url)).await;
        assert_eq!(claims["ver"], "1.0", "{scope}");
        assert_eq!(claims["appid"], READER_ID, "{scope}");
        assert_eq!(claims["idtyp"], "app", "{scope}");
        assert_eq!(claims["tid"], TENANT, "{scope}");
        assert!(claims.get("roles").is_none(), "no role assigned: {claims}");
        assert_eq!(claims["oid"], claims["sub"], "{scope}");
    }
    // The first-party app's service principal in this tenant, a GUID as Entra's.
    let (_, here) = decode_parts(
        emu.secret_token(
            READER_ID,
            READER_SECRET,
            "https://graph.microsoft.com/.default",
        )
        .await["access_token"]
            .as_str()
            .expect("token"),
    );
    assert!(
        uuid::Uuid::parse_str(here["oid"].as_str().expect("oid")).is_ok(),
        "{here}"
    );
}
