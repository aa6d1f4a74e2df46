//! Acquiring a token from the identity provider through `azure_identity`, and telling its failures
//! apart.
//!
//! # Why a fresh credential per acquisition
//! Every `azure_identity` 1.0 credential (`ClientSecretCredential`, `ClientAssertionCredential`,
//! the managed identity ones) keeps a private `TokenCache` that hands back the cached token until
//! 5 minutes before expiry, measured with the real wall clock (`cache.rs`, `should_refresh`). A
//! second `get_token` on the same credential at half-life therefore returns the *same* token
//! without any request, so early refresh is impossible through it. A credential is cheap to build
//! (a URL and an `Arc`'d pipeline), so we build one per acquisition: its cache is always empty and
//! every `get_token` is one real request. Our own cache (the token manager) is the only one.
//!
//! # Why retries are switched off in the credential's pipeline
//! The pipeline's default exponential retry policy would retry 429/5xx itself, sleeping inside a
//! `get_token` call we could not observe: no metric, no `Retry-After` bookkeeping of ours, and an
//! acquisition that silently takes minutes. `RetryOptions::none()` leaves every retry decision to
//! the token manager.
//!
//! # Why a probe policy
//! `azure_identity` turns an error answer into an `azure_core::Error` only if the body is Entra's
//! JSON; a plain-text 429 or 503 body (which Entra's front door does send) becomes a JSON parse
//! error with the status lost, and `Retry-After` is never kept. [`IdpProbe`], a per-try pipeline
//! policy, sees the raw response first: it counts every request and turns every non-2xx answer
//! into an [`IdpRejection`] carrying status, `Retry-After` and the parsed Entra error body, which
//! [`classify`] finds again in the error's source chain.
//!
//! # Workload identity
//! `WorkloadIdentityCredential` reads the federated token file when it is built and then at most
//! every 10 minutes. We use `ClientAssertionCredential` with [`FederatedTokenFile`], which reads
//! the file on every acquisition, so a rotated projected token is used at once.

use crate::metrics::Metrics;
use crate::settings::{CredentialSpec, Identity};
use anyhow::Context as _;
use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::http::headers::{Headers, RETRY_AFTER};
use azure_core::http::policies::{Policy, PolicyResult, get_retry_after};
use azure_core::http::{
    ClientMethodOptions, ClientOptions, Context, Request, RetryOptions, Transport,
};
use azure_identity::{
    ClientAssertion, ClientAssertionCredential, ClientAssertionCredentialOptions,
    ClientSecretCredential, ClientSecretCredentialOptions, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, UserAssignedId,
};
use shared::Secret;
use shared::assertion::CertificateAssertion;
use shared::entra_error::EntraErrorBody;
use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// A token as the identity provider issued it.
#[derive(Debug, Clone)]
pub struct IdpToken {
    pub token: Secret,
    /// `expires_in`, as measured when the answer arrived.
    pub lifetime: Duration,
}

pub type AcquireFuture<'a> =
    Pin<Box<dyn Future<Output = Result<IdpToken, AcquireError>> + Send + 'a>>;

/// Where tokens come from. [`AzureTokenSource`] in production; anything else in unit tests.
pub trait TokenSource: Send + Sync + fmt::Debug + 'static {
    fn tenant_id(&self) -> &str;
    fn client_id(&self) -> &str;
    /// One acquisition: one identity-provider request (or one failure), never a retry loop.
    fn acquire<'a>(&'a self, scope: &'a str) -> AcquireFuture<'a>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransientReason {
    /// 429.
    Throttled,
    /// 5xx or 408.
    ServerError,
    /// No answer within the acquisition timeout, or the HTTP client's own timeout.
    Timeout,
    /// Connection refused/reset, DNS, TLS.
    Connection,
    /// A 2xx that is not a usable token response.
    MalformedResponse,
    Other,
}

impl TransientReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Throttled => "throttled",
            Self::ServerError => "server_error",
            Self::Timeout => "timeout",
            Self::Connection => "connection",
            Self::MalformedResponse => "malformed_response",
            Self::Other => "other",
        }
    }
}

/// Why an acquisition failed. `Clone` because one failure is handed to every caller that was
/// waiting on the same acquisition.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AcquireError {
    /// Worth retrying soon: the identity provider is busy, down or unreachable.
    #[error("{} from the identity provider{}: {detail}", reason.as_str(), status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Transient {
        reason: TransientReason,
        status: Option<u16>,
        /// The identity provider's `Retry-After`.
        retry_after: Option<Duration>,
        detail: String,
    },
    /// Retrying will not help until someone changes configuration.
    #[error("{} refused by the identity provider{}: {summary} Fix: {}", aadsts.map(|c| format!("AADSTS{c}")).unwrap_or_else(|| error.clone()), status.map(|s| format!(" (HTTP {s}, {error})")).unwrap_or_default(), fix_for(*aadsts, error))]
    Permanent {
        status: Option<u16>,
        /// OAuth error, e.g. `invalid_client`.
        error: String,
        aadsts: Option<u32>,
        summary: String,
    },
}

impl AcquireError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Permanent { .. })
    }

    /// The `reason` metric label.
    pub fn reason(&self) -> Cow<'static, str> {
        match self {
            Self::Transient { reason, .. } => Cow::Borrowed(reason.as_str()),
            Self::Permanent {
                aadsts: Some(code), ..
            } => Cow::Owned(format!("aadsts_{code}")),
            Self::Permanent { error, .. } if error == "credential_input" => {
                Cow::Borrowed("credential_input")
            }
            Self::Permanent { .. } => Cow::Borrowed("permanent"),
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Transient { retry_after, .. } => *retry_after,
            Self::Permanent { .. } => None,
        }
    }

    pub(crate) fn timeout(after: Duration) -> Self {
        Self::Transient {
            reason: TransientReason::Timeout,
            status: None,
            retry_after: None,
            detail: format!("no token within {} s", after.as_secs_f64()),
        }
    }
}

/// What to do about a permanent error, for the log line an operator reads at 3 a.m.
pub fn fix_for(aadsts: Option<u32>, error: &str) -> &'static str {
    match aadsts {
        Some(7000215) => {
            "the client secret is wrong: use the secret's value (not its ID) or create a new secret, then update identity.client_secret."
        }
        Some(7000222) => {
            "the client secret has expired: create a new one and update identity.client_secret."
        }
        Some(7000218) => {
            "no credential was sent: configure identity.client_secret or a certificate."
        }
        Some(700016) => {
            "no application with this client ID in this tenant: check identity.client_id and identity.tenant_id."
        }
        Some(90002) => "the tenant does not exist: check identity.tenant_id.",
        Some(1002012) => {
            "client credentials need a `{resource}/.default` scope: fix the job's scope."
        }
        Some(70011) | Some(700022) => {
            "the scope is not valid: use exactly one `{resource}/.default` scope."
        }
        Some(500011) => {
            "the API named by the scope is not in this tenant: check the scope's application ID URI and that the API's service principal exists."
        }
        Some(501051) => {
            "the API requires an app-role assignment: grant this application a role on the API (admin consent)."
        }
        Some(700024) => {
            "the client assertion is outside its validity window: check this machine's clock (NTP); with workload identity, that the token file is being rewritten (the kubelet's projected volume, or the projector)."
        }
        Some(700027) => {
            "the assertion's signature does not verify: with a certificate, upload it to the app registration (or fix the key pair); with workload identity, check the issuer publishes the key that signs the token file."
        }
        Some(70021) => {
            "the application has no federated identity credential: add one for the token file's issuer, subject and audience (az ad app federated-credential create), or check identity.client_id names the app that has it."
        }
        Some(700211) => {
            "no federated credential names the token file's issuer: the credential's issuer must equal the token's `iss` exactly (the cluster's OIDC issuer URL, trailing slash included)."
        }
        Some(700213) | Some(7002138) => {
            "no federated credential names the token file's subject: for Kubernetes it is system:serviceaccount:<namespace>:<service account>, compared case-sensitively."
        }
        Some(700212) => {
            "the token file's audience is not the federated credential's: project the token for api://AzureADTokenExchange (the credential's default) or add that audience."
        }
        Some(7000272) => {
            "the issuer does not publish the key that signed the token file: check the cluster's OIDC issuer serves its current JWKS."
        }
        _ if error == "credential_input" => {
            "the credential's input (certificate, key or federated token file) cannot be used: check the file named above."
        }
        _ => {
            "see the AADSTS code in Microsoft's error reference; the request was refused, not lost."
        }
    }
}

/// A non-2xx answer from the identity provider, as seen by [`IdpProbe`].
#[derive(Debug)]
pub struct IdpRejection {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: Option<EntraErrorBody>,
}

impl fmt::Display for IdpRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "identity provider answered HTTP {}", self.status)?;
        if let Some(body) = &self.body {
            write!(f, ": {} {}", body.error, body.summary())?;
        }
        Ok(())
    }
}

impl StdError for IdpRejection {}

impl IdpRejection {
    fn classify(&self) -> AcquireError {
        let status = Some(self.status);
        let transient = |reason| AcquireError::Transient {
            reason,
            status,
            retry_after: self.retry_after,
            detail: self.to_string(),
        };
        match self.status {
            429 => transient(TransientReason::Throttled),
            408 | 500..=599 => transient(TransientReason::ServerError),
            // Entra could not fetch a federated issuer's discovery or keys: the issuer's outage,
            // not this caller's configuration, so it is retried like one.
            _ if self.body.as_ref().and_then(EntraErrorBody::aadsts) == Some(50166) => {
                transient(TransientReason::ServerError)
            }
            _ => match &self.body {
                Some(body) => AcquireError::Permanent {
                    status,
                    error: body.error.clone(),
                    aadsts: body.aadsts(),
                    summary: body.summary().to_owned(),
                },
                None => AcquireError::Permanent {
                    status,
                    error: "unexpected_status".into(),
                    aadsts: None,
                    summary: format!("HTTP {} without an Entra error body.", self.status),
                },
            },
        }
    }
}

/// A credential input (certificate, key, federated token file) that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CredentialInputError(pub String);

impl CredentialInputError {
    /// As `azure_identity` passes it on from a [`ClientAssertion`]: [`classify`] finds it again.
    fn into_azure(self, doing: &'static str) -> azure_core::Error {
        azure_core::Error::with_error(ErrorKind::Credential, self, doing)
    }
}

/// Finds what went wrong in an `azure_core::Error`'s source chain.
pub fn classify(err: &azure_core::Error) -> AcquireError {
    let chain = || error_chain(err);
    if let Some(rejection) = chain().find_map(|e| e.downcast_ref::<IdpRejection>()) {
        return rejection.classify();
    }
    if let Some(input) = chain().find_map(|e| e.downcast_ref::<CredentialInputError>()) {
        return AcquireError::Permanent {
            status: None,
            error: "credential_input".into(),
            aadsts: None,
            summary: input.0.clone(),
        };
    }
    let detail = one_line(&err.to_string());
    let transient = |reason| AcquireError::Transient {
        reason,
        status: None,
        retry_after: None,
        detail: detail.clone(),
    };
    if let Some(http) = chain().find_map(|e| e.downcast_ref::<reqwest::Error>()) {
        if http.is_timeout() {
            return transient(TransientReason::Timeout);
        }
        if http.is_connect() {
            return transient(TransientReason::Connection);
        }
    }
    if chain().any(|e| e.is::<serde_json::Error>()) {
        return transient(TransientReason::MalformedResponse);
    }
    let kinds = chain().filter_map(|e| {
        e.downcast_ref::<azure_core::Error>()
            .map(|e| e.kind().clone())
    });
    for kind in kinds {
        match kind {
            ErrorKind::Connection | ErrorKind::Io => {
                return transient(TransientReason::Connection);
            }
            ErrorKind::DataConversion => return transient(TransientReason::MalformedResponse),
            _ => {}
        }
    }
    transient(TransientReason::Other)
}

fn error_chain<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |e| (*e).source())
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `Retry-After`: delta-seconds or an HTTP-date (RFC 9110 §10.2.3), read by azure_core's own
/// parser (the one its retry policy, switched off here, would have used); a date already past is
/// zero.
fn retry_after(headers: &Headers, now: fn() -> OffsetDateTime) -> Option<Duration> {
    get_retry_after(headers, now, &[RETRY_AFTER]).map(shared::clock::to_std)
}

/// Per-try pipeline policy: counts identity-provider requests and turns error answers into
/// [`IdpRejection`]s (see the module comment).
#[derive(Debug)]
struct IdpProbe {
    metrics: Metrics,
}

#[async_trait::async_trait]
impl Policy for IdpProbe {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        let Some((first, rest)) = next.split_first() else {
            return Err(azure_core::Error::with_message(
                ErrorKind::Other,
                "IdpProbe must not be the last policy",
            ));
        };
        let response = match first.send(ctx, request, rest).await {
            Ok(response) => response,
            Err(err) => {
                self.metrics
                    .idp_requests
                    .with_label_values(&["error"])
                    .inc();
                return Err(err);
            }
        };
        let status = u16::from(response.status());
        self.metrics
            .idp_requests
            .with_label_values(&[status.to_string().as_str()])
            .inc();
        if (200..300).contains(&status) {
            return Ok(response);
        }
        let retry_after = retry_after(response.headers(), OffsetDateTime::now_utc);
        let body = response.into_body().collect().await.ok();
        let body = body.and_then(|b| serde_json::from_slice::<EntraErrorBody>(&b).ok());
        let rejection = IdpRejection {
            status,
            retry_after,
            body,
        };
        let message = rejection.to_string();
        Err(azure_core::Error::with_error(
            ErrorKind::Other,
            rejection,
            message,
        ))
    }
}

/// Signs a fresh client assertion for every acquisition (an assertion lives 10 minutes).
#[derive(Debug)]
struct CertificateSigner {
    certificate: Arc<CertificateAssertion>,
    audience: String,
}

#[async_trait::async_trait]
impl ClientAssertion for CertificateSigner {
    async fn secret(&self, _: Option<ClientMethodOptions<'_>>) -> azure_core::Result<String> {
        self.certificate
            .sign(&self.audience, OffsetDateTime::now_utc().unix_timestamp())
            .map(|s| s.expose().to_owned())
            .map_err(|e| {
                CredentialInputError(e.to_string()).into_azure("signing the client assertion")
            })
    }
}

/// The Kubernetes projected service-account token, read on every acquisition.
#[derive(Debug)]
pub struct FederatedTokenFile {
    pub path: PathBuf,
}

#[async_trait::async_trait]
impl ClientAssertion for FederatedTokenFile {
    async fn secret(&self, _: Option<ClientMethodOptions<'_>>) -> azure_core::Result<String> {
        let unusable = |problem: String| {
            CredentialInputError(format!(
                "federated token file {}{problem}",
                self.path.display()
            ))
            .into_azure("reading the federated token file")
        };
        let text = tokio::fs::read_to_string(&self.path)
            .await
            .map_err(|e| unusable(format!(": {e}")))?;
        let token = text.trim();
        if token.is_empty() {
            return Err(unusable(" is empty".to_owned()));
        }
        Ok(token.to_owned())
    }
}

/// The `… PRIVATE KEY` block of a PEM file. `AZURE_CLIENT_CERTIFICATE_PATH` files hold the
/// certificate *and* the key; `jsonwebtoken` reads the first block of whatever it is given, takes
/// the certificate for a key without complaint, and only fails when signing. So the key block is
/// cut out here and a file without one is refused at start.
pub fn private_key_block(pem: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(pem).ok()?;
    let start = text
        .match_indices("-----BEGIN ")
        .map(|(i, _)| i)
        .find(|&i| {
            text[i..]
                .lines()
                .next()
                .is_some_and(|l| l.trim_end().ends_with("PRIVATE KEY-----"))
        })?;
    let label_end = start + text[start..].find('\n')?;
    let label = text[start + "-----BEGIN ".len()..label_end].trim_end();
    let end_marker = format!("-----END {label}");
    let end = label_end + text[label_end..].find(&end_marker)? + end_marker.len();
    Some(text.as_bytes()[start..end].to_vec())
}

/// Tokens through `azure_identity`, for one identity.
#[derive(Debug)]
pub struct AzureTokenSource {
    identity: Identity,
    http: reqwest::Client,
    probe: Arc<IdpProbe>,
    certificate: Option<Arc<CertificateAssertion>>,
}

impl AzureTokenSource {
    /// Reads the certificate now, so a bad one stops the start instead of the first job.
    pub fn new(
        identity: Identity,
        http: reqwest::Client,
        metrics: Metrics,
    ) -> anyhow::Result<Self> {
        let certificate = match &identity.credential {
            CredentialSpec::Certificate {
                certificate,
                key,
                algorithm,
            } => {
                let cert_pem = std::fs::read(certificate).with_context(|| {
                    format!("identity.client_certificate_path {}", certificate.display())
                })?;
                let key_file = std::fs::read(key).with_context(|| {
                    format!("identity.client_certificate_key_path {}", key.display())
                })?;
                let key_pem = private_key_block(&key_file).with_context(|| {
                    format!(
                        "identity.client_certificate_key_path {}: no PEM private key in it \
                         (set it when the key is not in the certificate file)",
                        key.display()
                    )
                })?;
                let assertion = CertificateAssertion::from_pem(
                    identity.client_id.clone(),
                    &cert_pem,
                    &key_pem,
                    *algorithm,
                )
                .with_context(|| {
                    format!("certificate credential from {}", certificate.display())
                })?;
                Some(Arc::new(assertion))
            }
            _ => None,
        };
        Ok(Self {
            identity,
            http,
            probe: Arc::new(IdpProbe { metrics }),
            certificate,
        })
    }

    fn client_options(&self) -> ClientOptions {
        let mut cloud = CustomConfiguration::default();
        cloud.authority_host = self.identity.authority_host.clone();
        ClientOptions {
            transport: Some(Transport::new(Arc::new(self.http.clone()))),
            cloud: Some(Arc::new(CloudConfiguration::from(cloud))),
            retry: RetryOptions::none(),
            per_try_policies: vec![self.probe.clone()],
            ..Default::default()
        }
    }

    /// A new credential, with an empty cache (see the module comment).
    fn credential(&self) -> azure_core::Result<Arc<dyn TokenCredential>> {
        let id = &self.identity;
        let assertion_options = || {
            Some(ClientAssertionCredentialOptions {
                client_options: self.client_options(),
            })
        };
        Ok(match &id.credential {
            CredentialSpec::Secret(secret) => ClientSecretCredential::new(
                &id.tenant_id,
                id.client_id.clone(),
                secret.expose().to_owned().into(),
                Some(ClientSecretCredentialOptions {
                    client_options: self.client_options(),
                }),
            )?,
            CredentialSpec::Certificate { .. } => {
                let Some(certificate) = self.certificate.clone() else {
                    return Err(azure_core::Error::with_message(
                        ErrorKind::Credential,
                        "certificate not loaded",
                    ));
                };
                ClientAssertionCredential::new(
                    id.tenant_id.clone(),
                    id.client_id.clone(),
                    CertificateSigner {
                        certificate,
                        audience: format!(
                            "{}/{}/oauth2/v2.0/token",
                            id.authority_host, id.tenant_id
                        ),
                    },
                    assertion_options(),
                )?
            }
            CredentialSpec::WorkloadIdentity { token_file } => ClientAssertionCredential::new(
                id.tenant_id.clone(),
                id.client_id.clone(),
                FederatedTokenFile {
                    path: token_file.clone(),
                },
                assertion_options(),
            )?,
            CredentialSpec::ManagedIdentity => {
                ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                    user_assigned_id: (id.client_id != "system")
                        .then(|| UserAssignedId::ClientId(id.client_id.clone())),
                    client_options: self.client_options(),
                }))?
            }
        })
    }

    async fn acquire_once(&self, scope: &str) -> Result<IdpToken, AcquireError> {
        let credential = self.credential().map_err(|e| classify(&e))?;
        let token = credential
            .get_token(&[scope], None)
            .await
            .map_err(|e| classify(&e))?;
        let malformed = |detail: &str| AcquireError::Transient {
            reason: TransientReason::MalformedResponse,
            status: Some(200),
            retry_after: None,
            detail: detail.to_owned(),
        };
        // azure_identity reads the success body with `#[serde(default)]`: `{}` becomes an empty
        // token that expires now. Refuse that here instead of caching it.
        if token.token.secret().is_empty() {
            return Err(malformed("token response without access_token"));
        }
        let lifetime = shared::clock::to_std(token.expires_on - OffsetDateTime::now_utc());
        if lifetime < Duration::from_secs(1) {
            return Err(malformed("token response without a usable expires_in"));
        }
        Ok(IdpToken {
            token: Secret::new(token.token.secret()),
            lifetime,
        })
    }
}

impl TokenSource for AzureTokenSource {
    fn tenant_id(&self) -> &str {
        &self.identity.tenant_id
    }

    fn client_id(&self) -> &str {
        &self.identity.client_id
    }

    fn acquire<'a>(&'a self, scope: &'a str) -> AcquireFuture<'a> {
        Box::pin(self.acquire_once(scope))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_key_block_is_cut_out_of_a_combined_pem() {
        let combined = "-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----\n\
                        -----BEGIN PRIVATE KEY-----\nREVG\n-----END PRIVATE KEY-----\n";
        assert_eq!(
            private_key_block(combined.as_bytes()).as_deref(),
            Some(&b"-----BEGIN PRIVATE KEY-----\nREVG\n-----END PRIVATE KEY-----"[..])
        );
        let rsa = "-----BEGIN RSA PRIVATE KEY-----\nR0hJ\n-----END RSA PRIVATE KEY-----\n";
        assert!(private_key_block(rsa.as_bytes()).is_some());
        let cert_only = "-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----\n";
        assert_eq!(private_key_block(cert_only.as_bytes()), None);
    }

    #[test]
    fn retry_after_in_seconds_and_as_a_date() {
        let parse_retry_after = |value: &str| {
            let mut headers = Headers::new();
            headers.insert(RETRY_AFTER, value.to_owned());
            retry_after(&headers, || datetime!(2026-11-21 08:00:00 UTC))
        };
        assert_eq!(parse_retry_after("60"), Some(Duration::from_secs(60)));
        assert_eq!(
            parse_retry_after("Sat, 21 Nov 2026 08:00:30 GMT"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn rejections_are_classified_by_status_and_code() {
        let throttled = IdpRejection {
            status: 429,
            retry_after: Some(Duration::from_secs(7)),
            body: None,
        }
        .classify();
        assert_eq!(throttled.reason(), "throttled");
        assert_eq!(throttled.retry_after(), Some(Duration::from_secs(7)));
        let down = IdpRejection {
            status: 503,
            retry_after: None,
            body: None,
        }
        .classify();
        assert_eq!(down.reason(), "server_error");
        let body: EntraErrorBody = serde_json::from_str(
            r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: x","error_codes":[7000215]}"#,
        )
        .expect("body");
        let bad_secret = IdpRejection {
            status: 401,
            retry_after: None,
            body: Some(body),
        }
        .classify();
        assert!(bad_secret.is_permanent());
        assert_eq!(bad_secret.reason(), "aadsts_7000215");
        let text = bad_secret.to_string();
        assert!(
            text.contains("AADSTS7000215") && text.contains("Fix: the client secret is wrong"),
            "{text}"
        );
        assert!(!text.contains("Trace ID"), "{text}");

        // Entra could not reach a federated issuer: its outage, retried, not a permanent refusal.
        let body: EntraErrorBody = serde_json::from_str(
            r#"{"error":"invalid_request","error_description":"AADSTS50166: Request to External OIDC endpoint failed.","error_codes":[50166]}"#,
        )
        .expect("body");
        let issuer_down = IdpRejection {
            status: 400,
            retry_after: None,
            body: Some(body),
        }
        .classify();
        assert!(!issuer_down.is_permanent(), "{issuer_down}");
        assert_eq!(issuer_down.reason(), "server_error");
    }

    #[test]
    fn the_rejection_is_found_under_azure_identitys_wrapping() {
        let inner = azure_core::Error::with_error(
            ErrorKind::Other,
            IdpRejection {
                status: 503,
                retry_after: Some(Duration::from_secs(2)),
                body: None,
            },
            "probe",
        );
        let outer = azure_core::Error::with_error(
            ErrorKind::Credential,
            inner,
            "ClientSecretCredential authentication failed.",
        );
        let classified = classify(&outer);
        assert_eq!(classified.reason(), "server_error");
        assert_eq!(classified.retry_after(), Some(Duration::from_secs(2)));
    }
}
