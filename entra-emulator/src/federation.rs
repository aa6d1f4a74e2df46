//! Workload identity federation: a client assertion issued by another identity provider (a
//! Kubernetes cluster's service-account issuer, GitHub Actions, another cloud) exchanged for an
//! app token, through a federated identity credential registered on the app or managed identity.
//!
//! Checked in Entra's order, with its answers: the app's credentials are matched on the
//! assertion's issuer, then subject, then audience, case-sensitively (AADSTS70021 when the app has
//! none, 700211 / 700213 / 7002138 / 700212 for the first part that matches none), the time range
//! (`exp`, `nbf`, `iat`, with 5 minutes of skew: 700024), then the issuer's keys are fetched over HTTPS from its OpenID discovery (AADSTS50166
//! when that fails) and the signature checked with the key its `kid` names (7000272 when the
//! issuer publishes no such key). Only issuers some credential names are ever fetched, so a client
//! cannot make the emulator call an address of its choosing.
//!
//! Credentials are held apart from the directory so that the admin API can remove one while the
//! emulator runs, as `az ad app federated-credential delete` would.

use crate::aadsts::AadError;
use crate::assertion::{AssertionClaims as Claims, Audience, SKEW_SECS, Times};
use crate::directory::{Application, Directory, FederatedIssuer};
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::JwkSet;
use serde::{Deserialize, Serialize};
use shared::jose::{self, Compact};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How long an issuer's keys are reused before they are fetched again.
const KEYS_FRESH_FOR: Duration = Duration::from_secs(300);

/// An assertion naming a `kid` the cached keys lack fetches the issuer's keys again, at most this
/// often per issuer (the issuer may have rotated; a client must not make every request a fetch).
const REFETCH_AFTER: Duration = Duration::from_secs(30);

/// Largest discovery document or JWKS read.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// One federated identity credential, its issuer resolved to a URL.
#[derive(Debug, Clone, Serialize)]
pub struct FederatedCredential {
    pub name: String,
    pub issuer: String,
    pub subject: String,
    pub audiences: Vec<String>,
}

/// The credentials of every app and managed identity, by tenant ID and client ID (lower case: a
/// client ID may repeat across tenants, and each tenant trusts only its own credentials), and the
/// keys of the issuers they name.
pub struct Federation {
    credentials: RwLock<BTreeMap<(String, String), Vec<FederatedCredential>>>,
    keys: Mutex<HashMap<String, Arc<IssuerKeys>>>,
    /// When each issuer last failed to answer: for [`RETRY_FAILED_AFTER`], requests naming it are
    /// answered from the keys held, or refused, without another fetch.
    failed: Mutex<HashMap<String, Instant>>,
    client: reqwest::Client,
}

/// An issuer that could not be fetched is not asked again sooner than this, however many
/// assertions name it: the matching needs only an assertion's unsigned claims, so anyone could
/// otherwise make every request a fetch.
const RETRY_FAILED_AFTER: Duration = Duration::from_secs(5);

struct IssuerKeys {
    set: JwkSet,
    fetched: Instant,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// The `iss` of a client assertion, unverified: whether it is the client itself (a certificate
/// credential) or another issuer (a federated one) decides which check applies.
pub fn unverified_issuer(assertion: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Issuer {
        #[serde(default)]
        iss: Option<String>,
    }
    let jws = Compact::split(assertion)?;
    let claims: Issuer = jose::json_part(jws.payload).ok()?;
    claims.iss
}

impl Federation {
    /// The directory's credentials, `cluster` resolved to this emulator's own service-account
    /// issuer; `client` fetches issuers' discovery and keys (trusting the emulator's own CA).
    pub fn new(directory: &Directory, cluster_issuer: &str, client: reqwest::Client) -> Self {
        let mut credentials = BTreeMap::new();
        for tenant in &directory.tenants {
            for app in &tenant.applications {
                if app.federated_credentials.is_empty() {
                    continue;
                }
                let resolved = app
                    .federated_credentials
                    .iter()
                    .map(|c| FederatedCredential {
                        name: c.name.clone(),
                        issuer: match &c.issuer {
                            FederatedIssuer::Cluster => cluster_issuer.to_owned(),
                            FederatedIssuer::Url(url) => url.clone(),
                        },
                        subject: c.subject.clone(),
                        audiences: c.audiences.clone(),
                    })
                    .collect();
                credentials.insert((tenant.id.clone(), app.client_id.clone()), resolved);
            }
        }
        Self {
            credentials: RwLock::new(credentials),
            keys: Mutex::default(),
            failed: Mutex::default(),
            client,
        }
    }

    /// Every credential, by tenant ID, then client ID.
    pub fn list(&self) -> BTreeMap<String, BTreeMap<String, Vec<FederatedCredential>>> {
        let mut listed: BTreeMap<String, BTreeMap<String, Vec<FederatedCredential>>> =
            BTreeMap::new();
        for ((tenant, client), credentials) in self
            .credentials
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            listed
                .entry(tenant.clone())
                .or_default()
                .insert(client.clone(), credentials.clone());
        }
        listed
    }

    /// Removes the credential `name` of the app or managed identity `client_id`, in every tenant
    /// where it has one by that name; how many were removed.
    pub fn remove(&self, client_id: &str, name: &str) -> usize {
        let client_id = client_id.to_ascii_lowercase();
        let mut all = self.credentials.write().unwrap_or_else(|p| p.into_inner());
        let mut removed = 0;
        for ((_, client), list) in all.iter_mut() {
            if *client == client_id {
                let before = list.len();
                list.retain(|c| c.name != name);
                removed += before - list.len();
            }
        }
        removed
    }

    /// Checks a federated assertion for `client` of the tenant `tenant_id`; returns the
    /// credential it matched.
    pub async fn verify(
        &self,
        assertion: &str,
        tenant_id: &str,
        client: &Application,
        now: i64,
    ) -> Result<FederatedCredential, AadError> {
        let jws = Compact::split(assertion).ok_or_else(AadError::assertion_malformed)?;
        let header: Header = jose::header_object(jws.header)
            .ok()
            .and_then(|h| serde_json::from_value(h.into()).ok())
            .ok_or_else(AadError::assertion_malformed)?;
        let claims: Claims =
            jose::json_part(jws.payload).map_err(|_| AadError::assertion_malformed())?;
        let issuer = claims.iss.as_deref().unwrap_or_default();
        let subject = claims.sub.as_deref().unwrap_or_default();
        let audiences = claims
            .aud
            .as_ref()
            .map(Audience::values)
            .unwrap_or_default();

        let credential = self.matching(tenant_id, &client.client_id, issuer, subject, audiences)?;

        let Times { exp, nbf, iat } = claims.times()?;
        // Issued in the future, or valid before it was issued: neither is a time range Entra takes.
        if exp + SKEW_SECS < now
            || nbf.is_some_and(|n| n - SKEW_SECS > now)
            || iat.is_some_and(|i| i - SKEW_SECS > now || i > exp)
        {
            return Err(AadError::assertion_time_range(now, nbf.or(iat), exp));
        }

        let algorithm = match header.alg.as_str() {
            "RS256" => Algorithm::RS256,
            "PS256" => Algorithm::PS256,
            "ES256" => Algorithm::ES256,
            other => return Err(AadError::assertion_algorithm(other)),
        };
        let kid = header.kid.unwrap_or_default();
        let keys = self.keys_for(&credential.issuer, &kid).await?;
        let jwk = if kid.is_empty() && keys.set.keys.len() == 1 {
            keys.set.keys.first()
        } else {
            keys.set.find(&kid)
        }
        .ok_or_else(|| AadError::federated_key_not_found(&kid, &credential.issuer))?;
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk)
            .map_err(|_| AadError::federated_key_not_found(&kid, &credential.issuer))?;
        match jsonwebtoken::crypto::verify(
            jws.signature,
            jws.signing_input.as_bytes(),
            &key,
            algorithm,
        ) {
            Ok(true) => Ok(credential),
            _ => {
                tracing::debug!(client_id = %client.client_id, issuer = %credential.issuer, kid, "federated assertion signature invalid");
                Err(AadError::assertion_signature_invalid())
            }
        }
    }

    /// Issuer, then subject, then audience, each compared exactly.
    fn matching(
        &self,
        tenant_id: &str,
        client_id: &str,
        issuer: &str,
        subject: &str,
        audiences: &[String],
    ) -> Result<FederatedCredential, AadError> {
        let all = self.credentials.read().unwrap_or_else(|p| p.into_inner());
        let registered = all
            .get(&(tenant_id.to_owned(), client_id.to_owned()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        if registered.is_empty() {
            return Err(AadError::federated_no_record(
                issuer,
                subject,
                &audiences.join(", "),
            ));
        }
        let by_issuer: Vec<_> = registered.iter().filter(|c| c.issuer == issuer).collect();
        if by_issuer.is_empty() {
            return Err(AadError::federated_issuer(issuer));
        }
        let by_subject: Vec<_> = by_issuer.iter().filter(|c| c.subject == subject).collect();
        if by_subject.is_empty() {
            return Err(
                if by_issuer
                    .iter()
                    .any(|c| c.subject.eq_ignore_ascii_case(subject))
                {
                    AadError::federated_subject_case(subject)
                } else {
                    AadError::federated_subject(subject)
                },
            );
        }
        by_subject
            .iter()
            .find(|c| c.audiences.iter().any(|a| audiences.contains(a)))
            .map(|c| (**c).clone())
            .ok_or_else(|| AadError::federated_audience(&audiences.join(", ")))
    }

    /// The issuer's keys: cached for [`KEYS_FRESH_FOR`], fetched again sooner when `kid` is not
    /// among them (at most every [`REFETCH_AFTER`]). When a fetch fails the keys held are used
    /// (an issuer's outage does not stop exchanges its known keys can verify), and the issuer is
    /// not asked again for [`RETRY_FAILED_AFTER`].
    async fn keys_for(&self, issuer: &str, kid: &str) -> Result<Arc<IssuerKeys>, AadError> {
        let cached = self
            .keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(issuer)
            .cloned();
        if let Some(keys) = &cached {
            let age = keys.fetched.elapsed();
            let knows = kid.is_empty() || keys.set.find(kid).is_some();
            if age < KEYS_FRESH_FOR && (knows || age < REFETCH_AFTER) {
                return Ok(keys.clone());
            }
        }
        let recently_failed = self
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(issuer)
            .is_some_and(|at| at.elapsed() < RETRY_FAILED_AFTER);
        if recently_failed {
            return cached.ok_or_else(AadError::external_oidc_failed);
        }
        match self.fetch(issuer).await {
            Ok(set) => {
                let keys = Arc::new(IssuerKeys {
                    set,
                    fetched: Instant::now(),
                });
                self.keys
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(issuer.to_owned(), keys.clone());
                self.failed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(issuer);
                Ok(keys)
            }
            Err(reason) => {
                self.failed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(issuer.to_owned(), Instant::now());
                match cached {
                    Some(keys) => {
                        tracing::warn!(%issuer, %reason, "the federated issuer's keys could not be fetched; using the keys held");
                        Ok(keys)
                    }
                    None => {
                        tracing::warn!(%issuer, %reason, "AADSTS50166: the federated issuer's keys could not be fetched");
                        Err(AadError::external_oidc_failed())
                    }
                }
            }
        }
    }

    async fn fetch(&self, issuer: &str) -> Result<JwkSet, String> {
        if !issuer.starts_with("https://") {
            return Err(format!("issuer {issuer} is not HTTPS"));
        }
        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let discovery: Discovery = self.get_json(&discovery_url).await?;
        if discovery.issuer != issuer {
            return Err(format!(
                "{discovery_url} names issuer '{}', not '{issuer}'",
                discovery.issuer
            ));
        }
        if !discovery.jwks_uri.starts_with("https://") {
            return Err(format!("jwks_uri {} is not HTTPS", discovery.jwks_uri));
        }
        self.get_json(&discovery.jwks_uri).await
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let mut response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {}", shared::proxy::error_chain(&e)))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(format!("GET {url}: larger than {MAX_DOCUMENT_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not the JSON expected: {e}"))
    }
}
