//! The API under test: wiremock as the identity provider (discovery and JWKS for the demo
//! tenant), signing keys the tests hold, a clock they move, and the real `api-service`
//! application on port 0 with its own SQLite file, or a fresh PostgreSQL database ([`Db`]).

pub use crate::TempDir;
pub use crate::demo::*;
pub use crate::postgres::Db;
use aws_lc_rs::rsa::{KeyPair, PublicKeyComponents};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use entra_auth::keys::{KeySettings, KeyStore};
use serde_json::{Value, json};
use shared::clock::SharedClock;
pub use shared::clock::{Clock, ManualClock};
use std::sync::Arc;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A signing key the test controls: its JWK, and the key to mint tokens with.
pub struct TestKey {
    pub kid: String,
    pub jwk: Value,
    pub encoding: jsonwebtoken::EncodingKey,
    /// The key pair itself, for what an attacker would do with it (its public key's PEM and DER
    /// bytes, a self-signed certificate).
    pub pair: rcgen::KeyPair,
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
            pair: rc,
        }
    }

    /// The public key as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) text.
    pub fn public_pem(&self) -> String {
        self.pair.public_key_pem()
    }

    /// The public key as SubjectPublicKeyInfo DER bytes.
    pub fn public_der(&self) -> Vec<u8> {
        rcgen::PublicKeyData::subject_public_key_info(&self.pair)
    }

    /// A self-signed certificate for this key, DER.
    pub fn self_signed_der(&self) -> Vec<u8> {
        rcgen::CertificateParams::new(vec!["attacker.example".to_owned()])
            .expect("params")
            .self_signed(&self.pair)
            .expect("self-signed")
            .der()
            .to_vec()
    }

    /// An Entra-shaped v2 app-only token for the test API, signed with this key; `edit` changes
    /// claims before signing.
    pub fn mint(&self, now: i64, edit: impl FnOnce(&mut Value)) -> String {
        let mut claims = claims(now);
        edit(&mut claims);
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, &claims, &self.encoding).expect("signs")
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
        Self::on_jwks(Self::publishing(keys))
            .expect(times)
            .mount(&self.server)
            .await;
    }

    /// A JWKS answer publishing `keys`.
    pub fn publishing(keys: &[&TestKey]) -> ResponseTemplate {
        let keys: Vec<&Value> = keys.iter().map(|k| &k.jwk).collect();
        ResponseTemplate::new(200).set_body_json(json!({ "keys": keys }))
    }

    /// A mock answering the JWKS requests with `response`, for the test to limit, expect and mount.
    pub fn on_jwks(response: ResponseTemplate) -> Mock {
        Mock::given(method("GET"))
            .and(path(Self::jwks_path()))
            .respond_with(response)
    }

    pub fn key_store(&self, clock: SharedClock) -> Arc<KeyStore> {
        Arc::new(KeyStore::new(
            reqwest::Client::new(),
            &self.server.uri(),
            // wiremock speaks plain HTTP on loopback.
            shared::jwks::UrlPolicy {
                allow_http_on_loopback: true,
            },
            vec![TENANT.to_owned()],
            KeySettings::default(),
            clock,
        ))
    }
}

pub fn validator(store: Arc<KeyStore>, clock: SharedClock) -> entra_auth::Validator {
    entra_auth::Validator::new(
        store,
        entra_auth::ValidatorSettings {
            audiences: vec![API_CLIENT_ID.to_owned(), API_APP_ID_URI.to_owned()],
            allowed_clients: vec![READER_ID.to_owned()],
            ..Default::default()
        },
        clock,
    )
}

/// The API's settings for tests: port 0, one worker, the test tenant and callers.
pub fn api_settings(authority_host: &str, db: &std::path::Path) -> api_service::ApiSettings {
    let mut settings = api_service::ApiSettings::default();
    settings.server.port = 0;
    settings.server.workers = Some(1);
    settings.entra.authority_host = authority_host.to_owned();
    // wiremock speaks plain HTTP on loopback; HTTPS authorities are unaffected.
    settings.entra.allow_insecure_http_on_loopback = true;
    settings.entra.tenants = vec![TENANT.to_owned()];
    settings.auth.audiences = vec![API_CLIENT_ID.to_owned(), API_APP_ID_URI.to_owned()];
    settings.auth.allowed_clients = vec![READER_ID.to_owned(), WRITER_ID.to_owned()];
    settings.database.path = db.join("tasks.db");
    settings
}

/// The real API on port 0, with its own database.
pub struct TestApi {
    pub url: String,
    pub client: reqwest::Client,
    pub handle: actix_web::dev::ServerHandle,
    pub validator: Arc<entra_auth::Validator>,
    pub db: Arc<TempDir>,
}

pub async fn spawn_api(idp: &TestIdp, clock: &Arc<ManualClock>) -> TestApi {
    spawn_api_with(
        &idp.server.uri(),
        clock,
        Arc::new(TempDir::new("db")),
        |_| {},
    )
    .await
}

/// As [`spawn_api`], on the database `db` names.
pub async fn spawn_api_on(idp: &TestIdp, clock: &Arc<ManualClock>, db: &Db) -> TestApi {
    spawn_api_with(
        &idp.server.uri(),
        clock,
        Arc::new(TempDir::new("db")),
        |s| db.apply(&mut s.database),
    )
    .await
}

pub async fn spawn_api_with(
    authority_host: &str,
    clock: &Arc<ManualClock>,
    db: Arc<TempDir>,
    customise: impl FnOnce(&mut api_service::ApiSettings),
) -> TestApi {
    shared::telemetry::init_for_tests();
    let mut settings = api_settings(authority_host, &db.0);
    customise(&mut settings);
    let app = api_service::Application::build_with_clock(settings, clock.clone())
        .await
        .expect("api starts");
    let url = format!("http://{}", app.address());
    let handle = app.handle();
    let validator = app.validator();
    tokio::spawn(app.run_until_stopped());
    TestApi {
        url,
        client: reqwest::Client::new(),
        handle,
        validator,
        db,
    }
}

impl TestApi {
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let builder = self.client.request(method, format!("{}{path}", self.url));
        match token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        self.request(reqwest::Method::GET, path, token)
            .send()
            .await
            .expect("answers")
    }

    /// The JSON body of a `GET`, whatever its status.
    pub async fn get_json(&self, path: &str, token: Option<&str>) -> Value {
        self.get(path, token).await.json().await.expect("json")
    }

    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: &Value,
    ) -> reqwest::Response {
        self.request(method, path, Some(token))
            .json(body)
            .send()
            .await
            .expect("answers")
    }
}

/// A refusal as the caller sees it: status, the `error` of `WWW-Authenticate`, the body's reason.
pub async fn refusal(response: reqwest::Response) -> (u16, Option<String>, String) {
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().expect("ascii").to_owned());
    let error = challenge.as_deref().and_then(challenge_error);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "refusals are problem+json"
    );
    let body: Value = response.json().await.expect("json body");
    assert!(
        body["request_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{body}"
    );
    (
        status,
        error,
        body["reason"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The `error` parameter of a `WWW-Authenticate: Bearer` challenge.
pub fn challenge_error(challenge: &str) -> Option<String> {
    challenge
        .split("error=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .map(str::to_owned)
}

/// Signs `header` and `claims` exactly as given (RS256 over the two parts), for headers the
/// `jsonwebtoken` types cannot express (`crit`, odd `alg` spellings, `jku`).
pub fn forge(header: &Value, claims: &Value, key: &TestKey) -> String {
    forge_raw(
        &header.to_string(),
        &claims.to_string(),
        &key.encoding,
        jsonwebtoken::Algorithm::RS256,
    )
}

/// Signs the header and claims texts byte for byte (duplicate members, numbers no `Value` holds)
/// with `key` under `alg`.
pub fn forge_raw(
    header: &str,
    claims: &str,
    key: &jsonwebtoken::EncodingKey,
    alg: jsonwebtoken::Algorithm,
) -> String {
    sign_parts(
        &URL_SAFE_NO_PAD.encode(header),
        &URL_SAFE_NO_PAD.encode(claims),
        key,
        alg,
    )
}

/// Signs the two encoded parts exactly as given, whatever their encoding.
pub fn sign_parts(
    header: &str,
    claims: &str,
    key: &jsonwebtoken::EncodingKey,
    alg: jsonwebtoken::Algorithm,
) -> String {
    let input = format!("{header}.{claims}");
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).expect("signs");
    format!("{input}.{signature}")
}

/// The claims [`TestKey::mint`] would sign, for [`forge`].
pub fn claims(now: i64) -> Value {
    json!({
        "aud": API_CLIENT_ID,
        "iss": format!("https://login.microsoftonline.com/{TENANT}/v2.0"),
        "iat": now - 300, "nbf": now - 300, "exp": now + 3600,
        "azp": READER_ID, "azpacr": "1", "idtyp": "app",
        "oid": READER_SP, "sub": READER_SP, "tid": TENANT,
        "roles": ["Tasks.Read.All"], "uti": "u", "ver": "2.0",
    })
}

/// The clock the API suites move: a [`ManualClock`] at a fixed time (2027-01-15 08:00 UTC).
pub fn test_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::at_unix(1_800_000_000))
}

/// The usual arrangement: a wiremock identity provider publishing `key` (expecting `jwks_fetches`
/// JWKS fetches), a test clock, and the API against them.
pub async fn spawn_api_publishing(
    key: &TestKey,
    jwks_fetches: u64,
) -> (TestIdp, Arc<ManualClock>, TestApi) {
    spawn_api_publishing_on(key, jwks_fetches, &Db::Sqlite).await
}

/// As [`spawn_api_publishing`], on the database `db` names.
pub async fn spawn_api_publishing_on(
    key: &TestKey,
    jwks_fetches: u64,
    db: &Db,
) -> (TestIdp, Arc<ManualClock>, TestApi) {
    let idp = TestIdp::start().await;
    idp.serve_discovery().await;
    idp.serve_jwks(&[key], jwks_fetches).await;
    let clock = test_clock();
    let api = spawn_api_on(&idp, &clock, db).await;
    (idp, clock, api)
}
