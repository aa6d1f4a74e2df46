use api_service::auth::keys::{Clock, KeySettings, KeyStore};
use aws_lc_rs::rsa::{KeyPair, PublicKeyComponents};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const TENANT: &str = "72f1c3d4-5b6a-4c8d-9e0f-1a2b3c4d5e6f";

/// A signing key the test controls: its JWK (minting with it comes with the validator tests).
pub struct TestKey {
    pub jwk: Value,
}

impl TestKey {
    pub fn generate(kid: &str) -> Self {
        let rc = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA key");
        let pair = KeyPair::from_pkcs8(&rc.serialize_der()).expect("pkcs8");
        let public = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        Self {
            jwk: json!({
                "kty": "RSA", "use": "sig", "kid": kid, "x5t": kid,
                "n": URL_SAFE_NO_PAD.encode(&public.n), "e": URL_SAFE_NO_PAD.encode(&public.e),
                "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",
            }),
        }
    }
}

/// A clock the test moves.
pub struct TestClock(pub Arc<AtomicI64>);

impl TestClock {
    pub fn new() -> Self {
        Self(Arc::new(AtomicI64::new(1_800_000_000)))
    }

    pub fn clock(&self) -> Clock {
        let now = self.0.clone();
        Arc::new(move || now.load(Ordering::SeqCst))
    }

    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

/// Wiremock playing Entra's discovery documents and JWKS for one tenant.
pub struct TestIdp {
    pub server: MockServer,
}

impl TestIdp {
    pub async fn start() -> Self {
        shared::telemetry::init_for_tests();
        Self {
            server: MockServer::start().await,
        }
    }

    pub fn jwks_path() -> String {
        format!("/{TENANT}/discovery/v2.0/keys")
    }

    /// Serves both discovery documents (any number of times).
    pub async fn serve_discovery(&self) {
        let base = self.server.uri();
        Mock::given(method("GET"))
            .and(path(format!(
                "/{TENANT}/v2.0/.well-known/openid-configuration"
            )))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "issuer": format!("https://login.microsoftonline.com/{TENANT}/v2.0"),
                "jwks_uri": format!("{base}/{TENANT}/discovery/v2.0/keys"),
                "token_endpoint": format!("{base}/{TENANT}/oauth2/v2.0/token"),
            })))
            .mount(&self.server)
            .await;
        Mock::given(method("GET"))
            .and(path(format!("/{TENANT}/.well-known/openid-configuration")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "issuer": format!("https://sts.windows.net/{TENANT}/"),
                "jwks_uri": format!("{base}/{TENANT}/discovery/keys"),
            })))
            .mount(&self.server)
            .await;
    }

    /// Serves `keys` as the JWKS, expecting exactly `times` fetches (checked when the server drops).
    pub async fn serve_jwks(&self, keys: &[&TestKey], times: u64) {
        let keys: Vec<&Value> = keys.iter().map(|k| &k.jwk).collect();
        Mock::given(method("GET"))
            .and(path(Self::jwks_path()))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "keys": keys })))
            .expect(times)
            .mount(&self.server)
            .await;
    }

    pub fn key_store(&self, clock: Clock) -> Arc<KeyStore> {
        Arc::new(KeyStore::new(
            reqwest::Client::new(),
            &self.server.uri(),
            vec![TENANT.to_owned()],
            KeySettings::default(),
            clock,
        ))
    }
}
