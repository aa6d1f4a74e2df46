//! `cargo run -p mesh`: the Entra emulator, the tasks API, the Python reports service behind
//! entra-gateway, and four caller daemons (a reader, a writer, an app both refuse, and an archiver with
//! no secret: workload identity, its projected token file rotating) in one
//! process, plus a user who signs in with PKCE and is turned away, all narrated for a person. Ctrl-C stops everything. `RUST_LOG` adds the services'
//! own logs on stderr.

use anyhow::Context;
use clap::Parser;
use mesh::narrate::{Cast, Narrator, duration, say};
use mesh::{Mesh, MeshOptions, sum_samples};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

#[derive(Parser)]
#[command(
    version,
    about = "Run the whole mesh locally: emulator, API, reports service behind the gateway, and callers, narrated"
)]
struct Cli {
    /// Keys, the development CA and the API's database are kept here between runs.
    #[arg(long, default_value = ".data/mesh")]
    data_dir: PathBuf,
    /// The emulator's HTTPS port (0: any free port).
    #[arg(long, default_value_t = 8443)]
    emulator_port: u16,
    /// The API's port (0: any free port).
    #[arg(long, default_value_t = 8080)]
    api_port: u16,
    /// entra-gateway's port, in front of the reports service (0: any free port).
    #[arg(long, default_value_t = 8090)]
    gateway_port: u16,
    /// The reader's token sidecar's port, used by the inventory app (0: any free port).
    #[arg(long, default_value_t = 9091)]
    sidecar_port: u16,
    /// Leave out the Python services (they need python3 on PATH): the reports service with its
    /// gateway, and the inventory app with the reader's token sidecar.
    #[arg(long)]
    no_reports: bool,
    /// The reader's job runs this often; the writer's every 1.5×, the refused app's every 2×.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    every_secs: u64,
    /// Token lifetime in seconds (drawn from [this, this × 1.25]). Entra's is 3600–5400; the
    /// default shows an early refresh every minute or so.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(i64).range(60..=69_120))]
    token_lifetime_secs: i64,
    /// A summary line this often.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    summary_secs: u64,
    /// Stop on its own once every job has run this many times (for scripts and tests).
    #[arg(long)]
    exit_after_runs: Option<u64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("mesh: starting the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mesh: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let every = Duration::from_secs(cli.every_secs);
    let mut options = MeshOptions::demo(cli.data_dir.clone(), every);
    options.emulator_port = cli.emulator_port;
    options.api_port = cli.api_port;
    let python = if cli.no_reports {
        None
    } else {
        mesh::find_python()
    };
    if let Some(python) = python {
        options.add_reports(python.clone());
        if let Some(reports) = &mut options.reports {
            reports.gateway_port = cli.gateway_port;
        }
        options.add_sidecar(python, every);
        if let Some(sidecar) = &mut options.sidecar {
            sidecar.port = cli.sidecar_port;
        }
    }
    options.token_lifetime_secs = (cli.token_lifetime_secs, cli.token_lifetime_secs * 5 / 4);
    // Refresh at half-life as in production; the 5-minute and 60-second bounds are scaled down
    // with the short demo tokens so that half-life is what shows.
    let lifetime = cli.token_lifetime_secs as u64;
    options.token_manager.refresh_before_expiry_secs = (lifetime / 4).min(300);
    options.token_manager.safety_margin_secs = (lifetime / 6).min(60);

    let services_log = std::env::var_os("RUST_LOG").is_some().then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(EnvFilter::from_default_env())
    });
    // The narrator reads only the callers' events: filtering here keeps every other library's
    // trace callsites disabled, instead of building events it would drop.
    let narrated = tracing_subscriber::filter::Targets::new()
        .with_target("caller_service", tracing::Level::INFO)
        .with_target("mesh::reports", tracing::Level::INFO)
        .with_target("mesh::inventory", tracing::Level::INFO)
        .with_target("mesh::projector", tracing::Level::INFO);
    tracing_subscriber::registry()
        .with(Narrator::new(Cast::new(&options.callers)).with_filter(narrated))
        .with(services_log)
        .try_init()
        .context("installing the log subscriber")?;

    say(
        "mesh",
        match (&options.reports, cli.no_reports) {
            (Some(_), _) => {
                "starting the Entra ID emulator, the tasks API, the reports service (Python) behind entra-gateway, four callers (one with no secret: workload identity), and a Python app with no token code behind the reader's token sidecar"
            }
            (None, true) => {
                "starting the Entra ID emulator, the tasks API and four callers, one of them secretless (--no-reports)"
            }
            (None, false) => {
                "starting the Entra ID emulator, the tasks API and four callers, one of them secretless; no python3 on PATH, so the Python services (reports behind the gateway, the app behind the sidecar) are left out"
            }
        },
    );
    let mut ports = vec![
        (cli.emulator_port, "--emulator-port", "the emulator's"),
        (cli.api_port, "--api-port", "the API's"),
    ];
    if options.reports.is_some() {
        ports.push((cli.gateway_port, "--gateway-port", "the gateway's"));
    }
    if options.sidecar.is_some() {
        ports.push((cli.sidecar_port, "--sidecar-port", "the sidecar's"));
    }
    for (port, flag, what) in ports {
        if port != 0 && std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            anyhow::bail!(
                "{what} port {port} is in use: stop what holds it, or pick another with {flag} (0: any free port)"
            );
        }
    }
    // Created once, before anything else runs: a signal is never missed, and SIGTERM (timeout,
    // systemd, an IDE's stop button) stops the mesh as Ctrl-C does.
    let mut signals = Signals::new().context("listening for SIGINT and SIGTERM")?;
    let mesh = Mesh::start(options).await?;
    say(
        "emulator",
        &format!(
            "{} (tenant {}; development CA {})",
            mesh.emulator.url,
            mesh::demo::TENANT,
            mesh.emulator.ca.display()
        ),
    );
    say(
        "api",
        &format!(
            "{} accepts app tokens of the reader, the writer and the archiver (and the cert job); /metrics, /readyz",
            mesh.api.url
        ),
    );
    if let Some(reports) = &mesh.reports {
        say(
            "gateway",
            &format!(
                "{} checks app tokens for the reports service (Python, no token code, on {}): GET /reports/** needs Reports.Read; /metrics, /readyz",
                reports.url, reports.upstream
            ),
        );
    }
    for caller in &mesh.callers {
        for job in &caller.jobs {
            let on = job.service.via();
            say(
                caller.name,
                &format!(
                    "{}: {} {}{on} every {}; operator endpoint {}/readyz",
                    job.name,
                    job.method,
                    job.path,
                    duration(job.every.as_secs()),
                    caller.url
                ),
            );
        }
    }
    if let Some(sidecar) = mesh.callers.iter().find_map(|c| c.sidecar.as_deref()) {
        let reports = if mesh.reports.is_some() {
            " and /reports/… (the gateway)"
        } else {
            ""
        };
        say(
            "sidecar",
            &format!(
                "{sidecar} forwards /tasks/… (the API){reports} with the reader's token; /msi/token serves api://tasks-api as App Service's managed-identity endpoint does. The inventory app (Python, no token code) uses both"
            ),
        );
    }
    say(
        "mesh",
        &format!(
            "tokens live {}–{} here (Entra: 60–90 min), so early refreshes show; Ctrl-C stops everything",
            duration(lifetime),
            duration(lifetime * 5 / 4)
        ),
    );

    user_is_turned_away(&mesh).await;

    let mut summary = tokio::time::interval(Duration::from_secs(cli.summary_secs));
    summary.tick().await;
    let mut check = tokio::time::interval(Duration::from_millis(200));
    let stop_reason = loop {
        tokio::select! {
            signal = signals.next() => break signal,
            _ = summary.tick() => print_summary(&mesh).await,
            _ = check.tick(), if cli.exit_after_runs.is_some() => {
                let wanted = cli.exit_after_runs.unwrap_or(0);
                if mesh.every_job_ran(wanted) {
                    break "every job ran the requested number of times";
                }
            }
        }
    };
    say(
        "mesh",
        &format!(
            "{stop_reason}: stopping the inventory app, the callers (running jobs finish), then the gateway and the reports service, then the API (in-flight requests get up to 5 s), then the emulator; a second signal quits at once"
        ),
    );
    print_summary(&mesh).await;
    tokio::select! {
        stopped = mesh.stop() => stopped?,
        signal = signals.next() => {
            say("mesh", &format!("{signal} again: quitting without waiting"));
            std::process::exit(130);
        }
    }
    say("mesh", "stopped; nothing left running");
    Ok(())
}

/// SIGINT and SIGTERM, registered once.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => "Ctrl-C",
                _ = self.terminate.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

/// Ada signs in to the public CLI app with PKCE and sends her delegated token to the API.
async fn user_is_turned_away(mesh: &Mesh) {
    let what = match mesh.user_token().await {
        Ok(token) => match mesh.call_api("/api/whoami", &token).await {
            Ok((status, Some(reason))) => format!(
                "signed in with PKCE (public client tasks-cli) and sent the user-delegated token: GET /api/whoami → {status} refused: {reason}"
            ),
            Ok((status, None)) => format!("GET /api/whoami with a user token → {status}"),
            Err(error) => format!("calling the API failed: {error:#}"),
        },
        Err(error) => format!("the PKCE sign-in failed: {error:#}"),
    };
    say("ada", &what);
}

async fn print_summary(mesh: &Mesh) {
    let mut parts = Vec::new();
    let (mut calls, mut tokens) = (0, 0);
    for caller in &mesh.callers {
        let (ok, refused, errors) = (
            caller.all_runs("success"),
            caller.all_runs("failure"),
            caller.all_runs("error"),
        );
        calls += ok + refused + errors;
        tokens += caller.tokens_acquired();
        let mut part = format!("{} {ok} ok", caller.name);
        if refused > 0 {
            part += &format!(" {refused} refused");
        }
        if errors > 0 {
            part += &format!(" {errors} failed");
        }
        parts.push(part);
    }
    let mut line = format!(
        "{} · {calls} calls on {tokens} tokens from the emulator · {}",
        parts.join(", "),
        decisions(mesh, "API", &mesh.api.url, "api_auth_outcomes_total").await
    );
    if let Some(reports) = &mesh.reports {
        line += &format!(
            " · {}",
            decisions(mesh, "gateway", &reports.url, "gateway_decisions_total").await
        );
    }
    if let Some(host) = mesh.callers.iter().find(|c| c.sidecar.is_some()) {
        let exposition = host.metrics.render();
        line += &format!(
            " · sidecar forwarded {}, served {} managed-identity tokens",
            sum_samples(&exposition, "caller_sidecar_requests_total", ""),
            sum_samples(
                &exposition,
                "caller_sidecar_identity_requests_total",
                r#"result="ok""#
            )
        );
    }
    say("summary", &line);
}

/// "`who` accepted N, refused M", from the `metric` counter (by outcome) of the service's
/// `/metrics`.
async fn decisions(mesh: &Mesh, who: &str, url: &str, metric: &str) -> String {
    match mesh.http.get(format!("{url}/metrics")).send().await {
        Ok(response) => match response.text().await {
            Ok(text) => {
                let accepted = sum_samples(&text, metric, r#"outcome="accepted""#);
                let all = sum_samples(&text, metric, "");
                format!("{who} accepted {accepted}, refused {}", all - accepted)
            }
            Err(error) => format!("{who} metrics unreadable: {error}"),
        },
        Err(error) => format!("{who} metrics unavailable: {error}"),
    }
}
