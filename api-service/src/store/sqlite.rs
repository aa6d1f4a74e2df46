//! Tasks in SQLite: the embedded default, so the API runs with nothing else installed.
//!
//! Durability: WAL journal with `synchronous = FULL`, so a transaction is on disk (fsync of the
//! WAL) before `commit` returns and therefore before the handler answers 2xx; a `kill -9` or a
//! power cut after that cannot lose it. (`NORMAL` would survive `kill -9` but not power loss.)
//!
//! Concurrency: one connection behind a `std::sync::Mutex`, used from blocking threads
//! (`web::block`), never from the async workers. SQLite admits one writer at a time anyway, and
//! each statement here takes microseconds; a reader pool would only matter for long scans.
//! Writes take the write lock at `BEGIN IMMEDIATE`, so the read-then-write checks (external_id,
//! version) stay atomic even if a second process opens the same file by mistake.

use super::{NewTask, Status, StoreError, Task, TaskChange, rfc3339};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::path::Path;
use std::sync::Mutex;

/// Schema versions, applied in order inside one transaction each; `PRAGMA user_version` records
/// how many have run. Append, never edit: a deployed database has already run the old ones.
const MIGRATIONS: &[&str] = &["CREATE TABLE tasks (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        id          TEXT    NOT NULL UNIQUE,
        title       TEXT    NOT NULL,
        description TEXT,
        status      TEXT    NOT NULL CHECK (status IN ('open', 'in_progress', 'done')),
        external_id TEXT    UNIQUE,
        version     INTEGER NOT NULL,
        created_at  INTEGER NOT NULL,
        created_by  TEXT    NOT NULL,
        updated_at  INTEGER NOT NULL,
        updated_by  TEXT    NOT NULL
    ) STRICT;"];

pub struct SqliteStore {
    conn: Mutex<Connection>,
}

const COLUMNS: &str = "seq, id, title, description, status, external_id, version, created_at, created_by, updated_at, updated_by";

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_error = |reason: String| StoreError::Open {
            path: path.display().to_string(),
            reason,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_error(e.to_string()))?;
        }
        let mut conn = Connection::open(path).map_err(|e| open_error(e.to_string()))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(open_error(format!(
                "cannot use the WAL journal (got `{mode}`)"
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
        self.conn.lock().map_err(|_| StoreError::Poisoned)
    }

    /// Readiness: the file answers a query.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.conn()?.query_row("SELECT 1", [], |_| Ok(()))?;
        Ok(())
    }

    /// Up to `limit` tasks after the cursor `after` (oldest first), and the next cursor.
    pub fn list(
        &self,
        after: i64,
        limit: u32,
        status: Option<Status>,
    ) -> Result<(Vec<Task>, Option<i64>), StoreError> {
        let conn = self.conn()?;
        let mut statement = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM tasks WHERE seq > ?1 AND (?2 IS NULL OR status = ?2) ORDER BY seq LIMIT ?3"
        ))?;
        let rows = statement.query_map(
            params![after, status.map(Status::as_str), i64::from(limit) + 1],
            row_to_task,
        )?;
        let mut tasks = rows.collect::<Result<Vec<_>, _>>()?;
        let next = if tasks.len() > limit as usize {
            tasks.truncate(limit as usize);
            tasks.last().map(|(seq, _)| *seq)
        } else {
            None
        };
        Ok((tasks.into_iter().map(|(_, t)| t).collect(), next))
    }

    pub fn get(&self, id: &str) -> Result<Task, StoreError> {
        let conn = self.conn()?;
        fetch(&conn, id)
    }

    pub fn create(&self, new: NewTask, client: &str, now: i64) -> Result<Task, StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Some(external_id) = &new.external_id {
            let existing: Option<String> = tx
                .query_row(
                    "SELECT id FROM tasks WHERE external_id = ?1",
                    [external_id],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(existing_id) = existing {
                return Err(StoreError::Duplicate { existing_id });
            }
        }
        let id = uuid::Uuid::new_v4().to_string();
        tx.execute(
            "INSERT INTO tasks (id, title, description, status, external_id, version, created_at, created_by, updated_at, updated_by)
             VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?7, ?6, ?7)",
            params![id, new.title, new.description, new.status.as_str(), new.external_id, now, client],
        )?;
        let task = fetch(&tx, &id)?;
        tx.commit()?;
        Ok(task)
    }

    pub fn update(
        &self,
        id: &str,
        change: TaskChange,
        client: &str,
        now: i64,
    ) -> Result<Task, StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current = fetch(&tx, id)?;
        let super::Changed {
            title,
            description,
            status,
        } = change.apply(current)?;
        tx.execute(
            "UPDATE tasks SET title = ?2, description = ?3, status = ?4, version = version + 1,
             updated_at = ?5, updated_by = ?6 WHERE id = ?1",
            params![id, title, description, status.as_str(), now, client],
        )?;
        let task = fetch(&tx, id)?;
        tx.commit()?;
        Ok(task)
    }

    pub fn delete(&self, id: &str) -> Result<(), StoreError> {
        let conn = self.conn()?;
        match conn.execute("DELETE FROM tasks WHERE id = ?1", [id])? {
            0 => Err(StoreError::NotFound),
            _ => Ok(()),
        }
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let applied: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let applied = usize::try_from(applied).unwrap_or(0);
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Open {
            path: conn.path().unwrap_or("?").to_owned(),
            reason: format!(
                "schema version {applied} is newer than this build knows ({}); refusing to touch it",
                MIGRATIONS.len()
            ),
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
        tracing::info!(version = index + 1, "database schema migrated");
    }
    Ok(())
}

fn fetch(conn: &Connection, id: &str) -> Result<Task, StoreError> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM tasks WHERE id = ?1"))?
        .query_row([id], row_to_task)
        .optional()?
        .map(|(_, task)| task)
        .ok_or(StoreError::NotFound)
}

fn row_to_task(row: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, Task)> {
    let status: String = row.get(4)?;
    Ok((
        row.get(0)?,
        Task {
            id: row.get(1)?,
            title: row.get(2)?,
            description: row.get(3)?,
            status: Status::parse(&status),
            external_id: row.get(5)?,
            version: row.get(6)?,
            created_at: rfc3339(row.get(7)?),
            created_by: row.get(8)?,
            updated_at: rfc3339(row.get(9)?),
            updated_by: row.get(10)?,
        },
    ))
}
