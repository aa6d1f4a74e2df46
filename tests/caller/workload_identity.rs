//! Secretless callers against the real emulator through the unmodified `azure_identity`: workload
//! identity with a projected token file that the emulator's stand-in cluster rotates under the
//! running daemon, and a federated credential removed while it runs.

use crate::emulator::{identity, settings};
use caller_service::Application;
use caller_service::settings::{CredentialKind, IdentityConfig};
use caller_service::token_manager::{TokenEvent, Trigger};
use entra_emulator::cluster::{ClusterIssuer, Projector, ServiceAccount, TOKEN_EXCHANGE_AUDIENCE};
use mesh_tests::caller::*;
use mesh_tests::emulator::spawn_emulator_with;
use shared::clock::ManualClock;
use std::sync::Arc;
use std::time::Duration;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

fn azp(token: &str) -> String {
    let (_, claims) = mesh_tests::emulator::decode_parts(token);
    claims["azp"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_rotating_token_file_is_read_at_each_refresh_and_a_removed_credential_is_named() {
    let captured = Captured::start();
    let emulator_clock = Arc::new(ManualClock::at_system_time());
    let emu = spawn_emulator_with(emulator_clock.clone(), |s| {
        s.server.http_port = Some(0);
        s.admin.enabled = true;
    })
    .await;

    // The kubelet's part: a projected token for jobs/archiver, one hour, in a file.
    let dir = TempDir::new("workload-identity");
    let token_file = dir.0.join("azure-identity-token");
    let issuer = ClusterIssuer::open(&emu.dir.0, &emu.url, emu.now()).expect("cluster keys");
    let projector = Projector {
        account: ServiceAccount::new("jobs", "archiver").expect("names"),
        audience: TOKEN_EXCHANGE_AUDIENCE.into(),
        lifetime_secs: 3600,
        out: token_file.clone(),
    };
    let first_expiry = projector
        .write_once(&issuer, emu.now())
        .expect("write token");

    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&api)
        .await;
    let mut settings = settings(
        &emu,
        IdentityConfig {
            credential: Some(CredentialKind::WorkloadIdentity),
            federated_token_file: Some(token_file.clone()),
            ..identity(&emu, archiver_job::CLIENT_ID)
        },
    );
    let mut job = interval_job("archive", format!("{}/archive", api.uri()));
    job.interval_secs = Some(24 * 3600);
    settings.jobs.push(job);
    let clock = Arc::new(ManualClock::new(start_time()));
    let app = Application::build_with_clock(settings, clock.clone())
        .await
        .expect("builds");
    let tokens = app.tokens().clone();
    let mut events = tokens.subscribe();
    let stop = app.shutdown_handle();
    let running = tokio::spawn(app.run_until_stopped());

    // The warm-up exchanged the projected token for an app token.
    next_event(&mut events, is_acquired).await;
    let token = tokens.get_token(SCOPE).await.expect("token");
    assert_eq!(azp(token.secret()), archiver_job::CLIENT_ID);

    // 50 minutes on, the projector wrote a new token (75% of its life); 17 more and the first
    // one is past its end and the five minutes of skew: only the new one can work now.
    emulator_clock.advance_secs(3000);
    projector
        .write_once(&issuer, emu.now())
        .expect("rewrite token");
    emulator_clock.advance_secs(1000);
    assert!(emu.now() > first_expiry + 300, "the first token is dead");

    // The refresher's half-life comes: it reads the file again and gets a new app token.
    sleepers(&clock, 2).await;
    clock.advance(Duration::from_secs(2900));
    match next_event(&mut events, |e| {
        matches!(e, TokenEvent::Acquired { .. } | TokenEvent::Failed { .. })
    })
    .await
    {
        TokenEvent::Acquired { trigger, .. } => assert_eq!(trigger, Trigger::Background),
        other => panic!("the refresh with the rotated file failed: {other:?}"),
    }
    let refreshed = tokens.get_token(SCOPE).await.expect("token");
    assert_ne!(refreshed.secret(), token.secret());
    println!(
        "resilience: workload identity token file rotated: the projected token rewritten at 50 min \
         of its 60 min; at 66 min 40 s (the first one past its end and the 5 min skew) the \
         daemon's half-life refresh read the file again and the emulator issued a new app token \
         for archiver-job"
    );

    // The federated credential is removed (az ad app federated-credential delete): the next
    // refresh is refused with AADSTS70021, named with its fix, and the valid token is still served.
    let removed = emu
        .http
        .delete(format!(
            "{}/admin/federated-credentials/{}/{}",
            emu.http_url,
            archiver_job::CLIENT_ID,
            archiver_job::FEDERATED_CREDENTIAL
        ))
        .send()
        .await
        .expect("admin answers");
    assert_eq!(removed.status(), 200);
    sleepers(&clock, 2).await;
    clock.advance(Duration::from_secs(2900));
    let failure = next_failure(&mut events, Some(Trigger::Background)).await;
    assert_eq!(failure.error.reason(), "aadsts_70021");
    assert!(failure.error.is_permanent());
    let text = failure.error.to_string();
    assert!(text.contains("AADSTS70021"), "{text}");
    assert!(
        text.contains("Fix: the application has no federated identity credential"),
        "{text}"
    );
    let still = tokens.get_token(SCOPE).await.expect("the cached token");
    assert_eq!(still.secret(), refreshed.secret());
    println!(
        "resilience: workload identity credential removed: the next refresh refused with \
         AADSTS70021 (permanent, logged with its fix: \"{}\"), next attempt in {} s; the valid \
         app token still served",
        text.split("Fix: ")
            .nth(1)
            .unwrap_or_default()
            .trim_end_matches('.'),
        failure.next_attempt_in.as_secs()
    );

    stop.shutdown();
    running.await.expect("joins").expect("stops cleanly");
    let logs = captured.text();
    assert!(logs.contains("AADSTS70021"), "the log names it: {logs}");
    let projected = std::fs::read_to_string(&token_file).expect("token file");
    assert!(
        !logs.contains(projected.trim()),
        "the projected token never reaches the log"
    );
    assert!(!logs.contains(refreshed.secret()), "nor the app token");
}
