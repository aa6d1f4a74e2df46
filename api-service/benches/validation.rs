//! Token validation with and without the verified-token cache, on a real token from the emulator
//! (served in-process; the key store fetches its discovery documents and JWKS over loopback once).
//! Issue 3: the RSA check should run once per token, so a cached validation must cost a small
//! fraction of an uncached one.

use api_service::auth::keys::{KeySettings, KeyStore, system_clock};
use api_service::auth::{Validator, ValidatorSettings};
use criterion::{Criterion, criterion_group, criterion_main};
use std::sync::Arc;
use std::sync::atomic::Ordering;

const TENANT: &str = "72f1c3d4-5b6a-4c8d-9e0f-1a2b3c4d5e6f";
const API_CLIENT_ID: &str = "6e1f4a8b-2c3d-4e5f-8a9b-0c1d2e3f4a5b";
const READER_ID: &str = "0b9a1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d";
const READER_SECRET: &str = "rdr8Q~demo.reader.secret.not-for-production";

struct Setup {
    authorization: String,
    cached: Validator,
    uncached: Validator,
}

async fn setup() -> Setup {
    let dir = std::env::temp_dir().join(format!("api-bench-{}", std::process::id()));
    let mut settings = entra_emulator::settings::EmulatorSettings {
        data_dir: dir,
        directory: std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../entra-emulator/demo/directory.toml"),
        ..Default::default()
    };
    settings.server.https_port = 0;
    settings.server.http_port = Some(0);
    settings.server.workers = Some(1);
    let emulator = entra_emulator::Application::build(settings)
        .await
        .expect("emulator starts");
    let http_url = format!("http://{}", emulator.http_addr().expect("http listener"));
    // Discovery names the JWKS at the public HTTPS URL: trust the emulator's development CA.
    let trusting = shared::http::build_client(&shared::http::HttpClientSettings {
        extra_ca_file: Some(emulator.ca_cert_path().clone()),
        ..Default::default()
    })
    .expect("client");
    tokio::spawn(emulator.run_until_stopped());
    let client = reqwest::Client::new();
    let body: serde_json::Value = client
        .post(format!("{http_url}/{TENANT}/oauth2/v2.0/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", READER_ID),
            ("client_secret", READER_SECRET),
            ("scope", "api://tasks-api/.default"),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let token = body["access_token"].as_str().expect("token").to_owned();
    let validator = |cache_capacity| {
        let (http_url, trusting) = (http_url.clone(), trusting.clone());
        async move {
            let keys = Arc::new(KeyStore::new(
                trusting,
                &http_url,
                vec![TENANT.to_owned()],
                KeySettings::default(),
                system_clock(),
            ));
            keys.refresh().await.expect("keys");
            Validator::new(
                keys,
                ValidatorSettings {
                    audiences: vec![API_CLIENT_ID.to_owned()],
                    allowed_clients: vec![READER_ID.to_owned()],
                    cache_capacity,
                    ..Default::default()
                },
                system_clock(),
            )
        }
    };
    Setup {
        authorization: format!("Bearer {token}"),
        cached: validator(10_000).await,
        uncached: validator(0).await,
    }
}

fn validation(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let setup = runtime.block_on(setup());
    let header = Some(setup.authorization.as_str());
    runtime
        .block_on(setup.cached.validate(header))
        .expect("the token is valid");

    let mut group = c.benchmark_group("validate");
    group.bench_function("cached (policy every call, RSA once)", |b| {
        b.to_async(&runtime)
            .iter(|| async { setup.cached.validate(header).await.expect("valid") })
    });
    group.bench_function("uncached (RSA every call)", |b| {
        b.to_async(&runtime)
            .iter(|| async { setup.uncached.validate(header).await.expect("valid") })
    });
    group.finish();
    // The figures mean what their names say only if the caches behaved as claimed.
    assert_eq!(
        setup
            .cached
            .metrics
            .signature_checks
            .load(Ordering::Relaxed),
        1
    );
    assert_eq!(setup.uncached.metrics.cache_hits.load(Ordering::Relaxed), 0);
}

criterion_group!(benches, validation);
criterion_main!(benches);
