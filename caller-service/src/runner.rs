//! Running one job: token, call, outcome. A 401 `invalid_token` from the API drops the token once
//! (rate-limited by the token manager) and the call is retried once with a fresh one.

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
    pub detail: Option<String>,
}

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
                "job failed"
            ),
        }
        report
    }

    async fn run_inner(&self, job: &Job) -> JobReport {
        let mut report = JobReport {
            job: job.name.clone(),
            outcome: Outcome::Error,
            status: None,
            latency: Duration::ZERO,
            token_age: None,
            reason: None,
            retried_with_new_token: false,
            detail: None,
        };
        let mut token = match self.tokens.get_token(&job.scope).await {
            Ok(token) => token,
            Err(error) => {
                report.detail = Some(format!("no token for {}: {error}", job.scope));
                return report;
            }
        };
        let mut response = self.send(job, &token).await;
        if let Ok(first) = &response
            && is_invalid_token(first)
            && self.tokens.invalidate(&job.scope, &token)
        {
            match self.tokens.get_token(&job.scope).await {
                Ok(fresh) => {
                    token = fresh;
                    report.retried_with_new_token = true;
                    response = self.send(job, &token).await;
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
                report.detail = Some(one_line(&error));
                return report;
            }
        };
        let status = response.status().as_u16();
        report.status = Some(status);
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
    ) -> Result<reqwest::Response, reqwest::Error> {
        let mut request = self
            .http
            .request(job.method.clone(), job.url.clone())
            .bearer_auth(token.secret())
            .timeout(job.timeout);
        if let Some(body) = &job.body {
            request = request.json(body);
        }
        request.send().await
    }
}

/// RFC 6750 §3.1: the resource server says the token itself is the problem.
pub(crate) fn is_invalid_token(response: &reqwest::Response) -> bool {
    response.status() == reqwest::StatusCode::UNAUTHORIZED
        && response
            .headers()
            .get_all(reqwest::header::WWW_AUTHENTICATE)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.contains("invalid_token")))
}

/// reqwest's error with its causes, on one line (it never contains the bearer token).
fn one_line(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
