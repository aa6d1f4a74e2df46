//! The other endpoints the discovery documents name, each served or refused as Entra would:
//! sign-out (`end_session_endpoint`, v2 and v1) and the session-check page
//! (`check_session_iframe`) are served, as the emulator keeps no session; the v1 `userinfo_endpoint`
//! answers Entra's Bearer challenge; the device-code and Kerberos endpoints answer Entra-shaped
//! errors, because the emulated tenants offer neither flow.

use super::{RequestIds, aad_error};
use crate::aadsts::AadError;
use crate::directory::Tenant;
use crate::state::AppState;
use actix_web::http::{Method, StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

#[derive(Deserialize)]
pub struct LogoutQuery {
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
}

/// `…/oauth2/v2.0/logout` and `…/oauth2/logout`: the emulator holds no session, so signing out
/// always succeeds. A `post_logout_redirect_uri` is followed only when an application of the
/// tenant registered it (Entra's rule: no open redirect); otherwise Entra's signed-out page.
pub async fn logout(
    tenant: web::Path<String>,
    query: web::Query<LogoutQuery>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> HttpResponse {
    let ids = RequestIds::of(&req);
    // `common`, `organizations` and `consumers` sign out of whichever tenant: a redirect URI any
    // tenant registered is followed.
    let Some(tenants) = tenants_named(&state, &tenant) else {
        return aad_error(&state, &ids, &AadError::tenant_not_found(&tenant));
    };
    let registered = query.post_logout_redirect_uri.as_deref().filter(|uri| {
        tenants.iter().any(|tenant| {
            tenant
                .applications
                .iter()
                .any(|app| app.redirect_uris.iter().any(|r| r == uri))
        })
    });
    if let Some(target) = registered.and_then(|uri| url::Url::parse(uri).ok()) {
        let mut target = target;
        if let Some(value) = &query.state {
            target.query_pairs_mut().append_pair("state", value);
        }
        return HttpResponse::Found()
            .insert_header((header::LOCATION, target.as_str()))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish();
    }
    html(
        StatusCode::OK,
        "Sign out",
        "<h1>You signed out of your account</h1><p>It's a good idea to close all browser windows.</p>",
    )
}

/// `…/oauth2/checksession`: the page an OpenID Connect relying party frames to watch the session.
/// With no session to watch it answers every check `unchanged`.
pub async fn check_session() -> HttpResponse {
    html(
        StatusCode::OK,
        "Check session",
        "<script>window.addEventListener('message', function (e) { \
         e.source.postMessage('unchanged', e.origin); });</script>",
    )
}

/// v1 `…/openid/userinfo`: a protected resource; the emulator issues no token for its audience,
/// so every call gets the Bearer challenge (RFC 6750), with `invalid_token` when one was sent.
pub async fn userinfo(req: HttpRequest) -> HttpResponse {
    let sent = req.headers().contains_key(header::AUTHORIZATION);
    let challenge = if sent {
        "Bearer error=\"invalid_token\", error_description=\"The access token is not valid for the userinfo endpoint.\""
    } else {
        "Bearer"
    };
    HttpResponse::Unauthorized()
        .insert_header((header::WWW_AUTHENTICATE, challenge))
        .finish()
}

/// `…/oauth2/v2.0/devicecode`, `…/oauth2/devicecode` and `…/kerberos`: the flows the emulated
/// tenants do not offer. A method other than POST gets AADSTS900561, as Entra answers it; a POST
/// is checked as far as Entra would before issuing anything (tenant, client), then refused as an
/// unsupported grant (AADSTS70003; inferred: a tenant without the flow).
pub async fn unsupported_flow(
    req: HttpRequest,
    tenant: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> HttpResponse {
    let ids = RequestIds::of(&req);
    if req.method() != Method::POST {
        return aad_error(&state, &ids, &AadError::post_only(req.method().as_str()));
    }
    let flow = if req.path().ends_with("/kerberos") {
        "kerberos"
    } else {
        "device_code"
    };
    let Some(tenants) = tenants_named(&state, &tenant) else {
        return aad_error(&state, &ids, &AadError::tenant_not_found(&tenant));
    };
    let form = super::token::Form::parse(&body);
    if flow == "device_code" {
        let Some(client_id) = form.get("client_id") else {
            return aad_error(&state, &ids, &AadError::missing_parameter("client_id"));
        };
        if !tenants
            .iter()
            .any(|t| t.application_by_client_id(client_id).is_some())
        {
            return aad_error(
                &state,
                &ids,
                &AadError::application_not_found(client_id, &tenant),
            );
        }
    }
    aad_error(&state, &ids, &AadError::unsupported_grant_type(flow))
}

/// The tenants a path names: every one for `common`, `organizations` and `consumers`, else the one
/// with that ID or domain; `None` when there is no such tenant.
fn tenants_named<'s>(state: &'s AppState, tenant: &str) -> Option<Vec<&'s Tenant>> {
    if super::is_multi_tenant(tenant) {
        return Some(state.directory().tenants.iter().collect());
    }
    state.directory().tenant(tenant).map(|one| vec![one])
}

fn html(status: StatusCode, title: &str, body: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head><body>{body}</body></html>"
        ))
}
