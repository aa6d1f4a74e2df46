//! The managed-identity endpoint App Service, Functions and Container Apps give their apps:
//! `GET {IDENTITY_ENDPOINT}?resource=…&api-version=2019-08-01[&client_id=…|object_id=…|
//! principal_id=…|mi_res_id=…|msi_res_id=…]` with `X-IDENTITY-HEADER: {IDENTITY_HEADER}`. The
//! Azure SDKs' `ManagedIdentityCredential` (azure-identity for Python through MSAL, the Rust
//! `azure_identity`) speak it unmodified when those two variables are set. Tokens are minted as
//! the token endpoint mints an app token (same resources, role assignments and AADSTS checks), for
//! the directory's `managed_identities`, with `xms_mirid`; answers and errors are App Service's:
//! `{access_token, expires_on (a string of epoch seconds), resource, token_type, client_id}`, and
//! `{statusCode, message}`.

use super::{RequestIds, injected_fault};
use crate::directory::{Application, Directory, Tenant};
use crate::faults::FaultTarget;
use crate::settings::ManagedIdentitySettings;
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;
use shared::claims::ClientAuth;
use shared::config::ConfigError;

pub const API_VERSION: &str = "2019-08-01";

/// Checks the section against the directory at start: the tenant exists, and the system-assigned
/// identity is one of its managed identities.
pub fn check(settings: &ManagedIdentitySettings, directory: &Directory) -> Result<(), ConfigError> {
    if settings.identity_header.is_none() {
        return Ok(());
    }
    let tenant = serving_tenant(settings, directory).ok_or_else(|| {
        ConfigError::key(
            "managed_identity.tenant",
            format!(
                "no tenant '{}' in the directory",
                settings.tenant.as_deref().unwrap_or("(first)")
            ),
        )
    })?;
    if let Some(name) = &settings.system_assigned
        && !tenant
            .applications
            .iter()
            .any(|a| &a.name == name && a.managed_identity.is_some())
    {
        return Err(ConfigError::key(
            "managed_identity.system_assigned",
            format!(
                "no managed identity '{name}' in tenant {} (managed_identities)",
                tenant.domain
            ),
        ));
    }
    Ok(())
}

fn serving_tenant<'d>(
    settings: &ManagedIdentitySettings,
    directory: &'d Directory,
) -> Option<&'d Tenant> {
    match &settings.tenant {
        Some(tenant) => directory.tenant(tenant),
        None => directory.tenants.first(),
    }
}

fn answer(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "statusCode": status.as_u16(), "message": message }))
}

pub async fn token(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let settings = &state.settings.managed_identity;
    let Some(secret) = &settings.identity_header else {
        return HttpResponse::NotFound().json(json!({"error": "not_found"}));
    };
    let ids = RequestIds::of(&req);
    if let Some(response) = injected_fault(&state, &ids, FaultTarget::Token).await {
        return response;
    }
    let header_ok = req
        .headers()
        .get("x-identity-header")
        .is_some_and(|given| secret.matches(given.as_bytes()));
    if !header_ok {
        return answer(
            StatusCode::UNAUTHORIZED,
            "The X-IDENTITY-HEADER header is missing or wrong.",
        );
    }
    let mut api_version = None;
    let mut resource = None;
    let mut selectors = Vec::new();
    for (key, value) in url::form_urlencoded::parse(req.query_string().as_bytes()) {
        match key.as_ref() {
            "api-version" => api_version = Some(value.into_owned()),
            "resource" => resource = Some(value.into_owned()),
            "client_id" | "object_id" | "principal_id" | "mi_res_id" | "msi_res_id" => {
                selectors.push((key.into_owned(), value.into_owned()));
            }
            _ => {}
        }
    }
    if api_version.as_deref() != Some(API_VERSION) {
        return answer(
            StatusCode::BAD_REQUEST,
            &format!(
                "api-version {} is not supported; use {API_VERSION}.",
                api_version.as_deref().unwrap_or("(missing)")
            ),
        );
    }
    let Some(resource) = resource.filter(|r| !r.is_empty()) else {
        return answer(
            StatusCode::BAD_REQUEST,
            "The resource parameter is missing.",
        );
    };
    let directory = state.directory();
    let Some(tenant) = serving_tenant(settings, directory) else {
        return answer(StatusCode::INTERNAL_SERVER_ERROR, "No tenant to serve.");
    };
    let identity: Option<&Application> = match selectors.as_slice() {
        [] => settings.system_assigned.as_ref().and_then(|name| {
            tenant
                .applications
                .iter()
                .find(|a| &a.name == name && a.managed_identity.is_some())
        }),
        [(key, value)] => tenant.managed_identity(key, value),
        _ => {
            return answer(
                StatusCode::BAD_REQUEST,
                "Name the identity at most once (client_id, object_id, principal_id or mi_res_id).",
            );
        }
    };
    let Some(identity) = identity else {
        let asked = selectors
            .first()
            .map(|(key, value)| format!("{key} {value}"))
            .unwrap_or_else(|| "a system-assigned identity".into());
        return answer(
            StatusCode::BAD_REQUEST,
            &format!("No managed identity with {asked} is assigned to this resource."),
        );
    };
    let service = &state.tokens;
    let issued = service
        .resolve_v1_resource(tenant, &tenant.id, &resource)
        .and_then(|resource| {
            service.app_token(tenant, identity, &resource, ClientAuth::Certificate)
        });
    match issued {
        Ok(issued) => {
            tracing::info!(
                identity = %identity.name,
                resource = %resource,
                "managed identity token issued"
            );
            HttpResponse::Ok()
                .insert_header(("cache-control", "no-store, no-cache"))
                .json(json!({
                    "access_token": issued.access_token,
                    "expires_on": issued.expires_on.to_string(),
                    "resource": resource,
                    "token_type": "Bearer",
                    "client_id": identity.client_id,
                }))
        }
        Err(error) => answer(StatusCode::BAD_REQUEST, &error.to_string()),
    }
}
