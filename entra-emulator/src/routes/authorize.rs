//! `GET /{tenant}/oauth2/v2.0/authorize`: the authorization-code flow with PKCE (S256 only); the
//! v1 `GET /{tenant}/oauth2/authorize` too, where `resource=` asks for every scope the user
//! consented to on that API (v2's `{resource}/.default`).
//! With a `login_hint` naming a directory user the sign-in happens without a page, so scripts can
//! obtain a genuine user-delegated token; otherwise a minimal sign-in form asks for the username.
//! Errors found before the redirect URI is trusted are shown as a page; after, they are sent back
//! to the redirect URI, as RFC 6749 §4.1.2.1 requires.

use crate::aadsts::AadError;
use crate::codes::PendingCode;
use crate::directory::{Application, Tenant};
use crate::mint::resource_scopes;
use crate::state::AppState;
use actix_web::http::header;
use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, Serialize, Default)]
pub struct AuthorizeQuery {
    client_id: Option<String>,
    response_type: Option<String>,
    redirect_uri: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    login_hint: Option<String>,
    response_mode: Option<String>,
    prompt: Option<String>,
    /// v1: the API, instead of `scope`.
    resource: Option<String>,
}

pub async fn authorize(
    req: actix_web::HttpRequest,
    tenant_param: web::Path<String>,
    query: web::Query<AuthorizeQuery>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let q = query.into_inner();
    let v1 = !req.path().contains("/oauth2/v2.0/");
    let Some(tenant) = state.directory().tenant(&tenant_param) else {
        return error_page(&AadError::tenant_not_found(&tenant_param));
    };
    let client_id = q.client_id.as_deref().unwrap_or_default();
    let Some(client) = tenant.application_by_client_id(client_id) else {
        return error_page(&AadError::application_not_found(client_id, &tenant_param));
    };
    let redirect_uri = q.redirect_uri.as_deref().unwrap_or_default();
    if !client.redirect_uris.iter().any(|u| u == redirect_uri) {
        return error_page(&AadError::redirect_mismatch(
            redirect_uri,
            &client.client_id,
        ));
    }
    // From here on the redirect URI is trusted: errors go back to the client.
    if q.response_type.as_deref() != Some("code") {
        return redirect_error(
            redirect_uri,
            &q.state,
            "unsupported_response_type",
            "AADSTS700054: response_type must be 'code'.",
        );
    }
    let challenge = q.code_challenge.as_deref().unwrap_or_default();
    if challenge.len() < 43 || q.code_challenge_method.as_deref() != Some("S256") {
        return redirect_aad(redirect_uri, &q.state, &AadError::pkce_required());
    }
    // v1 names the API with `resource` (its `scope` adds only OpenID scopes); v2 has no such
    // parameter and says so (AADSTS901002).
    let v1_scope = match (v1, &q.resource) {
        (true, Some(resource)) => {
            let openid: Vec<&str> = q
                .scope
                .as_deref()
                .unwrap_or_default()
                .split_whitespace()
                .filter(|s| ["openid", "profile", "email", "offline_access"].contains(s))
                .collect();
            Some(
                std::iter::once(format!("{}/.default", resource.trim_end_matches('/')))
                    .chain(openid.into_iter().map(str::to_owned))
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        }
        (false, Some(_)) => {
            return redirect_aad(
                redirect_uri,
                &q.state,
                &AadError::resource_parameter_on_v2(),
            );
        }
        (_, None) => None,
    };
    let scope = v1_scope
        .as_deref()
        .or(q.scope.as_deref())
        .unwrap_or_default();
    let (resource, requested_as, requested) = match delegated_scopes(tenant, &tenant_param, scope) {
        Ok(parsed) => parsed,
        Err(err) => return redirect_aad(redirect_uri, &q.state, &err),
    };

    let Some(hint) = q.login_hint.as_deref().filter(|h| !h.is_empty()) else {
        return sign_in_page(tenant, client, &q, None);
    };
    let Some(user) = tenant.user(hint) else {
        let err = AadError::user_not_found(hint, &tenant.domain);
        return sign_in_page(tenant, client, &q, Some(&err));
    };
    let consented = user
        .consented_scopes
        .get(&resource.client_id)
        .cloned()
        .unwrap_or_default();
    let granted: Vec<String> = if requested.iter().any(|s| s == ".default") {
        consented
    } else {
        requested
            .into_iter()
            .filter(|s| consented.contains(s))
            .collect()
    };
    if granted.is_empty() {
        return redirect_aad(
            redirect_uri,
            &q.state,
            &AadError::consent_required(&client.client_id),
        );
    }
    let now = state.now();
    let issued = state.codes.issue(
        PendingCode {
            tenant_id: tenant.id.clone(),
            client_id: client.client_id.clone(),
            redirect_uri: redirect_uri.to_owned(),
            code_challenge: challenge.to_owned(),
            resource_client_id: resource.client_id.clone(),
            resource_requested_as: requested_as,
            scopes: granted,
            username: user.username.clone(),
            nonce: q.nonce.clone(),
            want_id_token: scope
                .split_whitespace()
                .any(|s| s.eq_ignore_ascii_case("openid")),
            expires_at: now + state.settings.tokens.auth_code_lifetime_secs,
        },
        now,
    );
    let code = match issued {
        Ok(code) => code,
        Err(err) => return redirect_aad(redirect_uri, &q.state, &err),
    };
    tracing::info!(client = %client.name, user = %user.username, "issued authorization code");
    redirect(redirect_uri, &q.state, &[("code", code.as_str())])
}

/// The delegated scopes of one resource: `api://x/Tasks.Read api://x/Tasks.Write openid`.
fn delegated_scopes<'t>(
    tenant: &'t Tenant,
    tenant_param: &str,
    scope: &str,
) -> Result<(&'t Application, String, Vec<String>), AadError> {
    let (identifier, requested) = resource_scopes(scope)?;
    let resource = tenant
        .resource(identifier)
        .ok_or_else(|| AadError::resource_not_found(identifier, tenant_param))?;
    let mut names = Vec::with_capacity(requested.len());
    for s in requested {
        // `resource_of` may name Graph for a bare permission, which is then no prefix of `s`.
        let name = s
            .strip_prefix(identifier)
            .map(|rest| rest.trim_start_matches('/'))
            .ok_or_else(|| AadError::invalid_scope(s))?;
        if name != ".default" && !resource.delegated_scopes.iter().any(|d| d == name) {
            return Err(AadError::invalid_scope(s));
        }
        names.push(name.to_owned());
    }
    Ok((resource, identifier.to_owned(), names))
}

/// Back to the client with `params`, then the request's `state` when it sent one.
fn redirect(base: &str, state: &Option<String>, params: &[(&str, &str)]) -> HttpResponse {
    let mut url = match url::Url::parse(base) {
        Ok(url) => url,
        Err(_) => return error_page(&AadError::redirect_mismatch(base, "")),
    };
    url.query_pairs_mut()
        .extend_pairs(params)
        .extend_pairs(state.as_deref().map(|s| ("state", s)));
    HttpResponse::Found()
        .insert_header((header::LOCATION, url.as_str()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

fn redirect_aad(base: &str, state: &Option<String>, err: &AadError) -> HttpResponse {
    redirect_error(base, state, err.error, &err.to_string())
}

fn redirect_error(
    base: &str,
    state: &Option<String>,
    error: &str,
    description: &str,
) -> HttpResponse {
    redirect(
        base,
        state,
        &[("error", error), ("error_description", description)],
    )
}

fn error_page(err: &AadError) -> HttpResponse {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Sign in error</title></head><body>\
         <h1>Sorry, but we're having trouble signing you in.</h1><p><code>{}</code>: {}</p></body></html>",
        escape(err.error),
        escape(&err.to_string())
    );
    HttpResponse::build(err.status)
        .content_type("text/html; charset=utf-8")
        .body(body)
}

/// The whole sign-in "page": a username box that resubmits the same request with `login_hint`.
fn sign_in_page(
    tenant: &Tenant,
    client: &Application,
    q: &AuthorizeQuery,
    err: Option<&AadError>,
) -> HttpResponse {
    let mut hidden = String::new();
    let fields = serde_urlencoded_pairs(q);
    for (name, value) in fields.iter().filter(|(n, _)| n != "login_hint") {
        hidden.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            escape(name),
            escape(value)
        ));
    }
    let message = err
        .map(|e| format!("<p role=\"alert\">{}</p>", escape(&e.to_string())))
        .unwrap_or_default();
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Sign in</title></head><body>\
         <h1>Sign in to {}</h1><p>{} wants to access an API on your behalf. (Entra emulator: no password is asked.)</p>{message}\
         <form method=\"get\">{hidden}<label>Username <input name=\"login_hint\" autofocus></label>\
         <button type=\"submit\">Sign in</button></form></body></html>",
        escape(&tenant.display_name),
        escape(&client.display_name),
    );
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

fn serde_urlencoded_pairs(q: &AuthorizeQuery) -> Vec<(String, String)> {
    let value = serde_json::to_value(q).unwrap_or_default();
    value
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}
