//! `entra-gateway`: check Entra ID app tokens in front of any HTTP service (reverse proxy), or
//! for nginx, Traefik and Envoy (forward-auth); or check the settings.

use clap::{Parser, Subcommand};
use entra_gateway::{Gateway, GatewaySettings};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    version,
    about = "Entra ID app-only token checks in front of any HTTP service"
)]
struct Cli {
    /// TOML settings file; `GATEWAY__SECTION__KEY` variables override it.
    #[arg(long, short, env = "GATEWAY_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve until SIGINT/SIGTERM (the default).
    Serve {
        /// Once listening, write {"url": …} here as JSON (for scripts and tests).
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// Check the settings, then exit.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match GatewaySettings::load(cli.config.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("entra-gateway: {e}");
            return ExitCode::from(2);
        }
    };
    let ready_file = match cli.command.unwrap_or(Command::Serve { ready_file: None }) {
        Command::Check => {
            println!("entra-gateway: settings are valid");
            return ExitCode::SUCCESS;
        }
        Command::Serve { ready_file } => ready_file,
    };
    shared::telemetry::init(&settings.log, "info,actix_server=warn");
    let system = actix_web::rt::System::new();
    match system.block_on(serve(settings, ready_file)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("entra-gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: GatewaySettings, ready_file: Option<PathBuf>) -> anyhow::Result<()> {
    let gateway = Gateway::build(settings).await?;
    if let Some(path) = ready_file {
        let url = format!("http://{}", gateway.address());
        shared::ready::write(&path, &serde_json::json!({ "url": url }))?;
    }
    gateway.run_until_stopped().await?;
    Ok(())
}
