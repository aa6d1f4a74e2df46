//! Tasks in PostgreSQL, shared by every replica: a `deadpool-postgres` pool of `tokio-postgres`
//! connections (plain TCP; no TLS yet).
//!
//! Durability: a handler answers 2xx only after `COMMIT` returned, and PostgreSQL's defaults
//! (`fsync`, `synchronous_commit = on`) have flushed the WAL by then.
//!
//! Same semantics as SQLite, where one writer at a time is the rule:
//! - creates are serialised by a transaction-scoped advisory lock, so `seq` values commit in
//!   order and a reader paging with `after` never skips a task that committed late; the
//!   `external_id` check is the insert's `ON CONFLICT DO NOTHING` on its UNIQUE constraint;
//! - a change reads the task `FOR UPDATE`, checks `version` and writes in one transaction.
//!
//! Migrations: a `schema_migrations` table, applied in one transaction under
//! `pg_advisory_xact_lock`, so replicas starting together apply each one once. Unreachable at
//! start, the store still opens; the migrations run before the first query that gets through.
//!
//! Errors meaning "cannot reach it now" (refused, connection lost, pool timeout, the server
//! shutting down or starting up) are [`StoreError::Unavailable`]: the routes answer 503 with
//! `Retry-After`. The pool drops closed connections and makes new ones by itself.

use super::{NewTask, Status, StoreError, Task, TaskChange, rfc3339};
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use std::time::Duration;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

/// Schema versions, applied in order; `schema_migrations` records which ran. Append, never edit.
/// The same table as SQLite's, column for column.
const MIGRATIONS: &[&str] = &["CREATE TABLE tasks (
        seq         BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id          TEXT    NOT NULL UNIQUE,
        title       TEXT    NOT NULL,
        description TEXT,
        status      TEXT    NOT NULL CHECK (status IN ('open', 'in_progress', 'done')),
        external_id TEXT    UNIQUE,
        version     BIGINT  NOT NULL,
        created_at  BIGINT  NOT NULL,
        created_by  TEXT    NOT NULL,
        updated_at  BIGINT  NOT NULL,
        updated_by  TEXT    NOT NULL
    );"];

/// Advisory lock key (any bigint, the same in every replica): "tasksmig".
const MIGRATION_LOCK: i64 = 0x7461_736b_736d_6967;

const COLUMNS: &str = "seq, id, title, description, status, external_id, version, created_at, created_by, updated_at, updated_by";

pub struct PgStore {
    pool: Pool,
    /// The URL with its password masked, for errors and logs.
    shown: String,
    migrated: tokio::sync::OnceCell<()>,
}

impl PgStore {
    /// The advisory lock every create holds until its commit ("tasksnew"), the same in every
    /// replica; public so that a test can stand in for a create in flight.
    pub const CREATE_LOCK: i64 = 0x7461_736b_736e_6577;

    /// A pool for `config`; migrates now if the server answers. `timeout` bounds connecting,
    /// waiting for a pooled connection, and how long a request may go unacknowledged.
    pub async fn open(
        mut config: tokio_postgres::Config,
        shown: String,
        max_connections: usize,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        config.connect_timeout(timeout);
        // A partition (the server's packets dropped, not refused) must not hang a request on a
        // pooled connection until the kernel gives up minutes later: a request unacknowledged for
        // `timeout` closes its connection (TCP_USER_TIMEOUT; a slow query is acknowledged at once
        // and unaffected), and an idle one is probed after `timeout`, so the pool drops it.
        config
            .tcp_user_timeout(timeout)
            .keepalives(true)
            .keepalives_idle(timeout)
            .keepalives_interval(Duration::from_secs(1))
            .keepalives_retries(3);
        if config.get_application_name().is_none() {
            config.application_name("api-service");
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(max_connections)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .build()
            .map_err(|e| StoreError::Open {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
        let store = Self {
            pool,
            shown,
            migrated: tokio::sync::OnceCell::new(),
        };
        match store.ready().await {
            Ok(()) => {}
            Err(StoreError::Unavailable(reason)) => tracing::warn!(
                database = %store.shown,
                %reason,
                "PostgreSQL does not answer: task requests get 503 until it does; the schema is \
                 brought up to date then"
            ),
            Err(e) => return Err(e),
        }
        Ok(store)
    }

    /// A pooled connection to a migrated database.
    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.ready().await?;
        self.pool.get().await.map_err(pool_error)
    }

    /// Migrates once per process, retried on the next request until it succeeds.
    async fn ready(&self) -> Result<(), StoreError> {
        self.migrated
            .get_or_try_init(|| self.migrate())
            .await
            .map(drop)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(pg_error)?;
        // Held until COMMIT: a replica starting at the same time waits here, then finds the
        // migrations applied.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(pg_error)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    INTEGER     PRIMARY KEY,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(pg_error)?;
        let applied: i32 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                &[],
            )
            .await
            .map_err(pg_error)?
            .try_get(0)
            .map_err(pg_error)?;
        let applied = usize::try_from(applied).unwrap_or(0);
        if applied > MIGRATIONS.len() {
            return Err(StoreError::Open {
                path: self.shown.clone(),
                reason: format!(
                    "schema version {applied} is newer than this build knows ({}); refusing to touch it",
                    MIGRATIONS.len()
                ),
            });
        }
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
            let version = i32::try_from(index + 1).unwrap_or(i32::MAX);
            tx.batch_execute(sql).await.map_err(pg_error)?;
            tx.execute(
                "INSERT INTO schema_migrations (version) VALUES ($1)",
                &[&version],
            )
            .await
            .map_err(pg_error)?;
            tracing::info!(version, database = %self.shown, "database schema migrated");
        }
        tx.commit().await.map_err(pg_error)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await.map_err(pg_error)?;
        Ok(())
    }

    pub async fn list(
        &self,
        after: i64,
        limit: u32,
        status: Option<Status>,
    ) -> Result<(Vec<Task>, Option<i64>), StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM tasks WHERE seq > $1 AND ($2::TEXT IS NULL OR status = $2)
                 ORDER BY seq LIMIT $3"
            ))
            .await
            .map_err(pg_error)?;
        let rows = client
            .query(
                &statement,
                &[&after, &status.map(Status::as_str), &(i64::from(limit) + 1)],
            )
            .await
            .map_err(pg_error)?;
        let mut tasks = rows
            .iter()
            .map(row_to_task)
            .collect::<Result<Vec<_>, _>>()
            .map_err(pg_error)?;
        let next = if tasks.len() > limit as usize {
            tasks.truncate(limit as usize);
            tasks.last().map(|(seq, _)| *seq)
        } else {
            None
        };
        Ok((tasks.into_iter().map(|(_, t)| t).collect(), next))
    }

    pub async fn get(&self, id: &str) -> Result<Task, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!("SELECT {COLUMNS} FROM tasks WHERE id = $1"))
            .await
            .map_err(pg_error)?;
        let row = client
            .query_opt(&statement, &[&id])
            .await
            .map_err(pg_error)?
            .ok_or(StoreError::NotFound)?;
        Ok(row_to_task(&row).map_err(pg_error)?.1)
    }

    pub async fn create(&self, new: NewTask, client: &str, now: i64) -> Result<Task, StoreError> {
        let mut conn = self.client().await?;
        // Prepared once per pooled connection and before the lock, so that under the lock only
        // executions are on the wire.
        let lock = conn
            .prepare_cached("SELECT pg_advisory_xact_lock($1)")
            .await
            .map_err(pg_error)?;
        let insert = conn
            .prepare_cached(&format!(
                "INSERT INTO tasks (id, title, description, status, external_id, version, created_at, created_by, updated_at, updated_by)
                 VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $6, $7)
                 ON CONFLICT (external_id) DO NOTHING RETURNING {COLUMNS}"
            ))
            .await
            .map_err(pg_error)?;
        let tx = conn.transaction().await.map_err(pg_error)?;
        let id = uuid::Uuid::new_v4().to_string();
        // Pipelined: both go out together and the server runs them in order, so the insert runs
        // once the lock is granted without another round trip while later creates wait. The
        // external_id check is the insert's own: a conflict inserts nothing and returns no row.
        let status = new.status.as_str();
        let params: [&(dyn ToSql + Sync); 7] = [
            &id,
            &new.title,
            &new.description,
            &status,
            &new.external_id,
            &now,
            &client,
        ];
        let key: [&(dyn ToSql + Sync); 1] = [&Self::CREATE_LOCK];
        let (_, inserted) =
            tokio::try_join!(tx.execute(&lock, &key), tx.query_opt(&insert, &params),)
                .map_err(pg_error)?;
        let Some(row) = inserted else {
            let existing = tx
                .query_opt(
                    "SELECT id FROM tasks WHERE external_id = $1",
                    &[&new.external_id],
                )
                .await
                .map_err(pg_error)?;
            return Err(match existing {
                Some(row) => StoreError::Duplicate {
                    existing_id: row.try_get(0).map_err(pg_error)?,
                },
                // Deleted between the two statements (deletes take no lock): nothing was created,
                // and trying again will.
                None => StoreError::Unavailable(
                    "the task holding this external_id was deleted meanwhile".into(),
                ),
            });
        };
        let task = row_to_task(&row).map_err(pg_error)?.1;
        tx.commit().await.map_err(pg_error)?;
        Ok(task)
    }

    pub async fn update(
        &self,
        id: &str,
        change: TaskChange,
        client: &str,
        now: i64,
    ) -> Result<Task, StoreError> {
        let mut conn = self.client().await?;
        let tx = conn.transaction().await.map_err(pg_error)?;
        let select = tx
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM tasks WHERE id = $1 FOR UPDATE"
            ))
            .await
            .map_err(pg_error)?;
        let row = tx
            .query_opt(&select, &[&id])
            .await
            .map_err(pg_error)?
            .ok_or(StoreError::NotFound)?;
        let current = row_to_task(&row).map_err(pg_error)?.1;
        let super::Changed {
            title,
            description,
            status,
        } = change.apply(current)?;
        let statement = tx
            .prepare_cached(&format!(
                "UPDATE tasks SET title = $2, description = $3, status = $4, version = version + 1,
                 updated_at = $5, updated_by = $6 WHERE id = $1 RETURNING {COLUMNS}"
            ))
            .await
            .map_err(pg_error)?;
        let row = tx
            .query_one(
                &statement,
                &[&id, &title, &description, &status.as_str(), &now, &client],
            )
            .await
            .map_err(pg_error)?;
        let task = row_to_task(&row).map_err(pg_error)?.1;
        tx.commit().await.map_err(pg_error)?;
        Ok(task)
    }

    pub async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached("DELETE FROM tasks WHERE id = $1")
            .await
            .map_err(pg_error)?;
        match client.execute(&statement, &[&id]).await.map_err(pg_error)? {
            0 => Err(StoreError::NotFound),
            _ => Ok(()),
        }
    }
}

fn row_to_task(row: &tokio_postgres::Row) -> Result<(i64, Task), tokio_postgres::Error> {
    let status: &str = row.try_get(4)?;
    Ok((
        row.try_get(0)?,
        Task {
            id: row.try_get(1)?,
            title: row.try_get(2)?,
            description: row.try_get(3)?,
            status: Status::parse(status),
            external_id: row.try_get(5)?,
            version: row.try_get(6)?,
            created_at: rfc3339(row.try_get(7)?),
            created_by: row.try_get(8)?,
            updated_at: rfc3339(row.try_get(9)?),
            updated_by: row.try_get(10)?,
        },
    ))
}

/// No connection to be had: the server is down, unreachable, or every pooled connection stayed
/// busy past the timeout.
fn pool_error(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => match pg_error(e) {
            StoreError::Postgres(e) => StoreError::Unavailable(e.to_string()),
            other => other,
        },
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// [`StoreError::Unavailable`] when the error means the server cannot be reached now: the
/// connection is closed or failed at the I/O level, or the server says it is shutting down,
/// starting up, out of connections or in a connection exception (SQLSTATE class 08).
fn pg_error(e: tokio_postgres::Error) -> StoreError {
    let unavailable = if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        code.starts_with("08")
            || [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::TOO_MANY_CONNECTIONS,
            ]
            .contains(db.code())
    } else {
        e.is_closed() || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>())
    };
    if unavailable {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Postgres(e)
    }
}
