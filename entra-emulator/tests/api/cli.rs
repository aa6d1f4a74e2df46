//! The binary: `token`, `check`, and one-line errors for bad configuration.

use crate::helpers::*;
use std::process::Command;

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
    let data_dir = TempDir::new();
    let output = emulator(&data_dir)
        .args([
            "token",
            "--client",
            "reader-job",
            "--scope",
            API_SCOPE,
            "--raw",
        ])
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
    let data_dir = TempDir::new();
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
    let data_dir = TempDir::new();
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
}

#[test]
fn check_reports_the_directory() {
    let data_dir = TempDir::new();
    let output = emulator(&data_dir).arg("check").output().expect("runs");
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("contoso.onmicrosoft.com"));
}
