//! Pieces that every service of the mesh needs in the same form: layered configuration, telemetry,
//! the one clock, the secret wrapper, the Entra access-token claim model, the Entra error body, and an HTTP client
//! that trusts an extra CA. Nothing service-specific lives here.
#![forbid(unsafe_code)]

pub mod assertion;
pub mod claims;
pub mod clock;
pub mod config;
pub mod entra_error;
pub mod http;
pub mod jose;
pub mod jwks;
pub mod managed_identity;
pub mod proxy;
pub mod ready;
pub mod secret;
pub mod signal;
pub mod telemetry;
pub mod upstream;

pub use secret::{Secret, fingerprint};
