//! Prometheus metrics, in a registry of our own (not the process-global default) so that every
//! `Application` in a test binary counts only its own work.

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    /// Acquisitions by scope, result (`ok`/`error`) and reason (`ok`, `throttled`, `aadsts_7000215`…).
    pub acquisitions: IntCounterVec,
    /// HTTP requests the identity provider received from us, by status (`error` when no answer).
    pub idp_requests: IntCounterVec,
    pub seconds_until_expiry: GaugeVec,
    /// 1 while a scope's refresh is failing and its previous token is being served.
    pub serving_stale: IntGaugeVec,
    pub job_runs: IntCounterVec,
    pub job_duration: HistogramVec,
    pub job_retries: IntCounterVec,
    /// Requests the sidecar forwarded, by upstream and the status the app got (`502`/`503`/`504`
    /// when the sidecar answered itself).
    pub sidecar_requests: IntCounterVec,
    pub sidecar_duration: HistogramVec,
    /// Requests whose own `Authorization` header the sidecar replaced, by upstream.
    pub sidecar_authorization_replaced: IntCounterVec,
    /// Requests sent a second time with a new token after the upstream's 401 `invalid_token`.
    pub sidecar_token_retries: IntCounterVec,
    /// Managed-identity endpoint answers, by result (`ok`, `wrong_header`, `unknown_resource`…).
    pub sidecar_identity_requests: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registration only fails on a duplicate or malformed metric name, which these constants are
    /// not: a failure here is a programming error caught by every test, hence the `expect`s.
    #[allow(clippy::expect_used)]
    pub fn new() -> Self {
        let registry = Registry::new();
        let acquisitions = IntCounterVec::new(
            Opts::new(
                "caller_token_acquisitions_total",
                "Token acquisitions from the identity provider, by result and reason.",
            ),
            &["scope", "result", "reason"],
        )
        .expect("valid metric");
        let idp_requests = IntCounterVec::new(
            Opts::new(
                "caller_idp_requests_total",
                "HTTP requests sent to the identity provider, by response status.",
            ),
            &["status"],
        )
        .expect("valid metric");
        let seconds_until_expiry = GaugeVec::new(
            Opts::new(
                "caller_token_seconds_until_expiry",
                "Seconds until the token served for a scope expires (negative: expired).",
            ),
            &["scope"],
        )
        .expect("valid metric");
        let serving_stale = IntGaugeVec::new(
            Opts::new(
                "caller_token_serving_stale",
                "1 while the token for a scope is past its refresh time and refreshing fails.",
            ),
            &["scope"],
        )
        .expect("valid metric");
        let job_runs = IntCounterVec::new(
            Opts::new("caller_job_runs_total", "Job runs by job and outcome."),
            &["job", "outcome"],
        )
        .expect("valid metric");
        let job_duration = HistogramVec::new(
            HistogramOpts::new("caller_job_duration_seconds", "Job run duration.").buckets(vec![
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
            &["job"],
        )
        .expect("valid metric");
        let job_retries = IntCounterVec::new(
            Opts::new(
                "caller_job_retries_total",
                "Job runs repeated once after no answer or a 429/502/503/504, by job and cause.",
            ),
            &["job", "cause"],
        )
        .expect("valid metric");
        let sidecar_requests = IntCounterVec::new(
            Opts::new(
                "caller_sidecar_requests_total",
                "Requests forwarded by the sidecar, by upstream and the status the app got.",
            ),
            &["upstream", "status"],
        )
        .expect("valid metric");
        let sidecar_duration = HistogramVec::new(
            HistogramOpts::new(
                "caller_sidecar_request_duration_seconds",
                "Time from the app's request to the upstream's answer head, by upstream.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["upstream"],
        )
        .expect("valid metric");
        let sidecar_authorization_replaced = IntCounterVec::new(
            Opts::new(
                "caller_sidecar_authorization_replaced_total",
                "Requests whose own Authorization header the sidecar replaced, by upstream.",
            ),
            &["upstream"],
        )
        .expect("valid metric");
        let sidecar_token_retries = IntCounterVec::new(
            Opts::new(
                "caller_sidecar_token_retries_total",
                "Requests resent with a new token after the upstream's 401 invalid_token.",
            ),
            &["upstream"],
        )
        .expect("valid metric");
        let sidecar_identity_requests = IntCounterVec::new(
            Opts::new(
                "caller_sidecar_identity_requests_total",
                "Managed-identity endpoint answers, by result.",
            ),
            &["result"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(acquisitions.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(idp_requests.clone()),
            Box::new(seconds_until_expiry.clone()),
            Box::new(serving_stale.clone()),
            Box::new(job_runs.clone()),
            Box::new(job_duration.clone()),
            Box::new(job_retries.clone()),
            Box::new(sidecar_requests.clone()),
            Box::new(sidecar_duration.clone()),
            Box::new(sidecar_authorization_replaced.clone()),
            Box::new(sidecar_token_retries.clone()),
            Box::new(sidecar_identity_requests.clone()),
        ] {
            registry.register(collector).expect("unique metric");
        }
        Self {
            registry,
            acquisitions,
            idp_requests,
            seconds_until_expiry,
            serving_stale,
            job_runs,
            job_duration,
            job_retries,
            sidecar_requests,
            sidecar_duration,
            sidecar_authorization_replaced,
            sidecar_token_retries,
            sidecar_identity_requests,
        }
    }

    /// The Prometheus text exposition of everything registered.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into a Vec only fails on a malformed family, which registration prevents.
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(%error, "encoding metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}
