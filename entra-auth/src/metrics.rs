//! The validator's own counters in Prometheus' text format, for a service's `/metrics`: auth
//! outcomes by reason, JWKS fetches, failures and age, verified-token cache hits. Read at scrape
//! time from atomics, so the validator knows nothing of any metrics library.

use crate::Reason;
use crate::keys::Readiness;
use crate::middleware::AuthOutcomes;
use crate::validator::Validator;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A counter every server worker bumps on every request, kept as one cache line per shard and
/// a shard per thread, summed when read: one shared atomic would move between the cores on each
/// increment, which on 2 cores costs more than what it counts. It answers `fetch_add` and `load`
/// as `AtomicU64` does (the ordering is that of each shard; the sum is not a snapshot).
#[derive(Default)]
pub struct Counter {
    shards: [Shard; SHARDS],
}

const SHARDS: usize = 8;

#[derive(Default)]
#[repr(align(128))]
struct Shard(AtomicU64);

thread_local! {
    /// This thread's shard, dealt round-robin as threads first count.
    static SHARD: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS
    };
}

impl Counter {
    pub fn fetch_add(&self, n: u64, order: Ordering) {
        let shard = SHARD.with(|shard| *shard);
        self.shards[shard].0.fetch_add(n, order);
    }

    pub fn load(&self, order: Ordering) -> u64 {
        self.shards.iter().map(|shard| shard.0.load(order)).sum()
    }
}

/// Appends the counters to `out`, each name starting with `{prefix}_` (`api`, `gateway`).
pub fn render(out: &mut String, prefix: &str, auth: &AuthOutcomes, validator: &Validator) {
    let _ = writeln!(
        out,
        "# HELP {prefix}_auth_outcomes_total Token checks by outcome: accepted, or the refusal reason.\n\
         # TYPE {prefix}_auth_outcomes_total counter"
    );
    let _ = writeln!(
        out,
        "{prefix}_auth_outcomes_total{{outcome=\"accepted\"}} {}",
        auth.accepted.load(Ordering::Relaxed)
    );
    for reason in Reason::ALL {
        let _ = writeln!(
            out,
            "{prefix}_auth_outcomes_total{{outcome=\"{}\"}} {}",
            reason.as_str(),
            auth.refused[reason.index()].load(Ordering::Relaxed)
        );
    }

    let keys = validator.keys();
    let (ready, age) = match keys.readiness() {
        Readiness::Ready { age_secs } => (1, age_secs),
        Readiness::Stale { age_secs } => (0, age_secs),
        Readiness::NotLoaded => (0, -1),
    };
    counter(
        out,
        &format!("{prefix}_jwks_fetches_total"),
        "Fetches of the tenants' discovery documents and JWKS.",
        keys.metrics.fetches.load(Ordering::Relaxed),
    );
    counter(
        out,
        &format!("{prefix}_jwks_fetch_failures_total"),
        "Failed fetches of discovery documents or JWKS.",
        keys.metrics.failures.load(Ordering::Relaxed),
    );
    gauge(
        out,
        &format!("{prefix}_jwks_age_seconds"),
        "Age of the signing keys in use (-1 before the first load).",
        age,
    );
    gauge(
        out,
        &format!("{prefix}_jwks_usable"),
        "1 while signing keys are loaded and younger than keys.max_stale_secs.",
        ready,
    );
    counter(
        out,
        &format!("{prefix}_token_cache_hits_total"),
        "Requests whose token signature was already verified (no RSA check).",
        validator.metrics.cache_hits.load(Ordering::Relaxed),
    );
    counter(
        out,
        &format!("{prefix}_token_signature_checks_total"),
        "RSA signature checks performed.",
        validator.metrics.signature_checks.load(Ordering::Relaxed),
    );
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

fn gauge(out: &mut String, name: &str, help: &str, value: i64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sharded_counter_sums_every_threads_increments() {
        let counter = Counter::default();
        std::thread::scope(|scope| {
            for _ in 0..12 {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        counter.fetch_add(5, Ordering::Relaxed);
        assert_eq!(counter.load(Ordering::Relaxed), 12_005);
    }
}
