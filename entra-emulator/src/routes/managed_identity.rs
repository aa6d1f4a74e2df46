//! The managed-identity endpoint App Service, Functions and Container Apps give their apps:
//! `GET {IDENTITY_ENDPOINT}?resource=…&api-version=2019-08-01[&client_id=…|object_id=…|
//! principal_id=…|mi_res_id=…|msi_res_id=…]` with `X-IDENTITY-HEADER: {IDENTITY_HEADER}`. The
//! Azure SDKs' `ManagedIdentityCredential` (azure-identity for Python through MSAL, the Rust
//! `azure_identity`) speak it unmodified when those two variables are set. Tokens are minted as
//! the token endpoint mints an app token (same resources, role assignments and AADSTS checks), for
//! the directory's `managed_identities`, with `xms_mirid`; answers and errors are App Service's:
//! `{access_token, expires_on (a string of epoch seconds), resource, token_type, client_id}`, and
//! `{statusCode, message}`.
//!
//! And the Instance Metadata Service's (`/metadata/identity/oauth2/token`), which VMs and AKS
//! nodes give: the same identities and tokens, IMDS's answer and errors.

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
    if settings.identity_header.is_none() && !settings.imds {
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

/// Why no token was minted, whichever protocol asked.
enum Refusal {
    /// No managed identity answers to what was asked (`"client_id …"`, or the system-assigned).
    UnknownIdentity(String),
    /// The token endpoint's own refusal (AADSTS500011, 501051…).
    Grant(crate::aadsts::AadError),
}

/// Mints the token `request` asks for, for a managed identity of the serving tenant.
fn mint<'s>(
    state: &'s AppState,
    request: &TokenRequest,
) -> Result<(crate::mint::IssuedToken, &'s Application), Refusal> {
    let settings = &state.settings.managed_identity;
    let directory = state.directory();
    let tenant = serving_tenant(settings, directory)
        .ok_or_else(|| Refusal::UnknownIdentity("a tenant".into()))?;
    let identity = match &request.identity {
        None => settings.system_assigned.as_ref().and_then(|name| {
            tenant
                .applications
                .iter()
                .find(|a| &a.name == name && a.managed_identity.is_some())
        }),
        Some((key, value)) => tenant.managed_identity(key, value),
    };
    let identity = identity.ok_or_else(|| {
        Refusal::UnknownIdentity(
            request
                .identity
                .as_ref()
                .map(|(key, value)| format!("{key} {value}"))
                .unwrap_or_else(|| "a system-assigned identity".into()),
        )
    })?;
    let service = &state.tokens;
    let issued = service
        .resolve_v1_resource(tenant, &tenant.id, &request.resource)
        .and_then(|resource| {
            service.app_token(tenant, identity, &resource, ClientAuth::Certificate)
        })
        .map_err(Refusal::Grant)?;
    tracing::info!(
        identity = %identity.name,
        resource = %request.resource,
        "managed identity token issued"
    );
    Ok((issued, identity))
}

/// App Service's endpoint: `X-IDENTITY-HEADER`, api-version 2019-08-01.
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
    match mint(&state, &request) {
        Ok((issued, identity)) => HttpResponse::Ok()
            .insert_header(("cache-control", "no-store, no-cache"))
            .json(managed_identity::token_body(
                &issued.access_token,
                issued.expires_on,
                &request.resource,
                &identity.client_id,
            )),
        Err(Refusal::UnknownIdentity(asked)) => answer(
            StatusCode::BAD_REQUEST,
            &format!("No managed identity with {asked} is assigned to this resource."),
        ),
        Err(Refusal::Grant(error)) => answer(StatusCode::BAD_REQUEST, &error.to_string()),
    }
}

/// An error as the Instance Metadata Service answers one: OAuth's `error` and
/// `error_description`, status 400.
fn imds_error(error: &str, description: &str) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({ "error": error, "error_description": description }))
}

/// The Instance Metadata Service's endpoint (`/metadata/identity/oauth2/token`, `Metadata: true`,
/// api-version 2018-02-01 or later), on the emulator's own listeners, since 169.254.169.254
/// cannot be bound here: MSAL for Python and azure-identity reach it through
/// `AZURE_POD_IDENTITY_AUTHORITY_HOST`. Its answer carries every number as a string.
pub async fn imds_token(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if !state.settings.managed_identity.imds {
        return HttpResponse::NotFound().json(json!({"error": "not_found"}));
    }
    let ids = RequestIds::of(&req);
    if let Some(response) = injected_fault(&state, &ids, FaultTarget::Token).await {
        return response;
    }
    // IMDS's guard against a request forged through another service (SSRF): the exact value.
    if req.headers().get("metadata").map(|v| v.as_bytes()) != Some(b"true".as_slice()) {
        return imds_error("bad_request_102", "Required metadata header not specified");
    }
    let request = match TokenRequest::parse_imds(req.query_string()) {
        Ok(request) => request,
        Err(error) => return imds_error("invalid_request", &error.to_string()),
    };
    match mint(&state, &request) {
        Ok((issued, identity)) => {
            let not_before = issued
                .claims
                .nbf
                .unwrap_or(issued.expires_on - issued.expires_in - 1);
            HttpResponse::Ok()
                .insert_header(("cache-control", "no-store, no-cache"))
                .json(json!({
                    "access_token": issued.access_token,
                    "client_id": identity.client_id,
                    "expires_in": issued.expires_in.to_string(),
                    "expires_on": issued.expires_on.to_string(),
                    "ext_expires_in": issued.expires_in.to_string(),
                    "not_before": not_before.to_string(),
                    "resource": request.resource,
                    "token_type": "Bearer",
                }))
        }
        Err(Refusal::UnknownIdentity(_)) => imds_error("invalid_request", "Identity not found"),
        Err(Refusal::Grant(error)) => imds_error(
            if error.code == 500011 {
                "invalid_resource"
            } else {
                error.error
            },
            &error.to_string(),
        ),
    }
}
