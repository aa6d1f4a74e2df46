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
use crate::routes::{Access, RoutePolicies};
use crate::token::header_text;
use actix_web::body::EitherBody;
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use std::future::{Ready, ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Outcome counters, one per refusal reason, for `/metrics`.
pub struct AuthOutcomes {
    pub accepted: crate::metrics::Counter,
    pub refused: [AtomicU64; Reason::ALL.len()],
}

impl Default for AuthOutcomes {
    fn default() -> Self {
        Self {
            accepted: crate::metrics::Counter::default(),
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

    /// Token, then the route's policy (judged on the pattern actix matched).
    async fn authorize(&self, req: &ServiceRequest) -> Result<AppCaller, AuthError> {
        let access = req
            .match_pattern()
            .and_then(|pattern| self.policies.get(req.method(), &pattern));
        authorize(&self.validator, req.headers(), access).await
    }
}

/// The one `Authorization` header's value. Two credentials are refused: which one would a proxy
/// or logger have looked at?
pub fn authorization(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    authorization_value(headers)?
        .map(|value| header_text(value.as_bytes()))
        .transpose()
}

/// The one `Authorization` header, as it arrived (see [`authorization`]).
fn authorization_value(headers: &HeaderMap) -> Result<Option<&HeaderValue>, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION);
    let first = values.next();
    if values.next().is_some() {
        return Err(AuthError::new(Reason::MalformedAuthorizationHeader));
    }
    Ok(first)
}

/// The whole decision for one request: its token, then `access` (`None`: the route has no
/// policy, and is denied). Authentication comes first, so that a caller without a valid token
/// learns nothing about which routes exist or what they require. The middleware, the gateway and
/// forward-auth all decide here.
pub async fn authorize(
    validator: &Validator,
    headers: &HeaderMap,
    access: Option<Access>,
) -> Result<AppCaller, AuthError> {
    let value = authorization_value(headers)?;
    let caller = validator
        .validate_header(value.map(HeaderValue::as_bytes))
        .await?;
    match access {
        None => {
            Err(AuthError::new(Reason::RouteHasNoPolicy).for_client(Some(&caller.client_app_id)))
        }
        Some(Access::AnyAllowedApp) => Ok(caller),
        Some(Access::AnyRole(roles)) => caller.require_any_role(roles).map(|()| caller),
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
                    let response = refusal.response_to(req.request());
                    Ok(req.into_response(response).map_into_right_body())
                }
            }
        })
    }
}

/// The accepted caller, for handlers under [`AppOnly`]. Without the middleware there is no
/// caller, and the request is refused rather than served anonymously.
impl FromRequest for AppCaller {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Taken, not cloned: one extraction per request is all a handler needs.
        let caller = req.extensions_mut().remove::<AppCaller>();
        ready(caller.ok_or_else(|| {
            let refusal = AuthError::new(Reason::RouteHasNoPolicy);
            let response = refusal.response_to(req);
            actix_web::error::InternalError::from_response(refusal, response).into()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_are_judged_exactly_as_to_str_judges_them() {
        let token = "Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl".repeat(20);
        for byte in 0..=u8::MAX {
            for at in [0, 7, token.len() / 2, token.len()] {
                let mut bytes = token.as_bytes().to_vec();
                bytes.insert(at, byte);
                // Values actix could hand over at all.
                let Ok(value) = HeaderValue::from_bytes(&bytes) else {
                    continue;
                };
                assert_eq!(
                    header_text(value.as_bytes()).ok(),
                    value.to_str().ok(),
                    "byte {byte:#04x} at {at}"
                );
            }
        }
    }
}
