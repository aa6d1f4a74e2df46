//! The caller service: a client-credentials token manager (usable on its own by any Rust
//! service, see [`token_manager`]) and a daemon that runs scheduled HTTP jobs against
//! Entra-protected APIs with those tokens.
#![forbid(unsafe_code)]

pub mod idp;
pub mod job;
pub mod metrics;
pub mod routes;
pub mod runner;
pub mod scheduler;
pub mod settings;
pub mod sidecar;
pub mod startup;
pub mod token_manager;

pub use startup::{Application, Core};
