//! Every refusal reason through the real HTTP stack: status, the `WWW-Authenticate` error and the
//! problem+json reason code, for tokens minted by the test with its own keys.

use crate::helpers::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;

struct Case {
    name: &'static str,
    method: Method,
    path: &'static str,
    authorization: Option<String>,
    status: u16,
    error: Option<&'static str>,
    reason: &'static str,
}

fn case(
    name: &'static str,
    authorization: Option<String>,
    status: u16,
    error: Option<&'static str>,
    reason: &'static str,
) -> Case {
    Case {
        name,
        method: Method::GET,
        path: "/api/whoami",
        authorization,
        status,
        error,
        reason,
    }
}

fn bearer(token: &str) -> Option<String> {
    Some(format!("Bearer {token}"))
}

fn header(alg: &str, kid: &str) -> Value {
    json!({ "typ": "JWT", "alg": alg, "kid": kid })
}

#[tokio::test]
async fn every_refusal_has_its_status_challenge_and_reason() {
    let idp = TestIdp::start().await;
    idp.serve_discovery().await;
    let key = TestKey::generate("k1");
    let unpublished = TestKey::generate("k2");
    let mut foreign_issuer = TestKey::generate("k3");
    foreign_issuer.jwk["issuer"] = json!("https://login.evil.example/{tenantid}/v2.0");
    // Start-up load, plus exactly one refetch for all the unknown-kid tokens below together.
    idp.serve_jwks(&[&key, &foreign_issuer], 2).await;
    let clock = TestClock::new();
    let api = spawn_api(&idp, &clock).await;
    let now = clock.0.load(Ordering::SeqCst);
    let mint = |edit: &dyn Fn(&mut Value)| key.mint(now, |c| edit(c));
    let with = |h: Value| forge(&h, &claims(now), &key);

    let cases = vec![
        case("no header", None, 401, None, "missing_token"),
        case(
            "basic scheme",
            Some("Basic dXNlcjpwYXNz".into()),
            401,
            None,
            "missing_token",
        ),
        case(
            "bearer with two tokens",
            Some("Bearer a b".into()),
            400,
            Some("invalid_request"),
            "malformed_authorization_header",
        ),
        case(
            "over 16 KiB",
            bearer(&"a".repeat(17 * 1024)),
            401,
            Some("invalid_token"),
            "token_too_large",
        ),
        case(
            "two parts",
            bearer("eyJhbGciOiJSUzI1NiJ9.e30"),
            401,
            Some("invalid_token"),
            "not_a_jws",
        ),
        case(
            "JWE, five parts",
            bearer("a.b.c.d.e"),
            401,
            Some("invalid_token"),
            "not_a_jws",
        ),
        case(
            "header not base64url",
            bearer("%%%.e30.c2ln"),
            401,
            Some("invalid_token"),
            "malformed_token",
        ),
        case(
            "alg none",
            bearer(&with(header("none", "k1"))),
            401,
            Some("invalid_token"),
            "unsupported_algorithm",
        ),
        case(
            "alg None",
            bearer(&with(header("None", "k1"))),
            401,
            Some("invalid_token"),
            "unsupported_algorithm",
        ),
        case(
            "alg HS256",
            bearer(&with(header("HS256", "k1"))),
            401,
            Some("invalid_token"),
            "unsupported_algorithm",
        ),
        case(
            "alg RS384",
            bearer(&with(header("RS384", "k1"))),
            401,
            Some("invalid_token"),
            "unsupported_algorithm",
        ),
        case(
            "alg PS256",
            bearer(&with(header("PS256", "k1"))),
            401,
            Some("invalid_token"),
            "unsupported_algorithm",
        ),
        case(
            "alg ES256",
            bearer(&with(header("ES256", "k1"))),
            401,
            Some("invalid_token"),
            "unsupported_algorithm",
        ),
        case(
            "no kid",
            bearer(&with(json!({ "alg": "RS256" }))),
            401,
            Some("invalid_token"),
            "missing_key_id",
        ),
        case(
            "path-like kid",
            bearer(&with(header("RS256", "../../etc/passwd"))),
            401,
            Some("invalid_token"),
            "invalid_key_id",
        ),
        case(
            "huge kid",
            bearer(&with(header("RS256", &"k".repeat(200)))),
            401,
            Some("invalid_token"),
            "invalid_key_id",
        ),
        case(
            "crit",
            bearer(&with(
                json!({ "alg": "RS256", "kid": "k1", "crit": ["exp"] }),
            )),
            401,
            Some("invalid_token"),
            "critical_header",
        ),
        case(
            "jku",
            bearer(&with(
                json!({ "alg": "RS256", "kid": "k1", "jku": "https://evil.example/keys" }),
            )),
            401,
            Some("invalid_token"),
            "header_key_reference",
        ),
        case(
            "x5c",
            bearer(&with(
                json!({ "alg": "RS256", "kid": "k1", "x5c": ["MIIB"] }),
            )),
            401,
            Some("invalid_token"),
            "header_key_reference",
        ),
        case(
            "unpublished key",
            bearer(&unpublished.mint(now, |_| {})),
            401,
            Some("invalid_token"),
            "unknown_signing_key",
        ),
        case(
            "another unpublished kid",
            bearer(&forge(&header("RS256", "k9"), &claims(now), &unpublished)),
            401,
            Some("invalid_token"),
            "unknown_signing_key",
        ),
        case(
            "signed by another key",
            bearer(&forge(&header("RS256", "k1"), &claims(now), &unpublished)),
            401,
            Some("invalid_token"),
            "invalid_signature",
        ),
        case(
            "expired",
            bearer(&mint(&|c| c["exp"] = json!(now - 61))),
            401,
            Some("invalid_token"),
            "expired",
        ),
        case(
            "not yet valid",
            bearer(&mint(&|c| c["nbf"] = json!(now + 600))),
            401,
            Some("invalid_token"),
            "not_yet_valid",
        ),
        case(
            "no iat",
            bearer(&mint(&|c| {
                c.as_object_mut().expect("object").remove("iat");
            })),
            401,
            Some("invalid_token"),
            "missing_issued_at",
        ),
        case(
            "aud Graph",
            bearer(&mint(&|c| c["aud"] = json!("https://graph.microsoft.com"))),
            401,
            Some("invalid_token"),
            "invalid_audience",
        ),
        case(
            "aud another API",
            bearer(&mint(&|c| c["aud"] = json!("api://audit-api"))),
            401,
            Some("invalid_token"),
            "invalid_audience",
        ),
        case(
            "no aud",
            bearer(&mint(&|c| {
                c.as_object_mut().expect("object").remove("aud");
            })),
            401,
            Some("invalid_token"),
            "invalid_audience",
        ),
        case(
            "iss another host",
            bearer(&mint(&|c| {
                c["iss"] = json!(format!("https://login.evil.example/{TENANT}/v2.0"))
            })),
            401,
            Some("invalid_token"),
            "invalid_issuer",
        ),
        case(
            "no iss",
            bearer(&mint(&|c| {
                c.as_object_mut().expect("object").remove("iss");
            })),
            401,
            Some("invalid_token"),
            "invalid_issuer",
        ),
        case(
            "v1 issuer on a v2 token",
            bearer(&mint(&|c| {
                c["iss"] = json!(format!("https://sts.windows.net/{TENANT}/"))
            })),
            401,
            Some("invalid_token"),
            "invalid_issuer",
        ),
        case(
            "foreign tenant",
            bearer(&mint(&|c| {
                let other = "99999999-5b6a-4c8d-9e0f-1a2b3c4d5e6f";
                c["tid"] = json!(other);
                c["iss"] = json!(format!("https://login.microsoftonline.com/{other}/v2.0"));
            })),
            401,
            Some("invalid_token"),
            "invalid_tenant",
        ),
        case(
            "key of another issuer",
            bearer(&foreign_issuer.mint(now, |_| {})),
            401,
            Some("invalid_token"),
            "signing_key_issuer_mismatch",
        ),
        case(
            "user token with idtyp",
            bearer(&mint(&|c| {
                c["idtyp"] = json!("user");
                c["scp"] = json!("Tasks.Read");
                c["oid"] = json!("5a6b7c8d-9e0f-4a1b-8c2d-4e5f6a7b8c9d");
                c["sub"] = json!("pairwise-subject");
            })),
            403,
            Some("insufficient_scope"),
            "user_delegated_token",
        ),
        case(
            "user token without idtyp",
            bearer(&mint(&|c| {
                c.as_object_mut().expect("object").remove("idtyp");
                c["scp"] = json!("Tasks.Read");
                c["sub"] = json!("pairwise-subject");
            })),
            403,
            Some("insufficient_scope"),
            "user_delegated_token",
        ),
        case(
            "app token with scp added",
            bearer(&mint(&|c| c["scp"] = json!("Tasks.Read"))),
            403,
            Some("insufficient_scope"),
            "user_delegated_token",
        ),
        case(
            "no idtyp, oid is not sub",
            bearer(&mint(&|c| {
                c.as_object_mut().expect("object").remove("idtyp");
                c["sub"] = json!("someone-else");
            })),
            403,
            Some("insufficient_scope"),
            "not_an_app_token",
        ),
        case(
            "client not allowed",
            bearer(&mint(&|c| c["azp"] = json!(STRANGER_ID))),
            403,
            Some("insufficient_scope"),
            "client_not_allowed",
        ),
        case(
            "public client",
            bearer(&mint(&|c| c["azpacr"] = json!("0"))),
            403,
            Some("insufficient_scope"),
            "public_client",
        ),
        case(
            "ID token",
            bearer(&mint(&|c| {
                let object = c.as_object_mut().expect("object");
                for claim in ["idtyp", "roles", "azp", "azpacr"] {
                    object.remove(claim);
                }
                c["aud"] = json!(READER_ID);
                c["nonce"] = json!("n");
            })),
            401,
            Some("invalid_token"),
            "invalid_audience",
        ),
        Case {
            name: "reader writes",
            method: Method::POST,
            path: "/api/tasks",
            authorization: bearer(&mint(&|_| {})),
            status: 403,
            error: Some("insufficient_scope"),
            reason: "missing_role",
        },
        Case {
            name: "role of another API",
            method: Method::GET,
            path: "/api/tasks",
            authorization: bearer(&mint(&|c| c["roles"] = json!(["Audit.Read"]))),
            status: 403,
            error: Some("insufficient_scope"),
            reason: "missing_role",
        },
        Case {
            name: "no roles at all",
            method: Method::GET,
            path: "/api/tasks",
            authorization: bearer(&mint(&|c| {
                c.as_object_mut().expect("object").remove("roles");
            })),
            status: 403,
            error: Some("insufficient_scope"),
            reason: "missing_role",
        },
        Case {
            name: "percent-encoded route",
            method: Method::GET,
            path: "/api/%77hoami",
            authorization: bearer(&mint(&|_| {})),
            status: 403,
            error: Some("insufficient_scope"),
            reason: "route_has_no_policy",
        },
        Case {
            name: "trailing slash",
            method: Method::GET,
            path: "/api/whoami/",
            authorization: bearer(&mint(&|_| {})),
            status: 403,
            error: Some("insufficient_scope"),
            reason: "route_has_no_policy",
        },
        Case {
            name: "unknown route",
            method: Method::GET,
            path: "/api/nope",
            authorization: bearer(&mint(&|_| {})),
            status: 403,
            error: Some("insufficient_scope"),
            reason: "route_has_no_policy",
        },
        Case {
            name: "route without a policy",
            method: Method::PUT,
            path: "/api/tasks",
            authorization: bearer(&mint(&|_| {})),
            status: 403,
            error: Some("insufficient_scope"),
            reason: "route_has_no_policy",
        },
    ];

    let mut failures = Vec::new();
    for case in &cases {
        let mut request = api
            .client
            .request(case.method.clone(), format!("{}{}", api.url, case.path));
        if let Some(value) = &case.authorization {
            request = request.header("authorization", value);
        }
        let response = request
            .json(&json!({ "title": "t" }))
            .send()
            .await
            .expect("answers");
        let got = refusal(response).await;
        let want = (
            case.status,
            case.error.map(str::to_owned),
            case.reason.to_owned(),
        );
        if got != want {
            failures.push(format!("{}: got {got:?}, want {want:?}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // The same token passes once the request is one its holder may make.
    let ok = api.get("/api/whoami", Some(&mint(&|_| {}))).await;
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn missing_role_names_the_roles_that_would_do() {
    let key = TestKey::generate("k1");
    let (_idp, clock, api) = spawn_api_publishing(&key, 1).await;
    let token = key.mint(clock.0.load(Ordering::SeqCst), |_| {});
    let response = api
        .send_json(Method::POST, "/api/tasks", &token, &json!({ "title": "t" }))
        .await;
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        challenge.ends_with("scope=\"Tasks.ReadWrite.All\""),
        "{challenge}"
    );
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["required_roles"], json!(["Tasks.ReadWrite.All"]));
    assert!(
        !body.to_string().contains(&token[..40]),
        "never echoes the token"
    );
}

#[tokio::test]
async fn v1_tokens_of_allowed_callers_are_accepted() {
    let key = TestKey::generate("k1");
    let (_idp, clock, api) = spawn_api_publishing(&key, 1).await;
    let token = key.mint(clock.0.load(Ordering::SeqCst), |c| {
        let object = c.as_object_mut().expect("object");
        for claim in ["azp", "azpacr"] {
            object.remove(claim);
        }
        c["ver"] = json!("1.0");
        c["iss"] = json!(format!("https://sts.windows.net/{TENANT}/"));
        c["aud"] = json!("api://tasks-api");
        c["appid"] = json!(READER_ID);
        c["appidacr"] = json!("2");
    });
    let response = api.get("/api/whoami", Some(&token)).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["client_app_id"], READER_ID);
    assert_eq!(body["token_version"], "1.0");
    assert_eq!(body["roles"], json!(["Tasks.Read.All"]));
    assert_eq!(body["tenant_id"], TENANT);
}

#[tokio::test]
async fn two_authorization_headers_are_refused_even_if_one_is_valid() {
    let key = TestKey::generate("k1");
    let (_idp, clock, api) = spawn_api_publishing(&key, 1).await;
    let token = key.mint(clock.0.load(Ordering::SeqCst), |_| {});
    let response = api
        .request(Method::GET, "/api/whoami", Some(&token))
        .header("authorization", "Bearer another")
        .send()
        .await
        .expect("answers");
    let (status, error, reason) = refusal(response).await;
    assert_eq!(
        (status, error.as_deref(), reason.as_str()),
        (
            400,
            Some("invalid_request"),
            "malformed_authorization_header"
        )
    );
}
