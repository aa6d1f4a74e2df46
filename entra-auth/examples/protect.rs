//! A small actix service protected by `entra-auth`: only app-only tokens of the allowed clients,
//! and `GET /api/reports` only for callers holding `Reports.Read.All`.
//!
//! `cargo run -p entra-auth --example protect -- settings.toml`, the file holding the `entra`,
//! `auth` (and optionally `keys`, `http`) sections as the tasks API reads them.

use actix_web::{App, HttpServer, http::Method, web};
use entra_auth::{Access, AppCaller, AppOnly, Protection, RouteTable, ServiceAuthSettings};

async fn reports(caller: AppCaller) -> String {
    format!("reports for {}\n", caller.client_app_id)
}

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    match serve().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("protect: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "settings.toml".into());
    let settings: ServiceAuthSettings = toml::from_str(&std::fs::read_to_string(&path)?)?;
    let protection = Protection::from_settings(&settings, shared::clock::system()).await?;
    let table = RouteTable::new("/api").route(
        Method::GET,
        "/api/reports",
        Access::AnyRole(&["Reports.Read.All"]),
        reports,
    );
    let auth = AppOnly::new(protection.validator.clone(), table.policies());
    HttpServer::new(move || {
        let table = table.clone();
        App::new().service(
            web::scope("/api")
                .wrap(auth.clone())
                .configure(move |cfg| table.register(cfg)),
        )
    })
    .bind(("127.0.0.1", 8081))?
    .run()
    .await?;
    Ok(())
}
