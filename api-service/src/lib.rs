//! The tasks API and, in `auth`, the validation of Entra ID app-only tokens that another actix
//! service can reuse.
#![forbid(unsafe_code)]

pub mod auth;
