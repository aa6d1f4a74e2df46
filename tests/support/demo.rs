//! The demo directory's identities (`entra-emulator/demo/directory.toml`) as the tests expect
//! them. The secrets are demo-only and committed on purpose; the tests also use them to check that
//! no log ever shows one.

/// The tenant, the API's client ID (the audience of v2 tokens) and the `.default` scope callers
/// ask for: as the launcher has them.
pub use mesh::{API_CLIENT_ID, API_SCOPE as SCOPE, TENANT};
use std::path::PathBuf;

/// The API's application ID URI: the audience of v1 tokens.
pub const API_APP_ID_URI: &str = "api://tasks-api";

/// reader-job: Tasks.Read.All, secret.
pub const READER_ID: &str = "0b9a1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d";
pub const READER_SP: &str = "c3d4e5f6-a7b8-4c9d-8e0f-2a3b4c5d6e7f";
pub const READER_SECRET: &str = "rdr8Q~demo.reader.secret.not-for-production";

/// writer-job: Tasks.ReadWrite.All, secret.
pub const WRITER_ID: &str = "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f";
pub const WRITER_SP: &str = "d4e5f6a7-b8c9-4d0e-9f1a-3b4c5d6e7f8a";
pub const WRITER_SECRET: &str = "wrt8Q~demo.writer.secret.not-for-production";

/// cert-job: Tasks.Read.All, certificate (`demo/certs/cert-job.{crt,key}`).
pub const CERT_ID: &str = "2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a";

/// stranger: no role, and not on the API's allow-list.
pub const STRANGER_ID: &str = "3e4f5a6b-7c8d-4e9f-8a0b-2c3d4e5f6a7b";
pub const STRANGER_SECRET: &str = "str8Q~demo.stranger.secret.not-for-production";

/// `entra-emulator/demo/`: the directory file and the certificate caller's files.
pub fn demo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../entra-emulator/demo")
}
