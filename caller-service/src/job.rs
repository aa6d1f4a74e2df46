//! A job as the daemon runs it: what it calls ([`Job`], validated from its `[[jobs]]` settings by
//! `JobSettings::validate`) and when ([`Schedule`]: a cron expression with seconds, the `cron`
//! crate's `sec min hour dom month dow [year]`, UTC, or a fixed interval with an optional random
//! delay per run). The loops that wait for each run are in `scheduler`; the run itself, in
//! `runner`.

use crate::settings::OverlapPolicy;
use rand::Rng;
use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;
use time::OffsetDateTime;

/// A validated job, ready to run.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub schedule: Schedule,
    pub method: reqwest::Method,
    pub url: url::Url,
    pub body: Option<serde_json::Value>,
    pub scope: String,
    pub timeout: Duration,
    pub success_status: Vec<u16>,
    pub overlap: OverlapPolicy,
    /// Repeat a run once after no answer or a 429/502/503/504, where that is safe.
    pub retry: bool,
    /// The body field that carries each run's idempotency key (the tasks API's `external_id`).
    pub external_id_field: Option<String>,
}

impl Job {
    pub fn is_success(&self, status: u16) -> bool {
        if self.success_status.is_empty() {
            (200..300).contains(&status)
        } else {
            self.success_status.contains(&status)
        }
    }

    /// Whether sending this job's request twice has the effect of sending it once: the methods
    /// RFC 9110 calls idempotent, or any method whose body carries a per-run idempotency key.
    pub fn repeatable(&self) -> bool {
        use reqwest::Method;
        self.external_id_field.is_some()
            || [
                Method::GET,
                Method::HEAD,
                Method::OPTIONS,
                Method::PUT,
                Method::DELETE,
            ]
            .contains(&self.method)
    }

    /// The body of one run: the configured body, with a fresh idempotency key in
    /// `external_id_field` when one is set (the same key goes with the run's retry).
    pub fn body_for_run(&self, now: OffsetDateTime) -> Option<Cow<'_, serde_json::Value>> {
        let (Some(field), Some(serde_json::Value::Object(body))) =
            (&self.external_id_field, &self.body)
        else {
            return self.body.as_ref().map(Cow::Borrowed);
        };
        let mut body = body.clone();
        body.insert(field.clone(), run_key(&self.name, now).into());
        Some(Cow::Owned(body.into()))
    }
}

/// A key unique to one run: the job's name (in the characters the tasks API accepts for
/// `external_id`, at most 64), the run's start in milliseconds and 64 random bits, e.g.
/// `create-task:1764990000123:9f86d081884c7d65`. At most 103 characters (the API takes 128).
pub fn run_key(job: &str, now: OffsetDateTime) -> String {
    let name: String = job
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    let millis = now.unix_timestamp_nanos() / 1_000_000;
    let random: u64 = rand::rng().random();
    format!("{name}:{millis}:{random:016x}")
}

#[derive(Debug, Clone)]
pub enum Schedule {
    Cron(Box<cron::Schedule>),
    Interval { every: Duration, jitter: Duration },
}

impl Schedule {
    pub fn cron(expression: &str) -> Result<Self, String> {
        let fields = expression.split_whitespace().count();
        if !(6..=7).contains(&fields) {
            return Err(format!(
                "`{expression}` has {fields} fields; cron here has seconds: \
                 `sec min hour day-of-month month day-of-week [year]`, e.g. `0 */5 * * * *`"
            ));
        }
        cron::Schedule::from_str(expression)
            .map(|s| Self::Cron(Box::new(s)))
            .map_err(|e| format!("`{expression}` is not a valid cron expression: {e}"))
    }

    pub fn interval(every: Duration, jitter: Duration) -> Self {
        Self::Interval { every, jitter }
    }

    /// The first planned time strictly after `after`; `None` when a cron schedule has no more
    /// (a year field in the past).
    ///
    /// For intervals the plan is `after + every`; the jitter is applied separately by
    /// [`Schedule::jitter`] so that it never accumulates into drift.
    pub fn next_after(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        match self {
            Self::Cron(schedule) => {
                let after =
                    chrono::DateTime::from_timestamp(after.unix_timestamp(), after.nanosecond())?;
                let next = schedule.after(&after).next()?;
                OffsetDateTime::from_unix_timestamp_nanos(
                    i128::from(next.timestamp()) * 1_000_000_000
                        + i128::from(next.timestamp_subsec_nanos()),
                )
                .ok()
            }
            Self::Interval { every, .. } => Some(after + *every),
        }
    }

    /// A random delay for one run, in `[0, jitter]`.
    pub fn jitter(&self) -> Duration {
        match self {
            Self::Interval { jitter, .. } if !jitter.is_zero() => {
                rand::rng().random_range(Duration::ZERO..=*jitter)
            }
            _ => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn cron_with_seconds_finds_the_next_time() {
        let schedule = Schedule::cron("*/15 * * * * *").expect("valid");
        let next = schedule.next_after(datetime!(2026-11-21 08:00:07 UTC));
        assert_eq!(next, Some(datetime!(2026-11-21 08:00:15 UTC)));
        let daily = Schedule::cron("0 30 2 * * *").expect("valid");
        assert_eq!(
            daily.next_after(datetime!(2026-11-21 08:00:00 UTC)),
            Some(datetime!(2026-11-22 02:30:00 UTC))
        );
    }

    #[test]
    fn five_field_cron_is_refused_with_a_hint() {
        let err = Schedule::cron("*/5 * * * *").expect_err("no seconds");
        assert!(err.contains("has 5 fields"), "{err}");
        assert!(Schedule::cron("61 * * * * *").is_err());
    }

    #[test]
    fn interval_plans_from_the_previous_time_and_jitter_stays_bounded() {
        let schedule = Schedule::interval(Duration::from_secs(60), Duration::from_secs(5));
        let start = datetime!(2026-11-21 08:00:00 UTC);
        assert_eq!(
            schedule.next_after(start),
            Some(start + Duration::from_secs(60))
        );
        for _ in 0..100 {
            assert!(schedule.jitter() <= Duration::from_secs(5));
        }
        let none = Schedule::interval(Duration::from_secs(60), Duration::ZERO);
        assert_eq!(none.jitter(), Duration::ZERO);
    }
}
