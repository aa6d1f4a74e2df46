//! The token endpoint: `POST /{tenant}/oauth2/v2.0/token` (and the v1 `/{tenant}/oauth2/token`).
//! Client credentials with a secret (body or HTTP Basic) or a client assertion; authorization code
//! with PKCE. Every failure, malformed input included, is answered with an Entra-shaped error.

use super::{RequestIds, aad_error, no_store_json};
use crate::aadsts::AadError;
use crate::codes::Redemption;
use crate::directory::{Application, Tenant};
use crate::faults::FaultTarget;
use crate::mint::{DelegatedGrant, IssuedToken, ResourceRef};
use crate::state::AppState;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use shared::claims::ClientAuth;
use std::collections::HashMap;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The request's parameters. Parsing is lossy: bad percent-encoding or invalid UTF-8 yields values
/// that fail validation, never a 500. The first occurrence of a repeated parameter wins; an empty
/// value counts as absent, as Entra treats it. Public so that fuzz targets reach it.
pub struct Form(HashMap<String, String>);

impl Form {
    /// The `application/x-www-form-urlencoded` body, as the endpoint reads it.
    pub fn parse(body: &[u8]) -> Self {
        let mut map = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(body) {
            map.entry(k.into_owned()).or_insert_with(|| v.into_owned());
        }
        Self(map)
    }

    /// The parameter's first value, if present and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn require(&self, name: &str) -> Result<&str, AadError> {
        self.get(name)
            .ok_or_else(|| AadError::missing_parameter(name))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    V1,
    V2,
}

pub async fn token_v2(
    req: HttpRequest,
    tenant: web::Path<String>,
    body: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    handle(req, &tenant, body, &state, Endpoint::V2).await
}

/// Any other method on either token endpoint: Entra's AADSTS900561, not a 404 or 405.
pub async fn not_post(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let ids = RequestIds::of(&req);
    aad_error(&state, &ids, &AadError::post_only(req.method().as_str()))
}

pub async fn token_v1(
    req: HttpRequest,
    tenant: web::Path<String>,
    body: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    handle(req, &tenant, body, &state, Endpoint::V1).await
}

async fn handle(
    req: HttpRequest,
    tenant_param: &str,
    body: web::Payload,
    state: &AppState,
    endpoint: Endpoint,
) -> HttpResponse {
    let ids = RequestIds::of(&req);
    if let Some(response) = super::injected_fault(state, &ids, FaultTarget::Token).await {
        return response;
    }
    let limit = state.settings.server.max_body_bytes;
    let body = match body.to_bytes_limited(limit).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => return aad_error(state, &ids, &AadError::body_unreadable()),
        Err(_) => return aad_error(state, &ids, &AadError::body_too_large(limit)),
    };
    let form = Form::parse(&body);
    match process(&req, tenant_param, &form, state, endpoint).await {
        Ok(issued) => success(&ids, &issued, endpoint),
        Err(err) => aad_error(state, &ids, &err),
    }
}

async fn process(
    req: &HttpRequest,
    tenant_param: &str,
    form: &Form,
    state: &AppState,
    endpoint: Endpoint,
) -> Result<IssuedToken, AadError> {
    let tenant = state
        .directory()
        .tenant(tenant_param)
        .ok_or_else(|| AadError::tenant_not_found(tenant_param))?;
    let grant_type = form.require("grant_type")?;
    let authorization_code = match (grant_type, endpoint) {
        ("client_credentials", _) => false,
        ("authorization_code", _) => true,
        (other, _) => return Err(AadError::unsupported_grant_type(other)),
    };
    let (client, auth) =
        authenticate(req, tenant, tenant_param, form, state, authorization_code).await?;

    if authorization_code {
        return redeem_code(tenant, client, auth, form, state);
    }
    let resource = match endpoint {
        Endpoint::V2 => {
            let scope = form.require("scope")?;
            state
                .tokens
                .resolve_default_scope(tenant, tenant_param, scope)?
        }
        Endpoint::V1 => {
            let resource = form.require("resource")?;
            state
                .tokens
                .resolve_v1_resource(tenant, tenant_param, resource)?
        }
    };
    let issued = state.tokens.app_token(tenant, client, &resource, auth)?;
    tracing::info!(
        client = %client.name,
        resource = %resource.app.name,
        credential = ?auth,
        roles = ?issued.claims.roles,
        version = %issued.claims.ver,
        token = %shared::fingerprint(&issued.access_token),
        expires_in = issued.expires_in,
        "issued app token"
    );
    Ok(issued)
}

/// Who is calling: HTTP Basic or `client_id` + `client_secret` in the body, or a client
/// assertion: signed by the client itself (a certificate credential) or by another issuer that one
/// of its federated credentials trusts. Public clients redeeming a code present no credential.
async fn authenticate<'t>(
    req: &HttpRequest,
    tenant: &'t Tenant,
    tenant_param: &str,
    form: &Form,
    state: &AppState,
    authorization_code: bool,
) -> Result<(&'t Application, ClientAuth), AadError> {
    let basic = basic_credentials(req);
    let client_id = basic
        .as_ref()
        .map(|(id, _)| id.as_str())
        .or(form.get("client_id"))
        .ok_or_else(|| AadError::missing_parameter("client_id"))?;
    let client = tenant
        .application_by_client_id(client_id)
        .ok_or_else(|| AadError::application_not_found(client_id, tenant_param))?;
    let secret = basic
        .as_ref()
        .map(|(_, s)| s.as_str())
        .or(form.get("client_secret"));
    let assertion = form.get("client_assertion");

    if client.public_client {
        if secret.is_some() || assertion.is_some() {
            return Err(AadError::public_client_with_credential());
        }
        if authorization_code {
            return Ok((client, ClientAuth::Public));
        }
        return Err(AadError::no_credential());
    }
    if let Some(secret) = secret {
        check_secret(client, secret, state.now())?;
        return Ok((client, ClientAuth::Secret));
    }
    if let Some(assertion) = assertion {
        let kind = form.get("client_assertion_type").unwrap_or_default();
        if kind != ASSERTION_TYPE {
            return Err(AadError::assertion_type(kind));
        }
        match crate::federation::unverified_issuer(assertion) {
            // Federated credentials name issuers by URL; a client's own assertion names its
            // client ID (a GUID, or another client's when it is wrong: AADSTS700021).
            Some(issuer) if issuer.starts_with("https://") || issuer.starts_with("http://") => {
                let credential = state
                    .federation
                    .verify(assertion, &tenant.id, client, state.now())
                    .await?;
                tracing::info!(
                    client = %client.name,
                    federated_credential = %credential.name,
                    issuer = %credential.issuer,
                    subject = %credential.subject,
                    "federated assertion accepted"
                );
            }
            _ => {
                let audiences = assertion_audiences(state, tenant, tenant_param);
                crate::assertion::verify(
                    assertion,
                    client,
                    &audiences,
                    state.now(),
                    &state.replay,
                )?;
            }
        }
        return Ok((client, ClientAuth::Certificate));
    }
    Err(AadError::no_credential())
}

/// Compares against every registered secret in constant time. A match on an expired secret
/// only is AADSTS7000222, which tells the operator what to fix, unlike a generic "wrong secret".
fn check_secret(client: &Application, presented: &str, now: i64) -> Result<(), AadError> {
    let mut matched_expired = false;
    for registered in &client.client_secrets {
        let equal = aws_lc_rs::constant_time::verify_slices_are_equal(
            registered.value.expose().as_bytes(),
            presented.as_bytes(),
        )
        .is_ok();
        if equal {
            match registered.expires {
                Some(expiry) if expiry.unix_timestamp() <= now => matched_expired = true,
                _ => return Ok(()),
            }
        }
    }
    Err(if matched_expired {
        AadError::secret_expired(&client.client_id)
    } else {
        AadError::invalid_secret(&client.client_id)
    })
}

/// RFC 6749 §2.3.1: `Basic base64(urlencode(client_id):urlencode(secret))`.
fn basic_credentials(req: &HttpRequest) -> Option<(String, String)> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

/// The token endpoint URLs an assertion may name as `aud`: v2 and v1, by tenant GUID and by
/// domain, at the public URL and at every name on the emulator's certificate (same port); Entra
/// also accepts its issuer. Never the request's `Host`/`Forwarded` headers: the client would
/// choose the audience it is checked against.
fn assertion_audiences(state: &AppState, tenant: &Tenant, tenant_param: &str) -> Vec<String> {
    let public = url::Url::parse(state.public_url()).ok();
    let port = public
        .as_ref()
        .and_then(url::Url::port)
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    let mut bases = vec![state.public_url().to_owned()];
    for name in &state.settings.server.tls_names {
        let host = if name.contains(':') {
            format!("[{name}]")
        } else {
            name.clone()
        };
        bases.push(format!("https://{host}{port}"));
    }
    let mut audiences = Vec::with_capacity(16);
    for base in &bases {
        for t in [tenant.id.as_str(), tenant.domain.as_str(), tenant_param] {
            audiences.push(format!("{base}/{t}/oauth2/v2.0/token"));
            audiences.push(format!("{base}/{t}/oauth2/token"));
        }
    }
    audiences.push(state.tokens.issuer_v2(&tenant.id));
    audiences
}

fn redeem_code(
    tenant: &Tenant,
    client: &Application,
    auth: ClientAuth,
    form: &Form,
    state: &AppState,
) -> Result<IssuedToken, AadError> {
    let code = form.require("code")?;
    let redirect_uri = form.require("redirect_uri")?;
    let code_verifier = form.require("code_verifier")?;
    let pending = state.codes.redeem(
        code,
        &Redemption {
            tenant_id: &tenant.id,
            client_id: &client.client_id,
            redirect_uri,
            code_verifier,
        },
        state.now(),
    )?;
    // The directory cannot change while the emulator runs, so what the code recorded still exists.
    let user = tenant
        .user(&pending.username)
        .ok_or_else(AadError::code_invalid)?;
    let resource = tenant
        .application_by_client_id(&pending.resource_client_id)
        .ok_or_else(AadError::code_invalid)?;
    let grant = DelegatedGrant {
        user,
        resource: ResourceRef {
            app: resource,
            requested_as: pending.resource_requested_as.clone(),
        },
        scopes: pending.scopes.clone(),
        nonce: pending.nonce.clone(),
        want_id_token: pending.want_id_token,
    };
    let mut issued = state.tokens.user_token(tenant, client, &grant, auth)?;
    // MSAL sends `client_info=1` and keys its account cache on the answer: {uid, utid}.
    if form.get("client_info") == Some("1") {
        let info = json!({ "uid": user.object_id, "utid": tenant.id });
        issued.client_info =
            Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(info.to_string()));
    }
    tracing::info!(
        client = %client.name,
        user = %user.username,
        resource = %resource.name,
        scp = ?issued.claims.scp,
        token = %shared::fingerprint(&issued.access_token),
        "issued user-delegated token"
    );
    Ok(issued)
}

fn success(ids: &RequestIds, issued: &IssuedToken, endpoint: Endpoint) -> HttpResponse {
    let body = match endpoint {
        Endpoint::V2 => {
            let mut body = json!({
                "token_type": "Bearer",
                "expires_in": issued.expires_in,
                "ext_expires_in": issued.expires_in,
                "access_token": issued.access_token,
            });
            if let Some(map) = body.as_object_mut() {
                if let Some(scope) = &issued.scope {
                    map.insert("scope".into(), scope.clone().into());
                }
                if let Some(id_token) = &issued.id_token {
                    map.insert("id_token".into(), id_token.clone().into());
                }
                if let Some(client_info) = &issued.client_info {
                    map.insert("client_info".into(), client_info.clone().into());
                }
            }
            body
        }
        // v1 answers numbers as strings.
        Endpoint::V1 => json!({
            "token_type": "Bearer",
            "expires_in": issued.expires_in.to_string(),
            "ext_expires_in": issued.expires_in.to_string(),
            "expires_on": issued.expires_on.to_string(),
            "not_before": issued.claims.nbf.unwrap_or_default().to_string(),
            "resource": issued.resource,
            "access_token": issued.access_token,
        }),
    };
    no_store_json(StatusCode::OK, ids, &body)
}

#[cfg(test)]
mod tests {
    use super::Form;

    #[test]
    fn form_parsing_is_lossy_first_wins_and_empty_is_absent() {
        let form = Form::parse(
            b"grant_type=client_credentials&scope=api%3A%2F%2Ftasks-api%2F.default\
              &client_secret=a+b%2Bc&client_id=&client_id=second&bad=%zz%&utf8=%FF%00x\
              &scope=ignored&=nameless&novalue",
        );
        assert_eq!(form.get("grant_type"), Some("client_credentials"));
        assert_eq!(
            form.get("scope"),
            Some("api://tasks-api/.default"),
            "first wins"
        );
        assert_eq!(
            form.get("client_secret"),
            Some("a b+c"),
            "+ is a space, %2B a plus"
        );
        assert_eq!(
            form.get("client_id"),
            None,
            "the first, empty, occurrence wins"
        );
        assert_eq!(
            form.get("bad"),
            Some("%zz%"),
            "bad escapes are kept as they are"
        );
        assert_eq!(
            form.get("utf8"),
            Some("\u{FFFD}\0x"),
            "invalid UTF-8 is replaced"
        );
        assert_eq!(form.get(""), Some("nameless"));
        assert_eq!(form.get("novalue"), None);
        assert_eq!(form.get("missing"), None);
        assert_eq!(Form::parse(b"").get("grant_type"), None);
    }
}
