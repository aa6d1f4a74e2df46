//! The token-signing keys: RSA-2048 key pairs, each with a self-signed certificate for the JWKS
//! `x5c` member, persisted in the data directory so tokens stay valid across restarts.
//!
//! Entra always publishes more than one key and rolls them with no fixed schedule (and at once in
//! an emergency), so the first start creates two: one signing, one published in reserve. `rotate`
//! publishes a fresh key and signs with it at once; the previous keys stay published until
//! `retire`d, so tokens already issued keep validating — the sequence a validator must survive.

use anyhow::Context;
use aws_lc_rs::rsa::{KeyPair, PublicKeyComponents};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::EncodingKey;
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use shared::assertion::thumbprint_sha1;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Signs new tokens; exactly one key is active.
    Active,
    /// Published in the JWKS but not signing.
    Published,
}

/// What the data directory stores for one key. The private key is PKCS#8 PEM.
#[derive(Clone, Serialize, Deserialize)]
struct StoredKey {
    kid: String,
    state: KeyState,
    created_at: i64,
    private_key_pem: String,
    certificate_der_b64: String,
}

#[derive(Serialize, Deserialize)]
struct StoredKeys {
    keys: Vec<StoredKey>,
}

/// A key ready to sign and to publish.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub state: KeyState,
    pub created_at: i64,
    pub encoding_key: EncodingKey,
    /// The JWKS entry, minus `issuer`, which depends on the public URL.
    pub n: String,
    pub e: String,
    pub x5c: String,
    stored: StoredKey,
}

/// A consistent view of the keys. Readers take an `Arc` snapshot under the read lock and release
/// the lock at once, so signing and JWKS rendering never hold it; rotation swaps the whole set.
pub struct KeySet {
    pub keys: Vec<Arc<SigningKey>>,
}

impl KeySet {
    pub fn active(&self) -> &Arc<SigningKey> {
        // Invariant kept by every constructor and by rotate/retire: exactly one key is active.
        self.keys
            .iter()
            .find(|k| k.state == KeyState::Active)
            .unwrap_or(&self.keys[0])
    }
}

pub struct KeyStore {
    path: PathBuf,
    current: RwLock<Arc<KeySet>>,
    /// Serialises rotate/retire so two admin calls cannot interleave their file writes.
    writer: tokio::sync::Mutex<()>,
}

#[derive(Debug, Serialize)]
pub struct KeySummary {
    pub kid: String,
    pub state: KeyState,
    pub created_at: i64,
}

impl KeyStore {
    /// Loads `keys.json` from the data directory, creating two keys on first start. Two processes
    /// starting together on a fresh directory (`serve` and `project-token`) agree on one set: the
    /// file is created only if absent, and the one that finds it already made loads it.
    pub fn open(data_dir: &Path, now: i64) -> anyhow::Result<Self> {
        let path = data_dir.join("keys.json");
        let keys = if path.exists() {
            load_keys(&path)?
        } else {
            let keys = vec![
                SigningKey::generate(KeyState::Active, now)?,
                SigningKey::generate(KeyState::Published, now)?,
            ];
            if crate::fsutil::create_private(&path, &keys_json(&keys)?)? {
                tracing::info!(path = %path.display(), "created signing keys");
                keys
            } else {
                load_keys(&path)?
            }
        };
        if keys.iter().filter(|k| k.state == KeyState::Active).count() != 1 {
            anyhow::bail!("{}: exactly one key must be active", path.display());
        }
        Ok(Self {
            path,
            current: RwLock::new(Arc::new(KeySet {
                keys: keys.into_iter().map(Arc::new).collect(),
            })),
            writer: tokio::sync::Mutex::new(()),
        })
    }

    pub fn snapshot(&self) -> Arc<KeySet> {
        // A poisoned lock only means a panic elsewhere mid-swap; the Arc inside is still whole.
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn summary(&self) -> Vec<KeySummary> {
        self.snapshot()
            .keys
            .iter()
            .map(|k| KeySummary {
                kid: k.kid.clone(),
                state: k.state,
                created_at: k.created_at,
            })
            .collect()
    }

    /// Publishes a new key and signs with it from now on; earlier keys stay published.
    pub async fn rotate(&self, now: i64) -> anyhow::Result<String> {
        let _guard = self.writer.lock().await;
        // RSA key generation takes tens of milliseconds: keep it off the async workers.
        let fresh =
            tokio::task::spawn_blocking(move || SigningKey::generate(KeyState::Active, now))
                .await
                .context("key generation task")??;
        let kid = fresh.kid.clone();
        let mut keys: Vec<SigningKey> = self.snapshot().keys.iter().map(|k| k.demoted()).collect();
        keys.insert(0, fresh);
        self.install(keys)?;
        Ok(kid)
    }

    /// Withdraws a key from the JWKS: tokens it signed stop validating. The active key cannot be
    /// retired (rotate first).
    pub async fn retire(&self, kid: &str) -> anyhow::Result<RetireOutcome> {
        let _guard = self.writer.lock().await;
        let snapshot = self.snapshot();
        let Some(key) = snapshot.keys.iter().find(|k| k.kid == kid) else {
            return Ok(RetireOutcome::Unknown);
        };
        if key.state == KeyState::Active {
            return Ok(RetireOutcome::Active);
        }
        let keys = snapshot
            .keys
            .iter()
            .filter(|k| k.kid != kid)
            .map(|k| SigningKey::clone(k))
            .collect();
        self.install(keys)?;
        Ok(RetireOutcome::Retired)
    }

    fn install(&self, keys: Vec<SigningKey>) -> anyhow::Result<()> {
        write_keys(&self.path, &keys)?;
        let set = Arc::new(KeySet {
            keys: keys.into_iter().map(Arc::new).collect(),
        });
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = set;
        Ok(())
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum RetireOutcome {
    Retired,
    Unknown,
    Active,
}

impl SigningKey {
    fn generate(state: KeyState, now: i64) -> anyhow::Result<Self> {
        // rcgen makes RSA keys of 2048 bits, the size of Entra's, and keeps them as PKCS#8.
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
            .map_err(|e| anyhow::anyhow!("RSA key generation failed: {e}"))?;
        let certificate = self_signed_certificate(&key)?;
        Self::from_stored(StoredKey {
            kid: thumbprint_sha1(&certificate),
            state,
            created_at: now,
            private_key_pem: key.serialize_pem(),
            certificate_der_b64: STANDARD.encode(&certificate),
        })
    }

    fn from_stored(stored: StoredKey) -> anyhow::Result<Self> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(stored.private_key_pem.as_bytes())
            .context("private key PEM")?;
        let pair = KeyPair::from_pkcs8(der.secret_pkcs8_der())
            .map_err(|e| anyhow::anyhow!("private key: {e}"))?;
        let public = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        let encoding_key = EncodingKey::from_rsa_pem(stored.private_key_pem.as_bytes())
            .context("private key for jsonwebtoken")?;
        Ok(Self {
            kid: stored.kid.clone(),
            state: stored.state,
            created_at: stored.created_at,
            encoding_key,
            n: URL_SAFE_NO_PAD.encode(&public.n),
            e: URL_SAFE_NO_PAD.encode(&public.e),
            x5c: stored.certificate_der_b64.clone(),
            stored,
        })
    }

    fn demoted(&self) -> Self {
        let mut key = self.clone();
        key.state = KeyState::Published;
        key.stored.state = KeyState::Published;
        key
    }
}

/// Entra's signing certificates are self-signed; the certificate only carries the key in `x5c`.
fn self_signed_certificate(key: &rcgen::KeyPair) -> anyhow::Result<Vec<u8>> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "accounts.accesscontrol.windows.net (emulated)",
    );
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(5 * 365);
    Ok(params.self_signed(key)?.der().to_vec())
}

fn keys_json(keys: &[SigningKey]) -> anyhow::Result<Vec<u8>> {
    let stored = StoredKeys {
        keys: keys.iter().map(|k| k.stored.clone()).collect(),
    };
    Ok(serde_json::to_vec_pretty(&stored)?)
}

fn write_keys(path: &Path, keys: &[SigningKey]) -> anyhow::Result<()> {
    crate::fsutil::write_private(path, &keys_json(keys)?)
}

fn load_keys(path: &Path) -> anyhow::Result<Vec<SigningKey>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let stored: StoredKeys = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: not a key file written by this emulator",
            path.display()
        )
    })?;
    stored
        .keys
        .into_iter()
        .map(SigningKey::from_stored)
        .collect::<anyhow::Result<Vec<_>>>()
        .with_context(|| format!("loading keys from {}", path.display()))
}
