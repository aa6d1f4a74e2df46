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
use shared::managed_identity::{self, TokenRequest};

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
    HttpResponse::build(status).json(managed_identity::error_body(status.as_u16(), message))
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
        .get(managed_identity::SECRET_HEADER)
        .is_some_and(|given| secret.matches(given.as_bytes()));
    if !header_ok {
        return answer(
            StatusCode::UNAUTHORIZED,
            "The X-IDENTITY-HEADER header is missing or wrong.",
        );
    }
    let request = match TokenRequest::parse(req.query_string()) {
        Ok(request) => request,
        Err(error) => return answer(StatusCode::BAD_REQUEST, &error.to_string()),
    };
    let resource = request.resource;
    let directory = state.directory();
    let Some(tenant) = serving_tenant(settings, directory) else {
        return answer(StatusCode::INTERNAL_SERVER_ERROR, "No tenant to serve.");
    };
    let identity: Option<&Application> = match &request.identity {
        None => settings.system_assigned.as_ref().and_then(|name| {
            tenant
                .applications
                .iter()
                .find(|a| &a.name == name && a.managed_identity.is_some())
        }),
        Some((key, value)) => tenant.managed_identity(key, value),
    };
    let Some(identity) = identity else {
        let asked = request
            .identity
            .as_ref()
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
                .json(managed_identity::token_body(
                    &issued.access_token,
                    issued.expires_on,
                    &resource,
                    &identity.client_id,
                ))
        }
        Err(error) => answer(StatusCode::BAD_REQUEST, &error.to_string()),
    }
}
