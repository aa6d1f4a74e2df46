//! A real PostgreSQL for the tests, never a mock: Debian's server (`apt-get install postgresql`;
//! `.ci/run` installs it), initialised on a temporary directory and started on a free loopback
//! port, as `nobody` when the tests run as root (the server refuses root). One server per test
//! binary ([`shared`]), a fresh database per test ([`Db::postgres`]); a test that stops and
//! starts the server has its own ([`PgServer::start`]).
//!
//! Without PostgreSQL installed a test skips, saying so on stderr; with `REQUIRE_POSTGRES` set
//! (`.ci/run` sets it) it fails instead.
//!
//! Clean-up does not depend on the test process ending well: a watchdog shell holds the read
//! end of a pipe that only this process writes to, and when the pipe closes (drop, exit, or
//! `kill -9`) it stops the server (`pg_ctl stop -m immediate`) and removes its directory.

use std::io::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

/// The unprivileged account the server runs as when the tests run as root.
const SERVER_USER: &str = "nobody";

/// Which database a test's API or store uses.
#[derive(Debug, Clone)]
pub enum Db {
    /// A SQLite file in the test's own temporary directory (the default).
    Sqlite,
    /// A fresh PostgreSQL database, by URL.
    Postgres(String),
}

impl Db {
    /// A fresh database on this test binary's shared server, or `None` (the test should return)
    /// when PostgreSQL is not installed and not required.
    pub async fn postgres() -> Option<Self> {
        let server = shared()?;
        Some(Self::Postgres(server.fresh_database().await))
    }

    /// Points `settings` at this database (SQLite keeps the harness's file).
    pub fn apply(&self, settings: &mut api_service::settings::DatabaseSettings) {
        if let Self::Postgres(url) = self {
            settings.url = Some(url.clone());
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }
}

/// Debian's server binaries (`/usr/lib/postgresql/<newest>/bin`), or `None` when the test should
/// skip; panics if `REQUIRE_POSTGRES` is set and there are none.
pub fn binaries_or_skip() -> Option<PathBuf> {
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").is_file() && bin.join("pg_ctl").is_file())
        .max_by_key(|bin| {
            bin.parent()
                .and_then(|v| v.file_name())
                .and_then(|v| v.to_str())
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0)
        });
    if newest.is_none() {
        crate::skip_unless_required(
            "REQUIRE_POSTGRES",
            "PostgreSQL is not installed under /usr/lib/postgresql (apt-get install postgresql; .ci/run does)",
        );
    }
    newest
}

/// This test binary's server, started on first use and stopped by its watchdog when the process
/// ends. `None`: not installed, skip.
pub fn shared() -> Option<&'static PgServer> {
    static SHARED: OnceLock<Option<PgServer>> = OnceLock::new();
    SHARED.get_or_init(PgServer::start).as_ref()
}

/// A PostgreSQL server of the test's own.
pub struct PgServer {
    pub port: u16,
    bin: PathBuf,
    root: PathBuf,
    data: PathBuf,
    sockets: PathBuf,
    as_root: bool,
    watchdog: Mutex<Option<Child>>,
    databases: AtomicU32,
}

impl PgServer {
    /// Initialises a cluster on a new temporary directory and starts it; blocks until it accepts
    /// connections (`pg_ctl start -w`). `None`: not installed, skip.
    pub fn start() -> Option<Self> {
        let bin = binaries_or_skip()?;
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let root = std::env::temp_dir().join(format!(
            "mesh-tests-pg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        let (data, sockets) = (root.join("data"), root.join("sockets"));
        std::fs::create_dir_all(&sockets).expect("postgres temp dir");
        let as_root = std::fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false);
        let server = Self {
            port: crate::free_port(),
            bin,
            root,
            data,
            sockets,
            as_root,
            watchdog: Mutex::new(None),
            databases: AtomicU32::new(0),
        };
        if as_root {
            let status = Command::new("chown")
                .args(["-R", &format!("{SERVER_USER}:")])
                .arg(&server.root)
                .status()
                .expect("chown runs");
            assert!(status.success(), "chown of the postgres temp dir");
        }
        server.spawn_watchdog();
        let started = std::time::Instant::now();
        let initdb = server
            .as_server_user(&server.bin.join("initdb"))
            .arg("-D")
            .arg(&server.data)
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .expect("initdb runs");
        assert!(
            initdb.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        server.start_again();
        eprintln!(
            "postgres: {} on 127.0.0.1:{}, ready in {} ms",
            server.bin.display(),
            server.port,
            started.elapsed().as_millis()
        );
        Some(server)
    }

    /// A command run as the server's user.
    fn as_server_user(&self, program: &Path) -> Command {
        let mut command = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", SERVER_USER, "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        command
            .env("LC_ALL", "C")
            .current_dir(&self.root)
            .stdin(Stdio::null());
        command
    }

    fn spawn_watchdog(&self) {
        let child = self
            .as_server_user(Path::new("sh"))
            .args([
                "-c",
                "cat >/dev/null; \"$0\" -D \"$1\" stop -m immediate -w >/dev/null 2>&1; rm -rf \"$2\"",
            ])
            .arg(self.bin.join("pg_ctl"))
            .arg(&self.data)
            .arg(&self.root)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the watchdog starts");
        *self.watchdog.lock().expect("lock") = Some(child);
    }

    /// Starts the (stopped) server on its port again; returns once it accepts connections.
    pub fn start_again(&self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c max_connections=300 -c fsync=on",
            self.port,
            self.sockets.display()
        );
        let started = self
            .as_server_user(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.root.join("server.log"))
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .output()
            .expect("pg_ctl runs");
        assert!(
            started.status.success(),
            "pg_ctl start failed: {}{}\n{}",
            String::from_utf8_lossy(&started.stdout),
            String::from_utf8_lossy(&started.stderr),
            std::fs::read_to_string(self.root.join("server.log")).unwrap_or_default()
        );
    }

    /// Stops the server at once, as a crash would (`pg_ctl stop -m immediate`).
    pub fn stop_now(&self) {
        let stopped = self
            .as_server_user(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["stop", "-m", "immediate", "-w"])
            .output()
            .expect("pg_ctl runs");
        assert!(
            stopped.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&stopped.stderr)
        );
    }

    /// The URL of database `name`. It carries a password, which `trust` authentication ignores,
    /// so that the tests can check it is never logged.
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/{name}",
            PASSWORD, self.port
        )
    }

    /// A new, empty database; its URL.
    pub async fn fresh_database(&self) -> String {
        let name = format!("test_{}", self.databases.fetch_add(1, Ordering::Relaxed));
        let (client, connection) =
            tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
                .await
                .expect("the test server answers");
        let driver = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("CREATE DATABASE");
        drop(client);
        driver.await.ok();
        self.url(&name)
    }
}

/// The password in every test URL: whatever finds it in a log has found a leak.
pub const PASSWORD: &str = "never-logged-7f3a";

impl Drop for PgServer {
    /// Closing the watchdog's pipe stops the server and removes its directory; waits for that.
    fn drop(&mut self) {
        if let Ok(mut guard) = self.watchdog.lock()
            && let Some(mut child) = guard.take()
        {
            if let Some(mut stdin) = child.stdin.take() {
                stdin.flush().ok();
            }
            child.wait().ok();
        }
    }
}
