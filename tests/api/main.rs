//! The API's suite: the real `api-service` application against wiremock playing Entra's
//! discovery and JWKS, tokens minted and forged by the tests with their own keys (the attack
//! corpus, key refresh, rotation and outage, tasks, operations, the fuzzers' regression inputs);
//! and against the real emulator's tokens. Harness: `mesh_tests::api`. The binary under `kill -9`
//! is tested in `api-service/tests/durability.rs`.

mod attack_corpus;
mod emulator;
mod fuzz_regressions;
mod keys;
mod operations;
mod tasks;
mod validator;
