//! The emulator's suite: the emulator spawned for real on port 0, exercised over HTTP(S) as
//! clients see it (discovery, token and authorize endpoints, AADSTS errors, admin API, the Azure
//! SDK for Rust against it, the fuzz regression inputs).

mod admin;
mod authorize;
mod directory;
mod discovery;
mod federation;
mod fuzz_regressions;
mod helpers;
mod interop;
mod managed_identity;
mod session;
mod token_errors;
mod token_success;
