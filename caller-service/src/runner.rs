//! Running one job: token, call, outcome. A 401 `invalid_token` from the API drops the token once
//! (rate-limited by the token manager) and the call is retried once with a fresh one. A call that
//! got no answer, or a 429/502/503/504, is repeated once a second later when that is safe (the
//! job's `retry`, [`Job::repeatable`]): what a replica lost behind a load balancer costs a job.

use crate::job::Job;
use crate::metrics::Metrics;
use crate::token_manager::{CachedToken, TokenManager};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The API answered with one of the job's success statuses.
    Success,
    /// The API answered, with another status.
    Failure,
    /// No answer: no token, or the call itself failed (timeout, connection).
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Error => "error",
        }
    }
}

#[derive(Debug, Clone)]
pub struct JobReport {
    pub job: String,
    pub outcome: Outcome,
    pub status: Option<u16>,
    pub latency: Duration,
    pub token_age: Option<Duration>,
    /// The problem+json `reason` of a 4xx answer.
    pub reason: Option<String>,
    /// The first answer was 401 `invalid_token` and the call was repeated with a new token.
    pub retried_with_new_token: bool,
    /// The run was repeated once because its first attempt got no answer (`no_answer`) or this
    /// status (`status_503`); the report is the second attempt's.
    pub retried_after: Option<String>,
    pub detail: Option<String>,
    /// The answer's `Retry-After`, in seconds, when it had one.
    retry_after: Option<Duration>,
}

/// The wait before repeating a run: a second, or the answer's `Retry-After` up to this.
const RETRY_DELAY: Duration = Duration::from_secs(1);
const RETRY_AFTER_CAP: Duration = Duration::from_secs(10);

impl JobReport {
    pub fn succeeded(&self) -> bool {
        self.outcome == Outcome::Success
    }
}

#[derive(Debug, Clone)]
pub struct JobRunner {
    http: reqwest::Client,
    tokens: TokenManager,
    metrics: Metrics,
}

impl JobRunner {
    pub fn new(http: reqwest::Client, tokens: TokenManager, metrics: Metrics) -> Self {
        Self {
            http,
            tokens,
            metrics,
        }
    }

    /// Runs `job` once, logs and counts the outcome.
    pub async fn run(&self, job: &Job) -> JobReport {
        let started = Instant::now();
        let mut report = self.run_inner(job).await;
        report.latency = started.elapsed();
        self.metrics
            .job_runs
            .with_label_values(&[job.name.as_str(), report.outcome.as_str()])
            .inc();
        self.metrics
            .job_duration
            .with_label_values(&[job.name.as_str()])
            .observe(report.latency.as_secs_f64());
        let latency_ms = report.latency.as_millis() as u64;
        let token_age_secs = report.token_age.map(|a| a.as_secs());
        match report.outcome {
            Outcome::Success => tracing::info!(
                job = %job.name,
                status = report.status,
                latency_ms,
                token_age_secs,
                retried_with_new_token = report.retried_with_new_token,
                retried_after = report.retried_after.as_deref(),
                "job succeeded"
            ),
            Outcome::Failure | Outcome::Error => tracing::warn!(
                job = %job.name,
                outcome = report.outcome.as_str(),
                status = report.status,
                reason = report.reason.as_deref(),
                detail = report.detail.as_deref(),
                latency_ms,
                token_age_secs,
                retried_with_new_token = report.retried_with_new_token,
                retried_after = report.retried_after.as_deref(),
                "job failed"
            ),
        }
        report
    }

    async fn run_inner(&self, job: &Job) -> JobReport {
        let clock = self.tokens.clock();
        let body = job.body_for_run(clock.now());
        let first = self.attempt(job, body.as_deref()).await;
        let Some(cause) = retry_cause(job, &first) else {
            return first;
        };
        let delay = first
            .retry_after
            .map_or(RETRY_DELAY, |d| d.clamp(RETRY_DELAY, RETRY_AFTER_CAP));
        tracing::info!(job = %job.name, %cause, delay_ms = delay.as_millis() as u64, status = first.status, detail = first.detail.as_deref(), "repeating the run once");
        self.metrics
            .job_retries
            .with_label_values(&[job.name.as_str(), cause.as_str()])
            .inc();
        shared::clock::sleep(&**clock, delay).await;
        let mut second = self.attempt(job, body.as_deref()).await;
        second.retried_after = Some(cause);
        second.retried_with_new_token |= first.retried_with_new_token;
        if job.external_id_field.is_some()
            && second.status == Some(409)
            && second.reason.as_deref() == Some("duplicate_external_id")
        {
            // The first attempt was committed before its answer was lost.
            second.outcome = Outcome::Success;
            second.detail = Some("the first attempt had landed (409 duplicate_external_id)".into());
        }
        second
    }

    /// One attempt at the call, with the retry after a 401 `invalid_token`.
    async fn attempt(&self, job: &Job, body: Option<&serde_json::Value>) -> JobReport {
        let mut report = JobReport {
            job: job.name.clone(),
            outcome: Outcome::Error,
            status: None,
            latency: Duration::ZERO,
            token_age: None,
            reason: None,
            retried_with_new_token: false,
            retried_after: None,
            detail: None,
            retry_after: None,
        };
        let mut token = match self.tokens.get_token(&job.scope).await {
            Ok(token) => token,
            Err(error) => {
                report.detail = Some(format!("no token for {}: {error}", job.scope));
                return report;
            }
        };
        let mut response = self.send(job, &token, body).await;
        if let Ok(first) = &response
            && is_invalid_token(first.status().as_u16(), first.headers())
            && self.tokens.invalidate(&job.scope, &token)
        {
            match self.tokens.get_token(&job.scope).await {
                Ok(fresh) => {
                    token = fresh;
                    report.retried_with_new_token = true;
                    response = self.send(job, &token, body).await;
                }
                Err(error) => {
                    report.status = Some(401);
                    report.detail = Some(format!("no new token after a 401: {error}"));
                    return report;
                }
            }
        }
        report.token_age = Some(token.age(self.tokens.clock().now()));
        let response = match response {
            Ok(response) => response,
            Err(error) => {
                report.detail = Some(shared::proxy::error_chain(&error));
                return report;
            }
        };
        let status = response.status().as_u16();
        report.status = Some(status);
        report.retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        if job.is_success(status) {
            report.outcome = Outcome::Success;
            return report;
        }
        report.outcome = Outcome::Failure;
        if (400..500).contains(&status) {
            let problem: Option<serde_json::Value> = response.json().await.ok();
            report.reason = problem
                .as_ref()
                .and_then(|p| p.get("reason"))
                .and_then(|r| r.as_str())
                .map(str::to_owned);
            report.detail = problem
                .as_ref()
                .and_then(|p| p.get("detail"))
                .and_then(|r| r.as_str())
                .map(str::to_owned);
        }
        report
    }

    async fn send(
        &self,
        job: &Job,
        token: &Arc<CachedToken>,
        body: Option<&serde_json::Value>,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let request = self
            .http
            .request(job.method.clone(), job.url.clone())
            .timeout(job.timeout);
        // The header value the token was stored with; one no header can carry fails the send.
        let mut request = match token.bearer() {
            Some(bearer) => request.header(reqwest::header::AUTHORIZATION, bearer.clone()),
            None => request.bearer_auth(token.secret()),
        };
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await
    }
}

/// Why the run deserves a second attempt (`no_answer`, `status_503`), or `None`: the job does not
/// retry, it cannot be repeated safely, it got a token-less error (the token manager has its own
/// retries), or the answer was a decision.
fn retry_cause(job: &Job, first: &JobReport) -> Option<String> {
    if !job.retry || !job.repeatable() || first.outcome == Outcome::Success {
        return None;
    }
    match first.status {
        Some(status @ (429 | 502 | 503 | 504)) => Some(format!("status_{status}")),
        Some(_) => None,
        // No status: either no token (nothing was sent), or the call went unanswered.
        None if first.token_age.is_some() => Some("no_answer".into()),
        None => None,
    }
}

/// RFC 6750 §3.1: the resource server says the token itself is the problem.
pub(crate) fn is_invalid_token(status: u16, headers: &reqwest::header::HeaderMap) -> bool {
    status == 401
        && headers
            .get_all(reqwest::header::WWW_AUTHENTICATE)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.contains("invalid_token")))
}
