//! Client assertions (certificate credentials): a JWT the client signs with its certificate's key
//! (RFC 7523). Checked as Entra does: algorithm, the registered certificate named by thumbprint,
//! signature, `iss` = `sub` = client ID, `aud` = the token endpoint, the time range, and `jti`
//! not reused while the assertion is valid.

use crate::aadsts::AadError;
use crate::directory::{Application, CertificateCredential};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use shared::jose::{self, Compact};
use std::collections::HashMap;
use std::sync::Mutex;

/// Clock skew tolerated on `nbf`/`exp`: five minutes, the tolerance Microsoft's own validators use.
pub(crate) const SKEW_SECS: i64 = 300;

/// An assertion may not claim to stay valid longer than this from now. MSAL signs for 10 minutes;
/// the cap also bounds how long a `jti` must be remembered, and so the replay cache's size.
const MAX_REMAINING_SECS: i64 = 3600;

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    x5t: Option<String>,
    #[serde(default, rename = "x5t#S256")]
    x5t_s256: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub(crate) fn values(&self) -> &[String] {
        match self {
            Audience::One(one) => std::slice::from_ref(one),
            Audience::Many(many) => many,
        }
    }
}

/// The claims of a client assertion, the client's own or a federated issuer's. MSAL for Python
/// writes `exp`/`iat` as floats (`1795246412.877`), so times are read as f64.
#[derive(Deserialize)]
pub(crate) struct AssertionClaims {
    #[serde(default)]
    pub iss: Option<String>,
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default)]
    pub aud: Option<Audience>,
    #[serde(default)]
    pub exp: Option<f64>,
    #[serde(default)]
    pub nbf: Option<f64>,
    #[serde(default)]
    pub iat: Option<f64>,
    #[serde(default)]
    pub jti: Option<String>,
}

/// An assertion's times as whole Unix seconds: `exp` (required), `nbf`, `iat`.
pub(crate) struct Times {
    pub exp: i64,
    pub nbf: Option<i64>,
    pub iat: Option<i64>,
}

impl AssertionClaims {
    /// Its times, each held to a real date (AADSTS50027 otherwise, and when `exp` is missing).
    pub(crate) fn times(&self) -> Result<Times, AadError> {
        let optional = |value: Option<f64>| match value {
            Some(v) => unix_seconds(v)
                .map(Some)
                .ok_or_else(AadError::assertion_malformed),
            None => Ok(None),
        };
        Ok(Times {
            exp: self
                .exp
                .and_then(unix_seconds)
                .ok_or_else(AadError::assertion_malformed)?,
            nbf: optional(self.nbf)?,
            iat: optional(self.iat)?,
        })
    }
}

/// `jti`s seen, with the time after which they may be forgotten (at most
/// `MAX_REMAINING_SECS + SKEW_SECS` ahead). Only clients holding a registered certificate key can
/// add entries, and each needs a fresh signature (~1 ms of the client's CPU), so the map holds at
/// most what such clients can sign in an hour. A std mutex: the lookup and insert are O(1) and
/// never await; the O(n) sweep of expired entries runs at most once a minute.
#[derive(Default)]
pub struct ReplayCache(Mutex<ReplayState>);

#[derive(Default)]
struct ReplayState {
    seen: HashMap<String, i64>,
    last_sweep: i64,
}

impl ReplayCache {
    /// Records `key`; false when it was already recorded and has not expired.
    fn first_use(&self, key: String, forget_after: i64, now: i64) -> bool {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if now - state.last_sweep >= 60 {
            state.seen.retain(|_, until| *until >= now);
            state.last_sweep = now;
        }
        let seen = &mut state.seen;
        match seen.get(&key) {
            Some(until) if *until >= now => false,
            _ => {
                seen.insert(key, forget_after);
                true
            }
        }
    }
}

pub fn verify(
    assertion: &str,
    client: &Application,
    audiences: &[String],
    now: i64,
    replay: &ReplayCache,
) -> Result<(), AadError> {
    let header = parse_header(assertion)?;
    let algorithm = match header.alg.as_str() {
        "RS256" => Algorithm::RS256,
        "PS256" => Algorithm::PS256,
        other => return Err(AadError::assertion_algorithm(other)),
    };
    let (credential, thumbprint) = find_certificate(client, &header)?;
    if credential.not_after.unix_timestamp() < now {
        return Err(AadError::assertion_certificate_expired(
            &client.client_id,
            &thumbprint,
        ));
    }

    // The signature first, then the claims, each part held to UTF-8 JSON whole (RFC 7519 §7.2;
    // a JSON parser reading from bytes skips the strings it does not keep unchecked).
    let key = DecodingKey::from_rsa_der(&credential.public_key_der);
    let jws = Compact::split(assertion).ok_or_else(AadError::assertion_malformed)?;
    match jsonwebtoken::crypto::verify(jws.signature, jws.signing_input.as_bytes(), &key, algorithm)
    {
        Ok(true) => {}
        Ok(false) => {
            tracing::debug!(client_id = %client.client_id, thumbprint, "assertion signature invalid");
            return Err(AadError::assertion_signature_invalid());
        }
        Err(e) => {
            tracing::debug!(client_id = %client.client_id, thumbprint, error = %e, "assertion rejected");
            return Err(AadError::assertion_malformed());
        }
    }
    let claims: AssertionClaims =
        jose::json_part(jws.payload).map_err(|_| AadError::assertion_malformed())?;

    let is_client = |v: &Option<String>| {
        v.as_deref()
            .is_some_and(|v| v.eq_ignore_ascii_case(&client.client_id))
    };
    if !is_client(&claims.iss) || !is_client(&claims.sub) {
        return Err(AadError::assertion_subject());
    }
    let aud_ok = claims.aud.as_ref().is_some_and(|aud| {
        aud.values()
            .iter()
            .any(|a| audiences.iter().any(|x| x.eq_ignore_ascii_case(a)))
    });
    if !aud_ok {
        return Err(AadError::assertion_audience());
    }
    let Times { exp, nbf, .. } = claims.times()?;
    if exp + SKEW_SECS < now
        || exp - now > MAX_REMAINING_SECS
        || nbf.is_some_and(|n| n - SKEW_SECS > now)
    {
        return Err(AadError::assertion_time_range(now, nbf, exp));
    }
    let jti = claims
        .jti
        .filter(|j| !j.is_empty())
        .ok_or_else(AadError::assertion_malformed)?;
    if !replay.first_use(format!("{}:{jti}", client.client_id), exp + SKEW_SECS, now) {
        return Err(AadError::assertion_replayed());
    }
    Ok(())
}

/// A JSON number as whole Unix seconds, if it is a time at all (years 1970–9999). Out-of-range
/// values are refused rather than saturated, so later arithmetic cannot overflow.
fn unix_seconds(value: f64) -> Option<i64> {
    (value.is_finite() && (0.0..253_402_300_800.0).contains(&value)).then_some(value as i64)
}

/// The header: UTF-8 JSON with unique member names (RFC 7515 §4), of a compact JWS.
fn parse_header(assertion: &str) -> Result<RawHeader, AadError> {
    let jws = Compact::split(assertion).ok_or_else(AadError::assertion_malformed)?;
    let header = jose::header_object(jws.header.trim_end_matches('='))
        .map_err(|_| AadError::assertion_malformed())?;
    serde_json::from_value(header.into()).map_err(|_| AadError::assertion_malformed())
}

/// The registered certificate the header names: `x5t#S256`, else `x5t`, else a `kid` holding
/// either thumbprint (base64url or hex, as older clients send it). MSAL pads its thumbprints
/// with `=`, so padding is ignored.
fn find_certificate<'a>(
    client: &'a Application,
    header: &RawHeader,
) -> Result<(&'a CertificateCredential, String), AadError> {
    let strip = |s: &str| s.trim_end_matches('=').to_owned();
    let named = header
        .x5t_s256
        .as_deref()
        .or(header.x5t.as_deref())
        .or(header.kid.as_deref())
        .map(strip)
        .unwrap_or_default();
    let hex_as_b64 = hex_to_b64url(&named);
    let found = client.certificates.iter().find(|c| {
        [Some(&named), hex_as_b64.as_ref()]
            .into_iter()
            .flatten()
            .any(|t| *t == c.x5t_s256 || *t == c.x5t)
    });
    found
        .map(|c| (c, named.clone()))
        .ok_or_else(|| AadError::assertion_key_not_found(&client.client_id, &named))
}

fn hex_to_b64url(hex: &str) -> Option<String> {
    if !hex.len().is_multiple_of(2) || !hex.chars().all(|c| c.is_ascii_hexdigit()) || hex.is_empty()
    {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect();
    bytes.map(|b| URL_SAFE_NO_PAD.encode(b))
}
