//! `entra-emulator`: serve, print a token for a configured client, rotate the signing keys.

use clap::{Parser, Subcommand};
use entra_emulator::Application;
use entra_emulator::cli;
use entra_emulator::directory::Directory;
use entra_emulator::settings::EmulatorSettings;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    version,
    about = "A local stand-in for Microsoft Entra ID's token, discovery and key endpoints"
)]
struct Cli {
    /// TOML settings file; `EMULATOR__SECTION__KEY` variables override it.
    #[arg(long, short, env = "EMULATOR_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the endpoints until SIGINT/SIGTERM.
    Serve {
        /// Once listening, write {https_url, http_url, public_url, ca_cert} here as JSON (for scripts).
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// Print an app token for a configured client, like `az account get-access-token`.
    Token {
        /// The client application, by name or client ID.
        #[arg(long)]
        client: String,
        /// `{resource}/.default`, e.g. `api://tasks-api/.default`.
        #[arg(long)]
        scope: String,
        /// Tenant GUID or domain. Default: the directory's first tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Print only the token, for `curl -H "Authorization: Bearer $(…)"`.
        #[arg(long)]
        raw: bool,
    },
    /// Publish a new signing key and sign with it (through the running emulator's admin API).
    RotateKeys {
        /// Also withdraw every key but the new one from the JWKS: tokens they signed stop validating.
        #[arg(long)]
        retire_inactive: bool,
        /// The emulator's URL. Default: its public URL from the settings.
        #[arg(long)]
        url: Option<url::Url>,
    },
    /// Print a projected service-account token from the emulator's stand-in cluster issuer
    /// (`{public_url}/cluster`), like `kubectl create token`.
    SaToken {
        #[command(flatten)]
        account: AccountArgs,
    },
    /// Keep a projected service-account token file fresh, as the kubelet does for a pod: write it
    /// now and again at 75% of its life, until SIGINT/SIGTERM (AZURE_FEDERATED_TOKEN_FILE).
    ProjectToken {
        #[command(flatten)]
        account: AccountArgs,
        /// The token file to keep fresh (written atomically, mode 0644).
        #[arg(long)]
        out: PathBuf,
    },
    /// Check the settings and the directory file, then exit.
    Check,
}

#[derive(clap::Args)]
struct AccountArgs {
    /// The service account's namespace.
    #[arg(long)]
    namespace: String,
    /// The service account's name: the token's subject is
    /// `system:serviceaccount:<namespace>:<name>`.
    #[arg(long)]
    service_account: String,
    #[arg(long, default_value = entra_emulator::cluster::TOKEN_EXCHANGE_AUDIENCE)]
    audience: String,
    /// The token's lifetime (at least 60 s; the kubelet's default is 3600).
    #[arg(long, default_value_t = entra_emulator::cluster::DEFAULT_LIFETIME_SECS)]
    lifetime_secs: i64,
}

impl AccountArgs {
    fn projector(self, out: PathBuf) -> anyhow::Result<entra_emulator::cluster::Projector> {
        let account =
            entra_emulator::cluster::ServiceAccount::new(&self.namespace, &self.service_account)
                .map_err(anyhow::Error::msg)?;
        Ok(entra_emulator::cluster::Projector {
            account,
            audience: self.audience,
            lifetime_secs: self.lifetime_secs,
            out,
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match EmulatorSettings::load(cli.config.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("entra-emulator: {e}");
            return ExitCode::from(2);
        }
    };
    shared::telemetry::init(&settings.log, "info,actix_server=warn");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("entra-emulator: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("entra-emulator: {}", format!("{e:#}").replace('\n', " "));
            // A setting that contradicts the directory is a configuration error, as a bad value.
            if e.downcast_ref::<shared::config::ConfigError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn run(command: Command, settings: EmulatorSettings) -> anyhow::Result<()> {
    match command {
        Command::Serve { ready_file } => serve(settings, ready_file).await,
        Command::Token {
            client,
            scope,
            tenant,
            raw,
        } => {
            println!(
                "{}",
                cli::token(&settings, &client, &scope, tenant.as_deref(), raw)?
            );
            Ok(())
        }
        Command::RotateKeys {
            retire_inactive,
            url,
        } => {
            for line in cli::rotate_keys(&settings, url, retire_inactive).await? {
                println!("{line}");
            }
            Ok(())
        }
        Command::SaToken { account } => {
            let projector = account.projector(PathBuf::new())?;
            println!("{}", cli::sa_token(&settings, &projector)?);
            Ok(())
        }
        Command::ProjectToken { account, out } => {
            let projector = account.projector(out)?;
            cli::project_token(&settings, &projector).await
        }
        Command::Check => {
            let directory = Directory::load(&settings.directory)?;
            entra_emulator::routes::managed_identity::check(
                &settings.managed_identity,
                &directory,
            )?;
            for t in &directory.tenants {
                let identities = t
                    .applications
                    .iter()
                    .filter(|a| a.managed_identity.is_some())
                    .count();
                println!(
                    "tenant {} ({}): {} applications, {identities} managed identities (and Microsoft's {} first-party resources), {} users",
                    t.domain,
                    t.id,
                    t.applications.len() - identities - first_party_in(t),
                    first_party_in(t),
                    t.users.len()
                );
            }
            Ok(())
        }
    }
}

async fn serve(settings: EmulatorSettings, ready_file: Option<PathBuf>) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    if let Some(path) = ready_file {
        let ready = serde_json::json!({
            "https_url": format!("https://{}", app.https_addr()),
            "http_url": app.http_addr().map(|a| format!("http://{a}")),
            "public_url": app.public_url(),
            "ca_cert": app.ca_cert_path(),
        });
        shared::ready::write(&path, &ready)?;
    }
    app.run_until_stopped().await?;
    tracing::info!("entra-emulator stopped");
    Ok(())
}

/// How many of `tenant`'s applications are Microsoft's built-in first-party resources.
fn first_party_in(tenant: &entra_emulator::directory::Tenant) -> usize {
    tenant
        .applications
        .iter()
        .filter(|a| {
            entra_emulator::directory::FIRST_PARTY
                .iter()
                .any(|f| a.name == f.name && a.client_id == f.client_id)
        })
        .count()
}
