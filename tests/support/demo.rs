//! The demo directory's identities under the short names the tests use. Every value comes from
//! `entra_emulator::demo`, which the emulator's build script generates from
//! `entra-emulator/demo/directory.toml`: no ID or secret is written here. The secrets are
//! demo-only and committed on purpose; the tests also use them to check that no log ever shows
//! one.

use entra_emulator::demo::{ada, audit_api, cert_job, reader_job, stranger_job, tasks_api};
use entra_emulator::demo::{tasks_cli, writer_job};
use std::path::PathBuf;

pub use entra_emulator::demo::{TENANT, TENANT_DOMAIN};

/// nightly-mi: a user-assigned managed identity (no secret), Tasks.Read.All; its tokens come
/// from the managed-identity endpoint only.
pub use entra_emulator::demo::nightly_mi;

/// archiver-job: no secret, no certificate; a federated credential trusts the emulator's own
/// service-account issuer for `jobs/archiver`. Tasks.Read.All.
pub use entra_emulator::demo::archiver_job;

/// tasks-api: its client ID (the audience of v2 tokens), application ID URI (of v1 tokens) and
/// the `.default` scope callers ask for.
pub const API_CLIENT_ID: &str = tasks_api::CLIENT_ID;
pub const API_APP_ID_URI: &str = tasks_api::APP_ID_URI;
pub const API_SCOPE: &str = tasks_api::SCOPE;
pub const SCOPE: &str = API_SCOPE;

/// audit-api: requires an app-role assignment.
pub const AUDIT_SCOPE: &str = audit_api::SCOPE;

/// reader-job: Tasks.Read.All, secret.
pub const READER_ID: &str = reader_job::CLIENT_ID;
pub const READER_SP: &str = reader_job::SERVICE_PRINCIPAL_ID;
pub const READER_SECRET: &str = reader_job::SECRET;

/// writer-job: Tasks.ReadWrite.All, secret (and an expired one).
pub const WRITER_ID: &str = writer_job::CLIENT_ID;
pub const WRITER_SP: &str = writer_job::SERVICE_PRINCIPAL_ID;
pub const WRITER_SECRET: &str = writer_job::SECRET;
pub const WRITER_EXPIRED_SECRET: &str = writer_job::EXPIRED_SECRET;

/// cert-job: Tasks.Read.All, certificate (`demo/certs/cert-job.{crt,key}`).
pub const CERT_ID: &str = cert_job::CLIENT_ID;

/// stranger: no role, and not on the API's allow-list.
pub const STRANGER_ID: &str = stranger_job::CLIENT_ID;
pub const STRANGER_SECRET: &str = stranger_job::SECRET;

/// tasks-cli: the public client Ada signs in with (PKCE).
pub const CLI_ID: &str = tasks_cli::CLIENT_ID;
pub const CLI_REDIRECT: &str = tasks_cli::REDIRECT_URI;

/// Ada, the demo user.
pub const USER: &str = ada::USERNAME;
pub const USER_OID: &str = ada::OBJECT_ID;

/// `entra-emulator/demo/`: the directory file and the certificate caller's files.
pub fn demo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../entra-emulator/demo")
}
