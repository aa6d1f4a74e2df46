//! Which app roles each route needs, declared once. [`RouteTable`] holds each protected route
//! (method, pattern, access, handler): the application registers its routes from it, the
//! [`AppOnly`](crate::AppOnly) middleware enforces the [`RoutePolicies`] made from it, and an
//! OpenAPI document can be built from it, so the three cannot disagree.

use actix_web::http::Method;
use actix_web::{FromRequest, Handler, Responder, web};
use std::collections::HashMap;
use std::sync::Arc;

/// What a route requires of an accepted app-only caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Any allowed client application, whatever its roles (e.g. `whoami`).
    AnyAllowedApp,
    /// At least one of these app roles.
    AnyRole(&'static [&'static str]),
}

impl Access {
    /// Any of `roles`, read at run time (a gateway's configuration file). The names are kept for
    /// the life of the process: policies are built once, at start.
    pub fn any_role_of(roles: Vec<String>) -> Self {
        let roles: Vec<&'static str> = roles
            .into_iter()
            .map(|role| &*Box::leak(role.into_boxed_str()))
            .collect();
        Self::AnyRole(Box::leak(roles.into_boxed_slice()))
    }

    pub fn roles(self) -> &'static [&'static str] {
        match self {
            Self::AnyAllowedApp => &[],
            Self::AnyRole(roles) => roles,
        }
    }
}

/// The policy of each (method, route pattern) under the protected scope.
#[derive(Debug, Clone, Default)]
pub struct RoutePolicies {
    /// Pattern → (method, access): looked up by `&str`, without allocating per request.
    routes: HashMap<String, Vec<(Method, Access)>>,
}

impl RoutePolicies {
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares `access` for `method` on `pattern`, the full pattern as actix matches it
    /// (`/api/tasks/{id}`).
    pub fn route(mut self, method: Method, pattern: &str, access: Access) -> Self {
        let methods = self.routes.entry(pattern.to_owned()).or_default();
        methods.retain(|(m, _)| *m != method);
        methods.push((method, access));
        self
    }

    pub fn get(&self, method: &Method, pattern: &str) -> Option<Access> {
        self.routes
            .get(pattern)?
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, access)| *access)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Method, &str, Access)> {
        self.routes.iter().flat_map(|(pattern, methods)| {
            methods.iter().map(move |(m, a)| (m, pattern.as_str(), *a))
        })
    }
}

type Register = Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync>;

/// One protected route.
pub struct RouteEntry<D> {
    pub method: Method,
    /// The full pattern as actix matches it (`/api/tasks/{id}`).
    pub pattern: String,
    pub access: Access,
    /// Whatever the application documents the route with (an OpenAPI operation, say).
    pub doc: D,
    register: Register,
}

/// The protected routes, each declared once with its handler; `D` is the application's
/// documentation of each (`()` for none).
///
/// ```
/// use actix_web::{App, http::Method, web};
/// use entra_auth::{Access, AppCaller, RouteTable};
///
/// async fn reports(caller: AppCaller) -> String {
///     format!("reports for {}", caller.client_app_id)
/// }
///
/// let table = RouteTable::new("/api")
///     .route(Method::GET, "/api/reports", Access::AnyRole(&["Reports.Read.All"]), reports);
/// assert_eq!(
///     table.policies().get(&Method::GET, "/api/reports"),
///     Some(Access::AnyRole(&["Reports.Read.All"]))
/// );
/// // App::new().service(web::scope("/api").wrap(AppOnly::new(validator, table.policies()))
/// //     .configure(|cfg| table.register(cfg)))
/// let _app = App::new().service(web::scope("/api").configure(|cfg| table.register(cfg)));
/// ```
pub struct RouteTable<D = ()> {
    scope: String,
    entries: Vec<RouteEntry<D>>,
}

impl<D> Clone for RouteEntry<D>
where
    D: Clone,
{
    fn clone(&self) -> Self {
        Self {
            method: self.method.clone(),
            pattern: self.pattern.clone(),
            access: self.access,
            doc: self.doc.clone(),
            register: Arc::clone(&self.register),
        }
    }
}

impl<D: Clone> Clone for RouteTable<D> {
    fn clone(&self) -> Self {
        Self {
            scope: self.scope.clone(),
            entries: self.entries.clone(),
        }
    }
}

impl RouteTable<()> {
    /// Declares `handler` for `method` on `pattern` with `access`.
    pub fn route<F, Args>(self, method: Method, pattern: &str, access: Access, handler: F) -> Self
    where
        F: Handler<Args> + Clone + Send + Sync,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.documented(method, pattern, access, handler, ())
    }
}

impl<D> RouteTable<D> {
    /// A table of routes that all live under `scope` (`/api`): patterns are given whole
    /// (`/api/tasks`) and registered relative to the scope they are served in.
    pub fn new(scope: &str) -> Self {
        Self {
            scope: scope.trim_end_matches('/').to_owned(),
            entries: Vec::new(),
        }
    }

    /// As [`RouteTable::route`], with the route's documentation.
    ///
    /// # Panics
    /// If `pattern` is not under the table's scope: a programming error, caught by the first test
    /// that builds the table.
    pub fn documented<F, Args>(
        mut self,
        method: Method,
        pattern: &str,
        access: Access,
        handler: F,
        doc: D,
    ) -> Self
    where
        F: Handler<Args> + Clone + Send + Sync,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        let relative = pattern
            .strip_prefix(self.scope.as_str())
            .filter(|rest| rest.starts_with('/'))
            .unwrap_or_else(|| panic!("route {pattern} is not under {}", self.scope))
            .to_owned();
        let route_method = method.clone();
        let register: Register = Arc::new(move |cfg: &mut web::ServiceConfig| {
            cfg.route(
                &relative,
                web::route()
                    .method(route_method.clone())
                    .to(handler.clone()),
            );
        });
        self.entries.push(RouteEntry {
            method,
            pattern: pattern.to_owned(),
            access,
            doc,
            register,
        });
        self
    }

    /// Registers every route on the scope's `ServiceConfig`.
    pub fn register(&self, cfg: &mut web::ServiceConfig) {
        for entry in &self.entries {
            (entry.register)(cfg);
        }
    }

    /// The policies the middleware enforces.
    pub fn policies(&self) -> RoutePolicies {
        self.entries
            .iter()
            .fold(RoutePolicies::new(), |policies, entry| {
                policies.route(entry.method.clone(), &entry.pattern, entry.access)
            })
    }

    pub fn entries(&self) -> &[RouteEntry<D>] {
        &self.entries
    }
}
