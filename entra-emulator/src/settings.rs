//! The emulator's settings: built-in defaults, then an optional TOML file (`--config`), then
//! `EMULATOR__SECTION__KEY` environment variables.

use serde::Deserialize;
use shared::config::ConfigError;
use shared::telemetry::LogSettings;
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmulatorSettings {
    pub server: ServerSettings,
    /// Keys, the development CA and the server certificate live here. Default `.data/emulator`.
    pub data_dir: PathBuf,
    /// The directory file (tenants, apps, assignments, users). Default: the demo directory.
    pub directory: PathBuf,
    pub tokens: TokenSettings,
    pub admin: AdminSettings,
    /// The managed-identity endpoint (`GET /msi/token`, App Service's protocol 2019-08-01).
    pub managed_identity: ManagedIdentitySettings,
    /// Workload identity federation: how the token endpoint reaches the issuers that federated
    /// credentials name.
    pub federation: FederationSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FederationSettings {
    /// PEM bundle trusted, beside the platform's roots, when fetching an issuer's discovery and
    /// keys. Default: the emulator's own CA (`server.ca_cert_out`), so that its own service-account
    /// issuer (`{public_url}/cluster`) is trusted. A bundle replacing it should hold that CA too.
    pub extra_ca_file: Option<PathBuf>,
}

/// Off unless `identity_header` is set: the endpoint then stands in for the one App Service,
/// Functions and Container Apps give their apps (`IDENTITY_ENDPOINT` = `{url}/msi/token`,
/// `IDENTITY_HEADER` = this secret), for the managed identities of one tenant.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ManagedIdentitySettings {
    /// What apps send as `X-IDENTITY-HEADER`; at least 16 characters.
    pub identity_header: Option<shared::Secret>,
    /// The tenant whose `managed_identities` it serves, by ID or domain. Default: the first.
    pub tenant: Option<String>,
    /// The identity a request without `client_id`/`object_id`/`mi_res_id` gets (the host's
    /// system-assigned one), by name. Default: none, and such a request is refused.
    pub system_assigned: Option<String>,
    /// Also answer the Instance Metadata Service's endpoint, `/metadata/identity/oauth2/token`
    /// (`Metadata: true`, no secret: anything that reaches the listener gets tokens). Default off.
    pub imds: bool,
}

impl ManagedIdentitySettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        match &self.identity_header {
            Some(header) if header.expose().len() < 16 => Err(ConfigError::key(
                "managed_identity.identity_header",
                "must be at least 16 characters: it is the endpoint's only guard",
            )),
            None if !self.imds && (self.tenant.is_some() || self.system_assigned.is_some()) => {
                Err(ConfigError::key(
                    "managed_identity.identity_header",
                    "or managed_identity.imds is required for a managed-identity endpoint to run",
                ))
            }
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Default 127.0.0.1: an identity provider for development should not face the network
    /// unless asked (compose sets 0.0.0.0).
    pub host: IpAddr,
    /// HTTPS port. Default 8443; 0 picks a free port.
    pub https_port: u16,
    /// Optional plain-HTTP listener, for tests and tools that cannot trust a CA. Default off.
    pub http_port: Option<u16>,
    /// The URL clients reach the emulator by; it is the issuer's host and the base of every URL in
    /// discovery. Default `https://localhost:{https_port}`.
    pub public_url: Option<url::Url>,
    /// Names the server certificate is issued for (`EMULATOR__SERVER__TLS_NAMES=emulator,localhost`).
    #[serde(deserialize_with = "shared::config::list")]
    pub tls_names: Vec<String>,
    /// Where the CA certificate PEM is written for clients. Default `{data_dir}/ca.pem`.
    pub ca_cert_out: Option<PathBuf>,
    /// Largest accepted token-request body. Default 64 KiB: a client assertion with an `x5c`
    /// chain is under 8 KiB; anything much larger is abuse.
    pub max_body_bytes: usize,
    /// Worker threads. Default: one per core.
    pub workers: Option<usize>,
    /// Stop on SIGTERM/SIGINT by itself. Default true; false when embedded in a process that
    /// handles signals and stops the server through its handle (the mesh launcher), so that
    /// shutdown happens in that process's order.
    pub handle_signals: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenSettings {
    /// Access-token lifetime is drawn uniformly from [min, max]. Defaults 3600 and 5400: Entra
    /// gives app tokens a random 60–90 minutes so that a fleet does not refresh at once.
    pub lifetime_min_secs: i64,
    pub lifetime_max_secs: i64,
    /// Authorization codes. Default 600 s, Entra's documented upper bound of ~10 minutes.
    pub auth_code_lifetime_secs: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// `/admin/*` (key rotation, fault injection). Default off.
    pub enabled: bool,
    /// When set, admin calls from outside loopback must send `Authorization: Bearer {secret}`;
    /// when unset, admin calls are accepted from loopback only.
    pub secret: Option<shared::Secret>,
}

impl Default for EmulatorSettings {
    fn default() -> Self {
        Self {
            server: ServerSettings::default(),
            data_dir: PathBuf::from(".data/emulator"),
            directory: PathBuf::from("entra-emulator/demo/directory.toml"),
            tokens: TokenSettings::default(),
            admin: AdminSettings::default(),
            managed_identity: ManagedIdentitySettings::default(),
            federation: FederationSettings::default(),
            log: LogSettings::default(),
        }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            host: IpAddr::from([127, 0, 0, 1]),
            https_port: 8443,
            http_port: None,
            public_url: None,
            tls_names: vec![
                "localhost".into(),
                "127.0.0.1".into(),
                "::1".into(),
                "entra-emulator".into(),
            ],
            ca_cert_out: None,
            max_body_bytes: 64 * 1024,
            workers: None,
            handle_signals: true,
        }
    }
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            lifetime_min_secs: 3600,
            lifetime_max_secs: 5400,
            auth_code_lifetime_secs: 600,
        }
    }
}

impl TokenSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.lifetime_min_secs < 60 {
            return Err(ConfigError::key(
                "tokens.lifetime_min_secs",
                "must be at least 60",
            ));
        }
        if self.lifetime_max_secs < self.lifetime_min_secs {
            return Err(ConfigError::key(
                "tokens.lifetime_max_secs",
                "must not be less than tokens.lifetime_min_secs",
            ));
        }
        if self.lifetime_max_secs > 86_400 {
            return Err(ConfigError::key(
                "tokens.lifetime_max_secs",
                "must be at most 86400 (24 h)",
            ));
        }
        if !(10..=3600).contains(&self.auth_code_lifetime_secs) {
            return Err(ConfigError::key(
                "tokens.auth_code_lifetime_secs",
                "must be between 10 and 3600",
            ));
        }
        Ok(())
    }
}

impl AdminSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(secret) = &self.secret
            && secret.expose().len() < 16
        {
            return Err(ConfigError::key(
                "admin.secret",
                "must be at least 16 characters",
            ));
        }
        Ok(())
    }
}

impl ServerSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.tls_names.is_empty() {
            return Err(ConfigError::key(
                "server.tls_names",
                "must name at least one host",
            ));
        }
        if self.max_body_bytes < 1024 {
            return Err(ConfigError::key(
                "server.max_body_bytes",
                "must be at least 1024",
            ));
        }
        if self.workers == Some(0) {
            return Err(ConfigError::key("server.workers", "must be at least 1"));
        }
        if let Some(url) = &self.public_url
            && let Some(host) = url.host_str()
            && !self.is_tls_name(host)
        {
            return Err(ConfigError::key(
                "server.public_url",
                format!(
                    "host '{host}' is not in server.tls_names, so clients would refuse the certificate"
                ),
            ));
        }
        if let Some(url) = &self.public_url
            && (url.scheme() != "https" || url.host_str().is_none())
        {
            return Err(ConfigError::key(
                "server.public_url",
                "must be an https:// URL with a host",
            ));
        }
        Ok(())
    }

    /// Whether the server certificate names `host` (an IPv6 literal with or without brackets).
    pub fn is_tls_name(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.tls_names.iter().any(|n| n.eq_ignore_ascii_case(host))
    }
}

impl EmulatorSettings {
    pub fn load(file: Option<PathBuf>) -> Result<Self, ConfigError> {
        let settings: Self = shared::config::load(&shared::config::Sources {
            env_prefix: "EMULATOR",
            file,
            aliases: &[],
        })?;
        settings.validate()?;
        Ok(settings)
    }

    /// What serde cannot say, each section by its own `validate`. Run once, by
    /// [`EmulatorSettings::load`]; settings built in code (tests, the mesh) are the builder's to
    /// get right.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.tokens.validate()?;
        self.server.validate()?;
        self.admin.validate()?;
        self.managed_identity.validate()
    }

    /// The configured public URL, or `https://localhost:{https_port}` with the port actually bound.
    pub fn public_url(&self, https_port: u16) -> String {
        self.server
            .public_url
            .as_ref()
            .map(|u| u.as_str().trim_end_matches('/').to_owned())
            .unwrap_or_else(|| format!("https://localhost:{https_port}"))
    }

    pub fn ca_cert_out(&self) -> PathBuf {
        self.server
            .ca_cert_out
            .clone()
            .unwrap_or_else(|| self.data_dir.join("ca.pem"))
    }
}
