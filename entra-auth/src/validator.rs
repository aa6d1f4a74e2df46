//! The whole validation, in order: pre-parse, key, signature (once per token, cached), claims
//! (every request) and the app-only policy. The cache spares the RSA check, never the claims: a
//! token's times, key, issuer and audience are judged again against the current time and keys
//! on each use. The policy's verdict is kept with each thread's cached verification, because it
//! depends only on the claims and the validator's allow-list, and neither ever changes.

use super::claims::{self, ClaimRules, Signer};
use super::error::{AuthError, Reason};
use super::keys::{KeyStore, Lookup, Published};
use super::policy::{self, AppCaller};
use super::token::{PreParsed, bearer, bearer_bytes, check_jws, header_text};
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use shared::claims::AccessTokenClaims;
use shared::clock::SharedClock;
use shared::config::ConfigError;
use std::collections::HashSet;
use std::hash::{BuildHasher as _, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValidatorSettings {
    /// The API's client ID and application ID URI(s). Required: a token for anything else is
    /// refused.
    #[serde(deserialize_with = "shared::config::list")]
    pub audiences: Vec<String>,
    /// Client application IDs allowed to call at all (then each route checks roles). Required.
    #[serde(deserialize_with = "shared::config::list")]
    pub allowed_clients: Vec<String>,
    /// Default 60 s.
    pub clock_skew_secs: i64,
    /// Default 16 KiB: Entra access tokens are 1–3 KiB; Microsoft.Identity.Web allows 250 KB,
    /// which only helps an attacker make each request expensive.
    pub max_token_bytes: usize,
    /// Verified tokens remembered. Default 10,000: far more distinct live tokens than a mesh of
    /// callers holds. Only tokens that passed every check are cached (issued by an accepted
    /// tenant, for this API, to an allowed client), each holding the token and its claims: ~3 KB
    /// for an Entra token, so ~30 MB at most in practice (the 16 KiB size cap bounds the worst
    /// case at ~320 MB, of tokens that only allowed clients can obtain). 0 turns the cache off
    /// (every request pays an RSA check; for measuring, or for the very cautious).
    pub cache_capacity: u64,
    /// A cached verification lives until the token's `exp`, at most this long. Default 1 h.
    pub cache_max_ttl_secs: u64,
}

impl ValidatorSettings {
    /// The `auth` section's rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.audiences.is_empty() {
            return Err(ConfigError::key(
                "auth.audiences",
                "must list the API's client ID and/or application ID URI",
            ));
        }
        if self.audiences.iter().any(|a| a.trim().is_empty()) {
            return Err(ConfigError::key(
                "auth.audiences",
                "must not hold an empty entry (it would match a token without `aud`)",
            ));
        }
        if self.allowed_clients.is_empty() {
            return Err(ConfigError::key(
                "auth.allowed_clients",
                "must list the client application IDs allowed to call this API",
            ));
        }
        for client in &self.allowed_clients {
            if uuid::Uuid::parse_str(client).is_err() {
                return Err(ConfigError::key(
                    "auth.allowed_clients",
                    format!("must hold application (client) IDs, not `{client}`"),
                ));
            }
        }
        if !(0..=600).contains(&self.clock_skew_secs) {
            return Err(ConfigError::key(
                "auth.clock_skew_secs",
                "must be between 0 and 600",
            ));
        }
        if self.max_token_bytes < 1024 {
            return Err(ConfigError::key(
                "auth.max_token_bytes",
                "must be at least 1024 (Entra tokens are 1-3 KiB)",
            ));
        }
        if !(1..=86_400).contains(&self.cache_max_ttl_secs) {
            return Err(ConfigError::key(
                "auth.cache_max_ttl_secs",
                "must be between 1 and 86400",
            ));
        }
        Ok(())
    }
}

impl Default for ValidatorSettings {
    fn default() -> Self {
        Self {
            audiences: Vec::new(),
            allowed_clients: Vec::new(),
            clock_skew_secs: 60,
            max_token_bytes: 16 * 1024,
            cache_capacity: 10_000,
            cache_max_ttl_secs: 3600,
        }
    }
}

/// A token whose signature verified: the token itself (a cache hit must be these very bytes), its
/// claims, and the key that signed it (its `kid` and material, so that each use can ask whether
/// the token's tenant still publishes that very key).
struct Verified {
    token: Box<str>,
    claims: AccessTokenClaims,
    kid: String,
    material: [u8; 32],
    ttl: Duration,
    /// When the verification was made plus `ttl`, on the validator's clock: the end of its life
    /// in this thread's front cache (the shared cache keeps its own time).
    expires_at: i64,
}

/// Slots of each thread's front cache.
const FRONT_SLOTS: usize = 16;

/// One slot of a thread's front cache: a verification another lookup of the same thread found.
struct FrontSlot {
    validator: u64,
    key: u64,
    verified: Arc<Verified>,
    /// The caller the policy made of it, handed out (cloned) on each hit: the policy's verdict
    /// depends only on the claims and this validator's allow-list, both fixed.
    caller: AppCaller,
}

thread_local! {
    /// Each thread's last verifications, in front of the shared cache: a hit here touches no
    /// memory another thread writes (no lock, no reference count, no access log), which is
    /// what the shared cache's lookup costs on every request. Slot by cache key; a slot holds
    /// one validator's entry at a time (`validator` tells them apart).
    static FRONT: std::cell::RefCell<[Option<FrontSlot>; FRONT_SLOTS]> =
        std::cell::RefCell::new(std::array::from_fn(|_| None));
}

/// What the checks after the signature made of a verified token.
enum Judged {
    Accepted(AppCaller),
    Refused(AuthError),
    /// Its key is no longer published by a tenant with fresh keys: forget the verification.
    Unpublished,
}

struct UntilExpiry;

impl moka::Expiry<u64, Arc<Verified>> for UntilExpiry {
    fn expire_after_create(&self, _: &u64, value: &Arc<Verified>, _: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

#[derive(Default)]
pub struct ValidatorMetrics {
    pub cache_hits: crate::metrics::Counter,
    pub signature_checks: AtomicU64,
}

pub struct Validator {
    keys: Arc<KeyStore>,
    settings: ValidatorSettings,
    allowed_clients: HashSet<String>,
    clock: SharedClock,
    /// Verified tokens by [`Validator::cache_key`].
    cache: moka::future::Cache<u64, Arc<Verified>>,
    /// SipHash keys drawn at random for this validator: which tokens share a cache key cannot be
    /// known, let alone chosen, from outside.
    cache_hasher: RandomState,
    /// This validator among others in the process, for the threads' front caches.
    id: u64,
    pub metrics: ValidatorMetrics,
}

impl Validator {
    pub fn new(keys: Arc<KeyStore>, settings: ValidatorSettings, clock: SharedClock) -> Self {
        let cache = moka::future::Cache::builder()
            .max_capacity(settings.cache_capacity)
            .expire_after(UntilExpiry)
            .build();
        Self {
            allowed_clients: settings
                .allowed_clients
                .iter()
                .map(|c| c.to_ascii_lowercase())
                .collect(),
            keys,
            settings,
            clock,
            cache,
            cache_hasher: RandomState::new(),
            id: {
                static NEXT: AtomicU64 = AtomicU64::new(0);
                NEXT.fetch_add(1, Ordering::Relaxed)
            },
            metrics: ValidatorMetrics::default(),
        }
    }

    /// Where a token lives in the cache: a keyed hash of its last 32 bytes, the end of its
    /// signature (an RS256 signature is 342 characters that nobody without the key can predict
    /// for a new token). The key only finds a slot; a hit counts only if the slot holds these very
    /// bytes (one comparison of the whole token), so two tokens sharing a key, by chance or by
    /// design, cost a verification and never let one pass as the other. Hashing 32 bytes instead
    /// of the whole 1–2 KiB token with SHA-256 is most of what a cached validation saves.
    fn cache_key(&self, token: &[u8]) -> u64 {
        let tail = &token[token.len().saturating_sub(32)..];
        self.cache_hasher.hash_one(tail)
    }

    /// This thread's front cache: `token`'s verification judged in place, under no lock another
    /// thread takes (a hit is counted); `None` when this thread holds no live verification of
    /// these very bytes.
    fn front(&self, token: &[u8], key: u64, now: i64) -> Option<Judged> {
        if self.settings.cache_capacity == 0 {
            return None;
        }
        let judged = FRONT.with(|front| {
            let front = front.borrow();
            let slot = front[key as usize % FRONT_SLOTS].as_ref()?;
            let hit = slot.validator == self.id
                && slot.key == key
                && now < slot.verified.expires_at
                && *slot.verified.token.as_bytes() == *token;
            hit.then(|| self.judge(&slot.verified, Some(&slot.caller), now))
        })?;
        self.metrics.cache_hits.fetch_add(1, Ordering::Relaxed);
        Some(judged)
    }

    /// As [`Validator::validate`], from the header value's bytes as they arrived. A token this
    /// thread has verified is found by its bytes and judged without the header's text checks
    /// (visible ASCII): only tokens that passed [`check_jws`] are ever cached, and it admits
    /// nothing but base64url and two dots, while the scheme before them must spell `bearer` and
    /// the separator is one space; so such a header is visible ASCII. Anything else gets the
    /// text checks, then is judged as `validate` judges it.
    pub async fn validate_header(&self, value: Option<&[u8]>) -> Result<AppCaller, AuthError> {
        let now = self.clock.unix();
        if let Some(token) = value.and_then(|v| bearer_bytes(v, self.settings.max_token_bytes)) {
            let key = self.cache_key(token);
            if let Some(judged) = self.front(token, key, now) {
                return self.settle(judged, key).await;
            }
        }
        let text = value.map(header_text).transpose()?;
        let token = bearer(text, self.settings.max_token_bytes)?;
        self.beyond_the_front(token, self.cache_key(token.as_bytes()), now)
            .await
    }

    pub fn keys(&self) -> &Arc<KeyStore> {
        &self.keys
    }

    /// Validates the `Authorization` header value and returns the app-only caller.
    pub async fn validate(&self, authorization: Option<&str>) -> Result<AppCaller, AuthError> {
        let token = bearer(authorization, self.settings.max_token_bytes)?;
        let key = self.cache_key(token.as_bytes());
        let now = self.clock.unix();
        if let Some(judged) = self.front(token.as_bytes(), key, now) {
            return self.settle(judged, key).await;
        }
        self.beyond_the_front(token, key, now).await
    }

    /// A token this thread's front cache did not hold: the shared cache, else the signature;
    /// then the claims and the policy, and an accepted token remembered in both caches.
    async fn beyond_the_front(
        &self,
        token: &str,
        key: u64,
        now: i64,
    ) -> Result<AppCaller, AuthError> {
        let caching = self.settings.cache_capacity > 0;
        let cached = match caching {
            false => None,
            true => self
                .cache
                .get(&key)
                .await
                .filter(|hit| *hit.token == *token),
        };
        let (verified, fresh) = match cached {
            Some(hit) => {
                self.metrics.cache_hits.fetch_add(1, Ordering::Relaxed);
                (hit, false)
            }
            None => {
                // The header checks run only here: a cache hit is the very same bytes, which
                // passed them when first verified.
                let pre = check_jws(token)?;
                let verified = Arc::new(self.verify_signature(token, pre, now).await?);
                (verified, true)
            }
        };
        let judged = self.judge(&verified, None, now);
        if let (true, Judged::Accepted(caller)) = (caching, &judged) {
            // Only tokens that passed every check take a cache slot: a validly signed token of
            // a foreign tenant (Entra's keys are shared across tenants) cannot fill the cache
            // and evict real callers.
            if fresh {
                self.cache.insert(key, verified.clone()).await;
            }
            let caller = caller.clone();
            FRONT.with(|front| {
                front.borrow_mut()[key as usize % FRONT_SLOTS] = Some(FrontSlot {
                    validator: self.id,
                    key,
                    verified,
                    caller,
                });
            });
        }
        self.settle(judged, key).await
    }

    /// The answer for a judged token; an unpublished key's verification is forgotten, in the
    /// shared cache and in this thread's front cache.
    async fn settle(&self, judged: Judged, key: u64) -> Result<AppCaller, AuthError> {
        match judged {
            Judged::Accepted(caller) => Ok(caller),
            Judged::Refused(refused) => Err(refused),
            Judged::Unpublished => {
                FRONT.with(|front| {
                    let mut front = front.borrow_mut();
                    let slot = &mut front[key as usize % FRONT_SLOTS];
                    if slot
                        .as_ref()
                        .is_some_and(|s| s.validator == self.id && s.key == key)
                    {
                        *slot = None;
                    }
                });
                self.cache.invalidate(&key).await;
                Err(AuthError::new(Reason::UnknownSigningKey))
            }
        }
    }

    /// Everything after the signature, on every request, cached or not: the keys in hand, the
    /// claims and the app-only policy (`accepted`: the caller the policy already made of this
    /// very verification, which it would make again).
    fn judge(&self, verified: &Verified, accepted: Option<&AppCaller>, now: i64) -> Judged {
        // Keys past the stale bound fail closed for cached tokens too, not only for new ones; and
        // a cached verification counts only while its key is still published by a tenant whose
        // keys are fresh: a retired key's tokens stop working at once, not at their expiry.
        self.keys.with_snapshot(|published| match published {
            Some(published) => self.judge_with(verified, accepted, published, now),
            None => Judged::Refused(AuthError::new(Reason::KeysUnavailable)),
        })
    }

    fn judge_with(
        &self,
        verified: &Verified,
        accepted: Option<&AppCaller>,
        published: &Published,
        now: i64,
    ) -> Judged {
        let mut any_fresh = false;
        let mut still_published = false;
        for tenant in published.tenants.values() {
            if self.keys.is_fresh(tenant, now) {
                any_fresh = true;
                if tenant
                    .publication(&verified.kid, &verified.material)
                    .is_some()
                {
                    still_published = true;
                    break;
                }
            }
        }
        if !any_fresh {
            return Judged::Refused(AuthError::new(Reason::KeysUnavailable));
        }
        if !still_published {
            return Judged::Unpublished;
        }
        let rules = ClaimRules {
            tenants: &published.tenants,
            audiences: &self.settings.audiences,
            clock_skew_secs: self.settings.clock_skew_secs,
            max_stale_secs: self.keys.max_stale_secs(),
        };
        let signer = Signer {
            kid: &verified.kid,
            material: &verified.material,
        };
        if let Err(refused) = claims::check(&verified.claims, signer, &rules, now) {
            // An accepted tenant missing from the keys in hand has not loaded yet (its identity
            // provider unreachable since start): say so (503), not that the tenant is refused.
            return Judged::Refused(match verified.claims.tid.as_deref() {
                Some(tid) if refused.reason == Reason::InvalidTenant && self.keys.accepts(tid) => {
                    AuthError::new(Reason::KeysUnavailable)
                }
                _ => refused,
            });
        }
        if let Some(caller) = accepted {
            return Judged::Accepted(caller.clone());
        }
        match policy::app_caller(&verified.claims, &self.allowed_clients) {
            Ok(caller) => Judged::Accepted(caller),
            Err(refused) => Judged::Refused(refused),
        }
    }

    /// The RS256 signature by a key published under the token's `kid`, then (only then) the
    /// claims: RFC 7519 §7.2 wants the claims set to be UTF-8 JSON, so the whole payload is held
    /// to UTF-8 before it is parsed, including strings of claims nobody reads (serde skips those
    /// unchecked).
    async fn verify_signature(
        &self,
        token: &str,
        pre: PreParsed<'_>,
        now: i64,
    ) -> Result<Verified, AuthError> {
        let keys = match self.keys.lookup(&pre.kid).await {
            Lookup::Found(keys) => keys,
            Lookup::Unknown => return Err(AuthError::new(Reason::UnknownSigningKey)),
            Lookup::Unavailable => return Err(AuthError::new(Reason::KeysUnavailable)),
        };
        self.metrics
            .signature_checks
            .fetch_add(1, Ordering::Relaxed);
        let signed_by = keys.iter().find(|key| {
            jsonwebtoken::crypto::verify(
                pre.signature,
                pre.signing_input.as_bytes(),
                &key.decoding,
                Algorithm::RS256,
            )
            .unwrap_or(false)
        });
        let Some(key) = signed_by else {
            return Err(AuthError::new(Reason::InvalidSignature));
        };
        let claims: AccessTokenClaims = shared::jose::json_part(pre.payload)
            .map_err(|_| AuthError::new(Reason::MalformedToken))?;
        // Saturating: `exp` is whatever the issuer signed, i64::MIN included.
        let remaining = claims.exp.saturating_sub(now).max(0) as u64;
        let ttl = remaining.min(self.settings.cache_max_ttl_secs);
        Ok(Verified {
            token: token.into(),
            ttl: Duration::from_secs(ttl),
            expires_at: now.saturating_add(ttl as i64),
            claims,
            kid: pre.kid,
            material: key.material,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeySettings;
    use crate::keys::tests::{NOW, READER, issuers, rsa_jwk, sign, v2_app_claims};
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    use serde_json::json;

    /// A validator for the demo claims, trusting `pair`'s public key as kid `k`, at [`NOW`],
    /// allowing the reader.
    fn validator_for(pair: &KeyPair) -> Validator {
        validator_allowing(pair, &[READER])
    }

    fn validator_allowing(pair: &KeyPair, allowed: &[&str]) -> Validator {
        let clock: SharedClock = Arc::new(shared::clock::ManualClock::at_unix(NOW));
        let store = KeyStore::from_jwks(
            json!({"keys": [rsa_jwk(pair, "k")]}).to_string().as_bytes(),
            issuers(),
            KeySettings::default(),
            clock.clone(),
        )
        .expect("usable");
        Validator::new(
            Arc::new(store),
            ValidatorSettings {
                audiences: vec![v2_app_claims()["aud"].as_str().expect("aud").to_owned()],
                allowed_clients: allowed.iter().map(|c| (*c).to_owned()).collect(),
                ..Default::default()
            },
            clock,
        )
    }

    #[tokio::test]
    async fn a_threads_front_cache_serves_its_own_validator_only() {
        let pair = KeyPair::generate(KeySize::Rsa2048).expect("RSA key");
        let token = format!("Bearer {}", sign(&pair, "k", &v2_app_claims()));
        let allowing = validator_for(&pair);
        for _ in 0..3 {
            allowing.validate(Some(&token)).await.expect("valid");
        }
        assert_eq!(allowing.metrics.signature_checks.load(Ordering::Relaxed), 1);
        assert_eq!(allowing.metrics.cache_hits.load(Ordering::Relaxed), 2);
        // Same thread, same token, another validator whose allow-list lacks the reader: it
        // verifies for itself and refuses, whatever this thread remembers for the first.
        let refusing = validator_allowing(&pair, &["another-client"]);
        for _ in 0..2 {
            let refused = refusing
                .validate(Some(&token))
                .await
                .expect_err("not allowed");
            assert_eq!(refused.reason, Reason::ClientNotAllowed);
        }
        assert_eq!(refusing.metrics.cache_hits.load(Ordering::Relaxed), 0);
        allowing.validate(Some(&token)).await.expect("still valid");
    }

    #[tokio::test]
    async fn the_header_bytes_hit_only_the_very_token_and_a_miss_is_checked_as_text() {
        let pair = KeyPair::generate(KeySize::Rsa2048).expect("RSA key");
        let validator = validator_for(&pair);
        let token = sign(&pair, "k", &v2_app_claims());
        let header = |scheme: &str, suffix: &[u8]| {
            let mut value = format!("{scheme} {token}").into_bytes();
            value.extend_from_slice(suffix);
            value
        };
        let hits = || validator.metrics.cache_hits.load(Ordering::Relaxed);
        let reason = |value: Vec<u8>| {
            let validator = &validator;
            async move {
                validator
                    .validate_header(Some(&value))
                    .await
                    .expect_err("refused")
                    .reason
            }
        };

        // First seen as bytes: every check, then remembered; the scheme in any case then hits.
        for scheme in ["Bearer", "bEARER", "bearer"] {
            let caller = validator
                .validate_header(Some(&header(scheme, b"")))
                .await
                .expect("valid");
            assert_eq!(caller.client_app_id, READER);
        }
        assert_eq!(hits(), 2);
        assert_eq!(
            validator.metrics.signature_checks.load(Ordering::Relaxed),
            1
        );

        // Not the very bytes: judged as text first, and refused for what the text is.
        for byte in [0x00, b'\n', 0x7f, 0x80, 0xff] {
            assert_eq!(
                reason(header("Bearer", &[byte])).await,
                Reason::MalformedAuthorizationHeader,
                "byte {byte:#04x} after the token"
            );
            let mut scheme = header("Bearer", b"");
            scheme[2] = byte;
            assert_eq!(
                reason(scheme).await,
                Reason::MalformedAuthorizationHeader,
                "byte {byte:#04x} in the scheme"
            );
        }
        assert_eq!(reason(header("Basic", b"")).await, Reason::MissingToken);
        assert_eq!(
            reason(header("Bearer", b" ")).await,
            Reason::MalformedAuthorizationHeader
        );
        assert_eq!(
            validator
                .validate_header(None)
                .await
                .expect_err("no header")
                .reason,
            Reason::MissingToken
        );
        assert_eq!(hits(), 2, "none of those was taken for the cached token");
    }

    #[tokio::test]
    async fn a_signed_exp_at_the_edge_of_i64_is_refused_not_overflowed() {
        // exp - now overflowed (a panic with overflow checks, a wrapped TTL without); found by
        // reading, replayed by fuzz/regressions/validator/exp-i64-min.
        let pair = KeyPair::generate(KeySize::Rsa2048).expect("RSA key");
        let validator = validator_for(&pair);
        for exp in [i64::MIN, i64::MIN + 1, -1] {
            let mut claims = v2_app_claims();
            claims["exp"] = exp.into();
            let token = sign(&pair, "k", &claims);
            let refused = validator
                .validate(Some(&format!("Bearer {token}")))
                .await
                .expect_err("expired");
            assert_eq!(refused.reason, Reason::Expired, "exp {exp}");
        }
        let mut claims = v2_app_claims();
        claims["exp"] = i64::MAX.into();
        let token = sign(&pair, "k", &claims);
        assert!(
            validator
                .validate(Some(&format!("Bearer {token}")))
                .await
                .is_ok(),
            "exp i64::MAX"
        );
    }

    #[tokio::test]
    async fn a_cache_hit_is_the_very_token_verified_not_one_sharing_its_key() {
        let pair = KeyPair::generate(KeySize::Rsa2048).expect("RSA key");
        let validator = validator_for(&pair);
        let token = sign(&pair, "k", &v2_app_claims());
        for _ in 0..2 {
            validator
                .validate(Some(&format!("Bearer {token}")))
                .await
                .expect("valid");
        }
        assert_eq!(validator.metrics.cache_hits.load(Ordering::Relaxed), 1);

        // The same signature (so the same cache key) under other claims (its roles swapped
        // for more): it must be verified, and fail, not be taken for the cached token.
        let (signing_input, signature) = token.rsplit_once('.').expect("three parts");
        let (header, _) = signing_input.split_once('.').expect("three parts");
        let mut claims = v2_app_claims();
        claims["roles"] = json!(["Tasks.ReadWrite.All"]);
        let payload = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            claims.to_string(),
        );
        let forged = format!("{header}.{payload}.{signature}");
        assert_eq!(
            validator.cache_key(forged.as_bytes()),
            validator.cache_key(token.as_bytes())
        );
        let refused = validator
            .validate(Some(&format!("Bearer {forged}")))
            .await
            .expect_err("forged");
        assert_eq!(refused.reason, Reason::InvalidSignature);
        assert_eq!(validator.metrics.cache_hits.load(Ordering::Relaxed), 1);
        assert_eq!(
            validator.metrics.signature_checks.load(Ordering::Relaxed),
            2
        );
        // The genuine token is still cached.
        validator
            .validate(Some(&format!("Bearer {token}")))
            .await
            .expect("valid");
        assert_eq!(validator.metrics.cache_hits.load(Ordering::Relaxed), 2);
    }
}
