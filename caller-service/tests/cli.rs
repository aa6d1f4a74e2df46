//! The binary itself: one-line configuration errors, `once` exit statuses, `token`.

use mesh_tests::caller::*;
use std::path::Path;
use std::process::{Command, Output};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Runs the binary with only `--config` (no inherited AZURE_* or CALLER__* variables), off the
/// async runtime so the TLS front keeps serving meanwhile.
async fn caller(config: &Path, args: &[&str]) -> Output {
    caller_with_env(config, &[], args).await
}

/// [`caller`] with the given environment variables, and no others.
async fn caller_with_env(config: &Path, env: &[(&str, String)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_caller-service"));
    command
        .env_clear()
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .arg("--config")
        .arg(config)
        .args(args);
    tokio::task::spawn_blocking(move || command.output().expect("binary runs"))
        .await
        .expect("joins")
}

/// `caller.toml` in `dir`: the managed identity `client_id` as the identity, then `extra`.
fn managed_identity_config(dir: &TempDir, client_id: &str, extra: &str) -> std::path::PathBuf {
    let config = dir.0.join("caller.toml");
    std::fs::write(
        &config,
        format!(
            "[identity]\ncredential = \"managed_identity\"\nclient_id = \"{client_id}\"\n{extra}"
        ),
    )
    .expect("write");
    config
}

/// App Service's managed-identity variables: the endpoint and the identity header.
fn app_service_env(endpoint: String, header: &str) -> [(&'static str, String); 2] {
    [
        ("IDENTITY_ENDPOINT", endpoint),
        ("IDENTITY_HEADER", header.to_owned()),
    ]
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn a_bad_job_definition_stops_the_start_with_one_line_naming_the_job_and_field() {
    let dir = TempDir::new("cli");
    let config = dir.0.join("caller.toml");
    std::fs::write(
        &config,
        format!(
            r#"
        [identity]
        tenant_id = "{TENANT}"
        client_id = "{READER_ID}"
        client_secret = "not-used"
        [[jobs]]
        name = "nightly"
        schedule = "every night"
        url = "https://api.example/tasks"
        scope = "api://tasks-api/.default"
        "#
        ),
    )
    .expect("write");
    let output = caller(&config, &["run"]).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("job `nightly`: `schedule`"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !stderr.contains("not-used"),
        "no secret in errors: {stderr}"
    );
}

#[tokio::test]
async fn an_unknown_key_is_named() {
    let dir = TempDir::new("cli");
    let config = dir.0.join("caller.toml");
    std::fs::write(&config, "[token_manager]\nrefresh_fration = 0.5\n").expect("write");
    let output = caller(&config, &["run"]).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("refresh_fration"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_exit_status_says_whether_the_job_succeeded_and_token_hides_the_token() {
    let dir = TempDir::new("cli");
    let idp = MockServer::start().await;
    let api = MockServer::start().await;
    let (port, ca) = tls_front(*idp.address(), &dir).await;
    expect_token_requests(&idp, 4).await;
    for (route, status) in [("/ok", 200), ("/broken", 500)] {
        Mock::given(method("GET"))
            .and(path(route))
            .respond_with(ResponseTemplate::new(status))
            .expect(1)
            .mount(&api)
            .await;
    }
    let config = dir.0.join("caller.toml");
    std::fs::write(
        &config,
        format!(
            r#"
            [identity]
            tenant_id = "{TENANT}"
            client_id = "{READER_ID}"
            client_secret = "{READER_SECRET}"
            authority_host = "https://localhost:{port}"
            [http]
            extra_ca_file = "{ca}"
            [[jobs]]
            name = "ok"
            interval_secs = 60
            url = "{api}/ok"
            scope = "{SCOPE}"
            [[jobs]]
            name = "broken"
            interval_secs = 60
            url = "{api}/broken"
            scope = "{SCOPE}"
            "#,
            ca = ca.display(),
            api = api.uri(),
        ),
    )
    .expect("write");

    assert_eq!(
        caller(&config, &["once", "ok"]).await.status.code(),
        Some(0)
    );
    let broken = caller(&config, &["once", "broken"]).await;
    assert_eq!(broken.status.code(), Some(1));
    assert!(
        text(&broken.stderr).contains("status=500"),
        "{}",
        text(&broken.stderr)
    );
    let missing = caller(&config, &["once", "nope"]).await;
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("no job named `nope`"));

    let described = caller(&config, &["token", "--scope", SCOPE]).await;
    assert_eq!(
        described.status.code(),
        Some(0),
        "{}",
        text(&described.stderr)
    );
    let stdout = text(&described.stdout);
    let description: serde_json::Value = serde_json::from_str(&stdout).expect("JSON description");
    assert_eq!(description["kind"], "app");
    assert_eq!(description["audience"], API_CLIENT_ID);
    // Tokens are numbered per request: 0 and 1 went to the `once` runs, 2 is described here.
    assert!(!stdout.contains(&fake_jwt(2)), "the token only with --raw");
    let raw = caller(&config, &["token", "--scope", SCOPE, "--raw"]).await;
    assert!(text(&raw.stdout).contains(&fake_jwt(3)));
    idp.verify().await;
    api.verify().await;
}

/// Managed identity through `azure_identity`'s own `ManagedIdentityCredential`: with the App
/// Service variables set (as App Service and Container Apps set them), it asks that endpoint,
/// sending the identity header and the user-assigned client ID, and the token is described.
#[tokio::test]
async fn managed_identity_gets_its_token_from_the_app_service_endpoint() {
    let dir = TempDir::new("cli");
    let msi = MockServer::start().await;
    let expires_on = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
    Mock::given(method("GET"))
        .and(path("/msi/token"))
        .and(wiremock::matchers::header(
            "x-identity-header",
            "msi-header-value",
        ))
        .and(wiremock::matchers::query_param("resource", API_APP_ID_URI))
        .and(wiremock::matchers::query_param("client_id", READER_ID))
        .and(wiremock::matchers::query_param("api-version", "2019-08-01"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": fake_jwt(1),
            "expires_on": expires_on.to_string(),
            "resource": API_APP_ID_URI,
            "token_type": "Bearer",
        })))
        .expect(1)
        .mount(&msi)
        .await;
    let config = managed_identity_config(&dir, READER_ID, "");
    let env = app_service_env(format!("{}/msi/token", msi.uri()), "msi-header-value");
    let output = caller_with_env(&config, &env, &["token", "--scope", SCOPE]).await;
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    let described: serde_json::Value = serde_json::from_str(&stdout).expect("json description");
    assert_eq!(described["kind"], "app");
    assert_eq!(described["audience"], API_CLIENT_ID);
    assert!(!stdout.contains(&fake_jwt(1)), "the token only with --raw");
    msi.verify().await;
}

/// The same, against the real emulator's managed-identity endpoint rather than wiremock: a
/// user-assigned identity of the demo directory (no secret anywhere), its token minted with the
/// role it is assigned and its resource ID, through the unmodified `azure_identity`.
#[tokio::test]
async fn managed_identity_gets_a_real_token_from_the_emulator() {
    let dir = TempDir::new("cli");
    let emulator = mesh_tests::emulator::spawn_emulator_with(
        std::sync::Arc::new(mesh_tests::ManualClock::at_system_time()),
        |settings| {
            settings.server.http_port = Some(0);
            settings.managed_identity.identity_header = Some("cli-test-identity-header".into());
        },
    )
    .await;
    let config = managed_identity_config(&dir, nightly_mi::CLIENT_ID, "");
    let env = app_service_env(
        format!("{}/msi/token", emulator.http_url),
        "cli-test-identity-header",
    );
    let output = caller_with_env(&config, &env, &["token", "--scope", SCOPE]).await;
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    let described: serde_json::Value = serde_json::from_str(&stdout).expect("json description");
    assert_eq!(described["kind"], "app");
    assert_eq!(described["audience"], API_CLIENT_ID);
    assert_eq!(described["roles"], serde_json::json!(["Tasks.Read.All"]));

    // A wrong header: the SDK's error, named on one line, and exit status 1.
    let env = app_service_env(
        format!("{}/msi/token", emulator.http_url),
        "not-the-identity-header",
    );
    let output = caller_with_env(&config, &env, &["token", "--scope", SCOPE]).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("no token for"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The managed-identity endpoint down (App Service's variables set, nothing listening on the
/// port): one line naming a connection failure, exit status 1, no panic. The Rust SDK's IMDS
/// address (169.254.169.254) is fixed in `azure_identity` and cannot be moved to a test port, so
/// the endpoint that goes away here is App Service's; the emulator's IMDS endpoint is exercised by
/// azure-identity for Python in scripts/sidecar-interop.sh.
#[tokio::test]
async fn an_unreachable_managed_identity_endpoint_is_named_on_one_line() {
    let dir = TempDir::new("cli");
    // Nothing listens there: the port was free a moment ago.
    let port = mesh_tests::free_port();
    let config = managed_identity_config(&dir, nightly_mi::CLIENT_ID, "");
    let env = app_service_env(
        format!("http://127.0.0.1:{port}/msi/token"),
        "cli-test-identity-header",
    );
    let output = caller_with_env(&config, &env, &["token", "--scope", SCOPE]).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("no token for"), "{stderr}");
    assert!(stderr.contains("connection"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// IMDS unreachable: with no App Service variables, `azure_identity`'s managed identity asks the
/// Instance Metadata Service at its fixed address, 169.254.169.254. Run in a network namespace of
/// its own (`unshare -n`: loopback only, no route anywhere, so nothing leaves this machine), the
/// request cannot be sent; the caller bounds it with `token_manager.acquire_timeout_secs` and says
/// so on one line, exit status 1. Where no namespace can be made the test says it skipped, and fails
/// when `REQUIRE_NETNS` is set (`.ci/run` sets it).
#[tokio::test]
async fn imds_unreachable_is_a_bounded_failure_on_one_line() {
    // As root, a network namespace; otherwise a user namespace with one (where the kernel allows).
    let flags = ["-n", "-rn"].into_iter().find(|flags| {
        std::process::Command::new("unshare")
            .args([*flags, "true"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let Some(flags) = flags else {
        mesh_tests::skip_unless_required(
            "REQUIRE_NETNS",
            "no network namespace can be made here (`unshare -n` and `unshare -rn` refused)",
        );
        return;
    };
    let dir = TempDir::new("cli");
    let config = managed_identity_config(
        &dir,
        nightly_mi::CLIENT_ID,
        "\n[token_manager]\nacquire_timeout_secs = 2\n",
    );
    let mut command = Command::new("unshare");
    command
        .env_clear()
        .env("RUST_LOG", "warn")
        .args([flags, env!("CARGO_BIN_EXE_caller-service"), "--config"])
        .arg(&config)
        .args(["token", "--scope", SCOPE]);
    let output = tokio::task::spawn_blocking(move || command.output().expect("runs"))
        .await
        .expect("joins");
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("caller-service: no token for api://tasks-api/.default: timeout from the identity provider: no token within 2 s"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
