//! OpenID discovery (v2 and v1), instance discovery for MSAL, and the JWKS.

use super::{RequestIds, aad_error, cacheable_json};
use crate::aadsts::AadError;
use crate::faults::FaultTarget;
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

/// `common`, `organizations` and `consumers` are multi-tenant aliases: discovery answers with the
/// literal `{tenantid}` template in `issuer`, as Entra does.
pub(crate) const MULTI_TENANT: [&str; 3] = ["common", "organizations", "consumers"];

/// How a discovery document names its tenant: by GUID in URLs and `issuer` for a real tenant; by
/// alias in URLs and `{tenantid}` in `issuer` for the multi-tenant aliases, whose
/// `tenant_region_scope` is `null`, as Entra's.
struct DocumentTenant {
    path_tenant: String,
    issuer_tenant: String,
    region: Option<String>,
}

fn document_tenant(state: &AppState, tenant: &str) -> Option<DocumentTenant> {
    if super::is_multi_tenant(tenant) {
        return Some(DocumentTenant {
            path_tenant: tenant.to_ascii_lowercase(),
            issuer_tenant: "{tenantid}".to_owned(),
            region: None,
        });
    }
    state.directory().tenant(tenant).map(|t| DocumentTenant {
        path_tenant: t.id.clone(),
        issuer_tenant: t.id.clone(),
        region: Some(t.region_scope.clone()),
    })
}

pub async fn openid_configuration_v2(
    req: HttpRequest,
    tenant: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    openid_configuration(&req, &tenant, &state, true)
}

pub async fn openid_configuration_v1(
    req: HttpRequest,
    tenant: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    openid_configuration(&req, &tenant, &state, false)
}

/// Every member Entra's documents have, with Entra's values: first those both versions share, then
/// each version's own. URLs are on the emulator's host where Entra's are on
/// login.microsoftonline.com; v2's `userinfo_endpoint` is Microsoft Graph's, as in Entra's (the
/// emulator does not serve Graph); and, as in Entra's, there is no
/// `code_challenge_methods_supported`. What the emulator answers at each endpoint a document names
/// is in the README ("Endpoints").
fn openid_configuration(
    req: &HttpRequest,
    tenant: &str,
    state: &AppState,
    v2: bool,
) -> HttpResponse {
    let ids = RequestIds::of(req);
    let Some(DocumentTenant {
        path_tenant,
        issuer_tenant,
        region,
    }) = document_tenant(state, tenant)
    else {
        return aad_error(state, &ids, &AadError::tenant_not_found(tenant));
    };
    let base = state.public_url();
    let tenant_url = format!("{base}/{path_tenant}");
    let mut doc = json!({
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "kerberos_endpoint": format!("{tenant_url}/kerberos"),
        "tenant_region_scope": region,
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    });
    let specific = if v2 {
        json!({
            "token_endpoint": format!("{tenant_url}/oauth2/v2.0/token"),
            "jwks_uri": format!("{tenant_url}/discovery/v2.0/keys"),
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": format!("{base}/{issuer_tenant}/v2.0"),
            "request_uri_parameter_supported": false,
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "authorization_endpoint": format!("{tenant_url}/oauth2/v2.0/authorize"),
            "device_authorization_endpoint": format!("{tenant_url}/oauth2/v2.0/devicecode"),
            "end_session_endpoint": format!("{tenant_url}/oauth2/v2.0/logout"),
            "claims_supported": [
                "sub", "iss", "cloud_instance_name", "cloud_instance_host_name",
                "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr",
                "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email",
            ],
        })
    } else {
        json!({
            "token_endpoint": format!("{tenant_url}/oauth2/token"),
            // Entra's v1 document names the keys of `common`, whatever the tenant.
            "jwks_uri": format!("{base}/common/discovery/keys"),
            "response_types_supported": ["code", "id_token", "code id_token", "token id_token", "token"],
            "scopes_supported": ["openid"],
            // v1 tokens are issued by `https://sts.windows.net/{tid}/`; the emulator's host stands in.
            "issuer": format!("{base}/{issuer_tenant}/"),
            "microsoft_multi_refresh_token": true,
            "authorization_endpoint": format!("{tenant_url}/oauth2/authorize"),
            "device_authorization_endpoint": format!("{tenant_url}/oauth2/devicecode"),
            "end_session_endpoint": format!("{tenant_url}/oauth2/logout"),
            "claims_supported": [
                "sub", "iss", "cloud_instance_name", "cloud_instance_host_name",
                "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr",
                "amr", "nonce", "email", "given_name", "family_name", "nickname",
            ],
            "check_session_iframe": format!("{tenant_url}/oauth2/checksession"),
            "userinfo_endpoint": format!("{tenant_url}/openid/userinfo"),
        })
    };
    if let (Some(doc), serde_json::Value::Object(specific)) = (doc.as_object_mut(), specific) {
        doc.extend(specific);
    }
    cacheable_json(&ids, &doc)
}

pub async fn jwks_v2(
    req: HttpRequest,
    tenant: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    jwks(req, &tenant, &state, true).await
}

pub async fn jwks_v1(
    req: HttpRequest,
    tenant: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    jwks(req, &tenant, &state, false).await
}

/// `/discovery/keys` with no tenant: what v1 validators configured with the bare authority fetch.
pub async fn jwks_v1_common(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    jwks(req, "common", &state, false).await
}

/// Every published key, with the members Entra publishes (no `alg`). The v2 document names each
/// key's issuer so that validators can check a key belongs to the token's tenant.
async fn jwks(req: HttpRequest, tenant: &str, state: &AppState, v2: bool) -> HttpResponse {
    let ids = RequestIds::of(&req);
    if let Some(response) = super::injected_fault(state, &ids, FaultTarget::Jwks).await {
        return response;
    }
    let Some(DocumentTenant { issuer_tenant, .. }) = document_tenant(state, tenant) else {
        return aad_error(state, &ids, &AadError::tenant_not_found(tenant));
    };
    let issuer = format!("{}/{issuer_tenant}/v2.0", state.public_url());
    let keys = state.tokens.keys.snapshot();
    let published: Vec<_> = keys
        .keys
        .iter()
        .map(|k| {
            let mut jwk = json!({
                "kty": "RSA", "use": "sig", "kid": k.kid, "x5t": k.kid,
                "n": k.n, "e": k.e, "x5c": [k.x5c],
            });
            if let (true, Some(map)) = (v2, jwk.as_object_mut()) {
                map.insert("issuer".into(), issuer.clone().into());
            }
            jwk
        })
        .collect();
    cacheable_json(&ids, &json!({ "keys": published }))
}

#[derive(Deserialize)]
pub struct InstanceQuery {
    authorization_endpoint: Option<String>,
    #[serde(rename = "api-version")]
    api_version: Option<String>,
}

/// `GET /common/discovery/instance`: MSAL asks it before trusting an authority host. MSAL for
/// Python sends `api-version=1.0` and drops the port from `authorization_endpoint`, so the host is
/// matched by name alone.
pub async fn instance_discovery(
    req: HttpRequest,
    query: web::Query<InstanceQuery>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let ids = RequestIds::of(&req);
    let Some(endpoint) = query.authorization_endpoint.as_deref() else {
        return aad_error(
            &state,
            &ids,
            &AadError::missing_parameter("authorization_endpoint"),
        );
    };
    let parsed = url::Url::parse(endpoint).ok();
    let host = parsed
        .as_ref()
        .and_then(|u| u.host_str())
        .unwrap_or_default();
    if !state.is_own_host(host) {
        return aad_error(&state, &ids, &AadError::unknown_instance());
    }
    let tenant = parsed
        .as_ref()
        .and_then(|u| u.path_segments())
        .and_then(|mut s| s.next())
        .filter(|t| !t.is_empty())
        .unwrap_or("common");
    let base = state.public_url();
    let network = base.trim_start_matches("https://");
    cacheable_json(
        &ids,
        &json!({
            "tenant_discovery_endpoint": format!("{base}/{tenant}/v2.0/.well-known/openid-configuration"),
            "api-version": query.api_version.as_deref().unwrap_or("1.1"),
            "metadata": [{
                "preferred_network": network,
                "preferred_cache": network,
                "aliases": [network],
            }],
        }),
    )
}
