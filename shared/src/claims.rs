//! The Entra ID access-token claim model, v1 and v2, and a normalised view of it.
//!
//! Which version a token is depends on the *resource's* `accessTokenAcceptedVersion`, not on the
//! endpoint that issued it, so an API must read both: v2 names the client in `azp`/`azpacr`, v1 in
//! `appid`/`appidacr`; v2 `iss` is `https://login.microsoftonline.com/{tid}/v2.0`, v1 `iss` is
//! `https://sts.windows.net/{tid}/` (Microsoft, access-token-claims-reference).

use serde::{Deserialize, Serialize};

/// Every claim the mesh reads or writes. Optional ones are skipped when absent so that a minted
/// token carries exactly what Entra would put in it (e.g. no `roles` when the client holds none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    /// Absent decodes as empty, which no audience list holds: refused as the wrong audience
    /// rather than as an undecodable token, so the caller is told what is missing.
    #[serde(default)]
    pub aud: String,
    /// As `aud`: absent is empty, an issuer nobody trusts.
    #[serde(default)]
    pub iss: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aio: Option<String>,
    /// v2: the client application's ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azp: Option<String>,
    /// v2: how the client authenticated: "0" public client, "1" secret, "2" certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azpacr: Option<String>,
    /// v1: the client application's ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    /// v1: same codes as `azpacr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appidacr: Option<String>,
    /// Optional claim `idtyp`: "app" or "user", when the resource enables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idtyp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rh: Option<String>,
    /// App roles granted to the client (app-only) or the user (delegated). Absent when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// Delegated scopes, space-separated. Only user-delegated tokens carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<String>,
    /// v1 user tokens: the user's UPN (v2 has `preferred_username`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uti: Option<String>,
    pub ver: String,
    /// A managed identity's Azure resource ID: the user-assigned identity, or the resource a
    /// system-assigned one belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xms_mirid: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// Client credentials: the caller is an application acting as itself.
    App,
    /// Delegated: the caller acts on behalf of a signed-in user.
    User,
    /// Neither rule matched; never treated as an app token.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TokenVersion {
    #[serde(rename = "1.0")]
    V1,
    #[serde(rename = "2.0")]
    V2,
}

/// How the client proved its identity (`azpacr`/`appidacr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    Public,
    Secret,
    Certificate,
}

impl ClientAuth {
    pub fn from_acr(value: &str) -> Option<Self> {
        match value {
            "0" => Some(Self::Public),
            "1" => Some(Self::Secret),
            "2" => Some(Self::Certificate),
            _ => None,
        }
    }

    pub fn acr(self) -> &'static str {
        match self {
            Self::Public => "0",
            Self::Secret => "1",
            Self::Certificate => "2",
        }
    }
}

/// The claims every service reasons about, whatever the token version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenIdentity {
    pub tenant_id: Option<String>,
    pub client_app_id: Option<String>,
    pub client_auth: Option<ClientAuth>,
    pub object_id: Option<String>,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
    pub kind: TokenKind,
    pub version: Option<TokenVersion>,
}

impl AccessTokenClaims {
    pub fn version(&self) -> Option<TokenVersion> {
        match self.ver.as_str() {
            "1.0" => Some(TokenVersion::V1),
            "2.0" => Some(TokenVersion::V2),
            _ => None,
        }
    }

    /// App-only or user-delegated, by Microsoft's rule: `idtyp` when the API enabled it; otherwise
    /// the older heuristic "no `scp` and `oid == sub`". A token carrying `scp` is delegated whatever
    /// its `idtyp` says, so an app token with a `scp` smuggled in is never taken for app-only.
    pub fn kind(&self) -> TokenKind {
        if self.scp.is_some() {
            return TokenKind::User;
        }
        match self.idtyp.as_deref() {
            Some("app") => TokenKind::App,
            Some("user") => TokenKind::User,
            Some(_) => TokenKind::Unknown,
            None => match (&self.oid, &self.sub) {
                (Some(oid), Some(sub)) if oid == sub => TokenKind::App,
                _ => TokenKind::Unknown,
            },
        }
    }

    /// The client application: `azp` in v2 tokens, `appid` in v1 tokens. The claim of the other
    /// version is not consulted, so a v2 token cannot name its client through `appid`.
    pub fn client_app_id(&self) -> Option<&str> {
        match self.version() {
            Some(TokenVersion::V2) => self.azp.as_deref(),
            Some(TokenVersion::V1) => self.appid.as_deref(),
            None => None,
        }
    }

    pub fn client_auth(&self) -> Option<ClientAuth> {
        let acr = match self.version() {
            Some(TokenVersion::V2) => self.azpacr.as_deref(),
            Some(TokenVersion::V1) => self.appidacr.as_deref(),
            None => None,
        };
        acr.and_then(ClientAuth::from_acr)
    }

    pub fn identity(&self) -> TokenIdentity {
        TokenIdentity {
            tenant_id: self.tid.clone(),
            client_app_id: self.client_app_id().map(str::to_owned),
            client_auth: self.client_auth(),
            object_id: self.oid.clone(),
            roles: self.roles.clone().unwrap_or_default(),
            scopes: self
                .scp
                .as_deref()
                .map(|s| s.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default(),
            kind: self.kind(),
            version: self.version(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL_V2_APP: &str = r#"{"aud":"d03a9bf4-b880-4793-926f-95bb5ce74a77","iss":"https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/v2.0",
 "iat":1754479503,"nbf":1754479503,"exp":1754483403,"aio":"k2Rg","azp":"f2b24498-3c66-46cd-9a61-92acb473b959","azpacr":"1",
 "oid":"99f268b3-61d1-4536-bfd5-85f426e2146f","rh":"1.AREA","roles":["Sample.Read","Sample.Write"],
 "sub":"99f268b3-61d1-4536-bfd5-85f426e2146f","tid":"00000000-0000-0000-0000-000000000000","uti":"u1TnRc8ca062Otegxw1eAA","ver":"2.0"}"#;

    const DOC_V2_USER: &str = r#"{"aud":"6e74172b-be56-4843-9ff4-e66a39bb12e3","iss":"https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0",
 "iat":1537231048,"nbf":1537231048,"exp":1537234948,"azp":"6e74172b-be56-4843-9ff4-e66a39bb12e3","azpacr":"0",
 "name":"Abe Lincoln","oid":"690222be-ff1a-4d56-abd1-7e4f7d38e474","preferred_username":"abeli@microsoft.com","rh":"I",
 "scp":"access_as_user","sub":"HKZpfaHyWadeOouYlitjrI-KffTm222X5rrV3xDqfKQ","tid":"72f988bf-86f1-41af-91ab-2d7cd011db47",
 "uti":"fqiBqXLPj0eQa82S-IYFAA","ver":"2.0"}"#;

    #[test]
    fn real_v2_app_token_is_app_only_with_its_roles() {
        let claims: AccessTokenClaims = serde_json::from_str(REAL_V2_APP).expect("parses");
        let id = claims.identity();
        assert_eq!(id.kind, TokenKind::App);
        assert_eq!(id.version, Some(TokenVersion::V2));
        assert_eq!(
            id.client_app_id.as_deref(),
            Some("f2b24498-3c66-46cd-9a61-92acb473b959")
        );
        assert_eq!(id.client_auth, Some(ClientAuth::Secret));
        assert_eq!(id.roles, ["Sample.Read", "Sample.Write"]);
        assert!(id.scopes.is_empty());
    }

    #[test]
    fn doc_v2_user_token_is_delegated() {
        let claims: AccessTokenClaims = serde_json::from_str(DOC_V2_USER).expect("parses");
        let id = claims.identity();
        assert_eq!(id.kind, TokenKind::User);
        assert_eq!(id.client_auth, Some(ClientAuth::Public));
        assert_eq!(id.scopes, ["access_as_user"]);
    }

    #[test]
    fn scp_makes_a_token_delegated_even_when_idtyp_says_app() {
        let mut claims: AccessTokenClaims = serde_json::from_str(REAL_V2_APP).expect("parses");
        claims.idtyp = Some("app".into());
        assert_eq!(claims.kind(), TokenKind::App);
        claims.scp = Some("Tasks.Read".into());
        assert_eq!(claims.kind(), TokenKind::User);
    }

    #[test]
    fn without_idtyp_oid_must_equal_sub() {
        let mut claims: AccessTokenClaims = serde_json::from_str(REAL_V2_APP).expect("parses");
        claims.sub = Some("someone-else".into());
        assert_eq!(claims.kind(), TokenKind::Unknown);
        claims.sub = None;
        assert_eq!(claims.kind(), TokenKind::Unknown);
    }

    #[test]
    fn v1_reads_appid_and_ignores_azp() {
        let mut claims: AccessTokenClaims = serde_json::from_str(REAL_V2_APP).expect("parses");
        claims.ver = "1.0".into();
        assert_eq!(claims.client_app_id(), None);
        claims.appid = Some("v1-client".into());
        claims.appidacr = Some("2".into());
        assert_eq!(claims.client_app_id(), Some("v1-client"));
        assert_eq!(claims.client_auth(), Some(ClientAuth::Certificate));
    }

    #[test]
    fn absent_roles_are_not_serialised() {
        let claims = AccessTokenClaims {
            aud: "a".into(),
            iss: "i".into(),
            exp: 1,
            ver: "2.0".into(),
            ..Default::default()
        };
        let json = serde_json::to_string(&claims).expect("serialises");
        assert!(!json.contains("roles"));
        assert!(!json.contains("scp"));
    }
}
