//! The task store on its own, each test on SQLite and on PostgreSQL (a real server, started by
//! the harness): what it keeps across a reopen, the conflicts it tells apart, paging, concurrent
//! writers, and the schema it refuses to touch.

use api_service::settings::DatabaseSettings;
use api_service::store::{NewTask, PgStore, Status, StoreError, TaskChange, TaskStore};
use mesh_tests::TempDir;
use mesh_tests::postgres::Db;
use std::sync::Arc;

const WRITER: &str = "a1000000-0000-4000-8000-000000000004";
const OTHER: &str = "a1000000-0000-4000-8000-000000000005";

mesh_tests::on_both_backends!(
    create_update_and_reopen_keeps_everything,
    duplicates_stale_versions_and_missing_tasks_are_told_apart,
    listing_pages_through_everything_once,
    concurrent_writers_get_one_winner_and_conflicts_naming_it,
    a_newer_schema_is_left_alone,
);

/// The settings for `db`; a SQLite file lives in `dir`.
fn settings(db: &Db, dir: &TempDir) -> DatabaseSettings {
    let mut settings = DatabaseSettings {
        path: dir.0.join("tasks.db"),
        ..Default::default()
    };
    db.apply(&mut settings);
    settings
}

fn new_task(title: &str, external_id: Option<&str>) -> NewTask {
    NewTask {
        title: title.into(),
        description: None,
        status: Status::Open,
        external_id: external_id.map(str::to_owned),
    }
}

async fn create_update_and_reopen_keeps_everything(db: Db) {
    let dir = TempDir::new("store");
    let created = {
        let store = TaskStore::open(&settings(&db, &dir)).await.expect("opens");
        assert_eq!(store.backend(), db.name());
        let task = store
            .create(
                new_task("rotate keys", Some("job-1")),
                WRITER,
                1_800_000_000,
            )
            .await
            .expect("created");
        store
            .update(
                &task.id,
                TaskChange {
                    status: Some(Status::Done),
                    expected_version: Some(1),
                    ..Default::default()
                },
                OTHER,
                1_800_000_060,
            )
            .await
            .expect("updated")
    };
    let store = TaskStore::open(&settings(&db, &dir))
        .await
        .expect("reopens");
    let task = store.get(&created.id).await.expect("still there");
    assert_eq!(task, created);
    assert_eq!(task.version, 2);
    assert_eq!(task.created_by, WRITER);
    assert_eq!(task.updated_by, OTHER);
    assert_eq!(task.created_at, "2027-01-15T08:00:00Z");
    assert_eq!(task.updated_at, "2027-01-15T08:01:00Z");
}

async fn duplicates_stale_versions_and_missing_tasks_are_told_apart(db: Db) {
    let dir = TempDir::new("store");
    let store = TaskStore::open(&settings(&db, &dir)).await.expect("opens");
    let first = store
        .create(new_task("a", Some("ext")), WRITER, 1)
        .await
        .expect("created");
    match store.create(new_task("b", Some("ext")), WRITER, 2).await {
        Err(StoreError::Duplicate { existing_id }) => assert_eq!(existing_id, first.id),
        other => panic!("expected a duplicate, got {other:?}"),
    }
    let stale = TaskChange {
        title: Some("c".into()),
        expected_version: Some(7),
        ..Default::default()
    };
    assert!(matches!(
        store.update(&first.id, stale, WRITER, 3).await,
        Err(StoreError::VersionMismatch { current: 1 })
    ));
    let cleared = store
        .update(
            &first.id,
            TaskChange {
                description: Some(None),
                title: Some("d".into()),
                ..Default::default()
            },
            WRITER,
            4,
        )
        .await
        .expect("no version: unconditional");
    assert_eq!((cleared.title.as_str(), cleared.version), ("d", 2));
    assert!(matches!(
        store.get("6f1c6a52-8a3e-4a0e-9d55-0d9c2b0c8e11").await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.update("nope", TaskChange::default(), WRITER, 5).await,
        Err(StoreError::NotFound)
    ));
    store.delete(&first.id).await.expect("deleted");
    assert!(matches!(
        store.delete(&first.id).await,
        Err(StoreError::NotFound)
    ));
    store
        .create(new_task("again", Some("ext")), WRITER, 6)
        .await
        .expect("the external_id is free once its task is deleted");
}

async fn listing_pages_through_everything_once(db: Db) {
    let dir = TempDir::new("store");
    let store = TaskStore::open(&settings(&db, &dir)).await.expect("opens");
    for i in 0..5 {
        store
            .create(new_task(&format!("t{i}"), None), WRITER, i)
            .await
            .expect("created");
    }
    let (page, next) = store.list(0, 2, None).await.expect("page 1");
    assert_eq!(page.len(), 2);
    let (page2, next2) = store
        .list(next.expect("more"), 2, None)
        .await
        .expect("page 2");
    let (page3, next3) = store
        .list(next2.expect("more"), 2, None)
        .await
        .expect("page 3");
    assert_eq!(page3.len(), 1);
    assert_eq!(next3, None);
    let titles: Vec<_> = [page, page2, page3]
        .concat()
        .into_iter()
        .map(|t| t.title)
        .collect();
    assert_eq!(titles, ["t0", "t1", "t2", "t3", "t4"]);
    let (done, _) = store
        .list(0, 10, Some(Status::Done))
        .await
        .expect("filtered");
    assert!(done.is_empty());
    let (open, _) = store
        .list(0, 10, Some(Status::Open))
        .await
        .expect("filtered");
    assert_eq!(open.len(), 5);
}

/// Sixteen creates with one `external_id` at once: one task, fifteen conflicts naming it. Then
/// sixteen changes naming the same version at once: one wins, fifteen are told the new version.
async fn concurrent_writers_get_one_winner_and_conflicts_naming_it(db: Db) {
    let dir = TempDir::new("store");
    let store = Arc::new(TaskStore::open(&settings(&db, &dir)).await.expect("opens"));
    let creates = (0..16).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .create(new_task(&format!("c{i}"), Some("nightly")), WRITER, i)
                .await
        })
    });
    let results = futures_util::future::join_all(creates).await;
    let mut created = Vec::new();
    let mut named = Vec::new();
    for result in results {
        match result.expect("joined") {
            Ok(task) => created.push(task.id),
            Err(StoreError::Duplicate { existing_id }) => named.push(existing_id),
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(created.len(), 1, "one create wins");
    assert_eq!(named.len(), 15);
    assert!(named.iter().all(|id| *id == created[0]), "{named:?}");

    let id = created[0].clone();
    let changes = (0..16).map(|i| {
        let (store, id) = (store.clone(), id.clone());
        tokio::spawn(async move {
            let change = TaskChange {
                title: Some(format!("by {i}")),
                expected_version: Some(1),
                ..Default::default()
            };
            store.update(&id, change, OTHER, 100).await
        })
    });
    let results = futures_util::future::join_all(changes).await;
    let (mut won, mut stale) = (0, 0);
    for result in results {
        match result.expect("joined") {
            Ok(task) => {
                assert_eq!(task.version, 2);
                won += 1;
            }
            Err(StoreError::VersionMismatch { current: 2 }) => stale += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((won, stale), (1, 15));
}

async fn a_newer_schema_is_left_alone(db: Db) {
    let dir = TempDir::new("store");
    let settings = settings(&db, &dir);
    drop(TaskStore::open(&settings).await.expect("opens"));
    match &db {
        Db::Sqlite => {
            let conn = rusqlite::Connection::open(&settings.path).expect("raw");
            conn.pragma_update(None, "user_version", 99).expect("bump");
        }
        Db::Postgres(url) => {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .expect("raw");
            let driver = tokio::spawn(connection);
            client
                .execute("INSERT INTO schema_migrations (version) VALUES (99)", &[])
                .await
                .expect("bump");
            drop(client);
            driver.await.ok();
        }
    }
    let err = TaskStore::open(&settings).await.err().expect("refused");
    assert!(err.to_string().contains("newer"), "{err}");
    if let Db::Postgres(_) = db {
        assert!(
            !err.to_string().contains(mesh_tests::postgres::PASSWORD),
            "{err}"
        );
    }
}

/// Eight replicas starting at once on an empty database: every one opens, each migration is
/// applied exactly once, and they all serve the same tasks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_migrate_once() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    let dir = TempDir::new("store");
    let settings = settings(&db, &dir);
    let opens = (0..8).map(|_| {
        let settings = settings.clone();
        tokio::spawn(async move { TaskStore::open(&settings).await })
    });
    let stores: Vec<TaskStore> = futures_util::future::join_all(opens)
        .await
        .into_iter()
        .map(|r| r.expect("joined").expect("every replica opens"))
        .collect();
    let task = stores[0]
        .create(new_task("shared", None), WRITER, 1)
        .await
        .expect("created");
    for store in &stores {
        assert_eq!(store.get(&task.id).await.expect("seen by all").id, task.id);
    }
    let Db::Postgres(url) = &db else {
        unreachable!()
    };
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("raw");
    let driver = tokio::spawn(connection);
    let rows = client
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .expect("query");
    let versions: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(versions, [1], "applied once");
    drop(client);
    driver.await.ok();
}

/// Why creates take a lock on PostgreSQL: a create still in flight holds it, so a later create
/// waits instead of committing a higher `seq` first, and a reader that pages on in the meantime
/// cannot step past the earlier task's `seq` and miss it. Here a raw transaction stands in for
/// the create in flight (it takes the lock and inserts, as the store does, then waits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paging_reader_never_skips_a_task_that_commits_late() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    let dir = TempDir::new("store");
    let store = Arc::new(TaskStore::open(&settings(&db, &dir)).await.expect("opens"));
    let Db::Postgres(url) = &db else {
        unreachable!()
    };
    let (mut slow, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("raw");
    let driver = tokio::spawn(connection);
    let in_flight = slow.transaction().await.expect("begin");
    in_flight
        .execute("SELECT pg_advisory_xact_lock($1)", &[&PgStore::CREATE_LOCK])
        .await
        .expect("lock");
    in_flight
        .execute(
            "INSERT INTO tasks (id, title, status, version, created_at, created_by, updated_at, updated_by)
             VALUES ('00000000-0000-4000-8000-000000000001', 'slow', 'open', 1, 1, 'x', 1, 'x')",
            &[],
        )
        .await
        .expect("insert");

    let fast = {
        let store = store.clone();
        tokio::spawn(async move { store.create(new_task("fast", None), WRITER, 2).await })
    };
    let (watcher, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("raw");
    let watcher_driver = tokio::spawn(connection);
    mesh_tests::eventually("the second create waits for the lock", || async {
        let waiting: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
                &[],
            )
            .await
            .expect("pg_locks")
            .get(0);
        waiting == 1
    })
    .await;
    let (page, next) = store.list(0, 10, None).await.expect("list");
    assert!(
        page.is_empty() && next.is_none(),
        "nothing committed yet, so the reader's cursor stays at the start: {page:?}"
    );

    in_flight.commit().await.expect("the slow create commits");
    fast.await
        .expect("joined")
        .expect("the fast create commits after it");
    let (page, _) = store.list(0, 10, None).await.expect("list");
    let titles: Vec<_> = page.iter().map(|t| t.title.as_str()).collect();
    assert_eq!(titles, ["slow", "fast"], "in commit order, none skipped");
    drop((slow, watcher));
    driver.await.ok();
    watcher_driver.await.ok();
}
