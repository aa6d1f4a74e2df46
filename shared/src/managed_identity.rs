//! The managed-identity protocol App Service, Functions and Container Apps give their apps
//! (`GET {IDENTITY_ENDPOINT}?resource=…&api-version=2019-08-01` with `X-IDENTITY-HEADER`), as the
//! Azure SDKs' `ManagedIdentityCredential` speaks it: the request's parameters, and the answer's
//! and errors' JSON. Two endpoints serve it: the emulator's (for the directory's managed
//! identities) and the caller's token sidecar (for its own identity).

use serde_json::{Value, json};

/// The protocol version the SDKs send.
pub const API_VERSION: &str = "2019-08-01";

/// The header carrying the endpoint's secret (the app's `IDENTITY_HEADER`).
pub const SECRET_HEADER: &str = "x-identity-header";

/// What a token request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// As sent: a scope without its `/.default` (the SDKs strip it).
    pub resource: String,
    /// The identity it names, when it names one: `client_id`, `object_id`, `principal_id`,
    /// `mi_res_id` or `msi_res_id` (the Rust SDK's spelling of `mi_res_id`), and the value.
    pub identity: Option<(String, String)>,
}

/// Why a request is refused before any identity is looked at; `Display` is the message sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("api-version {} is not supported; this endpoint speaks {API_VERSION}.", .0.as_deref().unwrap_or("(missing)"))]
    ApiVersion(Option<String>),
    #[error("The resource parameter is missing.")]
    NoResource,
    #[error("Name the identity at most once (client_id, object_id, principal_id or mi_res_id).")]
    SeveralIdentities,
}

impl TokenRequest {
    /// From the request's query string; other parameters are ignored, as the real endpoint does.
    pub fn parse(query: &str) -> Result<Self, RequestError> {
        let mut api_version = None;
        let mut resource = None;
        let mut identities = Vec::new();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "api-version" => api_version = Some(value.into_owned()),
                "resource" => resource = Some(value.into_owned()),
                "client_id" | "object_id" | "principal_id" | "mi_res_id" | "msi_res_id" => {
                    identities.push((key.into_owned(), value.into_owned()));
                }
                _ => {}
            }
        }
        if api_version.as_deref() != Some(API_VERSION) {
            return Err(RequestError::ApiVersion(api_version));
        }
        let resource = resource
            .filter(|r| !r.is_empty())
            .ok_or(RequestError::NoResource)?;
        if identities.len() > 1 {
            return Err(RequestError::SeveralIdentities);
        }
        Ok(Self {
            resource,
            identity: identities.pop(),
        })
    }
}

/// The answer: `expires_on` a string of epoch seconds, the only form the Rust SDK's parser takes.
pub fn token_body(access_token: &str, expires_on: i64, resource: &str, client_id: &str) -> Value {
    json!({
        "access_token": access_token,
        "expires_on": expires_on.to_string(),
        "resource": resource,
        "token_type": "Bearer",
        "client_id": client_id,
    })
}

/// An error as App Service answers one; MSAL shows `"{statusCode}, {message}"`.
pub fn error_body(status: u16, message: &str) -> Value {
    json!({ "statusCode": status, "message": message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_read_as_the_sdks_send_it() {
        let request = TokenRequest::parse(
            "api-version=2019-08-01&resource=api%3A%2F%2Ftasks-api&client_id=abc&extra=1",
        )
        .expect("valid");
        assert_eq!(request.resource, "api://tasks-api");
        assert_eq!(request.identity, Some(("client_id".into(), "abc".into())));
        assert_eq!(
            TokenRequest::parse("api-version=2019-08-01&resource=x")
                .expect("valid")
                .identity,
            None
        );
    }

    #[test]
    fn bad_requests_say_why() {
        for (query, error) in [
            ("resource=x", RequestError::ApiVersion(None)),
            (
                "api-version=2017-09-01&resource=x",
                RequestError::ApiVersion(Some("2017-09-01".into())),
            ),
            ("api-version=2019-08-01&resource=", RequestError::NoResource),
            (
                "api-version=2019-08-01&resource=x&client_id=a&object_id=b",
                RequestError::SeveralIdentities,
            ),
        ] {
            assert_eq!(TokenRequest::parse(query), Err(error), "{query}");
        }
        assert!(
            RequestError::ApiVersion(Some("2017-09-01".into()))
                .to_string()
                .contains("2017-09-01 is not supported")
        );
    }
}
