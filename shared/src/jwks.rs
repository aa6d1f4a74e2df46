//! Fetching an identity provider's OpenID discovery documents and JWKS without trusting the
//! network or the answer: HTTPS only (plain HTTP only to a loopback test server, and only when a
//! setting named for the risk allows it), every URL a discovery document names held to the same
//! rule, and bounded answers (body size and number of keys), so a hostile or broken endpoint can
//! neither hand over keys in clear text nor make the fetcher hold megabytes.
//!
//! Used wherever keys are fetched: today the API's key store; the emulator's check of a federated
//! credential's external issuer is to use the same rules.

use serde::Deserialize;
use serde::de::{Deserializer, SeqAccess, Visitor};
use std::fmt;

/// Largest discovery document accepted. Entra's are under 3 KiB (v1 ≈ 2.5 KiB, v2 ≈ 1.7 KiB);
/// 64 KiB is twenty times that.
pub const MAX_DISCOVERY_BYTES: usize = 64 * 1024;
/// Largest JWKS accepted. Entra publishes a handful of keys (3 to 10 seen across rollovers), each
/// about 1.6 KiB with its `x5c` certificate, so ≈ 15 KiB; 256 KiB leaves more than ten times that.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Most keys one JWKS may hold. Entra's hold 3 to 10; 64 is six times the most seen, and bounds
/// how many RSA keys one answer can make the fetcher decode and keep.
pub const MAX_JWKS_KEYS: usize = 64;

/// Which URLs may be fetched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UrlPolicy {
    /// Plain `http://` to a loopback host (127.0.0.0/8, ::1, `localhost`), for test servers that
    /// cannot speak TLS. Default false. Anything that can read or change the traffic (any process
    /// on a shared host, any hop of a network) could otherwise serve its own keys; never for a
    /// host that is not loopback, whatever this says.
    pub allow_http_on_loopback: bool,
}

impl UrlPolicy {
    /// `url` parsed, if it may be fetched; otherwise why not, in a phrase.
    pub fn check(&self, url: &str) -> Result<url::Url, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("is not a URL: {e}"))?;
        match parsed.scheme() {
            "https" => Ok(parsed),
            "http" if self.allow_http_on_loopback && is_loopback(&parsed) => Ok(parsed),
            "http" if self.allow_http_on_loopback => Err(
                "plain HTTP is allowed only to a loopback host (127.0.0.1, ::1, localhost)".into(),
            ),
            "http" => Err(
                "must be HTTPS: keys fetched over plain HTTP can be replaced by anyone on the way"
                    .into(),
            ),
            other => Err(format!("must be HTTPS, not `{other}:`")),
        }
    }

    /// A redirect policy that follows a hop (at most 5) only to a URL this policy allows, so no
    /// hop of a chain is made in clear text and none leads where `check` would refuse.
    pub fn redirects(self) -> reqwest::redirect::Policy {
        reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 5 {
                attempt.error("more than 5 redirects")
            } else if let Err(reason) = self.check(attempt.url().as_str()) {
                attempt.error(format!("redirected to a URL that {reason}"))
            } else {
                attempt.follow()
            }
        })
    }

    /// Every string member of a discovery document that is an `http(s)://` URL, checked: the
    /// `jwks_uri` is what matters most, but a document naming any endpoint in clear text is not
    /// one to take keys from.
    pub fn check_document(&self, document: &serde_json::Value) -> Result<(), String> {
        let Some(members) = document.as_object() else {
            return Err("is not a JSON object".into());
        };
        for (name, value) in members {
            if let Some(text) = value.as_str()
                && (text.starts_with("http://") || text.starts_with("https://"))
            {
                self.check(text)
                    .map_err(|reason| format!("`{name}` {reason}"))?;
            }
        }
        Ok(())
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL was refused, the request failed, or the answer was not a 2xx.
    #[error("{url}: {reason}")]
    Http { url: String, reason: String },
    /// The answer came, but is not a usable document.
    #[error("{url}: {reason}")]
    Document { url: String, reason: String },
}

/// `GET url`, its body read only up to `max_bytes`: a larger answer is refused as soon as it is
/// known to be larger (its `Content-Length`, or the bytes read so far), never buffered whole. The
/// final URL after any redirect is held to `policy` too (and every hop, with a client built with
/// [`UrlPolicy::redirects`]).
pub async fn get_bounded(
    client: &reqwest::Client,
    url: &str,
    policy: UrlPolicy,
    max_bytes: usize,
) -> Result<Vec<u8>, FetchError> {
    let http = |reason: String| FetchError::Http {
        url: url.to_owned(),
        reason,
    };
    let parsed = policy.check(url).map_err(http)?;
    let mut response = client
        .get(parsed)
        .send()
        .await
        .map_err(|e| http(e.to_string()))?;
    policy
        .check(response.url().as_str())
        .map_err(|reason| http(format!("redirected to {}, which {reason}", response.url())))?;
    if !response.status().is_success() {
        return Err(http(format!("HTTP {}", response.status())));
    }
    let too_large = || FetchError::Document {
        url: url.to_owned(),
        reason: format!("the answer is larger than {max_bytes} bytes"),
    };
    if response
        .content_length()
        .is_some_and(|n| n > max_bytes as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| http(e.to_string()))? {
        if body.len() + chunk.len() > max_bytes {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// One JWKS member, as published. Entra's carry `kty`, `use`, `kid`, `x5t`, `n`, `e`, `x5c` and,
/// in the v2 JWKS, `issuer`; no `alg`.
#[derive(Debug, Clone, Deserialize)]
pub struct Jwk {
    #[serde(default)]
    pub kty: String,
    #[serde(default, rename = "use")]
    pub use_: Option<String>,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub n: Option<String>,
    #[serde(default)]
    pub e: Option<String>,
    /// The issuer the key signs for, when published (Entra: the v2 issuer, maybe with the
    /// `{tenantid}` template).
    #[serde(default)]
    pub issuer: Option<String>,
}

impl Jwk {
    /// An RSA signing key with a `kid`: its `kid`, `n`, `e`. Other keys (EC, encryption, no
    /// `kid`) are not for RS256 signatures.
    pub fn rsa_signing(&self) -> Option<(&str, &str, &str)> {
        if self.kty != "RSA" || self.use_.as_deref().is_some_and(|u| u != "sig") {
            return None;
        }
        Some((self.kid.as_deref()?, self.n.as_deref()?, self.e.as_deref()?))
    }
}

/// The members of a JWKS document: at most [`MAX_JWKS_KEYS`] of them (a longer `keys` array is
/// refused while it is read, before the rest is held), valid UTF-8 JSON.
pub fn parse_jwks(body: &[u8]) -> Result<Vec<Jwk>, String> {
    #[derive(Deserialize)]
    struct Jwks {
        #[serde(deserialize_with = "bounded_keys")]
        keys: Vec<Jwk>,
    }
    let text = std::str::from_utf8(body).map_err(|e| format!("is not UTF-8: {e}"))?;
    serde_json::from_str::<Jwks>(text)
        .map(|jwks| jwks.keys)
        .map_err(|e| e.to_string())
}

fn bounded_keys<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Jwk>, D::Error> {
    struct Bounded;
    impl<'de> Visitor<'de> for Bounded {
        type Value = Vec<Jwk>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "an array of at most {MAX_JWKS_KEYS} keys")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut keys = Vec::new();
            while let Some(key) = seq.next_element::<Jwk>()? {
                if keys.len() == MAX_JWKS_KEYS {
                    return Err(serde::de::Error::custom(format!(
                        "more than {MAX_JWKS_KEYS} keys"
                    )));
                }
                keys.push(key);
            }
            Ok(keys)
        }
    }
    deserializer.deserialize_seq(Bounded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_always_http_only_to_loopback_and_only_when_allowed() {
        let strict = UrlPolicy::default();
        let loopback = UrlPolicy {
            allow_http_on_loopback: true,
        };
        assert!(strict.check("https://login.microsoftonline.com/t").is_ok());
        for url in ["http://127.0.0.1:8080/keys", "http://localhost/keys"] {
            assert!(strict.check(url).is_err(), "{url}");
            assert!(loopback.check(url).is_ok(), "{url}");
        }
        for url in [
            "http://login.microsoftonline.com/t",
            "http://10.0.0.1/keys",
            "http://localhost.evil.example/keys",
            "http://[::ffff:8.8.8.8]/keys",
        ] {
            assert!(loopback.check(url).is_err(), "{url}");
        }
        assert!(loopback.check("http://[::1]:9/keys").is_ok());
        assert!(strict.check("ftp://host/keys").is_err());
        assert!(strict.check("not a url").is_err());
    }

    #[test]
    fn a_document_naming_any_clear_text_url_is_refused() {
        let doc = serde_json::json!({
            "issuer": "https://login.microsoftonline.com/t/v2.0",
            "jwks_uri": "http://login.microsoftonline.com/t/discovery/v2.0/keys",
            "msgraph_host": "graph.microsoft.com",
        });
        let err = UrlPolicy::default()
            .check_document(&doc)
            .expect_err("refused");
        assert!(err.starts_with("`jwks_uri`"), "{err}");
        let fine =
            serde_json::json!({"jwks_uri": "https://h/k", "msgraph_host": "graph.microsoft.com"});
        assert!(UrlPolicy::default().check_document(&fine).is_ok());
    }

    #[test]
    fn jwks_documents_are_bounded_and_utf8() {
        let key = r#"{"kty":"RSA","use":"sig","kid":"k","n":"AQAB","e":"AQAB"}"#;
        let at_cap = format!(r#"{{"keys":[{}]}}"#, vec![key; MAX_JWKS_KEYS].join(","));
        assert_eq!(
            parse_jwks(at_cap.as_bytes()).expect("at the cap").len(),
            MAX_JWKS_KEYS
        );
        let over = format!(r#"{{"keys":[{}]}}"#, vec![key; MAX_JWKS_KEYS + 1].join(","));
        assert!(
            parse_jwks(over.as_bytes())
                .expect_err("over")
                .contains("more than")
        );
        let mut bad = br#"{"keys":[],"x":""#.to_vec();
        bad.extend_from_slice(&[0xff, b'"', b'}']);
        assert!(parse_jwks(&bad).expect_err("not UTF-8").contains("UTF-8"));
        let ec = r#"{"keys":[{"kty":"EC","use":"sig","kid":"e","crv":"P-256","x":"AA","y":"AA"}]}"#;
        let parsed = parse_jwks(ec.as_bytes()).expect("parses");
        assert!(
            parsed[0].rsa_signing().is_none(),
            "EC is not an RSA signing key"
        );
    }
}
