//! The caller's suite: the real token manager, jobs and daemon, through the real
//! `azure_identity` code, against wiremock playing the token endpoint and the target API on a
//! manual clock (coalescing, half-life refresh, 503/429 storms, permanent AADSTS errors, managed
//! and workload identity, logs without secrets, the token sidecar); and against the real emulator and API. Harness:
//! `mesh_tests::caller`. The binary's command line is tested in `caller-service/tests/cli.rs`.

mod daemon;
mod emulator;
mod jobs;
mod logging;
mod mesh;
mod sidecar;
mod storms;
mod token_manager;
mod workload_identity;
