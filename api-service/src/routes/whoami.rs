use crate::problem::Problem;
use actix_web::web;
use entra_auth::AppCaller;
use serde::Serialize;
use shared::claims::TokenVersion;
use utoipa::ToSchema;

/// The caller as the API sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct WhoAmI {
    /// `azp` (v2) or `appid` (v1).
    pub client_app_id: String,
    pub tenant_id: String,
    /// The caller's service principal.
    pub object_id: Option<String>,
    pub roles: Vec<String>,
    /// `1.0` or `2.0`.
    pub token_version: String,
}

/// Who is calling: for any allowed app token, whatever its roles.
#[utoipa::path(get, path = "/api/whoami", tag = "identity",
    responses((status = 200, body = WhoAmI),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn whoami(caller: AppCaller) -> web::Json<WhoAmI> {
    web::Json(WhoAmI {
        client_app_id: caller.client_app_id,
        tenant_id: caller.tenant_id,
        object_id: caller.object_id,
        roles: caller.roles,
        token_version: match caller.version {
            TokenVersion::V1 => "1.0",
            TokenVersion::V2 => "2.0",
        }
        .to_owned(),
    })
}
