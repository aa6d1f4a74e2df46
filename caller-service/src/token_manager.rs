//! The token manager: client-credentials tokens for many scopes, kept fresh in the background.
//!
//! # Shape
//! One [`Entry`] per scope (a manager acquires for one identity). Each entry has
//! - `state`, a `std::sync::RwLock`: the current token and the refresh/failure bookkeeping. It is
//!   never held across an `.await`, so a reader waits at most for another thread's few-nanosecond
//!   update, never for the network. A std lock (not tokio's) because the critical sections are
//!   tiny and synchronous, and the read path must not yield.
//! - `single_flight`, a `tokio::sync::Mutex<()>` held across the identity-provider request: at most
//!   one acquisition per entry is in flight, whoever started it (a caller without a token, or the
//!   refresher). Callers that hold a valid token never touch it.
//! - a refresher task that sleeps on the [`Clock`] until the entry's next planned attempt (early
//!   refresh, or a retry after a failure) and then acquires, even if no job is calling.
//!
//! # Coalescing (instead of `moka::try_get_with`)
//! A caller that finds no usable token notes the entry's attempt counter, queues on
//! `single_flight`, and when it gets the lock checks the counter again: if an attempt finished
//! while it queued, it takes that attempt's outcome (the token, or the *same* error) instead of
//! making its own request. That is what `try_get_with` gives (concurrent misses share one
//! initialisation, errors included, and errors are not cached for later callers), without a
//! second cache whose expiry runs on its own clock: our validity rules (refresh point, safety
//! margin, serving a previous token while refreshes fail) need our clock, and the read path
//! stays two uncontended read locks (the scope map's and the entry's).
//!
//! # Numbers
//! See [`TokenManagerSettings`](crate::settings::TokenManagerSettings) for the defaults and where
//! they come from.

use crate::idp::{AcquireError, IdpToken, TokenSource};
use crate::metrics::Metrics;
use crate::settings::TokenManagerSettings;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;
use shared::Secret;
use shared::claims::{AccessTokenClaims, TokenKind};
use shared::clock::{self, Clock};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::{Notify, broadcast, watch};

/// A token and when it was acquired and must be refreshed. `Debug` never shows the token.
pub struct CachedToken {
    token: Secret,
    /// `Bearer {token}`, built once (marked sensitive): a proxy sends it on every request.
    bearer: Option<reqwest::header::HeaderValue>,
    pub acquired_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    /// When the refresher acquires the next one.
    pub refresh_at: OffsetDateTime,
    /// Served until then: `expires_at` minus the safety margin.
    pub usable_until: OffsetDateTime,
    /// [`shared::fingerprint`] of the token: what logs and events name it by.
    pub fingerprint: String,
    /// `app`, `user`, `unknown`, or `opaque` when it is not a JWT.
    pub kind: &'static str,
}

impl fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedToken")
            .field("fingerprint", &self.fingerprint)
            .field("kind", &self.kind)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl CachedToken {
    /// The bearer token. Only for the `Authorization` header (and `token --raw`).
    pub fn secret(&self) -> &str {
        self.token.expose()
    }

    /// The `Authorization` header's value; `None` for a token no header can carry (never the
    /// case for Entra's, which are base64url and dots).
    pub fn bearer(&self) -> Option<&reqwest::header::HeaderValue> {
        self.bearer.as_ref()
    }

    pub fn age(&self, now: OffsetDateTime) -> Duration {
        clock::to_std(now - self.acquired_at)
    }

    /// The token's claims, read without verification (it is ours, fresh from the identity
    /// provider; this is for display, never for a decision).
    pub fn claims(&self) -> Option<AccessTokenClaims> {
        let payload = self.token.expose().split('.').nth(1)?;
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
    }
}

fn kind_of(claims: Option<&AccessTokenClaims>) -> &'static str {
    match claims.map(AccessTokenClaims::kind) {
        Some(TokenKind::App) => "app",
        Some(TokenKind::User) => "user",
        Some(TokenKind::Unknown) => "unknown",
        None => "opaque",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A caller had no usable token.
    Caller,
    /// The refresher, at the refresh time or a retry time.
    Background,
}

/// What happened, for tests and for anyone embedding the manager who wants to react.
#[derive(Debug, Clone)]
pub enum TokenEvent {
    Acquired {
        scope: String,
        fingerprint: String,
        trigger: Trigger,
    },
    Failed {
        scope: String,
        error: AcquireError,
        trigger: Trigger,
        next_attempt_in: Duration,
    },
    Invalidated {
        scope: String,
        fingerprint: String,
    },
}

/// One scope's state, for `/readyz`, `/metrics` and logs.
#[derive(Debug, Clone)]
pub struct ScopeStatus {
    pub scope: String,
    /// A token is being served.
    pub has_token: bool,
    /// A token is being served although its refresh is failing.
    pub serving_stale: bool,
    /// The last attempt failed permanently (bad secret, …).
    pub permanent_failure: bool,
    pub expires_at: Option<OffsetDateTime>,
    pub next_attempt_at: Option<OffsetDateTime>,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
    /// A request to the identity provider for this scope is under way.
    pub acquiring: bool,
}

/// The settings as durations.
#[derive(Debug, Clone)]
struct Tuning {
    refresh_fraction: f64,
    refresh_jitter_fraction: f64,
    refresh_before_expiry: Duration,
    safety_margin: Duration,
    acquire_timeout: Duration,
    backoff_initial: Duration,
    backoff_max: Duration,
    permanent_retry: Duration,
    invalidate_min_interval: Duration,
}

impl From<&TokenManagerSettings> for Tuning {
    fn from(s: &TokenManagerSettings) -> Self {
        Self {
            refresh_fraction: s.refresh_fraction,
            refresh_jitter_fraction: s.refresh_jitter_fraction,
            refresh_before_expiry: Duration::from_secs(s.refresh_before_expiry_secs),
            safety_margin: Duration::from_secs(s.safety_margin_secs),
            acquire_timeout: Duration::from_secs(s.acquire_timeout_secs),
            backoff_initial: Duration::from_millis(s.backoff_initial_ms),
            backoff_max: Duration::from_secs(s.backoff_max_secs),
            permanent_retry: Duration::from_secs(s.permanent_retry_secs),
            invalidate_min_interval: Duration::from_secs(s.invalidate_min_interval_secs),
        }
    }
}

impl Tuning {
    /// Seconds after acquisition to refresh: `fraction` of the lifetime minus up to
    /// `jitter_fraction` of it, but no later than `refresh_before_expiry` before expiry. For a
    /// token too short for that (under 2× the margin) a quarter of its life, so a short-lived
    /// token is still refreshed early instead of in a loop.
    fn refresh_after(&self, lifetime: Duration) -> Duration {
        let jitter = lifetime.mul_f64(self.refresh_jitter_fraction * rand::rng().random::<f64>());
        let planned = lifetime
            .mul_f64(self.refresh_fraction)
            .saturating_sub(jitter);
        let latest = lifetime.saturating_sub(self.refresh_before_expiry);
        if planned <= latest {
            planned
        } else {
            latest.max(lifetime / 4)
        }
    }

    /// Full-jitter exponential backoff (AWS Architecture Blog, "Exponential Backoff and Jitter"):
    /// uniform in `[0, min(max, initial × 2^(failures-1))]`, so many clients that failed together
    /// spread out instead of retrying in waves.
    fn backoff(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(30);
        let ceiling = self
            .backoff_initial
            .saturating_mul(1u32 << exponent)
            .min(self.backoff_max);
        rand::rng().random_range(Duration::ZERO..=ceiling)
    }
}

#[derive(Default)]
struct EntryState {
    token: Option<Arc<CachedToken>>,
    /// Finished acquisitions, successful or not: how queued callers know one completed.
    attempts: u64,
    consecutive_failures: u32,
    last_error: Option<AcquireError>,
    /// The refresher's next attempt: the refresh time, or a retry time after a failure.
    next_attempt_at: Option<OffsetDateTime>,
    last_invalidated: Option<OffsetDateTime>,
}

impl EntryState {
    fn usable(&self, now: OffsetDateTime) -> Option<Arc<CachedToken>> {
        self.token
            .as_ref()
            .filter(|t| now < t.usable_until)
            .cloned()
    }
}

struct Entry {
    scope: Arc<str>,
    state: RwLock<EntryState>,
    single_flight: tokio::sync::Mutex<()>,
    /// Wakes the refresher to re-plan (after a caller's acquisition or an invalidation).
    /// `notify_one` keeps a permit when the refresher is not waiting, so no wake-up is lost.
    wake: Notify,
}

impl Entry {
    // A poisoned lock means a panic while updating plain data; the data is still a valid state
    // (every update is a few assignments), so carry on rather than take the daemon down.
    fn state(&self) -> RwLockReadGuard<'_, EntryState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn state_mut(&self) -> RwLockWriteGuard<'_, EntryState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }
}

struct Inner {
    source: Arc<dyn TokenSource>,
    clock: Arc<dyn Clock>,
    tuning: Tuning,
    metrics: Metrics,
    /// Scope → entry. Written once per new scope; read on every `get_token`.
    entries: RwLock<HashMap<Arc<str>, Arc<Entry>>>,
    events: broadcast::Sender<TokenEvent>,
    /// Refreshers stop when this changes or is dropped (with the manager).
    shutdown: watch::Sender<bool>,
}

/// Cheap to clone; all clones share the tokens.
#[derive(Clone)]
pub struct TokenManager {
    inner: Arc<Inner>,
}

impl fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenManager")
            .field("tenant_id", &self.inner.source.tenant_id())
            .field("client_id", &self.inner.source.client_id())
            .finish_non_exhaustive()
    }
}

impl TokenManager {
    pub fn new(
        source: Arc<dyn TokenSource>,
        settings: &TokenManagerSettings,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                source,
                clock,
                tuning: Tuning::from(settings),
                metrics,
                entries: RwLock::new(HashMap::new()),
                events: broadcast::channel(1024).0,
                shutdown: watch::Sender::new(false),
            }),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<TokenEvent> {
        self.inner.events.subscribe()
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// A token for `scope`. Returns at once, without any network wait, while a usable token is
    /// cached (the refresher replaces it before it stops being usable). Otherwise joins (or
    /// starts) the one acquisition for this scope.
    pub async fn get_token(&self, scope: &str) -> Result<Arc<CachedToken>, AcquireError> {
        let now = self.inner.clock.now();
        // A hit reads the entry under the map's read lock instead of cloning its `Arc`: the
        // entry's reference count is not one more cache line every reader writes.
        let missed = {
            let entries = self.entries();
            match entries.get(scope) {
                Some(entry) => match entry.state().usable(now) {
                    Some(token) => return Ok(token),
                    None => Some(entry.clone()),
                },
                None => None,
            }
        };
        let entry = match missed {
            Some(entry) => entry,
            None => self.entry(scope),
        };
        self.inner.acquire_for_caller(&entry).await
    }

    /// Drops `token` after a target API answered 401 `invalid_token` with it, so the next
    /// `get_token` acquires a new one. Returns `false` (and keeps the token) when the token was
    /// already replaced, or when one was dropped for this scope within the minimum interval: an
    /// API that refuses every token must not make us hammer the identity provider.
    pub fn invalidate(&self, scope: &str, token: &CachedToken) -> bool {
        let entry = self.entry(scope);
        let now = self.inner.clock.now();
        let mut state = entry.state_mut();
        let Some(current) = &state.token else {
            return false;
        };
        if current.fingerprint != token.fingerprint {
            return false;
        }
        if let Some(last) = state.last_invalidated
            && now - last < self.inner.tuning.invalidate_min_interval
        {
            tracing::warn!(
                scope,
                fingerprint = %token.fingerprint,
                "target API refused the token again within the minimum interval; keeping it"
            );
            return false;
        }
        state.token = None;
        state.last_invalidated = Some(now);
        state.next_attempt_at = Some(now);
        drop(state);
        entry.wake.notify_one();
        tracing::warn!(
            scope,
            fingerprint = %token.fingerprint,
            "target API refused the token (401 invalid_token); dropped it"
        );
        let _ = self.inner.events.send(TokenEvent::Invalidated {
            scope: scope.to_owned(),
            fingerprint: token.fingerprint.clone(),
        });
        true
    }

    /// Starts acquiring tokens for `scopes` without waiting: the daemon calls this at start so
    /// the first job run finds a token and `/readyz` turns ready.
    pub fn warm_up(&self, scopes: &[String]) {
        for scope in scopes {
            let manager = self.clone();
            let scope = scope.clone();
            tokio::spawn(async move {
                // Failures are logged and counted where they happen.
                let _ = manager.get_token(&scope).await;
            });
        }
    }

    pub fn status(&self) -> Vec<ScopeStatus> {
        let now = self.inner.clock.now();
        let mut statuses: Vec<ScopeStatus> = self
            .entries()
            .values()
            .map(|entry| {
                let state = entry.state();
                let token = state.usable(now);
                ScopeStatus {
                    scope: entry.scope.to_string(),
                    has_token: token.is_some(),
                    serving_stale: token.is_some() && state.consecutive_failures > 0,
                    permanent_failure: state
                        .last_error
                        .as_ref()
                        .is_some_and(AcquireError::is_permanent),
                    expires_at: state.token.as_ref().map(|t| t.expires_at),
                    next_attempt_at: state.next_attempt_at,
                    consecutive_failures: state.consecutive_failures,
                    last_error: state.last_error.as_ref().map(ToString::to_string),
                    acquiring: entry.single_flight.try_lock().is_err(),
                }
            })
            .collect();
        statuses.sort_by(|a, b| a.scope.cmp(&b.scope));
        statuses
    }

    /// Sets the per-scope gauges from the current state (called before each scrape).
    pub fn update_gauges(&self) {
        let now = self.inner.clock.now();
        for status in self.status() {
            let scope = [status.scope.as_str()];
            if let Some(expires_at) = status.expires_at {
                self.inner
                    .metrics
                    .seconds_until_expiry
                    .with_label_values(&scope)
                    .set((expires_at - now).as_seconds_f64());
            }
            self.inner
                .metrics
                .serving_stale
                .with_label_values(&scope)
                .set(i64::from(status.serving_stale));
        }
    }

    /// Stops the refreshers. Tokens already cached stay readable.
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    fn entries(&self) -> RwLockReadGuard<'_, HashMap<Arc<str>, Arc<Entry>>> {
        self.inner.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    fn entry(&self, scope: &str) -> Arc<Entry> {
        if let Some(entry) = self.entries().get(scope) {
            return entry.clone();
        }
        let mut entries = self
            .inner
            .entries
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = entries.get(scope) {
            return entry.clone();
        }
        let scope: Arc<str> = Arc::from(scope);
        let entry = Arc::new(Entry {
            scope: scope.clone(),
            state: RwLock::new(EntryState::default()),
            single_flight: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
        });
        entries.insert(scope, entry.clone());
        tokio::spawn(refresher(
            Arc::downgrade(&self.inner),
            entry.clone(),
            self.inner.clock.clone(),
            self.inner.shutdown.subscribe(),
        ));
        entry
    }
}

/// One per entry: sleeps until the entry's next planned attempt, then acquires. Holds only a
/// `Weak` to the manager so that dropping the manager ends it.
async fn refresher(
    inner: Weak<Inner>,
    entry: Arc<Entry>,
    clock: Arc<dyn Clock>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let due = entry.state().next_attempt_at;
        let woken = entry.wake.notified();
        match due {
            Some(at) => tokio::select! {
                () = clock.sleep_until(at) => {}
                () = woken => continue,
                _ = shutdown.changed() => return,
            },
            None => tokio::select! {
                () = woken => continue,
                _ = shutdown.changed() => return,
            },
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let seen = entry.state().attempts;
        let _flight = entry.single_flight.lock().await;
        {
            let state = entry.state();
            // A caller's acquisition finished while we queued: re-plan from its outcome.
            if state.attempts != seen {
                continue;
            }
            match state.next_attempt_at {
                Some(at) if at <= clock.now() => {}
                _ => continue,
            }
        }
        // The outcome is logged, counted and recorded by `attempt`.
        let _ = inner.attempt(&entry, Trigger::Background).await;
    }
}

impl Inner {
    async fn acquire_for_caller(
        &self,
        entry: &Arc<Entry>,
    ) -> Result<Arc<CachedToken>, AcquireError> {
        let seen = {
            let state = entry.state();
            let now = self.clock.now();
            if let Some(token) = state.usable(now) {
                return Ok(token);
            }
            // Inside a backoff (or the slow retry after a permanent error) callers get the last
            // error at once: jobs without a token must not become one request per run.
            if let (Some(error), Some(at)) = (&state.last_error, state.next_attempt_at)
                && at > now
            {
                return Err(error.clone());
            }
            state.attempts
        };
        let _flight = entry.single_flight.lock().await;
        {
            let state = entry.state();
            if let Some(token) = state.usable(self.clock.now()) {
                return Ok(token);
            }
            if state.attempts != seen
                && let Some(error) = &state.last_error
            {
                return Err(error.clone());
            }
        }
        self.attempt(entry, Trigger::Caller).await
    }

    /// One acquisition. The caller holds `entry.single_flight`.
    async fn attempt(
        &self,
        entry: &Entry,
        trigger: Trigger,
    ) -> Result<Arc<CachedToken>, AcquireError> {
        let scope = &*entry.scope;
        let timeout = self.tuning.acquire_timeout;
        let result = clock::timeout(&*self.clock, timeout, self.source.acquire(scope))
            .await
            .unwrap_or_else(|| Err(AcquireError::timeout(timeout)));
        let now = self.clock.now();
        let outcome = match result {
            Ok(issued) => Ok(self.store(entry, issued, now, trigger)),
            Err(error) => Err(self.record_failure(entry, error, now, trigger)),
        };
        entry.wake.notify_one();
        outcome
    }

    fn store(
        &self,
        entry: &Entry,
        issued: IdpToken,
        now: OffsetDateTime,
        trigger: Trigger,
    ) -> Arc<CachedToken> {
        let lifetime = issued.lifetime;
        let refresh_after = self.tuning.refresh_after(lifetime);
        let margin = self.tuning.safety_margin.min(lifetime / 2);
        let fingerprint = shared::fingerprint(issued.token.expose());
        let bearer =
            reqwest::header::HeaderValue::try_from(format!("Bearer {}", issued.token.expose()))
                .ok()
                .map(|mut value| {
                    value.set_sensitive(true);
                    value
                });
        let mut token = CachedToken {
            bearer,
            token: issued.token,
            acquired_at: now,
            expires_at: now + lifetime,
            refresh_at: now + refresh_after,
            usable_until: now + lifetime.saturating_sub(margin),
            fingerprint,
            kind: "opaque",
        };
        token.kind = kind_of(token.claims().as_ref());
        let token = Arc::new(token);
        let recovered_after = {
            let mut state = entry.state_mut();
            let failures = state.consecutive_failures;
            state.token = Some(token.clone());
            state.attempts += 1;
            state.consecutive_failures = 0;
            state.last_error = None;
            state.next_attempt_at = Some(token.refresh_at);
            failures
        };
        tracing::info!(
            scope = %entry.scope,
            client_id = %self.source.client_id(),
            kind = token.kind,
            fingerprint = %token.fingerprint,
            expires_at = %token.expires_at.format(&Rfc3339).unwrap_or_default(),
            lifetime_secs = lifetime.as_secs(),
            refresh_in_secs = refresh_after.as_secs(),
            trigger = ?trigger,
            recovered_after_failures = recovered_after,
            "token acquired"
        );
        self.metrics
            .acquisitions
            .with_label_values(&[&entry.scope, "ok", "ok"])
            .inc();
        let _ = self.events.send(TokenEvent::Acquired {
            scope: entry.scope.to_string(),
            fingerprint: token.fingerprint.clone(),
            trigger,
        });
        token
    }

    fn record_failure(
        &self,
        entry: &Entry,
        error: AcquireError,
        now: OffsetDateTime,
        trigger: Trigger,
    ) -> AcquireError {
        let (next_in, failures, serving) = {
            let mut state = entry.state_mut();
            state.attempts += 1;
            state.consecutive_failures += 1;
            let serving = state.usable(now);
            let next_in = if error.is_permanent() {
                self.tuning.permanent_retry
            } else {
                let mut delay = self.tuning.backoff(state.consecutive_failures);
                // Bounded by the token's remaining life: the last retry happens while it is
                // still served, whatever the backoff has grown to.
                if let Some(token) = &serving {
                    delay = delay.min(clock::to_std(token.usable_until - now));
                }
                // The identity provider said when; asking earlier only earns another 429.
                match error.retry_after() {
                    Some(retry_after) => delay.max(retry_after),
                    None => delay,
                }
            };
            state.next_attempt_at = Some(now + next_in);
            state.last_error = Some(error.clone());
            (next_in, state.consecutive_failures, serving)
        };
        let serving_fingerprint = serving.as_ref().map(|t| t.fingerprint.as_str());
        if error.is_permanent() {
            tracing::error!(
                scope = %entry.scope,
                client_id = %self.source.client_id(),
                reason = %error.reason(),
                next_attempt_in_secs = next_in.as_secs(),
                serving_previous_token = serving_fingerprint,
                trigger = ?trigger,
                "token acquisition refused; not retrying until the next slow attempt: {error}"
            );
        } else {
            tracing::warn!(
                scope = %entry.scope,
                client_id = %self.source.client_id(),
                reason = %error.reason(),
                consecutive_failures = failures,
                next_attempt_in_ms = next_in.as_millis() as u64,
                serving_previous_token = serving_fingerprint,
                trigger = ?trigger,
                "token acquisition failed; will retry: {error}"
            );
        }
        self.metrics
            .acquisitions
            .with_label_values(&[&entry.scope, "error", &error.reason()])
            .inc();
        let _ = self.events.send(TokenEvent::Failed {
            scope: entry.scope.to_string(),
            error: error.clone(),
            trigger,
            next_attempt_in: next_in,
        });
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idp::{AcquireFuture, TransientReason};
    use shared::clock::ManualClock;
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::task::{Context, Poll, Waker};

    const SCOPE: &str = "api://tasks-api/.default";

    /// Answers from a script, counting requests.
    #[derive(Debug, Default)]
    struct Scripted {
        answers: Mutex<VecDeque<Result<IdpToken, AcquireError>>>,
        calls: Mutex<u32>,
    }

    impl Scripted {
        fn push(&self, answer: Result<IdpToken, AcquireError>) {
            self.answers.lock().expect("lock").push_back(answer);
        }
        fn calls(&self) -> u32 {
            *self.calls.lock().expect("lock")
        }
    }

    impl TokenSource for Scripted {
        fn tenant_id(&self) -> &str {
            "tenant"
        }
        fn client_id(&self) -> &str {
            "client"
        }
        fn acquire<'a>(&'a self, _: &'a str) -> AcquireFuture<'a> {
            *self.calls.lock().expect("lock") += 1;
            let answer = self.answers.lock().expect("lock").pop_front();
            Box::pin(async move { answer.expect("a scripted answer") })
        }
    }

    fn token(name: &str, secs: u64) -> Result<IdpToken, AcquireError> {
        Ok(IdpToken {
            token: Secret::new(name),
            lifetime: Duration::from_secs(secs),
        })
    }

    fn unavailable() -> Result<IdpToken, AcquireError> {
        Err(AcquireError::Transient {
            reason: TransientReason::ServerError,
            status: Some(503),
            retry_after: None,
            detail: "down".into(),
        })
    }

    /// A manager without refresh jitter, its scripted source and its clock.
    fn manager() -> (Arc<Scripted>, Arc<ManualClock>, TokenManager) {
        let source = Arc::new(Scripted::default());
        let clock = Arc::new(ManualClock::new(OffsetDateTime::UNIX_EPOCH));
        let settings = TokenManagerSettings {
            refresh_jitter_fraction: 0.0,
            ..Default::default()
        };
        let manager = TokenManager::new(source.clone(), &settings, clock.clone(), Metrics::new());
        (source, clock, manager)
    }

    fn poll_once<F: std::future::Future>(future: F) -> Poll<F::Output> {
        let mut future = std::pin::pin!(future);
        future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn refresh_point_is_half_life_and_never_later_than_five_minutes_before_expiry() {
        let tuning = Tuning::from(&TokenManagerSettings {
            refresh_jitter_fraction: 0.0,
            ..Default::default()
        });
        assert_eq!(
            tuning.refresh_after(Duration::from_secs(3600)),
            Duration::from_secs(1800)
        );
        // 0.95 of 3600 s would be 180 s before expiry: clamped to 300 s before.
        let late = Tuning {
            refresh_fraction: 0.95,
            ..tuning.clone()
        };
        assert_eq!(
            late.refresh_after(Duration::from_secs(3600)),
            Duration::from_secs(3300)
        );
        // Too short for the clamp: a quarter of its life, not zero.
        assert_eq!(
            tuning.refresh_after(Duration::from_secs(120)),
            Duration::from_secs(30)
        );
        let jittered = Tuning::from(&TokenManagerSettings::default());
        for _ in 0..100 {
            let at = jittered.refresh_after(Duration::from_secs(3600));
            assert!((1620..=1800).contains(&at.as_secs()), "{at:?}");
        }
    }

    #[test]
    fn backoff_grows_with_full_jitter_up_to_the_cap() {
        let tuning = Tuning::from(&TokenManagerSettings::default());
        for _ in 0..200 {
            assert!(tuning.backoff(1) <= Duration::from_secs(1));
            assert!(tuning.backoff(3) <= Duration::from_secs(4));
            assert!(tuning.backoff(40) <= Duration::from_secs(60));
        }
        let spread: std::collections::HashSet<_> = (0..50).map(|_| tuning.backoff(10)).collect();
        assert!(spread.len() > 10, "full jitter spreads retries");
    }

    #[tokio::test]
    async fn a_cached_token_is_returned_without_waiting_and_refreshed_in_the_background() {
        let (source, clock, manager) = manager();
        let mut events = manager.subscribe();
        source.push(token("first", 3600));
        let first = manager.get_token(SCOPE).await.expect("token");
        assert_eq!(first.secret(), "first");

        let Poll::Ready(Ok(again)) = poll_once(manager.get_token(SCOPE)) else {
            panic!("a cached read must complete on its first poll");
        };
        assert_eq!(again.fingerprint, first.fingerprint);
        assert!(matches!(
            events.recv().await,
            Ok(TokenEvent::Acquired {
                trigger: Trigger::Caller,
                ..
            })
        ));

        source.push(token("second", 3600));
        clock.advance(Duration::from_secs(1799));
        tokio::task::yield_now().await;
        assert_eq!(source.calls(), 1, "not before half-life");
        clock.advance(Duration::from_secs(1));
        let Ok(TokenEvent::Acquired { trigger, .. }) = events.recv().await else {
            panic!("expected a refresh");
        };
        assert_eq!(trigger, Trigger::Background);
        assert_eq!(
            manager.get_token(SCOPE).await.expect("token").secret(),
            "second"
        );
        assert_eq!(source.calls(), 2);
    }

    #[tokio::test]
    async fn a_failing_refresh_keeps_serving_until_the_safety_margin() {
        let (source, clock, manager) = manager();
        let mut events = manager.subscribe();
        source.push(token("only", 3600));
        manager.get_token(SCOPE).await.expect("token");
        let _ = events.recv().await;
        for _ in 0..200 {
            source.push(unavailable());
        }
        clock.advance(Duration::from_secs(1800));
        let Ok(TokenEvent::Failed {
            next_attempt_in, ..
        }) = events.recv().await
        else {
            panic!("expected a failed refresh");
        };
        assert!(next_attempt_in <= Duration::from_secs(1));
        let status = &manager.status()[0];
        assert!(status.has_token && status.serving_stale, "{status:?}");
        assert_eq!(
            manager
                .get_token(SCOPE)
                .await
                .expect("still served")
                .secret(),
            "only"
        );

        // Past expiry minus the 60 s margin the old token is no longer handed out.
        clock.advance(Duration::from_secs(1741));
        let error = manager.get_token(SCOPE).await.expect_err("expired");
        assert_eq!(error.reason(), "server_error");
    }

    #[tokio::test]
    async fn a_permanent_error_is_shared_by_waiting_callers_and_not_retried_by_them() {
        let (source, _, manager) = manager();
        source.push(Err(AcquireError::Permanent {
            status: Some(401),
            error: "invalid_client".into(),
            aadsts: Some(7000215),
            summary: "AADSTS7000215: Invalid client secret provided.".into(),
        }));
        let calls: Vec<_> = (0..20)
            .map(|_| {
                let manager = manager.clone();
                async move { manager.get_token(SCOPE).await }
            })
            .collect();
        let results = futures_join_all(calls).await;
        assert!(
            results
                .iter()
                .all(|r| r.as_ref().is_err_and(AcquireError::is_permanent))
        );
        assert_eq!(source.calls(), 1);
        // Later callers inside the slow-retry window get the error without a request.
        assert!(manager.get_token(SCOPE).await.is_err());
        assert_eq!(source.calls(), 1);
        assert!(manager.status()[0].permanent_failure);
    }

    #[tokio::test]
    async fn invalidation_is_rate_limited() {
        let (source, _, manager) = manager();
        source.push(token("a", 3600));
        source.push(token("b", 3600));
        let a = manager.get_token(SCOPE).await.expect("token");
        assert!(manager.invalidate(SCOPE, &a));
        assert!(!manager.invalidate(SCOPE, &a), "already gone");
        let b = manager.get_token(SCOPE).await.expect("token");
        assert_eq!(b.secret(), "b");
        assert!(
            !manager.invalidate(SCOPE, &b),
            "within the minimum interval"
        );
        assert_eq!(manager.get_token(SCOPE).await.expect("kept").secret(), "b");
    }

    async fn futures_join_all<F>(futures: Vec<F>) -> Vec<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
        let mut out = Vec::new();
        for handle in handles {
            out.push(handle.await.expect("joins"));
        }
        out
    }
}
