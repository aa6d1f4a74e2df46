//! Liveness, readiness and metrics: unauthenticated, for orchestrators and Prometheus.

use super::AppState;
use crate::metrics::Metrics;
use crate::problem::ApiError;
use crate::store::StoreError;
use actix_web::{HttpResponse, web};
use serde_json::json;

/// Alive: the process answers. Deliberately checks nothing else, so an identity-provider outage
/// never gets the API restarted (that would throw away the keys it still has).
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is serving")))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// The checks `/readyz` makes, by the names its body and `exclude` use.
const CHECKS: [&str; 2] = ["keys", "database"];

/// Ready: every accepted tenant's signing keys loaded and fresh enough (not past
/// `keys.max_stale_secs`), the task database answers, and the server is not draining. 503
/// otherwise, the body naming what is down (`"down": ["keys", "database"]`, or `["draining"]`
/// once SIGTERM has begun `server.drain_secs`) and the database's state (`ok`, `unreachable`,
/// `failing`). With `server.drain_secs` set, also `keys_expiring` in the last `drain_secs` before
/// the keys' stale bound (they still serve; the keys' own state says `ready` until the bound):
/// a balancer takes the replica out before it starts refusing tokens.
///
/// `?exclude=database` (repeatable, as kube-apiserver's `/readyz?exclude=etcd`) leaves the check
/// out of the answer: the database is not asked (`"state": "not_checked"`), and keys are reported
/// but not counted. A load balancer in front of replicas that share
/// one database checks with it: a database outage hits every replica alike, and taking them all
/// out of rotation would turn 503s on task routes into no answer at all, `whoami` included.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    params(("exclude" = Option<String>, Query,
        description = "A check (`keys` or `database`) reported but not counted; repeatable")),
    responses((status = 200, description = "Keys loaded and the database answers"),
              (status = 400, description = "`exclude` names no check"),
              (status = 503, description = "Not ready; `down` names what is wrong")))]
pub async fn readyz(
    state: web::Data<AppState>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let mut excluded = Vec::new();
    for (name, value) in query.into_inner() {
        if name != "exclude" {
            return Err(ApiError::BadRequest(format!(
                "`{name}`: unknown parameter; `/readyz` takes only `exclude`"
            )));
        }
        let Some(check) = CHECKS.into_iter().find(|c| *c == value) else {
            return Err(ApiError::BadRequest(format!(
                "`exclude`: no check is named `{value}`; the checks are keys and database"
            )));
        };
        excluded.push(check);
    }
    let keys = state.validator.keys().readiness_report();
    // An excluded database is not even asked: a partitioned one would hold the answer for the
    // ping's timeout, as long as a balancer's check may take, and fail every replica's check.
    let database = if excluded.contains(&"database") {
        "not_checked"
    } else {
        database_state(&state).await
    };
    let keys_ok = keys["state"] == "ready";
    // Within `server.drain_secs` of the stale bound: still serving, but out of rotation first.
    let expiring = keys_ok && state.validator.keys().expires_within(state.draining.lead());
    let store_ok = matches!(database, "ok" | "not_checked");
    let draining = state.draining.is_draining();
    // Each reason with the check it belongs to: `exclude=keys` covers `keys_expiring` too.
    let failing: Vec<(&str, &str)> = [
        ("keys", "keys", keys_ok),
        ("keys_expiring", "keys", !expiring),
        ("database", "database", store_ok),
        ("draining", "draining", !draining),
    ]
    .into_iter()
    .filter(|(_, _, ok)| !ok)
    .map(|(name, check, _)| (name, check))
    .collect();
    let ready = failing.iter().all(|(_, check)| excluded.contains(check));
    let down: Vec<&str> = failing.iter().map(|(name, _)| *name).collect();
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "keys": keys,
        "store": if store_ok { "ok" } else { "unavailable" },
        "database": { "backend": state.store.backend(), "state": database },
        "draining": draining,
        "down": down,
        "excluded": excluded,
    });
    Ok(if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    })
}

/// `ok`, `unreachable` or `failing`, within [`PING_TIMEOUT`].
async fn database_state(state: &AppState) -> &'static str {
    match tokio::time::timeout(PING_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => "ok",
        Ok(Err(StoreError::Unavailable(reason))) => {
            tracing::warn!(%reason, backend = state.store.backend(), "readiness: the task database is unreachable");
            "unreachable"
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, backend = state.store.backend(), "readiness: the task database fails");
            "failing"
        }
        Err(_) => {
            tracing::warn!(
                backend = state.store.backend(),
                "readiness: the task database did not answer in time"
            );
            "unreachable"
        }
    }
}

/// A readiness probe answers within a couple of seconds, whatever the database does.
const PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain")))]
pub async fn metrics(state: web::Data<AppState>, metrics: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics.render(&state.outcomes, &state.validator))
}
