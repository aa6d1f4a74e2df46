//! Logging with `tracing`: compact human-readable lines on a terminal, JSON lines when asked
//! (`log.format = "json"`), filtered by `RUST_LOG` when it is set. Logs go to stderr so that
//! commands which print a result (a token, a JSON document) keep stdout clean for pipes.

use serde::Deserialize;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// Used when `RUST_LOG` is unset, e.g. `info,entra_emulator=debug`.
    pub filter: Option<String>,
}

/// Installs the global subscriber. A second call is a no-op, so tests and binaries can both call it.
pub fn init(settings: &LogSettings, default_filter: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(settings.filter.as_deref().unwrap_or(default_filter)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match settings.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder
            .compact()
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}

/// For tests: silent unless `TEST_LOG` is set, then everything at the `RUST_LOG` level (default
/// `debug`) through the test writer, so output is captured per test.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_none() {
        return;
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("debug"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
