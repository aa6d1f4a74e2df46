//! Authorization codes (RFC 6749 §4.1 with PKCE, RFC 7636): bound to the client, the redirect URI
//! and the S256 code challenge; single use; short-lived. A redeemed code is remembered until it
//! would have expired, so a second redemption is told apart (AADSTS54005) from an unknown code.

use crate::aadsts::AadError;
use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Clone)]
pub struct PendingCode {
    pub tenant_id: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub resource_client_id: String,
    pub resource_requested_as: String,
    pub scopes: Vec<String>,
    pub username: String,
    pub nonce: Option<String>,
    pub want_id_token: bool,
    pub expires_at: i64,
}

enum Entry {
    Pending(Box<PendingCode>),
    Redeemed { until: i64 },
}

/// At most this many codes (pending or remembered as redeemed) are held. `/authorize` needs no
/// credential, so without a cap anyone could grow the map; past it, sign-ins get a 503 until
/// codes expire (10 minutes at most).
const MAX_CODES: usize = 10_000;

/// Expired entries are swept only once the map is this large, so a quiet emulator never scans.
const SWEEP_ABOVE: usize = 1_024;

/// A plain mutex: no await inside, and every operation but the occasional sweep is O(1). The
/// sweep is O(n) with n ≤ MAX_CODES, and runs only above SWEEP_ABOVE entries.
#[derive(Default)]
pub struct CodeStore(Mutex<HashMap<String, Entry>>);

pub struct Redemption<'a> {
    pub tenant_id: &'a str,
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub code_verifier: &'a str,
}

impl CodeStore {
    pub fn issue(&self, pending: PendingCode, now: i64) -> Result<String, AadError> {
        let mut bytes = [0u8; 32];
        rand::rng().fill(&mut bytes);
        let code = URL_SAFE_NO_PAD.encode(bytes);
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= SWEEP_ABOVE {
            map.retain(|_, e| match e {
                Entry::Pending(p) => p.expires_at > now,
                Entry::Redeemed { until } => *until > now,
            });
        }
        if map.len() >= MAX_CODES {
            return Err(AadError::temporarily_unavailable());
        }
        map.insert(code.clone(), Entry::Pending(Box::new(pending)));
        Ok(code)
    }

    /// Redeems `code` once. Any failure after the code is found still consumes it, as RFC 6749
    /// §4.1.2 asks: a code that leaked together with a wrong verifier must not be retried.
    pub fn redeem(
        &self,
        code: &str,
        r: &Redemption<'_>,
        now: i64,
    ) -> Result<PendingCode, AadError> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let pending = match map.get(code) {
            None => return Err(AadError::code_invalid()),
            Some(Entry::Redeemed { until }) if *until > now => {
                return Err(AadError::code_redeemed());
            }
            Some(Entry::Redeemed { .. }) => return Err(AadError::code_invalid()),
            Some(Entry::Pending(p)) => p.as_ref().clone(),
        };
        map.insert(
            code.to_owned(),
            Entry::Redeemed {
                until: pending.expires_at,
            },
        );
        drop(map);
        // A code is redeemable only at the tenant that issued it.
        if pending.expires_at <= now || !pending.tenant_id.eq_ignore_ascii_case(r.tenant_id) {
            return Err(AadError::code_invalid());
        }
        if !pending.client_id.eq_ignore_ascii_case(r.client_id) {
            return Err(AadError::code_mismatch("client_id"));
        }
        if pending.redirect_uri != r.redirect_uri {
            return Err(AadError::code_mismatch("redirect_uri"));
        }
        if s256(r.code_verifier) != pending.code_challenge {
            return Err(AadError::pkce_mismatch());
        }
        Ok(pending)
    }
}

/// `BASE64URL(SHA256(ASCII(code_verifier)))`, RFC 7636 §4.2.
pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_vector() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    fn pending(now: i64) -> PendingCode {
        PendingCode {
            tenant_id: "t".into(),
            client_id: "c".into(),
            redirect_uri: "http://localhost/cb".into(),
            code_challenge: s256("verifier-verifier-verifier-verifier-verifier"),
            resource_client_id: "r".into(),
            resource_requested_as: "api://r".into(),
            scopes: vec!["Read".into()],
            username: "u@x".into(),
            nonce: None,
            want_id_token: false,
            expires_at: now + 600,
        }
    }

    #[test]
    fn single_use_and_bound_to_verifier() {
        let store = CodeStore::default();
        let ok = Redemption {
            tenant_id: "t",
            client_id: "c",
            redirect_uri: "http://localhost/cb",
            code_verifier: "verifier-verifier-verifier-verifier-verifier",
        };
        let code = store.issue(pending(0), 0).expect("issued");
        let other_tenant = Redemption {
            tenant_id: "other",
            ..ok
        };
        assert_eq!(
            store
                .redeem(&code, &other_tenant, 1)
                .expect_err("wrong tenant")
                .code,
            70008
        );

        let code = store.issue(pending(0), 0).expect("issued");
        assert!(store.redeem(&code, &ok, 1).is_ok());
        assert_eq!(store.redeem(&code, &ok, 2).expect_err("reused").code, 54005);

        let code = store.issue(pending(0), 0).expect("issued");
        let bad = Redemption {
            code_verifier: "wrong",
            ..ok
        };
        assert_eq!(
            store.redeem(&code, &bad, 1).expect_err("bad verifier").code,
            501481
        );

        let code = store.issue(pending(0), 0).expect("issued");
        assert_eq!(
            store.redeem(&code, &ok, 601).expect_err("expired").code,
            70008
        );
        assert_eq!(
            store.redeem("nope", &ok, 1).expect_err("unknown").code,
            70008
        );
    }

    #[test]
    fn the_store_is_bounded() {
        let store = CodeStore::default();
        for _ in 0..MAX_CODES {
            store.issue(pending(0), 0).expect("room");
        }
        assert_eq!(store.issue(pending(0), 0).expect_err("full").code, 90033);
        // Once the codes have expired, the sweep makes room again.
        assert!(store.issue(pending(600), 601).is_ok());
    }
}
