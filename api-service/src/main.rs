//! `api-service`: serve the tasks API, or check its settings.

use api_service::{ApiSettings, Application};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    version,
    about = "A tasks API that accepts only app-only Entra ID tokens"
)]
struct Cli {
    /// TOML settings file; `API__SECTION__KEY` variables override it.
    #[arg(long, short, env = "API_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve until SIGINT/SIGTERM (the default).
    Serve {
        /// Once listening, write {"url": …} here as JSON (for scripts and the local mesh).
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// Check the settings, then exit.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match ApiSettings::load(cli.config.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("api-service: {e}");
            return ExitCode::from(2);
        }
    };
    let ready_file = match cli.command.unwrap_or(Command::Serve { ready_file: None }) {
        Command::Check => {
            println!("api-service: settings are valid");
            return ExitCode::SUCCESS;
        }
        Command::Serve { ready_file } => ready_file,
    };
    shared::telemetry::init(&settings.log, "info,actix_server=warn");
    let system = actix_web::rt::System::new();
    match system.block_on(serve(settings, ready_file)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("api-service: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: ApiSettings, ready_file: Option<PathBuf>) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    if let Some(path) = ready_file {
        let url = format!("http://{}", app.address());
        shared::ready::write(&path, &serde_json::json!({ "url": url }))?;
    }
    app.run_until_stopped().await?;
    Ok(())
}
