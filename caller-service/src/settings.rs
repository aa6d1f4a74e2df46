//! The daemon's configuration: built-in defaults, then an optional TOML file, then `CALLER__…`
//! variables, with the Azure SDKs' `AZURE_*` variables as aliases for the `identity` section.
//! [`Settings::validate`] turns the raw form into what the rest of the crate uses and refuses a bad
//! deployment with one line naming the key (for jobs: the job and the field).

use crate::job::{Job, Schedule};
use serde::Deserialize;
use shared::Secret;
use shared::assertion::AssertionAlgorithm;
use shared::config::ConfigError;
use shared::http::HttpClientSettings;
use shared::telemetry::LogSettings;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

pub const ENV_PREFIX: &str = "CALLER";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub identity: IdentityConfig,
    pub token_manager: TokenManagerSettings,
    /// The outbound client for the identity provider *and* the target APIs: one extra CA bundle
    /// (`http.extra_ca_file`) is trusted for both.
    pub http: HttpClientSettings,
    pub jobs: Vec<JobSettings>,
    pub server: ServerSettings,
    /// The token sidecar for apps in any language: egress forwarding and a managed-identity
    /// endpoint. Off unless an upstream or a resource is configured.
    pub sidecar: SidecarSettings,
    pub log: LogSettings,
}

/// Which `azure_identity` credential acquires tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    Secret,
    Certificate,
    WorkloadIdentity,
    ManagedIdentity,
}

/// The `identity` section. The first six keys are the ones the `AZURE_*` variables fill.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    /// PEM certificate (may also hold the key, as `AZURE_CLIENT_CERTIFICATE_PATH` files do).
    pub client_certificate_path: Option<PathBuf>,
    pub federated_token_file: Option<PathBuf>,
    /// Default `https://login.microsoftonline.com`. Must be HTTPS: `azure_identity` refuses others.
    pub authority_host: Option<String>,
    /// Chosen explicitly, or inferred in the Azure SDKs' order: a secret, then a certificate, then
    /// a federated token file; managed identity only when asked for, since it cannot be inferred
    /// from anything set.
    pub credential: Option<CredentialKind>,
    /// The certificate's private key, when not in `client_certificate_path`.
    pub client_certificate_key_path: Option<PathBuf>,
    /// PS256 + `x5t#S256` (default, current MSAL) or RS256 + `x5t` (older clients).
    pub assertion_algorithm: AssertionAlgorithm,
}

/// How the token manager refreshes and retries. Defaults are the production values.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenManagerSettings {
    /// Refresh at this fraction of a token's lifetime. Default 0.5: an identity-provider outage
    /// shorter than half a token's life (30–45 min for Entra's 60–90 min app tokens) is invisible
    /// to jobs.
    pub refresh_fraction: f64,
    /// Up to this fraction of the lifetime is taken off the refresh time at random, so a fleet
    /// started together does not refresh together. Default 0.05 (3–4.5 min on Entra tokens).
    pub refresh_jitter_fraction: f64,
    /// Refresh no later than this before expiry, whatever the fraction says. Default 300 s, the
    /// Azure SDKs' own refresh point, which is our latest, not our usual.
    pub refresh_before_expiry_secs: u64,
    /// A token stops being served this long before it expires: a request sent with it must still
    /// arrive while it is valid. Default 60 s (above the 30 s request timeout).
    pub safety_margin_secs: u64,
    /// One acquisition (all its HTTP) may take this long. Default 10 s.
    pub acquire_timeout_secs: u64,
    /// First transient-failure backoff ceiling; doubles per failure, full jitter. Default 1 s.
    pub backoff_initial_ms: u64,
    /// Backoff ceiling. Default 60 s.
    pub backoff_max_secs: u64,
    /// After a permanent error (bad secret, unknown app…) retry this slowly. Default 300 s: a
    /// fixed secret is picked up within 5 minutes, and the identity provider is not hammered.
    pub permanent_retry_secs: u64,
    /// A token is dropped on a target API's 401 at most this often per scope. Default 30 s: a
    /// misconfigured API answering 401 to every token must not turn into a token storm.
    pub invalidate_min_interval_secs: u64,
    /// Scopes to acquire at start besides the jobs' own (for `/readyz`).
    pub scopes: Vec<String>,
}

impl Default for TokenManagerSettings {
    fn default() -> Self {
        Self {
            refresh_fraction: 0.5,
            refresh_jitter_fraction: 0.05,
            refresh_before_expiry_secs: 300,
            safety_margin_secs: 60,
            acquire_timeout_secs: 10,
            backoff_initial_ms: 1000,
            backoff_max_secs: 60,
            permanent_retry_secs: 300,
            invalidate_min_interval_secs: 30,
            scopes: Vec::new(),
        }
    }
}

impl TokenManagerSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let key = |k: &str| format!("token_manager.{k}");
        if !(self.refresh_fraction > 0.0 && self.refresh_fraction < 1.0) {
            return Err(ConfigError::key(
                &key("refresh_fraction"),
                "must be between 0 and 1 (exclusive)",
            ));
        }
        if !(0.0..0.5).contains(&self.refresh_jitter_fraction) {
            return Err(ConfigError::key(
                &key("refresh_jitter_fraction"),
                "must be at least 0 and below 0.5",
            ));
        }
        for (name, value) in [
            ("acquire_timeout_secs", self.acquire_timeout_secs),
            ("backoff_initial_ms", self.backoff_initial_ms),
            ("backoff_max_secs", self.backoff_max_secs),
            ("permanent_retry_secs", self.permanent_retry_secs),
        ] {
            if value == 0 {
                return Err(ConfigError::key(&key(name), "must be greater than 0"));
            }
        }
        for scope in &self.scopes {
            check_scope(scope).map_err(|reason| ConfigError::key(&key("scopes"), reason))?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Default 127.0.0.1: the operator endpoint shows token state; expose it deliberately.
    pub host: String,
    /// Default 9090. 0 picks a free port (tests).
    pub port: u16,
    /// On SIGTERM/SIGINT running jobs get this long to finish. Default 30 s, inside Kubernetes'
    /// default 30 s termination grace period only if jobs are short; raise both together.
    pub shutdown_deadline_secs: u64,
    /// Stop on SIGTERM/SIGINT by itself. Default true; false when embedded in a process that
    /// handles signals and stops the daemon through its handle (the mesh launcher).
    pub handle_signals: bool,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 9090,
            shutdown_deadline_secs: 30,
            handle_signals: true,
        }
    }
}

/// The `sidecar` section as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SidecarSettings {
    /// Default 127.0.0.1. Anyone who reaches the sidecar borrows this identity: any other address
    /// needs `allow_non_loopback = true`, and is logged as a warning at start.
    pub host: String,
    /// Default 9091. 0 picks a free port (tests).
    pub port: u16,
    pub allow_non_loopback: bool,
    /// Server worker threads, each with its own upstream connection pool. Default 2.
    pub workers: usize,
    /// Request bodies larger than this are refused with 413. Default 10 MiB.
    pub max_body_bytes: u64,
    /// `http://{host}:{port}/{name}/…` is forwarded to `{url}/…` with a token for `scope`.
    pub upstreams: Vec<SidecarUpstreamSettings>,
    /// The managed-identity endpoint (`/msi/token`, App Service protocol 2019-08-01) serves
    /// tokens for these resources (a scope without its `/.default`, as the SDKs send it).
    #[serde(deserialize_with = "shared::config::list")]
    pub resources: Vec<String>,
    /// The `X-IDENTITY-HEADER` value apps must send (their `IDENTITY_HEADER`): the endpoint's
    /// guard against a request forged through some other service (SSRF). Required with
    /// `resources`, at least 16 characters.
    pub identity_header: Option<Secret>,
}

impl Default for SidecarSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 9091,
            allow_non_loopback: false,
            workers: 2,
            max_body_bytes: 10 * 1024 * 1024,
            upstreams: Vec::new(),
            resources: Vec::new(),
            identity_header: None,
        }
    }
}

/// One `[[sidecar.upstreams]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SidecarUpstreamSettings {
    /// The first path segment apps use: letters, digits, `-` and `_`.
    pub name: String,
    /// `http://` or `https://` (trusting `http.extra_ca_file`), with an optional base path.
    pub url: String,
    /// `api://…/.default` or `{app id}/.default`.
    pub scope: String,
    /// The upstream must send its answer's head within this. Default 30 s.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

/// The sidecar, checked.
#[derive(Debug, Clone)]
pub struct Sidecar {
    pub host: String,
    pub port: u16,
    /// True when bound beyond loopback (warned about at start).
    pub exposed: bool,
    pub workers: usize,
    pub max_body_bytes: u64,
    pub upstreams: Vec<SidecarUpstream>,
    pub identity: Option<IdentityEndpoint>,
}

#[derive(Debug, Clone)]
pub struct SidecarUpstream {
    pub name: String,
    /// Parsed once: a request's URL is this with its path and query replaced, so its scheme and
    /// host are never parsed again.
    pub url: url::Url,
    pub scope: String,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct IdentityEndpoint {
    pub header: Secret,
    /// As configured, each without a trailing `/`.
    pub resources: Vec<String>,
}

/// The sidecar's own paths, which no upstream may be named after.
pub const SIDECAR_RESERVED: [&str; 4] = ["msi", "healthz", "readyz", "metrics"];

impl SidecarSettings {
    /// `None` when nothing is configured: the sidecar does not listen.
    pub fn validate(&self) -> Result<Option<Sidecar>, ConfigError> {
        if self.upstreams.is_empty() && self.resources.is_empty() {
            return Ok(None);
        }
        let loopback = self.host == "localhost"
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !loopback && !self.allow_non_loopback {
            return Err(ConfigError::key(
                "sidecar.host",
                format!(
                    "`{}` is not a loopback address: anyone who reaches the sidecar borrows this \
                     identity; set sidecar.allow_non_loopback = true to mean it",
                    self.host
                ),
            ));
        }
        if self.workers == 0 {
            return Err(ConfigError::key(
                "sidecar.workers",
                "must be greater than 0",
            ));
        }
        if self.max_body_bytes == 0 {
            return Err(ConfigError::key(
                "sidecar.max_body_bytes",
                "must be greater than 0",
            ));
        }
        let mut upstreams = Vec::with_capacity(self.upstreams.len());
        for (index, upstream) in self.upstreams.iter().enumerate() {
            let key = |field: &str| format!("sidecar.upstreams[{index}].{field}");
            let name = upstream.name.as_str();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(ConfigError::key(
                    &key("name"),
                    format!("`{name}` must be letters, digits, `-` or `_` (it is a path segment)"),
                ));
            }
            if SIDECAR_RESERVED.contains(&name) {
                return Err(ConfigError::key(
                    &key("name"),
                    format!("`{name}` is one of the sidecar's own paths"),
                ));
            }
            if upstreams.iter().any(|u: &SidecarUpstream| u.name == name) {
                return Err(ConfigError::key(
                    &key("name"),
                    format!("`{name}` is used by another upstream"),
                ));
            }
            let url =
                url::Url::parse(&upstream.url).map_err(|e| ConfigError::key(&key("url"), e))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(ConfigError::key(
                    &key("url"),
                    "must be an http:// or https:// URL",
                ));
            }
            if url.query().is_some() || url.fragment().is_some() {
                return Err(ConfigError::key(
                    &key("url"),
                    "must have no query or fragment (the app's own are passed on)",
                ));
            }
            check_scope(&upstream.scope).map_err(|e| ConfigError::key(&key("scope"), e))?;
            if upstream.timeout_secs == 0 {
                return Err(ConfigError::key(
                    &key("timeout_secs"),
                    "must be greater than 0",
                ));
            }
            upstreams.push(SidecarUpstream {
                name: name.to_owned(),
                url,
                scope: upstream.scope.clone(),
                timeout: Duration::from_secs(upstream.timeout_secs),
            });
        }
        let identity = if self.resources.is_empty() {
            None
        } else {
            let header = match &self.identity_header {
                Some(header) if header.expose().len() >= 16 => header.clone(),
                Some(_) => {
                    return Err(ConfigError::key(
                        "sidecar.identity_header",
                        "must be at least 16 characters: it is the managed-identity endpoint's only guard",
                    ));
                }
                None => {
                    return Err(ConfigError::key(
                        "sidecar.identity_header",
                        "is required with sidecar.resources (apps send it as IDENTITY_HEADER)",
                    ));
                }
            };
            let mut resources = Vec::with_capacity(self.resources.len());
            for resource in &self.resources {
                let resource = resource.trim_end_matches('/');
                if resource.ends_with("/.default") {
                    return Err(ConfigError::key(
                        "sidecar.resources",
                        format!(
                            "`{resource}` is a scope: list the resource, without `/.default`, as the SDKs send it"
                        ),
                    ));
                }
                check_scope(&format!("{resource}/.default"))
                    .map_err(|e| ConfigError::key("sidecar.resources", e))?;
                resources.push(resource.to_owned());
            }
            Some(IdentityEndpoint { header, resources })
        };
        Ok(Some(Sidecar {
            host: self.host.clone(),
            port: self.port,
            exposed: !loopback,
            workers: self.workers,
            max_body_bytes: self.max_body_bytes,
            upstreams,
            identity,
        }))
    }
}

impl SidecarUpstream {
    /// The URL without a trailing `/`: the rest of the app's path and its query go after it.
    pub fn base(&self) -> &str {
        self.url.as_str().trim_end_matches('/')
    }
}

impl Sidecar {
    /// The scopes the sidecar serves: acquired at start and watched by `/readyz`.
    pub fn scopes(&self) -> Vec<String> {
        let mut scopes: Vec<String> = self.upstreams.iter().map(|u| u.scope.clone()).collect();
        if let Some(identity) = &self.identity {
            scopes.extend(identity.resources.iter().map(|r| format!("{r}/.default")));
        }
        scopes
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverlapPolicy {
    /// A run due while the previous one is still going is skipped (and counted). Default.
    #[default]
    Skip,
    /// Runs may overlap.
    Allow,
}

/// One `[[jobs]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSettings {
    pub name: String,
    /// Cron with seconds: `sec min hour day-of-month month day-of-week [year]`, UTC.
    pub schedule: Option<String>,
    /// Or every this many seconds…
    pub interval_secs: Option<u64>,
    /// …each run delayed by up to this many seconds at random. Default 0.
    #[serde(default)]
    pub jitter_secs: u64,
    #[serde(default = "default_method")]
    pub method: String,
    pub url: String,
    pub body: Option<serde_json::Value>,
    /// `api://…/.default` or `{app id}/.default`.
    pub scope: String,
    /// Whole request, including the retry after a 401. Default 30 s.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// The statuses that count as success. Default: any 2xx.
    #[serde(default)]
    pub success_status: Vec<u16>,
    #[serde(default)]
    pub overlap: OverlapPolicy,
    /// Repeat a run once, a second later (or after the answer's `Retry-After`, up to 10 s), when
    /// the call got no answer (connection refused or reset, a timeout) or a 429, 502, 503 or 504,
    /// and sending it twice is safe: GET, HEAD, OPTIONS, PUT and DELETE, or any method with
    /// `external_id_field`. Default true: a replica lost behind a load balancer costs no run.
    #[serde(default = "default_retry")]
    pub retry: bool,
    /// A field of the JSON `body` that makes the call idempotent on the API's side, as the tasks
    /// API's `external_id`: each run puts a fresh key there (`{job}:{unix ms}:{random}`), the same
    /// on its retry, and a 409 `duplicate_external_id` answering the retry counts as success (the
    /// first attempt landed). Needs `body` to be a JSON object. Default none.
    pub external_id_field: Option<String>,
}

fn default_retry() -> bool {
    true
}

fn default_method() -> String {
    "GET".into()
}

fn default_timeout() -> u64 {
    30
}

impl JobSettings {
    pub fn validate(&self) -> Result<Job, ConfigError> {
        let field = |f: &str, reason: &dyn std::fmt::Display| {
            ConfigError(format!("job `{}`: `{f}` {reason}", self.name))
        };
        let schedule = match (&self.schedule, self.interval_secs) {
            (Some(_), Some(_)) => {
                return Err(field(
                    "schedule",
                    &"and `interval_secs` are both set; choose one",
                ));
            }
            (None, None) => {
                return Err(field(
                    "schedule",
                    &"is missing: set a cron `schedule` (with seconds) or `interval_secs`",
                ));
            }
            (Some(cron), None) => Schedule::cron(cron).map_err(|e| field("schedule", &e))?,
            (None, Some(0)) => return Err(field("interval_secs", &"must be greater than 0")),
            (None, Some(secs)) => Schedule::interval(
                Duration::from_secs(secs),
                Duration::from_secs(self.jitter_secs),
            ),
        };
        if self.schedule.is_some() && self.jitter_secs > 0 {
            return Err(field(
                "jitter_secs",
                &"applies to `interval_secs` jobs only",
            ));
        }
        let method = reqwest::Method::from_bytes(self.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| {
                field(
                    "method",
                    &format!("`{}` is not an HTTP method", self.method),
                )
            })?;
        let url = url::Url::parse(&self.url).map_err(|e| field("url", &e))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(field("url", &"must be an http:// or https:// URL"));
        }
        check_scope(&self.scope).map_err(|e| field("scope", &e))?;
        if self.timeout_secs == 0 {
            return Err(field("timeout_secs", &"must be greater than 0"));
        }
        if let Some(bad) = self
            .success_status
            .iter()
            .find(|s| !(100..=599).contains(*s))
        {
            return Err(field(
                "success_status",
                &format!("{bad} is not an HTTP status"),
            ));
        }
        if let Some(name) = &self.external_id_field {
            if name.trim().is_empty() {
                return Err(field("external_id_field", &"must name a body field"));
            }
            if !matches!(self.body, Some(serde_json::Value::Object(_))) {
                return Err(field(
                    "external_id_field",
                    &"needs `body` to be a JSON object to put the key in",
                ));
            }
        }
        Ok(Job {
            name: self.name.clone(),
            schedule,
            method,
            url,
            body: self.body.clone(),
            scope: self.scope.clone(),
            timeout: Duration::from_secs(self.timeout_secs),
            success_status: self.success_status.clone(),
            overlap: self.overlap,
            retry: self.retry,
            external_id_field: self.external_id_field.clone(),
        })
    }
}

/// Client credentials take exactly one resource's `/.default` (AADSTS1002012 otherwise): refuse
/// anything else at start instead of failing at the first acquisition.
fn check_scope(scope: &str) -> Result<(), String> {
    if scope.contains(char::is_whitespace) {
        return Err(format!("`{scope}` must be one scope (no spaces)"));
    }
    match scope.strip_suffix("/.default") {
        Some(resource) if !resource.is_empty() => Ok(()),
        _ => Err(format!(
            "`{scope}` must be a resource's `/.default` scope, e.g. `api://tasks-api/.default`"
        )),
    }
}

/// The credential resolved from the `identity` section.
#[derive(Debug, Clone)]
pub enum CredentialSpec {
    Secret(Secret),
    Certificate {
        certificate: PathBuf,
        key: PathBuf,
        algorithm: AssertionAlgorithm,
    },
    WorkloadIdentity {
        token_file: PathBuf,
    },
    ManagedIdentity,
}

impl CredentialSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Secret(_) => "secret",
            Self::Certificate { .. } => "certificate",
            Self::WorkloadIdentity { .. } => "workload_identity",
            Self::ManagedIdentity => "managed_identity",
        }
    }
}

/// Who acquires tokens, and where.
#[derive(Debug, Clone)]
pub struct Identity {
    /// For a system-assigned managed identity: `managed`.
    pub tenant_id: String,
    /// For a system-assigned managed identity: `system`.
    pub client_id: String,
    pub authority_host: String,
    pub credential: CredentialSpec,
}

pub const PUBLIC_CLOUD: &str = "https://login.microsoftonline.com";

impl IdentityConfig {
    pub fn resolve(&self) -> Result<Identity, ConfigError> {
        let kind = match self.credential {
            Some(kind) => kind,
            None if self.client_secret.is_some() => CredentialKind::Secret,
            None if self.client_certificate_path.is_some() => CredentialKind::Certificate,
            None if self.federated_token_file.is_some() => CredentialKind::WorkloadIdentity,
            None => {
                return Err(ConfigError::key(
                    "identity.credential",
                    "cannot be inferred: set identity.client_secret (AZURE_CLIENT_SECRET), \
                     identity.client_certificate_path (AZURE_CLIENT_CERTIFICATE_PATH), \
                     identity.federated_token_file (AZURE_FEDERATED_TOKEN_FILE), \
                     or identity.credential = \"managed_identity\"",
                ));
            }
        };
        let authority_host = self
            .authority_host
            .clone()
            .unwrap_or_else(|| PUBLIC_CLOUD.to_owned());
        let parsed = url::Url::parse(&authority_host)
            .map_err(|e| ConfigError::key("identity.authority_host", e))?;
        if parsed.scheme() != "https" {
            return Err(ConfigError::key(
                "identity.authority_host",
                "must be an https:// URL (azure_identity refuses others)",
            ));
        }
        let authority_host = authority_host.trim_end_matches('/').to_owned();
        let required = |value: &Option<String>, key: &str, var: &str| {
            value
                .clone()
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| ConfigError::key(key, format!("is required (or set {var})")))
        };
        if kind == CredentialKind::ManagedIdentity {
            return Ok(Identity {
                tenant_id: self.tenant_id.clone().unwrap_or_else(|| "managed".into()),
                client_id: self.client_id.clone().unwrap_or_else(|| "system".into()),
                authority_host,
                credential: CredentialSpec::ManagedIdentity,
            });
        }
        let tenant_id = required(&self.tenant_id, "identity.tenant_id", "AZURE_TENANT_ID")?;
        let client_id = required(&self.client_id, "identity.client_id", "AZURE_CLIENT_ID")?;
        let credential = match kind {
            CredentialKind::Secret => match &self.client_secret {
                Some(secret) if !secret.is_empty() => CredentialSpec::Secret(secret.clone()),
                _ => {
                    return Err(ConfigError::key(
                        "identity.client_secret",
                        "is required for credential \"secret\" (or set AZURE_CLIENT_SECRET)",
                    ));
                }
            },
            CredentialKind::Certificate => {
                let certificate = self.client_certificate_path.clone().ok_or_else(|| {
                    ConfigError::key(
                        "identity.client_certificate_path",
                        "is required for credential \"certificate\" (or set AZURE_CLIENT_CERTIFICATE_PATH)",
                    )
                })?;
                CredentialSpec::Certificate {
                    key: self
                        .client_certificate_key_path
                        .clone()
                        .unwrap_or_else(|| certificate.clone()),
                    certificate,
                    algorithm: self.assertion_algorithm,
                }
            }
            CredentialKind::WorkloadIdentity => CredentialSpec::WorkloadIdentity {
                token_file: self.federated_token_file.clone().ok_or_else(|| {
                    ConfigError::key(
                        "identity.federated_token_file",
                        "is required for credential \"workload_identity\" (or set AZURE_FEDERATED_TOKEN_FILE)",
                    )
                })?,
            },
            CredentialKind::ManagedIdentity => CredentialSpec::ManagedIdentity,
        };
        Ok(Identity {
            tenant_id,
            client_id,
            authority_host,
            credential,
        })
    }
}

impl Settings {
    /// From the real environment and an optional file.
    pub fn load(file: Option<PathBuf>) -> Result<Self, ConfigError> {
        shared::config::load(&Self::sources(file))
    }

    pub fn sources(file: Option<PathBuf>) -> shared::config::Sources<'static> {
        shared::config::Sources {
            env_prefix: ENV_PREFIX,
            file,
            aliases: shared::config::AZURE_SDK_ALIASES,
        }
    }

    /// Checks the identity and the jobs and returns them, so that no invalid job ever starts.
    /// The token manager's section is checked where the token manager is built
    /// ([`crate::startup::Core::build`]), which every command goes through.
    pub fn validate(&self) -> Result<(Identity, Vec<Job>), ConfigError> {
        let identity = self.identity.resolve()?;
        let mut names = HashSet::new();
        let mut jobs = Vec::with_capacity(self.jobs.len());
        for (index, job) in self.jobs.iter().enumerate() {
            if job.name.trim().is_empty() {
                return Err(ConfigError::key(
                    &format!("jobs[{index}].name"),
                    "must not be empty",
                ));
            }
            if !names.insert(job.name.as_str()) {
                return Err(ConfigError(format!(
                    "job `{}`: `name` is used by another job",
                    job.name
                )));
            }
            jobs.push(job.validate()?);
        }
        Ok((identity, jobs))
    }

    /// Every scope the daemon must hold a token for: the jobs' and the extra ones.
    pub fn scopes(jobs: &[Job], extra: &[String]) -> Vec<String> {
        let mut scopes: Vec<String> = jobs.iter().map(|j| j.scope.clone()).collect();
        scopes.extend(extra.iter().cloned());
        scopes.sort();
        scopes.dedup();
        scopes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        shared::config::load_with_env(&Settings::sources(None), env)
    }

    /// The identity from a tenant, a client and the variables in `pairs`.
    fn resolve(pairs: &[(&str, &str)]) -> Result<Identity, ConfigError> {
        let mut env = vec![("AZURE_TENANT_ID", "t"), ("AZURE_CLIENT_ID", "c")];
        env.extend_from_slice(pairs);
        load(&env).expect("loads").identity.resolve()
    }

    fn job(name: &str) -> JobSettings {
        JobSettings {
            name: name.into(),
            schedule: Some("*/10 * * * * *".into()),
            interval_secs: None,
            jitter_secs: 0,
            method: "get".into(),
            url: "https://api.example/tasks".into(),
            body: None,
            scope: "api://tasks-api/.default".into(),
            timeout_secs: 30,
            success_status: vec![],
            overlap: OverlapPolicy::Skip,
            retry: true,
            external_id_field: None,
        }
    }

    #[test]
    fn azure_variables_infer_a_secret_credential() {
        let identity = resolve(&[("AZURE_CLIENT_SECRET", "s3cret")]).expect("valid");
        assert!(
            matches!(identity.credential, CredentialSpec::Secret(ref s) if s.expose() == "s3cret")
        );
        assert_eq!(identity.authority_host, PUBLIC_CLOUD);
        assert!(!format!("{identity:?}").contains("s3cret"));
    }

    #[test]
    fn a_federated_token_file_infers_workload_identity() {
        let identity = resolve(&[("AZURE_FEDERATED_TOKEN_FILE", "/var/run/token")]).expect("valid");
        assert_eq!(identity.credential.kind(), "workload_identity");
    }

    #[test]
    fn an_explicit_kind_without_its_input_names_the_key() {
        let err = resolve(&[("CALLER__IDENTITY__CREDENTIAL", "certificate")])
            .expect_err("no certificate");
        assert!(
            err.to_string().contains("identity.client_certificate_path"),
            "{err}"
        );
    }

    #[test]
    fn nothing_set_says_what_to_set() {
        let err = load(&[])
            .expect("loads")
            .identity
            .resolve()
            .expect_err("nothing");
        assert!(err.to_string().contains("identity.credential"), "{err}");
        assert!(!err.to_string().contains('\n'));
    }

    #[test]
    fn plain_http_authority_is_refused() {
        let err = resolve(&[
            ("AZURE_CLIENT_SECRET", "s"),
            ("AZURE_AUTHORITY_HOST", "http://localhost:8443"),
        ])
        .expect_err("http");
        assert!(err.to_string().contains("identity.authority_host"), "{err}");
    }

    #[test]
    fn invalid_jobs_are_refused_naming_the_job_and_the_field() {
        let cases: Vec<(JobSettings, &str)> = vec![
            (
                JobSettings {
                    schedule: Some("every minute".into()),
                    ..job("a")
                },
                "`schedule`",
            ),
            (
                JobSettings {
                    schedule: None,
                    ..job("b")
                },
                "`schedule` is missing",
            ),
            (
                JobSettings {
                    interval_secs: Some(5),
                    ..job("c")
                },
                "both set",
            ),
            (
                JobSettings {
                    schedule: None,
                    interval_secs: Some(0),
                    ..job("d")
                },
                "`interval_secs`",
            ),
            (
                JobSettings {
                    method: "FETCH ME".into(),
                    ..job("e")
                },
                "`method`",
            ),
            (
                JobSettings {
                    url: "ftp://x/y".into(),
                    ..job("f")
                },
                "`url`",
            ),
            (
                JobSettings {
                    scope: "api://tasks-api/Tasks.Read".into(),
                    ..job("g")
                },
                "`scope`",
            ),
            (
                JobSettings {
                    timeout_secs: 0,
                    ..job("h")
                },
                "`timeout_secs`",
            ),
            (
                JobSettings {
                    success_status: vec![200, 999],
                    ..job("i")
                },
                "`success_status`",
            ),
            (
                JobSettings {
                    jitter_secs: 3,
                    ..job("j")
                },
                "`jitter_secs`",
            ),
            (
                JobSettings {
                    method: "POST".into(),
                    external_id_field: Some("external_id".into()),
                    ..job("k")
                },
                "`external_id_field` needs `body`",
            ),
            (
                JobSettings {
                    body: Some(serde_json::json!({"title": "x"})),
                    external_id_field: Some(" ".into()),
                    ..job("l")
                },
                "`external_id_field`",
            ),
        ];
        for (settings, field) in cases {
            let err = settings.validate().expect_err("invalid");
            let text = err.to_string();
            assert!(text.contains(&format!("job `{}`", settings.name)), "{text}");
            assert!(text.contains(field), "{text} should name {field}");
        }
    }

    fn sidecar(
        customise: impl FnOnce(&mut SidecarSettings),
    ) -> Result<Option<Sidecar>, ConfigError> {
        let mut settings = SidecarSettings {
            upstreams: vec![SidecarUpstreamSettings {
                name: "tasks".into(),
                url: "https://tasks.internal/api/".into(),
                scope: "api://tasks-api/.default".into(),
                timeout_secs: 30,
            }],
            ..Default::default()
        };
        customise(&mut settings);
        settings.validate()
    }

    #[test]
    fn no_upstream_and_no_resource_means_no_sidecar() {
        assert!(
            SidecarSettings::default()
                .validate()
                .expect("valid")
                .is_none()
        );
        let sidecar = sidecar(|_| {}).expect("valid").expect("configured");
        assert_eq!(sidecar.upstreams[0].base(), "https://tasks.internal/api");
        assert_eq!(sidecar.scopes(), ["api://tasks-api/.default"]);
    }

    #[test]
    fn the_sidecar_and_its_identity_endpoint_come_from_variables() {
        let settings = load(&[
            (
                "CALLER__SIDECAR__RESOURCES",
                "api://tasks-api, https://graph.microsoft.com/",
            ),
            (
                "CALLER__SIDECAR__IDENTITY_HEADER",
                "0123456789abcdef-long-enough",
            ),
            ("CALLER__SIDECAR__PORT", "0"),
        ])
        .expect("loads");
        let sidecar = settings
            .sidecar
            .validate()
            .expect("valid")
            .expect("configured");
        assert_eq!(
            sidecar.scopes(),
            [
                "api://tasks-api/.default",
                "https://graph.microsoft.com/.default"
            ]
        );
        assert!(
            !format!("{sidecar:?}").contains("0123456789abcdef"),
            "header redacted"
        );
    }

    #[test]
    fn a_bad_sidecar_is_refused_naming_the_key() {
        type Change = Box<dyn FnOnce(&mut SidecarSettings)>;
        let cases: [(&str, Change); 9] = [
            ("sidecar.host", Box::new(|s| s.host = "0.0.0.0".into())),
            ("sidecar.workers", Box::new(|s| s.workers = 0)),
            (
                "sidecar.upstreams[0].name",
                Box::new(|s| s.upstreams[0].name = "a/b".into()),
            ),
            (
                "sidecar.upstreams[0].name",
                Box::new(|s| s.upstreams[0].name = "msi".into()),
            ),
            (
                "sidecar.upstreams[0].url",
                Box::new(|s| s.upstreams[0].url = "ftp://x".into()),
            ),
            (
                "sidecar.upstreams[0].scope",
                Box::new(|s| s.upstreams[0].scope = "api://tasks-api/Tasks.Read".into()),
            ),
            (
                "sidecar.identity_header",
                Box::new(|s| s.resources = vec!["api://tasks-api".into()]),
            ),
            (
                "sidecar.identity_header",
                Box::new(|s| {
                    s.resources = vec!["api://tasks-api".into()];
                    s.identity_header = Some("short".into());
                }),
            ),
            (
                "sidecar.resources",
                Box::new(|s| {
                    s.resources = vec!["api://tasks-api/.default".into()];
                    s.identity_header = Some("0123456789abcdef".into());
                }),
            ),
        ];
        for (key, customise) in cases {
            let error = sidecar(customise).expect_err(key).to_string();
            assert!(error.contains(key), "{key}: {error}");
        }
        let duplicate = sidecar(|s| s.upstreams.push(s.upstreams[0].clone()));
        assert!(
            duplicate
                .expect_err("dup")
                .to_string()
                .contains("another upstream")
        );
        let exposed = sidecar(|s| {
            s.host = "0.0.0.0".into();
            s.allow_non_loopback = true;
        });
        assert!(exposed.expect("allowed").expect("configured").exposed);
    }

    #[test]
    fn duplicate_job_names_are_refused() {
        let settings = Settings {
            identity: IdentityConfig {
                credential: Some(CredentialKind::ManagedIdentity),
                ..Default::default()
            },
            jobs: vec![job("same"), job("same")],
            ..Default::default()
        };
        let err = settings.validate().expect_err("duplicate");
        assert!(err.to_string().contains("job `same`: `name`"), "{err}");
    }

    #[test]
    fn the_demo_configuration_is_valid() {
        let demo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("demo/caller.toml");
        let settings: Settings =
            shared::config::load_with_env(&Settings::sources(Some(demo)), HashMap::new())
                .expect("loads");
        let (identity, jobs) = settings.validate().expect("valid");
        assert_eq!(identity.credential.kind(), "secret");
        let names: Vec<_> = jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["list-tasks", "whoami"]);
        let sidecar = settings
            .sidecar
            .validate()
            .expect("valid")
            .expect("configured");
        assert_eq!(sidecar.port, 9091);
        assert_eq!(
            sidecar.scopes(),
            ["api://tasks-api/.default", "api://tasks-api/.default"]
        );
    }

    #[test]
    fn jobs_from_toml_get_their_defaults() {
        let dir = std::env::temp_dir().join(format!("caller-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("caller.toml");
        std::fs::write(
            &path,
            r#"
            [identity]
            credential = "managed_identity"
            [[jobs]]
            name = "import"
            interval_secs = 60
            jitter_secs = 5
            method = "post"
            url = "https://api.example/tasks"
            scope = "api://tasks-api/.default"
            body = { title = "nightly", done = false }
            success_status = [201]
            "#,
        )
        .expect("write");
        let settings: Settings =
            shared::config::load_with_env(&Settings::sources(Some(path)), HashMap::new())
                .expect("loads");
        let (_, jobs) = settings.validate().expect("valid");
        std::fs::remove_dir_all(dir).ok();
        let job = &jobs[0];
        assert_eq!(job.method, reqwest::Method::POST);
        assert_eq!(job.timeout, Duration::from_secs(30));
        assert_eq!(job.overlap, OverlapPolicy::Skip);
        assert_eq!(
            job.body,
            Some(serde_json::json!({"title": "nightly", "done": false}))
        );
        assert!(job.is_success(201));
        assert!(!job.is_success(200));
    }
}
