//! `GET /metrics`: decisions by mode (`proxy`, `nginx`, `traefik`, `envoy`), route rule and
//! outcome (`accepted` or the refusal reason); upstream answers by route and status, and their
//! latency; plus the validator's own counters (`gateway_auth_*`, `gateway_jwks_*`,
//! `gateway_token_*`). Route labels are the configured rules (or `unmatched`), never raw paths,
//! so no client can grow the label set.

use entra_auth::{AuthOutcomes, Validator};
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};
use std::time::Duration;

/// The modes that decide: the reverse proxy and the three forward-auth dialects.
pub const MODES: [&str; 4] = ["proxy", "nginx", "traefik", "envoy"];

pub struct Metrics {
    registry: Registry,
    decisions: IntCounterVec,
    /// Each rule's `accepted` counter in each mode, bound once ([`Metrics::bind_rules`]): the
    /// increment on every accepted request then hashes no label.
    accepted: Vec<[IntCounter; MODES.len()]>,
    upstream: IntCounterVec,
    upstream_latency: HistogramVec,
}

impl Metrics {
    /// The definitions are static and valid, so registration cannot fail; a failure would be a
    /// programming error caught by the first test.
    pub fn new() -> Self {
        let registry = Registry::new();
        let decisions = IntCounterVec::new(
            Opts::new(
                "gateway_decisions_total",
                "Requests decided, by mode, route rule and outcome (accepted or the refusal reason).",
            ),
            &["mode", "route", "outcome"],
        )
        .expect("valid metric");
        let upstream = IntCounterVec::new(
            Opts::new(
                "gateway_upstream_responses_total",
                "Upstream answers by route rule and status (502 and 504 are the gateway's own when the upstream failed).",
            ),
            &["route", "status"],
        )
        .expect("valid metric");
        let upstream_latency = HistogramVec::new(
            HistogramOpts::new(
                "gateway_upstream_duration_seconds",
                "Time from forwarding a request to the upstream's response headers, by route rule.",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
                5.0,
            ]),
            &["route"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(decisions.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(upstream.clone()),
            Box::new(upstream_latency.clone()),
        ] {
            registry.register(collector).expect("registers once");
        }
        Self {
            registry,
            decisions,
            accepted: Vec::new(),
            upstream,
            upstream_latency,
        }
    }

    /// Binds the `accepted` counters of the rules labelled `labels`, in order (the series start
    /// at 0, as Prometheus advises for series known in advance).
    pub fn bind_rules<'l>(&mut self, labels: impl IntoIterator<Item = &'l str>) {
        self.accepted = labels
            .into_iter()
            .map(|route| {
                MODES.map(|mode| self.decisions.with_label_values(&[mode, route, "accepted"]))
            })
            .collect();
    }

    /// An accepted request of rule number `rule` (labelled `route`).
    pub fn accepted(&self, mode: &str, rule: usize, route: &str) {
        let mode_index = MODES.iter().position(|m| *m == mode);
        match (self.accepted.get(rule), mode_index) {
            (Some(by_mode), Some(index)) => by_mode[index].inc(),
            _ => self.decided(mode, route, "accepted"),
        }
    }

    pub fn decided(&self, mode: &str, route: &str, outcome: &str) {
        self.decisions
            .with_label_values(&[mode, route, outcome])
            .inc();
    }

    pub fn upstream_answered(&self, route: &str, status: u16, elapsed: Duration) {
        // HTTP statuses have three digits: written on the stack, not allocated per answer.
        let digits = [100, 10, 1].map(|unit| b'0' + (status / unit % 10) as u8);
        let status = std::str::from_utf8(&digits).unwrap_or("000");
        self.upstream.with_label_values(&[route, status]).inc();
        self.upstream_latency
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
        entra_auth::metrics::render(&mut out, "gateway", auth, validator);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
