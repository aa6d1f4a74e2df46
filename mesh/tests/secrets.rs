//! The whole mesh at trace level: nothing secret may appear in anything it prints.
//!
//! The launcher runs the emulator, the API, the gateway with the Python reports service behind
//! it, four caller daemons and a user's PKCE sign-in with `RUST_LOG=trace` (every library's logs
//! included), until every job has run twice; then its stdout and stderr are searched for the directory's client secrets, any PEM private key, the
//! emulator's private signing-key material and anything shaped like a JWT.

use std::process::Command;

/// Every client secret of the demo directory the mesh runs on (DEMO values, committed on purpose).
fn directory_secrets() -> Vec<String> {
    let directory = entra_emulator::directory::Directory::load(&mesh::demo_directory())
        .expect("the demo directory");
    directory
        .tenants
        .iter()
        .flat_map(|tenant| &tenant.applications)
        .flat_map(|app| &app.client_secrets)
        .map(|secret| secret.value.expose().to_owned())
        .collect()
}

/// Whether `text` holds a compact JWS/JWT: base64url JSON header, payload and a signature.
fn find_jwt(text: &str) -> Option<&str> {
    let is_b64 = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    text.match_indices("eyJ").find_map(|(start, _)| {
        let rest = &text[start..];
        let end = rest
            .find(|c: char| !is_b64(c) && c != '.')
            .unwrap_or(rest.len());
        let candidate = &rest[..end];
        let parts: Vec<&str> = candidate.split('.').collect();
        (parts.len() >= 3 && parts[..3].iter().all(|p| p.len() >= 8)).then_some(candidate)
    })
}

#[test]
fn the_mesh_at_trace_level_prints_no_secret_key_or_token() {
    let dir = std::env::temp_dir().join(format!("mesh-secrets-{}", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_mesh"))
        .args(["--data-dir"])
        .arg(&dir)
        .args([
            "--emulator-port",
            "0",
            "--api-port",
            "0",
            "--gateway-port",
            "0",
            "--sidecar-port",
            "0",
        ])
        .args([
            "--every-secs",
            "1",
            "--summary-secs",
            "1",
            "--exit-after-runs",
            "2",
        ])
        .env("RUST_LOG", "trace")
        .output()
        .expect("the mesh runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");

    // The run did what it is meant to show, so the search covers real traffic.
    assert!(
        stdout.contains("create-task: POST /api/tasks → 201"),
        "{stdout}"
    );
    assert!(stdout.contains("refused: client_not_allowed"), "{stdout}");
    assert!(stdout.contains("refused: user_delegated_token"), "{stdout}");
    if mesh::find_python().is_some() {
        // The Python reports service behind the gateway, its identity headers included.
        assert!(
            stdout.contains("GET /reports/daily → 200 for app reader (roles: Reports.Read)"),
            "{stdout}"
        );
        // The app with no token code, through the reader's sidecar: tokens were handed out over
        // /msi/token, and none of them may show below.
        assert!(
            stdout.contains("GET /api/whoami with it → 200 (as app reader)"),
            "{stdout}"
        );
    }
    assert!(stderr.lines().count() > 1_000, "trace logs were written");

    // The emulator's private signing keys, as stored: their private exponents must not leak.
    let keys = std::fs::read_to_string(dir.join("emulator/keys.json")).expect("keys file");
    let _ = std::fs::remove_dir_all(&dir);
    let all = format!("{stdout}\n{stderr}");
    let secrets = directory_secrets();
    // The reader's, the writer's two and the stranger's, at least.
    assert!(secrets.len() >= 4, "the directory's secrets were read");
    for secret in secrets {
        // As written, form-encoded (`~` is %7E in a token request body), and the distinctive
        // middle part alone (a secret cut or re-encoded on its way to a log).
        let middle = &secret[6..secret.len() - 6];
        for form in [
            secret.clone(),
            secret.replace('~', "%7E"),
            middle.to_owned(),
        ] {
            assert!(
                !all.contains(&form),
                "a client secret was printed, in one of its forms"
            );
        }
    }
    assert!(
        !all.contains("PRIVATE KEY"),
        "a PEM private key was printed"
    );
    let keys: serde_json::Value = serde_json::from_str(&keys).expect("keys JSON");
    let private = keys["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["private_key_pem"].as_str())
        .flat_map(str::lines)
        .filter(|line| !line.starts_with("-----"))
        .collect::<Vec<_>>();
    assert!(private.len() > 10, "the key file was read");
    for line in private {
        assert!(
            !all.contains(line),
            "private signing-key material was printed"
        );
    }
    assert_eq!(find_jwt(&all), None, "a token was printed");
    // The search itself works.
    assert!(find_jwt("x eyJhbGciOi.eyJzdWIiOiJ4.c2lnbmF0dXJl y").is_some());
    assert!(find_jwt("fingerprint=eyJhbGci").is_none());
}
