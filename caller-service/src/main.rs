//! `caller-service run | once <job> | token --scope S [--raw]`: reads configuration, sets up
//! logging, and hands over to the library.

use caller_service::settings::Settings;
use caller_service::{Application, Core};
use clap::{Parser, Subcommand};
use shared::clock::SystemClock;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    version,
    about = "Client-credentials token manager and scheduled-jobs daemon"
)]
struct Cli {
    /// TOML settings file; `CALLER__SECTION__KEY` variables and the AZURE_* variables override it.
    #[arg(long, global = true, env = "CALLER_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: jobs on schedule, tokens refreshed in the background, operator endpoint.
    Run,
    /// Run one job now; the exit status says whether it succeeded.
    Once { job: String },
    /// Acquire a token and describe it (expiry, audience, roles, kind).
    Token {
        #[arg(long)]
        scope: String,
        /// Also print the token itself.
        #[arg(long)]
        raw: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.clone()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("caller-service: {error}");
            return ExitCode::from(2);
        }
    };
    shared::telemetry::init(&settings.log, "info");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("caller-service: starting the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, settings)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("caller-service: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run => {
            let app = Application::build(settings).await?;
            tracing::info!(port = app.port(), "operator endpoint listening");
            app.run_until_stopped().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Once { job: name } => {
            let (identity, jobs) = settings.validate()?;
            let Some(job) = jobs.into_iter().find(|j| j.name == name) else {
                anyhow::bail!("no job named `{name}` in the configuration");
            };
            let core = Core::build(&settings, identity, Arc::new(SystemClock))?;
            let report = core.runner.run(&job).await;
            core.tokens.shutdown();
            Ok(if report.succeeded() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Token { scope, raw } => {
            let identity = settings.identity.resolve()?;
            let core = Core::build(&settings, identity, Arc::new(SystemClock))?;
            let token = match core.tokens.get_token(&scope).await {
                Ok(token) => token,
                Err(error) => {
                    eprintln!("caller-service: no token for {scope}: {error}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            let claims = token.claims();
            let description = serde_json::json!({
                "scope": scope,
                "kind": token.kind,
                "expires_at": token.expires_at.format(&time::format_description::well_known::Rfc3339).ok(),
                "audience": claims.as_ref().map(|c| c.aud.clone()),
                "roles": claims.as_ref().and_then(|c| c.roles.clone()).unwrap_or_default(),
                "fingerprint": token.fingerprint,
            });
            println!("{}", serde_json::to_string_pretty(&description)?);
            if raw {
                println!("{}", token.secret());
            }
            core.tokens.shutdown();
            Ok(ExitCode::SUCCESS)
        }
    }
}
