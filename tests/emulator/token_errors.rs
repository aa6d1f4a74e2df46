//! Every AADSTS case of the token endpoint: status, `error`, `error_codes`, description prefix.

use crate::helpers::*;
use jsonwebtoken::{EncodingKey, Header};
use shared::assertion::{AssertionAlgorithm, CertificateAssertion};

const CC: (&str, &str) = ("grant_type", "client_credentials");

#[tokio::test]
async fn wrong_client_secret_is_7000215() {
    let emu = spawn_emulator().await;
    let response = emu
        .post_secret(READER_ID, "not-the-secret", API_SCOPE)
        .await;
    assert_aadsts(response, 401, "invalid_client", 7000215).await;
}

#[tokio::test]
async fn no_credential_is_7000218() {
    let emu = spawn_emulator().await;
    let response = emu
        .post_token(&[CC, ("client_id", READER_ID), ("scope", API_SCOPE)])
        .await;
    assert_aadsts(response, 401, "invalid_client", 7000218).await;
}

#[tokio::test]
async fn expired_client_secret_is_7000222() {
    let emu = spawn_emulator().await;
    let response = emu
        .post_secret(WRITER_ID, WRITER_EXPIRED_SECRET, API_SCOPE)
        .await;
    assert_aadsts(response, 401, "invalid_client", 7000222).await;
}

#[tokio::test]
async fn unknown_application_is_700016() {
    let emu = spawn_emulator().await;
    let unknown = "99999999-9999-4999-8999-999999999999";
    let response = emu.post_secret(unknown, READER_SECRET, API_SCOPE).await;
    let body = assert_aadsts(response, 400, "unauthorized_client", 700016).await;
    assert!(description(&body).contains(unknown));
}

async fn scope_error(scope: &str, status: u16, error: &str, code: u32) {
    let emu = spawn_emulator().await;
    let response = emu.post_secret(READER_ID, READER_SECRET, scope).await;
    assert_aadsts(response, status, error, code).await;
}

#[tokio::test]
async fn scope_without_default_is_1002012() {
    scope_error("api://tasks-api/Tasks.Read", 400, "invalid_scope", 1002012).await;
}

#[tokio::test]
async fn scope_with_only_oidc_values_is_70011() {
    scope_error("openid profile offline_access", 400, "invalid_scope", 70011).await;
}

#[tokio::test]
async fn scope_naming_two_resources_is_700022() {
    scope_error(
        "api://tasks-api/.default api://audit-api/.default",
        400,
        "invalid_scope",
        700022,
    )
    .await;
}

#[tokio::test]
async fn unknown_resource_is_500011() {
    scope_error(
        "api://no-such-api/.default",
        400,
        "invalid_resource",
        500011,
    )
    .await;
}

#[tokio::test]
async fn missing_scope_is_900144() {
    let emu = spawn_emulator().await;
    let response = emu
        .post_token(&[
            CC,
            ("client_id", READER_ID),
            ("client_secret", READER_SECRET),
        ])
        .await;
    let body = assert_aadsts(response, 400, "invalid_request", 900144).await;
    assert!(description(&body).contains("'scope'"));
}

#[tokio::test]
async fn resource_requiring_assignment_without_one_is_501051() {
    let emu = spawn_emulator().await;
    let response = emu
        .post_secret(STRANGER_ID, STRANGER_SECRET, AUDIT_SCOPE)
        .await;
    assert_aadsts(response, 400, "invalid_grant", 501051).await;
}

#[tokio::test]
async fn unsupported_grant_type_is_70003() {
    let emu = spawn_emulator().await;
    let response = emu
        .post_token(&[
            ("grant_type", "password"),
            ("client_id", READER_ID),
            ("scope", API_SCOPE),
        ])
        .await;
    assert_aadsts(response, 400, "unsupported_grant_type", 70003).await;
}

#[tokio::test]
async fn unknown_tenant_is_90002() {
    let emu = spawn_emulator().await;
    let url = format!("{}/nowhere.onmicrosoft.com/oauth2/v2.0/token", emu.http_url);
    let response = emu
        .post_secret_at(&url, READER_ID, READER_SECRET, API_SCOPE)
        .await;
    assert_aadsts(response, 400, "invalid_tenant", 90002).await;
}

async fn post_assertion(emu: &Emulator, assertion: &str) -> reqwest::Response {
    emu.post_token(&[
        CC,
        ("client_id", CERT_ID),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", assertion),
        ("scope", API_SCOPE),
    ])
    .await
}

fn rsa_key() -> rcgen::KeyPair {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA key")
}

/// An assertion for cert-job, signed now by `key_pem` and naming `certificate_pem`.
fn signed_as_cert_job(
    emu: &Emulator,
    certificate_pem: &[u8],
    key_pem: &[u8],
    algorithm: AssertionAlgorithm,
) -> String {
    CertificateAssertion::from_pem(CERT_ID, certificate_pem, key_pem, algorithm)
        .expect("credential")
        .sign(&emu.assertion_audience(), emu.now())
        .expect("signs")
        .expose()
        .to_owned()
}

#[tokio::test]
async fn expired_assertion_is_700024() {
    let emu = spawn_emulator().await;
    let stale = demo_cert(AssertionAlgorithm::Ps256)
        .sign(&emu.assertion_audience(), emu.now() - 3600)
        .expect("signs");
    let response = post_assertion(&emu, stale.expose()).await;
    assert_aadsts(response, 401, "invalid_client", 700024).await;
}

#[tokio::test]
async fn assertion_signed_with_another_key_is_700027() {
    let emu = spawn_emulator().await;
    let registered_cert = std::fs::read(demo_dir().join("certs/cert-job.crt")).expect("cert");
    // Names the registered certificate's thumbprint but is signed by a key the attacker holds.
    let forged = signed_as_cert_job(
        &emu,
        &registered_cert,
        rsa_key().serialize_pem().as_bytes(),
        AssertionAlgorithm::Ps256,
    );
    let response = post_assertion(&emu, &forged).await;
    let body = assert_aadsts(response, 401, "invalid_client", 700027).await;
    assert!(description(&body).contains("signature validation"));
}

#[tokio::test]
async fn assertion_naming_an_unregistered_certificate_is_700027() {
    let emu = spawn_emulator().await;
    let key = rsa_key();
    let cert = rcgen::CertificateParams::new(vec!["unregistered".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let assertion = signed_as_cert_job(
        &emu,
        cert.pem().as_bytes(),
        key.serialize_pem().as_bytes(),
        AssertionAlgorithm::Rs256,
    );
    let response = post_assertion(&emu, &assertion).await;
    let body = assert_aadsts(response, 401, "invalid_client", 700027).await;
    assert!(description(&body).contains("key was not found"));
}

#[tokio::test]
async fn assertion_with_hs256_is_5002738() {
    let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
    header.x5t = Some("anything".into());
    let claims = serde_json::json!({"iss": CERT_ID, "sub": CERT_ID, "aud": "x", "exp": 4_000_000_000i64, "jti": "1"});
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(b"public-key-as-hmac-secret"),
    )
    .expect("encode");
    let emu = spawn_emulator().await;
    assert_aadsts(
        post_assertion(&emu, &token).await,
        400,
        "invalid_request",
        5002738,
    )
    .await;
}

#[tokio::test]
async fn assertion_for_another_audience_is_700023() {
    let emu = spawn_emulator().await;
    let assertion = demo_cert(AssertionAlgorithm::Ps256)
        .sign(
            "https://login.microsoftonline.com/another-tenant/oauth2/v2.0/token",
            emu.now(),
        )
        .expect("signs");
    let response = post_assertion(&emu, assertion.expose()).await;
    assert_aadsts(response, 401, "invalid_client", 700023).await;
}

#[tokio::test]
async fn assertion_replayed_while_valid_is_refused() {
    let emu = spawn_emulator().await;
    let assertion = demo_cert(AssertionAlgorithm::Ps256)
        .sign(&emu.assertion_audience(), emu.now())
        .expect("signs");
    assert_eq!(post_assertion(&emu, assertion.expose()).await.status(), 200);
    let body = assert_aadsts(
        post_assertion(&emu, assertion.expose()).await,
        401,
        "invalid_client",
        700027,
    )
    .await;
    assert!(description(&body).contains("jti"));
}

#[tokio::test]
async fn public_client_presenting_a_secret_is_700025() {
    let emu = spawn_emulator().await;
    let response = emu
        .post_secret(CLI_ID, "whatever-whatever", API_SCOPE)
        .await;
    assert_aadsts(response, 401, "invalid_client", 700025).await;
}

/// Posts `body` as it is, labelled as a form.
async fn post_body(emu: &Emulator, body: impl Into<reqwest::Body>) -> reqwest::Response {
    emu.http
        .post(emu.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("answers")
}

#[tokio::test]
async fn malformed_bodies_get_entra_errors_never_500() {
    let emu = spawn_emulator().await;
    let cases: [(&str, Vec<u8>, &str, u32); 5] = [
        (
            "bad percent-encoding",
            b"grant_type=%zz%&client_id=%%%".to_vec(),
            "unsupported_grant_type",
            70003,
        ),
        (
            "invalid UTF-8",
            vec![0xff, 0xfe, b'=', 0xc3, 0x28],
            "invalid_request",
            900144,
        ),
        (
            "JSON instead of a form",
            br#"{"grant_type":"client_credentials"}"#.to_vec(),
            "invalid_request",
            900144,
        ),
        ("empty", Vec::new(), "invalid_request", 900144),
        (
            "NUL bytes",
            b"grant_type=client_credentials\0&client_id=\0\0".to_vec(),
            "unsupported_grant_type",
            70003,
        ),
    ];
    for (name, body, error, code) in cases {
        let response = post_body(&emu, body).await;
        let body = assert_aadsts(response, 400, error, code).await;
        assert!(description(&body).contains("grant"), "{name}: {body}");
    }
}

#[tokio::test]
async fn a_body_over_the_size_cap_is_refused() {
    let emu = spawn_emulator().await;
    let huge = format!(
        "grant_type=client_credentials&client_secret={}",
        "a".repeat(200 * 1024)
    );
    let response = post_body(&emu, huge).await;
    assert_aadsts(response, 400, "invalid_request", 90023).await;
}

#[tokio::test]
async fn correlation_id_echoes_client_request_id() {
    let emu = spawn_emulator().await;
    let correlation = "0f0e0d0c-0b0a-4909-8807-060504030201";
    let response = emu
        .http
        .post(emu.token_url())
        .header("client-request-id", correlation)
        .form(&[
            CC,
            ("client_id", READER_ID),
            ("client_secret", "wrong"),
            ("scope", API_SCOPE),
        ])
        .send()
        .await
        .expect("answers");
    assert_eq!(response.headers()["client-request-id"], correlation);
    let body = assert_aadsts(response, 401, "invalid_client", 7000215).await;
    assert_eq!(body["correlation_id"], correlation);
}

fn assertion_claims(emu: &Emulator) -> serde_json::Value {
    serde_json::json!({
        "aud": emu.assertion_audience(), "iss": CERT_ID, "sub": CERT_ID,
        "jti": uuid::Uuid::new_v4().to_string(), "iat": emu.now(), "exp": emu.now() + 600,
    })
}

#[tokio::test]
async fn assertion_issued_by_another_client_is_700021() {
    let emu = spawn_emulator().await;
    let mut claims = assertion_claims(&emu);
    claims["iss"] = READER_ID.into();
    claims["sub"] = READER_ID.into();
    assert_aadsts(
        post_assertion(&emu, &demo_signed(&claims)).await,
        401,
        "invalid_client",
        700021,
    )
    .await;
}

#[tokio::test]
async fn assertion_not_yet_valid_or_valid_too_long_is_700024() {
    let emu = spawn_emulator().await;
    let mut future = assertion_claims(&emu);
    future["nbf"] = (emu.now() + 3600).into();
    assert_aadsts(
        post_assertion(&emu, &demo_signed(&future)).await,
        401,
        "invalid_client",
        700024,
    )
    .await;

    let mut too_long = assertion_claims(&emu);
    too_long["exp"] = (emu.now() + 7 * 24 * 3600).into();
    assert_aadsts(
        post_assertion(&emu, &demo_signed(&too_long)).await,
        401,
        "invalid_client",
        700024,
    )
    .await;
}

#[tokio::test]
async fn assertion_with_absurd_times_is_refused_not_a_crash() {
    let emu = spawn_emulator().await;
    for (field, value) in [("exp", 1e19), ("nbf", -1e19), ("exp", f64::MAX)] {
        let mut claims = assertion_claims(&emu);
        claims[field] = value.into();
        let response = post_assertion(&emu, &demo_signed(&claims)).await;
        assert_aadsts(response, 400, "invalid_request", 50027).await;
    }
    // Floats as MSAL for Python writes them are fine.
    let mut claims = assertion_claims(&emu);
    claims["exp"] = (emu.now() as f64 + 600.877).into();
    assert_eq!(
        post_assertion(&emu, &demo_signed(&claims)).await.status(),
        200
    );
}

#[tokio::test]
async fn an_expired_certificate_credential_is_700027() {
    let dir = TempDir::new("emulator");
    let key = rsa_key();
    let mut params =
        rcgen::CertificateParams::new(vec!["expired-job".to_string()]).expect("params");
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(60);
    params.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    let cert = params.self_signed(&key).expect("cert");
    let directory = write_directory(
        &dir,
        &format!(
            "[[tenants]]\nid = \"{TENANT}\"\ndomain = \"{TENANT_DOMAIN}\"\n\
             [[tenants.applications]]\nname = \"api\"\nclient_id = \"{API_CLIENT_ID}\"\nservice_principal_id = \"a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d\"\nidentifier_uris = [\"api://tasks-api\"]\n\
             [[tenants.applications]]\nname = \"expired-job\"\nclient_id = \"{CERT_ID}\"\nservice_principal_id = \"e5f6a7b8-c9d0-4e1f-8a2b-4c5d6e7f8a9b\"\n\
             [[tenants.applications.certificates]]\npath = \"expired.crt\"\n"
        ),
        &[("expired.crt", &cert.pem())],
    );
    let emu = spawn_with(|s| s.directory = directory).await;
    let assertion = signed_as_cert_job(
        &emu,
        cert.pem().as_bytes(),
        key.serialize_pem().as_bytes(),
        AssertionAlgorithm::Ps256,
    );
    let body = assert_aadsts(
        post_assertion(&emu, &assertion).await,
        401,
        "invalid_client",
        700027,
    )
    .await;
    assert!(description(&body).contains("expired"));
}

/// An assertion whose header and payload are these bytes exactly, signed by the demo certificate's
/// key (so only the bytes can be wrong).
fn demo_signed_bytes(header: &[u8], payload: &[u8]) -> String {
    use base64::Engine;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let key = std::fs::read(demo_dir().join("certs/cert-job.key")).expect("demo key");
    let key = EncodingKey::from_rsa_pem(&key).expect("RSA key");
    let signing_input = format!("{}.{}", b64(header), b64(payload));
    let signature = jsonwebtoken::crypto::sign(
        signing_input.as_bytes(),
        &key,
        jsonwebtoken::Algorithm::PS256,
    )
    .expect("signs");
    format!("{signing_input}.{signature}")
}

#[tokio::test]
async fn assertion_that_is_not_utf8_json_or_repeats_a_header_member_is_50027() {
    use base64::Engine;
    let emu = spawn_emulator().await;
    // The header the demo credential writes, so the certificate is found and the signature holds.
    let valid = demo_signed(&assertion_claims(&emu));
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(valid.split('.').next().expect("header"))
        .expect("base64url");
    let claims = assertion_claims(&emu).to_string();

    // Invalid UTF-8 inside the string of a claim the emulator never reads (RFC 7519 §7.2).
    let mut payload = claims.as_bytes()[..claims.len() - 1].to_vec();
    payload.extend_from_slice(b",\"xms_note\":\"a");
    payload.extend_from_slice(&[0xff, 0xfe]);
    payload.extend_from_slice(b"\"}");
    let response = post_assertion(&emu, &demo_signed_bytes(&header, &payload)).await;
    assert_aadsts(response, 400, "invalid_request", 50027).await;

    // `alg` twice in the header (RFC 7515 §4): which one a verifier reads must not be a question.
    let header_text = String::from_utf8(header.clone()).expect("UTF-8");
    let twice = header_text.replacen('{', "{\"alg\":\"none\",", 1);
    let fresh = assertion_claims(&emu).to_string();
    let response =
        post_assertion(&emu, &demo_signed_bytes(twice.as_bytes(), fresh.as_bytes())).await;
    assert_aadsts(response, 400, "invalid_request", 50027).await;

    // The control: the same construction with clean bytes is accepted.
    let clean = assertion_claims(&emu).to_string();
    let response = post_assertion(&emu, &demo_signed_bytes(&header, clean.as_bytes())).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_get_on_either_token_endpoint_is_900561() {
    let emu = spawn_emulator().await;
    for path in ["oauth2/v2.0/token", "oauth2/token"] {
        let response = emu
            .http
            .get(format!("{}/{TENANT}/{path}", emu.url))
            .send()
            .await
            .expect("answers");
        assert_aadsts(response, 400, "invalid_request", 900561).await;
    }
}
