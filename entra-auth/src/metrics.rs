//! The validator's own counters in Prometheus' text format, for a service's `/metrics`: auth
//! outcomes by reason, JWKS fetches, failures and age, verified-token cache hits. Read at scrape
//! time from atomics, so the validator knows nothing of any metrics library.

use crate::Reason;
use crate::keys::Readiness;
use crate::middleware::AuthOutcomes;
use crate::validator::Validator;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

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
