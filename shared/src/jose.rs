//! Reading the parts of a compact JWS as RFC 7515 and RFC 7519 require: each part is canonical
//! base64url of UTF-8 JSON. `serde_json::from_slice` checks UTF-8 only in the strings it keeps, so
//! a claim nobody reads could carry any bytes; every part is therefore held to UTF-8 whole before
//! it is parsed. Used by every verifier of the mesh: the API's access tokens and the emulator's
//! client assertions.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{DeserializeOwned, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// Why a part could not be read. Deliberately without detail: the parts are attacker-chosen, and
/// the callers answer with one reason for all of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not base64url of UTF-8 JSON of the expected shape")]
pub struct Malformed;

/// The base64url (unpadded) `part`, decoded, held to UTF-8, then parsed as `T`.
pub fn json_part<T: DeserializeOwned>(part: &str) -> Result<T, Malformed> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| Malformed)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| Malformed)?;
    // serde_json refuses nesting deeper than 128, so a "JSON bomb" fails here, cheaply.
    serde_json::from_str(text).map_err(|_| Malformed)
}

/// A JOSE header: a JSON object whose member names are unique (RFC 7515 §4: a parser must reject
/// duplicates or take the last; a header `alg` spelled twice would otherwise mean one thing here
/// and another to the next parser that reads it, so duplicates are refused).
pub fn header_object(part: &str) -> Result<Map<String, Value>, Malformed> {
    json_part::<UniqueObject>(part).map(|object| object.0)
}

/// A JSON object that refuses a member name it has already seen.
struct UniqueObject(Map<String, Value>);

impl<'de> serde::Deserialize<'de> for UniqueObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = UniqueObject;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object with unique member names")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<UniqueObject, A::Error> {
                let mut map = Map::new();
                while let Some((name, value)) = access.next_entry::<String, Value>()? {
                    if map.insert(name, value).is_some() {
                        return Err(serde::de::Error::custom("duplicate member name"));
                    }
                }
                Ok(UniqueObject(map))
            }
        }
        deserializer.deserialize_map(Members)
    }
}

/// A compact JWS split at its two dots: what the signature covers (`header.payload`), and the
/// three parts. `None` unless there are exactly three parts.
pub struct Compact<'a> {
    pub signing_input: &'a str,
    pub header: &'a str,
    pub payload: &'a str,
    pub signature: &'a str,
}

impl<'a> Compact<'a> {
    pub fn split(token: &'a str) -> Option<Self> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        Some(Self {
            signing_input: &token[..header.len() + 1 + payload.len()],
            header,
            payload,
            signature,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn invalid_utf8_anywhere_is_malformed_even_in_a_member_nobody_reads() {
        #[derive(serde::Deserialize)]
        struct OnlyAud {
            #[allow(dead_code)]
            aud: String,
        }
        let mut bytes = br#"{"aud":"x","note":"a"#.to_vec();
        bytes.extend_from_slice(&[0xff, 0xfe, b'"', b'}']);
        // What serde_json alone lets through, and why this module exists.
        assert!(serde_json::from_slice::<OnlyAud>(&bytes).is_ok());
        assert_eq!(json_part::<OnlyAud>(&b64(&bytes)).err(), Some(Malformed));
        assert!(json_part::<OnlyAud>(&b64(br#"{"aud":"x","note":"ok"}"#)).is_ok());
    }

    #[test]
    fn header_member_names_are_unique() {
        let twice = b64(br#"{"alg":"none","alg":"RS256"}"#);
        assert_eq!(header_object(&twice).err(), Some(Malformed));
        let once = header_object(&b64(br#"{"alg":"RS256","kid":"k"}"#)).expect("unique");
        assert_eq!(once["kid"], "k");
        assert_eq!(header_object(&b64(b"[1]")).err(), Some(Malformed));
        assert_eq!(header_object("not base64!").err(), Some(Malformed));
    }

    #[test]
    fn compact_splits_at_exactly_two_dots() {
        let jws = Compact::split("aGVhZA.cGF5.c2ln").expect("three parts");
        assert_eq!(jws.signing_input, "aGVhZA.cGF5");
        assert_eq!(
            (jws.header, jws.payload, jws.signature),
            ("aGVhZA", "cGF5", "c2ln")
        );
        for bad in ["a.b", "a.b.c.d", "abc", "a.b.c.d.e"] {
            assert!(Compact::split(bad).is_none(), "{bad}");
        }
    }
}
