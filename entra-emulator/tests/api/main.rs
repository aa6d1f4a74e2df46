//! The emulator, spawned for real on port 0, exercised over HTTP(S) as clients see it.

mod admin;
mod authorize;
mod cli;
mod directory;
mod discovery;
mod fuzz_regressions;
mod helpers;
mod interop;
mod token_errors;
mod token_success;
