//! The routes, and the one table that says which roles each `/api` route needs. The OpenAPI
//! document takes its security requirements from the same table, so the two cannot disagree.

pub mod health;
pub mod openapi;
pub mod tasks;
pub mod whoami;

use crate::auth::{Access, AuthOutcomes, RoutePolicies, Validator};
use crate::store::TaskStore;
use actix_web::http::Method;
use shared::clock::SharedClock;
use std::sync::Arc;

/// Reading tasks: either task role (a writer may read what it writes).
pub const READ_TASKS: Access = Access::AnyRole(&["Tasks.Read.All", "Tasks.ReadWrite.All"]);
/// Creating, reading one, changing and deleting tasks. Reading one task by id belongs here, not
/// to [`READ_TASKS`]: it is the first half of a change (it answers the `version` a PATCH must
/// name), while a reader's job is the listing, which holds the same fields; keeping the by-id read
/// with the writers leaves a read-only app the one route it needs.
pub const WRITE_TASKS: Access = Access::AnyRole(&["Tasks.ReadWrite.All"]);

/// Every `/api` route with its policy. A route missing here is refused (`route_has_no_policy`).
pub fn policies() -> RoutePolicies {
    RoutePolicies::new()
        .route(Method::GET, "/api/whoami", Access::AnyAllowedApp)
        .route(Method::GET, "/api/tasks", READ_TASKS)
        .route(Method::POST, "/api/tasks", WRITE_TASKS)
        .route(Method::GET, "/api/tasks/{id}", WRITE_TASKS)
        .route(Method::PATCH, "/api/tasks/{id}", WRITE_TASKS)
        .route(Method::DELETE, "/api/tasks/{id}", WRITE_TASKS)
}

/// What the handlers share.
pub struct AppState {
    pub store: Arc<TaskStore>,
    pub validator: Arc<Validator>,
    pub outcomes: Arc<AuthOutcomes>,
    pub clock: SharedClock,
    /// The OpenAPI document, rendered once at start; each answer shares these bytes.
    pub openapi: actix_web::web::Bytes,
}
