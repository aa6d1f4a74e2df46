//! Entra's token-endpoint errors: the HTTP status, the OAuth `error`, the AADSTS code and its
//! message, as Microsoft documents them (reference-error-codes) and real responses show them.
//! Codes marked "inferred" have no published reference case; they were chosen to match the
//! documented code of the nearest condition and are named as such where they are built.

use actix_web::http::StatusCode;
use shared::entra_error::EntraErrorBody;

/// Displays as `AADSTS{code}: {message}`, the first line of Entra's `error_description` and what
/// its sign-in pages show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("AADSTS{code}: {message}")]
pub struct AadError {
    pub status: StatusCode,
    pub error: &'static str,
    pub code: u32,
    pub message: String,
}

const WIF_DOCS: &str = "https://learn.microsoft.com/entra/workload-id/workload-identity-federation";

const CERT_DOCS: &str = "Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .";

impl AadError {
    fn new(status: StatusCode, error: &'static str, code: u32, message: String) -> Self {
        Self {
            status,
            error,
            code,
            message,
        }
    }

    /// A GET (a browser, a mistyped client) on a token endpoint.
    pub fn post_only(method: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900561,
            format!(
                "The endpoint only accepts POST, OPTIONS requests. Received a {method} request."
            ),
        )
    }

    pub fn missing_parameter(name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            format!("The request body must contain the following parameter: '{name}'."),
        )
    }

    /// Inferred: a body over the size cap is refused before it is parsed.
    pub fn body_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90023,
            format!("The request body is larger than {limit} bytes and was not processed."),
        )
    }

    pub fn unsupported_grant_type(grant: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{grant}'."),
        )
    }

    pub fn tenant_not_found(tenant: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_tenant",
            90002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
            ),
        )
    }

    pub fn application_not_found(client_id: &str, tenant: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        )
    }

    pub fn no_credential() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", 7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.".into())
    }

    pub fn invalid_secret(client_id: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        )
    }

    pub fn secret_expired(client_id: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000222,
            format!(
                "The provided client secret keys for app '{client_id}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds."
            ),
        )
    }

    pub fn public_client_with_credential() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", 700025,
            "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.".into())
    }

    pub fn scope_without_default(scope: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        )
    }

    pub fn invalid_scope(scope: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            70011,
            format!(
                "The provided value for the input parameter 'scope' isn't valid. The scope {scope} isn't valid."
            ),
        )
    }

    pub fn several_resources(scope: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            700022,
            format!(
                "The provided value for the input parameter scope is not valid because it contains more than one resource. Scope {scope} is not valid."
            ),
        )
    }

    pub fn resource_not_found(resource: &str, tenant: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            500011,
            format!(
                "The resource principal named {resource} was not found in the tenant named {tenant}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant."
            ),
        )
    }

    pub fn no_role_assignment(
        client_id: &str,
        client_name: &str,
        resource_id: &str,
        resource_name: &str,
    ) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            501051,
            format!(
                "Application '{client_id}'({client_name}) is not assigned to a role for the application '{resource_id}'({resource_name})."
            ),
        )
    }

    pub fn assertion_time_range(now: i64, nbf: Option<i64>, exp: i64) -> Self {
        let at = |t: i64| format_timestamp(t);
        let from = nbf.map(at).unwrap_or_else(|| "(not set)".into());
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700024,
            format!(
                "Client assertion is not within its valid time range. Current time: {}, assertion valid from {from}, expiry time of assertion {}. {CERT_DOCS}",
                at(now),
                at(exp)
            ),
        )
    }

    pub fn assertion_key_not_found(client_id: &str, thumbprint: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700027,
            format!(
                "The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '{thumbprint}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{client_id}'. {CERT_DOCS}]"
            ),
        )
    }

    pub fn assertion_certificate_expired(client_id: &str, thumbprint: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700027,
            format!(
                "The certificate used to sign the client assertion has expired. [Thumbprint of key used by client: '{thumbprint}', app Id '{client_id}'] {CERT_DOCS}"
            ),
        )
    }

    pub fn body_unreadable() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body could not be read.".into(),
        )
    }

    pub fn assertion_signature_invalid() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700027,
            format!("Client assertion failed signature validation. {CERT_DOCS}"),
        )
    }

    /// Inferred: Entra documents no replay-specific code; the assertion is refused as invalid.
    pub fn assertion_replayed() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700027,
            format!(
                "Client assertion failed validation: its 'jti' was already used while the assertion is still valid. Sign a new assertion for every request. {CERT_DOCS}"
            ),
        )
    }

    pub fn assertion_audience() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700023,
            format!(
                "Client assertion audience claim does not match Realm issuer. The 'aud' claim must be the token endpoint URL. {CERT_DOCS}"
            ),
        )
    }

    pub fn assertion_subject() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700021,
            format!(
                "Client assertion application identifier doesn't match 'client_id' parameter. {CERT_DOCS}"
            ),
        )
    }

    pub fn assertion_algorithm(alg: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            5002738,
            format!(
                "Invalid JWT token. '{alg}' is not a supported signature algorithm. Supported signing algorithms are: 'RS256, PS256'"
            ),
        )
    }

    /// The app has no federated identity credential at all (none registered, or removed): Entra's
    /// older and most quoted answer, naming what the assertion presented.
    pub fn federated_no_record(issuer: &str, subject: &str, audience: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            70021,
            format!(
                "No matching federated identity record found for presented assertion. Assertion Issuer: '{issuer}'. Assertion Subject: '{subject}'. Assertion Audience: '{audience}'. {WIF_DOCS}"
            ),
        )
    }

    /// Credentials exist, none for the assertion's issuer (compared case-sensitively).
    pub fn federated_issuer(issuer: &str) -> Self {
        Self::federated_mismatch(700211, "issuer", issuer, "")
    }

    /// A credential for the issuer and subject, none for the assertion's audience.
    pub fn federated_audience(audience: &str) -> Self {
        Self::federated_mismatch(700212, "audience", audience, "")
    }

    /// Credentials for the issuer, none for the assertion's subject.
    pub fn federated_subject(subject: &str) -> Self {
        Self::federated_mismatch(700213, "subject", subject, "")
    }

    /// The subject matches a credential's only when case is ignored: Entra's matching has been
    /// case-sensitive since 2025, and it says so.
    pub fn federated_subject_case(subject: &str) -> Self {
        Self::federated_mismatch(
            7002138,
            "subject",
            subject,
            " The subject matches with case-insensitive comparison, but not with case-sensitive comparison.",
        )
    }

    fn federated_mismatch(code: u32, what: &str, value: &str, extra: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            code,
            format!(
                "No matching federated identity record found for presented assertion {what} '{value}'.{extra} Check your federated identity credential Subject, Audience and Issuer against the presented assertion. {WIF_DOCS}"
            ),
        )
    }

    /// The issuer's JWKS holds no key with the assertion's `kid`.
    pub fn federated_key_not_found(kid: &str, issuer: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000272,
            format!(
                "The certificate with identifier {kid} used to sign the federated credential could not be found in the metadata of identity provider {issuer}. Please validate that your Identity Provider's metadata exposes the key used to sign the incoming token."
            ),
        )
    }

    /// The issuer's discovery document or JWKS could not be fetched or read.
    pub fn external_oidc_failed() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            50166,
            "Request to External OIDC endpoint failed.".into(),
        )
    }

    /// v2's authorize endpoint takes scopes, not v1's `resource`.
    pub fn resource_parameter_on_v2() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            901002,
            "The 'resource' request parameter is not supported.".into(),
        )
    }

    pub fn assertion_malformed() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            50027,
            "JWT token is invalid or malformed.".into(),
        )
    }

    pub fn assertion_type(kind: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            50027,
            format!(
                "The client_assertion_type '{kind}' is not supported; use 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'."
            ),
        )
    }

    pub fn code_invalid() -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", 70008,
            "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.".into())
    }

    pub fn code_redeemed() -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", 54005,
            "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.".into())
    }

    pub fn code_mismatch(what: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            70000,
            format!(
                "The provided value for the input parameter '{what}' does not match the authorization request. The provided grant is invalid or malformed."
            ),
        )
    }

    pub fn pkce_mismatch() -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", 501481,
            "The Code_Verifier does not match the code_challenge supplied in the authorization request.".into())
    }

    pub fn redirect_mismatch(uri: &str, client_id: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            50011,
            format!(
                "The redirect URI '{uri}' specified in the request does not match the redirect URIs configured for the application '{client_id}'."
            ),
        )
    }

    pub fn user_not_found(user: &str, tenant: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            50034,
            format!(
                "The user account {user} does not exist in the {tenant} directory. To sign into this application, the account must be added to the directory."
            ),
        )
    }

    pub fn consent_required(client_id: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            65001,
            format!(
                "The user or administrator has not consented to use the application with ID '{client_id}'. Send an interactive authorization request for this user and resource."
            ),
        )
    }

    pub fn pkce_required() -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", 9002325,
            "Proof Key for Code Exchange is required: send code_challenge with code_challenge_method=S256.".into())
    }

    pub fn unknown_instance() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_instance",
            50049,
            "Unknown or invalid instance.".into(),
        )
    }

    /// A 503 as Entra answers during an incident.
    pub fn temporarily_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            90033,
            "A transient error has occurred. Please try again.".into(),
        )
    }

    /// The body, with the trace lines Entra appends to every description.
    pub fn body(&self, trace_id: &str, correlation_id: &str, now: i64) -> EntraErrorBody {
        let timestamp = format_timestamp(now);
        EntraErrorBody {
            error: self.error.to_owned(),
            error_description: format!(
                "{self}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {timestamp}"
            ),
            error_codes: vec![self.code],
            timestamp: Some(timestamp),
            trace_id: Some(trace_id.to_owned()),
            correlation_id: Some(correlation_id.to_owned()),
            error_uri: Some(format!(
                "https://login.microsoftonline.com/error?code={}",
                self.code
            )),
        }
    }
}

/// Entra's error timestamp format: `2016-01-09 02:02:12Z`.
pub fn format_timestamp(unix: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| unix.to_string())
}

#[cfg(test)]
mod timestamp_tests {
    #[test]
    fn formats_like_entra() {
        assert_eq!(
            super::format_timestamp(1_452_304_932),
            "2016-01-09 02:02:12Z"
        );
    }
}
