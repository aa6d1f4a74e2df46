//! The operator endpoint: `/healthz`, `/readyz`, `/metrics`.

use crate::metrics::Metrics;
use crate::token_manager::TokenManager;
use actix_web::{HttpResponse, web};
use serde_json::json;

pub struct OpsState {
    pub tokens: TokenManager,
    pub metrics: Metrics,
    /// The scopes the daemon must hold tokens for.
    pub scopes: Vec<String>,
}

/// The process is up and serving; says nothing about tokens.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// 503 until every configured scope has a token being served; then 200, with `degraded` while
/// any scope is served a token whose refresh is failing (or was refused permanently).
pub async fn readyz(state: web::Data<OpsState>) -> HttpResponse {
    let statuses = state.tokens.status();
    let mut ready = true;
    let mut degraded = false;
    let scopes: Vec<_> = state
        .scopes
        .iter()
        .map(|scope| {
            let status = statuses.iter().find(|s| &s.scope == scope);
            let has_token = status.is_some_and(|s| s.has_token);
            let failing = status.is_some_and(|s| s.serving_stale || s.permanent_failure);
            ready &= has_token;
            degraded |= failing;
            json!({
                "scope": scope,
                "has_token": has_token,
                "serving_stale": status.is_some_and(|s| s.serving_stale),
                "consecutive_failures": status.map_or(0, |s| s.consecutive_failures),
                "last_error": status.and_then(|s| s.last_error.clone()),
            })
        })
        .collect();
    let verdict = match (ready, degraded) {
        (false, _) => "not_ready",
        (true, true) => "degraded",
        (true, false) => "ready",
    };
    let body = json!({"status": verdict, "scopes": scopes});
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

pub async fn metrics(state: web::Data<OpsState>) -> HttpResponse {
    state.tokens.update_gauges();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
