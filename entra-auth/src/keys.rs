//! The accepted tenants' signing keys and issuers, from their OpenID discovery documents and JWKS.
//!
//! Microsoft's guidance, and where this goes further than the reference validators (table in
//! ENTRA-FACTS.md): keys are loaded before the API is ready; refreshed in the background (default
//! every 12 h with up to 1 h of jitter, so a fleet does not refetch at once); re-fetched when a
//! token names an unknown `kid`, at most once per 5 minutes, with concurrent misses collapsed into
//! one fetch while requests naming known keys never wait; and during an identity-provider outage
//! the last good keys keep working for a bounded time (default 24 h), after which validation fails
//! closed and readiness says so.
//!
//! Each tenant is judged on its own: its documents are fetched over HTTPS and bounded in size
//! ([`shared::jwks`]), an answer without a usable signing key is that tenant's failed fetch (its
//! last good keys stay, the other tenants' are untouched), and every key is bound to the tenants
//! whose JWKS published it: a key vouches only for the tenants that publish it, whether or not it
//! carries an `issuer` member.

use super::claims::TenantIssuers;
use aws_lc_rs::digest;
use jsonwebtoken::DecodingKey;
use serde::Deserialize;
use shared::clock::SharedClock;
use shared::config::ConfigError;
use shared::jwks::{self, Jwk, UrlPolicy};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// A map by `kid` or tenant ID, looked up on every request: hashed with foldhash (randomly
/// seeded; the hasher of actix-web's own header maps), a few times cheaper than the standard
/// SipHash on these 30-40 byte keys. Only the identity provider's answers and the configuration
/// fill these maps, so no client can choose keys that collide.
pub type KeyMap<V> = HashMap<String, V, foldhash::fast::RandomState>;

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

impl KeySettings {
    /// The `keys` section's rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.refresh_interval_secs < 60 {
            return Err(ConfigError::key(
                "keys.refresh_interval_secs",
                "must be at least 60",
            ));
        }
        if self.unknown_kid_refetch_secs < 10 {
            return Err(ConfigError::key(
                "keys.unknown_kid_refetch_secs",
                "must be at least 10: it is what keeps an unknown-kid flood off the identity provider",
            ));
        }
        if self.max_stale_secs <= 0 {
            return Err(ConfigError::key("keys.max_stale_secs", "must be positive"));
        }
        Ok(())
    }
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
    /// SHA-256 of the key's `n` and `e` as published: what makes two publications the same key
    /// (tenants of one cloud publish the same keys; a refresh re-publishes them), whatever `kid`
    /// they travel under.
    pub material: [u8; 32],
    /// The JWKS `issuer` member, when published (Entra: the v2 issuer, maybe with `{tenantid}`).
    pub issuer: Option<String>,
}

/// What one tenant published, from its last successful fetch.
pub struct TenantKeys {
    /// The v1 and v2 issuers of its discovery documents.
    pub issuers: TenantIssuers,
    /// `kid` → the keys its JWKS publishes under it (normally one).
    pub keys: KeyMap<Vec<Arc<PublishedKey>>>,
    pub fetched_at: i64,
}

impl TenantKeys {
    /// This tenant's own publication of the key `material` under `kid`, if it publishes it.
    pub fn publication(&self, kid: &str, material: &[u8; 32]) -> Option<&PublishedKey> {
        self.keys
            .get(kid)?
            .iter()
            .find(|k| k.material == *material)
            .map(|k| &**k)
    }
}

/// The keys in hand: every tenant's last good fetch, each judged on its own. One tenant's failed
/// or empty answer keeps that tenant's previous keys and touches no other tenant's.
pub struct Published {
    /// Tenant ID (lower case) → what it published.
    pub tenants: KeyMap<Arc<TenantKeys>>,
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

impl Readiness {
    pub fn is_ready(self) -> bool {
        matches!(self, Self::Ready { .. })
    }

    pub fn to_json(self) -> serde_json::Value {
        match self {
            Self::Ready { age_secs } => {
                serde_json::json!({ "state": "ready", "age_secs": age_secs })
            }
            Self::NotLoaded => serde_json::json!({ "state": "not_loaded" }),
            Self::Stale { age_secs } => {
                serde_json::json!({ "state": "stale", "age_secs": age_secs })
            }
        }
    }
}

pub enum Lookup {
    /// The distinct keys published under the `kid` by tenants whose keys are within the stale
    /// bound (one key, however many tenants publish it).
    Found(Vec<Arc<PublishedKey>>),
    Unknown,
    Unavailable,
}

pub use shared::jwks::FetchError;

/// How long a request with an unknown kid waits for a JWKS fetch already under way. Entra answers
/// a JWKS request in well under a second; a fetch slower than this is treated as failed for the
/// waiting request, which is refused as it would have been without waiting.
const KID_FETCH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Default)]
pub struct KeyMetrics {
    /// Refreshes attempted (each fetches every tenant's documents).
    pub fetches: AtomicU64,
    /// Tenants whose documents could not be fetched or used, summed over refreshes.
    pub failures: AtomicU64,
}

pub struct KeyStore {
    http: reqwest::Client,
    authority_host: String,
    /// Which URLs the documents may be fetched from (HTTPS; plain HTTP to loopback only when the
    /// deployment says so).
    urls: UrlPolicy,
    tenants: Vec<String>,
    settings: KeySettings,
    clock: SharedClock,
    /// The current snapshot. Readers clone the `Arc` under the read lock and drop the lock at
    /// once: lookups never wait on a fetch, and a fetch swaps in a whole new snapshot.
    current: RwLock<Option<Arc<Published>>>,
    /// Bumped after every new snapshot: a thread's copy ([`KeyStore::with_snapshot`]) is
    /// current while the version it was taken at is.
    version: AtomicU64,
    /// This store among others in the process, for the threads' copies.
    id: u64,
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

/// The RSA signing keys of a JWKS, under their `kid`s; others (no `kid`, another `kty` or `use`,
/// unusable components) are skipped. Empty when none is usable.
fn usable_keys(jwks: &[Jwk]) -> KeyMap<Vec<Arc<PublishedKey>>> {
    let mut keys: KeyMap<Vec<Arc<PublishedKey>>> = KeyMap::default();
    for jwk in jwks {
        let Some((kid, n, e)) = jwk.rsa_signing() else {
            continue;
        };
        match DecodingKey::from_rsa_components(n, e) {
            Ok(decoding) => {
                let mut material = digest::Context::new(&digest::SHA256);
                material.update(n.as_bytes());
                material.update(b".");
                material.update(e.as_bytes());
                let material = material.finish().as_ref().try_into().unwrap_or([0; 32]);
                let published = keys.entry(kid.to_owned()).or_default();
                // A JWKS listing one key twice under one kid holds it once.
                if published.iter().all(|k| k.material != material) {
                    published.push(Arc::new(PublishedKey {
                        decoding,
                        material,
                        issuer: jwk.issuer.clone(),
                    }));
                }
            }
            Err(err) => tracing::warn!(%kid, error = %err, "skipping an unusable JWKS key"),
        }
    }
    keys
}

impl KeyStore {
    pub fn new(
        http: reqwest::Client,
        authority_host: &str,
        urls: UrlPolicy,
        tenants: Vec<String>,
        settings: KeySettings,
        clock: SharedClock,
    ) -> Self {
        Self {
            http,
            authority_host: authority_host.trim_end_matches('/').to_owned(),
            urls,
            tenants: tenants.iter().map(|t| t.to_ascii_lowercase()).collect(),
            settings,
            clock,
            current: RwLock::new(None),
            version: AtomicU64::new(0),
            id: {
                static NEXT: AtomicU64 = AtomicU64::new(0);
                NEXT.fetch_add(1, Ordering::Relaxed)
            },
            fetching: tokio::sync::Mutex::new(()),
            last_kid_fetch: AtomicI64::new(i64::MIN / 2),
            in_memory: false,
            metrics: KeyMetrics::default(),
        }
    }

    /// A store of fixed keys, for embedding the validator where keys do not come over HTTP (an
    /// offline tool, a fuzz target): the RSA signing keys of the JWKS document `jwks`, published
    /// by every accepted tenant of `issuers` (tenant ID, lower case, → issuers). It never
    /// fetches: an unknown `kid` stays unknown and `refresh` fails. The keys count as fetched at
    /// `clock()` now, so the stale bound of `settings` still applies.
    pub fn from_jwks(
        jwks: &[u8],
        issuers: HashMap<String, TenantIssuers>,
        settings: KeySettings,
        clock: SharedClock,
    ) -> Result<Self, FetchError> {
        let document = |reason: String| FetchError::Document {
            url: "(in memory)".into(),
            reason,
        };
        let keys = usable_keys(&jwks::parse_jwks(jwks).map_err(document)?);
        if keys.is_empty() {
            return Err(document("no usable RSA signing key".into()));
        }
        // Never used (nothing is fetched), but the builder reports what `Client::new` would panic on.
        let http = reqwest::Client::builder()
            .build()
            .map_err(|e| document(e.to_string()))?;
        let mut store = Self::new(
            http,
            "",
            UrlPolicy::default(),
            issuers.keys().cloned().collect(),
            settings,
            clock,
        );
        store.in_memory = true;
        let fetched_at = store.clock.unix();
        let tenants = issuers
            .into_iter()
            .map(|(tid, issuers)| {
                let tenant = TenantKeys {
                    issuers,
                    keys: keys.clone(),
                    fetched_at,
                };
                (tid, Arc::new(tenant))
            })
            .collect();
        store.current = RwLock::new(Some(Arc::new(Published { tenants })));
        store.version = AtomicU64::new(1);
        Ok(store)
    }

    /// Runs `f` on the current snapshot, as [`KeyStore::snapshot`] would give it. Each thread
    /// keeps the snapshot it last saw and takes the lock only once a newer one is published, so
    /// the request path writes no memory the other workers read (the lock's reader count, the
    /// `Arc`'s reference count): on 2 cores those writes cost more than the lookups themselves.
    pub fn with_snapshot<R>(&self, f: impl FnOnce(Option<&Published>) -> R) -> R {
        type Seen = Option<(u64, u64, Option<Arc<Published>>)>;
        thread_local! {
            static SEEN: std::cell::RefCell<Seen> = const { std::cell::RefCell::new(None) };
        }
        // Acquire: a version seen here means its snapshot is in `current` (published first).
        let version = self.version.load(Ordering::Acquire);
        let ran = SEEN.with(move |seen| {
            // Busy only when called from inside another `with_snapshot` on this thread.
            let Ok(mut seen) = seen.try_borrow_mut() else {
                return Err(f);
            };
            let current = matches!(&*seen, Some((id, v, _)) if *id == self.id && *v == version);
            if !current {
                *seen = Some((self.id, version, self.snapshot()));
            }
            Ok(f(seen.as_ref().and_then(|(_, _, s)| s.as_deref())))
        });
        match ran {
            Ok(result) => result,
            Err(f) => f(self.snapshot().as_deref()),
        }
    }

    pub fn snapshot(&self) -> Option<Arc<Published>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether a tenant's keys are within the stale bound at `now`.
    pub fn is_fresh(&self, tenant: &TenantKeys, now: i64) -> bool {
        now - tenant.fetched_at <= self.settings.max_stale_secs
    }

    /// Whether `tid` is one of the accepted tenants (whether or not its keys have loaded).
    pub fn accepts(&self, tid: &str) -> bool {
        self.tenants.iter().any(|t| t.eq_ignore_ascii_case(tid))
    }

    /// `keys.max_stale_secs`, for the claim rules.
    pub fn max_stale_secs(&self) -> i64 {
        self.settings.max_stale_secs
    }

    /// Whether the keys are ready but within `lead` of their stale bound (never, for a lead of
    /// 0): a replica can leave its balancer's rotation before its keys fail closed.
    pub fn expires_within(&self, lead: std::time::Duration) -> bool {
        let lead_secs = i64::try_from(lead.as_secs()).unwrap_or(i64::MAX);
        let bound = self.max_stale_secs().saturating_sub(lead_secs);
        lead_secs > 0
            && matches!(self.readiness(), Readiness::Ready { age_secs } if age_secs > bound)
    }

    /// Every accepted tenant's keys, judged on their own.
    pub fn tenant_readiness(&self) -> Vec<(String, Readiness)> {
        let snapshot = self.snapshot();
        self.tenants
            .iter()
            .map(|tid| {
                let tenant = snapshot.as_ref().and_then(|s| s.tenants.get(tid));
                let readiness = tenant.map_or(Readiness::NotLoaded, |t| self.judge(t));
                (tid.clone(), readiness)
            })
            .collect()
    }

    /// Ready when every accepted tenant's keys are loaded and within the stale bound (the age of
    /// the oldest); otherwise what the worst tenant is: not loaded, then stale.
    pub fn readiness(&self) -> Readiness {
        let mut overall = Readiness::Ready { age_secs: 0 };
        for (_, readiness) in self.tenant_readiness() {
            overall = match (overall, readiness) {
                (Readiness::NotLoaded, _) | (_, Readiness::NotLoaded) => Readiness::NotLoaded,
                (Readiness::Stale { age_secs: a }, Readiness::Stale { age_secs: b }) => {
                    Readiness::Stale { age_secs: a.max(b) }
                }
                (stale @ Readiness::Stale { .. }, _) | (_, stale @ Readiness::Stale { .. }) => {
                    stale
                }
                (Readiness::Ready { age_secs: a }, Readiness::Ready { age_secs: b }) => {
                    Readiness::Ready { age_secs: a.max(b) }
                }
            };
        }
        overall
    }

    /// For a `/readyz` body: the overall state and each tenant's, e.g.
    /// `{"state": "ready", "age_secs": 12, "tenants": {"<tid>": {"state": "ready", …}}}`.
    pub fn readiness_report(&self) -> serde_json::Value {
        let mut report = self.readiness().to_json();
        report["tenants"] = self
            .tenant_readiness()
            .into_iter()
            .map(|(tenant, readiness)| (tenant, readiness.to_json()))
            .collect::<serde_json::Map<_, _>>()
            .into();
        report
    }

    /// The stale bound, as readiness says it.
    fn judge(&self, tenant: &TenantKeys) -> Readiness {
        let now = self.clock.unix();
        let age_secs = now - tenant.fetched_at;
        if !self.is_fresh(tenant, now) {
            Readiness::Stale { age_secs }
        } else {
            Readiness::Ready { age_secs }
        }
    }

    /// Fetches every tenant's documents, judging each tenant's answer on its own: a tenant whose
    /// documents cannot be fetched or hold no usable signing key keeps its last good keys (until
    /// the stale bound), and the others' new keys are swapped in. Fails if any tenant failed.
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
        let previous = self.snapshot();
        let mut tenants = KeyMap::default();
        let mut first_error = None;
        // One JWKS answer per URL per refresh, for tenants that share one (a cloud's common keys).
        let mut jwks_answers: HashMap<String, Result<Vec<Jwk>, FetchError>> = HashMap::new();
        for tid in &self.tenants {
            match self.fetch_tenant(tid, &mut jwks_answers).await {
                Ok(keys) => {
                    tracing::info!(tenant = %tid, kids = keys.keys.len(), "signing keys loaded");
                    tenants.insert(tid.clone(), Arc::new(keys));
                }
                Err(e) => {
                    self.metrics.failures.fetch_add(1, Ordering::Relaxed);
                    let kept = previous.as_ref().and_then(|p| p.tenants.get(tid)).cloned();
                    let readiness = kept
                        .as_ref()
                        .map_or(Readiness::NotLoaded, |t| self.judge(t));
                    tracing::warn!(tenant = %tid, error = %e, ?readiness, "fetching this tenant's signing keys failed; keeping its last good keys");
                    if let Some(kept) = kept {
                        tenants.insert(tid.clone(), kept);
                    }
                    first_error.get_or_insert(e);
                }
            }
        }
        *self.current.write().unwrap_or_else(|p| p.into_inner()) =
            Some(Arc::new(Published { tenants }));
        self.version.fetch_add(1, Ordering::Release);
        match first_error {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    /// One tenant's discovery documents and JWKS, all over HTTPS (see [`UrlPolicy`]), bounded in
    /// size, and at least one usable signing key.
    async fn fetch_tenant(
        &self,
        tid: &str,
        jwks_answers: &mut HashMap<String, Result<Vec<Jwk>, FetchError>>,
    ) -> Result<TenantKeys, FetchError> {
        let v2_url = format!(
            "{}/{tid}/v2.0/.well-known/openid-configuration",
            self.authority_host
        );
        let v2 = self.discovery(&v2_url).await?;
        let v1 = self
            .discovery(&format!(
                "{}/{tid}/.well-known/openid-configuration",
                self.authority_host
            ))
            .await?;
        let jwks_uri = v2.jwks_uri.ok_or_else(|| FetchError::Document {
            url: v2_url,
            reason: "no jwks_uri".into(),
        })?;
        if !jwks_answers.contains_key(&jwks_uri) {
            let answer = async {
                let body =
                    jwks::get_bounded(&self.http, &jwks_uri, self.urls, jwks::MAX_JWKS_BYTES)
                        .await?;
                jwks::parse_jwks(&body).map_err(|reason| FetchError::Document {
                    url: jwks_uri.clone(),
                    reason,
                })
            }
            .await;
            jwks_answers.insert(jwks_uri.clone(), answer);
        }
        let jwks = match &jwks_answers[&jwks_uri] {
            Ok(jwks) => jwks,
            Err(e) => {
                return Err(FetchError::Document {
                    url: jwks_uri.clone(),
                    reason: match e {
                        FetchError::Http { reason, .. } | FetchError::Document { reason, .. } => {
                            reason.clone()
                        }
                    },
                });
            }
        };
        let keys = usable_keys(jwks);
        if keys.is_empty() {
            return Err(FetchError::Document {
                url: jwks_uri,
                reason: "no usable RSA signing key".into(),
            });
        }
        Ok(TenantKeys {
            issuers: TenantIssuers {
                v2: v2.issuer,
                v1: v1.issuer,
            },
            keys,
            fetched_at: self.clock.unix(),
        })
    }

    /// A discovery document: bounded, UTF-8 JSON, and naming no URL the policy refuses.
    async fn discovery(&self, url: &str) -> Result<Discovery, FetchError> {
        let document = |reason: String| FetchError::Document {
            url: url.to_owned(),
            reason,
        };
        let body = jwks::get_bounded(&self.http, url, self.urls, jwks::MAX_DISCOVERY_BYTES).await?;
        let text = std::str::from_utf8(&body).map_err(|e| document(e.to_string()))?;
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| document(e.to_string()))?;
        self.urls.check_document(&value).map_err(document)?;
        serde_json::from_value(value).map_err(|e| document(e.to_string()))
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
        let now = self.clock.unix();
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
        let Some(published) = self.snapshot() else {
            return Lookup::Unavailable;
        };
        let now = self.clock.unix();
        let mut any_fresh = false;
        let mut found: Vec<Arc<PublishedKey>> = Vec::new();
        for tenant in published.tenants.values().filter(|t| self.is_fresh(t, now)) {
            any_fresh = true;
            for key in tenant.keys.get(kid).into_iter().flatten() {
                if found.iter().all(|k| k.material != key.material) {
                    found.push(key.clone());
                }
            }
        }
        match (any_fresh, found.is_empty()) {
            (false, _) => Lookup::Unavailable,
            (true, true) => Lookup::Unknown,
            (true, false) => Lookup::Found(found),
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
    use crate::{Reason, Validator, ValidatorSettings};
    use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
    use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;
    use shared::clock::ManualClock;

    pub(crate) const TID: &str = entra_emulator::demo::TENANT;
    pub(crate) const API: &str = entra_emulator::demo::tasks_api::CLIENT_ID;
    pub(crate) const READER: &str = entra_emulator::demo::reader_job::CLIENT_ID;
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
        let clock = Arc::new(ManualClock::at_unix(NOW));
        let store = KeyStore::from_jwks(
            jwks.to_string().as_bytes(),
            issuers(),
            KeySettings::default(),
            clock.clone(),
        )
        .expect("usable");
        let published = store.snapshot().expect("installed at once");
        let tenant = &published.tenants[TID];
        assert_eq!(
            tenant.keys.keys().collect::<Vec<_>>(),
            ["good"],
            "only the RSA signing key with a kid"
        );
        assert_eq!(tenant.issuers, issuers()[TID]);
        assert_eq!(tenant.fetched_at, NOW);
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
            clock.clone(),
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
        clock.advance_secs(KeySettings::default().max_stale_secs + 1);
        assert!(matches!(
            validator.keys().lookup("good").await,
            Lookup::Unavailable
        ));
    }

    #[test]
    fn a_jwks_without_a_usable_key_is_refused() {
        let clock: SharedClock = Arc::new(ManualClock::at_unix(NOW));
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
