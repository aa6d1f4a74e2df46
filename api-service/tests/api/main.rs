//! The API against a wiremock identity provider serving discovery and JWKS (tokens minted by the
//! tests with their own keys), and against the real emulator.

mod attack_corpus;
mod durability;
mod emulator;
mod fuzz_regressions;
mod helpers;
mod keys;
mod operations;
mod tasks;
mod validator;
