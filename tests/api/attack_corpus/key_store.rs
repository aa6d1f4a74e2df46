//! The attack corpus's key-store rows: attacks from the identity provider's side (its discovery
//! documents and JWKS answers) rather than in the token. Each row needs an arrangement of its own
//! (two tenants, an HTTPS front, an answer that changes between fetches), so each runs against a
//! fresh API and wiremock, then sends one request and records what came back, like the token rows.

use super::{Expect, Observed, invalid_token, observe};
use mesh_tests::api::*;
use mesh_tests::caller::tls_front;
use serde_json::{Value, json};
use std::sync::Arc;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A second accepted tenant, for the rows that need two.
const TENANT_2: &str = "8a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d";

/// One key-store row: what was arranged and sent, what it must get, and what it got.
pub struct Scenario {
    pub name: &'static str,
    pub attack: &'static str,
    pub request: &'static str,
    pub expect: Expect,
    pub observed: Observed,
    /// What else went wrong besides the answer (a request that should never have been made).
    pub violations: Vec<String>,
}

const ACCEPTED: Expect = Expect {
    status: 200,
    error: None,
    reason: None,
};

const KEYS_UNAVAILABLE: Expect = Expect {
    status: 503,
    error: None,
    reason: Some("keys_unavailable"),
};

fn jwks_path(tenant: &str) -> String {
    format!("/{tenant}/discovery/v2.0/keys")
}

/// Both discovery documents of `tenant`, naming `jwks_uri` as its JWKS.
async fn serve_discovery(server: &MockServer, tenant: &str, jwks_uri: &str) {
    Mock::given(method("GET"))
        .and(path(format!(
            "/{tenant}/v2.0/.well-known/openid-configuration"
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": format!("https://login.microsoftonline.com/{tenant}/v2.0"),
            "jwks_uri": jwks_uri,
        })))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/{tenant}/.well-known/openid-configuration")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": format!("https://sts.windows.net/{tenant}/"),
            "jwks_uri": jwks_uri,
        })))
        .mount(server)
        .await;
}

/// `tenant`'s JWKS answers `first` once, then `after` every time.
async fn serve_jwks(
    server: &MockServer,
    tenant: &str,
    first: ResponseTemplate,
    after: ResponseTemplate,
) {
    Mock::given(method("GET"))
        .and(path(jwks_path(tenant)))
        .respond_with(first)
        .up_to_n_times(1)
        .with_priority(1)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path(jwks_path(tenant)))
        .respond_with(after)
        .mount(server)
        .await;
}

/// A wiremock identity provider for the demo tenant and [`TENANT_2`], each with its own JWKS, and
/// the API accepting both.
async fn two_tenants(
    clock: &Arc<ManualClock>,
    jwks_1: (ResponseTemplate, ResponseTemplate),
    jwks_2: ResponseTemplate,
) -> (MockServer, TestApi) {
    let idp = MockServer::start().await;
    for tenant in [TENANT, TENANT_2] {
        serve_discovery(&idp, tenant, &format!("{}{}", idp.uri(), jwks_path(tenant))).await;
    }
    serve_jwks(&idp, TENANT, jwks_1.0, jwks_1.1).await;
    serve_jwks(&idp, TENANT_2, jwks_2.clone(), jwks_2).await;
    let api = spawn_api_with(&idp.uri(), clock, Arc::new(TempDir::new("db")), |s| {
        s.entra.tenants = vec![TENANT.to_owned(), TENANT_2.to_owned()];
    })
    .await;
    (idp, api)
}

/// A v2 app token of the reader, claiming `tenant`, signed by `key`.
fn token_for(key: &TestKey, now: i64, tenant: &str) -> String {
    key.mint(now, |c| {
        c["tid"] = json!(tenant);
        c["iss"] = json!(format!("https://login.microsoftonline.com/{tenant}/v2.0"));
    })
}

async fn whoami(api: &TestApi, token: &str) -> Observed {
    observe(api.get("/api/whoami", Some(token)).await).await
}

/// A JWKS of `count` distinct-kid copies of `key`'s public key: valid RSA members, each one
/// usable, so only a bound on the answer keeps them out.
fn flood(key: &TestKey, count: usize) -> ResponseTemplate {
    let keys: Vec<Value> = (0..count)
        .map(|i| {
            let mut jwk = key.jwk.clone();
            jwk["kid"] = json!(format!("flood-{i:06}"));
            jwk["x5t"] = json!(format!("flood-{i:06}"));
            jwk
        })
        .collect();
    ResponseTemplate::new(200).set_body_json(json!({ "keys": keys }))
}

/// One tenant's empty answer after a good one, with a second tenant configured: the tenant keeps
/// its last good keys (judged on its own), its tokens still verify.
async fn empty_answer_of_one_of_two_tenants() -> Scenario {
    let clock = test_clock();
    let (k1, k2) = (TestKey::generate("t1-key"), TestKey::generate("t2-key"));
    let (_idp, api) = two_tenants(
        &clock,
        (
            TestIdp::publishing(&[&k1]),
            ResponseTemplate::new(200).set_body_json(json!({ "keys": [] })),
        ),
        TestIdp::publishing(&[&k2]),
    )
    .await;
    // The refresh fails for tenant 1 (its answer is the attack); the row is what happens next.
    let _ = api.validator.keys().refresh().await;
    let token = token_for(&k1, clock.unix(), TENANT);
    Scenario {
        name: "one tenant's empty JWKS",
        attack: "with two tenants configured, tenant 1's JWKS answers {\"keys\": []} after a good answer; then a valid tenant-1 token",
        request: "GET /api/whoami",
        expect: ACCEPTED,
        observed: whoami(&api, &token).await,
        violations: vec![],
    }
}

/// A key that only tenant 1 publishes, without an `issuer` member, signing a token that claims
/// tenant 2.
async fn key_of_one_tenant_vouching_for_another() -> Scenario {
    let clock = test_clock();
    let mut no_issuer = TestKey::generate("t1-only");
    no_issuer
        .jwk
        .as_object_mut()
        .expect("object")
        .remove("issuer");
    let k2 = TestKey::generate("t2-key");
    let t1_jwks = TestIdp::publishing(&[&no_issuer]);
    let (_idp, api) = two_tenants(
        &clock,
        (t1_jwks.clone(), t1_jwks),
        TestIdp::publishing(&[&k2]),
    )
    .await;
    let token = token_for(&no_issuer, clock.unix(), TENANT_2);
    Scenario {
        name: "a tenant's key without issuer, for another tenant",
        attack: "a key published only in tenant 1's JWKS, without an issuer member, signs a token claiming tenant 2 (its iss and tid)",
        request: "GET /api/whoami",
        expect: invalid_token("signing_key_issuer_mismatch"),
        observed: whoami(&api, &token).await,
        violations: vec![],
    }
}

/// The API against an HTTPS authority (`ca` trusted), plain HTTP not allowed anywhere.
async fn strict_api(authority: &str, clock: &Arc<ManualClock>, ca: std::path::PathBuf) -> TestApi {
    spawn_api_with(authority, clock, Arc::new(TempDir::new("db")), |s| {
        s.entra.allow_insecure_http_on_loopback = false;
        s.http.extra_ca_file = Some(ca);
    })
    .await
}

/// How many requests `idp` received for `path`.
async fn requests_to(idp: &MockServer, path: &str) -> usize {
    idp.received_requests()
        .await
        .expect("recorded")
        .iter()
        .filter(|r| r.url.path() == path)
        .count()
}

/// Discovery over HTTPS naming a plain-HTTP `jwks_uri`: the keys there must never be fetched.
async fn clear_text_jwks_uri() -> Scenario {
    let clock = test_clock();
    let key = TestKey::generate("served-in-clear");
    let idp = MockServer::start().await;
    let dir = TempDir::new("https-front");
    let (port, ca) = tls_front(*idp.address(), &dir).await;
    serve_discovery(&idp, TENANT, &format!("{}{}", idp.uri(), jwks_path(TENANT))).await;
    Mock::given(method("GET"))
        .and(path(jwks_path(TENANT)))
        .respond_with(TestIdp::publishing(&[&key]))
        .mount(&idp)
        .await;
    let api = strict_api(&format!("https://localhost:{port}"), &clock, ca).await;
    let token = key.mint(clock.unix(), |_| {});
    let observed = whoami(&api, &token).await;
    let fetched = requests_to(&idp, &jwks_path(TENANT)).await;
    Scenario {
        name: "jwks_uri over plain HTTP",
        attack: "the discovery document (over HTTPS) names an http:// jwks_uri serving the attacker's key; a token signed by it",
        request: "GET /api/whoami",
        expect: KEYS_UNAVAILABLE,
        observed,
        violations: match fetched {
            0 => vec![],
            n => vec![format!("the clear-text JWKS was fetched {n} times")],
        },
    }
}

/// The JWKS over HTTPS answers a redirect to a plain-HTTP URL serving the attacker's key: the
/// redirect is refused, and the clear-text hop never requested.
async fn redirect_to_clear_text() -> Scenario {
    let clock = test_clock();
    let key = TestKey::generate("served-after-redirect");
    let idp = MockServer::start().await;
    let dir = TempDir::new("https-front");
    let (port, ca) = tls_front(*idp.address(), &dir).await;
    let front = format!("https://localhost:{port}");
    serve_discovery(&idp, TENANT, &format!("{front}{}", jwks_path(TENANT))).await;
    Mock::given(method("GET"))
        .and(path(jwks_path(TENANT)))
        .respond_with(
            ResponseTemplate::new(302)
                .insert_header("location", format!("{}/clear/keys", idp.uri()).as_str()),
        )
        .mount(&idp)
        .await;
    Mock::given(method("GET"))
        .and(path("/clear/keys"))
        .respond_with(TestIdp::publishing(&[&key]))
        .mount(&idp)
        .await;
    let api = strict_api(&front, &clock, ca).await;
    let token = key.mint(clock.unix(), |_| {});
    let observed = whoami(&api, &token).await;
    let fetched = requests_to(&idp, "/clear/keys").await;
    Scenario {
        name: "JWKS redirected to plain HTTP",
        attack: "the JWKS URL (HTTPS) answers 302 to an http:// URL serving the attacker's key; a token signed by it",
        request: "GET /api/whoami",
        expect: KEYS_UNAVAILABLE,
        observed,
        violations: match fetched {
            0 => vec![],
            n => vec![format!("the clear-text hop was requested {n} times")],
        },
    }
}

/// A JWKS answer too large to hold, after a good one: refused, the last good keys kept.
async fn oversized_jwks(count: usize) -> Scenario {
    let key = TestKey::generate("k1");
    let idp = TestIdp::start().await;
    idp.serve_discovery().await;
    serve_jwks(
        &idp.server,
        TENANT,
        TestIdp::publishing(&[&key]),
        flood(&key, count),
    )
    .await;
    let clock = test_clock();
    let api = spawn_api(&idp, &clock).await;
    // The refresh fails (its answer is the attack); the row is what happens next.
    let _ = api.validator.keys().refresh().await;
    let token = key.mint(clock.unix(), |_| {});
    let (name, attack) = match count {
        60_001 => (
            "JWKS of 60,001 keys, 29 MB",
            "after a good answer, the JWKS answers 60,001 valid RSA keys (29 MB) that do not include the signing key; then a valid token",
        ),
        _ => (
            "JWKS of 65 keys",
            "after a good answer, the JWKS answers 65 valid RSA keys (31 KiB, under the size bound, over the key bound) without the signing key; then a valid token",
        ),
    };
    Scenario {
        name,
        attack,
        request: "GET /api/whoami",
        expect: ACCEPTED,
        observed: whoami(&api, &token).await,
        violations: vec![],
    }
}

/// Every key-store row, in order.
pub async fn scenarios() -> Vec<Scenario> {
    vec![
        empty_answer_of_one_of_two_tenants().await,
        clear_text_jwks_uri().await,
        redirect_to_clear_text().await,
        key_of_one_tenant_vouching_for_another().await,
        oversized_jwks(60_001).await,
        oversized_jwks(65).await,
    ]
}
