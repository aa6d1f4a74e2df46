//! The gateway's settings: built-in defaults, then a TOML file, then `GATEWAY__SECTION__KEY`
//! variables. `entra`, `auth`, `keys` and `http` mean exactly what they mean for the tasks API
//! (the same types); `upstream` is where accepted requests go; `routes` is the policy table.
//! Checked once at load, each problem reported as one line naming the key.

use crate::policy::{Rule, RuleSettings};
use entra_auth::{EntraSettings, KeySettings, ValidatorSettings};
use serde::Deserialize;
use shared::config::{ConfigError, Sources};
use shared::http::HttpClientSettings;
use shared::telemetry::LogSettings;
use std::path::PathBuf;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewaySettings {
    pub server: ServerSettings,
    /// Without it the gateway answers forward-auth only.
    pub upstream: Option<UpstreamSettings>,
    pub entra: EntraSettings,
    pub auth: ValidatorSettings,
    pub keys: KeySettings,
    /// The client that fetches discovery documents and JWKS; its extra CA is also trusted for an
    /// HTTPS upstream.
    pub http: HttpClientSettings,
    pub log: LogSettings,
    /// Method + path pattern → access, first match wins; a request no rule matches is refused
    /// (`route_has_no_policy`).
    pub routes: Vec<RuleSettings>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Default 127.0.0.1 (containers set `0.0.0.0`).
    pub host: String,
    /// Default 8090; 0 picks a free port (tests).
    pub port: u16,
    /// Worker threads. Default: one per core.
    pub workers: Option<usize>,
    /// In-flight requests get this long to finish on SIGTERM/SIGINT. Default 30 s.
    pub shutdown_timeout_secs: u64,
    /// Largest request body passed to the upstream. Default 10 MiB; bodies are streamed, never
    /// held whole, so this bounds what a caller may send, not the gateway's memory.
    pub max_body_bytes: u64,
    /// Stop on SIGTERM/SIGINT by itself. Default true; false when embedded in a process that
    /// stops the server through its handle (the mesh launcher).
    pub handle_signals: bool,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8090,
            workers: None,
            shutdown_timeout_secs: 30,
            max_body_bytes: 10 * 1024 * 1024,
            handle_signals: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamSettings {
    /// `http://host:port` or `https://…`, optionally with a base path that every forwarded path
    /// is appended to. Required in this section.
    pub url: String,
    /// TCP (+ TLS) connect timeout. A refused connection is a 502 at once; one still not
    /// established past this is a 504, as nginx's `proxy_connect_timeout`. Default 2 s.
    pub connect_timeout_ms: u64,
    /// Longest wait for the upstream's response headers, and for each later read of its body:
    /// past it the answer is 504. Default 30 s.
    pub timeout_secs: u64,
    /// Pass the caller's `Authorization` header on to the upstream. Default false: the upstream
    /// gets the caller's identity in the `X-Entra-*` headers, and a token it never sees cannot
    /// leak from its logs or be replayed by it against other APIs that accept the same audience.
    /// Set it for an upstream that checks the token again itself.
    pub forward_authorization: bool,
    /// Idle keep-alive connections kept by each server worker (each has its own pool); an idle
    /// one is closed after 4 s rather than reused. Default 64.
    pub max_idle_connections: usize,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            connect_timeout_ms: 2000,
            timeout_secs: 30,
            forward_authorization: false,
            max_idle_connections: 64,
        }
    }
}

impl UpstreamSettings {
    pub fn validate(&self) -> Result<url::Url, ConfigError> {
        let url = url::Url::parse(&self.url)
            .map_err(|e| ConfigError::key("upstream.url", format!("is not a URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(ConfigError::key(
                "upstream.url",
                "must be an http:// or https:// URL with a host",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(ConfigError::key(
                "upstream.url",
                "must not carry a query or fragment",
            ));
        }
        if self.connect_timeout_ms == 0 {
            return Err(ConfigError::key(
                "upstream.connect_timeout_ms",
                "must be positive",
            ));
        }
        if self.timeout_secs == 0 {
            return Err(ConfigError::key(
                "upstream.timeout_secs",
                "must be positive",
            ));
        }
        Ok(url)
    }
}

impl GatewaySettings {
    /// Loads and checks the settings: `file` (if given), then `GATEWAY__…` variables.
    pub fn load(file: Option<PathBuf>) -> Result<Self, ConfigError> {
        Self::load_with_env(file, std::env::vars().collect())
    }

    /// As [`GatewaySettings::load`], with an explicit environment (tests).
    pub fn load_with_env(
        file: Option<PathBuf>,
        env: std::collections::HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let settings: Self = shared::config::load_with_env(
            &Sources {
                env_prefix: "GATEWAY",
                file,
                aliases: &[],
            },
            env,
        )?;
        settings.check()?;
        Ok(settings)
    }

    /// What serde cannot say, each section by its own rules. Also run by `Gateway::build`, so
    /// settings built in code are held to the same rules.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.entra.validate()?;
        self.auth.validate()?;
        self.keys.validate()?;
        if self.server.max_body_bytes == 0 {
            return Err(ConfigError::key(
                "server.max_body_bytes",
                "must be positive",
            ));
        }
        if self.server.workers == Some(0) {
            return Err(ConfigError::key("server.workers", "must be at least 1"));
        }
        if let Some(upstream) = &self.upstream {
            upstream.validate()?;
        }
        self.rules().map(|_| ())
    }

    /// The policy table, each rule checked.
    pub fn rules(&self) -> Result<Vec<Rule>, ConfigError> {
        if self.routes.is_empty() {
            return Err(ConfigError::key(
                "routes",
                "must declare at least one route (method, path and roles or any_allowed_app); \
                 every request no route matches is refused",
            ));
        }
        self.routes
            .iter()
            .enumerate()
            .map(|(i, rule)| rule.compile(&format!("routes[{i}]")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(toml: &str) -> Result<GatewaySettings, ConfigError> {
        let path = std::env::temp_dir().join(format!(
            "gateway-settings-{}-{}.toml",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::write(&path, toml).expect("write");
        let result = GatewaySettings::load_with_env(Some(path.clone()), HashMap::new());
        std::fs::remove_file(path).ok();
        result
    }

    const BASE: &str = r#"
[entra]
tenants = ["4f1c2d3e-0000-4000-8000-000000000001"]
[auth]
audiences = ["api://reports"]
allowed_clients = ["a1000000-0000-4000-8000-000000000001"]
"#;

    #[test]
    fn a_valid_file_loads_with_its_routes() {
        let settings = load(&format!(
            "{BASE}\n[upstream]\nurl = \"http://127.0.0.1:9000\"\n\
             [[routes]]\nmethod = \"GET\"\npath = \"/reports/{{id}}\"\nroles = [\"Reports.Read.All\"]\n"
        ))
        .expect("valid");
        assert_eq!(settings.rules().expect("rules").len(), 1);
        assert!(!settings.upstream.expect("upstream").forward_authorization);
    }

    #[test]
    fn each_mistake_is_one_line_naming_its_key() {
        for (extra, key) in [
            ("", "`routes`"),
            (
                "[[routes]]\nmethod = \"GET\"\npath = \"/r\"\n",
                "`routes[0]`",
            ),
            (
                "[[routes]]\nmethod = \"GET\"\npath = \"/r\"\nroles = []\n",
                "`routes[0].roles`",
            ),
            (
                "[[routes]]\nmethod = \"GET\"\npath = \"r\"\nany_allowed_app = true\n",
                "`routes[0].path`",
            ),
            (
                "[[routes]]\nmethod = \"FETCH ME\"\npath = \"/r\"\nany_allowed_app = true\n",
                "`routes[0].method`",
            ),
            (
                "[upstream]\nurl = \"ftp://x\"\n[[routes]]\nmethod = \"GET\"\npath = \"/r\"\nany_allowed_app = true\n",
                "`upstream.url`",
            ),
        ] {
            let err = load(&format!("{BASE}\n{extra}")).expect_err(extra);
            let text = err.to_string();
            assert!(text.contains(key), "{extra}: {text}");
            assert!(!text.contains('\n'), "one line: {text}");
        }
    }
}
