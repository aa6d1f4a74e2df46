//! Validation of Entra ID access tokens for an API that accepts only app-only (client-credentials)
//! tokens. The steps run cheapest first, so that garbage is refused before any JSON is parsed or
//! any RSA check is spent on it:
//! 1. `token`: the `Authorization` header, the size cap, the JWS shape and the JOSE header.
//! 2. `keys`: the signing key named by `kid`, from the tenants' discovery documents and JWKS;
//! 3. `claims`: times, issuer (v1 and v2 forms per tenant), audience, tenant, signing-key issuer;
//! 4. `policy`: app-only, allowed confidential client, the route's roles.
//!
//! Every refusal is an [`AuthError`] with a stable reason code, answered in one place as RFC 6750
//! `WWW-Authenticate` plus an RFC 9457 `application/problem+json` body.

pub mod claims;
pub mod error;
pub mod keys;
pub mod middleware;
pub mod policy;
pub mod token;
pub mod validator;

pub use error::{AuthError, Reason};
pub use middleware::{Access, AppOnly, AuthOutcomes, RoutePolicies};
pub use policy::AppCaller;
pub use token::{PreParsed, preparse};
pub use validator::{Validator, ValidatorSettings};
