//! Target `preparse`: arbitrary bytes as the `Authorization` header value, through the API's
//! bearer extraction and JWS pre-parse. It must never panic, and whatever it lets through must be
//! exactly what its documentation promises, checked here with an independent decoder: `Bearer`
//! (any case), one space, a token within the size cap with no whitespace, three parts that are
//! canonical unpadded base64url, and a JSON-object header with `alg` `RS256`, a well-formed `kid`
//! (the one returned) and no `crit`, `jku`, `x5u`, `jwk` or `x5c`.
//!
//! Shared by the fuzz target and the regression test in `api-service` (included by path), so the
//! committed inputs replay through the very same checks.

use entra_auth::token::{MAX_KID_LEN, preparse};

/// The size cap for this target: small enough that the fuzzer reaches `token_too_large`.
pub const MAX_TOKEN_BYTES: usize = 2048;

/// Runs one input; true when the pre-parse accepted it (and the oracle agreed).
pub fn check(data: &[u8]) -> bool {
    // A header value actix hands over is a `&str`; lossy conversion keeps every input useful.
    let value = String::from_utf8_lossy(data);
    let Ok(parsed) = preparse(Some(&value), MAX_TOKEN_BYTES) else {
        return false;
    };
    let (scheme, token) = value
        .split_once(' ')
        .expect("accepted: a scheme, a space, a token");
    assert!(scheme.eq_ignore_ascii_case("bearer"), "scheme {scheme:?}");
    assert_eq!(
        parsed.token, token,
        "the token is everything after the first space"
    );
    assert!(!token.is_empty() && token.len() <= MAX_TOKEN_BYTES);
    assert!(!token.contains([' ', '\t']), "whitespace in the token");

    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "three parts");
    let decoded: Vec<Vec<u8>> = parts
        .iter()
        .map(|part| {
            assert!(!part.is_empty(), "an empty part");
            base64url_decode(part).unwrap_or_else(|| panic!("not canonical base64url: {part:?}"))
        })
        .collect();

    let header: serde_json::Value = serde_json::from_slice(&decoded[0]).expect("a JSON header");
    let header = header.as_object().expect("a JSON object header");
    assert_eq!(header.get("alg").and_then(|a| a.as_str()), Some("RS256"));
    let kid = header.get("kid").and_then(|k| k.as_str()).expect("a kid");
    assert_eq!(parsed.kid, kid);
    assert!(
        !kid.is_empty() && kid.len() <= MAX_KID_LEN,
        "kid length {}",
        kid.len()
    );
    assert!(
        kid.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_=.".contains(&b)),
        "kid {kid:?}"
    );
    for member in ["crit", "jku", "x5u", "jwk", "x5c"] {
        assert!(!header.contains_key(member), "header carries {member}");
    }
    true
}

/// RFC 4648 §5 without padding, canonical (unused trailing bits zero), written here rather than
/// taken from the `base64` crate so the oracle does not share the code it judges.
pub fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = text.as_bytes();
    if bytes.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for &c in chunk {
            acc = (acc << 6) | value(c)?;
        }
        match chunk.len() {
            4 => out.extend_from_slice(&acc.to_be_bytes()[1..]),
            3 => {
                if acc & 0b11 != 0 {
                    return None;
                }
                out.extend_from_slice(&(acc >> 2).to_be_bytes()[2..]);
            }
            2 => {
                if acc & 0b1111 != 0 {
                    return None;
                }
                out.push((acc >> 4) as u8);
            }
            _ => return None,
        }
    }
    Some(out)
}
