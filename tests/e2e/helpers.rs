use caller_service::token_manager::CachedToken;
use mesh::{API_SCOPE, CallerSpec, Mesh, MeshOptions};
use mesh_tests::{TempDir, eventually};
use shared::clock::ManualClock;
use std::sync::Arc;
use std::time::Duration;

/// Every job of the demo callers runs this often (on the callers' manual clock).
pub const EVERY: Duration = Duration::from_secs(60);

pub struct TestMesh {
    pub mesh: Mesh,
    pub clock: Arc<ManualClock>,
    _dir: TempDir,
}

/// The demo mesh on port 0 with every job every [`EVERY`], the callers on a manual clock.
pub async fn start() -> TestMesh {
    start_with(every_tick_callers(), |_| {}).await
}

/// The demo's callers with every job every [`EVERY`]: the demo staggers them; here every job
/// runs on every tick of the clock.
pub fn every_tick_callers() -> Vec<CallerSpec> {
    let mut callers = mesh::demo_callers(EVERY);
    for job in callers.iter_mut().flat_map(|c| c.jobs.iter_mut()) {
        job.every = EVERY;
    }
    callers
}

/// The emulator's token endpoint answers 503 to everything for the next 24 hours (its fault
/// injection).
pub fn token_endpoint_down(test: &TestMesh) {
    use entra_emulator::faults::{FaultKind, FaultRequest, FaultTarget};
    let state = &test.mesh.emulator.state;
    state
        .faults
        .add(
            FaultRequest {
                target: FaultTarget::Token,
                kind: FaultKind::Unavailable,
                seconds: Some(24 * 3600),
                requests: None,
            },
            state.now(),
        )
        .expect("fault accepted");
}

pub async fn start_with(
    callers: Vec<CallerSpec>,
    customise: impl FnOnce(&mut MeshOptions),
) -> TestMesh {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
    let dir = TempDir::new("e2e");
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
    let mut options = MeshOptions::demo(dir.0.clone(), EVERY);
    options.emulator_port = 0;
    options.api_port = 0;
    options.callers = callers;
    options.clock = clock.clone();
    options.admin = true;
    customise(&mut options);
    let mesh = Mesh::start(options).await.expect("the mesh starts");
    let test = TestMesh {
        mesh,
        clock,
        _dir: dir,
    };
    // Ready once every caller holds its token: until then an acquisition's own timeout is one
    // of the clock's sleepers, and moving the clock would time it out.
    eventually("every caller has its token", || async {
        test.mesh.callers.iter().all(|c| {
            let scopes = c.tokens.status();
            !scopes.is_empty() && scopes.iter().all(|s| s.has_token)
        })
    })
    .await;
    test
}

impl TestMesh {
    /// Moves the callers' clock by `by` once every job loop and token refresher waits on it,
    /// and waits until every job has run `runs` times in all.
    ///
    /// Not while a token request is under way: its timeout also waits on this clock, and moving
    /// the clock would time out a request the emulator is still answering.
    pub async fn advance_to_run(&self, by: Duration, runs: u64) {
        // Each job's loop, and each caller's refresher per scope its jobs use.
        let waiting: usize = self
            .mesh
            .callers
            .iter()
            .map(|c| c.jobs.len() + c.tokens.status().len())
            .sum::<usize>()
            + self.mesh.projectors();
        eventually(
            "every job loop and refresher waits on the clock",
            || async {
                self.clock.sleepers() >= waiting
                    && self
                        .mesh
                        .callers
                        .iter()
                        .all(|c| c.tokens.status().iter().all(|s| !s.acquiring))
            },
        )
        .await;
        self.clock.advance(by);
        // Each job on its own: a caller's total would be met by one job while another is still
        // in flight, and the next move of the clock would time that one out.
        eventually(&format!("every job has run {runs} times"), || async {
            self.mesh.every_job_ran(runs)
        })
        .await;
    }

    /// Runs of the caller's jobs with `outcome`.
    pub fn runs(&self, name: &str, outcome: &str) -> u64 {
        self.mesh.caller(name).all_runs(outcome)
    }

    /// The token the caller `name` holds for the API.
    pub async fn token(&self, name: &str) -> Arc<CachedToken> {
        self.mesh
            .caller(name)
            .tokens
            .get_token(API_SCOPE)
            .await
            .unwrap_or_else(|error| panic!("{name} holds a token: {error}"))
    }

    /// The `kid` of the token the caller `name` holds.
    pub async fn kid_of(&self, name: &str) -> String {
        kid(self.token(name).await.secret())
    }

    /// Rotates the emulator's signing key; the new key's `kid`.
    pub async fn rotate_keys(&self) -> String {
        let state = &self.mesh.emulator.state;
        state
            .tokens
            .keys
            .rotate(state.now())
            .await
            .expect("rotates")
    }

    pub async fn api_metrics(&self) -> String {
        self.mesh
            .http
            .get(format!("{}/metrics", self.mesh.api.url))
            .send()
            .await
            .expect("api metrics")
            .text()
            .await
            .expect("body")
    }
}

/// The `kid` of a JWT's header, as the API's pre-parse reads it.
fn kid(token: &str) -> String {
    entra_auth::token::check_jws(token)
        .expect("an RS256 JWS with a kid")
        .kid
}
