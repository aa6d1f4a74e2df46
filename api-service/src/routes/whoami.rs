use crate::problem::Problem;
use actix_web::HttpResponse;
use entra_auth::AppCaller;
use serde::Serialize;
use shared::claims::TokenVersion;
use utoipa::ToSchema;

/// The caller as the API sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct WhoAmI<'c> {
    /// `azp` (v2) or `appid` (v1).
    pub client_app_id: &'c str,
    pub tenant_id: &'c str,
    /// The caller's service principal.
    pub object_id: Option<&'c str>,
    pub roles: &'c [String],
    /// `1.0` or `2.0`.
    pub token_version: &'static str,
}

/// Who is calling: for any allowed app token, whatever its roles. Written from the caller's
/// identity as it is, without copying it.
#[utoipa::path(get, path = "/api/whoami", tag = "identity",
    responses((status = 200, body = WhoAmI),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn whoami(caller: AppCaller) -> HttpResponse {
    HttpResponse::Ok().json(WhoAmI {
        client_app_id: &caller.client_app_id,
        tenant_id: &caller.tenant_id,
        object_id: caller.object_id.as_deref(),
        roles: &caller.roles,
        token_version: match caller.version {
            TokenVersion::V1 => "1.0",
            TokenVersion::V2 => "2.0",
        },
    })
}
