//! Forward-auth: a gateway already in place asks about each request, and the policy is judged on
//! the *original* method and URI, which each gateway passes its own way:
//! - nginx `auth_request` → `/forward-auth/nginx`, with `X-Original-Method` and `X-Original-URI`
//!   set by the snippet (nginx passes neither by itself);
//! - Traefik `forwardAuth` → `/forward-auth/traefik`, with its `X-Forwarded-Method` and
//!   `X-Forwarded-Uri`;
//! - Envoy HTTP `ext_authz` with `path_prefix: /forward-auth/envoy` → the original method, and
//!   the original path after the prefix.
//!
//! 200 carries the identity headers for the gateway to copy to its upstream (every one present,
//! empty when the token has no such claim, so a copy overwrites whatever a client sent); 401 and
//! 403 carry `WWW-Authenticate` and the problem body, as the tasks API answers them.

use crate::{State, identity, problem, request_id, with_request_id};
use actix_web::http::header::{HeaderMap, HeaderName};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, web};

const ENVOY_PREFIX: &str = "/forward-auth/envoy";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/forward-auth/nginx", web::to(nginx))
        .route("/forward-auth/traefik", web::to(traefik))
        // A scope, matched by its literal prefix (`/forward-auth/envoy` and below, never
        // `/forward-auth/envoyx`): a `{tail:.*}` route would be a regular expression that every
        // proxied request, which tries the gateway's own paths first, runs through in vain.
        .service(web::scope(ENVOY_PREFIX).default_service(web::to(envoy)));
}

// Looked up by prebuilt names: a `&str` name would be parsed again on every request.
static ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
static ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
static FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
static FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");

async fn nginx(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    from_headers(&req, &state, "nginx", &ORIGINAL_METHOD, &ORIGINAL_URI).await
}

async fn traefik(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    from_headers(&req, &state, "traefik", &FORWARDED_METHOD, &FORWARDED_URI).await
}

async fn envoy(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    let id = request_id(&req);
    let path_and_query = req.uri().path_and_query().map_or("", |pq| pq.as_str());
    let original = match path_and_query.strip_prefix(ENVOY_PREFIX) {
        Some(rest) if rest.starts_with('/') => rest.to_owned(),
        Some(rest) => format!("/{rest}"),
        None => "/".to_owned(),
    };
    decide(&state, "envoy", req.method(), &original, req.headers(), &id).await
}

/// nginx and Traefik: the original method and URI from two headers the gateway sets.
async fn from_headers(
    req: &HttpRequest,
    state: &State,
    mode: &str,
    method_header: &HeaderName,
    uri_header: &HeaderName,
) -> HttpResponse {
    let id = request_id(req);
    let text = |name: &HeaderName| req.headers().get(name).and_then(|v| v.to_str().ok());
    let (Some(method), Some(uri)) = (text(method_header), text(uri_header)) else {
        // The gateway in front is misconfigured: say which headers are missing. nginx turns any
        // status other than 2xx/401/403 into a 500 for its client, which is right here.
        tracing::warn!(
            mode,
            "forward-auth request without {method_header} and {uri_header}"
        );
        return problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "forward_auth_misconfigured",
            &format!("The {mode} configuration must pass {method_header} and {uri_header}."),
            &id,
        );
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "forward_auth_misconfigured",
            &format!("{method_header} is not an HTTP method."),
            &id,
        );
    };
    decide(state, mode, &method, uri, req.headers(), &id).await
}

async fn decide(
    state: &State,
    mode: &str,
    method: &Method,
    uri: &str,
    headers: &HeaderMap,
    id: &str,
) -> HttpResponse {
    let decision = state.decide(mode, method, uri, headers).await;
    match decision.verdict {
        Ok(caller) => {
            let mut response = HttpResponse::Ok();
            let prepared = identity::prepared(&caller);
            for (name, value) in identity::SERVER_NAMES.iter().zip(&prepared.server) {
                response.insert_header((name.clone(), value.clone()));
            }
            with_request_id(response.finish(), id)
        }
        Err(refusal) => with_request_id(refusal.response(Some(id)), id),
    }
}
