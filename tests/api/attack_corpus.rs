//! The attack corpus: crafted tokens and requests sent over HTTP to the real API (actix on port 0,
//! wiremock as the identity provider), one table, each row with the exact status,
//! `WWW-Authenticate` error and reason code it must get. The test fails on any row that gets
//! something else, asserts how many rows ran and that none was let in (by the responses and by the
//! API's own `accepted` counter), and ends with a control row, a valid token that must be let in,
//! so the harness can tell the two apart.
//!
//! The table is committed as markdown in `api-service/ATTACK-CORPUS.md`, and the test checks that
//! the file is the table it would write. `ATTACK_CORPUS_MD=write cargo test -p mesh-tests --test
//! api attack_corpus` rewrites the file instead.

mod key_store;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey};
use mesh_tests::api::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// What a request must get back: status, the `error` of `WWW-Authenticate`, the problem's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Expect {
    status: u16,
    error: Option<&'static str>,
    reason: Option<&'static str>,
}

const fn invalid_token(reason: &'static str) -> Expect {
    Expect {
        status: 401,
        error: Some("invalid_token"),
        reason: Some(reason),
    }
}

const fn insufficient_scope(reason: &'static str) -> Expect {
    Expect {
        status: 403,
        error: Some("insufficient_scope"),
        reason: Some(reason),
    }
}

/// RFC 6750 §3.1: no error code when no bearer credentials were sent at all.
const NO_CREDENTIALS: Expect = Expect {
    status: 401,
    error: None,
    reason: Some("missing_token"),
};

const INVALID_REQUEST: Expect = Expect {
    status: 400,
    error: Some("invalid_request"),
    reason: Some("malformed_authorization_header"),
};

/// actix-http answers a request head over its 128 KiB buffer itself, before any middleware.
const HEAD_TOO_LARGE: Expect = Expect {
    status: 431,
    error: None,
    reason: None,
};

const ACCEPTED: Expect = Expect {
    status: 200,
    error: None,
    reason: None,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Against the keys published at start-up.
    Live,
    /// After the identity provider retired a key and the API refetched its JWKS.
    AfterRetirement,
}

struct Case {
    name: &'static str,
    attack: &'static str,
    method: Method,
    path: &'static str,
    /// One `Authorization` header per entry.
    authorization: Vec<String>,
    /// Sent over a bare TCP connection rather than with reqwest (see [`send_raw`]).
    bare_tcp: bool,
    phase: Phase,
    expect: Expect,
}

impl Case {
    fn on(mut self, method: Method, path: &'static str) -> Self {
        self.method = method;
        self.path = path;
        self
    }

    fn over_bare_tcp(mut self) -> Self {
        self.bare_tcp = true;
        self
    }

    fn after_retirement(mut self) -> Self {
        self.phase = Phase::AfterRetirement;
        self
    }

    fn is_control(&self) -> bool {
        self.expect == ACCEPTED
    }

    fn request(&self) -> String {
        let headers = match self.authorization.len() {
            0 => " (no Authorization)".to_owned(),
            1 => String::new(),
            n => format!(" ({n} Authorization headers)"),
        };
        let transport = if self.bare_tcp { ", bare TCP" } else { "" };
        format!("{} {}{headers}{transport}", self.method, self.path)
    }
}

/// `GET /api/whoami` (any allowed app may call it) with `Authorization: Bearer <token>`.
fn row(name: &'static str, attack: &'static str, token: &str, expect: Expect) -> Case {
    raw(name, attack, vec![format!("Bearer {token}")], expect)
}

/// `GET /api/whoami` with these `Authorization` header values, as given.
fn raw(
    name: &'static str,
    attack: &'static str,
    authorization: Vec<String>,
    expect: Expect,
) -> Case {
    Case {
        name,
        attack,
        method: Method::GET,
        path: "/api/whoami",
        authorization,
        bare_tcp: false,
        phase: Phase::Live,
        expect,
    }
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Observed {
    Response {
        status: u16,
        error: Option<String>,
        reason: Option<String>,
    },
    NoResponse(String),
}

impl Observed {
    fn matches(&self, expect: &Expect) -> bool {
        match self {
            Self::Response {
                status,
                error,
                reason,
            } => {
                *status == expect.status
                    && error.as_deref() == expect.error
                    && reason.as_deref() == expect.reason
            }
            Self::NoResponse(_) => false,
        }
    }

    fn accepted(&self) -> bool {
        matches!(self, Self::Response { status, .. } if (200..300).contains(status))
    }
}

impl std::fmt::Display for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Response {
                status,
                error,
                reason,
            } => write!(
                f,
                "{status} {} {}",
                error.as_deref().unwrap_or("-"),
                reason.as_deref().unwrap_or("-")
            ),
            Self::NoResponse(e) => write!(f, "no response ({e})"),
        }
    }
}

async fn send(api: &TestApi, case: &Case) -> Observed {
    if case.bare_tcp {
        return send_raw(api, case).await;
    }
    let mut request = api
        .client
        .request(case.method.clone(), format!("{}{}", api.url, case.path))
        .timeout(Duration::from_secs(30))
        .json(&json!({ "title": "t" }));
    for value in &case.authorization {
        request = request.header("authorization", value);
    }
    match request.send().await {
        Ok(response) => observe(response).await,
        Err(e) => Observed::NoResponse(format!("{e:?}")),
    }
}

/// What a response says: its status, challenge error and problem reason.
async fn observe(response: reqwest::Response) -> Observed {
    let problem = response
        .headers()
        .get("content-type")
        .is_some_and(|t| t == "application/problem+json");
    if problem {
        // Checks the body is a problem with a request id, never echoing the token.
        let (status, error, reason) = refusal(response).await;
        return Observed::Response {
            status,
            error,
            reason: Some(reason),
        };
    }
    let status = response.status().as_u16();
    let error = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap_or("?").to_owned());
    Observed::Response {
        status,
        error,
        reason: None,
    }
}

/// HTTP/1.1 by hand over a bare TCP connection, reading while writing. actix-http answers a
/// request head over its 128 KiB buffer with 431 before reading the rest, then closes, and the
/// unread rest makes the close a reset: a client that is still writing (reqwest/hyper, whose
/// write fails first) may report only the reset, while this one reads the answer that preceded it.
async fn send_raw(api: &TestApi, case: &Case) -> Observed {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = api.url.trim_start_matches("http://").to_owned();
    let stream = match tokio::net::TcpStream::connect(&address).await {
        Ok(stream) => stream,
        Err(e) => return Observed::NoResponse(e.to_string()),
    };
    let (mut reader, mut writer) = stream.into_split();
    let mut head = format!(
        "{} {} HTTP/1.1\r\nhost: {address}\r\n",
        case.method, case.path
    );
    for value in &case.authorization {
        head.push_str(&format!("authorization: {value}\r\n"));
    }
    head.push_str("connection: close\r\n\r\n");
    let write = tokio::spawn(async move { writer.write_all(head.as_bytes()).await });
    let mut answer = Vec::new();
    // Ends with the close, or with the reset after the answer: what was read before counts.
    let _ = tokio::time::timeout(Duration::from_secs(30), reader.read_to_end(&mut answer)).await;
    write.abort();
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let mut lines = head.lines();
    let Some(status) = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
    else {
        return Observed::NoResponse(format!("no HTTP answer: {head:?}"));
    };
    let header = |name: &str| {
        head.lines().find_map(|l| {
            l.split_once(':')
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_owned())
        })
    };
    let error = header("www-authenticate")
        .as_deref()
        .and_then(challenge_error);
    let reason = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|b| b["reason"].as_str().map(str::to_owned));
    Observed::Response {
        status,
        error,
        reason,
    }
}

/// `claims` as JSON text with one more member, `xms_note`, whose string holds `bytes` as they are
/// (no JSON text built through serde can hold bytes that are not UTF-8).
fn claims_with_raw_bytes(claims: Value, bytes: &[u8]) -> Vec<u8> {
    let text = claims.to_string();
    let mut out = text.as_bytes()[..text.len() - 1].to_vec();
    out.extend_from_slice(br#","xms_note":"a"#);
    out.extend_from_slice(bytes);
    out.extend_from_slice(br#"b"}"#);
    out
}

/// The RS256 header of `key` over these payload bytes, validly signed.
fn signed_bytes(payload: &[u8], key: &TestKey) -> String {
    sign_parts(
        &b64(rs256(&key.kid).to_string()),
        &b64(payload),
        &key.encoding,
        Algorithm::RS256,
    )
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn rs256(kid: &str) -> Value {
    json!({ "typ": "JWT", "alg": "RS256", "kid": kid })
}

fn header_with(alg: &str, kid: &str, member: &str, value: Value) -> Value {
    let mut header = json!({ "typ": "JWT", "alg": alg, "kid": kid });
    header[member] = value;
    header
}

/// `claims` as JSON text with `members` removed and then written in this order, raw: duplicate
/// members, or numbers no `Value` can hold.
fn spliced(mut claims: Value, members: &[(&str, &str)]) -> String {
    let object = claims.as_object_mut().expect("object");
    for (name, _) in members {
        object.remove(*name);
    }
    let mut text = claims.to_string();
    text.pop();
    for (name, value) in members {
        text.push_str(&format!(",\"{name}\":{value}"));
    }
    text.push('}');
    text
}

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn without(mut claims: Value, names: &[&str]) -> Value {
    let object = claims.as_object_mut().expect("object");
    for name in names {
        object.remove(*name);
    }
    claims
}

/// A valid token of `key` padded with an unknown claim (and header member) to exactly `len` bytes.
fn signed_of_len(key: &TestKey, now: i64, len: usize) -> String {
    let signature_len = key
        .mint(now, |_| {})
        .rsplit('.')
        .next()
        .expect("part")
        .len();
    let encoded = |bytes: usize| (bytes * 4).div_ceil(3);
    for header_pad in 0..4 {
        let mut header = rs256(&key.kid);
        header["pad"] = json!("h".repeat(header_pad));
        let header = header.to_string();
        let mut claims = claims(now);
        claims["pad"] = json!("");
        let base = claims.to_string().len();
        let Some(body_len) = len.checked_sub(encoded(header.len()) + 2 + signature_len) else {
            continue;
        };
        let Some(pad) = (body_len * 3 / 4).checked_sub(base) else {
            continue;
        };
        for pad in pad.saturating_sub(2)..pad + 3 {
            if encoded(base + pad) == body_len {
                claims["pad"] = json!("c".repeat(pad));
                let token = forge_raw(
                    &header,
                    &claims.to_string(),
                    &key.encoding,
                    Algorithm::RS256,
                );
                assert_eq!(token.len(), len);
                return token;
            }
        }
    }
    panic!("no padding makes a {len}-byte token");
}

/// A token of `key` whose JSON `part` (0 header, 1 claims) is encoded by `encode`, signed over the
/// parts exactly as sent: only the encoding is wrong. Tries claim values until `encode` produces a
/// form that differs from base64url (padding, `+` or `/`).
fn misencoded(key: &TestKey, now: i64, part: usize, encode: fn(&[u8]) -> String) -> String {
    for i in 0..64 {
        // Trailing spaces keep the header valid JSON while changing its length.
        let header = format!("{}{}", rs256(&key.kid), " ".repeat(i % 3));
        let mut claims = claims(now);
        // In ASCII text only '>', '?' and '~' can yield '+' or '/', and only at every third byte.
        claims["uti"] = json!(format!("misencoded-{i}???"));
        let texts = [header, claims.to_string()];
        let odd = encode(texts[part].as_bytes());
        if odd != b64(&texts[part]) {
            let mut parts = [b64(&texts[0]), b64(&texts[1])];
            parts[part] = odd;
            return sign_parts(&parts[0], &parts[1], &key.encoding, Algorithm::RS256);
        }
    }
    panic!("no claims make part {part} encode differently");
}

/// A valid token of `key` whose signature is re-encoded by `encode` (into a different form).
fn signature_misencoded(key: &TestKey, now: i64, encode: fn(&[u8]) -> String) -> String {
    for i in 0..64 {
        let token = key.mint(now, |c| c["uti"] = json!(format!("signature-{i}")));
        let (input, signature) = token.rsplit_once('.').expect("three parts");
        let odd = encode(&URL_SAFE_NO_PAD.decode(signature).expect("base64url"));
        if odd != signature {
            return format!("{input}.{odd}");
        }
    }
    panic!("no signature encodes differently");
}

/// A v1 token of the reader, as Entra issues it for an API that accepts v1 tokens.
fn v1(mut claims: Value) -> Value {
    let object = claims.as_object_mut().expect("object");
    object.remove("azp");
    object.remove("azpacr");
    claims["ver"] = json!("1.0");
    claims["iss"] = json!(format!("https://sts.windows.net/{TENANT}/"));
    claims["aud"] = json!(API_APP_ID_URI);
    claims["appid"] = json!(READER_ID);
    claims["appidacr"] = json!("1");
    claims
}

/// The keys and tokens the rows are made from.
struct Material<'a> {
    now: i64,
    /// Published: signs the API's valid tokens.
    key: &'a TestKey,
    /// Never published.
    unpublished: &'a TestKey,
    /// Published with another issuer's `issuer` member.
    foreign_issuer: &'a TestKey,
    /// Published at start-up, retired later.
    retired: &'a TestKey,
    /// A token of `retired`, accepted (and so cached) before its key was retired.
    cached_retired: &'a str,
    /// The attacker's own key, and where the attacker serves it.
    evil: &'a TestKey,
    attacker_url: &'a str,
    /// An EC P-256 key (ES256).
    ec: &'a EncodingKey,
}

fn corpus(m: &Material) -> Vec<Case> {
    let now = m.now;
    let key = m.key;
    let mint = |edit: &dyn Fn(&mut Value)| key.mint(now, |c| edit(c));
    let with_header = |header: Value| forge(&header, &claims(now), key);
    let signed = |claims: &str| {
        forge_raw(
            &rs256("k1").to_string(),
            claims,
            &key.encoding,
            Algorithm::RS256,
        )
    };
    let evil = |header: Value| forge(&header, &claims(now), m.evil);
    let jwks_url = format!("{}/keys", m.attacker_url);
    let cert_url = format!("{}/cert.pem", m.attacker_url);
    let mut evil_jwk = m.evil.jwk.clone();
    evil_jwk.as_object_mut().expect("object").remove("issuer");
    let hs256 = |secret: &[u8]| {
        forge_raw(
            &json!({ "typ": "JWT", "alg": "HS256", "kid": "k1" }).to_string(),
            &claims(now).to_string(),
            &EncodingKey::from_secret(secret),
            Algorithm::HS256,
        )
    };
    let rsa_as = |alg: Algorithm, name: &str| {
        forge_raw(
            &json!({ "typ": "JWT", "alg": name, "kid": "k1" }).to_string(),
            &claims(now).to_string(),
            &key.encoding,
            alg,
        )
    };
    let none = |alg: &str| {
        format!(
            "{}.{}.",
            b64(json!({ "typ": "JWT", "alg": alg }).to_string()),
            b64(claims(now).to_string())
        )
    };
    let other_tenant = "99999999-5b6a-4c8d-9e0f-1a2b3c4d5e6f";
    let a_user = "5a6b7c8d-9e0f-4a1b-8c2d-4e5f6a7b8c9d";
    let graph = "00000003-0000-0000-c000-000000000000";

    vec![
        // The Authorization header itself.
        raw("no header", "no credentials at all", vec![], NO_CREDENTIALS),
        raw(
            "basic scheme",
            "another scheme's credentials (Basic) in place of a bearer token",
            vec!["Basic dXNlcjpwYXNz".into()],
            NO_CREDENTIALS,
        ),
        raw(
            "bearer with two tokens",
            "two space-separated tokens in one Bearer header",
            vec!["Bearer a b".into()],
            INVALID_REQUEST,
        ),
        raw(
            "two Authorization headers",
            "a valid token and another one in a second header: which would a proxy have logged?",
            vec![format!("Bearer {}", mint(&|_| {})), "Bearer another".into()],
            INVALID_REQUEST,
        ),
        // Size.
        row(
            "16 KiB exactly",
            "a validly signed token of exactly 16,384 bytes (the cap) on a write route: the size check lets it through, the role check refuses it",
            &signed_of_len(key, now, 16 * 1024),
            insufficient_scope("missing_role"),
        )
        .on(Method::POST, "/api/tasks"),
        row(
            "16 KiB + 1",
            "a validly signed token of 16,385 bytes, one over the cap",
            &signed_of_len(key, now, 16 * 1024 + 1),
            invalid_token("token_too_large"),
        ),
        row(
            "100 KiB",
            "a validly signed 100 KiB token (under actix's 128 KiB request-head limit)",
            &signed_of_len(key, now, 100 * 1024),
            invalid_token("token_too_large"),
        ),
        row(
            "1 MiB",
            "a validly signed 1 MiB token: actix-http answers 431 to the over-long request head before the API sees it, then resets the connection",
            &signed_of_len(key, now, 1024 * 1024),
            HEAD_TOO_LARGE,
        )
        .over_bare_tcp(),
        // Shape and encoding.
        row(
            "two parts",
            "a header and a payload, no signature part",
            "eyJhbGciOiJSUzI1NiJ9.e30",
            invalid_token("not_a_jws"),
        ),
        row(
            "JWE, five parts",
            "an encrypted token (RSA-OAEP-256/A256GCM JWE compact form) instead of a signed one",
            &format!(
                "{}.{}.{}.{}.{}",
                b64(json!({ "alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": "k1" }).to_string()),
                b64([7u8; 256]),
                b64([1u8; 12]),
                b64(claims(now).to_string()),
                b64([2u8; 16])
            ),
            invalid_token("not_a_jws"),
        ),
        row(
            "header not base64",
            "a header part of characters outside any base64 alphabet",
            "%%%.e30.c2ln",
            invalid_token("malformed_token"),
        ),
        row(
            "header padded",
            "the header part base64url-encoded with '=' padding, signed as sent",
            &misencoded(key, now, 0, |b| URL_SAFE.encode(b)),
            invalid_token("malformed_token"),
        ),
        row(
            "payload padded",
            "the payload part base64url-encoded with '=' padding, signed as sent",
            &misencoded(key, now, 1, |b| URL_SAFE.encode(b)),
            invalid_token("malformed_token"),
        ),
        row(
            "payload standard alphabet",
            "the payload part in standard base64 ('+' and '/'), signed as sent",
            &misencoded(key, now, 1, |b| STANDARD_NO_PAD.encode(b)),
            invalid_token("malformed_token"),
        ),
        row(
            "signature standard alphabet",
            "a valid token with its signature re-encoded in standard base64 ('+' and '/')",
            &signature_misencoded(key, now, |b| STANDARD_NO_PAD.encode(b)),
            invalid_token("invalid_signature"),
        ),
        row(
            "signature padded",
            "a valid token with its signature re-encoded with '=' padding",
            &signature_misencoded(key, now, |b| URL_SAFE.encode(b)),
            invalid_token("invalid_signature"),
        ),
        row(
            "signature stripped",
            "a valid RS256 token with its signature removed (empty third part)",
            &format!(
                "{}.",
                mint(&|_| {}).rsplit_once('.').expect("three parts").0
            ),
            invalid_token("invalid_signature"),
        ),
        // Algorithms.
        row(
            "alg none",
            "alg 'none', carrying an RS256 signature of the published key over the same input",
            &with_header(json!({ "typ": "JWT", "alg": "none", "kid": "k1" })),
            invalid_token("unsupported_algorithm"),
        ),
        row(
            "alg None",
            "alg 'None' (a case variant some libraries compare loosely)",
            &with_header(json!({ "typ": "JWT", "alg": "None", "kid": "k1" })),
            invalid_token("unsupported_algorithm"),
        ),
        row(
            "alg NONE",
            "alg 'NONE'",
            &with_header(json!({ "typ": "JWT", "alg": "NONE", "kid": "k1" })),
            invalid_token("unsupported_algorithm"),
        ),
        row(
            "alg nOnE",
            "alg 'nOnE'",
            &with_header(json!({ "typ": "JWT", "alg": "nOnE", "kid": "k1" })),
            invalid_token("unsupported_algorithm"),
        ),
        row(
            "alg none, empty signature",
            "the classic unsecured JWT: alg 'none', no kid, empty signature part",
            &none("none"),
            invalid_token("unsupported_algorithm"),
        ),
        row(
            "alg absent",
            "a header without alg, validly RS256-signed",
            &with_header(json!({ "typ": "JWT", "kid": "k1" })),
            invalid_token("unsupported_algorithm"),
        ),
        row(
            "HS256 keyed with the PEM",
            "key confusion: HS256 with the published RSA key's PEM text as the HMAC secret",
            &hs256(key.public_pem().as_bytes()),
            invalid_token("unsupported_algorithm"),
        ),
        row(
            "HS256 keyed with the DER",
            "key confusion: HS256 with the published RSA key's DER bytes (SubjectPublicKeyInfo) as the HMAC secret",
            &hs256(&key.public_der()),
            invalid_token("unsupported_algorithm"),
        ),
        row(
            "RS384",
            "really signed RS384 by the published key",
            &rsa_as(Algorithm::RS384, "RS384"),
            invalid_token("unsupported_algorithm"),
        ),
        row(
            "PS256",
            "really signed PS256 (RSASSA-PSS) by the published key",
            &rsa_as(Algorithm::PS256, "PS256"),
            invalid_token("unsupported_algorithm"),
        ),
        row(
            "ES256",
            "really signed ES256 by an EC P-256 key, under the published kid",
            &forge_raw(
                &json!({ "typ": "JWT", "alg": "ES256", "kid": "k1" }).to_string(),
                &claims(now).to_string(),
                m.ec,
                Algorithm::ES256,
            ),
            invalid_token("unsupported_algorithm"),
        ),
        // kid.
        row(
            "no kid",
            "a validly signed token naming no key",
            &with_header(json!({ "typ": "JWT", "alg": "RS256" })),
            invalid_token("missing_key_id"),
        ),
        row(
            "empty kid",
            "kid ''",
            &with_header(rs256("")),
            invalid_token("invalid_key_id"),
        ),
        row(
            "huge kid",
            "a 10,000-character kid (a large map key and log field)",
            &with_header(rs256(&"k".repeat(10_000))),
            invalid_token("invalid_key_id"),
        ),
        row(
            "path-like kid",
            "kid '../../etc/passwd' (a validator that reads keys from files by kid)",
            &with_header(rs256("../../etc/passwd")),
            invalid_token("invalid_key_id"),
        ),
        row(
            "URL kid",
            "kid naming the attacker's JWKS URL (a validator that fetches by kid)",
            &evil(rs256(&jwks_url)),
            invalid_token("invalid_key_id"),
        ),
        row(
            "unpublished key",
            "signed by a key the tenant does not publish, under its own kid (drives the one unknown-kid refetch)",
            &m.unpublished.mint(now, |_| {}),
            invalid_token("unknown_signing_key"),
        ),
        row(
            "published kid, another key",
            "the published kid, signed by another key",
            &forge(&rs256("k1"), &claims(now), m.unpublished),
            invalid_token("invalid_signature"),
        ),
        // Keys named or embedded by the token: the attacker's server must see no request.
        row(
            "jku",
            "jku pointing at the attacker's JWKS, signed by the attacker's key",
            &evil(header_with("RS256", "attacker", "jku", json!(jwks_url))),
            invalid_token("header_key_reference"),
        ),
        row(
            "jku under the published kid",
            "jku pointing at the attacker's JWKS, kid of the published key, signed by the attacker's key",
            &evil(header_with("RS256", "k1", "jku", json!(jwks_url))),
            invalid_token("header_key_reference"),
        ),
        row(
            "x5u",
            "x5u pointing at the attacker's certificate, signed by the attacker's key",
            &evil(header_with("RS256", "attacker", "x5u", json!(cert_url))),
            invalid_token("header_key_reference"),
        ),
        row(
            "jwk",
            "the attacker's public key embedded as jwk, signed by that key",
            &evil(header_with("RS256", "attacker", "jwk", evil_jwk)),
            invalid_token("header_key_reference"),
        ),
        row(
            "x5c",
            "the attacker's self-signed certificate embedded as x5c, signed by its key",
            &evil(header_with(
                "RS256",
                "attacker",
                "x5c",
                json!([STANDARD.encode(m.evil.self_signed_der())]),
            )),
            invalid_token("header_key_reference"),
        ),
        // crit.
        row(
            "crit",
            "crit naming a registered claim (exp) the API would have to understand",
            &with_header(header_with("RS256", "k1", "crit", json!(["exp"]))),
            invalid_token("critical_header"),
        ),
        row(
            "crit b64",
            "RFC 7797 unencoded payload (b64 false, crit [b64])",
            &with_header(json!({ "typ": "JWT", "alg": "RS256", "kid": "k1", "b64": false, "crit": ["b64"] })),
            invalid_token("critical_header"),
        ),
        // JSON bombs and parser differentials.
        row(
            "header nested 5,000 levels",
            "a header member nested 5,000 arrays deep (fits the size cap)",
            &sign_parts(
                &b64(format!(
                    r#"{{"typ":"JWT","alg":"RS256","kid":"k1","x":{}}}"#,
                    nested(5_000)
                )),
                &b64(claims(now).to_string()),
                &key.encoding,
                Algorithm::RS256,
            ),
            invalid_token("malformed_token"),
        ),
        row(
            "header nested 10,000 levels",
            "a header member nested 10,000 arrays deep",
            &format!(
                "{}.{}.c2ln",
                b64(format!(r#"{{"typ":"JWT","alg":"RS256","kid":"k1","x":{}}}"#, nested(10_000))),
                b64(claims(now).to_string())
            ),
            invalid_token("token_too_large"),
        ),
        row(
            "claims nested 5,000 levels, forged",
            "a claim nested 5,000 arrays deep under the published kid, signed by another key: never parsed",
            &forge_raw(
                &rs256("k1").to_string(),
                &spliced(claims(now), &[("x", &nested(5_000))]),
                &m.unpublished.encoding,
                Algorithm::RS256,
            ),
            invalid_token("invalid_signature"),
        ),
        row(
            "roles nested 5,000 levels",
            "roles nested 5,000 arrays deep, validly signed",
            &signed(&spliced(claims(now), &[("roles", &nested(5_000))])),
            invalid_token("malformed_token"),
        ),
        row(
            "unknown claim nested 5,000 levels",
            "an unknown claim nested 5,000 arrays deep, validly signed, on a write route: skipped without recursion, the role check still decides",
            &signed(&spliced(claims(now), &[("x", &nested(5_000))])),
            insufficient_scope("missing_role"),
        )
        .on(Method::POST, "/api/tasks"),
        row(
            "claims nested 10,000 levels",
            "a claim nested 10,000 arrays deep",
            &signed(&spliced(claims(now), &[("x", &nested(10_000))])),
            invalid_token("token_too_large"),
        ),
        row(
            "exp 1e400",
            "exp = 1e400, beyond any float",
            &signed(&spliced(claims(now), &[("exp", "1e400")])),
            invalid_token("malformed_token"),
        ),
        row(
            "exp 2^64",
            "exp = 18446744073709551616, beyond any 64-bit integer",
            &signed(&spliced(claims(now), &[("exp", "18446744073709551616")])),
            invalid_token("malformed_token"),
        ),
        row(
            "two aud, ours last",
            "aud twice: another API's, then this API's (a last-wins parser accepts)",
            &signed(&spliced(
                claims(now),
                &[("aud", r#""api://audit-api""#), ("aud", &format!("\"{API_CLIENT_ID}\""))],
            )),
            invalid_token("malformed_token"),
        ),
        row(
            "two aud, ours first",
            "aud twice: this API's, then another API's (a first-wins parser accepts)",
            &signed(&spliced(
                claims(now),
                &[("aud", &format!("\"{API_CLIENT_ID}\"")), ("aud", r#""api://audit-api""#)],
            )),
            invalid_token("malformed_token"),
        ),
        row(
            "two roles",
            "roles twice on a write route: read-only, then read-write (a last-wins parser grants the write)",
            &signed(&spliced(
                claims(now),
                &[("roles", r#"["Tasks.Read.All"]"#), ("roles", r#"["Tasks.ReadWrite.All"]"#)],
            )),
            invalid_token("malformed_token"),
        )
        .on(Method::POST, "/api/tasks"),
        row(
            "two alg",
            "alg twice in the header: 'none', then 'RS256', validly signed",
            &forge_raw(
                r#"{"typ":"JWT","alg":"none","kid":"k1","alg":"RS256"}"#,
                &claims(now).to_string(),
                &key.encoding,
                Algorithm::RS256,
            ),
            invalid_token("malformed_token"),
        ),
        row(
            "two kid",
            "kid twice in the header: a path, then the published kid, validly signed",
            &forge_raw(
                r#"{"typ":"JWT","alg":"RS256","kid":"../../etc/passwd","kid":"k1"}"#,
                &claims(now).to_string(),
                &key.encoding,
                Algorithm::RS256,
            ),
            invalid_token("malformed_token"),
        ),
        // Encoding: RFC 7519 §7.2, the claims set is UTF-8 JSON; RFC 7515 §4, so is the header.
        row(
            "invalid UTF-8 in an unread claim",
            "bytes 0xFF 0xFE inside the string value of a claim the API never reads, validly signed",
            &signed_bytes(&claims_with_raw_bytes(claims(now), &[0xff, 0xfe]), key),
            invalid_token("malformed_token"),
        ),
        row(
            "overlong UTF-8 in an unread claim",
            "an overlong encoding of '/' (0xC0 0xAF) inside an unread claim's string, validly signed",
            &signed_bytes(&claims_with_raw_bytes(claims(now), &[0xc0, 0xaf]), key),
            invalid_token("malformed_token"),
        ),
        row(
            "invalid UTF-8 in the header",
            "a header member whose string holds the byte 0xFF, validly signed",
            &{
                let mut header = br#"{"typ":"JWT","alg":"RS256","kid":"k1","x":""#.to_vec();
                header.extend_from_slice(&[0xff, b'"', b'}']);
                sign_parts(
                    &b64(&header),
                    &b64(claims(now).to_string()),
                    &key.encoding,
                    Algorithm::RS256,
                )
            },
            invalid_token("malformed_token"),
        ),
        // Times.
        row(
            "expired",
            "exp 61 s ago, one second past the 60 s skew",
            &mint(&|c| c["exp"] = json!(now - 61)),
            invalid_token("expired"),
        ),
        row(
            "not yet valid",
            "nbf 10 minutes ahead",
            &mint(&|c| c["nbf"] = json!(now + 600)),
            invalid_token("not_yet_valid"),
        ),
        row(
            "no iat",
            "no issued-at claim",
            &mint(&|c| {
                c.as_object_mut().expect("object").remove("iat");
            }),
            invalid_token("missing_issued_at"),
        ),
        // Audience.
        row(
            "aud Graph ID",
            "a Microsoft Graph token (aud 00000003-0000-0000-c000-000000000000)",
            &mint(&|c| c["aud"] = json!(graph)),
            invalid_token("invalid_audience"),
        ),
        row(
            "aud Graph URL",
            "a Microsoft Graph token (aud https://graph.microsoft.com)",
            &mint(&|c| c["aud"] = json!("https://graph.microsoft.com")),
            invalid_token("invalid_audience"),
        ),
        row(
            "aud another API",
            "a token for another API of the tenant",
            &mint(&|c| c["aud"] = json!("api://audit-api")),
            invalid_token("invalid_audience"),
        ),
        row(
            "no aud",
            "no audience claim",
            &mint(&|c| {
                c.as_object_mut().expect("object").remove("aud");
            }),
            invalid_token("invalid_audience"),
        ),
        // Issuer and tenant.
        row(
            "iss another host",
            "the tenant's path on another host",
            &mint(&|c| c["iss"] = json!(format!("https://login.evil.example/{TENANT}/v2.0"))),
            invalid_token("invalid_issuer"),
        ),
        row(
            "no iss",
            "no issuer claim",
            &mint(&|c| {
                c.as_object_mut().expect("object").remove("iss");
            }),
            invalid_token("invalid_issuer"),
        ),
        row(
            "v1 issuer on a v2 token",
            "ver 2.0 with the v1 issuer https://sts.windows.net/{tid}/",
            &mint(&|c| c["iss"] = json!(format!("https://sts.windows.net/{TENANT}/"))),
            invalid_token("invalid_issuer"),
        ),
        row(
            "v2 issuer on a v1 token",
            "ver 1.0 with the v2 issuer https://login.microsoftonline.com/{tid}/v2.0",
            &key.mint(now, |c| {
                *c = v1(c.clone());
                c["iss"] = json!(format!("https://login.microsoftonline.com/{TENANT}/v2.0"));
            }),
            invalid_token("invalid_issuer"),
        ),
        row(
            "foreign tenant",
            "another tenant's token, its own iss and tid, signed by the shared key",
            &mint(&|c| {
                c["tid"] = json!(other_tenant);
                c["iss"] = json!(format!("https://login.microsoftonline.com/{other_tenant}/v2.0"));
            }),
            invalid_token("invalid_tenant"),
        ),
        row(
            "key of another issuer",
            "signed by a published key whose JWKS issuer is another issuer's",
            &m.foreign_issuer.mint(now, |_| {}),
            invalid_token("signing_key_issuer_mismatch"),
        ),
        // Kind of token, client.
        row(
            "user token with idtyp",
            "a user-delegated token (idtyp user, scp, a user's oid)",
            &mint(&|c| {
                c["idtyp"] = json!("user");
                c["scp"] = json!("Tasks.Read");
                c["oid"] = json!(a_user);
                c["sub"] = json!("pairwise-subject");
            }),
            insufficient_scope("user_delegated_token"),
        ),
        row(
            "user token without idtyp",
            "a user-delegated token without the idtyp optional claim (scp, oid ≠ sub)",
            &mint(&|c| {
                c.as_object_mut().expect("object").remove("idtyp");
                c["scp"] = json!("Tasks.Read");
                c["oid"] = json!(a_user);
                c["sub"] = json!("pairwise-subject");
            }),
            insufficient_scope("user_delegated_token"),
        ),
        row(
            "app token with scp added",
            "an app token (idtyp app, oid = sub) with a scp claim added",
            &mint(&|c| c["scp"] = json!("Tasks.Read")),
            insufficient_scope("user_delegated_token"),
        ),
        row(
            "no idtyp, oid is not sub",
            "neither idtyp nor scp, and oid ≠ sub: not provably app-only",
            &mint(&|c| {
                c.as_object_mut().expect("object").remove("idtyp");
                c["sub"] = json!("someone-else");
            }),
            insufficient_scope("not_an_app_token"),
        ),
        row(
            "azp not allowed",
            "an app token of a client not on the allow-list (the stranger)",
            &mint(&|c| c["azp"] = json!(STRANGER_ID)),
            insufficient_scope("client_not_allowed"),
        ),
        row(
            "public client, azpacr 0",
            "a v2 token of a public client (azpacr 0)",
            &mint(&|c| c["azpacr"] = json!("0")),
            insufficient_scope("public_client"),
        ),
        row(
            "public client, appidacr 0",
            "a v1 token of a public client (appidacr 0)",
            &key.mint(now, |c| {
                *c = v1(c.clone());
                c["appidacr"] = json!("0");
            }),
            insufficient_scope("public_client"),
        ),
        row(
            "ID token",
            "an ID token of the reader's sign-in (aud the reader, nonce, no roles)",
            &key.mint(now, |c| {
                *c = without(c.clone(), &["idtyp", "roles", "azp", "azpacr"]);
                c["aud"] = json!(READER_ID);
                c["nonce"] = json!("n");
                c["oid"] = json!(a_user);
                c["sub"] = json!("pairwise-subject");
            }),
            invalid_token("invalid_audience"),
        ),
        row(
            "ID token for this API",
            "an ID token whose aud is this API's client ID (a sign-in to the API app itself)",
            &key.mint(now, |c| {
                *c = without(c.clone(), &["idtyp", "roles", "azp", "azpacr"]);
                c["nonce"] = json!("n");
                c["oid"] = json!(a_user);
                c["sub"] = json!("pairwise-subject");
            }),
            insufficient_scope("not_an_app_token"),
        ),
        // Roles and routes.
        row(
            "missing role",
            "a reader (Tasks.Read.All) creating a task",
            &mint(&|_| {}),
            insufficient_scope("missing_role"),
        )
        .on(Method::POST, "/api/tasks"),
        row(
            "role of another API",
            "roles [Audit.Read] only, listing tasks",
            &mint(&|c| c["roles"] = json!(["Audit.Read"])),
            insufficient_scope("missing_role"),
        )
        .on(Method::GET, "/api/tasks"),
        row(
            "no roles at all",
            "an app token without a roles claim, listing tasks",
            &mint(&|c| {
                c.as_object_mut().expect("object").remove("roles");
            }),
            insufficient_scope("missing_role"),
        )
        .on(Method::GET, "/api/tasks"),
        row(
            "percent-encoded route",
            "/api/%77hoami, a route spelled so a prefix match might miss it",
            &mint(&|_| {}),
            insufficient_scope("route_has_no_policy"),
        )
        .on(Method::GET, "/api/%77hoami"),
        row(
            "trailing slash",
            "/api/whoami/",
            &mint(&|_| {}),
            insufficient_scope("route_has_no_policy"),
        )
        .on(Method::GET, "/api/whoami/"),
        row(
            "unknown route",
            "a route that does not exist",
            &mint(&|_| {}),
            insufficient_scope("route_has_no_policy"),
        )
        .on(Method::GET, "/api/nope"),
        row(
            "method without a policy",
            "PUT on a route that declares GET and POST",
            &mint(&|_| {}),
            insufficient_scope("route_has_no_policy"),
        )
        .on(Method::PUT, "/api/tasks"),
        // Key retirement: the identity provider stopped publishing the key, the API refetched.
        row(
            "retired key",
            "a fresh token with a valid signature by a key the identity provider has retired",
            &m.retired.mint(now, |c| c["uti"] = json!("after-retirement")),
            invalid_token("unknown_signing_key"),
        )
        .after_retirement(),
        row(
            "retired key, cached",
            "a token of the retired key that was accepted (and cached) before the retirement",
            m.cached_retired,
            invalid_token("unknown_signing_key"),
        )
        .after_retirement(),
        // Control: the harness must see an acceptance when there is one.
        row(
            "control: valid app token",
            "a valid app token of an allowed confidential client, after everything above",
            &mint(&|_| {}),
            ACCEPTED,
        )
        .after_retirement(),
    ]
}

/// How many rows are attacks, and how many of those were let in.
fn tally(cases: &[Case], observed: &[Observed]) -> (usize, usize) {
    let attacks = cases.iter().filter(|c| !c.is_control()).count();
    let accepted = cases
        .iter()
        .zip(observed)
        .filter(|(c, o)| !c.is_control() && o.accepted())
        .count();
    (attacks, accepted)
}

/// Key-store rows that let in a request they should not have (a row expecting 200 is a check
/// that the last good keys still serve, not an attack let in).
fn key_store_let_in(scenarios: &[key_store::Scenario]) -> usize {
    scenarios
        .iter()
        .filter(|s| s.observed.accepted() && s.expect.status != 200)
        .count()
}

/// Where the table is committed: beside the API it describes.
const COMMITTED_TABLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../api-service/ATTACK-CORPUS.md"
);

fn markdown(cases: &[Case], observed: &[Observed], scenarios: &[key_store::Scenario]) -> String {
    let (attacks, accepted) = tally(cases, observed);
    let key_store_attacks = scenarios.len();
    let key_store_accepted = key_store_let_in(scenarios);
    let mut out = format!(
        "# Attack corpus\n\n\
         Generated by `tests/api/attack_corpus.rs`; do not edit by hand. Regenerate with\n\
         `ATTACK_CORPUS_MD=write cargo test -p mesh-tests --test api attack_corpus`\n\
         (the test fails while this file differs from the table it would write).\n\n\
         Every row is one request sent over HTTP to the real API (actix-web on port 0, wiremock as\n\
         the identity provider serving discovery and JWKS, a second wiremock as the attacker's key\n\
         server, which must receive no request). `status`, `error` (of `WWW-Authenticate`) and\n\
         `reason` (of the problem+json body) are what the row expects; `observed` is what came back,\n\
         as `status error reason` (`-` for none), marked ✗ where it differs.\n\n\
         **{attacks} token attacks, {accepted} accepted; {key_store_attacks} key-store attacks, {key_store_accepted} let in.**\n\
         The last token row is the control: a valid token, which must be accepted, so the harness\n\
         can tell the difference.\n\n\
         ## In the token\n\n\
         | # | case | attack | request | status | error | reason | observed |\n\
         |---|---|---|---|---|---|---|---|\n"
    );
    for (i, (case, got)) in cases.iter().zip(observed).enumerate() {
        out.push_str(&table_row(
            i + 1,
            case.name,
            case.attack,
            &case.request(),
            &case.expect,
            got,
        ));
    }
    out.push_str(
        "\n## From the identity provider's side\n\n\
         Each row arranges its own identity provider (two tenants, an HTTPS front, an answer that\n\
         changes between fetches) and API, makes the API refresh its keys where the attack is in\n\
         a later answer, then sends one request. A 200 here is the last good keys still serving.\n\n\
         | # | case | attack | request | status | error | reason | observed |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for (i, scenario) in scenarios.iter().enumerate() {
        out.push_str(&table_row(
            cases.len() + i + 1,
            scenario.name,
            scenario.attack,
            scenario.request,
            &scenario.expect,
            &scenario.observed,
        ));
    }
    out
}

fn table_row(
    number: usize,
    name: &str,
    attack: &str,
    request: &str,
    expect: &Expect,
    got: &Observed,
) -> String {
    let cell = |s: &str| s.replace('|', "\\|");
    let mark = if got.matches(expect) { "" } else { "✗ " };
    format!(
        "| {number} | {} | {} | `{request}` | {} | {} | {} | {mark}{} |\n",
        cell(name),
        cell(attack),
        expect.status,
        expect.error.map_or("—".to_owned(), |e| format!("`{e}`")),
        expect.reason.map_or("—".to_owned(), |r| format!("`{r}`")),
        cell(&got.to_string()),
    )
}

#[tokio::test]
async fn the_attack_corpus_is_refused_row_by_row() {
    let idp = TestIdp::start().await;
    idp.serve_discovery().await;
    let key = TestKey::generate("k1");
    let unpublished = TestKey::generate("k2");
    let mut foreign_issuer = TestKey::generate("k3");
    foreign_issuer.jwk["issuer"] = json!("https://login.evil.example/{tenantid}/v2.0");
    let retired = TestKey::generate("k-retired");
    let successor = TestKey::generate("k-successor");
    let evil = TestKey::generate("attacker");
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("EC key");
    let ec = EncodingKey::from_ec_pem(ec.serialize_pem().as_bytes()).expect("EC pem");

    // The attacker's key server: a validator that followed jku, x5u or a URL kid would show here.
    let attacker = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/keys"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "keys": [evil.jwk] })))
        .expect(0)
        .mount(&attacker)
        .await;
    Mock::given(method("GET"))
        .and(path("/cert.pem"))
        .respond_with(ResponseTemplate::new(200).set_body_string(evil.public_pem()))
        .expect(0)
        .mount(&attacker)
        .await;

    // Start-up load, plus exactly one refetch for all the unknown kids of the live rows together.
    idp.serve_jwks(&[&key, &foreign_issuer, &retired], 2).await;
    let clock = test_clock();
    let api = spawn_api(&idp, &clock).await;
    let now = clock.unix();

    // A token of the key to be retired, accepted (so cached) while the key is published.
    let cached_retired = retired.mint(now, |c| c["uti"] = json!("cached-before-retirement"));
    assert_eq!(
        api.get("/api/whoami", Some(&cached_retired)).await.status(),
        200
    );

    let cases = corpus(&Material {
        now,
        key: &key,
        unpublished: &unpublished,
        foreign_issuer: &foreign_issuer,
        retired: &retired,
        cached_retired: &cached_retired,
        evil: &evil,
        attacker_url: &attacker.uri(),
        ec: &ec,
    });

    let mut observed = Vec::with_capacity(cases.len());
    let mut phase = Phase::Live;
    for case in &cases {
        if case.phase != phase {
            assert_eq!(
                case.phase,
                Phase::AfterRetirement,
                "rows run in phase order"
            );
            phase = case.phase;
            // The identity provider rotates: the successor is published, the retired key dropped.
            // Past the 5-minute unknown-kid limit, the first token of the successor makes the API
            // refetch, as it would in production; from then on the retired key is unknown.
            TestIdp::on_jwks(TestIdp::publishing(&[&key, &foreign_issuer, &successor]))
                .with_priority(1)
                .expect(1)
                .mount(&idp.server)
                .await;
            clock.advance_secs(301);
            let rotated_in = successor.mint(now, |_| {});
            assert_eq!(
                api.get("/api/whoami", Some(&rotated_in)).await.status(),
                200,
                "the successor key is fetched on first sight"
            );
        }
        observed.push(send(&api, case).await);
    }

    let scenarios = key_store::scenarios().await;
    let table = markdown(&cases, &observed, &scenarios);
    let rewrite = match std::env::var("ATTACK_CORPUS_MD") {
        Ok(value) if value == "write" => true,
        Ok(value) => panic!("ATTACK_CORPUS_MD={value:?}: the only value is `write`"),
        Err(_) => false,
    };
    if rewrite {
        std::fs::write(COMMITTED_TABLE, &table).expect("writes api-service/ATTACK-CORPUS.md");
    }

    let failures: Vec<String> = cases
        .iter()
        .zip(&observed)
        .map(|(case, got)| (case.name, &case.expect, got))
        .chain(scenarios.iter().map(|s| (s.name, &s.expect, &s.observed)))
        .filter(|(_, expect, got)| !got.matches(expect))
        .map(|(name, expect, got)| format!("{name}: got {got}, want {expect:?}"))
        .chain(
            scenarios
                .iter()
                .flat_map(|s| s.violations.iter().map(move |v| format!("{}: {v}", s.name))),
        )
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} rows wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    let (attacks, accepted) = tally(&cases, &observed);
    assert!(attacks >= 40, "{attacks} attack rows");
    assert_eq!(attacks, 89, "the corpus's size changed: update this count");
    assert_eq!(accepted, 0, "attacks accepted");
    assert_eq!(
        scenarios.len(),
        6,
        "the key-store rows changed: update this count"
    );
    assert_eq!(key_store_let_in(&scenarios), 0, "key-store attacks let in");
    assert_eq!(cases.iter().filter(|c| c.is_control()).count(), 1);
    assert!(observed.last().is_some_and(Observed::accepted), "control");

    // The API's own count agrees: the two arrangement tokens and the control, nothing else.
    let metrics = api
        .get("/metrics", None)
        .await
        .text()
        .await
        .expect("metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l == "api_auth_outcomes_total{outcome=\"accepted\"} 3"),
        "{metrics}"
    );
    // Nothing a token said became a request: the identity provider saw only its documents.
    let idp_paths = [
        format!("/{TENANT}/v2.0/.well-known/openid-configuration"),
        format!("/{TENANT}/.well-known/openid-configuration"),
        TestIdp::jwks_path(),
    ];
    for request in idp.server.received_requests().await.expect("recorded") {
        assert!(
            idp_paths.iter().any(|p| p == request.url.path()),
            "the identity provider was asked for {}",
            request.url
        );
    }
    let fetched = attacker.received_requests().await.expect("recorded");
    assert!(
        fetched.is_empty(),
        "the attacker's server was asked: {fetched:?}"
    );

    if !rewrite {
        let committed = std::fs::read_to_string(COMMITTED_TABLE).unwrap_or_default();
        assert!(
            committed == table,
            "api-service/ATTACK-CORPUS.md is not the corpus's table; regenerate it with \
             ATTACK_CORPUS_MD=write cargo test -p mesh-tests --test api attack_corpus"
        );
    }
}

#[tokio::test]
async fn missing_role_names_the_roles_that_would_do() {
    let key = TestKey::generate("k1");
    let (_idp, clock, api) = spawn_api_publishing(&key, 1).await;
    let token = key.mint(clock.unix(), |_| {});
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
    let token = key.mint(clock.unix(), |c| {
        *c = v1(c.clone());
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
