//! Layered configuration: the settings struct's own defaults, then an optional file, then the
//! process environment (`{PREFIX}__SECTION__KEY`), later layers winning. Where the Azure SDKs have
//! a standard variable (`AZURE_TENANT_ID`, …) a service can honour it as an alias for one of its
//! keys; the service's own prefixed variable still wins over the alias, as the more specific one.
//!
//! Errors come back as one line naming the key, so a bad deployment fails with a message an
//! operator can act on instead of a backtrace.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    /// An error about one key, e.g. `ConfigError::key("server.port", "must not be 0")`.
    pub fn key(key: &str, reason: impl std::fmt::Display) -> Self {
        Self(format!("`{key}` {reason}"))
    }
}

/// The Azure SDKs' standard variables, as aliases for the `identity` section of a service that
/// acquires tokens. Values stay strings (no type guessing), so a secret such as `0012…` is kept
/// exactly as written.
pub const AZURE_SDK_ALIASES: &[(&str, &str)] = &[
    ("AZURE_TENANT_ID", "identity.tenant_id"),
    ("AZURE_CLIENT_ID", "identity.client_id"),
    ("AZURE_CLIENT_SECRET", "identity.client_secret"),
    (
        "AZURE_CLIENT_CERTIFICATE_PATH",
        "identity.client_certificate_path",
    ),
    (
        "AZURE_FEDERATED_TOKEN_FILE",
        "identity.federated_token_file",
    ),
    ("AZURE_AUTHORITY_HOST", "identity.authority_host"),
];

/// A list of strings from a file's array, or from an environment variable holding them separated
/// by commas or spaces (`API__AUTH__AUDIENCES="guid,api://tasks-api"`): environment values arrive
/// as plain strings. Use as `#[serde(deserialize_with = "shared::config::list")]`.
pub fn list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        Many(Vec<String>),
        One(String),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::Many(items) => items,
        OneOrMany::One(joined) => joined
            .split([',', ' '])
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

/// Where one service reads its settings from.
#[derive(Debug, Clone)]
pub struct Sources<'a> {
    /// Prefix of the service's variables, e.g. `EMULATOR` for `EMULATOR__SERVER__PORT`.
    pub env_prefix: &'a str,
    /// A TOML file; an explicit path that does not exist is an error.
    pub file: Option<PathBuf>,
    /// `(variable, key)` pairs: the Azure SDK variables this service honours.
    pub aliases: &'a [(&'a str, &'a str)],
}

/// Loads settings from the real process environment.
pub fn load<T: DeserializeOwned>(sources: &Sources<'_>) -> Result<T, ConfigError> {
    load_with_env(sources, std::env::vars().collect())
}

/// Loads settings with an explicit environment, so tests never touch the process's.
pub fn load_with_env<T: DeserializeOwned>(
    sources: &Sources<'_>,
    env: HashMap<String, String>,
) -> Result<T, ConfigError> {
    let mut builder = config::Config::builder();
    if let Some(path) = &sources.file {
        check_readable(path)?;
        builder = builder.add_source(
            config::File::from(path.as_path())
                .format(config::FileFormat::Toml)
                .required(true),
        );
    }
    let prefixed = format!("{}__", sources.env_prefix);
    for (var, key) in sources.aliases {
        let shadowed = env.contains_key(&format!(
            "{prefixed}{}",
            key.replace('.', "__").to_uppercase()
        ));
        if let (false, Some(value)) = (shadowed, env.get(*var)) {
            builder = builder
                .set_override(*key, value.as_str())
                .map_err(|e| ConfigError::key(key, e))?;
        }
    }
    builder = builder.add_source(
        config::Environment::with_prefix(sources.env_prefix)
            .prefix_separator("__")
            .separator("__")
            .source(Some(env)),
    );
    let raw = builder.build().map_err(one_line)?;
    raw.try_deserialize().map_err(one_line)
}

fn check_readable(path: &Path) -> Result<(), ConfigError> {
    std::fs::metadata(path)
        .map(|_| ())
        .map_err(|e| ConfigError(format!("cannot read file {}: {e}", path.display())))
}

fn one_line(err: config::ConfigError) -> ConfigError {
    ConfigError(err.to_string().replace('\n', " "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Settings {
        #[serde(default)]
        server: Server,
        identity: Identity,
    }

    #[derive(Debug, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Server {
        port: u16,
        host: String,
    }

    impl Default for Server {
        fn default() -> Self {
            Self {
                port: 8080,
                host: "127.0.0.1".into(),
            }
        }
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Identity {
        tenant_id: String,
    }

    const ALIASES: &[(&str, &str)] = &[("AZURE_TENANT_ID", "identity.tenant_id")];

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sources(file: Option<PathBuf>) -> Sources<'static> {
        Sources {
            env_prefix: "APP",
            file,
            aliases: ALIASES,
        }
    }

    #[test]
    fn defaults_then_environment() {
        let settings: Settings = load_with_env(
            &sources(None),
            env(&[
                ("APP__SERVER__PORT", "9000"),
                ("APP__IDENTITY__TENANT_ID", "t1"),
            ]),
        )
        .expect("loads");
        assert_eq!(settings.server.port, 9000);
        assert_eq!(settings.server.host, "127.0.0.1");
        assert_eq!(settings.identity.tenant_id, "t1");
    }

    #[test]
    fn azure_alias_applies_but_the_prefixed_variable_wins() {
        let settings: Settings =
            load_with_env(&sources(None), env(&[("AZURE_TENANT_ID", "from-azure")]))
                .expect("loads");
        assert_eq!(settings.identity.tenant_id, "from-azure");

        let settings: Settings = load_with_env(
            &sources(None),
            env(&[
                ("AZURE_TENANT_ID", "from-azure"),
                ("APP__IDENTITY__TENANT_ID", "from-app"),
            ]),
        )
        .expect("loads");
        assert_eq!(settings.identity.tenant_id, "from-app");
    }

    #[test]
    fn file_is_overridden_by_environment() {
        let dir = std::env::temp_dir().join(format!("shared-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("settings.toml");
        std::fs::write(
            &path,
            "[server]\nport = 7000\nhost = \"0.0.0.0\"\n[identity]\ntenant_id = \"file\"\n",
        )
        .expect("write");
        let settings: Settings =
            load_with_env(&sources(Some(path)), env(&[("APP__SERVER__PORT", "7001")]))
                .expect("loads");
        assert_eq!(settings.server.port, 7001);
        assert_eq!(settings.server.host, "0.0.0.0");
        assert_eq!(settings.identity.tenant_id, "file");
        std::fs::remove_dir_all(dir).ok();
    }

    #[derive(Debug, Deserialize)]
    struct WithList {
        #[serde(default, deserialize_with = "list")]
        audiences: Vec<String>,
    }

    #[test]
    fn lists_come_from_file_arrays_or_separated_variables() {
        let from_env: WithList = load_with_env(
            &sources(None),
            env(&[("APP__AUDIENCES", "6e1f4a8b, api://tasks-api")]),
        )
        .expect("loads");
        assert_eq!(from_env.audiences, ["6e1f4a8b", "api://tasks-api"]);
        let dir = std::env::temp_dir().join(format!("shared-list-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("settings.toml");
        std::fs::write(&path, "audiences = [\"a\", \"b c\"]\n").expect("write");
        let from_file: WithList =
            load_with_env(&sources(Some(path)), HashMap::new()).expect("loads");
        assert_eq!(from_file.audiences, ["a", "b c"]);
        std::fs::remove_dir_all(dir).ok();
    }

    /// The keys the Azure SDK variables fill, as a service's `identity` section holds them.
    #[derive(Debug, Default, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct IdentitySettings {
        tenant_id: Option<String>,
        client_id: Option<String>,
        client_secret: Option<Secret>,
        client_certificate_path: Option<PathBuf>,
        federated_token_file: Option<PathBuf>,
        authority_host: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    struct WithIdentity {
        #[serde(default)]
        identity: IdentitySettings,
    }

    #[test]
    fn every_azure_sdk_variable_is_honoured() {
        let sources = Sources {
            env_prefix: "CALLER",
            file: None,
            aliases: AZURE_SDK_ALIASES,
        };
        let settings: WithIdentity = load_with_env(
            &sources,
            env(&[
                ("AZURE_TENANT_ID", "a1000000-0000-4000-8000-000000000001"),
                ("AZURE_CLIENT_ID", "a1000000-0000-4000-8000-000000000003"),
                ("AZURE_CLIENT_SECRET", "0012345678901234"),
                ("AZURE_CLIENT_CERTIFICATE_PATH", "/certs/job.pem"),
                (
                    "AZURE_FEDERATED_TOKEN_FILE",
                    "/var/run/secrets/azure/tokens/azure-identity-token",
                ),
                ("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.us"),
            ]),
        )
        .expect("loads");
        let id = settings.identity;
        assert_eq!(
            id.tenant_id.as_deref(),
            Some("a1000000-0000-4000-8000-000000000001")
        );
        assert_eq!(
            id.client_id.as_deref(),
            Some("a1000000-0000-4000-8000-000000000003")
        );
        assert_eq!(
            id.client_secret.as_ref().map(Secret::expose),
            Some("0012345678901234"),
            "a numeric-looking secret is kept as written"
        );
        assert_eq!(
            id.client_certificate_path,
            Some(PathBuf::from("/certs/job.pem"))
        );
        assert_eq!(
            id.federated_token_file,
            Some(PathBuf::from(
                "/var/run/secrets/azure/tokens/azure-identity-token"
            ))
        );
        assert_eq!(
            id.authority_host.as_deref(),
            Some("https://login.microsoftonline.us")
        );
        assert!(!format!("{:?}", Some(&id)).contains("0012345678901234"));
    }

    #[test]
    fn errors_are_one_line_and_name_the_key() {
        let err = load_with_env::<Settings>(&sources(None), env(&[])).expect_err("missing");
        let text = err.to_string();
        assert!(text.contains("identity"), "{text}");
        assert!(!text.contains('\n'));

        let err = load_with_env::<Settings>(
            &sources(None),
            env(&[
                ("APP__SERVER__PORT", "not-a-port"),
                ("APP__IDENTITY__TENANT_ID", "t"),
            ]),
        )
        .expect_err("bad port");
        assert!(err.to_string().contains("server.port"), "{err}");

        let err = load_with_env::<Settings>(
            &sources(Some(PathBuf::from("/nonexistent/settings.toml"))),
            env(&[]),
        )
        .expect_err("missing file");
        assert!(err.to_string().contains("/nonexistent/settings.toml"));
    }
}
