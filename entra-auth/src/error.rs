//! Why a request was refused, and how that is answered: 401 with
//! `WWW-Authenticate: Bearer error="invalid_token"` for a missing, malformed, badly signed or
//! expired token; 403 with `error="insufficient_scope"` for a valid token of the wrong kind, client
//! or role (RFC 6750 §3.1). The body is RFC 9457 problem+json with a stable machine-readable
//! `reason` and the request id; it never echoes the token and never names internals.

use crate::problem::{Problem, problem_response};
use actix_web::HttpRequest;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpMessage, HttpResponse, ResponseError};
use serde::Serialize;
use std::fmt;

/// Stable reason codes: clients and dashboards key on these, so they never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    // 401: no usable credentials
    MissingToken,
    MalformedAuthorizationHeader,
    TokenTooLarge,
    NotAJws,
    MalformedToken,
    UnsupportedAlgorithm,
    MissingKeyId,
    InvalidKeyId,
    CriticalHeader,
    HeaderKeyReference,
    UnknownSigningKey,
    InvalidSignature,
    KeysUnavailable,
    Expired,
    NotYetValid,
    MissingIssuedAt,
    InvalidIssuer,
    InvalidAudience,
    InvalidTenant,
    SigningKeyIssuerMismatch,
    // 403: a valid token that may not do this
    UserDelegatedToken,
    NotAnAppToken,
    ClientNotAllowed,
    PublicClient,
    MissingRole,
    RouteHasNoPolicy,
}

impl Reason {
    /// Every reason, in a fixed order (metrics keep one counter per reason).
    pub const ALL: [Reason; 26] = [
        Self::MissingToken,
        Self::MalformedAuthorizationHeader,
        Self::TokenTooLarge,
        Self::NotAJws,
        Self::MalformedToken,
        Self::UnsupportedAlgorithm,
        Self::MissingKeyId,
        Self::InvalidKeyId,
        Self::CriticalHeader,
        Self::HeaderKeyReference,
        Self::UnknownSigningKey,
        Self::InvalidSignature,
        Self::KeysUnavailable,
        Self::Expired,
        Self::NotYetValid,
        Self::MissingIssuedAt,
        Self::InvalidIssuer,
        Self::InvalidAudience,
        Self::InvalidTenant,
        Self::SigningKeyIssuerMismatch,
        Self::UserDelegatedToken,
        Self::NotAnAppToken,
        Self::ClientNotAllowed,
        Self::PublicClient,
        Self::MissingRole,
        Self::RouteHasNoPolicy,
    ];

    /// Position in [`Reason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn status(self) -> StatusCode {
        match self {
            Self::UserDelegatedToken
            | Self::NotAnAppToken
            | Self::ClientNotAllowed
            | Self::PublicClient
            | Self::MissingRole
            | Self::RouteHasNoPolicy => StatusCode::FORBIDDEN,
            Self::KeysUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            // RFC 6750 §3.1: invalid_request is a 400.
            Self::MalformedAuthorizationHeader => StatusCode::BAD_REQUEST,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::MalformedAuthorizationHeader => "malformed_authorization_header",
            Self::TokenTooLarge => "token_too_large",
            Self::NotAJws => "not_a_jws",
            Self::MalformedToken => "malformed_token",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::MissingKeyId => "missing_key_id",
            Self::InvalidKeyId => "invalid_key_id",
            Self::CriticalHeader => "critical_header",
            Self::HeaderKeyReference => "header_key_reference",
            Self::UnknownSigningKey => "unknown_signing_key",
            Self::InvalidSignature => "invalid_signature",
            Self::KeysUnavailable => "keys_unavailable",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::MissingIssuedAt => "missing_issued_at",
            Self::InvalidIssuer => "invalid_issuer",
            Self::InvalidAudience => "invalid_audience",
            Self::InvalidTenant => "invalid_tenant",
            Self::SigningKeyIssuerMismatch => "signing_key_issuer_mismatch",
            Self::UserDelegatedToken => "user_delegated_token",
            Self::NotAnAppToken => "not_an_app_token",
            Self::ClientNotAllowed => "client_not_allowed",
            Self::PublicClient => "public_client",
            Self::MissingRole => "missing_role",
            Self::RouteHasNoPolicy => "route_has_no_policy",
        }
    }

    /// What the caller should do about it: safe to show, says nothing about our internals.
    pub fn detail(self) -> &'static str {
        match self {
            Self::MissingToken => {
                "Send an access token: Authorization: Bearer <token> (no other scheme is accepted)."
            }
            Self::MalformedAuthorizationHeader => {
                "Send exactly one Authorization header of the form 'Bearer <token>'."
            }
            Self::TokenTooLarge => "The access token is larger than this API accepts.",
            Self::NotAJws => "The access token is not a signed JWT (three base64url parts).",
            Self::MalformedToken => "The access token could not be decoded.",
            Self::UnsupportedAlgorithm => "The access token must be signed with RS256.",
            Self::MissingKeyId => "The access token's header names no signing key (kid).",
            Self::InvalidKeyId => "The access token's signing key id (kid) is not valid.",
            Self::CriticalHeader => {
                "The access token carries a 'crit' header this API does not support."
            }
            Self::HeaderKeyReference => {
                "The access token's header embeds or points at a key (jku, x5u, jwk, x5c); keys come only from the tenant's published JWKS."
            }
            Self::UnknownSigningKey => {
                "The access token was signed by a key the tenant does not publish."
            }
            Self::InvalidSignature => "The access token's signature is not valid.",
            Self::KeysUnavailable => {
                "The identity provider's signing keys are unavailable; retry later."
            }
            Self::Expired => "The access token has expired; acquire a new one.",
            Self::NotYetValid => "The access token is not valid yet (nbf); check the clocks.",
            Self::MissingIssuedAt => "The access token has no issued-at (iat) claim.",
            Self::InvalidIssuer => {
                "The access token was issued by an issuer this API does not trust."
            }
            Self::InvalidAudience => {
                "The access token was issued for another audience; request a token for this API's application ID URI with '/.default'."
            }
            Self::InvalidTenant => {
                "The access token was issued by a tenant this API does not accept."
            }
            Self::SigningKeyIssuerMismatch => {
                "The access token's signing key belongs to another issuer."
            }
            Self::UserDelegatedToken => {
                "This API accepts only application tokens from the client-credentials flow, not tokens issued on behalf of a user."
            }
            Self::NotAnAppToken => {
                "This API accepts only application tokens from the client-credentials flow."
            }
            Self::ClientNotAllowed => "The calling application is not allowed to call this API.",
            Self::PublicClient => {
                "Public clients cannot call this API; authenticate the application with a secret or certificate."
            }
            Self::MissingRole => {
                "The calling application lacks the app role this operation requires; ask an administrator to assign it."
            }
            Self::RouteHasNoPolicy => "This operation has no access policy and is denied.",
        }
    }
}

/// A refusal, with the roles the route wanted (for `insufficient_scope` answers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError {
    pub reason: Reason,
    pub required_roles: Vec<String>,
    /// The calling application, when the token got far enough to say (for logs, not the body).
    pub client_app_id: Option<String>,
}

impl AuthError {
    pub fn new(reason: Reason) -> Self {
        Self {
            reason,
            required_roles: Vec::new(),
            client_app_id: None,
        }
    }

    pub fn for_client(mut self, client_app_id: Option<&str>) -> Self {
        self.client_app_id = client_app_id.map(str::to_owned);
        self
    }

    pub fn missing_role(required: &[&str]) -> Self {
        Self {
            required_roles: required.iter().map(|r| (*r).to_owned()).collect(),
            ..Self::new(Reason::MissingRole)
        }
    }

    /// RFC 6750 §3: no error code when no credentials were sent at all.
    pub fn www_authenticate(&self) -> String {
        let reason = self.reason;
        match reason.status() {
            StatusCode::FORBIDDEN => {
                let mut value = format!(
                    "Bearer error=\"insufficient_scope\", error_description=\"{}\"",
                    reason.detail()
                );
                if !self.required_roles.is_empty() {
                    value.push_str(&format!(", scope=\"{}\"", self.required_roles.join(" ")));
                }
                value
            }
            _ if reason == Reason::MissingToken => "Bearer".to_owned(),
            _ if reason == Reason::MalformedAuthorizationHeader => format!(
                "Bearer error=\"invalid_request\", error_description=\"{}\"",
                reason.detail()
            ),
            _ => format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                reason.detail()
            ),
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.reason.as_str())
    }
}

impl std::error::Error for AuthError {}

impl AuthError {
    /// The answer: status, `WWW-Authenticate` (or `Retry-After` for 503) and the problem body,
    /// quoting `request_id`.
    pub fn response(&self, request_id: Option<&str>) -> HttpResponse {
        let status = self.reason.status();
        let problem = Problem {
            required_roles: self.required_roles.clone(),
            ..Problem::new(
                status,
                self.reason.as_str(),
                self.reason.detail().to_owned(),
                request_id.unwrap_or_default().to_owned(),
            )
        };
        let mut response = problem_response(status, &problem);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // Not the token's fault: no challenge (RFC 6750 challenges are for 401/403); the
            // key store retries at least every 5 minutes, so suggest a short wait.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        } else if let Ok(value) = HeaderValue::from_str(&self.www_authenticate()) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }

    /// As [`AuthError::response`], quoting the [`RequestId`](crate::RequestId) the application
    /// put in `req`'s extensions.
    pub fn response_to(&self, req: &HttpRequest) -> HttpResponse {
        let id = req
            .extensions()
            .get::<crate::RequestId>()
            .map(|id| std::rc::Rc::clone(&id.0));
        self.response(id.as_deref())
    }
}

/// For an [`AuthError`] returned from a handler or extractor; the request id is not known there,
/// so the middleware answers with [`AuthError::response_to`] instead.
impl ResponseError for AuthError {
    fn status_code(&self) -> StatusCode {
        self.reason.status()
    }

    fn error_response(&self) -> HttpResponse {
        self.response(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    #[test]
    fn all_lists_each_reason_at_its_index() {
        for (i, reason) in Reason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i, "{reason:?}");
        }
    }

    async fn render(err: AuthError) -> (u16, String, serde_json::Value) {
        let response = err.error_response();
        let status = response.status().as_u16();
        let challenge = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .expect("challenge")
            .to_str()
            .expect("ascii")
            .to_owned();
        assert_eq!(
            response
                .headers()
                .get(header::CONTENT_TYPE)
                .expect("content type"),
            "application/problem+json"
        );
        let body = to_bytes(response.into_body()).await.expect("body");
        (
            status,
            challenge,
            serde_json::from_slice(&body).expect("json"),
        )
    }

    #[actix_web::test]
    async fn expired_is_401_invalid_token_with_a_reason() {
        let (status, challenge, body) = render(AuthError::new(Reason::Expired)).await;
        assert_eq!(status, 401);
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\""),
            "{challenge}"
        );
        assert_eq!(body["reason"], "expired");
        assert_eq!(body["status"], 401);
        // Outside a request there is no request id to quote; the suites check it is the
        // response's X-Request-Id.
        assert_eq!(body["request_id"], "");
        assert_eq!(body["type"], "urn:m2m-entra:problem:expired");
    }

    #[actix_web::test]
    async fn missing_role_is_403_insufficient_scope_naming_the_roles() {
        let (status, challenge, body) =
            render(AuthError::missing_role(&["Tasks.ReadWrite.All"])).await;
        assert_eq!(status, 403);
        assert!(
            challenge.starts_with("Bearer error=\"insufficient_scope\""),
            "{challenge}"
        );
        assert!(
            challenge.ends_with("scope=\"Tasks.ReadWrite.All\""),
            "{challenge}"
        );
        assert_eq!(
            body["required_roles"],
            serde_json::json!(["Tasks.ReadWrite.All"])
        );
    }

    #[actix_web::test]
    async fn no_credentials_gets_a_bare_challenge() {
        let (status, challenge, _) = render(AuthError::new(Reason::MissingToken)).await;
        assert_eq!(status, 401);
        assert_eq!(challenge, "Bearer");
    }

    #[actix_web::test]
    async fn user_tokens_are_told_what_this_api_accepts() {
        let (status, _, body) = render(AuthError::new(Reason::UserDelegatedToken)).await;
        assert_eq!(status, 403);
        assert!(
            body["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("client-credentials")
        );
    }
}
