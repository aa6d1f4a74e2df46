//! `/api/tasks`: create, list, read, change and delete tasks, each recording which client
//! application created and last changed it. Bodies are checked strictly: unknown fields, wrong
//! types and out-of-bounds values are 422 naming the field, so a caller's typo is not silently
//! dropped.

use super::AppState;
use crate::problem::{ApiError, JsonBody, Problem};
use crate::store::{NewTask, Status, Task, TaskChange};
use actix_web::http::header::LOCATION;
use actix_web::{HttpResponse, web};
use entra_auth::AppCaller;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

const TITLE_MAX_CHARS: usize = 200;
const DESCRIPTION_MAX_CHARS: usize = 4000;
const EXTERNAL_ID_MAX_CHARS: usize = 128;
const PAGE_DEFAULT: u32 = 50;
const PAGE_MAX: u32 = 200;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTask {
    /// 1–200 characters, no control characters.
    pub title: String,
    /// Up to 4,000 characters.
    #[serde(default)]
    pub description: Option<String>,
    /// Default `open`.
    #[serde(default)]
    pub status: Option<Status>,
    /// Your own unique key (1–128 of `A-Z a-z 0-9 . _ : -`): creating twice with the same one
    /// answers 409 with the existing task's id, so a retried job does not duplicate work.
    #[serde(default)]
    pub external_id: Option<String>,
}

/// Only the fields sent change. `description: null` clears it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTask {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub title: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    #[serde(default)]
    pub status: Option<Status>,
    /// The version you read: if the task changed since, 409 `version_mismatch` (no lost update).
    #[serde(default)]
    pub version: Option<i64>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// 1–200, default 50.
    pub limit: Option<u32>,
    /// The `next` cursor of the previous page.
    pub after: Option<String>,
    pub status: Option<Status>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskPage {
    pub items: Vec<Task>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

fn check_title(title: &str) -> Result<String, ApiError> {
    let title = title.trim();
    if title.is_empty() {
        return Err(ApiError::invalid("title", "title must not be empty"));
    }
    if title.chars().count() > TITLE_MAX_CHARS {
        return Err(ApiError::invalid(
            "title",
            format!("title must be at most {TITLE_MAX_CHARS} characters"),
        ));
    }
    if title.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "title",
            "title must not contain control characters",
        ));
    }
    Ok(title.to_owned())
}

fn check_description(description: Option<String>) -> Result<Option<String>, ApiError> {
    match description {
        Some(d) if d.chars().count() > DESCRIPTION_MAX_CHARS => Err(ApiError::invalid(
            "description",
            format!("description must be at most {DESCRIPTION_MAX_CHARS} characters"),
        )),
        Some(d)
            if d.chars()
                .any(|c| c.is_control() && !matches!(c, '\n' | '\t')) =>
        {
            Err(ApiError::invalid(
                "description",
                "description must not contain control characters other than newline and tab",
            ))
        }
        other => Ok(other),
    }
}

fn check_external_id(external_id: Option<String>) -> Result<Option<String>, ApiError> {
    match external_id {
        Some(id)
            if id.is_empty()
                || id.len() > EXTERNAL_ID_MAX_CHARS
                || !id.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')
                }) =>
        {
            Err(ApiError::invalid(
                "external_id",
                format!(
                    "external_id must be 1-{EXTERNAL_ID_MAX_CHARS} characters of A-Z a-z 0-9 . _ : -"
                ),
            ))
        }
        other => Ok(other),
    }
}

/// Task ids are UUIDs; anything else names no task.
fn task_id(raw: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(raw)
        .map(|id| id.hyphenated().to_string())
        .map_err(|_| ApiError::NotFound)
}

/// List tasks, oldest first, a page at a time.
#[utoipa::path(get, path = "/api/tasks", tag = "tasks", params(ListQuery),
    responses((status = 200, body = TaskPage),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json"),
              (status = 503, body = Problem, content_type = "application/problem+json",
               description = "The database is unreachable; `Retry-After` says when to retry")))]
pub async fn list(
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<web::Json<TaskPage>, ApiError> {
    let query = query.into_inner();
    let limit = query.limit.unwrap_or(PAGE_DEFAULT);
    if !(1..=PAGE_MAX).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("limit must be between 1 and {PAGE_MAX}"),
        ));
    }
    let after = match query.after.as_deref() {
        None => 0,
        Some(cursor) => cursor
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| ApiError::invalid("after", "after must be a cursor from `next`"))?,
    };
    let (items, next) = state.store.list(after, limit, query.status).await?;
    Ok(web::Json(TaskPage {
        items,
        next: next.map(|n| n.to_string()),
    }))
}

/// Create a task.
#[utoipa::path(post, path = "/api/tasks", tag = "tasks", request_body = CreateTask,
    responses((status = 201, body = Task, description = "Created; `Location` names it"),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 409, body = Problem, content_type = "application/problem+json"),
              (status = 413, body = Problem, content_type = "application/problem+json"),
              (status = 415, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json"),
              (status = 503, body = Problem, content_type = "application/problem+json",
               description = "The database is unreachable; `Retry-After` says when to retry")))]
pub async fn create(
    state: web::Data<AppState>,
    caller: AppCaller,
    JsonBody(body): JsonBody<CreateTask>,
) -> Result<HttpResponse, ApiError> {
    let new = NewTask {
        title: check_title(&body.title)?,
        description: check_description(body.description)?,
        status: body.status.unwrap_or(Status::Open),
        external_id: check_external_id(body.external_id)?,
    };
    let now = state.clock.unix();
    let task = state.store.create(new, &caller.client_app_id, now).await?;
    tracing::info!(task_id = %task.id, created_by = %task.created_by, "task created");
    Ok(HttpResponse::Created()
        .insert_header((LOCATION, format!("/api/tasks/{}", task.id)))
        .json(task))
}

/// Read one task.
#[utoipa::path(get, path = "/api/tasks/{id}", tag = "tasks",
    params(("id" = String, Path, description = "Task id (UUID)")),
    responses((status = 200, body = Task),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 503, body = Problem, content_type = "application/problem+json",
               description = "The database is unreachable; `Retry-After` says when to retry")))]
pub async fn get(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<Task>, ApiError> {
    let id = task_id(&id)?;
    Ok(web::Json(state.store.get(&id).await?))
}

/// Change a task's title, description or status.
#[utoipa::path(patch, path = "/api/tasks/{id}", tag = "tasks", request_body = UpdateTask,
    params(("id" = String, Path, description = "Task id (UUID)")),
    responses((status = 200, body = Task),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json"),
              (status = 503, body = Problem, content_type = "application/problem+json",
               description = "The database is unreachable; `Retry-After` says when to retry")))]
pub async fn update(
    state: web::Data<AppState>,
    caller: AppCaller,
    id: web::Path<String>,
    JsonBody(body): JsonBody<UpdateTask>,
) -> Result<web::Json<Task>, ApiError> {
    let id = task_id(&id)?;
    let title = match body.title {
        None => None,
        Some(None) => return Err(ApiError::invalid("title", "title cannot be null")),
        Some(Some(title)) => Some(check_title(&title)?),
    };
    let description = match body.description {
        None => None,
        Some(d) => Some(check_description(d)?),
    };
    if title.is_none() && description.is_none() && body.status.is_none() {
        return Err(ApiError::invalid(
            "body",
            "nothing to change: send title, description or status",
        ));
    }
    if body.version.is_some_and(|v| v < 1) {
        return Err(ApiError::invalid("version", "version starts at 1"));
    }
    let change = TaskChange {
        title,
        description,
        status: body.status,
        expected_version: body.version,
    };
    let now = state.clock.unix();
    let task = state
        .store
        .update(&id, change, &caller.client_app_id, now)
        .await?;
    tracing::info!(task_id = %task.id, updated_by = %task.updated_by, version = task.version, "task changed");
    Ok(web::Json(task))
}

/// Delete a task.
#[utoipa::path(delete, path = "/api/tasks/{id}", tag = "tasks",
    params(("id" = String, Path, description = "Task id (UUID)")),
    responses((status = 204, description = "Deleted"),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 503, body = Problem, content_type = "application/problem+json",
               description = "The database is unreachable; `Retry-After` says when to retry")))]
pub async fn delete(
    state: web::Data<AppState>,
    caller: AppCaller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = task_id(&id)?;
    state.store.delete(&id).await?;
    tracing::info!(task_id = %id, deleted_by = %caller.client_app_id, "task deleted");
    Ok(HttpResponse::NoContent().finish())
}
