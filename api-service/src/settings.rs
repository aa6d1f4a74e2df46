//! The API's settings: built-in defaults, then a TOML file, then `API__SECTION__KEY` variables.
//! Where to find the tenant's keys (`entra`), whom to accept (`auth`), where tasks live
//! (`database`). Checked once at start, each problem reported as one line naming the key.

use entra_auth::{EntraSettings, KeySettings, ValidatorSettings};
use serde::Deserialize;
use shared::config::{ConfigError, Sources};
use shared::http::HttpClientSettings;
use shared::telemetry::LogSettings;
use std::path::PathBuf;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSettings {
    pub server: ServerSettings,
    pub entra: EntraSettings,
    pub auth: ValidatorSettings,
    pub keys: KeySettings,
    pub database: DatabaseSettings,
    /// The client that fetches discovery documents and JWKS: timeouts, and an extra CA (the
    /// emulator's development CA, or a corporate TLS-inspecting proxy's).
    pub http: HttpClientSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Default 127.0.0.1: listening on every interface is a deployment decision (containers set
    /// `0.0.0.0`).
    pub host: String,
    /// Default 8080; 0 picks a free port (tests).
    pub port: u16,
    /// Worker threads. Default: one per core.
    pub workers: Option<usize>,
    /// On SIGTERM/SIGINT, in-flight requests get this long to finish. Default 30 s, inside
    /// Kubernetes' default 30 s termination grace period together with the preStop delay.
    pub shutdown_timeout_secs: u64,
    /// Largest accepted JSON body. Default 64 KiB: a task is at most ~4.5 KiB of text.
    pub max_body_bytes: usize,
    /// Stop on SIGTERM/SIGINT by itself. Default true; false when embedded in a process that
    /// handles signals and stops the server through its handle (the mesh launcher), so that
    /// shutdown happens in that process's order.
    pub handle_signals: bool,
}

impl ServerSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes == 0 {
            return Err(ConfigError::key(
                "server.max_body_bytes",
                "must be positive",
            ));
        }
        if self.workers == Some(0) {
            return Err(ConfigError::key("server.workers", "must be at least 1"));
        }
        Ok(())
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            workers: None,
            shutdown_timeout_secs: 30,
            max_body_bytes: 64 * 1024,
            handle_signals: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// The SQLite file. Default `.data/api/tasks.db`; its directory is created if missing.
    pub path: PathBuf,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            path: PathBuf::from(".data/api/tasks.db"),
        }
    }
}

impl ApiSettings {
    /// Loads and checks the settings: `file` (if given), then `API__…` variables.
    pub fn load(file: Option<PathBuf>) -> Result<Self, ConfigError> {
        Self::load_with_env(file, std::env::vars().collect())
    }

    /// As [`ApiSettings::load`], with an explicit environment (tests).
    pub fn load_with_env(
        file: Option<PathBuf>,
        env: std::collections::HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let settings: Self = shared::config::load_with_env(
            &Sources {
                env_prefix: "API",
                file,
                aliases: &[],
            },
            env,
        )?;
        settings.check()?;
        Ok(settings)
    }

    /// What serde cannot say (required lists, GUID tenants, sane numbers), each section by its
    /// own `validate`. Run once, by [`ApiSettings::load`]; settings built in code (tests, the
    /// mesh) are the builder's to get right.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.entra.validate()?;
        self.auth.validate()?;
        self.keys.validate()?;
        self.server.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const TENANT: &str = entra_emulator::demo::TENANT;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn minimal() -> Vec<(&'static str, &'static str)> {
        vec![
            ("API__ENTRA__TENANTS", TENANT),
            (
                "API__AUTH__AUDIENCES",
                "a1000000-0000-4000-8000-000000000002,api://tasks-api",
            ),
            (
                "API__AUTH__ALLOWED_CLIENTS",
                "a1000000-0000-4000-8000-000000000003",
            ),
        ]
    }

    #[test]
    fn environment_alone_configures_the_api() {
        let settings = ApiSettings::load_with_env(None, env(&minimal())).expect("loads");
        assert_eq!(settings.entra.tenants, [TENANT]);
        assert_eq!(settings.auth.audiences.len(), 2);
        assert_eq!(settings.auth.clock_skew_secs, 60);
        assert_eq!(
            settings.entra.authority_host,
            "https://login.microsoftonline.com"
        );
    }

    #[test]
    fn each_missing_requirement_is_named() {
        for (drop, key) in [
            ("API__ENTRA__TENANTS", "entra.tenants"),
            ("API__AUTH__AUDIENCES", "auth.audiences"),
            ("API__AUTH__ALLOWED_CLIENTS", "auth.allowed_clients"),
        ] {
            let vars: Vec<_> = minimal().into_iter().filter(|(k, _)| *k != drop).collect();
            let err = ApiSettings::load_with_env(None, env(&vars)).expect_err("refused");
            assert!(err.to_string().contains(key), "{err}");
            assert!(!err.to_string().contains('\n'));
        }
    }

    #[test]
    fn multi_tenant_aliases_and_bad_numbers_are_refused() {
        let mut vars = minimal();
        vars[0] = ("API__ENTRA__TENANTS", "common");
        let err = ApiSettings::load_with_env(None, env(&vars)).expect_err("refused");
        assert!(err.to_string().contains("entra.tenants"), "{err}");

        let mut vars = minimal();
        vars.push(("API__SERVER__PORT", "eighty"));
        let err = ApiSettings::load_with_env(None, env(&vars)).expect_err("refused");
        assert!(err.to_string().contains("port"), "{err}");

        let mut vars = minimal();
        vars[1] = ("API__AUTH__AUDIENCES", "api://tasks-api,,");
        let settings = ApiSettings::load_with_env(None, env(&vars)).expect("empty items dropped");
        assert_eq!(settings.auth.audiences, ["api://tasks-api"]);
        let mut bad = settings.clone();
        bad.auth.audiences.push(" ".into());
        assert!(
            bad.check()
                .expect_err("refused")
                .to_string()
                .contains("auth.audiences")
        );
        let mut bad = settings.clone();
        bad.keys.unknown_kid_refetch_secs = 0;
        assert!(
            bad.check()
                .expect_err("refused")
                .to_string()
                .contains("keys.unknown_kid_refetch_secs")
        );

        let mut vars = minimal();
        vars.push(("API__AUTH__CLOCK_SKEW_SECS", "3600"));
        let err = ApiSettings::load_with_env(None, env(&vars)).expect_err("refused");
        assert!(err.to_string().contains("auth.clock_skew_secs"), "{err}");
    }

    #[test]
    fn the_authority_host_must_be_https_and_http_only_to_loopback_when_allowed() {
        let mut vars = minimal();
        vars.push(("API__ENTRA__AUTHORITY_HOST", "http://127.0.0.1:8443"));
        let err = ApiSettings::load_with_env(None, env(&vars)).expect_err("refused");
        let err = err.to_string();
        assert!(err.contains("entra.authority_host"), "{err}");
        assert!(err.contains("HTTPS"), "{err}");
        assert!(err.contains("allow_insecure_http_on_loopback"), "{err}");

        vars.push(("API__ENTRA__ALLOW_INSECURE_HTTP_ON_LOOPBACK", "true"));
        ApiSettings::load_with_env(None, env(&vars)).expect("loopback, allowed");

        let mut vars = minimal();
        vars.push((
            "API__ENTRA__AUTHORITY_HOST",
            "http://login.microsoftonline.com",
        ));
        vars.push(("API__ENTRA__ALLOW_INSECURE_HTTP_ON_LOOPBACK", "true"));
        let err = ApiSettings::load_with_env(None, env(&vars)).expect_err("not loopback");
        assert!(err.to_string().contains("loopback"), "{err}");
    }

    #[test]
    fn the_demo_file_is_valid() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("demo/api.toml");
        let settings = ApiSettings::load_with_env(Some(path), HashMap::new()).expect("loads");
        assert_eq!(settings.entra.tenants, [TENANT]);
    }
}
