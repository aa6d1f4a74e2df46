//! The whole mesh in one process: the real Entra emulator, the real tasks API and real caller
//! daemons (one per identity), each built from its own crate's `Application` with the settings a
//! deployment would give it. Nothing here re-implements a service; this crate only wires them
//! together, and narrates what they log (see [`narrate`]).
//!
//! The launcher binary (`cargo run -p mesh`) and the end-to-end tests (the `tests` crate) both
//! start the mesh through [`Mesh::start`].

pub mod narrate;

use anyhow::Context;
use caller_service::settings::{
    IdentityConfig, JobSettings, OverlapPolicy, SidecarUpstreamSettings, TokenManagerSettings,
};
use shared::clock::SharedClock;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The demo directory's identities, generated from the directory file the emulator serves.
pub use entra_emulator::demo;
use entra_emulator::demo::{TENANT, ada, cert_job, reports_api, tasks_api, tasks_cli};
use entra_emulator::demo::{archiver_job, reader_job, stranger_job, writer_job};
/// The scope every job of a mesh caller asks for: the tasks API's `.default`.
pub const API_SCOPE: &str = tasks_api::SCOPE;

/// The emulator's demo directory, which every default here follows.
pub fn demo_directory() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../entra-emulator/demo/directory.toml")
}

/// One caller daemon: an identity from the demo directory and its jobs. Not `Debug`: it may hold
/// a secret.
#[derive(Clone)]
pub struct CallerSpec {
    pub name: &'static str,
    pub client_id: &'static str,
    pub credential: Credential,
    /// On the API's client allow-list.
    pub allowed: bool,
    pub jobs: Vec<JobSpec>,
}

/// How a caller proves who it is.
#[derive(Clone)]
pub enum Credential {
    /// A client secret: DEMO value from the emulator's directory; never logged.
    Secret(&'static str),
    /// No secret at all: workload identity. The mesh's projector keeps a projected token of this
    /// service account fresh in a file, as the kubelet does in a pod, and the caller exchanges it
    /// through the app's federated credential.
    WorkloadIdentity(entra_emulator::cluster::ServiceAccount),
}

impl CallerSpec {
    /// Its client secret, if it has one.
    pub fn secret(&self) -> Option<&'static str> {
        match self.credential {
            Credential::Secret(secret) => Some(secret),
            Credential::WorkloadIdentity(_) => None,
        }
    }
}

/// The service account whose tokens `archiver-job`'s federated credential trusts, read from that
/// credential's subject (`system:serviceaccount:<namespace>:<name>`) in the demo directory.
pub fn archiver_service_account() -> entra_emulator::cluster::ServiceAccount {
    let subject = archiver_job::FEDERATED_SUBJECT;
    let (namespace, name) = subject
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
        .unwrap_or(("jobs", "archiver"));
    entra_emulator::cluster::ServiceAccount {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    }
}

/// The services a mesh job can call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// The tasks API (Rust, checks tokens itself).
    Tasks,
    /// The reports service (Python, no token code) behind entra-gateway.
    Reports,
}

impl Service {
    /// The scope a job asks for to call it: the service's `.default`.
    pub fn scope(self) -> &'static str {
        match self {
            Service::Tasks => tasks_api::SCOPE,
            Service::Reports => reports_api::SCOPE,
        }
    }

    /// What the narration adds after a job's request line to say where it went.
    pub fn via(self) -> &'static str {
        match self {
            Service::Tasks => "",
            Service::Reports => " (reports, via the gateway)",
        }
    }
}

#[derive(Debug, Clone)]
pub struct JobSpec {
    pub name: &'static str,
    pub service: Service,
    pub method: &'static str,
    /// Path on the service, e.g. `/api/tasks`.
    pub path: &'static str,
    pub body: Option<serde_json::Value>,
    pub every: Duration,
    pub success_status: Vec<u16>,
}

impl JobSpec {
    pub fn get(name: &'static str, path: &'static str, every: Duration) -> Self {
        Self {
            name,
            service: Service::Tasks,
            method: "GET",
            path,
            body: None,
            every,
            success_status: vec![],
        }
    }

    /// A GET of `path` on the reports service, through the gateway.
    pub fn report(name: &'static str, path: &'static str, every: Duration) -> Self {
        Self {
            service: Service::Reports,
            ..Self::get(name, path, every)
        }
    }
}

/// The callers of the demo: a reader, a writer, an app the API does not allow, and a secretless
/// archiver on workload identity.
pub fn demo_callers(every: Duration) -> Vec<CallerSpec> {
    vec![
        CallerSpec {
            name: "reader",
            client_id: reader_job::CLIENT_ID,
            credential: Credential::Secret(reader_job::SECRET),
            allowed: true,
            jobs: vec![JobSpec::get("list-tasks", "/api/tasks?limit=5", every)],
        },
        CallerSpec {
            name: "writer",
            client_id: writer_job::CLIENT_ID,
            credential: Credential::Secret(writer_job::SECRET),
            allowed: true,
            jobs: vec![JobSpec {
                name: "create-task",
                service: Service::Tasks,
                method: "POST",
                path: "/api/tasks",
                body: Some(serde_json::json!({ "title": "nightly import" })),
                every: every + every / 2,
                success_status: vec![201],
            }],
        },
        CallerSpec {
            name: "stranger",
            client_id: stranger_job::CLIENT_ID,
            credential: Credential::Secret(stranger_job::SECRET),
            allowed: false,
            jobs: vec![JobSpec::get("peek-tasks", "/api/tasks?limit=5", every * 2)],
        },
        CallerSpec {
            name: "archiver",
            client_id: archiver_job::CLIENT_ID,
            credential: Credential::WorkloadIdentity(archiver_service_account()),
            allowed: true,
            jobs: vec![JobSpec::get(
                "archive-scan",
                "/api/tasks?limit=5",
                every * 5 / 2,
            )],
        },
    ]
}

pub struct MeshOptions {
    /// The emulator's keys and CA, and the API's database, live under here.
    pub data_dir: PathBuf,
    /// 0 picks a free port (tests).
    pub emulator_port: u16,
    pub api_port: u16,
    /// The emulator draws each token's lifetime from this range (seconds). Entra's is
    /// 3600–5400; the demo shortens it so early refreshes happen while you watch.
    pub token_lifetime_secs: (i64, i64),
    pub callers: Vec<CallerSpec>,
    /// The callers' refresh tuning (half-life refresh, margins).
    pub token_manager: TokenManagerSettings,
    /// The one clock every service of the mesh reads (the emulator's token times, the API's
    /// validation, the callers' refreshes and schedules): the real one unless a test injects its
    /// own.
    pub clock: SharedClock,
    /// The emulator's admin API (key rotation, fault injection; loopback only): for tests.
    pub admin: bool,
    /// The Python reports service behind entra-gateway, when wanted (see
    /// [`MeshOptions::add_reports`]).
    pub reports: Option<ReportsOptions>,
    /// The reader's token sidecar and the Python app that uses it, when wanted (see
    /// [`MeshOptions::add_sidecar`]).
    pub sidecar: Option<SidecarOptions>,
}

/// The caller that hosts the token sidecar: its identity is the one the app borrows.
pub const SIDECAR_HOST: &str = "reader";

/// The inventory app: a Python program (standard library only, no token code) calling the tasks
/// API and the reports service through the reader's token sidecar, and taking a token from its
/// managed-identity endpoint as an Azure SDK would.
#[derive(Debug, Clone)]
pub struct SidecarOptions {
    /// The Python 3 interpreter that runs `mesh/apps/inventory.py`.
    pub python: PathBuf,
    /// The sidecar's port (0: any free port).
    pub port: u16,
    /// The app calls this often (real time: it is its own process).
    pub every: Duration,
}

/// `mesh/apps/inventory.py`, the app with no token code.
pub fn inventory_program() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("apps/inventory.py")
}

/// The reports service: a Python program (standard library only, no token code) behind
/// entra-gateway, which checks the callers' tokens and passes their identity on in headers.
#[derive(Debug, Clone)]
pub struct ReportsOptions {
    /// The Python 3 interpreter that runs `mesh/reports/reports.py`.
    pub python: PathBuf,
    /// The gateway's port (0: any free port). The Python service listens on a free loopback
    /// port of its own, reachable only by what runs on this machine.
    pub gateway_port: u16,
}

/// `mesh/reports/reports.py`, the reports service.
pub fn reports_program() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("reports/reports.py")
}

/// The first `python3` on `PATH`, if any.
pub fn find_python() -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("python3"))
        .find(|path| path.is_file())
}

impl MeshOptions {
    /// The demo: fixed ports, Entra's token lifetimes (the launcher shortens them), jobs every
    /// `every`, no admin API.
    pub fn demo(data_dir: PathBuf, every: Duration) -> Self {
        Self {
            data_dir,
            emulator_port: 8443,
            api_port: 8080,
            token_lifetime_secs: (3600, 5400),
            callers: demo_callers(every),
            token_manager: TokenManagerSettings::default(),
            clock: shared::clock::system(),
            admin: false,
            reports: None,
            sidecar: None,
        }
    }

    /// Gives the reader a token sidecar (on port 9091 unless changed) and runs the inventory app,
    /// with `python`, next to it: a caller with no Entra code, calling every `every`.
    pub fn add_sidecar(&mut self, python: PathBuf, every: Duration) {
        self.sidecar = Some(SidecarOptions {
            python,
            port: 9091,
            every,
        });
    }

    /// Adds the reports service behind the gateway (on port 8090 unless changed), run by
    /// `python`, and two jobs that call it: the reader's daily report (it holds `Reports.Read`)
    /// and the stranger's, which the gateway refuses as the API does (`client_not_allowed`).
    pub fn add_reports(&mut self, python: PathBuf) {
        let every = self
            .callers
            .iter()
            .flat_map(|c| &c.jobs)
            .map(|j| j.every)
            .min()
            .unwrap_or(Duration::from_secs(10));
        for caller in &mut self.callers {
            match caller.name {
                "reader" => {
                    caller
                        .jobs
                        .push(JobSpec::report("daily-report", "/reports/daily", every * 2))
                }
                "stranger" => {
                    caller
                        .jobs
                        .push(JobSpec::report("peek-report", "/reports/daily", every * 3))
                }
                _ => {}
            }
        }
        self.reports = Some(ReportsOptions {
            python,
            gateway_port: 8090,
        });
    }
}

/// The running emulator. It can be stopped and started again on the same port and data
/// directory (same keys, same CA), as a restarted identity provider would be.
pub struct Emulator {
    pub url: String,
    pub ca: PathBuf,
    pub state: actix_web::web::Data<entra_emulator::state::AppState>,
    handle: actix_web::dev::ServerHandle,
    running: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    settings: entra_emulator::settings::EmulatorSettings,
    clock: SharedClock,
}

impl Emulator {
    async fn start(
        settings: entra_emulator::settings::EmulatorSettings,
        clock: SharedClock,
    ) -> anyhow::Result<Self> {
        let app = entra_emulator::Application::build_with_clock(settings.clone(), clock.clone())
            .await
            .context("entra-emulator")?;
        let mut settings = settings;
        // A restart must come back on the port first bound, where the callers look for it.
        settings.server.https_port = app.https_addr().port();
        Ok(Self {
            url: app.public_url().to_owned(),
            ca: app.ca_cert_path().clone(),
            state: app.state(),
            handle: app.handle(),
            settings,
            clock,
            running: Some(tokio::spawn(app.run_until_stopped())),
        })
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.halt().await
    }

    async fn halt(&mut self) -> anyhow::Result<()> {
        self.handle.stop(true).await;
        if let Some(running) = self.running.take() {
            running.await.context("emulator task")??;
        }
        Ok(())
    }

    /// Stops the emulator and starts it again on the same port from its data directory (same
    /// signing keys, same CA), as a restarted identity provider would come back.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.halt().await?;
        *self = Self::start(self.settings.clone(), self.clock.clone()).await?;
        Ok(())
    }
}

pub struct Api {
    pub url: String,
    validator: Arc<entra_auth::Validator>,
    handle: actix_web::dev::ServerHandle,
    running: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Api {
    /// Fetches of the tenants' discovery documents and JWKS so far (`api_jwks_fetches_total`).
    pub fn jwks_fetches(&self) -> u64 {
        self.validator
            .keys()
            .metrics
            .fetches
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The outcomes of a job run that went ahead (every one but `skipped`).
pub const FINISHED: [&str; 3] = ["success", "failure", "error"];

pub struct Caller {
    pub name: &'static str,
    pub client_id: &'static str,
    pub jobs: Vec<JobSpec>,
    /// The operator endpoint: `/healthz`, `/readyz`, `/metrics`.
    pub url: String,
    /// The token sidecar's URL, on the caller that hosts it.
    pub sidecar: Option<String>,
    pub tokens: caller_service::token_manager::TokenManager,
    pub metrics: caller_service::metrics::Metrics,
    stop: caller_service::startup::ShutdownHandle,
    running: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Caller {
    /// Runs of `job` so far with `outcome` (`success`, `failure`, `error`, `skipped`).
    pub fn runs(&self, job: &str, outcome: &str) -> u64 {
        self.metrics
            .job_runs
            .with_label_values(&[job, outcome])
            .get()
    }

    /// Runs of all this caller's jobs with `outcome`.
    pub fn all_runs(&self, outcome: &str) -> u64 {
        self.jobs
            .iter()
            .map(|job| self.runs(job.name, outcome))
            .sum()
    }

    /// Token requests this caller sent to the identity provider, whatever the answer. From the
    /// text exposition: the `status` label's values are whatever the identity provider answered.
    pub fn idp_requests(&self) -> u64 {
        sum_samples(&self.metrics.render(), "caller_idp_requests_total", "")
    }

    /// Tokens this caller obtained (at start, by a caller, or refreshed in the background), for
    /// every scope its jobs use.
    pub fn tokens_acquired(&self) -> u64 {
        let mut scopes: Vec<_> = self.jobs.iter().map(|job| job.service.scope()).collect();
        scopes.sort_unstable();
        scopes.dedup();
        scopes
            .into_iter()
            .map(|scope| {
                self.metrics
                    .acquisitions
                    .with_label_values(&[scope, "ok", "ok"])
                    .get()
            })
            .sum()
    }
}

/// The reports service and the gateway in front of it.
pub struct Reports {
    /// The gateway's URL: the only way in.
    pub url: String,
    /// The Python service's own loopback URL (for tests that check it is never called directly).
    pub upstream: String,
    /// Every line the Python service printed: one per request, naming the app the gateway said
    /// called.
    pub lines: Lines,
    handle: actix_web::dev::ServerHandle,
    running: tokio::task::JoinHandle<std::io::Result<()>>,
    process: PythonService,
}

/// The Python process; killed when dropped, so that no path out of the mesh leaves it running.
struct PythonService(std::process::Child);

/// Every line a Python service printed after its first.
pub type Lines = Arc<std::sync::Mutex<Vec<String>>>;

impl PythonService {
    /// Starts `python program args… --exit-with-stdin` with `env` added. Its first stdout line
    /// comes through the returned channel; every later one goes to `log` and into the returned
    /// lines.
    fn spawn(
        python: &Path,
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        log: fn(&str),
    ) -> anyhow::Result<(Self, Lines, tokio::sync::oneshot::Receiver<Option<String>>)> {
        use std::io::BufRead as _;
        let mut command = std::process::Command::new(python);
        command
            .arg(program)
            .args(args)
            .arg("--exit-with-stdin")
            .envs(env.iter().copied())
            // Its stdin is a pipe only this process holds: however the mesh ends, a kill -9
            // included, the pipe closes and the service exits.
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        // Its own process group: Ctrl-C in the terminal reaches the mesh only, which stops the
        // others in order before this one.
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .spawn()
            .with_context(|| format!("starting {} {}", python.display(), program.display()))?;
        let mut process = Self(child);
        let stdout = process
            .0
            .stdout
            .take()
            .with_context(|| format!("the stdout of {}", program.display()))?;
        let (first_tx, first_rx) = tokio::sync::oneshot::channel();
        let lines: Lines = Arc::default();
        let seen = lines.clone();
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            let _ = first_tx.send(lines.next().and_then(Result::ok));
            for line in lines.map_while(Result::ok) {
                log(&line);
                if let Ok(mut seen) = seen.lock() {
                    seen.push(line);
                }
            }
        });
        Ok((process, lines, first_rx))
    }
}

impl Drop for PythonService {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Reports {
    async fn start(
        options: &ReportsOptions,
        emulator: &Emulator,
        allowed_clients: Vec<String>,
        clock: SharedClock,
    ) -> anyhow::Result<Self> {
        let (process, lines, first) = PythonService::spawn(
            &options.python,
            &reports_program(),
            &["--host", "127.0.0.1", "--port", "0"],
            &[],
            |line| tracing::info!(target: "mesh::reports", "{line}"),
        )?;
        let first = tokio::time::timeout(Duration::from_secs(10), first)
            .await
            .context("the reports service did not say where it listens within 10 s")?
            .ok()
            .flatten()
            .context("the reports service exited before listening (see its error above)")?;
        let upstream = first
            .strip_prefix("listening on ")
            .map(|address| format!("http://{address}"))
            .with_context(|| format!("the reports service said `{first}`, not where it listens"))?;

        let mut settings = entra_gateway::settings::GatewaySettings::default();
        settings.server.port = options.gateway_port;
        settings.server.workers = Some(1);
        settings.server.handle_signals = false;
        settings.server.shutdown_timeout_secs = 5;
        settings.upstream = Some(entra_gateway::settings::UpstreamSettings {
            url: upstream.clone(),
            ..Default::default()
        });
        settings.entra.authority_host = emulator.url.clone();
        settings.entra.tenants = vec![TENANT.into()];
        settings.auth.audiences = vec![
            reports_api::CLIENT_ID.into(),
            reports_api::APP_ID_URI.into(),
        ];
        settings.auth.allowed_clients = allowed_clients;
        settings.http.extra_ca_file = Some(emulator.ca.clone());
        settings.routes = vec![entra_gateway::policy::RuleSettings {
            method: "GET".into(),
            path: "/reports/**".into(),
            roles: Some(vec!["Reports.Read".into()]),
            any_allowed_app: false,
        }];
        let gateway = entra_gateway::Gateway::build_with_clock(settings, clock)
            .await
            .context("entra-gateway")?;
        Ok(Self {
            url: format!("http://{}", gateway.address()),
            upstream,
            lines,
            handle: gateway.handle(),
            running: tokio::spawn(gateway.run_until_stopped()),
            process,
        })
    }

    /// The gateway first (in-flight requests finish), then the Python service.
    async fn stop(self) -> anyhow::Result<()> {
        self.handle.stop(true).await;
        let stopped = match self.running.await {
            Ok(result) => result.context("entra-gateway"),
            Err(error) => Err(anyhow::Error::from(error).context("entra-gateway")),
        };
        drop(self.process);
        stopped
    }
}

/// The inventory app (Python, no token code) next to the reader's token sidecar.
pub struct Inventory {
    /// Every line it printed after its first: one per call, with its status.
    pub lines: Lines,
    /// Its first line (the first call it made).
    pub first: String,
    process: PythonService,
}

impl Inventory {
    async fn start(
        options: &SidecarOptions,
        sidecar: &str,
        api: &str,
        identity_header: &str,
        reports: bool,
    ) -> anyhow::Result<Self> {
        let endpoint = format!("{sidecar}/msi/token");
        let every = format!("{}", options.every.as_secs_f64());
        let mut args = vec![
            "--sidecar",
            sidecar,
            "--api",
            api,
            "--every",
            every.as_str(),
        ];
        if reports {
            args.push("--reports");
        }
        let (process, lines, first) = PythonService::spawn(
            &options.python,
            &inventory_program(),
            &args,
            &[
                ("IDENTITY_ENDPOINT", endpoint.as_str()),
                ("IDENTITY_HEADER", identity_header),
            ],
            |line| tracing::info!(target: "mesh::inventory", "{line}"),
        )?;
        let first = tokio::time::timeout(Duration::from_secs(30), first)
            .await
            .context("the inventory app made no call within 30 s")?
            .ok()
            .flatten()
            .context("the inventory app exited before its first call (see its error above)")?;
        tracing::info!(target: "mesh::inventory", "{first}");
        Ok(Self {
            lines,
            first,
            process,
        })
    }

    /// Ends the app (its stdin closes and it is killed).
    pub fn stop(self) {
        drop(self.process);
    }
}

pub struct Mesh {
    pub emulator: Emulator,
    pub api: Api,
    /// The reports service behind the gateway, when [`MeshOptions::reports`] asked for it.
    pub reports: Option<Reports>,
    pub callers: Vec<Caller>,
    /// The app with no token code, when [`MeshOptions::sidecar`] asked for it.
    pub inventory: Option<Inventory>,
    /// One projector per workload-identity caller, keeping its token file fresh.
    projectors: Vec<tokio::task::JoinHandle<()>>,
    pub http: reqwest::Client,
}

impl Mesh {
    /// Starts the emulator, then the API (which loads the emulator's keys), then the callers
    /// (which acquire their tokens at once and run their jobs on schedule).
    pub async fn start(options: MeshOptions) -> anyhow::Result<Self> {
        let emulator_dir = options.data_dir.join("emulator");
        std::fs::create_dir_all(&emulator_dir)
            .with_context(|| format!("creating {}", emulator_dir.display()))?;
        let mut settings = entra_emulator::settings::EmulatorSettings {
            data_dir: emulator_dir,
            directory: demo_directory(),
            ..Default::default()
        };
        settings.server.https_port = options.emulator_port;
        settings.server.http_port = None;
        settings.server.workers = Some(1);
        settings.server.handle_signals = false;
        settings.tokens.lifetime_min_secs = options.token_lifetime_secs.0;
        settings.tokens.lifetime_max_secs = options.token_lifetime_secs.1;
        // Loopback only (no secret): the tests rotate keys and inject faults through it.
        settings.admin.enabled = options.admin;
        let emulator = Emulator::start(settings, options.clock.clone()).await?;

        let api_dir = options.data_dir.join("api");
        std::fs::create_dir_all(&api_dir)
            .with_context(|| format!("creating {}", api_dir.display()))?;
        let mut api = api_service::ApiSettings::default();
        api.server.port = options.api_port;
        api.server.workers = Some(1);
        api.server.handle_signals = false;
        // On Ctrl-C a request still in flight gets 5 s, not a deployment's 30 s.
        api.server.shutdown_timeout_secs = 5;
        api.entra.authority_host = emulator.url.clone();
        api.entra.tenants = vec![TENANT.into()];
        api.auth.audiences = vec![tasks_api::CLIENT_ID.into(), tasks_api::APP_ID_URI.into()];
        // The allow-list: the allowed callers, and the demo's certificate job.
        let allowed: Vec<String> = options
            .callers
            .iter()
            .filter(|c| c.allowed)
            .map(|c| c.client_id.to_owned())
            .collect();
        api.auth.allowed_clients = allowed
            .iter()
            .cloned()
            .chain([cert_job::CLIENT_ID.to_owned()])
            .collect();
        api.http.extra_ca_file = Some(emulator.ca.clone());
        api.database.path = api_dir.join("tasks.db");
        let app = api_service::Application::build_with_clock(api, options.clock.clone())
            .await
            .context("api-service")?;
        let api = Api {
            url: format!("http://{}", app.address()),
            validator: app.validator(),
            handle: app.handle(),
            running: tokio::spawn(app.run_until_stopped()),
        };

        // The gateway lets in the same apps as the API; the route's role decides the rest.
        let reports = match &options.reports {
            Some(reports) => {
                Some(Reports::start(reports, &emulator, allowed, options.clock.clone()).await?)
            }
            None => None,
        };
        let urls = ServiceUrls {
            tasks: &api.url,
            reports: reports.as_ref().map(|r| r.url.as_str()),
        };
        // The secret only the sidecar and the app next to it know (IDENTITY_HEADER).
        let identity_header = format!("{:032x}", rand::random::<u128>());
        let mut callers = Vec::new();
        let mut projectors = Vec::new();
        for spec in &options.callers {
            let token_file = match &spec.credential {
                Credential::Secret(_) => None,
                Credential::WorkloadIdentity(account) => {
                    let (file, projector) = start_projector(account, &emulator, &options)
                        .with_context(|| format!("the projector of {}", spec.name))?;
                    projectors.push(projector);
                    Some(file)
                }
            };
            let caller = start_caller(
                spec,
                token_file,
                &emulator,
                &urls,
                &options,
                &identity_header,
            )
            .await
            .with_context(|| format!("caller-service ({})", spec.name))?;
            callers.push(caller);
        }
        let inventory = match (
            &options.sidecar,
            callers.iter().find_map(|c| c.sidecar.clone()),
        ) {
            (Some(sidecar), Some(url)) => Some(
                Inventory::start(sidecar, &url, &api.url, &identity_header, reports.is_some())
                    .await?,
            ),
            (Some(_), None) => anyhow::bail!("the token sidecar needs the caller `{SIDECAR_HOST}`"),
            (None, _) => None,
        };
        // Redirects are not followed: the authorize endpoint's redirect carries the code.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .tls_certs_merge(shared::http::read_ca_bundle(&emulator.ca)?)
            .build()
            .context("HTTP client trusting the emulator's CA")?;
        Ok(Self {
            emulator,
            api,
            reports,
            callers,
            inventory,
            projectors,
            http,
        })
    }

    /// Whether every job of every caller has run (to any outcome but `skipped`) at least `runs`
    /// times, each job on its own.
    pub fn every_job_ran(&self, runs: u64) -> bool {
        self.callers.iter().all(|caller| {
            caller.jobs.iter().all(|job| {
                FINISHED
                    .iter()
                    .map(|outcome| caller.runs(job.name, outcome))
                    .sum::<u64>()
                    >= runs
            })
        })
    }

    /// How many projectors run: each waits on the mesh's clock between two writes.
    pub fn projectors(&self) -> usize {
        self.projectors.len()
    }

    pub fn caller(&self, name: &str) -> &Caller {
        self.callers
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no caller named {name}"))
    }

    /// Stops the callers first (they finish running jobs), then the gateway and the reports
    /// service, then the API, then the emulator; every one of them, whatever happens to the
    /// others, and reports the first error.
    pub async fn stop(self) -> anyhow::Result<()> {
        // The app first: its sidecar is about to go.
        if let Some(inventory) = self.inventory {
            inventory.stop();
        }
        for caller in &self.callers {
            caller.stop.shutdown();
        }
        for projector in &self.projectors {
            projector.abort();
        }
        let mut outcomes = Vec::new();
        for caller in self.callers {
            let outcome = match caller.running.await {
                Ok(result) => result,
                Err(error) => Err(error.into()),
            };
            outcomes.push(outcome.with_context(|| format!("caller {}", caller.name)));
        }
        if let Some(reports) = self.reports {
            outcomes.push(reports.stop().await);
        }
        self.api.handle.stop(true).await;
        outcomes.push(match self.api.running.await {
            Ok(result) => result.context("api-service"),
            Err(error) => Err(anyhow::Error::from(error).context("api-service")),
        });
        outcomes.push(self.emulator.stop().await);
        outcomes.into_iter().collect()
    }

    /// A client-credentials token straight from the emulator's token endpoint.
    pub async fn app_token(&self, client_id: &str, secret: &str) -> anyhow::Result<String> {
        app_token(&self.http, &self.emulator.url, client_id, secret).await
    }

    /// Ada's user-delegated token for the API (see [`user_token`]): the kind the API must refuse.
    pub async fn user_token(&self) -> anyhow::Result<String> {
        user_token(&self.http, &self.emulator.url).await
    }

    /// GETs `path` on the API with `token`; returns the status and the problem+json `reason`, if
    /// any.
    pub async fn call_api(&self, path: &str, token: &str) -> anyhow::Result<(u16, Option<String>)> {
        let response = self
            .http
            .get(format!("{}{path}", self.api.url))
            .bearer_auth(token)
            .send()
            .await?;
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        Ok((status, body["reason"].as_str().map(str::to_owned)))
    }
}

/// Sums the samples of `name` in a Prometheus text exposition whose labels contain `having`.
pub fn sum_samples(exposition: &str, name: &str, having: &str) -> u64 {
    exposition
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
                && line.contains(having)
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|value| value as u64)
        .sum()
}

/// A client-credentials token for the API from the token endpoint of `authority` (the emulator's
/// URL), for the demo tenant.
pub async fn app_token(
    http: &reqwest::Client,
    authority: &str,
    client_id: &str,
    secret: &str,
) -> anyhow::Result<String> {
    let response = http
        .post(format!("{authority}/{TENANT}/oauth2/v2.0/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            ("scope", API_SCOPE),
        ])
        .send()
        .await?;
    access_token(response).await
}

/// Ada signs in to the public CLI client at `authority` with the authorization-code flow and
/// PKCE, and gets a user-delegated token for the API. `http` must not follow redirects: the
/// authorize endpoint's redirect carries the code.
pub async fn user_token(http: &reqwest::Client, authority: &str) -> anyhow::Result<String> {
    use base64::Engine as _;
    use rand::RngCore as _;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let verifier = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let challenge = entra_emulator::codes::s256(&verifier);
    let redirect = http
        .get(format!("{authority}/{TENANT}/oauth2/v2.0/authorize"))
        .query(&[
            ("client_id", tasks_cli::CLIENT_ID),
            ("response_type", "code"),
            ("redirect_uri", tasks_cli::REDIRECT_URI),
            ("scope", "api://tasks-api/Tasks.Read"),
            ("login_hint", ada::USERNAME),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await?;
    let location = redirect
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .context("the authorize endpoint did not redirect back with a code")?;
    let code = url::Url::parse(location)?
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .context("no code in the redirect")?;
    let response = http
        .post(format!("{authority}/{TENANT}/oauth2/v2.0/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", tasks_cli::CLIENT_ID),
            ("code", code.as_str()),
            ("redirect_uri", tasks_cli::REDIRECT_URI),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await?;
    access_token(response).await
}

async fn access_token(response: reqwest::Response) -> anyhow::Result<String> {
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    match body["access_token"].as_str() {
        Some(token) if status.is_success() => Ok(token.to_owned()),
        _ => anyhow::bail!(
            "token endpoint answered {status}: {}",
            body["error_description"]
                .as_str()
                .unwrap_or("no access_token")
        ),
    }
}

/// Where each service's jobs go.
struct ServiceUrls<'a> {
    tasks: &'a str,
    reports: Option<&'a str>,
}

/// Writes `account`'s projected token to `{data_dir}/projected/{namespace}/{name}/token` now, and
/// starts the task that writes it again at 75% of each token's life (a token lives as long as the
/// mesh's shortest app token, so rotations show in the demo). Returns the file and the task.
fn start_projector(
    account: &entra_emulator::cluster::ServiceAccount,
    emulator: &Emulator,
    options: &MeshOptions,
) -> anyhow::Result<(PathBuf, tokio::task::JoinHandle<()>)> {
    use entra_emulator::cluster::{MIN_LIFETIME_SECS, Projector, TOKEN_EXCHANGE_AUDIENCE};
    let out = options
        .data_dir
        .join("projected")
        .join(&account.namespace)
        .join(&account.name)
        .join("token");
    let projector = Projector {
        account: account.clone(),
        audience: TOKEN_EXCHANGE_AUDIENCE.into(),
        lifetime_secs: options.token_lifetime_secs.0.max(MIN_LIFETIME_SECS),
        out: out.clone(),
    };
    let clock = options.clock.clone();
    let state = emulator.state.clone();
    projector.write_once(&state.cluster, clock.unix())?;
    tracing::info!(
        target: "mesh::projector",
        "wrote {}'s projected service-account token to {} (issuer {}, valid {}, rewritten at 75%)",
        account.subject(),
        out.display(),
        state.cluster.issuer(),
        narrate::duration(projector.lifetime_secs as u64)
    );
    let task = tokio::spawn(async move {
        loop {
            let next = clock.now() + projector.refresh_after();
            clock.sleep_until(next).await;
            match projector.write_once(&state.cluster, clock.unix()) {
                Ok(_) => tracing::info!(
                    target: "mesh::projector",
                    "rotated {}'s projected token: the caller reads the new one at its next token request",
                    projector.account.subject()
                ),
                Err(error) => tracing::warn!(
                    target: "mesh::projector",
                    "cannot rewrite {}: {error:#}",
                    projector.out.display()
                ),
            }
        }
    });
    Ok((out, task))
}

async fn start_caller(
    spec: &CallerSpec,
    token_file: Option<PathBuf>,
    emulator: &Emulator,
    urls: &ServiceUrls<'_>,
    options: &MeshOptions,
    identity_header: &str,
) -> anyhow::Result<Caller> {
    let mut settings = caller_service::settings::Settings {
        identity: IdentityConfig {
            tenant_id: Some(TENANT.into()),
            client_id: Some(spec.client_id.into()),
            client_secret: spec.secret().map(Into::into),
            federated_token_file: token_file,
            authority_host: Some(emulator.url.clone()),
            ..Default::default()
        },
        token_manager: options.token_manager.clone(),
        ..Default::default()
    };
    settings.http.extra_ca_file = Some(emulator.ca.clone());
    settings.server.port = 0;
    settings.server.handle_signals = false;
    settings.jobs = spec
        .jobs
        .iter()
        .map(|job| {
            let base = match job.service {
                Service::Tasks => urls.tasks,
                Service::Reports => urls.reports.with_context(|| {
                    format!(
                        "job {} calls the reports service, which this mesh does not run",
                        job.name
                    )
                })?,
            };
            Ok(JobSettings {
                name: job.name.into(),
                schedule: None,
                interval_secs: Some(job.every.as_secs().max(1)),
                jitter_secs: 0,
                method: job.method.into(),
                url: format!("{base}{}", job.path),
                body: job.body.clone(),
                scope: job.service.scope().into(),
                timeout_secs: 10,
                success_status: job.success_status.clone(),
                overlap: OverlapPolicy::Skip,
                retry: true,
                external_id_field: None,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    if let Some(sidecar) = options
        .sidecar
        .as_ref()
        .filter(|_| spec.name == SIDECAR_HOST)
    {
        settings.sidecar.port = sidecar.port;
        settings.sidecar.workers = 1;
        settings.sidecar.upstreams = vec![SidecarUpstreamSettings {
            name: "tasks".into(),
            url: urls.tasks.to_owned(),
            scope: Service::Tasks.scope().into(),
            timeout_secs: 10,
        }];
        if let Some(reports) = urls.reports {
            settings.sidecar.upstreams.push(SidecarUpstreamSettings {
                name: "reports".into(),
                url: reports.to_owned(),
                scope: Service::Reports.scope().into(),
                timeout_secs: 10,
            });
        }
        settings.sidecar.resources = vec![tasks_api::APP_ID_URI.into()];
        settings.sidecar.identity_header = Some(identity_header.into());
    }
    let app =
        caller_service::Application::build_with_clock(settings, options.clock.clone()).await?;
    Ok(Caller {
        name: spec.name,
        client_id: spec.client_id,
        jobs: spec.jobs.clone(),
        url: format!("http://127.0.0.1:{}", app.port()),
        sidecar: app
            .sidecar_port()
            .map(|port| format!("http://127.0.0.1:{port}")),
        tokens: app.tokens().clone(),
        metrics: app.metrics().clone(),
        stop: app.shutdown_handle(),
        running: tokio::spawn(app.run_until_stopped()),
    })
}
