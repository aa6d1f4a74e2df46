//! The caller against the real mesh: the in-process emulator issues the tokens and the real
//! api-service validates them. The demo directory's callers get what the directory says: the
//! reader and the certificate job read, the writer writes, and the app the API does not allow
//! gets a 403 whose reason the job report carries. The daemons running these jobs on schedule
//! against the same services are tested end to end in `tests/e2e/flows.rs`.

use crate::emulator::{certificate_identity, identity, settings, spawn_emulator};
use caller_service::runner::Outcome;
use caller_service::settings::IdentityConfig;
use mesh_tests::caller::*;
use mesh_tests::emulator::Emulator;

/// The real API, trusting the emulator's CA, on port 0 with its own database.
async fn spawn_api(emu: &Emulator, db: &TempDir) -> String {
    let mut settings = mesh_tests::api::api_settings(&emu.url, &db.0);
    settings.auth.allowed_clients.push(CERT_ID.into());
    settings.http.extra_ca_file = Some(emu.ca.clone());
    let app = api_service::Application::build(settings)
        .await
        .expect("api starts");
    let url = format!("http://{}", app.address());
    tokio::spawn(app.run_until_stopped());
    url
}

/// Runs one job once, as `caller-service once` does, for the identity given.
async fn run_once(
    emu: &Emulator,
    identity: IdentityConfig,
    method: &str,
    url: String,
) -> caller_service::runner::JobReport {
    let mut settings = settings(emu, identity);
    let mut job = interval_job("job", url);
    job.method = method.into();
    if method == "POST" {
        job.body = Some(serde_json::json!({ "title": "from the mesh test" }));
    }
    settings.jobs.push(job);
    let (_, jobs) = settings.validate().expect("valid settings");
    let (core, _) = core_for(&settings);
    let report = core.runner.run(&jobs[0]).await;
    core.tokens.shutdown();
    report
}

#[tokio::test]
async fn demo_callers_meet_the_real_api_as_the_directory_says() {
    let emu = spawn_emulator().await;
    let db = TempDir::new("caller");
    let api = spawn_api(&emu, &db).await;
    let tasks = format!("{api}/api/tasks");
    let secret = |id: &str, secret: &str| IdentityConfig {
        client_secret: Some(secret.into()),
        ..identity(&emu, id)
    };

    let writer = run_once(
        &emu,
        secret(WRITER_ID, WRITER_SECRET),
        "POST",
        tasks.clone(),
    )
    .await;
    assert_eq!(
        (writer.outcome, writer.status),
        (Outcome::Success, Some(201)),
        "{writer:?}"
    );

    let reader = run_once(&emu, secret(READER_ID, READER_SECRET), "GET", tasks.clone()).await;
    assert_eq!(
        (reader.outcome, reader.status),
        (Outcome::Success, Some(200)),
        "{reader:?}"
    );

    let cert = run_once(&emu, certificate_identity(&emu), "GET", tasks.clone()).await;
    assert_eq!(
        (cert.outcome, cert.status),
        (Outcome::Success, Some(200)),
        "{cert:?}"
    );

    let reader_writes = run_once(
        &emu,
        secret(READER_ID, READER_SECRET),
        "POST",
        tasks.clone(),
    )
    .await;
    assert_eq!(reader_writes.outcome, Outcome::Failure);
    assert_eq!(reader_writes.status, Some(403));
    assert_eq!(reader_writes.reason.as_deref(), Some("missing_role"));

    let stranger = run_once(&emu, secret(STRANGER_ID, STRANGER_SECRET), "GET", tasks).await;
    assert_eq!(stranger.outcome, Outcome::Failure);
    assert_eq!(stranger.status, Some(403));
    assert_eq!(stranger.reason.as_deref(), Some("client_not_allowed"));
}
