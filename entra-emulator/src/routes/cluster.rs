//! The stand-in Kubernetes service-account issuer's documents, at the paths a cluster's API
//! server serves them: `{issuer}/.well-known/openid-configuration` and `{issuer}/openid/v1/jwks`.

use super::{RequestIds, cacheable_json};
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, web};

pub async fn discovery(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    cacheable_json(&RequestIds::of(&req), &state.cluster.discovery())
}

pub async fn jwks(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    cacheable_json(&RequestIds::of(&req), &state.cluster.jwks())
}
