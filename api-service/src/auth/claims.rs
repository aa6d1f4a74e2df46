//! Step 3 of validation, after the signature: the registered claims, checked against what the
//! tenants' discovery documents say, never skipped when absent.

use super::error::{AuthError, Reason};
use shared::claims::AccessTokenClaims;
use std::collections::HashMap;

/// What one accepted tenant's discovery documents say about its tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantIssuers {
    /// `issuer` of `/{tenant}/v2.0/.well-known/openid-configuration`.
    pub v2: String,
    /// `issuer` of `/{tenant}/.well-known/openid-configuration` (`https://sts.windows.net/{tid}/`).
    pub v1: String,
}

#[derive(Debug, Clone, Copy)]
pub struct ClaimRules<'a> {
    /// Tenant ID (lower-case GUID) → its issuers. Only these tenants are accepted.
    pub tenants: &'a HashMap<String, TenantIssuers>,
    /// The API's client ID and application ID URI(s): v2 tokens carry the former, v1 tokens
    /// whichever the client asked for.
    pub audiences: &'a [String],
    /// Tolerance on `exp`/`nbf`. Default 60 s: NTP keeps hosts far closer; Microsoft.Identity.Web's
    /// 300 s lets a stolen token live five more minutes.
    pub clock_skew_secs: i64,
}

/// Checks times, issuer, audience and tenant. `key_issuer` is the JWKS `issuer` member of the key
/// that verified the signature, when the JWKS publishes one.
pub fn check(
    claims: &AccessTokenClaims,
    key_issuer: Option<&str>,
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
    let issuers = rules
        .tenants
        .get(tid)
        .or_else(|| rules.tenants.get(&tid.to_ascii_lowercase()));
    let Some(issuers) = issuers else {
        return refuse(Reason::InvalidTenant);
    };
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
    // Entra publishes each key's issuer in the v2 form, with `{tenantid}` on the common endpoint.
    // A key may sign only for its own tenant, whatever the token's version.
    if let Some(key_issuer) = key_issuer
        && !issuer_matches(key_issuer, tid, &issuers.v2)
    {
        return refuse(Reason::SigningKeyIssuerMismatch);
    }
    Ok(())
}

/// `template` with `{tenantid}` replaced by `tid` equals `expected`, compared piecewise so the
/// per-request path builds no string.
fn issuer_matches(template: &str, tid: &str, expected: &str) -> bool {
    match template.split_once("{tenantid}") {
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
    use crate::auth::keys::tests::{API, NOW, TID, issuers};

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

    fn reason(claims: &AccessTokenClaims, key_issuer: Option<&str>) -> Option<Reason> {
        let (tenants, audiences) = (issuers(), [API.to_owned(), "api://tasks-api".to_owned()]);
        let rules = ClaimRules {
            tenants: &tenants,
            audiences: &audiences,
            clock_skew_secs: 60,
        };
        check(claims, key_issuer, &rules, NOW)
            .err()
            .map(|e| e.reason)
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
}
