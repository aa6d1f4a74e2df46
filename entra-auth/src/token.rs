//! Step 1 of validation: the `Authorization` header and the token's shape, before any key lookup
//! or signature check. Entra signs access tokens with RS256 and names the key with `kid`; anything
//! else is refused here, so no later step can be talked into another algorithm (`none`, HS256
//! keyed with the public key) or into fetching a key the token itself points at.

use super::error::{AuthError, Reason};
use serde_json::Value;
use shared::jose::{self, Compact};

/// Entra's `kid` is a base64url SHA-1 thumbprint (27 characters). 128 leaves room for other
/// issuers' formats while keeping a hostile header from becoming a large map key or log field.
pub const MAX_KID_LEN: usize = 128;

/// Header members that embed or point at a key. Keys come only from the tenant's published JWKS.
const KEY_REFERENCES: [&str; 4] = ["jku", "x5u", "jwk", "x5c"];

/// A token that passed the cheap checks: three base64url parts, an RS256 header with a usable
/// `kid`, nothing that names a key elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreParsed<'a> {
    pub token: &'a str,
    pub kid: String,
    /// `header.payload`, what the signature covers.
    pub signing_input: &'a str,
    /// The payload part, base64url (canonical, not decoded yet).
    pub payload: &'a str,
    /// The signature part, base64url (canonical).
    pub signature: &'a str,
}

/// Checks the `Authorization` header value (if any) and the token it carries.
pub fn preparse(
    authorization: Option<&str>,
    max_token_bytes: usize,
) -> Result<PreParsed<'_>, AuthError> {
    check_jws(bearer(authorization, max_token_bytes)?)
}

/// The token of an `Authorization: Bearer` header value, within the size cap: the only checks a
/// token the validator has already verified (the very same bytes) needs again. Whitespace inside
/// the token is left to [`check_jws`]: a verified token has none, so only a token not seen before
/// pays for the scan.
pub fn bearer(authorization: Option<&str>, max_token_bytes: usize) -> Result<&str, AuthError> {
    let value = authorization.ok_or_else(|| AuthError::new(Reason::MissingToken))?;
    let token = bearer_token(value)?;
    if token.len() > max_token_bytes {
        // The malformed header outranks the size, as when every check ran here.
        return Err(AuthError::new(if has_whitespace(token) {
            Reason::MalformedAuthorizationHeader
        } else {
            Reason::TokenTooLarge
        }));
    }
    Ok(token)
}

/// The JWS shape and header checks, for a token not seen before (what [`bearer`] returned).
pub fn check_jws(token: &str) -> Result<PreParsed<'_>, AuthError> {
    if has_whitespace(token) {
        return Err(AuthError::new(Reason::MalformedAuthorizationHeader));
    }
    // Two dots or bust: a JWE has four, a bare JSON blob none.
    let jws = Compact::split(token).ok_or_else(|| AuthError::new(Reason::NotAJws))?;
    // UTF-8 JSON with unique member names (RFC 7515 §4).
    let header =
        jose::header_object(jws.header).map_err(|_| AuthError::new(Reason::MalformedToken))?;
    match header.get("alg") {
        Some(Value::String(alg)) if alg == "RS256" => {}
        _ => return Err(AuthError::new(Reason::UnsupportedAlgorithm)),
    }
    if header.contains_key("crit") {
        return Err(AuthError::new(Reason::CriticalHeader));
    }
    if KEY_REFERENCES.iter().any(|k| header.contains_key(*k)) {
        return Err(AuthError::new(Reason::HeaderKeyReference));
    }
    let kid = match header.get("kid") {
        None => return Err(AuthError::new(Reason::MissingKeyId)),
        Some(Value::String(kid)) if valid_kid(kid) => kid.clone(),
        Some(_) => return Err(AuthError::new(Reason::InvalidKeyId)),
    };
    if jws.payload.is_empty() || !is_base64url(jws.payload) {
        return Err(AuthError::new(Reason::MalformedToken));
    }
    if jws.signature.is_empty() || !is_base64url(jws.signature) {
        return Err(AuthError::new(Reason::InvalidSignature));
    }
    Ok(PreParsed {
        token,
        kid,
        signing_input: jws.signing_input,
        payload: jws.payload,
        signature: jws.signature,
    })
}

/// `Bearer <token>`: the scheme is case-insensitive (RFC 7235 §2.1), one space, a non-empty token.
fn bearer_token(value: &str) -> Result<&str, AuthError> {
    let malformed = || AuthError::new(Reason::MalformedAuthorizationHeader);
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    // Another scheme (Basic, Negotiate…) carries no bearer credentials at all: RFC 6750 §3.1
    // answers that with a bare challenge, like a missing header.
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::new(Reason::MissingToken));
    }
    if token.is_empty() {
        return Err(malformed());
    }
    Ok(token)
}

/// The token of a header value `Bearer <token>` within the size cap, as bytes, for looking it up
/// among tokens already verified: nothing else is judged, so `None` only means "not one of
/// those", never a refusal ([`bearer`] gives the reasons).
pub fn bearer_bytes(value: &[u8], max_token_bytes: usize) -> Option<&[u8]> {
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, token) = (&value[..space], &value[space + 1..]);
    (scheme.eq_ignore_ascii_case(b"bearer") && !token.is_empty() && token.len() <= max_token_bytes)
        .then_some(token)
}

/// A header value as text, judged exactly as `HeaderValue::to_str` judges it (visible ASCII,
/// space and tab; anything else is a malformed `Authorization` header) but in one branch-free
/// pass the compiler vectorises, without its byte-at-a-time loop with an early exit: a 1-2 KiB
/// bearer token crosses it (`to_str` was 7% of the tasks API's CPU under load).
pub fn header_text(bytes: &[u8]) -> Result<&str, AuthError> {
    let visible = bytes.iter().fold(true, |all, &b| {
        all & ((0x20..0x7f).contains(&b) | (b == b'\t'))
    });
    // All ASCII by now, so the UTF-8 check takes its word-at-a-time ASCII path and cannot fail.
    visible
        .then(|| std::str::from_utf8(bytes).ok())
        .flatten()
        .ok_or_else(|| AuthError::new(Reason::MalformedAuthorizationHeader))
}

/// A header value actix hands over as `&str` is visible ASCII, space and tab: those two are the
/// only whitespace a token can carry.
fn has_whitespace(token: &str) -> bool {
    token.as_bytes().contains(&b' ') || token.as_bytes().contains(&b'\t')
}

fn valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= MAX_KID_LEN
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'=' | b'.'))
}

/// Canonical unpadded base64url (RFC 7515 §2), judged without decoding: the alphabet, no length
/// that leaves a lone character, and zero bits where the last character carries none. Exactly what
/// the decoder behind the signature check accepts, so no malformed part reaches a key lookup.
fn is_base64url(part: &str) -> bool {
    let bytes = part.as_bytes();
    let alphabet = bytes
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    alphabet
        && match (bytes.len() % 4, bytes.last()) {
            (1, _) => false,
            (2, Some(&last)) => sextet(last) & 0b1111 == 0,
            (3, Some(&last)) => sextet(last) & 0b11 == 0,
            _ => true,
        }
}

/// The value of a base64url character (the alphabet already checked).
fn sextet(c: u8) -> u8 {
    match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        _ => 63,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    const CAP: usize = 16 * 1024;

    fn b64(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    fn token_with_header(header: &str) -> String {
        format!("Bearer {}.{}.c2ln", b64(header), b64(r#"{"aud":"x"}"#))
    }

    fn reason(authorization: Option<&str>) -> Reason {
        preparse(authorization, CAP).expect_err("refused").reason
    }

    #[test]
    fn a_well_formed_rs256_token_passes_with_its_kid() {
        let value =
            token_with_header(r#"{"typ":"JWT","alg":"RS256","kid":"grsaHj2eK2CamxsxXDlDN3OKKqA"}"#);
        let parsed = preparse(Some(&value), CAP).expect("accepted");
        assert_eq!(parsed.kid, "grsaHj2eK2CamxsxXDlDN3OKKqA");
        assert_eq!(parsed.token, value.trim_start_matches("Bearer "));
        assert_eq!(parsed.signature, "c2ln");
        assert_eq!(
            format!("{}.{}", parsed.signing_input, parsed.signature),
            parsed.token
        );
        assert!(parsed.signing_input.ends_with(parsed.payload));
    }

    #[test]
    fn the_authorization_header_must_be_bearer() {
        assert_eq!(reason(None), Reason::MissingToken);
        for other_scheme in ["Basic abc", "Bearertoken", "Negotiate"] {
            assert_eq!(
                reason(Some(other_scheme)),
                Reason::MissingToken,
                "{other_scheme}"
            );
        }
        for bad in ["Bearer", "Bearer ", "Bearer a b", "Bearer a\tb"] {
            assert_eq!(
                reason(Some(bad)),
                Reason::MalformedAuthorizationHeader,
                "{bad}"
            );
        }
        let lower =
            token_with_header(r#"{"alg":"RS256","kid":"k"}"#).replacen("Bearer", "bearer", 1);
        assert!(
            preparse(Some(&lower), CAP).is_ok(),
            "the scheme is case-insensitive"
        );
    }

    #[test]
    fn size_and_shape() {
        let huge = format!("Bearer {}", "a".repeat(CAP + 1));
        assert_eq!(reason(Some(&huge)), Reason::TokenTooLarge);
        assert_eq!(reason(Some("Bearer abc.def")), Reason::NotAJws);
        assert_eq!(reason(Some("Bearer a.b.c.d.e")), Reason::NotAJws, "JWE");
        assert_eq!(reason(Some("Bearer !!!.b.c")), Reason::MalformedToken);
        assert_eq!(
            reason(Some(&format!("Bearer {}.b.c", b64("[1,2]")))),
            Reason::MalformedToken
        );
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(
            reason(Some(&format!("Bearer {}.b.c", b64(&deep)))),
            Reason::MalformedToken
        );
    }

    #[test]
    fn only_rs256_in_any_spelling() {
        for alg in [
            r#""none""#,
            r#""None""#,
            r#""NONE""#,
            r#""nOnE""#,
            r#""HS256""#,
            r#""RS384""#,
            r#""PS256""#,
            r#""ES256""#,
            r#""rs256""#,
            "null",
            "256",
            r#"["RS256"]"#,
        ] {
            let value = token_with_header(&format!(r#"{{"alg":{alg},"kid":"k"}}"#));
            assert_eq!(reason(Some(&value)), Reason::UnsupportedAlgorithm, "{alg}");
        }
        assert_eq!(
            reason(Some(&token_with_header(r#"{"kid":"k"}"#))),
            Reason::UnsupportedAlgorithm
        );
    }

    #[test]
    fn kid_is_required_and_bounded() {
        assert_eq!(
            reason(Some(&token_with_header(r#"{"alg":"RS256"}"#))),
            Reason::MissingKeyId
        );
        let long = "k".repeat(MAX_KID_LEN + 1);
        for kid in [
            r#""""#.to_owned(),
            format!(r#""{long}""#),
            r#""../../etc/passwd""#.to_owned(),
            "42".to_owned(),
            r#""a b""#.to_owned(),
        ] {
            let value = token_with_header(&format!(r#"{{"alg":"RS256","kid":{kid}}}"#));
            assert_eq!(reason(Some(&value)), Reason::InvalidKeyId, "{kid}");
        }
    }

    #[test]
    fn duplicate_header_members_and_invalid_utf8_are_malformed() {
        let twice = token_with_header(r#"{"alg":"none","alg":"RS256","kid":"k"}"#);
        assert_eq!(reason(Some(&twice)), Reason::MalformedToken);
        let mut header = br#"{"alg":"RS256","kid":"k","x":""#.to_vec();
        header.extend_from_slice(&[0xc3, 0x28, b'"', b'}']);
        let value = format!(
            "Bearer {}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(&header),
            b64(r#"{"aud":"x"}"#)
        );
        assert_eq!(reason(Some(&value)), Reason::MalformedToken);
    }

    #[test]
    fn crit_and_key_references_are_refused() {
        let crit = token_with_header(r#"{"alg":"RS256","kid":"k","crit":["exp"]}"#);
        assert_eq!(reason(Some(&crit)), Reason::CriticalHeader);
        for member in ["jku", "x5u", "jwk", "x5c"] {
            let value = token_with_header(&format!(
                r#"{{"alg":"RS256","kid":"k","{member}":"https://attacker.example/keys"}}"#
            ));
            assert_eq!(reason(Some(&value)), Reason::HeaderKeyReference, "{member}");
        }
    }

    #[test]
    fn payload_and_signature_must_be_canonical_base64url() {
        // Found by the `preparse` fuzz target: a 237-character payload (a lone trailing
        // character, no bytes) passed, to fail only after the key lookup and the RSA check.
        let header = b64(r#"{"alg":"RS256","kid":"k"}"#);
        for payload in ["eyJ9a", "a", "ab", "abd", "e30="] {
            assert_eq!(
                reason(Some(&format!("Bearer {header}.{payload}.c2ln"))),
                Reason::MalformedToken,
                "{payload}"
            );
        }
        for signature in ["c2lnb", "c2lnaX", "c2lnaXf", "c2ln+w"] {
            assert_eq!(
                reason(Some(&format!("Bearer {header}.e30.{signature}"))),
                Reason::InvalidSignature,
                "{signature}"
            );
        }
        for (payload, signature) in [("e30", "aQ"), ("eyJhIjoxfQ", "aXc"), ("e30", "-_-_")] {
            let value = format!("Bearer {header}.{payload}.{signature}");
            assert!(preparse(Some(&value), CAP).is_ok(), "{value}");
        }
    }

    #[test]
    fn empty_payload_or_signature() {
        let header = b64(r#"{"alg":"RS256","kid":"k"}"#);
        assert_eq!(
            reason(Some(&format!("Bearer {header}..c2ln"))),
            Reason::MalformedToken
        );
        assert_eq!(
            reason(Some(&format!("Bearer {header}.{}.", b64("{}")))),
            Reason::InvalidSignature
        );
    }
}
