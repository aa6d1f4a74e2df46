//! The routes, and the one table that declares each `/api` route: method, path, handler and the
//! roles it needs.

pub mod health;
pub mod openapi;
pub mod tasks;
pub mod whoami;

use crate::store::TaskStore;
use actix_web::http::Method;
use actix_web::{FromRequest, Handler, Responder};
use entra_auth::{Access, AuthOutcomes, RouteTable, Validator};
use shared::clock::SharedClock;
use std::sync::Arc;
use utoipa::openapi::path::{HttpMethod, Operation};

/// Reading tasks: either task role (a writer may read what it writes).
pub const READ_TASKS: Access = Access::AnyRole(&["Tasks.Read.All", "Tasks.ReadWrite.All"]);
/// Creating, reading one, changing and deleting tasks. Reading one task by id belongs here, not
/// to [`READ_TASKS`]: it is the first half of a change (it answers the `version` a PATCH must
/// name), while a reader's job is the listing, which holds the same fields; keeping the by-id read
/// with the writers leaves a read-only app the one route it needs.
pub const WRITE_TASKS: Access = Access::AnyRole(&["Tasks.ReadWrite.All"]);

/// A route's OpenAPI operation, from its handler's `#[utoipa::path]`.
pub type Doc = fn() -> Operation;

/// Every `/api` route, declared once: its method and path come from the handler's
/// `#[utoipa::path]`, its access from here. Startup registers the handlers from this table, the
/// middleware enforces its policies (a route missing here is refused, `route_has_no_policy`), and
/// the OpenAPI document lists its operations with their roles.
pub fn table() -> RouteTable<Doc> {
    RouteTable::new("/api")
        .op::<whoami::__path_whoami, _, _>(Access::AnyAllowedApp, whoami::whoami)
        .op::<tasks::__path_list, _, _>(READ_TASKS, tasks::list)
        .op::<tasks::__path_create, _, _>(WRITE_TASKS, tasks::create)
        .op::<tasks::__path_get, _, _>(WRITE_TASKS, tasks::get)
        .op::<tasks::__path_update, _, _>(WRITE_TASKS, tasks::update)
        .op::<tasks::__path_delete, _, _>(WRITE_TASKS, tasks::delete)
}

/// Declaring a route from its utoipa path item.
trait DocumentedRoute: Sized {
    fn op<P: utoipa::Path, F, Args>(self, access: Access, handler: F) -> Self
    where
        F: Handler<Args> + Clone + Send + Sync,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static;
}

impl DocumentedRoute for RouteTable<Doc> {
    fn op<P: utoipa::Path, F, Args>(self, access: Access, handler: F) -> Self
    where
        F: Handler<Args> + Clone + Send + Sync,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        let path = P::path();
        let method = match P::methods().as_slice() {
            [method] => method_of(method),
            other => panic!("{path}: one method per route, not {}", other.len()),
        };
        self.documented(method, &path, access, handler, P::operation)
    }
}

fn method_of(method: &HttpMethod) -> Method {
    match method {
        HttpMethod::Get => Method::GET,
        HttpMethod::Post => Method::POST,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Delete => Method::DELETE,
        HttpMethod::Options => Method::OPTIONS,
        HttpMethod::Head => Method::HEAD,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Trace => Method::TRACE,
    }
}

fn http_method_of(method: &Method) -> Option<HttpMethod> {
    Some(match *method {
        Method::GET => HttpMethod::Get,
        Method::POST => HttpMethod::Post,
        Method::PUT => HttpMethod::Put,
        Method::DELETE => HttpMethod::Delete,
        Method::OPTIONS => HttpMethod::Options,
        Method::HEAD => HttpMethod::Head,
        Method::PATCH => HttpMethod::Patch,
        Method::TRACE => HttpMethod::Trace,
        _ => return None,
    })
}

/// What the handlers share.
pub struct AppState {
    pub store: Arc<TaskStore>,
    pub validator: Arc<Validator>,
    pub outcomes: Arc<AuthOutcomes>,
    pub clock: SharedClock,
    /// The OpenAPI document, rendered once at start; each answer shares these bytes.
    pub openapi: actix_web::web::Bytes,
    /// Set once a stop has begun with `server.drain_secs`: `/readyz` answers 503.
    pub draining: crate::startup::Draining,
}
