//! The tasks API: accepts only app-only Entra ID access tokens from allowed client applications,
//! each route requiring its app roles; keeps tasks in SQLite.
#![forbid(unsafe_code)]

pub mod metrics;
pub mod observe;
pub mod problem;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod store;

pub use settings::ApiSettings;
pub use startup::Application;
