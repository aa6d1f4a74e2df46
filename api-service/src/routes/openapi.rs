//! `GET /openapi.json`: the routes, their schemas, and how to call them: the OAuth2
//! client-credentials scheme with this deployment's token URL, and on each `/api` operation the
//! app roles it requires. The `/api` operations come from [`super::table`], the table the
//! middleware enforces and startup registers.

use super::{Doc, health, tasks, whoami};
use crate::problem::Problem;
use crate::store::{Status, Task};
use actix_web::{HttpResponse, web};
use entra_auth::{Access, RouteTable};
use utoipa::OpenApi;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{
    ClientCredentials, Flow, OAuth2, Scopes, SecurityRequirement, SecurityScheme,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tasks API",
        description = "Accepts only app-only (client-credentials) Entra ID access tokens from allowed client applications; each operation names the app roles it requires (any one suffices)."
    ),
    paths(
        health::healthz, health::readyz, health::metrics,
    ),
    components(schemas(Problem, Task, Status, tasks::CreateTask, tasks::UpdateTask, tasks::TaskPage, whoami::WhoAmI)),
    tags(
        (name = "tasks", description = "Tasks kept by the API"),
        (name = "identity", description = "The calling application as the API sees it"),
        (name = "operations", description = "Health, readiness and metrics (no token)"),
    )
)]
struct ApiDoc;

pub const SCHEME: &str = "entra";

/// The document for this deployment: `token_url` is the tenant's v2 token endpoint and `scope`
/// the API's `{application ID URI}/.default`.
pub fn document(table: &RouteTable<Doc>, token_url: &str, scope: &str) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        SCHEME,
        SecurityScheme::OAuth2(OAuth2::with_description(
            [Flow::ClientCredentials(ClientCredentials::new(
                token_url,
                Scopes::one(scope, "The API's app roles assigned to the calling application"),
            ))],
            "Entra ID client credentials: request `scope` with your client secret or certificate; the token's `roles` claim must hold a role the operation lists under `x-required-app-roles`.",
        )),
    );
    for entry in table.entries() {
        let mut operation = (entry.doc)();
        secure(&mut operation, entry.access, scope);
        if let Some(method) = super::http_method_of(&entry.method) {
            doc.paths
                .add_path_operation(&entry.pattern, vec![method], operation);
        }
    }
    doc
}

fn secure(operation: &mut Operation, access: Access, scope: &str) {
    operation.security = Some(vec![SecurityRequirement::new(SCHEME, [scope])]);
    let roles = access.roles();
    let note = if roles.is_empty() {
        "Any allowed client application; no app role required.".to_owned()
    } else {
        format!("Requires app role (any of): {}.", roles.join(", "))
    };
    operation.description = Some(match operation.description.take() {
        Some(existing) => format!("{existing}\n\n{note}"),
        None => note,
    });
    let mut extensions = operation.extensions.take().unwrap_or_default();
    extensions.merge(Extensions::from_iter([(
        "x-required-app-roles",
        serde_json::json!(roles),
    )]));
    operation.extensions = Some(extensions);
}

pub async fn serve(state: web::Data<super::AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(state.openapi.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_api_operation_is_documented_with_its_policy_and_no_other() {
        let table = crate::routes::table();
        let policies = table.policies();
        let doc = document(
            &table,
            "https://idp/t/oauth2/v2.0/token",
            "api://tasks-api/.default",
        );
        let json = serde_json::to_value(&doc).expect("serializes");
        for (method, pattern, access) in policies.iter() {
            let op = &json["paths"][pattern][method.as_str().to_ascii_lowercase()];
            assert_eq!(
                op["x-required-app-roles"],
                serde_json::json!(access.roles()),
                "{method} {pattern}"
            );
            assert_eq!(op["security"][0][SCHEME][0], "api://tasks-api/.default");
        }
        let documented_api_ops: usize = json["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .filter(|(path, _)| path.starts_with("/api/"))
            .map(|(_, item)| item.as_object().map_or(0, |o| o.len()))
            .sum();
        assert_eq!(documented_api_ops, policies.iter().count());
        assert!(json["paths"]["/healthz"]["get"]["security"].is_null());
        assert_eq!(
            json["components"]["securitySchemes"][SCHEME]["flows"]["clientCredentials"]["tokenUrl"],
            "https://idp/t/oauth2/v2.0/token"
        );
    }
}
