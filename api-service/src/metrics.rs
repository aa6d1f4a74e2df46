//! Prometheus metrics at `GET /metrics`: requests by route, method and status with latency; and,
//! read at scrape time from the auth library's own counters (which know nothing of Prometheus),
//! auth outcomes by reason, JWKS fetches, failures and age, and verified-token cache hits.

use actix_web::http::StatusCode;
use entra_auth::{AuthOutcomes, Validator};
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use std::time::Duration;

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
}

impl Metrics {
    /// Start-up invariant: the metric definitions below are static and valid, so registration
    /// cannot fail; a failure would be a programming error caught by the first test.
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "api_http_requests_total",
                "HTTP requests by route pattern, method and status.",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        // Buckets from 100 µs: a cached validation plus a small answer takes well under 1 ms, so
        // the default buckets (5 ms and up) would put every request in the first one.
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "api_http_request_duration_seconds",
                "Time from request to response, by route pattern.",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
            &["route"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(requests.clone()))
            .expect("registers once");
        registry
            .register(Box::new(latency.clone()))
            .expect("registers once");
        Self {
            registry,
            requests,
            latency,
        }
    }

    pub fn observe_request(
        &self,
        route: &str,
        method: &str,
        status: StatusCode,
        elapsed: Duration,
    ) {
        self.requests
            .with_label_values(&[route, method, status.as_str()])
            .inc();
        self.latency
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
    }

    /// The text exposition format.
    pub fn render(&self, auth: &AuthOutcomes, validator: &Validator) -> String {
        let mut buffer = Vec::new();
        if let Err(e) = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut buffer)
        {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        let mut out = String::from_utf8(buffer).unwrap_or_default();

        entra_auth::metrics::render(&mut out, "api", auth, validator);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
