//! Everything the API refuses besides authentication, as RFC 9457 problem+json with a stable
//! `reason`: malformed bodies (400), unknown tasks (404), conflicts (409), bodies too large (413),
//! the wrong media type (415), invalid fields (422), the database out of reach (503 with
//! `Retry-After`). Our own failures are logged whole and answered opaquely (500/503): the client
//! learns that it was us, not how.

use crate::store::StoreError;
use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, web};
use entra_auth::problem_response;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::pin::Pin;
use utoipa::ToSchema;

/// `Retry-After` on `database_unavailable`: long enough for a restart or a failover to finish,
/// short enough that a retrying job does not wait long after it.
pub const DATABASE_RETRY_AFTER_SECS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body or query is not what the route reads (not JSON, bad query string).
    #[error("{0}")]
    BadRequest(String),
    /// Well-formed, but a field is missing, unknown, of the wrong type, or out of bounds.
    #[error("{field}: {detail}")]
    InvalidField { field: String, detail: String },
    #[error("no such task")]
    NotFound,
    #[error("external_id already used")]
    DuplicateExternalId { existing_id: String },
    #[error("version mismatch")]
    VersionMismatch { current_version: i64 },
    #[error("body too large")]
    PayloadTooLarge { limit: usize },
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// The task database cannot be reached now; the cause is logged, the client told to retry.
    #[error("database unavailable: {0}")]
    DatabaseUnavailable(String),
    /// Ours: logged with its cause chain where it is turned into a response.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::InvalidField {
            field: field.into(),
            detail: detail.into(),
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "malformed_request",
            Self::InvalidField { .. } => "invalid_field",
            Self::NotFound => "not_found",
            Self::DuplicateExternalId { .. } => "duplicate_external_id",
            Self::VersionMismatch { .. } => "version_mismatch",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::DatabaseUnavailable(_) => "database_unavailable",
            Self::Internal(_) => "internal_error",
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => Self::NotFound,
            StoreError::Duplicate { existing_id } => Self::DuplicateExternalId { existing_id },
            StoreError::VersionMismatch { current } => Self::VersionMismatch {
                current_version: current,
            },
            StoreError::Unavailable(cause) => Self::DatabaseUnavailable(cause),
            other => Self::Internal(anyhow::Error::new(other).context("task store")),
        }
    }
}

/// The RFC 9457 body of every error and refusal of this API, as sent: the validator's
/// [`entra_auth::Problem`] (what every refusal carries) with this API's own members, so the
/// OpenAPI document describes exactly what a client gets.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    #[serde(flatten)]
    pub base: entra_auth::Problem,
    /// The offending field, for `invalid_field`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For `duplicate_external_id`: the task that already has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub existing_id: Option<String>,
    /// For `version_mismatch`: the task's version now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<i64>,
}

impl Problem {
    /// The body for `reason` at `status`, quoting the current request's id; the fields of one
    /// reason (`field`, `existing_id`, …) are set by the caller.
    pub fn new(status: StatusCode, reason: &str, detail: String) -> Self {
        Self {
            base: entra_auth::Problem::new(
                status,
                reason,
                detail,
                crate::observe::current_request_id().unwrap_or_default(),
            ),
            field: None,
            existing_id: None,
            current_version: None,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::InvalidField { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::DuplicateExternalId { .. } | Self::VersionMismatch { .. } => StatusCode::CONFLICT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::DatabaseUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let detail = match self {
            Self::BadRequest(detail) => detail.clone(),
            Self::InvalidField { detail, .. } => detail.clone(),
            Self::NotFound => "No task has this id.".into(),
            Self::DuplicateExternalId { .. } => {
                "A task with this external_id exists already; see existing_id.".into()
            }
            Self::VersionMismatch { .. } => {
                "The task changed since you read it; read it again and retry with current_version."
                    .into()
            }
            Self::PayloadTooLarge { limit } => format!("The body is larger than {limit} bytes."),
            Self::UnsupportedMediaType => "Send the body as application/json.".into(),
            Self::DatabaseUnavailable(cause) => {
                tracing::warn!(%cause, "task database unavailable: answering 503");
                "The task database cannot be reached; nothing was changed. Retry after the \
                 Retry-After seconds."
                    .into()
            }
            Self::Internal(cause) => {
                tracing::error!(error = ?cause, "request failed");
                "The API failed to handle this request; retry later.".into()
            }
        };
        let problem = Problem {
            field: match self {
                Self::InvalidField { field, .. } => Some(field.clone()),
                _ => None,
            },
            existing_id: match self {
                Self::DuplicateExternalId { existing_id } => Some(existing_id.clone()),
                _ => None,
            },
            current_version: match self {
                Self::VersionMismatch { current_version } => Some(*current_version),
                _ => None,
            },
            ..Problem::new(status, self.reason(), detail)
        };
        let mut response = problem_response(status, &problem);
        if let Self::DatabaseUnavailable(_) = self {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(DATABASE_RETRY_AFTER_SECS));
        }
        response
    }
}

/// Maps actix's JSON body errors: size → 413, media type → 415, anything unreadable → 400. Bodies
/// are read as `serde_json::Value` first ([`JsonBody`]), so a shape error never arrives here: it
/// is [`JsonBody`]'s 422.
pub fn json_error(err: actix_web::error::JsonPayloadError) -> ApiError {
    use actix_web::error::JsonPayloadError as E;
    match err {
        E::OverflowKnownLength { limit, .. } | E::Overflow { limit } => {
            ApiError::PayloadTooLarge { limit }
        }
        E::ContentType => ApiError::UnsupportedMediaType,
        E::Deserialize(e) => ApiError::BadRequest(format!("The body is not valid JSON: {e}")),
        other => ApiError::BadRequest(format!("The body could not be read: {other}")),
    }
}

/// Query strings: any problem is the caller's, 400.
pub fn query_error(err: actix_web::error::QueryPayloadError) -> ApiError {
    ApiError::BadRequest(format!("Invalid query string: {err}"))
}

/// serde names the field in backquotes for unknown and missing fields (`unknown field `x``,
/// `missing field `title``); wrong-type messages do not name it.
fn field_of(message: &str) -> Option<&str> {
    let rest = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("missing field `"))?;
    rest.split('`').next()
}

/// A JSON body of type `T`. Read as JSON first (size, media type and syntax as configured by
/// `JsonConfig`: 413, 415, 400), then shaped into `T`, so a wrong type or unknown field is a 422
/// that names the field by its path (`status`, `items[2].title`), which serde alone does not.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let json = web::Json::<serde_json::Value>::from_request(req, payload);
        Box::pin(async move {
            let value = json.await?.into_inner();
            serde_path_to_error::deserialize(value)
                .map(JsonBody)
                .map_err(|e| {
                    let path = e.path().to_string();
                    let message = e.into_inner().to_string();
                    let field = match path.as_str() {
                        "." => field_of(&message).unwrap_or("body").to_owned(),
                        _ => path,
                    };
                    ApiError::invalid(field, message).into()
                })
        })
    }
}
