//! The accepted tenants' signing keys and issuers, from their OpenID discovery documents and JWKS.
//!
//! Microsoft's guidance, and where this goes further than the reference validators (table in
//! ENTRA-FACTS.md): keys are loaded before the API is ready; refreshed in the background (default
//! every 12 h with up to 1 h of jitter, so a fleet does not refetch at once); re-fetched when a
//! token names an unknown `kid`, at most once per 5 minutes, with concurrent misses collapsed into
//! one fetch while requests naming known keys never wait; and during an identity-provider outage
//! the last good keys keep working for a bounded time (default 24 h), after which validation fails
//! closed and readiness says so.

use super::claims::TenantIssuers;
use jsonwebtoken::DecodingKey;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Seconds since the Unix epoch; injected so tests move time instead of sleeping.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default()
    })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeySettings {
    /// Default 12 h, as Microsoft.Identity.Web; rotations are announced by publishing early.
    pub refresh_interval_secs: u64,
    /// Up to this much is added at random to each interval. Default 1 h.
    pub refresh_jitter_secs: u64,
    /// Least time between two fetches caused by unknown `kid`s. Default 300 s, Microsoft's figure:
    /// an unknown-`kid` flood costs the identity provider one request per 5 minutes.
    pub unknown_kid_refetch_secs: i64,
    /// How long the last good keys are used when fetching fails. Default 24 h; after that the API
    /// refuses every token (fails closed) rather than trusting keys that may have been revoked.
    pub max_stale_secs: i64,
}

impl Default for KeySettings {
    fn default() -> Self {
        Self {
            refresh_interval_secs: 12 * 3600,
            refresh_jitter_secs: 3600,
            unknown_kid_refetch_secs: 300,
            max_stale_secs: 24 * 3600,
        }
    }
}

/// One published key.
pub struct PublishedKey {
    pub decoding: DecodingKey,
    /// The JWKS `issuer` member, when published (Entra: the v2 issuer, maybe with `{tenantid}`).
    pub issuer: Option<String>,
}

/// Everything fetched in one successful refresh.
pub struct Published {
    /// `kid` → the keys published under it (tenants of one cloud publish the same keys, each with
    /// its own `issuer`, so one `kid` may map to several entries).
    pub keys: HashMap<String, Vec<Arc<PublishedKey>>>,
    /// Tenant ID → its v1 and v2 issuers.
    pub issuers: HashMap<String, TenantIssuers>,
    pub fetched_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Ready {
        age_secs: i64,
    },
    NotLoaded,
    /// The last good keys are older than the stale bound: tokens are refused.
    Stale {
        age_secs: i64,
    },
}

pub enum Lookup {
    Found(Vec<Arc<PublishedKey>>),
    Unknown,
    Unavailable,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: {reason}")]
    Http { url: String, reason: String },
    #[error("{url}: {reason}")]
    Document { url: String, reason: String },
}

/// How long a request with an unknown kid waits for a JWKS fetch already under way. Entra answers
/// a JWKS request in well under a second; a fetch slower than this is treated as failed for the
/// waiting request, which is refused as it would have been without waiting.
const KID_FETCH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Default)]
pub struct KeyMetrics {
    pub fetches: AtomicU64,
    pub failures: AtomicU64,
}

pub struct KeyStore {
    http: reqwest::Client,
    authority_host: String,
    tenants: Vec<String>,
    settings: KeySettings,
    clock: Clock,
    /// The current snapshot. Readers clone the `Arc` under the read lock and drop the lock at
    /// once: lookups never wait on a fetch, and a fetch swaps in a whole new snapshot.
    current: RwLock<Option<Arc<Published>>>,
    /// Single flight: whoever holds it fetches; others needing a fetch wait for that one and then
    /// look again. A tokio mutex because it is held across the network call.
    fetching: tokio::sync::Mutex<()>,
    /// When an unknown `kid` last caused a fetch, for the once-per-5-minutes limit.
    last_kid_fetch: AtomicI64,
    /// Keys given in memory (`from_jwks`): there is nothing to fetch, so nothing is.
    in_memory: bool,
    pub metrics: KeyMetrics,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    #[serde(default)]
    jwks_uri: Option<String>,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    #[serde(default)]
    kty: String,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    issuer: Option<String>,
}

/// The RSA signing keys of a JWKS, under their `kid`s; others (no `kid`, another `kty` or `use`,
/// unusable components) are skipped.
fn add_usable_keys(jwks: Jwks, keys: &mut HashMap<String, Vec<Arc<PublishedKey>>>) {
    for jwk in jwks.keys {
        let (Some(kid), Some(n), Some(e)) = (jwk.kid, jwk.n, jwk.e) else {
            continue;
        };
        if jwk.kty != "RSA" || jwk.use_.as_deref().is_some_and(|u| u != "sig") {
            continue;
        }
        match DecodingKey::from_rsa_components(&n, &e) {
            Ok(decoding) => keys.entry(kid).or_default().push(Arc::new(PublishedKey {
                decoding,
                issuer: jwk.issuer,
            })),
            Err(err) => tracing::warn!(%kid, error = %err, "skipping an unusable JWKS key"),
        }
    }
}

impl KeyStore {
    pub fn new(
        http: reqwest::Client,
        authority_host: &str,
        tenants: Vec<String>,
        settings: KeySettings,
        clock: Clock,
    ) -> Self {
        Self {
            http,
            authority_host: authority_host.trim_end_matches('/').to_owned(),
            tenants,
            settings,
            clock,
            current: RwLock::new(None),
            fetching: tokio::sync::Mutex::new(()),
            last_kid_fetch: AtomicI64::new(i64::MIN / 2),
            in_memory: false,
            metrics: KeyMetrics::default(),
        }
    }

    /// A store of fixed keys, for embedding the validator where keys do not come over HTTP (an
    /// offline tool, a fuzz target): the RSA signing keys of the JWKS document `jwks` and the
    /// accepted tenants' issuers (tenant ID, lower case, → issuers). It never fetches: an unknown
    /// `kid` stays unknown and `refresh` fails. The keys count as fetched at `clock()` now, so the
    /// stale bound of `settings` still applies.
    pub fn from_jwks(
        jwks: &[u8],
        issuers: HashMap<String, TenantIssuers>,
        settings: KeySettings,
        clock: Clock,
    ) -> Result<Self, FetchError> {
        let document = |reason: String| FetchError::Document {
            url: "(in memory)".into(),
            reason,
        };
        let jwks: Jwks = serde_json::from_slice(jwks).map_err(|e| document(e.to_string()))?;
        let mut keys = HashMap::new();
        add_usable_keys(jwks, &mut keys);
        if keys.is_empty() {
            return Err(document("no usable RSA signing key".into()));
        }
        // Never used (nothing is fetched), but the builder reports what `Client::new` would panic on.
        let http = reqwest::Client::builder()
            .build()
            .map_err(|e| document(e.to_string()))?;
        let mut store = Self::new(http, "", issuers.keys().cloned().collect(), settings, clock);
        store.in_memory = true;
        let fetched_at = (store.clock)();
        store.current = RwLock::new(Some(Arc::new(Published {
            keys,
            issuers,
            fetched_at,
        })));
        Ok(store)
    }

    pub fn snapshot(&self) -> Option<Arc<Published>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The keys in hand while they are within the stale bound: `None` before the first load and
    /// past the bound, where validation fails closed. One snapshot, judged as taken.
    pub fn fresh_snapshot(&self) -> Option<Arc<Published>> {
        self.snapshot()
            .filter(|published| matches!(self.judge(published), Readiness::Ready { .. }))
    }

    pub fn readiness(&self) -> Readiness {
        match self.snapshot() {
            None => Readiness::NotLoaded,
            Some(published) => self.judge(&published),
        }
    }

    /// The stale bound, in one place.
    fn judge(&self, published: &Published) -> Readiness {
        let age_secs = (self.clock)() - published.fetched_at;
        if age_secs > self.settings.max_stale_secs {
            Readiness::Stale { age_secs }
        } else {
            Readiness::Ready { age_secs }
        }
    }

    /// Fetches every tenant's documents and swaps them in whole; on failure the previous snapshot
    /// stays (until the stale bound).
    pub async fn refresh(&self) -> Result<(), FetchError> {
        let _single_flight = self.fetching.lock().await;
        self.fetch_and_install().await
    }

    async fn fetch_and_install(&self) -> Result<(), FetchError> {
        if self.in_memory {
            return Err(FetchError::Document {
                url: "(in memory)".into(),
                reason: "keys given in memory are not fetched".into(),
            });
        }
        self.metrics.fetches.fetch_add(1, Ordering::Relaxed);
        match self.fetch().await {
            Ok(published) => {
                let kids = published.keys.len();
                *self.current.write().unwrap_or_else(|p| p.into_inner()) =
                    Some(Arc::new(published));
                tracing::info!(kids, tenants = self.tenants.len(), "signing keys loaded");
                Ok(())
            }
            Err(e) => {
                self.metrics.failures.fetch_add(1, Ordering::Relaxed);
                let readiness = self.readiness();
                tracing::warn!(error = %e, ?readiness, "fetching signing keys failed; keeping the last good keys");
                Err(e)
            }
        }
    }

    async fn fetch(&self) -> Result<Published, FetchError> {
        let mut issuers = HashMap::new();
        let mut jwks_uris: Vec<String> = Vec::new();
        for tenant in &self.tenants {
            let v2_url = format!(
                "{}/{tenant}/v2.0/.well-known/openid-configuration",
                self.authority_host
            );
            let v2: Discovery = self.get_json(&v2_url).await?;
            let v1: Discovery = self
                .get_json(&format!(
                    "{}/{tenant}/.well-known/openid-configuration",
                    self.authority_host
                ))
                .await?;
            let jwks_uri = v2.jwks_uri.ok_or_else(|| FetchError::Document {
                url: v2_url,
                reason: "no jwks_uri".into(),
            })?;
            if !jwks_uris.contains(&jwks_uri) {
                jwks_uris.push(jwks_uri);
            }
            issuers.insert(
                tenant.to_ascii_lowercase(),
                TenantIssuers {
                    v2: v2.issuer,
                    v1: v1.issuer,
                },
            );
        }
        let mut keys: HashMap<String, Vec<Arc<PublishedKey>>> = HashMap::new();
        for uri in &jwks_uris {
            let jwks: Jwks = self.get_json(uri).await?;
            add_usable_keys(jwks, &mut keys);
        }
        if keys.is_empty() {
            return Err(FetchError::Document {
                url: jwks_uris.join(", "),
                reason: "no usable RSA signing key".into(),
            });
        }
        Ok(Published {
            keys,
            issuers,
            fetched_at: (self.clock)(),
        })
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, FetchError> {
        let http = |reason: String| FetchError::Http {
            url: url.to_owned(),
            reason,
        };
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| http(e.to_string()))?;
        if !response.status().is_success() {
            return Err(http(format!("HTTP {}", response.status())));
        }
        let body = response.bytes().await.map_err(|e| http(e.to_string()))?;
        serde_json::from_slice(&body).map_err(|e| FetchError::Document {
            url: url.to_owned(),
            reason: e.to_string(),
        })
    }

    /// The keys published under `kid`. An unknown `kid`, or keys past the stale bound, cause one
    /// fetch if none happened in the last `unknown_kid_refetch_secs` (so the API recovers as soon
    /// as the identity provider does); otherwise the answer comes from the keys in hand, after
    /// any fetch already under way has finished.
    pub async fn lookup(&self, kid: &str) -> Lookup {
        let cached = self.lookup_cached(kid);
        if matches!(cached, Lookup::Found(_)) || self.in_memory {
            return cached;
        }
        let now = (self.clock)();
        let limit = self.settings.unknown_kid_refetch_secs;
        if now - self.last_kid_fetch.load(Ordering::Acquire) < limit {
            // A rotation reaches many requests at once: the first one fetches, and the others
            // wait for that fetch rather than be refused a key it is about to bring. The wait is
            // bounded (a hanging identity provider, or a flood of made-up kids during one, must
            // not park connections for a fetch's whole timeout), only for a kid not in the keys
            // in hand (no keys at all, or stale ones, are answered at once), and never starts a
            // second fetch. With no fetch under way the lock is free and this costs nothing.
            if matches!(cached, Lookup::Unknown) {
                let _ = tokio::time::timeout(KID_FETCH_WAIT, self.fetching.lock()).await;
                return self.lookup_cached(kid);
            }
            return cached;
        }
        let _single_flight = self.fetching.lock().await;
        // Whoever waited here while another request fetched finds the outcome without fetching.
        let cached = self.lookup_cached(kid);
        if matches!(cached, Lookup::Found(_))
            || now - self.last_kid_fetch.load(Ordering::Acquire) < limit
        {
            return cached;
        }
        self.last_kid_fetch.store(now, Ordering::Release);
        tracing::info!(%kid, "no usable key for this kid; fetching the JWKS");
        let _ = self.fetch_and_install().await;
        self.lookup_cached(kid)
    }

    fn lookup_cached(&self, kid: &str) -> Lookup {
        match self.fresh_snapshot() {
            Some(published) => match published.keys.get(kid) {
                Some(keys) => Lookup::Found(keys.clone()),
                None => Lookup::Unknown,
            },
            None => Lookup::Unavailable,
        }
    }

    /// Refreshes forever on the configured interval plus jitter; after a failure, retries every
    /// `unknown_kid_refetch_secs` (5 min) instead, so an outage shorter than the stale bound ends
    /// with fresh keys well before it. The task ends with the runtime.
    pub fn spawn_refresher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let store = Arc::clone(self);
        tokio::spawn(async move {
            let mut healthy = true;
            loop {
                let wait = if healthy {
                    let jitter = match store.settings.refresh_jitter_secs {
                        0 => 0,
                        j => rand::random_range(0..=j),
                    };
                    store.settings.refresh_interval_secs + jitter
                } else {
                    store.settings.unknown_kid_refetch_secs.max(1) as u64
                };
                tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
                healthy = store.refresh().await.is_ok();
            }
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::auth::{Reason, Validator, ValidatorSettings};
    use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
    use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;
    use std::sync::atomic::AtomicI64;

    pub(crate) const TID: &str = "72f1c3d4-5b6a-4c8d-9e0f-1a2b3c4d5e6f";
    pub(crate) const API: &str = "6e1f4a8b-2c3d-4e5f-8a9b-0c1d2e3f4a5b";
    pub(crate) const READER: &str = "0b9a1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d";
    pub(crate) const NOW: i64 = 1_800_000_000;

    pub(crate) fn rsa_jwk(pair: &KeyPair, kid: &str) -> serde_json::Value {
        let public = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        json!({
            "kty": "RSA", "use": "sig", "kid": kid,
            "n": URL_SAFE_NO_PAD.encode(&public.n), "e": URL_SAFE_NO_PAD.encode(&public.e),
            "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",
        })
    }

    pub(crate) fn issuers() -> HashMap<String, TenantIssuers> {
        HashMap::from([(
            TID.to_owned(),
            TenantIssuers {
                v2: format!("https://login.microsoftonline.com/{TID}/v2.0"),
                v1: format!("https://sts.windows.net/{TID}/"),
            },
        )])
    }

    fn clock_at(now: &Arc<AtomicI64>) -> Clock {
        let now = now.clone();
        Arc::new(move || now.load(Ordering::SeqCst))
    }

    pub(crate) fn sign(pair: &KeyPair, kid: &str, claims: &serde_json::Value) -> String {
        let header = json!({"typ": "JWT", "alg": "RS256", "kid": kid});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; pair.public_modulus_len()];
        pair.sign(
            &RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            input.as_bytes(),
            &mut signature,
        )
        .expect("signs");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// A v2 app-only token's claims for the reader, valid at `NOW` for `TID` and `API`.
    pub(crate) fn v2_app_claims() -> serde_json::Value {
        json!({
            "aud": API, "iss": format!("https://login.microsoftonline.com/{TID}/v2.0"),
            "iat": NOW - 300, "nbf": NOW - 300, "exp": NOW + 3600, "azp": READER, "azpacr": "1",
            "idtyp": "app", "oid": "sp", "sub": "sp", "tid": TID, "ver": "2.0",
            "roles": ["Tasks.Read.All"],
        })
    }

    #[tokio::test]
    async fn an_in_memory_key_set_serves_its_rsa_signing_keys_and_never_fetches() {
        let pair = KeyPair::generate(KeySize::Rsa2048).expect("RSA key");
        let jwks = json!({"keys": [
            rsa_jwk(&pair, "good"),
            {"kty": "EC", "use": "sig", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kty": "RSA", "use": "enc", "kid": "encryption", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "use": "sig", "n": "AQAB", "e": "AQAB"},
        ]});
        let now = Arc::new(AtomicI64::new(NOW));
        let store = KeyStore::from_jwks(
            jwks.to_string().as_bytes(),
            issuers(),
            KeySettings::default(),
            clock_at(&now),
        )
        .expect("usable");
        let published = store.snapshot().expect("installed at once");
        assert_eq!(
            published.keys.keys().collect::<Vec<_>>(),
            ["good"],
            "only the RSA signing key with a kid"
        );
        assert_eq!(published.issuers, issuers());
        assert_eq!(published.fetched_at, NOW);
        assert_eq!(store.readiness(), Readiness::Ready { age_secs: 0 });
        assert!(matches!(store.lookup("good").await, Lookup::Found(keys) if keys.len() == 1));
        assert!(matches!(store.lookup("rotated").await, Lookup::Unknown));
        assert!(store.refresh().await.is_err());
        assert_eq!(store.metrics.fetches.load(Ordering::Relaxed), 0);

        // The keys verify real signatures: a validator over the store accepts a token they signed.
        let validator = Validator::new(
            Arc::new(store),
            ValidatorSettings {
                audiences: vec![API.to_owned()],
                allowed_clients: vec![READER.to_owned()],
                ..Default::default()
            },
            clock_at(&now),
        );
        let claims = v2_app_claims();
        let token = sign(&pair, "good", &claims);
        let caller = validator
            .validate(Some(&format!("Bearer {token}")))
            .await
            .expect("accepted");
        assert_eq!(caller.client_app_id, READER);
        let stranger = sign(
            &KeyPair::generate(KeySize::Rsa2048).expect("RSA key"),
            "good",
            &claims,
        );
        let refused = validator
            .validate(Some(&format!("Bearer {stranger}")))
            .await
            .expect_err("another key's signature");
        assert_eq!(refused.reason, Reason::InvalidSignature);

        // The stale bound applies to keys given in memory too.
        now.fetch_add(KeySettings::default().max_stale_secs + 1, Ordering::SeqCst);
        assert!(matches!(
            validator.keys().lookup("good").await,
            Lookup::Unavailable
        ));
    }

    #[test]
    fn a_jwks_without_a_usable_key_is_refused() {
        let clock: Clock = Arc::new(|| NOW);
        for jwks in [
            r#"{"keys": []}"#,
            r#"{"keys": [{"kty": "RSA", "use": "sig", "kid": "k", "n": "!!", "e": "!!"}]}"#,
            r#"{"keys": [{"kty": "oct", "kid": "k", "k": "c2VjcmV0"}]}"#,
            "not json",
            r#"{"no_keys": true}"#,
        ] {
            let refused = KeyStore::from_jwks(
                jwks.as_bytes(),
                issuers(),
                KeySettings::default(),
                clock.clone(),
            );
            assert!(refused.is_err(), "{jwks}");
        }
    }
}
