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

/// A signing key the test controls: its JWK, and the key to mint tokens with.
pub struct TestKey {
    pub kid: String,
    pub jwk: Value,
    pub encoding: jsonwebtoken::EncodingKey,
}

impl TestKey {
    pub fn generate(kid: &str) -> Self {
        let rc = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA key");
        let pair = KeyPair::from_pkcs8(&rc.serialize_der()).expect("pkcs8");
        let public = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        Self {
            kid: kid.to_owned(),
            jwk: json!({
                "kty": "RSA", "use": "sig", "kid": kid, "x5t": kid,
                "n": URL_SAFE_NO_PAD.encode(&public.n), "e": URL_SAFE_NO_PAD.encode(&public.e),
                "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",
            }),
            encoding: jsonwebtoken::EncodingKey::from_rsa_pem(rc.serialize_pem().as_bytes())
                .expect("pem"),
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

impl TestKey {
    /// An Entra-shaped v2 app-only token for the test API, signed with this key; `edit` changes
    /// claims before signing.
    pub fn mint(&self, now: i64, edit: impl FnOnce(&mut Value)) -> String {
        let mut claims = json!({
            "aud": API_CLIENT_ID,
            "iss": format!("https://login.microsoftonline.com/{TENANT}/v2.0"),
            "iat": now - 300, "nbf": now - 300, "exp": now + 3600,
            "azp": READER_ID, "azpacr": "1", "idtyp": "app",
            "oid": READER_SP, "sub": READER_SP, "tid": TENANT,
            "roles": ["Tasks.Read.All"], "uti": "u", "ver": "2.0",
        });
        edit(&mut claims);
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, &claims, &self.encoding).expect("signs")
    }
}

pub const API_CLIENT_ID: &str = "6e1f4a8b-2c3d-4e5f-8a9b-0c1d2e3f4a5b";
pub const READER_ID: &str = "0b9a1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d";
pub const READER_SP: &str = "c3d4e5f6-a7b8-4c9d-8e0f-2a3b4c5d6e7f";

pub fn validator(store: Arc<KeyStore>, clock: Clock) -> api_service::auth::Validator {
    api_service::auth::Validator::new(
        store,
        api_service::auth::ValidatorSettings {
            audiences: vec![API_CLIENT_ID.to_owned(), "api://tasks-api".to_owned()],
            allowed_clients: vec![READER_ID.to_owned()],
            ..Default::default()
        },
        clock,
    )
}
