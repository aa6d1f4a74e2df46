//! The validation as actix-web middleware, so another actix service adds it in a few lines:
//!
//! ```ignore
//! let policies = RoutePolicies::new()
//!     .route(Method::GET, "/api/reports", Access::AnyRole(&["Reports.Read.All"]));
//! App::new().service(
//!     web::scope("/api")
//!         .wrap(AppOnly::new(validator, policies))
//!         .route("/reports", web::get().to(list_reports)), // list_reports(caller: AppCaller, …)
//! )
//! ```
//!
//! Deny by default: every request under the wrapped scope needs a valid app-only token, and then a
//! policy declared for its method and route pattern; a route someone added without declaring one
//! answers 403 `route_has_no_policy`, it is never open. Handlers take [`AppCaller`] as an
//! extractor; outside the middleware that extractor refuses too.

use super::error::{AuthError, Reason};
use super::policy::AppCaller;
use super::validator::Validator;
use actix_web::body::EitherBody;
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::Method;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use std::collections::HashMap;
use std::future::{Ready, ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a route requires of an accepted app-only caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Any allowed client application, whatever its roles (e.g. `whoami`).
    AnyAllowedApp,
    /// At least one of these app roles.
    AnyRole(&'static [&'static str]),
}

impl Access {
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

/// Outcome counters, one per refusal reason, for `/metrics`.
pub struct AuthOutcomes {
    pub accepted: AtomicU64,
    pub refused: [AtomicU64; Reason::ALL.len()],
}

impl Default for AuthOutcomes {
    fn default() -> Self {
        Self {
            accepted: AtomicU64::new(0),
            refused: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// The middleware factory: `scope.wrap(AppOnly::new(validator, policies))`.
#[derive(Clone)]
pub struct AppOnly {
    validator: Arc<Validator>,
    policies: Arc<RoutePolicies>,
    outcomes: Arc<AuthOutcomes>,
}

impl AppOnly {
    pub fn new(validator: Arc<Validator>, policies: RoutePolicies) -> Self {
        Self {
            validator,
            policies: Arc::new(policies),
            outcomes: Arc::default(),
        }
    }

    pub fn outcomes(&self) -> &Arc<AuthOutcomes> {
        &self.outcomes
    }

    /// Token, then the route's policy. Authentication comes first so that a caller without a
    /// valid token learns nothing about which routes exist or what they require.
    async fn authorize(&self, req: &ServiceRequest) -> Result<AppCaller, AuthError> {
        let mut values = req.headers().get_all(AUTHORIZATION);
        let first = values.next();
        if values.next().is_some() {
            // Two credentials: which one would a proxy or logger have looked at? Refuse both.
            return Err(AuthError::new(Reason::MalformedAuthorizationHeader));
        }
        let header = match first {
            None => None,
            Some(value) => Some(
                value
                    .to_str()
                    .map_err(|_| AuthError::new(Reason::MalformedAuthorizationHeader))?,
            ),
        };
        let caller = self.validator.validate(header).await?;
        let access = req
            .match_pattern()
            .and_then(|pattern| self.policies.get(req.method(), &pattern));
        match access {
            None => {
                Err(AuthError::new(Reason::RouteHasNoPolicy)
                    .for_client(Some(&caller.client_app_id)))
            }
            Some(Access::AnyAllowedApp) => Ok(caller),
            Some(Access::AnyRole(roles)) => caller.require_any_role(roles).map(|()| caller),
        }
    }
}

impl<S, B> Transform<S, ServiceRequest> for AppOnly
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = AppOnlyMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(AppOnlyMiddleware {
            service: Rc::new(service),
            auth: Rc::new(self.clone()),
        }))
    }
}

/// One per worker thread: what each request takes of it is an `Rc` count, never a shared atomic.
pub struct AppOnlyMiddleware<S> {
    service: Rc<S>,
    auth: Rc<AppOnly>,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T>>>;

impl<S, B> Service<ServiceRequest> for AppOnlyMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let service = Rc::clone(&self.service);
        let auth = Rc::clone(&self.auth);
        Box::pin(async move {
            match auth.authorize(&req).await {
                Ok(caller) => {
                    auth.outcomes.accepted.fetch_add(1, Ordering::Relaxed);
                    req.extensions_mut().insert(caller);
                    service
                        .call(req)
                        .await
                        .map(ServiceResponse::map_into_left_body)
                }
                Err(refusal) => {
                    auth.outcomes.refused[refusal.reason.index()].fetch_add(1, Ordering::Relaxed);
                    // Refusals are part of normal operation (expired tokens, a misconfigured
                    // caller), so `info`, with what an operator needs to fix it: never the token.
                    tracing::info!(
                        reason = refusal.reason.as_str(),
                        status = refusal.reason.status().as_u16(),
                        client_app_id = refusal.client_app_id.as_deref().unwrap_or("-"),
                        "request refused"
                    );
                    let response = actix_web::ResponseError::error_response(&refusal);
                    Ok(req.into_response(response).map_into_right_body())
                }
            }
        })
    }
}

/// The accepted caller, for handlers under [`AppOnly`]. Without the middleware there is no
/// caller, and the request is refused rather than served anonymously.
impl FromRequest for AppCaller {
    type Error = AuthError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Taken, not cloned: one extraction per request is all a handler needs.
        ready(
            req.extensions_mut()
                .remove::<AppCaller>()
                .ok_or_else(|| AuthError::new(Reason::RouteHasNoPolicy)),
        )
    }
}
