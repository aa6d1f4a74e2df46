//! Step 4: the app-only policy. Only after the token is established as app-only is its client
//! (`azp`/`appid`) trusted for authorization (Microsoft's guidance for APIs), and every route
//! names the roles it needs; a route that names none is denied, never open.

use super::error::{AuthError, Reason};
use serde::Serialize;
use shared::claims::{AccessTokenClaims, ClientAuth, TokenKind, TokenVersion};
use std::collections::HashSet;
use std::sync::Arc;

/// The caller, as the rest of the API sees it after the policy has accepted it: a handle on the
/// [`CallerIdentity`] (its fields read through it, `caller.client_app_id`). A token found in the
/// validator's per-thread front cache is answered with a clone of the handle kept there, so in
/// the steady state accepting a request copies no claim and allocates nothing; any other
/// acceptance (a first sight, a hit in the shared cache) makes a new identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppCaller(Arc<CallerIdentity>);

/// Who is calling, from the claims of an accepted app-only token.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct CallerIdentity {
    pub client_app_id: String,
    pub tenant_id: String,
    pub object_id: Option<String>,
    pub roles: Vec<String>,
    pub version: TokenVersion,
    /// Entra's unique token id (`uti`), for correlating a call with the identity provider's logs.
    pub token_id: Option<String>,
}

impl std::ops::Deref for AppCaller {
    type Target = CallerIdentity;

    fn deref(&self) -> &CallerIdentity {
        &self.0
    }
}

impl From<CallerIdentity> for AppCaller {
    fn from(identity: CallerIdentity) -> Self {
        Self(Arc::new(identity))
    }
}

impl AppCaller {
    /// Whether both are handles on the very same identity: the same verification of a token,
    /// answered from one thread's front cache. Lets a user keep what it derives from a caller
    /// (header values, say) and reuse it while the token is in use, without comparing claims;
    /// `false` only costs deriving it again.
    pub fn same(a: &Self, b: &Self) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }

    /// Any one of `any_of` suffices. An empty list is a route without a policy: denied.
    pub fn require_any_role(&self, any_of: &[&str]) -> Result<(), AuthError> {
        let client = Some(self.client_app_id.as_str());
        if any_of.is_empty() {
            return Err(AuthError::new(Reason::RouteHasNoPolicy).for_client(client));
        }
        if self.roles.iter().any(|r| any_of.contains(&r.as_str())) {
            Ok(())
        } else {
            Err(AuthError::missing_role(any_of).for_client(client))
        }
    }
}

/// Accepts app-only tokens from allowed, confidential clients.
pub fn app_caller(
    claims: &AccessTokenClaims,
    allowed_clients: &HashSet<String>,
) -> Result<AppCaller, AuthError> {
    let refuse = |reason| AuthError::new(reason).for_client(claims.client_app_id());
    match claims.kind() {
        TokenKind::App => {}
        TokenKind::User => return Err(refuse(Reason::UserDelegatedToken)),
        TokenKind::Unknown => return Err(refuse(Reason::NotAnAppToken)),
    }
    let (Some(version), Some(client), Some(tenant)) = (
        claims.version(),
        claims.client_app_id(),
        claims.tid.as_deref(),
    ) else {
        return Err(refuse(Reason::NotAnAppToken));
    };
    match claims.client_auth() {
        Some(ClientAuth::Secret | ClientAuth::Certificate) => {}
        Some(ClientAuth::Public) | None => return Err(refuse(Reason::PublicClient)),
    }
    // The allow-list is stored lower-case and Entra writes GUIDs in lower case: look up as is,
    // and lower-case only an unusual spelling.
    if !allowed_clients.contains(client) && !allowed_clients.contains(&client.to_ascii_lowercase())
    {
        return Err(refuse(Reason::ClientNotAllowed));
    }
    Ok(AppCaller::from(CallerIdentity {
        client_app_id: client.to_owned(),
        tenant_id: tenant.to_owned(),
        object_id: claims.oid.clone(),
        roles: claims.roles.clone().unwrap_or_default(),
        version,
        token_id: claims.uti.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::tests::READER;

    const SP: &str = "a1000000-0000-4000-8000-000000000007";

    fn allowed() -> HashSet<String> {
        HashSet::from([READER.to_owned()])
    }

    fn app() -> AccessTokenClaims {
        AccessTokenClaims {
            azp: Some(READER.into()),
            azpacr: Some("1".into()),
            idtyp: Some("app".into()),
            oid: Some(SP.into()),
            sub: Some(SP.into()),
            tid: Some("t".into()),
            roles: Some(vec!["Tasks.Read.All".into()]),
            ver: "2.0".into(),
            ..Default::default()
        }
    }

    fn reason(claims: &AccessTokenClaims) -> Option<Reason> {
        app_caller(claims, &allowed()).err().map(|e| e.reason)
    }

    #[test]
    fn an_allowed_confidential_app_passes_and_roles_are_checked_per_route() {
        let caller = app_caller(&app(), &allowed()).expect("accepted");
        assert_eq!(caller.client_app_id, READER);
        assert!(
            caller
                .require_any_role(&["Tasks.Read.All", "Tasks.ReadWrite.All"])
                .is_ok()
        );
        let err = caller
            .require_any_role(&["Tasks.ReadWrite.All"])
            .expect_err("read-only");
        assert_eq!(err.reason, Reason::MissingRole);
        assert_eq!(err.required_roles, ["Tasks.ReadWrite.All"]);
        assert_eq!(
            caller.require_any_role(&[]).expect_err("no policy").reason,
            Reason::RouteHasNoPolicy
        );
    }

    #[test]
    fn user_tokens_with_or_without_idtyp() {
        let mut claims = app();
        claims.idtyp = Some("user".into());
        claims.sub = Some("pairwise".into());
        assert_eq!(reason(&claims), Some(Reason::UserDelegatedToken));
        claims.idtyp = None;
        claims.scp = Some("Tasks.Read".into());
        assert_eq!(reason(&claims), Some(Reason::UserDelegatedToken));
    }

    #[test]
    fn an_app_token_with_scp_added_is_not_app_only() {
        let mut claims = app();
        claims.scp = Some("Tasks.Read".into());
        assert_eq!(reason(&claims), Some(Reason::UserDelegatedToken));
    }

    #[test]
    fn without_idtyp_the_oid_sub_rule_applies() {
        let mut claims = app();
        claims.idtyp = None;
        assert_eq!(reason(&claims), None);
        claims.sub = Some("someone-else".into());
        assert_eq!(reason(&claims), Some(Reason::NotAnAppToken));
    }

    #[test]
    fn client_allow_list_and_public_clients() {
        let mut claims = app();
        claims.azp = Some("a1000000-0000-4000-8000-000000000006".into());
        assert_eq!(reason(&claims), Some(Reason::ClientNotAllowed));
        let mut claims = app();
        claims.azpacr = Some("0".into());
        assert_eq!(reason(&claims), Some(Reason::PublicClient));
        let mut claims = app();
        claims.azpacr = None;
        assert_eq!(
            reason(&claims),
            Some(Reason::PublicClient),
            "unknown authentication is not trusted"
        );
    }

    #[test]
    fn a_v2_token_cannot_name_its_client_through_appid() {
        let mut claims = app();
        claims.azp = None;
        claims.appid = Some(READER.into());
        claims.appidacr = Some("1".into());
        assert_eq!(reason(&claims), Some(Reason::NotAnAppToken));
        claims.ver = "1.0".into();
        assert_eq!(reason(&claims), None, "v1 names it through appid");
    }
}
