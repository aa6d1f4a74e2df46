//! Target `token_form`: arbitrary bytes as the body of a token request to the emulator.
//!
//! Input: one byte choosing the endpoint (`1`: v1 `/oauth2/token`, anything else: v2
//! `/oauth2/v2.0/token`), then the `application/x-www-form-urlencoded` body. Two checks:
//! 1. `Form::parse`, the endpoint's body parser, against a decoder written here: for every name
//!    in the body, the first value, percent-decoded (`+` a space, bad escapes kept, invalid UTF-8
//!    replaced), and an empty value counting as absent.
//! 2. The body POSTed to the real token endpoint (actix test service, the demo directory, a fixed
//!    clock): never a panic; a 400 or 401 with an Entra error body (`error`, `error_codes`,
//!    `AADSTS…` description), or a 200 only for the client-credentials grant of a confidential
//!    client that presented one of its unexpired secrets, with a token naming that client.
//!
//! Shared by the fuzz target and the regression test in `entra-emulator` (included by path).

use actix_web::http::StatusCode;
use actix_web::web::{Bytes, Data};
use actix_web::{App, test};
use entra_emulator::mint::TokenService;
use entra_emulator::routes::token::Form;
use entra_emulator::settings::EmulatorSettings;
use entra_emulator::state::AppState;
use serde_json::Value;
use shared::clock::ManualClock;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

/// 2027-01-15: the demo secrets are valid then, except the one that expired in 2024.
pub const NOW: i64 = 1_800_000_000;
pub const TENANT: &str = "contoso.onmicrosoft.com";

/// POSTs a form body to a path of the emulator's service; its status and body.
type Call = Box<dyn Fn(String, Vec<u8>) -> Pin<Box<dyn Future<Output = (StatusCode, Bytes)>>>>;

pub struct Harness {
    runner: actix_web::rt::SystemRunner,
    call: Call,
    state: Data<AppState>,
}

impl Harness {
    /// The emulator's state over `directory` (the demo directory), its signing keys generated in
    /// a scratch directory that is removed again once they are loaded.
    pub fn new(directory: &Path) -> Self {
        let data_dir = std::env::temp_dir().join(format!(
            "entra-emulator-fuzz-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let settings = EmulatorSettings {
            data_dir: data_dir.clone(),
            directory: directory.to_owned(),
            ..Default::default()
        };
        let tokens = TokenService::open(
            &settings,
            Arc::new(ManualClock::at_unix(NOW)),
            "https://localhost:8443".to_owned(),
        )
        .expect("the demo directory and fresh keys");
        let state = Data::new(
            AppState::new(tokens, settings, None).expect("the cluster issuer's fresh keys"),
        );
        std::fs::remove_dir_all(&data_dir).expect("the scratch data directory");
        let runner = actix_web::rt::System::new();
        let app = runner.block_on(test::init_service(
            App::new()
                .app_data(state.clone())
                .configure(|cfg| entra_emulator::routes::configure(cfg, false)),
        ));
        let app = std::rc::Rc::new(app);
        let call: Call = Box::new(move |path, body| {
            let app = app.clone();
            let request = test::TestRequest::post()
                .uri(&path)
                .insert_header(("content-type", "application/x-www-form-urlencoded"))
                .set_payload(body)
                .to_request();
            Box::pin(async move {
                let response = test::call_service(&*app, request).await;
                let status = response.status();
                (status, test::read_body(response).await)
            })
        });
        Self {
            runner,
            call,
            state,
        }
    }

    /// Runs one input; the endpoint's status (after the oracle agreed with the answer).
    pub fn check(&self, data: &[u8]) -> StatusCode {
        let (v1, body) = match data.split_first() {
            Some((b'1', body)) => (true, body),
            Some((_, body)) => (false, body),
            None => (false, data),
        };
        let form = Form::parse(body);
        let reference = reference_parse(body);
        for (name, value) in &reference {
            let expected = Some(value.as_str()).filter(|v| !v.is_empty());
            assert_eq!(form.get(name), expected, "parameter {name:?}");
        }
        for name in PARAMETERS {
            if !reference.iter().any(|(n, _)| n == name) {
                assert_eq!(form.get(name), None, "{name} is not in the body");
            }
        }

        let path = if v1 {
            format!("/{TENANT}/oauth2/token")
        } else {
            format!("/{TENANT}/oauth2/v2.0/token")
        };
        let (status, answer) = self.runner.block_on((self.call)(path, body.to_vec()));
        let answer: Value = serde_json::from_slice(&answer)
            .unwrap_or_else(|e| panic!("status {status}: the body is not JSON: {e}"));
        match status {
            StatusCode::OK => self.issued_only_for_a_valid_secret(&form, &answer),
            StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED => entra_error(&answer),
            other => panic!("status {other}: {answer}"),
        }
        status
    }

    fn issued_only_for_a_valid_secret(&self, form: &Form, answer: &Value) {
        assert_eq!(form.get("grant_type"), Some("client_credentials"));
        let client_id = form.get("client_id").expect("a token without client_id");
        let tenant = self
            .state
            .directory()
            .tenant(TENANT)
            .expect("the demo tenant");
        let client = tenant
            .application_by_client_id(client_id)
            .expect("a token for an unknown client");
        assert!(!client.public_client, "a public client got an app token");
        let secret = form.get("client_secret").expect("a token without a secret");
        assert!(
            client
                .client_secrets
                .iter()
                .any(|s| s.value.expose() == secret
                    && s.expires.is_none_or(|e| e.unix_timestamp() > NOW)),
            "a token for a secret the client does not hold, or an expired one"
        );
        let token = answer["access_token"].as_str().expect("an access_token");
        let payload = token.split('.').nth(1).expect("a JWS");
        let claims: Value =
            serde_json::from_slice(&decode_base64url(payload).expect("the payload is base64url"))
                .expect("JSON claims");
        let named = claims["azp"].as_str().or(claims["appid"].as_str());
        assert_eq!(
            named,
            Some(client.client_id.as_str()),
            "the token names another client"
        );
        assert!(claims.get("scp").is_none(), "an app token with scp");
        assert_eq!(claims["oid"], claims["sub"], "an app token with oid != sub");
    }
}

/// Every parameter the token endpoint reads.
const PARAMETERS: [&str; 12] = [
    "grant_type",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "scope",
    "resource",
    "code",
    "redirect_uri",
    "code_verifier",
    "client_info",
    "",
];

fn entra_error(answer: &Value) {
    let error = answer["error"].as_str().expect("an error");
    assert!(!error.is_empty());
    let codes = answer["error_codes"].as_array().expect("error_codes");
    let first = codes
        .first()
        .and_then(Value::as_u64)
        .expect("at least one numeric error code");
    let description = answer["error_description"]
        .as_str()
        .expect("an error_description");
    assert!(
        description.starts_with(&format!("AADSTS{first}:")),
        "{description:?}"
    );
}

/// `application/x-www-form-urlencoded` as the WHATWG URL standard parses it, first value per name.
fn reference_parse(body: &[u8]) -> Vec<(String, String)> {
    let mut seen: Vec<(String, String)> = Vec::new();
    for pair in body.split(|&b| b == b'&') {
        if pair.is_empty() {
            continue;
        }
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &[][..]),
        };
        let (name, value) = (percent_decode(name), percent_decode(value));
        if !seen.iter().any(|(n, _)| *n == name) {
            seen.push((name, value));
        }
    }
    seen
}

fn percent_decode(input: &[u8]) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < input.len() => match (hex(input[i + 1]), hex(input[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unpadded base64url, for reading the issued token's claims.
fn decode_base64url(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()
}
