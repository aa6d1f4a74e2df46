//! HTTP routes, at Entra's paths. Shared response helpers live here; each endpoint family has its
//! own module.

pub mod admin;
pub mod authorize;
pub mod cluster;
pub mod discovery;
pub mod managed_identity;
pub mod session;
pub mod token;

use crate::aadsts::AadError;
use crate::faults::{FaultKind, FaultTarget};
use crate::state::AppState;
use actix_web::guard;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use std::time::Duration;

pub fn configure(cfg: &mut web::ServiceConfig, admin_enabled: bool) {
    cfg.route("/healthz", web::get().to(healthz))
        // Before the tenants' paths: `/cluster/.well-known/…` would otherwise name a tenant.
        .route(
            "/cluster/.well-known/openid-configuration",
            web::get().to(cluster::discovery),
        )
        .route("/cluster/openid/v1/jwks", web::get().to(cluster::jwks))
        .route(
            "/common/discovery/instance",
            web::get().to(discovery::instance_discovery),
        )
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            web::get().to(discovery::openid_configuration_v2),
        )
        .route(
            "/{tenant}/.well-known/openid-configuration",
            web::get().to(discovery::openid_configuration_v1),
        )
        .route(
            "/{tenant}/discovery/v2.0/keys",
            web::get().to(discovery::jwks_v2),
        )
        .route(
            "/{tenant}/discovery/keys",
            web::get().to(discovery::jwks_v1),
        )
        .route("/discovery/keys", web::get().to(discovery::jwks_v1_common))
        .route(
            "/{tenant}/oauth2/v2.0/token",
            web::post().to(token::token_v2),
        )
        .route("/{tenant}/oauth2/token", web::post().to(token::token_v1))
        // Any other method but OPTIONS (CORS preflight), which Entra accepts too.
        .route(
            "/{tenant}/oauth2/v2.0/token",
            web::route()
                .guard(guard::Not(guard::Options()))
                .to(token::not_post),
        )
        .route(
            "/{tenant}/oauth2/token",
            web::route()
                .guard(guard::Not(guard::Options()))
                .to(token::not_post),
        )
        .route(
            "/{tenant}/oauth2/v2.0/authorize",
            web::get().to(authorize::authorize),
        )
        .route(
            "/{tenant}/oauth2/authorize",
            web::get().to(authorize::authorize),
        )
        .route(
            "/{tenant}/oauth2/v2.0/logout",
            web::route()
                .guard(guard::Any(guard::Get()).or(guard::Post()))
                .to(session::logout),
        )
        .route(
            "/{tenant}/oauth2/logout",
            web::route()
                .guard(guard::Any(guard::Get()).or(guard::Post()))
                .to(session::logout),
        )
        .route(
            "/{tenant}/oauth2/checksession",
            web::get().to(session::check_session),
        )
        .route(
            "/{tenant}/openid/userinfo",
            web::route().to(session::userinfo),
        )
        .route(
            "/{tenant}/oauth2/v2.0/devicecode",
            web::route()
                .guard(guard::Not(guard::Options()))
                .to(session::unsupported_flow),
        )
        .route(
            "/{tenant}/oauth2/devicecode",
            web::route()
                .guard(guard::Not(guard::Options()))
                .to(session::unsupported_flow),
        )
        .route(
            "/{tenant}/kerberos",
            web::route()
                .guard(guard::Not(guard::Options()))
                .to(session::unsupported_flow),
        )
        .route("/msi/token", web::get().to(managed_identity::token))
        .route(
            "/metadata/identity/oauth2/token",
            web::get().to(managed_identity::imds_token),
        );
    if admin_enabled {
        cfg.service(
            web::scope("/admin")
                .route("/keys", web::get().to(admin::list_keys))
                .route("/keys/rotate", web::post().to(admin::rotate_keys))
                .route("/keys/{kid}/retire", web::post().to(admin::retire_key))
                .route("/faults", web::get().to(admin::list_faults))
                .route("/faults", web::post().to(admin::add_fault))
                .route("/faults", web::delete().to(admin::clear_faults))
                .route(
                    "/federated-credentials",
                    web::get().to(admin::list_federated),
                )
                .route(
                    "/federated-credentials/{client_id}/{name}",
                    web::delete().to(admin::remove_federated),
                ),
        );
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// Entra's per-request identifiers: a fresh trace ID, and the caller's `client-request-id` as the
/// correlation ID when it sent a GUID (as MSAL does), so its logs and ours line up.
pub struct RequestIds {
    pub trace_id: String,
    pub correlation_id: String,
}

impl RequestIds {
    pub fn of(req: &HttpRequest) -> Self {
        let correlation_id = req
            .headers()
            .get("client-request-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| uuid::Uuid::parse_str(v).ok())
            .unwrap_or_else(uuid::Uuid::new_v4)
            .to_string();
        Self {
            trace_id: uuid::Uuid::new_v4().to_string(),
            correlation_id,
        }
    }

    fn stamp(&self, response: &mut HttpResponse) {
        let headers = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&self.correlation_id) {
            headers.insert(header::HeaderName::from_static("client-request-id"), v);
        }
        if let Ok(v) = HeaderValue::from_str(&self.trace_id) {
            headers.insert(header::HeaderName::from_static("x-ms-request-id"), v);
        }
    }
}

/// An Entra error body, not to be cached.
/// `common`, `organizations` or `consumers`: Entra's multi-tenant aliases in a path.
pub(crate) fn is_multi_tenant(tenant: &str) -> bool {
    discovery::MULTI_TENANT
        .iter()
        .any(|alias| alias.eq_ignore_ascii_case(tenant))
}

pub fn aad_error(state: &AppState, ids: &RequestIds, err: &AadError) -> HttpResponse {
    tracing::info!(
        aadsts = err.code,
        error = err.error,
        status = err.status.as_u16(),
        correlation_id = %ids.correlation_id,
        "request refused"
    );
    no_store_json(
        err.status,
        ids,
        &err.body(&ids.trace_id, &ids.correlation_id, state.now()),
    )
}

/// A JSON answer that must not be cached, as Entra sends tokens and errors.
pub fn no_store_json(status: StatusCode, ids: &RequestIds, body: &impl Serialize) -> HttpResponse {
    let mut response = HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store, no-cache"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(body);
    ids.stamp(&mut response);
    response
}

/// A JSON document that clients may cache, as Entra serves discovery and keys.
pub fn cacheable_json(ids: &RequestIds, body: &serde_json::Value) -> HttpResponse {
    let mut response = HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "max-age=86400, private"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .json(body);
    ids.stamp(&mut response);
    response
}

/// Answers for an injected fault, if one is active for `target`.
pub async fn injected_fault(
    state: &AppState,
    ids: &RequestIds,
    target: FaultTarget,
) -> Option<HttpResponse> {
    let (kind, hang_secs) = state.faults.take(target, state.now())?;
    tracing::info!(?target, ?kind, "injected fault");
    Some(match kind {
        FaultKind::Throttle { retry_after_secs } => HttpResponse::TooManyRequests()
            .insert_header((header::RETRY_AFTER, retry_after_secs.to_string()))
            .content_type("text/plain; charset=utf-8")
            .body("Too many requests. Retry later."),
        FaultKind::Unavailable => aad_error(state, ids, &AadError::temporarily_unavailable()),
        FaultKind::Hang { .. } => {
            tokio::time::sleep(Duration::from_secs(hang_secs)).await;
            aad_error(state, ids, &AadError::temporarily_unavailable())
        }
    })
}
