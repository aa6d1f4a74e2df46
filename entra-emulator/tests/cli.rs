//! The binary: `token`, `check`, and one-line errors for bad configuration.

use mesh_tests::ManualClock;
use mesh_tests::TempDir;
use mesh_tests::demo::*;
use mesh_tests::emulator::{decode_parts, spawn_emulator_with};
use std::process::Command;
use std::sync::Arc;

/// `token` for reader-job, printing only the token.
const READER_RAW_TOKEN: [&str; 6] = [
    "token",
    "--client",
    "reader-job",
    "--scope",
    API_SCOPE,
    "--raw",
];

fn emulator(data_dir: &TempDir) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_entra-emulator"));
    command
        .env_clear()
        .env("EMULATOR__DATA_DIR", &data_dir.0)
        .env("EMULATOR__DIRECTORY", demo_dir().join("directory.toml"));
    command
}

#[test]
fn token_prints_a_token_for_a_configured_client() {
    let data_dir = TempDir::new("emulator-cli");
    let output = emulator(&data_dir)
        .args(READER_RAW_TOKEN)
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).expect("utf-8");
    let (_, claims) = decode_parts(token.trim());
    assert_eq!(claims["azp"], READER_ID);
    assert_eq!(claims["roles"], serde_json::json!(["Tasks.Read.All"]));
}

#[test]
fn token_applies_the_same_grant_rules_as_the_endpoint() {
    let data_dir = TempDir::new("emulator-cli");
    let output = emulator(&data_dir)
        .args(["token", "--client", "stranger-job", "--scope", AUDIT_SCOPE])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("entra-emulator: "))
        .collect();
    assert_eq!(errors.len(), 1, "one error line: {stderr}");
    assert!(errors[0].contains("AADSTS501051"), "{stderr}");
}

#[test]
fn bad_configuration_exits_with_one_line_naming_the_key() {
    let data_dir = TempDir::new("emulator-cli");
    let output = emulator(&data_dir)
        .env("EMULATOR__TOKENS__LIFETIME_MIN_SECS", "5")
        .arg("check")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("tokens.lifetime_min_secs"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    let output = emulator(&data_dir)
        .env("EMULATOR__SERVER__HTTPS_PORT", "not-a-port")
        .arg("check")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("server.https_port"));

    // A setting that names what the directory does not hold: checked against it, same shape.
    let output = emulator(&data_dir)
        .env(
            "EMULATOR__MANAGED_IDENTITY__IDENTITY_HEADER",
            "long-enough-identity-header",
        )
        .env("EMULATOR__MANAGED_IDENTITY__SYSTEM_ASSIGNED", "nobody")
        .arg("check")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("managed_identity.system_assigned") && stderr.contains("'nobody'"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn check_reports_the_directory() {
    let data_dir = TempDir::new("emulator-cli");
    let output = emulator(&data_dir).arg("check").output().expect("runs");
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("contoso.onmicrosoft.com"));
}

/// Lists can be given by environment, comma-separated, as compose does for the container's names.
#[test]
fn tls_names_can_be_given_by_environment() {
    let data_dir = TempDir::new("emulator-cli");
    let output = emulator(&data_dir)
        .env("EMULATOR__SERVER__TLS_NAMES", "emulator,localhost")
        .arg("check")
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
}

#[tokio::test]
async fn rotate_keys_goes_through_the_running_emulators_admin_api() {
    let clock = Arc::new(ManualClock::at_system_time());
    let emu = spawn_emulator_with(clock, |s| s.admin.enabled = true).await;
    let (ca, url) = (emu.ca.clone(), emu.url.clone());
    let output = tokio::task::spawn_blocking(move || {
        let scratch = TempDir::new("emulator-cli");
        emulator(&scratch)
            .env("EMULATOR__SERVER__CA_CERT_OUT", &ca)
            .args(["rotate-keys", "--url", &url, "--retire-inactive"])
            .output()
            .expect("runs")
    })
    .await
    .expect("cli task");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let new_kid = stdout
        .lines()
        .find_map(|l| l.strip_prefix("new signing key: "))
        .expect("reports the new key")
        .to_owned();
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("retired: "))
            .count(),
        2,
        "{stdout}"
    );
    let (_, jwks) = emu
        .get_json(&format!("/{TENANT}/discovery/v2.0/keys"))
        .await;
    let published: Vec<&str> = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert_eq!(published, vec![new_kid.as_str()]);
}

#[test]
fn rotate_keys_without_a_reachable_emulator_says_so() {
    let data_dir = TempDir::new("emulator-cli");
    let output = emulator(&data_dir)
        .env(
            "EMULATOR__SERVER__CA_CERT_OUT",
            demo_dir().join("certs/cert-job.crt"),
        )
        .args(["rotate-keys", "--url", "https://127.0.0.1:1"])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot reach the emulator's admin API"),
        "{stderr}"
    );
}

#[test]
fn logs_are_json_lines_when_asked_and_rust_log_filters_them() {
    let data_dir = TempDir::new("emulator-cli");
    let output = emulator(&data_dir)
        .env("EMULATOR__LOG__FORMAT", "json")
        .args(READER_RAW_TOKEN)
        .output()
        .expect("runs");
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line: serde_json::Value =
        serde_json::from_str(stderr.lines().next().expect("a log line")).expect("JSON line");
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["message"], "created signing keys");
    let token = String::from_utf8_lossy(&output.stdout);
    assert!(
        !stderr.contains(token.trim()),
        "the token never reaches the log"
    );

    let quiet_dir = TempDir::new("emulator-cli");
    let output = emulator(&quiet_dir)
        .env("RUST_LOG", "warn")
        .args(READER_RAW_TOKEN)
        .output()
        .expect("runs");
    assert!(output.status.success());
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
