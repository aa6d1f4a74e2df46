//! The task store the routes call: SQLite, the embedded default for one machine, or PostgreSQL,
//! which replicas share (`database.url`). Both give the same answers and the same [`StoreError`]s:
//! `external_id` unique (the existing task named), `version`-checked changes, tasks listed in
//! creation order with a cursor that never skips one, and a result only once it is committed.

mod postgres;
mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::settings::{Backend, DatabaseSettings};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no such task")]
    NotFound,
    /// `external_id` already names a task.
    #[error("external_id already used by task {existing_id}")]
    Duplicate { existing_id: String },
    /// The caller's `version` is not the task's.
    #[error("task is at version {current}")]
    VersionMismatch { current: i64 },
    /// The database cannot be reached now (refused, connection lost, no pooled connection in
    /// time): the request may be retried; nothing was acknowledged.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("database: {0}")]
    Postgres(tokio_postgres::Error),
    #[error("database: a previous operation panicked")]
    Poisoned,
    #[error("database {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("database: the blocking pool failed: {0}")]
    Blocking(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Open,
    InProgress,
    Done,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::InProgress => "in_progress",
            Self::Done => "done",
        }
    }

    pub(crate) fn parse(value: &str) -> Self {
        match value {
            "in_progress" => Self::InProgress,
            "done" => Self::Done,
            _ => Self::Open,
        }
    }
}

/// A stored task, as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Task {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    pub status: Status,
    /// The creator's own key for the task, unique: lets a scheduled job create idempotently.
    pub external_id: Option<String>,
    /// Starts at 1, +1 per change; send it back in PATCH to refuse lost updates.
    pub version: i64,
    /// RFC 3339.
    pub created_at: String,
    /// Client application ID (`azp`/`appid`) of the creator.
    pub created_by: String,
    pub updated_at: String,
    pub updated_by: String,
}

pub struct NewTask {
    pub title: String,
    pub description: Option<String>,
    pub status: Status,
    pub external_id: Option<String>,
}

#[derive(Default)]
pub struct TaskChange {
    pub title: Option<String>,
    /// `Some(None)` clears the description.
    pub description: Option<Option<String>>,
    pub status: Option<Status>,
    pub expected_version: Option<i64>,
}

/// A task's fields after a change: what both backends write.
pub(crate) struct Changed {
    pub title: String,
    pub description: Option<String>,
    pub status: Status,
}

impl TaskChange {
    /// The change applied to `current`, read inside the writing transaction: refused when the
    /// caller's `expected_version` is not the task's (a lost update).
    pub(crate) fn apply(self, current: Task) -> Result<Changed, StoreError> {
        if let Some(expected) = self.expected_version
            && expected != current.version
        {
            return Err(StoreError::VersionMismatch {
                current: current.version,
            });
        }
        Ok(Changed {
            title: self.title.unwrap_or(current.title),
            description: self.description.unwrap_or(current.description),
            status: self.status.unwrap_or(current.status),
        })
    }
}

/// The one store API the routes use, over either backend.
pub enum TaskStore {
    Sqlite(Arc<SqliteStore>),
    Postgres(PgStore),
}

impl TaskStore {
    /// Opens the store `settings` names and brings its schema up to date. PostgreSQL unreachable
    /// at start is not an error: the store opens, task requests answer 503 until it answers, and
    /// the migrations run then.
    pub async fn open(settings: &DatabaseSettings) -> Result<Self, StoreError> {
        let backend = settings.backend().map_err(|e| StoreError::Open {
            path: settings.shown(),
            reason: e.to_string(),
        })?;
        match backend {
            Backend::Sqlite(path) => {
                let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path))
                    .await
                    .map_err(|e| StoreError::Blocking(e.to_string()))??;
                Ok(Self::Sqlite(Arc::new(store)))
            }
            Backend::Postgres(config) => Ok(Self::Postgres(
                PgStore::open(
                    *config,
                    settings.shown(),
                    settings.max_connections,
                    Duration::from_secs(settings.timeout_secs),
                )
                .await?,
            )),
        }
    }

    /// `sqlite` or `postgres`, for readiness and logs.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// Readiness: the database answers a query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => blocking(s, SqliteStore::ping).await,
            Self::Postgres(p) => p.ping().await,
        }
    }

    /// Up to `limit` tasks after the cursor `after` (oldest first), and the next cursor.
    pub async fn list(
        &self,
        after: i64,
        limit: u32,
        status: Option<Status>,
    ) -> Result<(Vec<Task>, Option<i64>), StoreError> {
        match self {
            Self::Sqlite(s) => blocking(s, move |s| s.list(after, limit, status)).await,
            Self::Postgres(p) => p.list(after, limit, status).await,
        }
    }

    pub async fn get(&self, id: &str) -> Result<Task, StoreError> {
        match self {
            Self::Sqlite(s) => {
                let id = id.to_owned();
                blocking(s, move |s| s.get(&id)).await
            }
            Self::Postgres(p) => p.get(id).await,
        }
    }

    pub async fn create(&self, new: NewTask, client: &str, now: i64) -> Result<Task, StoreError> {
        match self {
            Self::Sqlite(s) => {
                let client = client.to_owned();
                blocking(s, move |s| s.create(new, &client, now)).await
            }
            Self::Postgres(p) => p.create(new, client, now).await,
        }
    }

    pub async fn update(
        &self,
        id: &str,
        change: TaskChange,
        client: &str,
        now: i64,
    ) -> Result<Task, StoreError> {
        match self {
            Self::Sqlite(s) => {
                let (id, client) = (id.to_owned(), client.to_owned());
                blocking(s, move |s| s.update(&id, change, &client, now)).await
            }
            Self::Postgres(p) => p.update(id, change, client, now).await,
        }
    }

    pub async fn delete(&self, id: &str) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => {
                let id = id.to_owned();
                blocking(s, move |s| s.delete(&id)).await
            }
            Self::Postgres(p) => p.delete(id).await,
        }
    }
}

/// SQLite calls block: they run on the blocking pool, never on the async workers.
async fn blocking<T: Send + 'static>(
    store: &Arc<SqliteStore>,
    call: impl FnOnce(&SqliteStore) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || call(&store))
        .await
        .map_err(|e| StoreError::Blocking(e.to_string()))?
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
