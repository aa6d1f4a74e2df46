//! The harness every test target here shares, and the service crates' binary-level tests borrow
//! (they stay in their own crates because Cargo builds a package's executables only for that
//! package's tests):
//!
//! - [`demo`]: the demo directory's identities, as the tests expect them;
//! - [`emulator`]: the real Entra emulator in-process, on port 0;
//! - [`api`]: the real API against wiremock playing Entra's discovery and JWKS, with tokens the
//!   tests mint and forge with their own keys;
//! - [`caller`]: the real caller (token manager, jobs, daemon) against wiremock playing the token
//!   endpoint and the target API;
//! - [`postgres`]: a real PostgreSQL server for the API's store, and [`on_both_backends!`] to run
//!   a test on SQLite and on PostgreSQL;
//! - [`TempDir`] and [`eventually`].

pub mod api;
pub mod caller;
pub mod demo;
pub mod emulator;
pub mod postgres;

/// The one clock the tests move, for every service (see `shared::clock`).
pub use shared::clock::{Clock, ManualClock};

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// A fresh directory, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// `label` names the directory's use, for whoever finds one a killed test left behind.
    pub fn new(label: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "mesh-tests-{label}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        // A run killed before its clean-up may have left one behind under a reused process id.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temp dir");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A test whose real component (`missing`) this machine lacks: it skips, saying so on stderr, unless
/// `required_by` is set (`.ci/run` sets every such variable), in which case it fails.
pub fn skip_unless_required(required_by: &str, missing: &str) {
    assert!(
        std::env::var_os(required_by).is_none(),
        "{required_by} is set but {missing}"
    );
    eprintln!("skipped: {missing}");
}

/// A free loopback port (bound, then released) for a server that cannot take port 0.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

/// `python3` for a test that runs a Python service, or `None` when there is none and the test
/// should skip (it says so on stderr). With `REQUIRE_PYTHON` set (`.ci/run` sets it) a missing
/// python3 fails the test instead.
pub fn python3_or_skip() -> Option<PathBuf> {
    let found = mesh::find_python();
    if found.is_none() {
        skip_unless_required(
            "REQUIRE_PYTHON",
            "no python3 is on PATH for the Python service this test runs",
        );
    }
    found
}

/// `GET url` from a Python process with no token code (urllib, standard library): the status it
/// saw. Blocking: call it from `spawn_blocking`.
pub fn python_get(python: &std::path::Path, url: &str) -> u16 {
    let output = std::process::Command::new(python)
        .args([
            "-c",
            "import sys, urllib.request, urllib.error\n\
             try:\n    print(urllib.request.urlopen(sys.argv[1], timeout=20).status)\n\
             except urllib.error.HTTPError as e:\n    print(e.code)",
            url,
        ])
        .output()
        .expect("python runs");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("python printed a status: {output:?}"))
}

/// Polls `condition`, yielding in between, for at most 10 s of real time: a safety net so that a
/// broken test fails with `what` instead of hanging, never a timing assumption.
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let met = tokio::time::timeout(Duration::from_secs(10), async {
        while !condition().await {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(met.is_ok(), "not within 10 s: {what}");
}

/// Runs each named `async fn(Db)` as two tests, `sqlite::NAME` and `postgres::NAME`, so that
/// every store behaviour is checked on both backends by one body. The PostgreSQL one gets a fresh
/// database on the binary's shared server, and skips (or fails, under `REQUIRE_POSTGRES`) when
/// PostgreSQL is not installed.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::postgres::Db::Sqlite).await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(db) = $crate::postgres::Db::postgres().await {
                        super::$name(db).await
                    }
                }
            )+
        }
    };
}
