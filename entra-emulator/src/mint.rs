//! What Entra decides when it issues a token, independent of HTTP: which resource a scope names,
//! whether the client may have a token for it, and the token's claims. The token endpoint and the
//! `token` CLI command both come through here, so they cannot disagree.

use crate::aadsts::AadError;
use crate::directory::{Application, Directory, Tenant, User};
use crate::keys::KeyStore;
use crate::settings::{EmulatorSettings, TokenSettings};
use anyhow::Context;
use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Header};
use rand::Rng;
use serde::Serialize;
use shared::claims::{AccessTokenClaims, ClientAuth};
use shared::clock::Clock;
use std::sync::Arc;

/// Scopes that OIDC clients (and some SDKs) send next to the resource's `.default`; Entra
/// tolerates them in client-credentials requests and ignores them. Compared case-insensitively.
const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "offline_access", "email"];

fn is_oidc_scope(scope: &str) -> bool {
    OIDC_SCOPES.iter().any(|o| o.eq_ignore_ascii_case(scope))
}

/// The one resource a `scope` parameter names, and the scopes naming it (OIDC scopes dropped).
/// Client credentials and `/authorize` both refuse none (AADSTS70011) and several (AADSTS700022).
pub fn resource_scopes(scope: &str) -> Result<(&str, Vec<&str>), AadError> {
    let requested: Vec<&str> = scope
        .split_whitespace()
        .filter(|s| !is_oidc_scope(s))
        .collect();
    let Some(first) = requested.first() else {
        return Err(AadError::invalid_scope(scope));
    };
    let identifier = resource_of(first);
    if requested.iter().any(|s| resource_of(s) != identifier) {
        return Err(AadError::several_resources(scope));
    }
    Ok((identifier, requested))
}

/// Entra back-dates `iat`/`nbf` by five minutes (real tokens: `exp - iat` = 3900 s while
/// `expires_in` ≈ 3599 s), presumably to absorb client clock skew; this is an inference.
const BACKDATE_SECS: i64 = 300;

pub struct TokenService {
    pub directory: Arc<Directory>,
    pub keys: Arc<KeyStore>,
    pub clock: Arc<dyn Clock>,
    /// `https://host[:port]`, no trailing slash.
    pub public_url: String,
    pub settings: TokenSettings,
}

/// Deliberately neither `Debug` nor `Serialize`: it holds raw tokens, which must not reach a log.
#[derive(Clone)]
pub struct IssuedToken {
    pub access_token: String,
    pub expires_in: i64,
    pub expires_on: i64,
    /// The resource as the client named it (v1 responses echo it).
    pub resource: String,
    pub id_token: Option<String>,
    /// Granted delegated scopes (user tokens), echoed in the response's `scope`.
    pub scope: Option<String>,
    /// base64url `{uid, utid}` for MSAL, when the client asked with `client_info=1`.
    pub client_info: Option<String>,
    pub claims: AccessTokenClaims,
}

/// The resource a request names and the spelling it used.
pub struct ResourceRef<'a> {
    pub app: &'a Application,
    pub requested_as: String,
}

/// A user-delegated grant, as recorded when the authorization code was issued.
pub struct DelegatedGrant<'a> {
    pub user: &'a User,
    pub resource: ResourceRef<'a>,
    pub scopes: Vec<String>,
    pub nonce: Option<String>,
    pub want_id_token: bool,
}

impl TokenService {
    /// Loads the directory and the data directory's signing keys (creating them on first use):
    /// what the server and the `token` command both mint from.
    pub fn open(
        settings: &EmulatorSettings,
        clock: Arc<dyn Clock>,
        public_url: String,
    ) -> anyhow::Result<Self> {
        let directory = Arc::new(Directory::load(&settings.directory)?);
        std::fs::create_dir_all(&settings.data_dir).with_context(|| {
            format!("`data_dir` {}: cannot create", settings.data_dir.display())
        })?;
        let keys = Arc::new(KeyStore::open(&settings.data_dir, clock.unix())?);
        Ok(Self {
            directory,
            keys,
            clock,
            public_url,
            settings: settings.tokens.clone(),
        })
    }

    pub fn issuer_v2(&self, tenant_id: &str) -> String {
        format!("{}/{tenant_id}/v2.0", self.public_url)
    }

    /// Stands in for `https://sts.windows.net/{tid}/`: same shape, the emulator's host.
    pub fn issuer_v1(&self, tenant_id: &str) -> String {
        format!("{}/{tenant_id}/", self.public_url)
    }

    /// Resolves a client-credentials `scope`: exactly one resource, named with `/.default`.
    /// Check order follows Entra's answers: several resources, then the `.default` rule, then
    /// whether the resource exists.
    pub fn resolve_default_scope<'t>(
        &self,
        tenant: &'t Tenant,
        tenant_as_requested: &str,
        scope: &str,
    ) -> Result<ResourceRef<'t>, AadError> {
        let (identifier, requested) = resource_scopes(scope)?;
        if !matches!(requested.as_slice(), [only] if only.ends_with("/.default")) {
            return Err(AadError::scope_without_default(scope));
        }
        let app = tenant
            .resource(identifier)
            .ok_or_else(|| AadError::resource_not_found(identifier, tenant_as_requested))?;
        Ok(ResourceRef {
            app,
            requested_as: identifier.to_owned(),
        })
    }

    /// Resolves a v1 `resource` parameter (no `/.default`).
    pub fn resolve_v1_resource<'t>(
        &self,
        tenant: &'t Tenant,
        tenant_as_requested: &str,
        resource: &str,
    ) -> Result<ResourceRef<'t>, AadError> {
        let identifier = resource.trim_end_matches('/');
        let app = tenant
            .resource(identifier)
            .ok_or_else(|| AadError::resource_not_found(resource, tenant_as_requested))?;
        Ok(ResourceRef {
            app,
            requested_as: resource.to_owned(),
        })
    }

    /// Issues an app-only token, after the client has authenticated as `auth`.
    pub fn app_token(
        &self,
        tenant: &Tenant,
        client: &Application,
        resource: &ResourceRef<'_>,
        auth: ClientAuth,
    ) -> Result<IssuedToken, AadError> {
        let roles = tenant.roles(client, resource.app);
        if resource.app.app_role_assignment_required && roles.is_empty() {
            return Err(AadError::no_role_assignment(
                &client.client_id,
                &client.display_name,
                &resource.app.client_id,
                &resource.app.display_name,
            ));
        }
        let now = self.clock.unix();
        let lifetime = self.lifetime();
        let mut claims = self.base_claims(tenant, client, resource, auth, now, lifetime);
        claims.oid = Some(client.service_principal_id.clone());
        claims.sub = Some(client.service_principal_id.clone());
        claims.roles = (!roles.is_empty()).then(|| roles.to_vec());
        if resource.app.idtyp_claim {
            claims.idtyp = Some("app".into());
        }
        claims.xms_mirid = client.managed_identity.clone();
        self.finish(claims, resource, now, lifetime, None, None)
    }

    /// Issues a user-delegated token for a redeemed authorization code.
    pub fn user_token(
        &self,
        tenant: &Tenant,
        client: &Application,
        grant: &DelegatedGrant<'_>,
        auth: ClientAuth,
    ) -> Result<IssuedToken, AadError> {
        let now = self.clock.unix();
        let lifetime = self.lifetime();
        let resource = &grant.resource;
        let mut claims = self.base_claims(tenant, client, resource, auth, now, lifetime);
        let pairwise_sub = pairwise_subject(&grant.user.object_id, &client.client_id);
        claims.oid = Some(grant.user.object_id.clone());
        claims.sub = Some(pairwise_sub.clone());
        claims.scp = Some(grant.scopes.join(" "));
        claims.name = Some(grant.user.display_name.clone());
        if resource.app.access_token_version == 2 {
            claims.preferred_username = Some(grant.user.username.clone());
        } else {
            claims.upn = Some(grant.user.username.clone());
            claims.unique_name = Some(grant.user.username.clone());
        }
        if resource.app.idtyp_claim {
            claims.idtyp = Some("user".into());
        }
        let id_token = if grant.want_id_token {
            Some(self.id_token(tenant, client, grant, &pairwise_sub, now)?)
        } else {
            None
        };
        let scope = grant
            .scopes
            .iter()
            .map(|s| format!("{}/{s}", resource.requested_as))
            .collect::<Vec<_>>()
            .join(" ");
        self.finish(claims, resource, now, lifetime, id_token, Some(scope))
    }

    fn base_claims(
        &self,
        tenant: &Tenant,
        client: &Application,
        resource: &ResourceRef<'_>,
        auth: ClientAuth,
        now: i64,
        lifetime: i64,
    ) -> AccessTokenClaims {
        let v2 = resource.app.access_token_version == 2;
        AccessTokenClaims {
            // v2: always the API's client ID; v1: the resource as the client spelled it.
            aud: if v2 {
                resource.app.client_id.clone()
            } else {
                resource.requested_as.clone()
            },
            iss: if v2 {
                self.issuer_v2(&tenant.id)
            } else {
                self.issuer_v1(&tenant.id)
            },
            iat: Some(now - BACKDATE_SECS),
            nbf: Some(now - BACKDATE_SECS),
            exp: now + lifetime,
            aio: Some(random_b64(48)),
            azp: v2.then(|| client.client_id.clone()),
            azpacr: v2.then(|| auth.acr().to_owned()),
            appid: (!v2).then(|| client.client_id.clone()),
            appidacr: (!v2).then(|| auth.acr().to_owned()),
            rh: Some(format!("0.A{}.", random_b64(36))),
            tid: Some(tenant.id.clone()),
            uti: Some(random_b64(16)),
            ver: if v2 { "2.0".into() } else { "1.0".into() },
            ..Default::default()
        }
    }

    fn finish(
        &self,
        claims: AccessTokenClaims,
        resource: &ResourceRef<'_>,
        now: i64,
        lifetime: i64,
        id_token: Option<String>,
        scope: Option<String>,
    ) -> Result<IssuedToken, AadError> {
        let v1 = resource.app.access_token_version == 1;
        let access_token = self.sign(&claims, v1)?;
        Ok(IssuedToken {
            access_token,
            // The response counts from "now" and rounds down, as Entra's 3599 for a 3600 s token.
            expires_in: lifetime - 1,
            expires_on: now + lifetime,
            resource: resource.requested_as.clone(),
            id_token,
            scope,
            client_info: None,
            claims,
        })
    }

    fn id_token(
        &self,
        tenant: &Tenant,
        client: &Application,
        grant: &DelegatedGrant<'_>,
        sub: &str,
        now: i64,
    ) -> Result<String, AadError> {
        let mut claims = serde_json::json!({
            "aud": client.client_id,
            "iss": self.issuer_v2(&tenant.id),
            "iat": now - BACKDATE_SECS,
            "nbf": now - BACKDATE_SECS,
            "exp": now + 3600,
            "name": grant.user.display_name,
            "oid": grant.user.object_id,
            "preferred_username": grant.user.username,
            "sub": sub,
            "tid": tenant.id,
            "uti": random_b64(16),
            "ver": "2.0",
        });
        if let (Some(nonce), Some(map)) = (&grant.nonce, claims.as_object_mut()) {
            map.insert("nonce".into(), nonce.clone().into());
        }
        self.sign(&claims, false)
    }

    /// RS256 with the active key's `kid`; v1 tokens also carry `x5t` (equal to `kid`).
    /// Signing runs on the calling worker: one RSA-2048 signature is ~1 ms, cheaper than a hop
    /// to the blocking pool and back.
    fn sign<T: Serialize>(&self, claims: &T, with_x5t: bool) -> Result<String, AadError> {
        let keys = self.keys.snapshot();
        let key = keys.active();
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some("JWT".into());
        header.kid = Some(key.kid.clone());
        if with_x5t {
            header.x5t = Some(key.kid.clone());
        }
        jsonwebtoken::encode(&header, claims, &key.encoding_key).map_err(|e| {
            tracing::error!(error = %e, "signing failed");
            AadError::temporarily_unavailable()
        })
    }

    fn lifetime(&self) -> i64 {
        let (min, max) = (
            self.settings.lifetime_min_secs,
            self.settings.lifetime_max_secs,
        );
        if min >= max {
            min
        } else {
            rand::rng().random_range(min..=max)
        }
    }
}

/// The resource part of a scope: `api://x/.default` → `api://x`, `api://x/Read` → `api://x`,
/// a GUID → itself. A bare permission name (`User.Read`) belongs to Microsoft Graph, as in Entra.
pub fn resource_of(scope: &str) -> &str {
    let after_scheme = scope.find("://").map(|i| i + 3).unwrap_or(0);
    match scope[after_scheme..].rfind('/') {
        Some(i) => &scope[..after_scheme + i],
        None if after_scheme > 0 || uuid::Uuid::parse_str(scope).is_ok() => scope,
        None => "https://graph.microsoft.com",
    }
}

/// Entra's `sub` for users is pairwise: stable per user and application, unlinkable across apps.
fn pairwise_subject(user_oid: &str, client_id: &str) -> String {
    let d = digest::digest(
        &digest::SHA256,
        format!("{user_oid}:{client_id}").as_bytes(),
    );
    URL_SAFE_NO_PAD.encode(d.as_ref())
}

fn random_b64(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill(buf.as_mut_slice());
    URL_SAFE_NO_PAD.encode(buf)
}

#[cfg(test)]
mod tests {
    use super::resource_of;

    #[test]
    fn resource_of_scopes() {
        assert_eq!(resource_of("api://tasks-api/.default"), "api://tasks-api");
        assert_eq!(resource_of("api://tasks-api/Tasks.Read"), "api://tasks-api");
        assert_eq!(
            resource_of("https://graph.microsoft.com/.default"),
            "https://graph.microsoft.com"
        );
        assert_eq!(
            resource_of("a1000000-0000-4000-8000-000000000002/.default"),
            "a1000000-0000-4000-8000-000000000002"
        );
        assert_eq!(resource_of("api://tasks-api"), "api://tasks-api");
        assert_eq!(resource_of("User.Read"), "https://graph.microsoft.com");
    }
}
