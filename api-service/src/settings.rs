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
    /// On SIGTERM/SIGINT, first answer `/readyz` 503 (`draining`) and go on serving for this
    /// long, then stop as above: a load balancer that polls readiness takes the replica out of
    /// rotation before its listener closes, so a rolling restart loses no request. Default 0 (stop
    /// at once), right where something else does this: Kubernetes' preStop sleep
    /// (deploy/k8s). Set it above the balancer's time to mark a server down (HAProxy: `inter` ×
    /// `fall`). A second signal stops at once. Also the lead before the signing keys' stale bound
    /// (`keys.max_stale_secs`) at which `/readyz` answers 503 `keys_expiring`, for the same reason:
    /// the balancer moves away before the keys fail closed.
    pub drain_secs: u64,
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
        if self.drain_secs > 300 {
            return Err(ConfigError::key(
                "server.drain_secs",
                "must be at most 300: a stop that waits longer is a hang",
            ));
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
            drain_secs: 0,
            max_body_bytes: 64 * 1024,
            handle_signals: true,
        }
    }
}

#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// The SQLite file when `url` is unset. Default `.data/api/tasks.db`; its directory is
    /// created if missing.
    pub path: PathBuf,
    /// Where tasks live, when set (it wins over `path`): a file path or `sqlite:PATH` for SQLite,
    /// or `postgres://user:password@host:port/dbname` for PostgreSQL, which replicas share.
    /// Plain TCP only: `sslmode` may be `disable` or `prefer` (which then connects without TLS).
    pub url: Option<String>,
    /// PostgreSQL: most connections in this process's pool. Default 16: a statement here takes
    /// well under a millisecond, so 16 keep a few workers' worth of requests busy, and six
    /// replicas stay inside PostgreSQL's default `max_connections` of 100.
    pub max_connections: usize,
    /// PostgreSQL: how long connecting, or waiting for a free pooled connection, may take before a
    /// request is answered 503. Default 5 s: a caller learns of an outage within its own usual
    /// timeouts, and a burst that only queues for the pool is not turned into errors.
    pub timeout_secs: u64,
}

/// Never prints the password: settings may be logged whole with `{:?}`.
impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("path", &self.path)
            .field("url", &self.url.as_deref().map(mask_url))
            .field("max_connections", &self.max_connections)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            path: PathBuf::from(".data/api/tasks.db"),
            url: None,
            max_connections: 16,
            timeout_secs: 5,
        }
    }
}

/// Which store `database` names.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite(PathBuf),
    Postgres(Box<tokio_postgres::Config>),
}

impl DatabaseSettings {
    /// The backend `url` (or `path`) names, or what is wrong with it, naming the key. The URL is
    /// quoted only masked.
    pub fn backend(&self) -> Result<Backend, ConfigError> {
        let Some(url) = self.url.as_deref().map(str::trim).filter(|u| !u.is_empty()) else {
            return Ok(Backend::Sqlite(self.path.clone()));
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let config: tokio_postgres::Config = url.parse().map_err(|e| {
                ConfigError::key(
                    "database.url",
                    format!("is not a PostgreSQL URL ({}): {e}", mask_url(url)),
                )
            })?;
            if config.get_hosts().is_empty() {
                return Err(ConfigError::key(
                    "database.url",
                    format!("names no host ({})", mask_url(url)),
                ));
            }
            return match config.get_ssl_mode() {
                tokio_postgres::config::SslMode::Disable
                | tokio_postgres::config::SslMode::Prefer => {
                    Ok(Backend::Postgres(Box::new(config)))
                }
                _ => Err(ConfigError::key(
                    "database.url",
                    "asks for TLS (sslmode=require), which this build does not support yet for \
                     PostgreSQL: use sslmode=disable or prefer, on a network you trust",
                )),
            };
        }
        if let Some(path) = url.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(ConfigError::key("database.url", "`sqlite:` names no file"));
            }
            return Ok(Backend::Sqlite(PathBuf::from(path)));
        }
        if url.contains("://") {
            return Err(ConfigError::key(
                "database.url",
                format!(
                    "has an unknown scheme ({}): use a file path, sqlite:PATH or postgres://…",
                    mask_url(url)
                ),
            ));
        }
        Ok(Backend::Sqlite(PathBuf::from(url)))
    }

    /// The database as logs and errors may show it: the URL with its password masked, or the
    /// SQLite file.
    pub fn shown(&self) -> String {
        match self.url.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
            Some(url) => mask_url(url),
            None => self.path.display().to_string(),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_connections == 0 {
            return Err(ConfigError::key(
                "database.max_connections",
                "must be at least 1",
            ));
        }
        if self.timeout_secs == 0 {
            return Err(ConfigError::key(
                "database.timeout_secs",
                "must be positive",
            ));
        }
        self.backend().map(drop)
    }
}

/// `url` with the password replaced by `***`, in the user part (`user:secret@host`) and in a
/// `password=` query parameter; anything else is kept, so the log still says where it connects.
pub fn mask_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let mut out = format!("{scheme}://");
    match before_query.rfind('@') {
        Some(at) => {
            let (userinfo, host) = before_query.split_at(at);
            match userinfo.split_once(':') {
                Some((user, _)) => out.push_str(&format!("{user}:***")),
                None => out.push_str(userinfo),
            }
            out.push_str(host);
        }
        None => out.push_str(before_query),
    }
    if let Some(query) = query {
        let masked: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&masked.join("&"));
    }
    out
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
        self.database.validate()?;
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
    fn the_database_url_picks_the_backend_and_never_shows_the_password() {
        let backend = |url: &str| {
            let mut vars = minimal();
            vars.push(("API__DATABASE__URL", url));
            ApiSettings::load_with_env(None, env(&vars)).map(|s| s.database.backend())
        };
        assert!(matches!(
            backend("postgres://api:s3cret@db.internal:5432/tasks").expect("loads"),
            Ok(Backend::Postgres(_))
        ));
        assert!(matches!(
            backend("postgresql://api@db/tasks?sslmode=prefer").expect("loads"),
            Ok(Backend::Postgres(_))
        ));
        match backend("sqlite:/var/lib/api/tasks.db").expect("loads") {
            Ok(Backend::Sqlite(path)) => assert_eq!(path, PathBuf::from("/var/lib/api/tasks.db")),
            other => panic!("{other:?}"),
        }
        match backend("data/tasks.db").expect("loads") {
            Ok(Backend::Sqlite(path)) => assert_eq!(path, PathBuf::from("data/tasks.db")),
            other => panic!("{other:?}"),
        }
        let defaults = ApiSettings::load_with_env(None, env(&minimal())).expect("loads");
        assert!(matches!(
            defaults.database.backend(),
            Ok(Backend::Sqlite(_))
        ));

        for (url, says) in [
            ("postgres://api:s3cret@db/tasks?sslmode=require", "TLS"),
            ("mysql://api:s3cret@db/tasks", "unknown scheme"),
            ("postgres://api:s3cret@db/tasks?bogus=1", "PostgreSQL URL"),
        ] {
            let err = backend(url).expect_err("refused").to_string();
            assert!(err.contains("database.url") && err.contains(says), "{err}");
            assert!(!err.contains("s3cret"), "the password leaked: {err}");
        }

        let mut vars = minimal();
        vars.push(("API__DATABASE__URL", "postgres://api:s3cret@db/tasks"));
        let settings = ApiSettings::load_with_env(None, env(&vars)).expect("loads");
        assert!(!format!("{settings:?}").contains("s3cret"));
        assert_eq!(settings.database.shown(), "postgres://api:***@db/tasks");
        assert_eq!(
            mask_url("postgres://db:5432/tasks?user=api&password=s3cret&sslmode=disable"),
            "postgres://db:5432/tasks?user=api&password=***&sslmode=disable"
        );
        assert_eq!(
            mask_url("postgres://api:p@ss@db/tasks"),
            "postgres://api:***@db/tasks"
        );
    }

    #[test]
    fn the_demo_file_is_valid() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("demo/api.toml");
        let settings = ApiSettings::load_with_env(Some(path), HashMap::new()).expect("loads");
        assert_eq!(settings.entra.tenants, [TENANT]);
    }
}
