//! Step 3 of validation, after the signature: the registered claims, checked against what the
//! tenants' discovery documents say, never skipped when absent.

use super::error::{AuthError, Reason};
use super::keys::{KeyMap, TenantKeys};
use shared::claims::AccessTokenClaims;
use std::sync::Arc;

/// What one accepted tenant's discovery documents say about its tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantIssuers {
    /// `issuer` of `/{tenant}/v2.0/.well-known/openid-configuration`.
    pub v2: String,
    /// `issuer` of `/{tenant}/.well-known/openid-configuration` (`https://sts.windows.net/{tid}/`).
    pub v1: String,
}

#[derive(Clone, Copy)]
pub struct ClaimRules<'a> {
    /// Tenant ID (lower-case GUID) → its issuers and the keys it publishes. Only these tenants
    /// are accepted.
    pub tenants: &'a KeyMap<Arc<TenantKeys>>,
    /// The API's client ID and application ID URI(s): v2 tokens carry the former, v1 tokens
    /// whichever the client asked for.
    pub audiences: &'a [String],
    /// Tolerance on `exp`/`nbf`. Default 60 s: NTP keeps hosts far closer; Microsoft.Identity.Web's
    /// 300 s lets a stolen token live five more minutes.
    pub clock_skew_secs: i64,
    /// How old a tenant's keys may be and still vouch for its tokens (`keys.max_stale_secs`).
    pub max_stale_secs: i64,
}

/// The key that verified a token's signature: the `kid` it was published under and its material
/// ([`super::keys::PublishedKey::material`]).
#[derive(Debug, Clone, Copy)]
pub struct Signer<'a> {
    pub kid: &'a str,
    pub material: &'a [u8; 32],
}

/// Checks times, issuer, audience and tenant, then that the token's own tenant publishes the key
/// that signed it (and, when that publication carries a JWKS `issuer` member, that it names this
/// tenant's issuer).
pub fn check(
    claims: &AccessTokenClaims,
    signer: Signer,
    rules: &ClaimRules,
    now: i64,
) -> Result<(), AuthError> {
    let refuse = |reason| Err(AuthError::new(reason));
    if claims.exp.saturating_add(rules.clock_skew_secs) < now {
        return refuse(Reason::Expired);
    }
    if claims
        .nbf
        .is_some_and(|nbf| nbf.saturating_sub(rules.clock_skew_secs) > now)
    {
        return refuse(Reason::NotYetValid);
    }
    if claims.iat.is_none() {
        return refuse(Reason::MissingIssuedAt);
    }
    // The tenant first: the issuer is judged against the token's own tenant, so a token whose
    // `iss` names one accepted tenant and `tid` another is refused.
    let Some(tid) = claims.tid.as_deref() else {
        return refuse(Reason::InvalidTenant);
    };
    // Entra writes `tid` in lower case, as the map's keys are: the exact lookup needs no
    // allocation, and only an unusual spelling pays for lower-casing.
    let tenant = rules
        .tenants
        .get(tid)
        .or_else(|| rules.tenants.get(&tid.to_ascii_lowercase()));
    let Some(tenant) = tenant else {
        return refuse(Reason::InvalidTenant);
    };
    let issuers = &tenant.issuers;
    let expected_issuer = match claims.ver.as_str() {
        "2.0" => &issuers.v2,
        "1.0" => &issuers.v1,
        _ => return refuse(Reason::InvalidIssuer),
    };
    if claims.iss != *expected_issuer {
        return refuse(Reason::InvalidIssuer);
    }
    if !rules.audiences.iter().any(|a| a == &claims.aud) {
        return refuse(Reason::InvalidAudience);
    }
    // Another tenant's fresh keys must not vouch for a tenant whose own are past the bound.
    if now - tenant.fetched_at > rules.max_stale_secs {
        return refuse(Reason::KeysUnavailable);
    }
    // A key signs only for the tenants whose JWKS publish it: a key of one tenant (an app's
    // custom signing key, a v1 JWKS without `issuer` members) cannot vouch for another.
    let Some(publication) = tenant.publication(signer.kid, signer.material) else {
        return refuse(Reason::SigningKeyIssuerMismatch);
    };
    // Entra publishes each key's issuer in the v2 form, with `{tenantid}` on the common endpoint.
    // A key may sign only for its own tenant, whatever the token's version.
    if let Some(key_issuer) = publication.issuer.as_deref()
        && !issuer_matches(key_issuer, tid, &issuers.v2)
    {
        return refuse(Reason::SigningKeyIssuerMismatch);
    }
    Ok(())
}

/// `template` with `{tenantid}` replaced by `tid` equals `expected`, compared piecewise so the
/// per-request path builds no string.
fn issuer_matches(template: &str, tid: &str, expected: &str) -> bool {
    // A tenant's own JWKS names its issuer outright: one byte search settles that case, without
    // setting up a substring search on every request.
    let placeholder = match template.contains('{') {
        true => template.split_once("{tenantid}"),
        false => None,
    };
    match placeholder {
        None => template == expected,
        Some((before, after)) => expected
            .strip_prefix(before)
            .and_then(|rest| rest.strip_suffix(after))
            .is_some_and(|middle| middle == tid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::PublishedKey;
    use crate::keys::tests::{API, NOW, TID, issuers};

    fn v2() -> AccessTokenClaims {
        AccessTokenClaims {
            aud: API.into(),
            iss: format!("https://login.microsoftonline.com/{TID}/v2.0"),
            iat: Some(NOW - 300),
            nbf: Some(NOW - 300),
            exp: NOW + 3600,
            tid: Some(TID.into()),
            ver: "2.0".into(),
            ..Default::default()
        }
    }

    const MATERIAL: [u8; 32] = [7; 32];

    /// The test tenant, publishing key `k` with `key_issuer` as its JWKS `issuer` member.
    fn tenants(key_issuer: Option<&str>, fetched_at: i64) -> KeyMap<Arc<TenantKeys>> {
        issuers()
            .into_iter()
            .map(|(tid, issuers)| {
                let key = PublishedKey {
                    decoding: jsonwebtoken::DecodingKey::from_rsa_components("AQAB", "AQAB")
                        .expect("components"),
                    material: MATERIAL,
                    issuer: key_issuer.map(str::to_owned),
                };
                let keys = KeyMap::from_iter([("k".to_owned(), vec![Arc::new(key)])]);
                (
                    tid,
                    Arc::new(TenantKeys {
                        issuers,
                        keys,
                        fetched_at,
                    }),
                )
            })
            .collect()
    }

    fn judged(
        claims: &AccessTokenClaims,
        tenants: &KeyMap<Arc<TenantKeys>>,
        signer: Signer,
    ) -> Option<Reason> {
        let audiences = [API.to_owned(), "api://tasks-api".to_owned()];
        let rules = ClaimRules {
            tenants,
            audiences: &audiences,
            clock_skew_secs: 60,
            max_stale_secs: 86_400,
        };
        check(claims, signer, &rules, NOW).err().map(|e| e.reason)
    }

    fn reason(claims: &AccessTokenClaims, key_issuer: Option<&str>) -> Option<Reason> {
        let signer = Signer {
            kid: "k",
            material: &MATERIAL,
        };
        judged(claims, &tenants(key_issuer, NOW), signer)
    }

    #[test]
    fn a_good_v2_token_passes_with_or_without_a_key_issuer() {
        assert_eq!(reason(&v2(), None), None);
        assert_eq!(
            reason(
                &v2(),
                Some("https://login.microsoftonline.com/{tenantid}/v2.0")
            ),
            None
        );
        assert_eq!(
            reason(
                &v2(),
                Some(&format!("https://login.microsoftonline.com/{TID}/v2.0"))
            ),
            None
        );
    }

    #[test]
    fn v1_uses_its_own_issuer_and_may_carry_the_app_id_uri() {
        let mut claims = v2();
        claims.ver = "1.0".into();
        claims.iss = format!("https://sts.windows.net/{TID}/");
        claims.aud = "api://tasks-api".into();
        assert_eq!(
            reason(
                &claims,
                Some("https://login.microsoftonline.com/{tenantid}/v2.0")
            ),
            None
        );
        claims.iss = format!("https://login.microsoftonline.com/{TID}/v2.0");
        assert_eq!(
            reason(&claims, None),
            Some(Reason::InvalidIssuer),
            "v1/v2 issuers swapped"
        );
    }

    #[test]
    fn times_with_skew() {
        let mut claims = v2();
        claims.exp = NOW - 61;
        assert_eq!(reason(&claims, None), Some(Reason::Expired));
        claims.exp = NOW - 59;
        assert_eq!(reason(&claims, None), None, "within the skew");
        let mut claims = v2();
        claims.nbf = Some(NOW + 61);
        assert_eq!(reason(&claims, None), Some(Reason::NotYetValid));
        let mut claims = v2();
        claims.iat = None;
        assert_eq!(reason(&claims, None), Some(Reason::MissingIssuedAt));
        let mut claims = v2();
        claims.exp = i64::MIN;
        assert_eq!(reason(&claims, None), Some(Reason::Expired), "no overflow");
    }

    #[test]
    fn issuer_audience_and_tenant() {
        let mut claims = v2();
        claims.iss = "https://evil.example/v2.0".into();
        assert_eq!(reason(&claims, None), Some(Reason::InvalidIssuer));
        let mut claims = v2();
        claims.aud = "00000003-0000-0000-c000-000000000000".into();
        assert_eq!(
            reason(&claims, None),
            Some(Reason::InvalidAudience),
            "a Graph token"
        );
        let mut claims = v2();
        claims.tid = Some("99999999-9999-4999-8999-999999999999".into());
        assert_eq!(reason(&claims, None), Some(Reason::InvalidTenant));
        let mut claims = v2();
        claims.tid = None;
        assert_eq!(reason(&claims, None), Some(Reason::InvalidTenant));
        let mut claims = v2();
        claims.ver = "3.0".into();
        assert_eq!(reason(&claims, None), Some(Reason::InvalidIssuer));
    }

    #[test]
    fn a_key_of_another_tenant_cannot_sign_for_this_one() {
        let other = "https://login.microsoftonline.com/99999999-9999-4999-8999-999999999999/v2.0";
        assert_eq!(
            reason(&v2(), Some(other)),
            Some(Reason::SigningKeyIssuerMismatch)
        );
    }

    #[test]
    fn a_key_vouches_only_for_the_tenants_that_publish_it() {
        let unpublished = [8; 32];
        let signer = Signer {
            kid: "k",
            material: &unpublished,
        };
        assert_eq!(
            judged(&v2(), &tenants(None, NOW), signer),
            Some(Reason::SigningKeyIssuerMismatch),
            "the kid is published, but not this key"
        );
        let other_kid = Signer {
            kid: "other",
            material: &MATERIAL,
        };
        assert_eq!(
            judged(&v2(), &tenants(None, NOW), other_kid),
            Some(Reason::SigningKeyIssuerMismatch)
        );
    }

    #[test]
    fn a_tenant_past_the_stale_bound_vouches_for_nothing() {
        let signer = Signer {
            kid: "k",
            material: &MATERIAL,
        };
        assert_eq!(
            judged(&v2(), &tenants(None, NOW - 86_401), signer),
            Some(Reason::KeysUnavailable)
        );
        assert_eq!(judged(&v2(), &tenants(None, NOW - 86_400), signer), None);
    }
}
