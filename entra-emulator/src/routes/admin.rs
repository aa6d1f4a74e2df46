//! `/admin/*`: key rotation, fault injection and federated credentials. Registered only when `admin.enabled`; each call
//! must come from loopback, or carry `Authorization: Bearer {admin.secret}` when one is set.

use crate::faults::FaultRequest;
use crate::keys::RetireOutcome;
use crate::state::AppState;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;
use std::net::IpAddr;

/// Admin calls come from loopback, or carry the configured secret as a Bearer token (compared in
/// constant time). With no secret configured, only loopback is accepted.
pub fn admin_allowed(
    peer: Option<IpAddr>,
    authorization: Option<&str>,
    secret: Option<&shared::Secret>,
) -> bool {
    if peer.is_some_and(|ip| ip.is_loopback()) {
        return true;
    }
    match (
        secret,
        authorization.and_then(|v| v.strip_prefix("Bearer ")),
    ) {
        (Some(secret), Some(presented)) => aws_lc_rs::constant_time::verify_slices_are_equal(
            secret.expose().as_bytes(),
            presented.as_bytes(),
        )
        .is_ok(),
        _ => false,
    }
}

/// `Some(response)` when the call must be refused.
fn denied(req: &HttpRequest, state: &AppState) -> Option<HttpResponse> {
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if admin_allowed(
        req.peer_addr().map(|a| a.ip()),
        authorization,
        state.settings.admin.secret.as_ref(),
    ) {
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

/// Every federated identity credential, by tenant ID, then client ID.
pub async fn list_federated(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Some(refusal) = denied(&req, &state) {
        return refusal;
    }
    HttpResponse::Ok().json(json!({ "federated_credentials": state.federation.list() }))
}

/// Removes one federated credential while the emulator runs (in every tenant where that client ID
/// has one by that name), as `az ad app federated-credential delete` does: the next exchange that needed it is refused (AADSTS70021 when it was the last).
pub async fn remove_federated(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> HttpResponse {
    if let Some(refusal) = denied(&req, &state) {
        return refusal;
    }
    let (client_id, name) = path.into_inner();
    let removed = state.federation.remove(&client_id, &name);
    if removed > 0 {
        tracing::warn!(%client_id, %name, tenants = removed, "federated credential removed");
        HttpResponse::Ok()
            .json(json!({ "removed": name, "client_id": client_id, "tenants": removed }))
    } else {
        HttpResponse::NotFound().json(json!({
            "error": "unknown_federated_credential",
            "detail": format!("client {client_id} has no federated credential named '{name}'"),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::admin_allowed;
    use std::net::IpAddr;

    #[test]
    fn loopback_or_the_secret_and_nothing_else() {
        let loopback: Option<IpAddr> = Some([127, 0, 0, 1].into());
        let remote: Option<IpAddr> = Some([10, 1, 2, 3].into());
        let secret = shared::Secret::new("an-admin-secret-of-length");
        assert!(admin_allowed(loopback, None, None));
        assert!(admin_allowed(Some("::1".parse().expect("ip")), None, None));
        assert!(
            !admin_allowed(remote, None, None),
            "no secret configured: loopback only"
        );
        assert!(!admin_allowed(
            remote,
            Some("Bearer an-admin-secret-of-length"),
            None
        ));
        assert!(!admin_allowed(remote, None, Some(&secret)));
        assert!(!admin_allowed(remote, Some("Bearer wrong"), Some(&secret)));
        assert!(
            !admin_allowed(remote, Some("an-admin-secret-of-length"), Some(&secret)),
            "Bearer scheme required"
        );
        assert!(admin_allowed(
            remote,
            Some("Bearer an-admin-secret-of-length"),
            Some(&secret)
        ));
        assert!(!admin_allowed(None, None, Some(&secret)));
    }
}
