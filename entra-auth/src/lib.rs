//! Validation of Entra ID access tokens for services that accept only app-only
//! (client-credentials) tokens, as a library: the tasks API and the gateway use it, and any actix
//! service can. The steps run cheapest first, so that garbage is refused before any JSON is
//! parsed or any RSA check is spent on it:
//! 1. [`token`]: the `Authorization` header, the size cap, the JWS shape and the JOSE header.
//! 2. [`keys`]: the signing key named by `kid`, from the tenants' discovery documents and JWKS;
//! 3. [`claims`]: times, issuer (v1 and v2 forms per tenant), audience, tenant, signing-key
//!    issuer;
//! 4. [`policy`]: app-only, allowed confidential client, the route's roles.
//!
//! Every refusal is an [`AuthError`] with a stable reason code, answered in one place as RFC 6750
//! `WWW-Authenticate` plus an RFC 9457 `application/problem+json` body ([`Problem`]).
//!
//! Protecting an actix service (`examples/protect.rs` is this as a program:
//! `cargo run -p entra-auth --example protect -- settings.toml`):
//!
//! ```no_run
//! use actix_web::{App, HttpServer, http::Method, web};
//! use entra_auth::{Access, AppCaller, AppOnly, Protection, RouteTable};
//!
//! async fn reports(caller: AppCaller) -> String {
//!     format!("reports for {}", caller.client_app_id)
//! }
//!
//! # async fn run(settings: entra_auth::ServiceAuthSettings) -> anyhow::Result<()> {
//! let protection = Protection::from_settings(&settings, shared::clock::system()).await?;
//! let table = RouteTable::new("/api")
//!     .route(Method::GET, "/api/reports", Access::AnyRole(&["Reports.Read.All"]), reports);
//! let auth = AppOnly::new(protection.validator.clone(), table.policies());
//! HttpServer::new(move || {
//!     let table = table.clone();
//!     App::new().service(web::scope("/api").wrap(auth.clone()).configure(move |c| table.register(c)))
//! })
//! .bind(("127.0.0.1", 8080))?
//! .run()
//! .await?;
//! # Ok(()) }
//! ```

pub mod claims;
pub mod error;
pub mod keys;
pub mod metrics;
pub mod middleware;
pub mod policy;
pub mod problem;
pub mod routes;
pub mod settings;
pub mod token;
pub mod validator;

pub use error::{AuthError, Reason};
pub use keys::{KeySettings, Readiness};
pub use middleware::{AppOnly, AuthOutcomes, authorization, authorize};
pub use policy::{AppCaller, CallerIdentity};
pub use problem::{Problem, RequestId, problem_response};
pub use routes::{Access, RouteEntry, RoutePolicies, RouteTable};
pub use settings::{EntraSettings, Protection, ServiceAuthSettings};
pub use token::{PreParsed, preparse};
pub use validator::{Validator, ValidatorSettings};
