//! The `entra` section (where the tenants' keys come from) and [`Protection`], which builds the
//! key store and validator from the `entra`, `auth`, `keys` and `http` sections: the same four
//! sections, with the same meaning, in every service that validates tokens.

use crate::keys::{KeySettings, KeyStore};
use crate::validator::{Validator, ValidatorSettings};
use serde::Deserialize;
use shared::clock::SharedClock;
use shared::config::ConfigError;
use shared::http::HttpClientSettings;
use std::sync::Arc;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EntraSettings {
    /// Default `https://login.microsoftonline.com`; a sovereign cloud's host, or the emulator's
    /// URL.
    pub authority_host: String,
    /// Tenant IDs (GUIDs) whose tokens are accepted. Required. Their discovery documents give the
    /// v1 and v2 issuers and the JWKS; `common`/`organizations` are refused because an issuer
    /// must name one tenant.
    #[serde(deserialize_with = "shared::config::list")]
    pub tenants: Vec<String>,
    /// Fetch discovery documents and keys over plain HTTP when the authority host (and every URL
    /// its documents name) is a loopback address: for test servers that cannot speak TLS.
    /// Default false. Keys fetched in clear text can be replaced by anyone who can touch the
    /// traffic, so this is refused for any host that is not loopback, whatever its value.
    pub allow_insecure_http_on_loopback: bool,
}

impl Default for EntraSettings {
    fn default() -> Self {
        Self {
            authority_host: "https://login.microsoftonline.com".into(),
            tenants: Vec::new(),
            allow_insecure_http_on_loopback: false,
        }
    }
}

impl EntraSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.url_policy()
            .check(&self.authority_host)
            .map_err(|reason| {
                let hint = if self.authority_host.starts_with("http://")
                    && !self.allow_insecure_http_on_loopback
                {
                    " (a loopback test server: set entra.allow_insecure_http_on_loopback)"
                } else {
                    ""
                };
                ConfigError::key("entra.authority_host", format!("{reason}{hint}"))
            })?;
        if self.tenants.is_empty() {
            return Err(ConfigError::key(
                "entra.tenants",
                "must list at least one tenant ID (GUID)",
            ));
        }
        for tenant in &self.tenants {
            if uuid::Uuid::parse_str(tenant).is_err() {
                return Err(ConfigError::key(
                    "entra.tenants",
                    format!("must hold tenant IDs (GUIDs), not `{tenant}`"),
                ));
            }
        }
        Ok(())
    }

    /// Which URLs the key store may fetch from.
    pub fn url_policy(&self) -> shared::jwks::UrlPolicy {
        shared::jwks::UrlPolicy {
            allow_http_on_loopback: self.allow_insecure_http_on_loopback,
        }
    }
}

/// The four sections together, for a service whose settings are only these (the `protect`
/// example); services with more embed the sections in their own settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceAuthSettings {
    pub entra: EntraSettings,
    pub auth: ValidatorSettings,
    pub keys: KeySettings,
    pub http: HttpClientSettings,
}

impl ServiceAuthSettings {
    /// Each section's rules, the first problem as one line naming its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.entra.validate()?;
        self.auth.validate()?;
        self.keys.validate()
    }
}

/// A running validator: its key store loaded (or retrying in the background) and refreshed until
/// this is dropped.
pub struct Protection {
    pub validator: Arc<Validator>,
    refresher: tokio::task::JoinHandle<()>,
}

impl Protection {
    /// Builds the key store and validator and makes the first attempt to load the keys. A failed
    /// first load is not an error: readiness stays false and the refresher keeps trying, so a
    /// service started before its identity provider becomes ready on its own.
    pub async fn start(
        entra: &EntraSettings,
        auth: &ValidatorSettings,
        keys: &KeySettings,
        http: &HttpClientSettings,
        clock: SharedClock,
    ) -> Result<Self, ConfigError> {
        // The key store's client follows a redirect only to a URL its policy allows: every hop
        // HTTPS (or loopback HTTP when allowed), not only the last.
        let client = shared::http::build_client_with(http, entra.url_policy().redirects())
            .map_err(|e| ConfigError(format!("`http` settings: {e}")))?;
        let store = Arc::new(KeyStore::new(
            client,
            &entra.authority_host,
            entra.url_policy(),
            entra.tenants.clone(),
            keys.clone(),
            clock.clone(),
        ));
        if let Err(e) = store.refresh().await {
            tracing::warn!(error = %e, "signing keys not loaded yet; not ready, retrying in the background");
        }
        let refresher = store.spawn_refresher();
        Ok(Self {
            validator: Arc::new(Validator::new(store, auth.clone(), clock)),
            refresher,
        })
    }
}

impl Protection {
    /// [`Protection::start`] from [`ServiceAuthSettings`], checked first.
    pub async fn from_settings(
        settings: &ServiceAuthSettings,
        clock: SharedClock,
    ) -> Result<Self, ConfigError> {
        settings.validate()?;
        Self::start(
            &settings.entra,
            &settings.auth,
            &settings.keys,
            &settings.http,
            clock,
        )
        .await
    }
}

impl Drop for Protection {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}
