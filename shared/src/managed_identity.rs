//! The managed-identity protocol App Service, Functions and Container Apps give their apps
//! (`GET {IDENTITY_ENDPOINT}?resource=…&api-version=2019-08-01` with `X-IDENTITY-HEADER`), as the
//! Azure SDKs' `ManagedIdentityCredential` speaks it: the request's parameters, and the answer's
//! and errors' JSON. Two endpoints serve it: the emulator's (for the directory's managed
//! identities) and the caller's token sidecar (for its own identity).

use serde_json::{Value, json};

/// The protocol version the SDKs send.
pub const API_VERSION: &str = "2019-08-01";

/// The oldest version of the Instance Metadata Service's identity endpoint
/// (`/metadata/identity/oauth2/token`); MSAL for Python sends it, the Rust SDK sends 2019-08-01.
pub const IMDS_MIN_API_VERSION: &str = "2018-02-01";

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
    #[error("api-version {} is not supported; this endpoint speaks {}.", .0.as_deref().unwrap_or("(missing)"), .1)]
    ApiVersion(Option<String>, &'static str),
    #[error("The resource parameter is missing.")]
    NoResource,
    #[error("Name the identity at most once (client_id, object_id, principal_id or mi_res_id).")]
    SeveralIdentities,
}

impl TokenRequest {
    /// An App Service request (api-version 2019-08-01), from its query string; other parameters
    /// are ignored, as the real endpoint does.
    pub fn parse(query: &str) -> Result<Self, RequestError> {
        Self::parse_accepting(query, API_VERSION, |version| version == API_VERSION)
    }

    /// An IMDS request: any `YYYY-MM-DD` version from 2018-02-01 on.
    pub fn parse_imds(query: &str) -> Result<Self, RequestError> {
        Self::parse_accepting(query, "2018-02-01 or later", |version| {
            version.len() == IMDS_MIN_API_VERSION.len()
                && version.bytes().enumerate().all(|(i, b)| {
                    if i == 4 || i == 7 {
                        b == b'-'
                    } else {
                        b.is_ascii_digit()
                    }
                })
                && version >= IMDS_MIN_API_VERSION
        })
    }

    fn parse_accepting(
        query: &str,
        speaks: &'static str,
        accepted: impl Fn(&str) -> bool,
    ) -> Result<Self, RequestError> {
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
        if !api_version.as_deref().is_some_and(accepted) {
            return Err(RequestError::ApiVersion(api_version, speaks));
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
            ("resource=x", RequestError::ApiVersion(None, API_VERSION)),
            (
                "api-version=2017-09-01&resource=x",
                RequestError::ApiVersion(Some("2017-09-01".into()), API_VERSION),
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
            RequestError::ApiVersion(Some("2017-09-01".into()), API_VERSION)
                .to_string()
                .contains("2017-09-01 is not supported")
        );
    }

    #[test]
    fn imds_takes_any_version_from_2018_02_01() {
        for version in ["2018-02-01", "2019-08-01", "2025-04-07"] {
            let query = format!("api-version={version}&resource=x");
            assert!(TokenRequest::parse_imds(&query).is_ok(), "{version}");
        }
        for version in ["2017-09-01", "2019-8-01", "latest", "2019-08-01x"] {
            let query = format!("api-version={version}&resource=x");
            assert!(TokenRequest::parse_imds(&query).is_err(), "{version}");
        }
    }
}
