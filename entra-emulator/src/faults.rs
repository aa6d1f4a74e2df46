//! Fault injection, off unless the admin API is enabled: the token endpoint (or the JWKS
//! endpoint) answers 429 with `Retry-After`, 503, or hangs, for N seconds or N requests. This is
//! what the resilience demos and tests use to play an identity-provider outage on demand.

use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultTarget {
    Token,
    Jwks,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum FaultKind {
    /// 429 with `Retry-After` and a plain-text body, as Entra's throttling front end answers.
    Throttle {
        #[serde(default = "default_retry_after")]
        retry_after_secs: u64,
    },
    /// 503 `temporarily_unavailable`.
    Unavailable,
    /// No answer until the fault ends (or `hang_secs` pass), so clients hit their own timeouts.
    Hang {
        #[serde(default = "default_hang")]
        hang_secs: u64,
    },
}

fn default_retry_after() -> u64 {
    60
}

fn default_hang() -> u64 {
    120
}

/// `deny_unknown_fields` cannot be combined with the flattened, tagged `kind`; unknown `kind`
/// and `target` values are still refused.
#[derive(Debug, Clone, Deserialize)]
pub struct FaultRequest {
    pub target: FaultTarget,
    #[serde(flatten)]
    pub kind: FaultKind,
    /// The fault lasts this many seconds…
    #[serde(default)]
    pub seconds: Option<i64>,
    /// …or applies to this many requests. Exactly one of the two.
    #[serde(default)]
    pub requests: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ActiveFault {
    pub id: u64,
    pub target: FaultTarget,
    #[serde(flatten)]
    pub kind: FaultKind,
    pub until: Option<i64>,
    pub remaining_requests: Option<u64>,
}

/// Active faults. A plain mutex: every critical section is a scan of a handful of entries with
/// no await inside, far cheaper than the request it guards.
#[derive(Default)]
pub struct Faults {
    active: Mutex<Vec<ActiveFault>>,
    next_id: AtomicU64,
}

impl Faults {
    pub fn add(&self, request: FaultRequest, now: i64) -> Result<ActiveFault, String> {
        let (until, remaining_requests) = match (request.seconds, request.requests) {
            (Some(s), None) if s > 0 => (Some(now + s), None),
            (None, Some(n)) if n > 0 => (None, Some(n)),
            _ => return Err("give exactly one of `seconds` or `requests`, greater than 0".into()),
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let fault = ActiveFault {
            id,
            target: request.target,
            kind: request.kind,
            until,
            remaining_requests,
        };
        self.lock().push(fault.clone());
        Ok(fault)
    }

    pub fn clear(&self) -> usize {
        let mut active = self.lock();
        let n = active.len();
        active.clear();
        n
    }

    pub fn list(&self, now: i64) -> Vec<ActiveFault> {
        let mut active = self.lock();
        active.retain(|f| f.until.is_none_or(|u| u > now));
        active.clone()
    }

    /// The fault this request meets, if any; counts the request against a request-bounded fault.
    /// The second value is how long a hang should last.
    pub fn take(&self, target: FaultTarget, now: i64) -> Option<(FaultKind, u64)> {
        let mut active = self.lock();
        active.retain(|f| f.until.is_none_or(|u| u > now) && f.remaining_requests != Some(0));
        let fault = active.iter_mut().find(|f| f.target == target)?;
        if let Some(n) = fault.remaining_requests.as_mut() {
            *n -= 1;
        }
        let hang = match (fault.kind, fault.until) {
            (FaultKind::Hang { hang_secs }, Some(until)) => {
                hang_secs.min((until - now).max(0) as u64)
            }
            (FaultKind::Hang { hang_secs }, None) => hang_secs,
            _ => 0,
        };
        Some((fault.kind, hang))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ActiveFault>> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(seconds: Option<i64>, requests: Option<u64>) -> FaultRequest {
        FaultRequest {
            target: FaultTarget::Token,
            kind: FaultKind::Unavailable,
            seconds,
            requests,
        }
    }

    #[test]
    fn request_bounded_fault_ends_after_n_requests() {
        let faults = Faults::default();
        faults.add(request(None, Some(2)), 0).expect("valid");
        assert!(faults.take(FaultTarget::Token, 0).is_some());
        assert!(faults.take(FaultTarget::Jwks, 0).is_none());
        assert!(faults.take(FaultTarget::Token, 0).is_some());
        assert!(faults.take(FaultTarget::Token, 0).is_none());
    }

    #[test]
    fn time_bounded_fault_ends_at_its_deadline() {
        let faults = Faults::default();
        faults.add(request(Some(10), None), 100).expect("valid");
        assert!(faults.take(FaultTarget::Token, 109).is_some());
        assert!(faults.take(FaultTarget::Token, 110).is_none());
    }

    #[test]
    fn needs_exactly_one_bound() {
        let faults = Faults::default();
        assert!(faults.add(request(None, None), 0).is_err());
        assert!(faults.add(request(Some(1), Some(1)), 0).is_err());
        assert!(faults.add(request(Some(0), None), 0).is_err());
    }
}
