//! `/admin/*`: key rotation and fault injection. Registered only when `admin.enabled`; each call
//! must come from loopback, or carry `Authorization: Bearer {admin.secret}` when one is set.

use crate::faults::FaultRequest;
use crate::keys::RetireOutcome;
use crate::state::AppState;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

/// `Some(response)` when the call must be refused.
fn denied(req: &HttpRequest, state: &AppState) -> Option<HttpResponse> {
    let loopback = req.peer_addr().is_some_and(|a| a.ip().is_loopback());
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let secret_ok = match (&state.settings.admin.secret, presented) {
        (Some(secret), Some(p)) => aws_lc_rs::constant_time::verify_slices_are_equal(
            secret.expose().as_bytes(),
            p.as_bytes(),
        )
        .is_ok(),
        _ => false,
    };
    if loopback || secret_ok {
        return None;
    }
    tracing::warn!(peer = ?req.peer_addr(), "admin call refused");
    Some(HttpResponse::Forbidden().json(json!({
        "error": "forbidden",
        "detail": "admin calls are accepted from loopback, or with the admin secret as a Bearer token",
    })))
}

pub async fn list_keys(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Some(refusal) = denied(&req, &state) {
        return refusal;
    }
    HttpResponse::Ok().json(json!({ "keys": state.tokens.keys.summary() }))
}

pub async fn rotate_keys(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Some(refusal) = denied(&req, &state) {
        return refusal;
    }
    match state.tokens.keys.rotate(state.now()).await {
        Ok(kid) => {
            tracing::info!(%kid, "rotated signing key: new key published and signing");
            HttpResponse::Ok()
                .json(json!({ "active_kid": kid, "keys": state.tokens.keys.summary() }))
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "key rotation failed");
            HttpResponse::InternalServerError()
                .json(json!({ "error": "rotation_failed", "detail": format!("{e:#}") }))
        }
    }
}

pub async fn retire_key(
    req: HttpRequest,
    kid: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    if let Some(refusal) = denied(&req, &state) {
        return refusal;
    }
    match state.tokens.keys.retire(&kid).await {
        Ok(RetireOutcome::Retired) => {
            tracing::info!(kid = %kid, "retired signing key: withdrawn from the JWKS");
            HttpResponse::Ok()
                .json(json!({ "retired": kid.as_str(), "keys": state.tokens.keys.summary() }))
        }
        Ok(RetireOutcome::Unknown) => {
            HttpResponse::NotFound().json(json!({ "error": "unknown_kid", "kid": kid.as_str() }))
        }
        Ok(RetireOutcome::Active) => HttpResponse::Conflict().json(json!({
            "error": "active_key", "detail": "the signing key cannot be retired; rotate first",
        })),
        Err(e) => HttpResponse::InternalServerError()
            .json(json!({ "error": "retire_failed", "detail": format!("{e:#}") })),
    }
}

pub async fn list_faults(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Some(refusal) = denied(&req, &state) {
        return refusal;
    }
    HttpResponse::Ok().json(json!({ "faults": state.faults.list(state.now()) }))
}

pub async fn add_fault(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> HttpResponse {
    if let Some(refusal) = denied(&req, &state) {
        return refusal;
    }
    let request: FaultRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return HttpResponse::BadRequest()
                .json(json!({ "error": "invalid_fault", "detail": e.to_string() }));
        }
    };
    match state.faults.add(request, state.now()) {
        Ok(fault) => {
            tracing::warn!(?fault, "fault injected");
            HttpResponse::Created().json(fault)
        }
        Err(detail) => {
            HttpResponse::BadRequest().json(json!({ "error": "invalid_fault", "detail": detail }))
        }
    }
}

pub async fn clear_faults(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Some(refusal) = denied(&req, &state) {
        return refusal;
    }
    let cleared = state.faults.clear();
    tracing::info!(cleared, "faults cleared");
    HttpResponse::Ok().json(json!({ "cleared": cleared }))
}
