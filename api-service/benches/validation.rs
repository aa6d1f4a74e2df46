//! Token validation with and without the verified-token cache, on a real token from the emulator
//! (served in-process; the key store fetches its discovery documents and JWKS over loopback once).
//! The RSA check should run once per token, so a cached validation must cost a small
//! fraction of an uncached one.

use criterion::{Criterion, criterion_group, criterion_main};
use entra_auth::keys::{KeySettings, KeyStore};
use entra_auth::{Validator, ValidatorSettings};
use mesh_tests::demo::{API_CLIENT_ID, READER_ID, READER_SECRET, TENANT};
use mesh_tests::emulator::{Emulator, spawn_emulator_with};
use std::sync::Arc;
use std::sync::atomic::Ordering;

struct Setup {
    authorization: String,
    cached: Validator,
    uncached: Validator,
    _emulator: Emulator,
}

async fn setup() -> Setup {
    // One clock for the emulator, the key store and the validators.
    let clock = shared::clock::system();
    let emulator = spawn_emulator_with(clock.clone(), |_| {}).await;
    let token = emulator.app_token(READER_ID, READER_SECRET).await;
    let validator = |cache_capacity| {
        let (url, trusting, clock) = (emulator.url.clone(), emulator.http.clone(), clock.clone());
        async move {
            let keys = Arc::new(KeyStore::new(
                trusting,
                &url,
                shared::jwks::UrlPolicy::default(),
                vec![TENANT.to_owned()],
                KeySettings::default(),
                clock.clone(),
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
                clock,
            )
        }
    };
    Setup {
        authorization: format!("Bearer {token}"),
        cached: validator(10_000).await,
        uncached: validator(0).await,
        _emulator: emulator,
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
    let bytes = Some(setup.authorization.as_bytes());
    group.bench_function(
        "cached, from the header's bytes (as the middleware calls)",
        |b| {
            b.to_async(&runtime)
                .iter(|| async { setup.cached.validate_header(bytes).await.expect("valid") })
        },
    );
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
