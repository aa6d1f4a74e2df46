//! Identity-provider storms: the token endpoint answers 503, or 429 with `Retry-After: 30`, to
//! every request for two simulated hours, first while the daemon has no token at all, then while it
//! holds one past its refresh point. The whole daemon runs (token manager, refresher, one job every
//! minute) against wiremock; the manual clock moves in steps of at most 1 s and stops exactly at
//! every planned token attempt and every job time, so each request is seen at the instant the
//! backoff planned it. Nothing sleeps for real.
//!
//! Each test prints its figures as `resilience: <case>: <figure>` lines (`--nocapture`), which
//! `scripts/resilience.sh` collects into RESILIENCE.md.
//!
//! # Bounds, from the code
//! `Tuning::backoff` and `Inner::record_failure` (caller-service/src/token_manager.rs) with the
//! defaults `backoff_initial_ms = 1000`, `backoff_max_secs = 60`: after the n-th consecutive
//! transient failure the next attempt waits a delay drawn uniformly from `[0, c(n)]`,
//! `c(n) = min(60 s, 1 s × 2^(n-1))` (full jitter); while a token is still served the delay is
//! also cut to the token's remaining usable life (which can end at most one gap early); a
//! `Retry-After` raises the delay to at least its value. Callers without a token inside a backoff
//! get the last error without a request; at the planned time their attempt and the refresher's
//! are one request (single flight). Hence:
//!
//! - Checked on every gap, deterministic: gap n ≤ c(n), so the daemon never stops trying
//!   (at least one request a minute: ≥ 120 in 2 h); with 429 every gap ≥ 30 s, so at most 2 in any
//!   60 s and at most 1 + 7200/30 = 241 in 2 h.
//! - With 503 (no `Retry-After`) full jitter has no hard ceiling on the rate: several short draws
//!   in a row are possible. The bounds are ones the process breaks with negligible probability,
//!   computed exactly rather than by simulation:
//!   - total over 2 h ≤ 320: more needs the first 320 delays to sum to ≤ 7200 s, and the Chernoff
//!     bound on that sum is 1.3e-12. Expected: about 246 (6 ramp-up requests, then 7200 s over a
//!     30 s mean delay).
//!   - at most 15 in any 60 s: 16 need 15 consecutive delays summing to under 60 s; for delays at
//!     the cap that is 1/15! = 7.6e-13 per starting request, for those of the ramp-up
//!     (c = 1, 2, 4, … s) 5e-8 in all (inclusion–exclusion over the uniform sums); over at most 320
//!     starting requests, under 1e-7 per run. Typical: 7–9 in the first minute (the ramp-up's
//!     1 + 2 + 4 + 8 + 16 + 32 s fit in it), 2–4 in later ones.

use caller_service::token_manager::ScopeStatus;
use mesh_tests::caller::*;
use shared::clock::{Clock, to_std};
use std::time::Duration;
use time::OffsetDateTime;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

const STORM: Duration = Duration::from_secs(2 * 3600);
const MINUTE: Duration = Duration::from_secs(60);
/// The job's interval (`interval_job`): it runs at every whole minute of the clock.
const JOB_EVERY: Duration = MINUTE;
const STEP: Duration = Duration::from_secs(1);
const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
const RETRY_AFTER: Duration = Duration::from_secs(30);
/// The token's lifetime and the default safety margin: served until 3540 s after acquisition.
const LIFETIME: Duration = Duration::from_secs(3600);
const SAFETY_MARGIN: Duration = Duration::from_secs(60);

/// Bounds for a 503 storm (see the module comment).
const TOTAL_503: usize = 320;
const PER_MINUTE_503: usize = 15;
/// Bounds for a 429 storm with `Retry-After: 30`: deterministic.
const TOTAL_429: usize = 1 + (STORM.as_secs() / RETRY_AFTER.as_secs()) as usize;
const PER_MINUTE_429: usize = 2;
/// No gap exceeds the cap: at least one request a minute.
const TOTAL_AT_LEAST: usize = (STORM.as_secs() / BACKOFF_MAX.as_secs()) as usize;

#[derive(Clone, Copy)]
enum Answer {
    Unavailable,
    Throttled,
}

impl Answer {
    fn response(self) -> ResponseTemplate {
        match self {
            Self::Unavailable => entra_error(
                503,
                "temporarily_unavailable",
                90033,
                "A transient error has occurred. Please try again.",
            ),
            Self::Throttled => ResponseTemplate::new(429)
                .insert_header("Retry-After", RETRY_AFTER.as_secs().to_string().as_str())
                .set_body_string("Too Many Requests"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Unavailable => "idp 503 storm",
            Self::Throttled => "idp 429 storm (Retry-After 30 s)",
        }
    }

    fn bounds(self) -> (usize, usize) {
        match self {
            Self::Unavailable => (TOTAL_503, PER_MINUTE_503),
            Self::Throttled => (TOTAL_429, PER_MINUTE_429),
        }
    }
}

/// What the storm looked like from the identity provider and from the job.
#[derive(Default)]
struct Record {
    /// Clock offsets (from the daemon's start) of the refused token requests, in order.
    requests: Vec<Duration>,
    /// Clock offset and outcome of every job run.
    runs: Vec<(Duration, &'static str)>,
}

async fn start(answer: Answer, with_token: bool) -> TestApp {
    let app = spawn_app(
        |settings, api| {
            settings
                .jobs
                .push(interval_job("storm", format!("{api}/tasks")))
        },
        |idp| async move {
            if with_token {
                token_request()
                    .respond_with(Tokens::lasting(LIFETIME.as_secs()))
                    .up_to_n_times(1)
                    .mount(&idp)
                    .await;
            }
            token_request()
                .respond_with(answer.response())
                .mount(&idp)
                .await;
            idp
        },
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/tasks"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&app.api)
        .await;
    app
}

fn status(app: &TestApp) -> ScopeStatus {
    let statuses = app.tokens.status();
    assert_eq!(statuses.len(), 1, "one scope");
    statuses[0].clone()
}

fn offset(app: &TestApp, origin: OffsetDateTime) -> Duration {
    to_std(app.clock.now() - origin)
}

/// The job's outcomes, in the order [`runs`] counts them.
const OUTCOMES: [&str; 4] = ["success", "failure", "error", "skipped"];

fn runs(app: &TestApp) -> [u64; 4] {
    OUTCOMES.map(|outcome| {
        app.metrics
            .job_runs
            .with_label_values(&["storm", outcome])
            .get()
    })
}

/// Every task that waits on the clock (the job loop and the refresher) waits, and no token request
/// is under way: moving time now cannot time out a request wiremock is still answering.
async fn settle(app: &TestApp) {
    eventually(
        "the job loop and refresher wait on the clock, no request under way",
        || async { app.clock.sleepers() >= 2 && app.tokens.status().iter().all(|s| !s.acquiring) },
    )
    .await;
}

/// Moves the clock to `until` (an offset from `origin`, the daemon's start) in steps of at most
/// [`STEP`], landing exactly on each planned token attempt and each job time; waits for each
/// attempt and run to finish and records it.
async fn drive(app: &TestApp, origin: OffsetDateTime, until: Duration, record: &mut Record) {
    let mut next_job = JOB_EVERY * (record.runs.len() as u32 + 1);
    let mut expected_requests = received(&app.idp).await;
    loop {
        settle(app).await;
        let now = offset(app, origin);
        if now >= until {
            return;
        }
        let before = status(app);
        let due = before.next_attempt_at.map(|at| to_std(at - origin));
        assert!(
            due.is_none_or(|due| due > now),
            "an attempt is due at {due:?} but none is under way at {now:?}"
        );
        let mut target = (now + STEP).min(until).min(next_job);
        if let Some(due) = due {
            target = target.min(due);
        }
        let runs_before = runs(app);
        app.clock.advance(target - now);

        if due == Some(target) {
            // The planned attempt: exactly one more request, seen at this instant.
            expected_requests += 1;
            let failures = before.consecutive_failures;
            eventually("the planned attempt failed", || async {
                let after = status(app);
                !after.acquiring && after.consecutive_failures == failures + 1
            })
            .await;
            assert_eq!(
                received(&app.idp).await,
                expected_requests,
                "one request per planned attempt"
            );
            record.requests.push(target);
        }
        if target == next_job {
            eventually("one more job run finished", || async {
                runs(app).iter().sum::<u64>() == runs_before.iter().sum::<u64>() + 1
            })
            .await;
            let after = runs(app);
            let outcome = OUTCOMES
                .into_iter()
                .zip(after.iter().zip(runs_before))
                .find(|(_, (a, b))| **a > *b)
                .map(|(name, _)| name)
                .expect("one outcome moved");
            record.runs.push((target, outcome));
            next_job += JOB_EVERY;
        }
    }
}

/// Asserts the bounds on the refused requests and returns the figures line.
fn judge_requests(answer: Answer, requests: &[Duration], storm_start: Duration) -> String {
    let in_storm: Vec<Duration> = requests
        .iter()
        .copied()
        .filter(|at| *at >= storm_start && *at <= storm_start + STORM)
        .collect();
    assert_eq!(in_storm.len(), requests.len(), "every request in the storm");
    let total = requests.len();
    let (total_bound, minute_bound) = answer.bounds();
    let per_minute = requests
        .iter()
        .enumerate()
        .map(|(i, at)| {
            requests[i..]
                .iter()
                .take_while(|b| **b < *at + MINUTE)
                .count()
        })
        .max()
        .unwrap_or(0);
    let gaps: Vec<Duration> = requests.windows(2).map(|w| w[1] - w[0]).collect();
    for (n, gap) in gaps.iter().enumerate() {
        let failures = n as u32 + 1;
        let ceiling = BACKOFF_INITIAL
            .saturating_mul(1 << (failures - 1).min(30))
            .min(BACKOFF_MAX);
        let (low, high) = match answer {
            Answer::Unavailable => (Duration::ZERO, ceiling),
            Answer::Throttled => (RETRY_AFTER, ceiling.max(RETRY_AFTER)),
        };
        assert!(
            (low..=high).contains(gap),
            "gap after failure {failures}: {gap:?} outside {low:?}..={high:?}"
        );
    }
    assert!(
        total <= total_bound,
        "{total} requests in 2 h, bound {total_bound}"
    );
    assert!(
        per_minute <= minute_bound,
        "{per_minute} requests in one minute, bound {minute_bound}"
    );
    assert!(
        total >= TOTAL_AT_LEAST,
        "{total} requests in 2 h: the daemon stopped trying"
    );
    let shortest = gaps.iter().min().copied().unwrap_or_default();
    let longest = gaps.iter().max().copied().unwrap_or_default();
    format!(
        "{total} token requests in 2 h (bound {total_bound}, at least {TOTAL_AT_LEAST}), \
         at most {per_minute} in any minute (bound {minute_bound}), gaps {:.1}–{:.1} s \
         (every gap within its backoff ceiling of min(1 s × 2^(n-1), 60 s){})",
        shortest.as_secs_f64(),
        longest.as_secs_f64(),
        match answer {
            Answer::Unavailable => "",
            Answer::Throttled => " and ≥ Retry-After",
        }
    )
}

async fn storm_without_a_token(answer: Answer) {
    let mut app = start(answer, false).await;
    let origin = app.clock.now();
    // The daemon's warm-up is the first request, at once, and it is refused.
    eventually("the first acquisition failed", || async {
        app.tokens
            .status()
            .first()
            .is_some_and(|s| s.consecutive_failures == 1 && !s.acquiring)
    })
    .await;
    assert_eq!(received(&app.idp).await, 1);
    let mut record = Record {
        requests: vec![Duration::ZERO],
        ..Default::default()
    };
    drive(&app, origin, STORM, &mut record).await;

    let requests = judge_requests(answer, &record.requests, Duration::ZERO);
    assert_eq!(
        received(&app.idp).await,
        record.requests.len(),
        "no request outside the planned attempts"
    );
    // Jobs without a token report an error and run again next minute: no panic, no skip.
    let errors = record.runs.iter().filter(|(_, o)| *o == "error").count();
    assert_eq!(record.runs.len(), (STORM.as_secs() / 60) as usize);
    assert_eq!(errors, record.runs.len(), "{:?}", record.runs);
    assert_eq!(received(&app.api).await, 0);
    let (ready, body) = app.readyz().await;
    assert_eq!(ready, 503);
    assert_eq!(body["status"], "not_ready");
    assert!(
        app.running.as_ref().is_some_and(|r| !r.is_finished()),
        "the daemon is still running"
    );
    app.shut_down().await;

    let case = format!("{}, no token", answer.name());
    println!("resilience: {case}: {requests}");
    println!(
        "resilience: {case}: {} job runs, {errors} reported an error (no token), 0 panics, 0 skipped; \
         the daemon stopped cleanly",
        record.runs.len()
    );
}

async fn storm_past_the_refresh_point(answer: Answer) {
    let mut app = start(answer, true).await;
    let origin = app.clock.now();
    eventually("the daemon holds its token", || async {
        app.tokens.status().first().is_some_and(|s| s.has_token)
    })
    .await;
    let token = app.tokens.get_token(SCOPE).await.expect("the first token");
    let usable_until = to_std(token.usable_until - origin);
    // `expires_in` is measured when the answer arrives, a few real milliseconds after the clock's
    // reading of the acquisition.
    assert!(
        (LIFETIME - SAFETY_MARGIN - Duration::from_secs(5)..=LIFETIME - SAFETY_MARGIN)
            .contains(&usable_until),
        "{usable_until:?}"
    );
    let refresh_at = to_std(status(&app).next_attempt_at.expect("a refresh planned") - origin);
    assert!(refresh_at < usable_until);
    assert_eq!(received(&app.idp).await, 1);

    // Up to the refresh point nothing is asked; from it on, every request is refused for 2 h.
    let mut record = Record::default();
    drive(&app, origin, refresh_at + STORM, &mut record).await;

    let requests = judge_requests(answer, &record.requests, refresh_at);
    assert_eq!(record.requests.first(), Some(&refresh_at));
    assert_eq!(
        received(&app.idp).await,
        1 + record.requests.len(),
        "no request outside the planned attempts"
    );
    let served: Vec<_> = record
        .runs
        .iter()
        .filter(|(at, _)| *at < usable_until)
        .collect();
    let after: Vec<_> = record
        .runs
        .iter()
        .filter(|(at, _)| *at >= usable_until)
        .collect();
    assert!(
        served.iter().all(|(_, o)| *o == "success"),
        "every run while the token is served succeeds: {served:?}"
    );
    assert!(
        after.iter().all(|(_, o)| *o == "error"),
        "past the safety margin runs report an error: {after:?}"
    );
    assert_eq!(
        served.len(),
        (1..).take_while(|k| JOB_EVERY * *k < usable_until).count(),
        "a run at every minute the token was served"
    );
    let failed_while_served = served.iter().filter(|(_, o)| *o != "success").count();
    app.shut_down().await;

    let case = format!("{}, token held past its refresh point", answer.name());
    println!(
        "resilience: {case}: from the refresh point at {} s: {requests}",
        refresh_at.as_secs()
    );
    println!(
        "resilience: {case}: {} job runs before the token's safety margin ({:.0} s), \
         {failed_while_served} failed; {} runs after it reported an error (no token), 0 panics",
        served.len(),
        usable_until.as_secs_f64(),
        after.len()
    );
}

#[tokio::test]
async fn a_503_storm_without_a_token_stays_within_the_backoff_bounds() {
    storm_without_a_token(Answer::Unavailable).await;
}

#[tokio::test]
async fn a_429_storm_without_a_token_honours_retry_after() {
    storm_without_a_token(Answer::Throttled).await;
}

#[tokio::test]
async fn a_503_storm_past_the_refresh_point_fails_no_job_until_the_safety_margin() {
    storm_past_the_refresh_point(Answer::Unavailable).await;
}

#[tokio::test]
async fn a_429_storm_past_the_refresh_point_honours_retry_after_and_fails_no_job() {
    storm_past_the_refresh_point(Answer::Throttled).await;
}
