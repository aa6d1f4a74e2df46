//! Target `validator`: the whole token validation, with the signature made valid so the fuzzer
//! reaches the claim and policy checks behind it.
//!
//! Input: the JOSE header JSON, a newline, the claims JSON (both any bytes). They are base64url
//! encoded and signed with RS256 by one of two RSA keys the harness generated at start: `fuzz-key`,
//! published for any tenant (`{tenantid}` issuer), or `fuzz-foreign-key`, published for a tenant
//! the API does not accept; the header's `kid` chooses. The token then goes through
//! `Validator::validate` twice (the second time answered from the verified-token cache), against
//! a fixed clock, two accepted tenants, the API's two audiences and two allowed clients.
//!
//! Never a panic; both answers the same; and an accepted token must satisfy, judged here from the
//! raw JSON rather than from the claim model the validator uses: RS256 and `fuzz-key`; not expired
//! (60 s skew), not before `nbf`, `iat` present; `tid` an accepted tenant and `iss` that tenant's
//! issuer of the token's version (`ver` 1.0 or 2.0); `aud` the API; app-only (no `scp`, and
//! `idtyp` = `app`, or no `idtyp` and `oid` = `sub`); the client (`azp` in v2, `appid` in v1)
//! allowed and confidential (`azpacr`/`appidacr` 1 or 2); the caller the validator returns carries
//! that client, tenant and the token's `roles`; and each route of the API's policy table lets the
//! caller in exactly when it holds one of the route's roles. A JSON `null` counts as absent, as
//! it does for the claim model.
//!
//! Shared by the fuzz target and the regression test in `api-service` (included by path).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use entra_auth::claims::TenantIssuers;
use entra_auth::keys::{KeySettings, KeyStore};
use entra_auth::token::check_jws;
use entra_auth::{Access, AppCaller, AuthError, Reason, Validator, ValidatorSettings};
use entra_emulator::demo;
use serde_json::{Map, Value, json};
use shared::clock::{ManualClock, SharedClock};
use std::collections::HashMap;
use std::sync::Arc;

pub const NOW: i64 = 1_800_000_000;
pub const SKEW: i64 = 60;
pub const TENANTS: [&str; 2] = [demo::TENANT, "8a9b0c1d-2e3f-4a5b-9c6d-7e8f9a0b1c2d"];
/// A tenant whose key is published but whose tokens are not accepted.
pub const FOREIGN_TENANT: &str = "99999999-9999-4999-8999-999999999999";
pub const AUDIENCES: [&str; 2] = [demo::tasks_api::CLIENT_ID, demo::tasks_api::APP_ID_URI];
pub const ALLOWED_CLIENTS: [&str; 2] = [demo::reader_job::CLIENT_ID, demo::writer_job::CLIENT_ID];
pub const KID: &str = "fuzz-key";
pub const FOREIGN_KID: &str = "fuzz-foreign-key";

pub fn v2_issuer(tid: &str) -> String {
    format!("https://login.microsoftonline.com/{tid}/v2.0")
}

pub fn v1_issuer(tid: &str) -> String {
    format!("https://sts.windows.net/{tid}/")
}

pub struct Harness {
    runtime: tokio::runtime::Runtime,
    validator: Validator,
    key: KeyPair,
    foreign_key: KeyPair,
    rng: SystemRandom,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    /// Generates the two keys (about a second) and builds the validator over them.
    pub fn new() -> Self {
        let key = KeyPair::generate(KeySize::Rsa2048).expect("RSA key");
        let foreign_key = KeyPair::generate(KeySize::Rsa2048).expect("RSA key");
        let jwk = |pair: &KeyPair, kid: &str, issuer: &str| {
            let public = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
            json!({
                "kty": "RSA", "use": "sig", "kid": kid,
                "n": URL_SAFE_NO_PAD.encode(&public.n), "e": URL_SAFE_NO_PAD.encode(&public.e),
                "issuer": issuer,
            })
        };
        let jwks = json!({"keys": [
            jwk(&key, KID, "https://login.microsoftonline.com/{tenantid}/v2.0"),
            jwk(&foreign_key, FOREIGN_KID, &v2_issuer(FOREIGN_TENANT)),
        ]});
        let issuers: HashMap<String, TenantIssuers> = TENANTS
            .iter()
            .map(|tid| {
                (
                    (*tid).to_owned(),
                    TenantIssuers {
                        v2: v2_issuer(tid),
                        v1: v1_issuer(tid),
                    },
                )
            })
            .collect();
        let clock: SharedClock = Arc::new(ManualClock::at_unix(NOW));
        let store = KeyStore::from_jwks(
            jwks.to_string().as_bytes(),
            issuers,
            KeySettings::default(),
            clock.clone(),
        )
        .expect("the harness's JWKS is usable");
        let validator = Validator::new(
            Arc::new(store),
            ValidatorSettings {
                audiences: AUDIENCES.iter().map(|a| (*a).to_owned()).collect(),
                allowed_clients: ALLOWED_CLIENTS.iter().map(|c| (*c).to_owned()).collect(),
                clock_skew_secs: SKEW,
                ..Default::default()
            },
            clock,
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a tokio runtime");
        Self {
            runtime,
            validator,
            key,
            foreign_key,
            rng: SystemRandom::new(),
        }
    }

    /// Runs one input; the validator's answer (after the oracle agreed with it).
    pub fn check(&self, data: &[u8]) -> Result<AppCaller, Reason> {
        let (header, claims) = match data.iter().position(|&b| b == b'\n') {
            Some(at) => (&data[..at], &data[at + 1..]),
            None => (data, &[][..]),
        };
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        // The pre-parse looks at the signature only for being non-empty base64url, so a token it
        // refuses with a placeholder it refuses with a real signature, at the same step: such
        // inputs skip the RSA signing (the fuzzer's time goes to the checks behind it).
        let placeholder = format!("{signing_input}.AAAA");
        let token = match check_jws(&placeholder) {
            Err(expected) => {
                let refused = self
                    .validate(&placeholder)
                    .expect_err("the pre-parse refused it");
                assert_eq!(refused.reason, expected.reason);
                return Err(refused.reason);
            }
            Ok(pre) => {
                let pair = if pre.kid == FOREIGN_KID {
                    &self.foreign_key
                } else {
                    &self.key
                };
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(
                    &RSA_PKCS1_SHA256,
                    &self.rng,
                    signing_input.as_bytes(),
                    &mut signature,
                )
                .expect("signs");
                format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
            }
        };
        // Once as text, once from the header's bytes as the middleware asks (a cache hit
        // when the first was accepted): the same answer, the callers compared by value.
        let first = self.validate(&token);
        let again = self.validate_header(&token);
        match (&first, &again) {
            (Ok(a), Ok(b)) => assert_eq!(**a, **b, "the cached answer differs"),
            (Err(a), Err(b)) => assert_eq!(a.reason, b.reason, "the cached answer differs"),
            _ => panic!(
                "the cached answer differs: {:?} then {:?}",
                first.as_ref().map_err(|e| e.reason),
                again.as_ref().map_err(|e| e.reason)
            ),
        }
        if let Ok(caller) = &first {
            accepted_token_obeys_the_rules(header, claims, caller);
        }
        first.map_err(|e| e.reason)
    }

    fn validate(&self, token: &str) -> Result<AppCaller, AuthError> {
        let value = format!("Bearer {token}");
        self.runtime.block_on(self.validator.validate(Some(&value)))
    }

    fn validate_header(&self, token: &str) -> Result<AppCaller, AuthError> {
        let value = format!("Bearer {token}");
        self.runtime
            .block_on(self.validator.validate_header(Some(value.as_bytes())))
    }
}

/// The claims the rules read, each as raw JSON. Other members are skipped unread, as the
/// validator's claim model skips them: serde does not check the strings it skips, so a signed
/// claims set with invalid UTF-8 in a claim nobody reads is accepted, and is no concern here.
#[derive(serde::Deserialize, serde::Serialize)]
struct RuleClaims {
    aud: Option<Value>,
    iss: Option<Value>,
    iat: Option<Value>,
    nbf: Option<Value>,
    exp: Option<Value>,
    tid: Option<Value>,
    ver: Option<Value>,
    scp: Option<Value>,
    idtyp: Option<Value>,
    oid: Option<Value>,
    sub: Option<Value>,
    azp: Option<Value>,
    azpacr: Option<Value>,
    appid: Option<Value>,
    appidacr: Option<Value>,
    roles: Option<Value>,
}

/// The members of a JSON object, `null` counting as absent.
fn member<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).filter(|v| !v.is_null())
}

fn string<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    member(object, name).map(|v| {
        v.as_str()
            .unwrap_or_else(|| panic!("accepted with a non-string {name}: {v}"))
    })
}

fn accepted_token_obeys_the_rules(header: &[u8], claims: &[u8], caller: &AppCaller) {
    let header: Value = serde_json::from_slice(header).expect("accepted: a JSON header");
    let header = header.as_object().expect("accepted: a header object");
    assert_eq!(string(header, "alg"), Some("RS256"));
    assert_eq!(
        string(header, "kid"),
        Some(KID),
        "accepted a token signed by the key of a tenant the API does not accept"
    );

    let claims: RuleClaims = serde_json::from_slice(claims).expect("accepted: JSON claims");
    let claims = serde_json::to_value(claims).expect("claims as JSON");
    let claims = claims.as_object().expect("claims as a JSON object");
    let exp = member(claims, "exp")
        .and_then(Value::as_i64)
        .expect("accepted: an integer exp");
    assert!(
        exp.saturating_add(SKEW) >= NOW,
        "accepted an expired token: exp {exp}"
    );
    if let Some(nbf) = member(claims, "nbf") {
        let nbf = nbf.as_i64().expect("accepted: an integer nbf");
        assert!(nbf.saturating_sub(SKEW) <= NOW, "accepted before nbf {nbf}");
    }
    assert!(member(claims, "iat").is_some(), "accepted without iat");

    let tid = string(claims, "tid").expect("accepted without tid");
    let tenant = TENANTS
        .iter()
        .find(|t| t.eq_ignore_ascii_case(tid))
        .unwrap_or_else(|| panic!("accepted a token of tenant {tid:?}"));
    let ver = string(claims, "ver").expect("accepted without ver");
    let expected_issuer = match ver {
        "2.0" => v2_issuer(tenant),
        "1.0" => v1_issuer(tenant),
        other => panic!("accepted version {other:?}"),
    };
    assert_eq!(string(claims, "iss"), Some(expected_issuer.as_str()));
    let aud = string(claims, "aud").expect("accepted without aud");
    assert!(AUDIENCES.contains(&aud), "accepted audience {aud:?}");

    assert!(
        member(claims, "scp").is_none(),
        "accepted a token with scp (user-delegated)"
    );
    match string(claims, "idtyp") {
        Some("app") => {}
        Some(other) => panic!("accepted idtyp {other:?}"),
        None => {
            let oid = string(claims, "oid").expect("accepted without idtyp or oid");
            assert_eq!(string(claims, "sub"), Some(oid), "accepted with oid != sub");
        }
    }
    let (client, acr) = match ver {
        "2.0" => (string(claims, "azp"), string(claims, "azpacr")),
        _ => (string(claims, "appid"), string(claims, "appidacr")),
    };
    let client = client.expect("accepted without a client of the token's version");
    assert!(
        ALLOWED_CLIENTS.contains(&client.to_ascii_lowercase().as_str()),
        "accepted client {client:?}"
    );
    assert!(
        matches!(acr, Some("1" | "2")),
        "accepted a client authenticated as {acr:?}"
    );

    assert_eq!(caller.client_app_id, client);
    assert_eq!(caller.tenant_id, tid);
    let roles: Vec<String> = match member(claims, "roles") {
        None => Vec::new(),
        Some(roles) => roles
            .as_array()
            .expect("accepted: roles an array")
            .iter()
            .map(|r| r.as_str().expect("accepted: roles strings").to_owned())
            .collect(),
    };
    assert_eq!(caller.roles, roles);
    assert!(
        caller.require_any_role(&[]).is_err(),
        "a route without roles let a caller in"
    );
    for (method, pattern, access) in api_service::routes::table().policies().iter() {
        let needed = match access {
            Access::AnyAllowedApp => continue,
            Access::AnyRole(needed) => needed,
        };
        let holds = roles.iter().any(|r| needed.contains(&r.as_str()));
        assert_eq!(
            caller.require_any_role(needed).is_ok(),
            holds,
            "{method} {pattern} needs one of {needed:?}; the token has {roles:?}"
        );
    }
}
