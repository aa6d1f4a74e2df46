//! A stand-in for a Kubernetes cluster's service-account token issuer, the other half of
//! workload identity federation: its own signing keys (`{data_dir}/cluster/keys.json`, apart from
//! the tenants' keys), its own OpenID discovery and JWKS under its own issuer URL
//! (`{public_url}/cluster`, served at the paths the API server uses), and projected tokens minted
//! as the kubelet asks for them: `sub` = `system:serviceaccount:<namespace>:<name>`, `aud`
//! = `api://AzureADTokenExchange`, one hour.
//!
//! The token endpoint trusts this issuer only through a federated identity credential naming it,
//! and fetches its discovery and keys over HTTPS like any other issuer's.

use crate::keys::KeyStore;
use jsonwebtoken::{Algorithm, Header};
use serde::Serialize;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The audience Azure Workload Identity projects tokens for, and a federated credential's default.
pub const TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";

/// The kubelet's default for a projected token (`expirationSeconds: 3600`).
pub const DEFAULT_LIFETIME_SECS: i64 = 3600;

/// The kubelet refuses shorter projected tokens (`expirationSeconds` ≥ 600); a demo may ask for
/// less, but never under a minute, so that a reader of the file always has time to use it.
pub const MIN_LIFETIME_SECS: i64 = 60;

/// The path under the public URL; the issuer URL is `{public_url}/cluster`.
pub const PATH: &str = "/cluster";

pub struct ClusterIssuer {
    issuer: String,
    keys: KeyStore,
}

/// One service account, as the kubelet names it in a projected token.
#[derive(Debug, Clone)]
pub struct ServiceAccount {
    pub namespace: String,
    pub name: String,
}

impl ServiceAccount {
    /// `namespace` and `name` must be DNS labels/subdomains as Kubernetes requires, so that the
    /// subject they form is exactly what a real cluster would write.
    pub fn new(namespace: &str, name: &str) -> Result<Self, String> {
        let valid = |s: &str| {
            !s.is_empty()
                && s.len() <= 253
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
                && !s.starts_with(['-', '.'])
                && !s.ends_with(['-', '.'])
        };
        if !valid(namespace) {
            return Err(format!(
                "--namespace: '{namespace}' is not a Kubernetes name (lower-case letters, digits, '-', '.')"
            ));
        }
        if !valid(name) {
            return Err(format!(
                "--service-account: '{name}' is not a Kubernetes name (lower-case letters, digits, '-', '.')"
            ));
        }
        Ok(Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The token's `sub`, and what a federated credential's `subject` must equal.
    pub fn subject(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }

    /// The service account's `uid`: stable for a name, as it is for an object that is not
    /// recreated.
    fn uid(&self) -> String {
        let digest =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, self.subject().as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest.as_ref()[..16]);
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string()
    }
}

#[derive(Serialize)]
struct ProjectedClaims<'a> {
    aud: [&'a str; 1],
    exp: i64,
    iat: i64,
    iss: &'a str,
    jti: String,
    #[serde(rename = "kubernetes.io")]
    kubernetes: Value,
    nbf: i64,
    sub: String,
}

/// A projected token and when it ends.
pub struct Projected {
    pub token: String,
    pub expires_at: i64,
}

impl ClusterIssuer {
    /// Loads the issuer's keys from `{data_dir}/cluster`, creating them on first use.
    pub fn open(data_dir: &Path, public_url: &str, now: i64) -> anyhow::Result<Self> {
        let dir = data_dir.join("cluster");
        std::fs::create_dir_all(&dir)
            .map_err(|e| anyhow::anyhow!("`data_dir` {}: cannot create: {e}", dir.display()))?;
        Ok(Self {
            issuer: issuer_url(public_url),
            keys: KeyStore::open(&dir, now)?,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// A projected service-account token, as the kubelet writes into a pod.
    pub fn mint(
        &self,
        account: &ServiceAccount,
        audience: &str,
        lifetime_secs: i64,
        now: i64,
    ) -> anyhow::Result<Projected> {
        if lifetime_secs < MIN_LIFETIME_SECS {
            anyhow::bail!(
                "--lifetime-secs: {lifetime_secs} is under the {MIN_LIFETIME_SECS} s minimum"
            );
        }
        let expires_at = now + lifetime_secs;
        let claims = ProjectedClaims {
            aud: [audience],
            exp: expires_at,
            iat: now,
            iss: &self.issuer,
            jti: uuid::Uuid::new_v4().to_string(),
            kubernetes: json!({
                "namespace": account.namespace,
                "serviceaccount": { "name": account.name, "uid": account.uid() },
            }),
            nbf: now,
            sub: account.subject(),
        };
        let token = self.sign(&claims)?;
        Ok(Projected { token, expires_at })
    }

    /// Any claims, signed RS256 with the active key and its `kid`: what [`ClusterIssuer::mint`]
    /// does, open to tests that need a token no kubelet would write.
    pub fn sign<T: Serialize>(&self, claims: &T) -> anyhow::Result<String> {
        let keys = self.keys.snapshot();
        let key = keys.active();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding_key)
            .map_err(|e| anyhow::anyhow!("signing the service-account token: {e}"))
    }

    /// The discovery document Kubernetes' API server serves for its issuer.
    pub fn discovery(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": format!("{}/openid/v1/jwks", self.issuer),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        })
    }

    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .keys
            .snapshot()
            .keys
            .iter()
            .map(|k| json!({ "use": "sig", "kty": "RSA", "kid": k.kid, "alg": "RS256", "n": k.n, "e": k.e }))
            .collect();
        json!({ "keys": keys })
    }
}

/// The issuer URL for an emulator reached at `public_url`.
pub fn issuer_url(public_url: &str) -> String {
    format!("{}{PATH}", public_url.trim_end_matches('/'))
}

/// What the projector does, as the kubelet does for a projected volume: write the token file
/// and write it again before 80% of its life.
pub struct Projector {
    pub account: ServiceAccount,
    pub audience: String,
    pub lifetime_secs: i64,
    pub out: PathBuf,
}

impl Projector {
    /// When to write the next token, counted from a write: the kubelet refreshes a projected
    /// token once it is older than 80% of its lifetime; this writes at 75%, before that bound.
    pub fn refresh_after(&self) -> Duration {
        Duration::from_secs((self.lifetime_secs as u64) * 3 / 4)
    }

    /// Mints and writes one token (atomically, mode 0644 as a projected volume's default);
    /// returns when it ends.
    pub fn write_once(&self, issuer: &ClusterIssuer, now: i64) -> anyhow::Result<i64> {
        let projected = issuer.mint(&self.account, &self.audience, self.lifetime_secs, now)?;
        crate::fsutil::write_public(&self.out, projected.token.as_bytes())?;
        Ok(projected.expires_at)
    }
}
