//! The development PKI: a CA created on first start and kept in the data directory, and a server
//! certificate issued by it for every name the emulator is reached by. Clients trust the CA (its
//! PEM is written where they can read it), never the leaf, so re-issuing the leaf when the names
//! change needs no client change. The `azure_identity` crate refuses plain-HTTP authorities, which
//! is why HTTPS is the default and not an option.

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

pub struct DevPki {
    pub server_config: Arc<rustls::ServerConfig>,
}

/// Loads or creates the CA and the server certificate under `dir`, and writes the CA PEM to
/// `ca_out` for clients.
pub fn load_or_create(dir: &Path, names: &[String], ca_out: &Path) -> anyhow::Result<DevPki> {
    let ca_cert_path = dir.join("ca.pem");
    let ca_key_path = dir.join("ca-key.pem");
    let (ca_pem, ca_key_pem) = if ca_cert_path.exists() && ca_key_path.exists() {
        (read(&ca_cert_path)?, read(&ca_key_path)?)
    } else {
        let (cert, key) = create_ca()?;
        crate::fsutil::write_private(&ca_key_path, key.as_bytes())?;
        crate::fsutil::write_public(&ca_cert_path, cert.as_bytes())?;
        tracing::info!(path = %ca_cert_path.display(), "created development CA");
        (cert, key)
    };
    let ca_key = KeyPair::from_pem(&ca_key_pem).context("CA private key")?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).context("CA certificate")?;

    let server_cert_path = dir.join("server.pem");
    let server_key_path = dir.join("server-key.pem");
    // The leaf is reused only if it was issued by this CA for these names and has 30 days left;
    // otherwise clients trusting the current CA would fail the handshake.
    let names_path = dir.join("server-names.txt");
    let wanted_names = format!(
        "{}\nissuer-sha256={}",
        names.join("\n"),
        shared::assertion::thumbprint_sha256(ca_pem.as_bytes())
    );
    let reusable = server_cert_path.exists()
        && server_key_path.exists()
        && std::fs::read_to_string(&names_path).ok().as_deref() == Some(wanted_names.as_str())
        && read(&server_cert_path)
            .ok()
            .is_some_and(|pem| valid_for_days(&pem, 30));
    let (server_pem, server_key_pem) = if reusable {
        (read(&server_cert_path)?, read(&server_key_path)?)
    } else {
        let (cert, key) = issue_server_certificate(&issuer, names)?;
        crate::fsutil::write_private(&server_key_path, key.as_bytes())?;
        crate::fsutil::write_public(&server_cert_path, cert.as_bytes())?;
        crate::fsutil::write_public(&names_path, wanted_names.as_bytes())?;
        tracing::info!(names = %names.join(","), "issued server certificate");
        (cert, key)
    };
    if ca_out != ca_cert_path {
        crate::fsutil::write_public(ca_out, ca_pem.as_bytes())?;
    }

    let chain = vec![
        CertificateDer::from_pem_slice(server_pem.as_bytes()).context("server certificate PEM")?,
        CertificateDer::from_pem_slice(ca_pem.as_bytes()).context("CA certificate PEM")?,
    ];
    let key = PrivateKeyDer::from_pem_slice(server_key_pem.as_bytes()).context("server key PEM")?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .context("server certificate and key do not match")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(DevPki {
        server_config: Arc::new(config),
    })
}

fn create_ca() -> anyhow::Result<(String, String)> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "Entra Emulator Development CA");
    params.distinguished_name.push(
        DnType::OrganizationName,
        "m2m-entra (local development only)",
    );
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = OffsetDateTime::now_utc() - Duration::days(1);
    params.not_after = OffsetDateTime::now_utc() + Duration::days(10 * 365);
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn issue_server_certificate(
    issuer: &Issuer<'_, KeyPair>,
    names: &[String],
) -> anyhow::Result<(String, String)> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().map(String::as_str).unwrap_or("localhost"),
    );
    for name in names {
        let san = match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(name.clone().try_into().with_context(|| {
                format!("server.tls_names: '{name}' is not a DNS name or IP address")
            })?),
        };
        params.subject_alt_names.push(san);
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = OffsetDateTime::now_utc() - Duration::days(1);
    // 397 days: the longest leaf lifetime public clients accept.
    params.not_after = OffsetDateTime::now_utc() + Duration::days(397);
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn valid_for_days(pem: &str, days: i64) -> bool {
    let Ok((_, parsed)) = x509_parser::pem::parse_x509_pem(pem.as_bytes()) else {
        return false;
    };
    let Ok(cert) = parsed.parse_x509() else {
        return false;
    };
    cert.validity().not_after.timestamp()
        > (OffsetDateTime::now_utc() + Duration::days(days)).unix_timestamp()
}

fn read(path: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}
