//! The `azure_identity` crate, unmodified, against the emulator over HTTPS: only the authority
//! host and the CA it trusts change.

use crate::helpers::*;
use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientMethodOptions, ClientOptions, Transport};
use azure_identity::{
    ClientAssertion, ClientAssertionCredential, ClientAssertionCredentialOptions,
    ClientSecretCredential, ClientSecretCredentialOptions,
};
use shared::assertion::{AssertionAlgorithm, CertificateAssertion};
use std::sync::Arc;

fn client_options(emu: &Emulator) -> ClientOptions {
    let http = shared::http::build_client(&shared::http::HttpClientSettings {
        extra_ca_file: Some(emu.ca.clone()),
        ..Default::default()
    })
    .expect("client");
    let mut cloud = CustomConfiguration::default();
    cloud.authority_host = emu.url.clone();
    ClientOptions {
        transport: Some(Transport::new(Arc::new(http))),
        cloud: Some(Arc::new(CloudConfiguration::from(cloud))),
        ..Default::default()
    }
}

fn secret_credential(emu: &Emulator, client_id: &str, secret: &str) -> Arc<ClientSecretCredential> {
    ClientSecretCredential::new(
        TENANT,
        client_id.to_owned(),
        secret.to_owned().into(),
        Some(ClientSecretCredentialOptions {
            client_options: client_options(emu),
        }),
    )
    .expect("credential")
}

#[tokio::test]
async fn client_secret_credential_gets_the_directorys_claims() {
    let emu = spawn_emulator().await;
    let credential = secret_credential(&emu, WRITER_ID, WRITER_SECRET);
    let token = credential
        .get_token(&[API_SCOPE], None)
        .await
        .expect("token from the emulator");
    let (_, claims) = decode_parts(token.token.secret());
    assert_eq!(claims["aud"], API_CLIENT_ID);
    assert_eq!(claims["azp"], WRITER_ID);
    assert_eq!(claims["azpacr"], "1");
    assert_eq!(claims["roles"], serde_json::json!(["Tasks.ReadWrite.All"]));
    assert_eq!(claims["iss"], format!("{}/{TENANT}/v2.0", emu.url));
    let remaining = token.expires_on.unix_timestamp() - emu.now();
    assert!((3500..=5400).contains(&remaining), "{remaining}");
}

#[tokio::test]
async fn client_secret_credential_reports_the_aadsts_code() {
    let emu = spawn_emulator().await;
    let credential = secret_credential(&emu, READER_ID, "definitely-not-the-secret");
    let err = credential
        .get_token(&[API_SCOPE], None)
        .await
        .expect_err("wrong secret");
    assert!(err.to_string().contains("AADSTS7000215"), "{err}");
}

/// The certificate credential as a caller supplies it: a fresh assertion per acquisition.
#[derive(Debug)]
struct Signer {
    cert: CertificateAssertion,
    audience: String,
}

#[async_trait::async_trait]
impl ClientAssertion for Signer {
    async fn secret(&self, _: Option<ClientMethodOptions<'_>>) -> azure_core::Result<String> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        self.cert
            .sign(&self.audience, now)
            .map(|s| s.expose().to_owned())
            .map_err(|e| {
                azure_core::Error::with_message(
                    azure_core::error::ErrorKind::Credential,
                    e.to_string(),
                )
            })
    }
}

async fn assertion_credential_works(algorithm: AssertionAlgorithm) {
    let emu = spawn_emulator().await;
    let credential = ClientAssertionCredential::new(
        TENANT.to_owned(),
        CERT_ID.to_owned(),
        Signer {
            cert: demo_cert(algorithm),
            audience: emu.assertion_audience(),
        },
        Some(ClientAssertionCredentialOptions {
            client_options: client_options(&emu),
        }),
    )
    .expect("credential");
    let token = credential
        .get_token(&[API_SCOPE], None)
        .await
        .expect("token from the emulator");
    let (_, claims) = decode_parts(token.token.secret());
    assert_eq!(claims["azp"], CERT_ID);
    assert_eq!(claims["azpacr"], "2", "certificate-authenticated");
    assert_eq!(claims["roles"], serde_json::json!(["Tasks.Read.All"]));
}

#[tokio::test]
async fn client_assertion_credential_with_ps256_and_x5t_s256() {
    assertion_credential_works(AssertionAlgorithm::Ps256).await;
}

#[tokio::test]
async fn client_assertion_credential_with_rs256_and_x5t() {
    assertion_credential_works(AssertionAlgorithm::Rs256).await;
}
