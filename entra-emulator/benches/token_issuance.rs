//! Token issuance: the minting core alone (claims + one RS256 signature), and the whole token
//! endpoint over loopback HTTP with 64 requests in flight, client and server sharing the machine.
//! Target: at least 1,000 tokens/s on a 2-core machine (a mesh of a few hundred callers refreshing
//! at half-life asks for far fewer).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use entra_emulator::Application;
use entra_emulator::demo;
use entra_emulator::mint::TokenService;
use entra_emulator::settings::EmulatorSettings;
use shared::claims::ClientAuth;
use shared::clock::SystemClock;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const IN_FLIGHT: usize = 64;

/// The demo directory, keys in a scratch data directory, HTTP and HTTPS on free ports.
fn settings() -> EmulatorSettings {
    let mut settings = EmulatorSettings {
        data_dir: std::env::temp_dir().join(format!("emulator-bench-{}", std::process::id())),
        directory: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("demo/directory.toml"),
        ..Default::default()
    };
    settings.server.https_port = 0;
    settings.server.http_port = Some(0);
    settings
}

fn mint(c: &mut Criterion) {
    let service = TokenService::open(
        &settings(),
        Arc::new(SystemClock),
        "https://localhost:8443".into(),
    )
    .expect("the demo directory and keys");
    let tenant = &service.directory.tenants[0];
    let client = tenant.application("reader-job").expect("reader");
    let mut group = c.benchmark_group("issuance");
    group.throughput(Throughput::Elements(1));
    group.bench_function("mint_app_token_v2", |b| {
        b.iter(|| {
            let resource = service
                .resolve_default_scope(tenant, &tenant.id, "api://tasks-api/.default")
                .expect("scope");
            service
                .app_token(tenant, client, &resource, ClientAuth::Secret)
                .expect("token")
        })
    });
    group.finish();
}

fn endpoint(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let url = runtime.block_on(async {
        let app = Application::build(settings()).await.expect("emulator");
        let url = format!(
            "http://{}/{}/oauth2/v2.0/token",
            app.http_addr().expect("http"),
            demo::TENANT
        );
        tokio::spawn(app.run_until_stopped());
        url
    });
    let client = reqwest::Client::new();
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", demo::reader_job::CLIENT_ID),
        ("client_secret", demo::reader_job::SECRET),
        ("scope", demo::tasks_api::SCOPE),
    ];
    let mut group = c.benchmark_group("issuance");
    group.throughput(Throughput::Elements(IN_FLIGHT as u64));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("token_endpoint_http_64_in_flight", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    let mut batch = tokio::task::JoinSet::new();
                    for _ in 0..IN_FLIGHT {
                        let (client, url, form) = (client.clone(), url.clone(), form);
                        batch.spawn(async move {
                            let response =
                                client.post(url).form(&form).send().await.expect("answers");
                            assert_eq!(response.status(), 200);
                            response.bytes().await.expect("body");
                        });
                    }
                    while let Some(done) = batch.join_next().await {
                        done.expect("request task");
                    }
                }
                started.elapsed()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, mint, endpoint);
criterion_main!(benches);
