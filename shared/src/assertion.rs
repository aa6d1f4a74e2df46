//! Client assertions for certificate credentials (RFC 7523 §2.2, Entra's "certificate
//! credentials"): a short-lived JWT signed with the certificate's private key, naming the
//! certificate by thumbprint. PS256 with `x5t#S256` is what current MSAL sends; RS256 with the
//! SHA-1 `x5t` is what older clients send, and Entra still accepts both.

use crate::secret::Secret;
use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use std::fmt;

/// base64url SHA-1 of a certificate's DER: the `x5t` an RS256 assertion (and a JWK) names it by.
pub fn thumbprint_sha1(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, der))
}

/// base64url SHA-256 of a certificate's DER: the `x5t#S256` a PS256 assertion names it by.
pub fn thumbprint_sha256(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, der))
}

/// MSAL signs assertions for 10 minutes; long enough for any retry, short enough that a leaked
/// assertion is soon worthless.
pub const ASSERTION_LIFETIME_SECS: i64 = 600;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum AssertionAlgorithm {
    /// RSASSA-PSS with SHA-256, certificate named by `x5t#S256`. Default.
    #[default]
    #[serde(rename = "PS256")]
    Ps256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, certificate named by the SHA-1 `x5t`.
    #[serde(rename = "RS256")]
    Rs256,
}

#[derive(Debug, thiserror::Error)]
pub enum AssertionError {
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("private key: {0}")]
    PrivateKey(String),
    #[error("signing the assertion: {0}")]
    Signing(String),
}

/// A certificate credential ready to sign assertions. `Debug` shows the thumbprint only.
#[derive(Clone)]
pub struct CertificateAssertion {
    client_id: String,
    key: EncodingKey,
    x5t: String,
    x5t_s256: String,
    algorithm: AssertionAlgorithm,
}

impl fmt::Debug for CertificateAssertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAssertion")
            .field("client_id", &self.client_id)
            .field("x5t#S256", &self.x5t_s256)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    aud: &'a str,
    iss: &'a str,
    sub: &'a str,
    jti: String,
    nbf: i64,
    iat: i64,
    exp: i64,
}

impl CertificateAssertion {
    /// `certificate_pem`: the certificate registered on the app; `private_key_pem`: its RSA key
    /// (PKCS#8 or PKCS#1 PEM).
    pub fn from_pem(
        client_id: impl Into<String>,
        certificate_pem: &[u8],
        private_key_pem: &[u8],
        algorithm: AssertionAlgorithm,
    ) -> Result<Self, AssertionError> {
        let der = CertificateDer::from_pem_slice(certificate_pem)
            .map_err(|e| AssertionError::Certificate(format!("not a PEM certificate: {e}")))?;
        let key = EncodingKey::from_rsa_pem(private_key_pem).map_err(|e| {
            AssertionError::PrivateKey(format!("not an RSA private key in PEM: {e}"))
        })?;
        Ok(Self {
            client_id: client_id.into(),
            key,
            x5t: thumbprint_sha1(&der),
            x5t_s256: thumbprint_sha256(&der),
            algorithm,
        })
    }

    /// Signs an assertion for `audience` (the token endpoint URL), valid from `now` for
    /// [`ASSERTION_LIFETIME_SECS`], with a fresh `jti`.
    pub fn sign(&self, audience: &str, now: i64) -> Result<Secret, AssertionError> {
        self.sign_claims(&Claims {
            aud: audience,
            iss: &self.client_id,
            sub: &self.client_id,
            jti: uuid::Uuid::new_v4().to_string(),
            nbf: now,
            iat: now,
            exp: now + ASSERTION_LIFETIME_SECS,
        })
    }

    /// Signs `claims` under the header [`sign`](Self::sign) uses (algorithm, certificate
    /// thumbprint), for assertions whose claims `sign` would not write, such as a verifier's
    /// tests of malformed ones.
    pub fn sign_claims(&self, claims: &impl Serialize) -> Result<Secret, AssertionError> {
        let mut header = match self.algorithm {
            AssertionAlgorithm::Ps256 => {
                let mut h = Header::new(Algorithm::PS256);
                h.x5t_s256 = Some(self.x5t_s256.clone());
                h
            }
            AssertionAlgorithm::Rs256 => {
                let mut h = Header::new(Algorithm::RS256);
                h.x5t = Some(self.x5t.clone());
                h
            }
        };
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, claims, &self.key)
            .map(Secret::new)
            .map_err(|e| AssertionError::Signing(e.to_string()))
    }
}
