//! Liveness, readiness and metrics: unauthenticated, for orchestrators and Prometheus.

use super::AppState;
use crate::metrics::Metrics;
use actix_web::{HttpResponse, web};
use serde_json::json;

/// Alive: the process answers. Deliberately checks nothing else, so an identity-provider outage
/// never gets the API restarted (that would throw away the keys it still has).
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is serving")))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Ready: every accepted tenant's signing keys loaded and fresh enough (not past
/// `keys.max_stale_secs`), and the task store answers. 503 with what is wrong otherwise.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Keys loaded and the store answers"),
              (status = 503, description = "Not ready; the body says why")))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let keys = state.validator.keys().readiness_report();
    let store = state.store.clone();
    let store_ok = match web::block(move || store.ping()).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the task store does not answer");
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "readiness: no blocking thread for the store check");
            false
        }
    };
    let ready = keys["state"] == "ready" && store_ok;
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "keys": keys,
        "store": if store_ok { "ok" } else { "unavailable" },
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain")))]
pub async fn metrics(state: web::Data<AppState>, metrics: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics.render(&state.outcomes, &state.validator))
}
