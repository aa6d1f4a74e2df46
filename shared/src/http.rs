//! The outbound HTTP client: rustls, the platform's roots plus an extra CA bundle from
//! configuration (the emulator's development CA, or a corporate TLS-inspection CA), and timeouts
//! on every request, because a hung identity provider must not hang its callers.

use rustls_pki_types::{CertificateDer, pem::PemObject};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpClientSettings {
    /// PEM bundle trusted in addition to the platform's roots. Default: none.
    pub extra_ca_file: Option<PathBuf>,
    /// TCP + TLS connect timeout. Default 5 s: a healthy endpoint on any network answers well within it.
    pub connect_timeout_secs: u64,
    /// Whole-request timeout. Default 30 s, the order of the Azure SDKs' own per-try timeouts.
    pub request_timeout_secs: u64,
}

impl Default for HttpClientSettings {
    fn default() -> Self {
        Self {
            extra_ca_file: None,
            connect_timeout_secs: 5,
            request_timeout_secs: 30,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HttpClientError {
    #[error("`extra_ca_file` {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("building the HTTP client: {0}")]
    Build(#[from] reqwest::Error),
}

pub fn build_client(settings: &HttpClientSettings) -> Result<reqwest::Client, HttpClientError> {
    build_client_with(settings, reqwest::redirect::Policy::default())
}

/// As [`build_client`], following redirects only as `redirects` says (a key fetcher holds every
/// hop to its URL policy, not only the last: see `jwks::UrlPolicy::redirects`).
pub fn build_client_with(
    settings: &HttpClientSettings,
    redirects: reqwest::redirect::Policy,
) -> Result<reqwest::Client, HttpClientError> {
    let mut builder = reqwest::Client::builder()
        .redirect(redirects)
        .connect_timeout(Duration::from_secs(settings.connect_timeout_secs))
        .timeout(Duration::from_secs(settings.request_timeout_secs))
        // An idle connection is dropped before the shortest keep-alive servers commonly keep
        // (actix-web's and Node's: 5 s). Reused past it, a request races the server closing the
        // connection and fails (408, or "connection closed before message completed"): a job
        // every 5 s hit exactly that. These clients make a request every few seconds at most
        // (scheduled jobs, token and key fetches), so a new connection then costs nothing that
        // matters; the token sidecar's proxy keeps its own pool.
        .pool_idle_timeout(Duration::from_secs(4))
        .user_agent(concat!("m2m-entra/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &settings.extra_ca_file {
        builder = builder.tls_certs_merge(read_ca_bundle(path)?);
    }
    Ok(builder.build()?)
}

/// Reads every certificate of a PEM bundle; an empty or unreadable bundle is an error, not a
/// silently empty trust list.
pub fn read_ca_bundle(path: &Path) -> Result<Vec<reqwest::Certificate>, HttpClientError> {
    let ca_error = |reason: String| HttpClientError::CaFile {
        path: path.to_path_buf(),
        reason,
    };
    pem_certificates(path)
        .map_err(ca_error)?
        .iter()
        .map(|der| reqwest::Certificate::from_der(der).map_err(|e| ca_error(e.to_string())))
        .collect()
}

/// Every certificate of a PEM bundle, as DER (for rustls directly: see `upstream`); the reason
/// when the file cannot be read or holds none.
pub fn pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| e.to_string())?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("is not a PEM bundle ({e})"))?;
    if certs.is_empty() {
        return Err("contains no PEM certificate".into());
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_ca_file_is_named_in_the_error() {
        let settings = HttpClientSettings {
            extra_ca_file: Some(PathBuf::from("/nonexistent/ca.pem")),
            ..Default::default()
        };
        let err = build_client(&settings).expect_err("missing file");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn a_file_without_certificates_is_rejected() {
        let path = std::env::temp_dir().join(format!("empty-ca-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate\n").expect("write");
        let settings = HttpClientSettings {
            extra_ca_file: Some(path.clone()),
            ..Default::default()
        };
        let err = build_client(&settings).expect_err("empty bundle");
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        std::fs::remove_file(path).ok();
    }
}
