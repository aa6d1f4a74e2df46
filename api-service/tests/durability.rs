//! The built binary under write load: `kill -9` loses no acknowledged task, and SIGTERM ends it
//! cleanly with exit status 0; on SQLite and on PostgreSQL (a real server the harness starts).
//! On PostgreSQL the binary logs at `info` into a file, which must show the URL masked and never
//! the password.

use mesh_tests::api::*;
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Running {
    child: Child,
    url: String,
}

/// A failing test must not leave an API running.
impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.child.kill().ok();
            self.child.wait().ok();
        }
    }
}

/// Starts `api-service serve` against the wiremock identity provider and waits for its ready
/// file. Polling is the only way to learn that another process is listening.
#[allow(clippy::zombie_processes, reason = "Running's Drop reaps the child")]
fn start(idp_uri: &str, dir: &std::path::Path, db: &Db) -> Running {
    let ready = dir.join("ready.json");
    std::fs::remove_file(&ready).ok();
    let mut command = Command::new(env!("CARGO_BIN_EXE_api-service"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("api.log"))
        .expect("log file");
    match db {
        Db::Sqlite => {
            command.env("API__LOG__FILTER", "warn").stderr(
                if std::env::var_os("TEST_LOG").is_some() {
                    Stdio::inherit()
                } else {
                    Stdio::null()
                },
            );
        }
        Db::Postgres(url) => {
            command
                .env("API__DATABASE__URL", url)
                .env("API__LOG__FILTER", "info")
                .stderr(log);
        }
    }
    let mut child = command
        .args(["serve", "--ready-file"])
        .arg(&ready)
        .env("API__SERVER__PORT", "0")
        .env("API__ENTRA__AUTHORITY_HOST", idp_uri)
        // wiremock speaks plain HTTP on loopback.
        .env("API__ENTRA__ALLOW_INSECURE_HTTP_ON_LOOPBACK", "true")
        .env("API__ENTRA__TENANTS", TENANT)
        .env("API__AUTH__AUDIENCES", API_CLIENT_ID)
        .env("API__AUTH__ALLOWED_CLIENTS", WRITER_ID)
        .env("API__DATABASE__PATH", dir.join("tasks.db"))
        .stdout(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(&ready)
            && let Ok(body) = serde_json::from_str::<Value>(&text)
        {
            return Running {
                child,
                url: body["url"].as_str().expect("url").to_owned(),
            };
        }
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!("api-service did not become ready within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_write_load_loses_no_acknowledged_task_and_sigterm_exits_0_on_sqlite() {
    kill_9_then_sigterm(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_write_load_loses_no_acknowledged_task_and_sigterm_exits_0_on_postgres() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    kill_9_then_sigterm(db).await;
}

async fn kill_9_then_sigterm(db: Db) {
    let idp = TestIdp::start().await;
    idp.serve_discovery().await;
    let key = TestKey::generate("k1");
    idp.serve_jwks(&[&key], 2).await;
    let dir = TempDir::new("durability");
    // The binary runs on the wall clock.
    let now = shared::clock::system().unix();
    let writer = key.mint(now, |c| {
        c["azp"] = json!(WRITER_ID);
        c["roles"] = json!(["Tasks.ReadWrite.All"]);
    });

    let mut first = start(&idp.server.uri(), &dir.0, &db);
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let client = reqwest::Client::new();
    let mut writers = Vec::new();
    for w in 0..8 {
        let (client, url, token, acked) = (
            client.clone(),
            first.url.clone(),
            writer.clone(),
            acknowledged.clone(),
        );
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let sent = client
                    .post(format!("{url}/api/tasks"))
                    .bearer_auth(&token)
                    .json(&json!({ "title": format!("w{w}-{i}") }))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 201 => {
                        let task: Value = r.json().await.expect("json");
                        acked
                            .lock()
                            .expect("lock")
                            .push(task["id"].as_str().expect("id").to_owned());
                    }
                    Ok(r) => panic!("unexpected status {}", r.status()),
                    Err(_) => break, // the server died mid-request: not acknowledged
                }
            }
        }));
    }
    while acknowledged.lock().expect("lock").len() < 300 {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.child.kill().expect("SIGKILL");
    first.child.wait().expect("reaped");
    for writer in writers {
        writer.await.expect("writer ends without panicking");
    }
    let acked = acknowledged.lock().expect("lock").clone();

    let mut second = start(&idp.server.uri(), &dir.0, &db);
    let mut missing = Vec::new();
    for id in &acked {
        let status = client
            .get(format!("{}/api/tasks/{id}", second.url))
            .bearer_auth(&writer)
            .send()
            .await
            .expect("answers")
            .status();
        if status != 200 {
            missing.push((id.clone(), status));
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged tasks lost: {missing:?}",
        missing.len(),
        acked.len()
    );
    println!(
        "resilience: kill -9 under write load on {}: {} creates acknowledged (201) by 8 writers \
         before SIGKILL, {} of them found after restart, {} lost",
        db.name(),
        acked.len(),
        acked.len() - missing.len(),
        missing.len()
    );

    let status = Command::new("kill")
        .args(["-TERM", &second.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let exit = second.child.wait().expect("exits");
    assert_eq!(exit.code(), Some(0), "SIGTERM is a clean stop");
    println!(
        "resilience: SIGTERM after the restart on {}: exit status 0",
        db.name()
    );
    if let Db::Postgres(url) = &db {
        let log = std::fs::read_to_string(dir.0.join("api.log")).expect("log");
        assert!(
            !log.contains(mesh_tests::postgres::PASSWORD),
            "the password is in the log"
        );
        let masked = api_service::settings::mask_url(url);
        assert!(log.contains(&masked), "the masked URL is logged: {log}");
    }
}
