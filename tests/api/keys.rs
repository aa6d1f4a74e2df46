//! Keys: loaded before readiness, re-fetched for unknown `kid`s at most once per 5 minutes,
//! kept through an outage for a bounded time.

use entra_auth::keys::{KeyStore, Lookup, Readiness};
use mesh_tests::api::*;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use wiremock::ResponseTemplate;

fn found(lookup: &Lookup) -> bool {
    matches!(lookup, Lookup::Found(_))
}

fn fetches(store: &KeyStore) -> u64 {
    store.metrics.fetches.load(Ordering::Relaxed)
}

/// A wiremock identity provider serving the discovery documents (the JWKS is each test's), a test
/// clock, and a key store over them, not loaded yet.
async fn arrange() -> (TestIdp, Arc<ManualClock>, Arc<KeyStore>) {
    let idp = TestIdp::start().await;
    idp.serve_discovery().await;
    let clock = test_clock();
    let store = idp.key_store(clock.clone());
    (idp, clock, store)
}

#[tokio::test]
async fn keys_and_issuers_load_before_readiness() {
    let (idp, _clock, store) = arrange().await;
    let key = TestKey::generate("k1");
    idp.serve_jwks(&[&key], 1).await;
    assert_eq!(store.readiness(), Readiness::NotLoaded);
    store.refresh().await.expect("loads");
    assert_eq!(store.readiness(), Readiness::Ready { age_secs: 0 });
    let published = store.snapshot().expect("loaded");
    let issuers = &published.tenants[TENANT].issuers;
    assert_eq!(
        issuers.v2,
        format!("https://login.microsoftonline.com/{TENANT}/v2.0")
    );
    assert_eq!(issuers.v1, format!("https://sts.windows.net/{TENANT}/"));
    assert!(found(&store.lookup("k1").await));
}

#[tokio::test]
async fn an_unknown_kid_flood_causes_one_fetch_per_five_minutes() {
    let (idp, clock, store) = arrange().await;
    let key = TestKey::generate("k1");
    // The initial load, one fetch for the flood, one more after five minutes: 3 in all.
    idp.serve_jwks(&[&key], 3).await;
    store.refresh().await.expect("loads");

    let mut flood = tokio::task::JoinSet::new();
    for i in 0..50 {
        let store = store.clone();
        flood.spawn(async move { store.lookup(&format!("attacker-{i}")).await });
    }
    while let Some(result) = flood.join_next().await {
        assert!(matches!(result.expect("task"), Lookup::Unknown));
    }
    clock.advance_secs(299);
    assert!(matches!(
        store.lookup("attacker-late").await,
        Lookup::Unknown
    ));
    assert!(
        found(&store.lookup("k1").await),
        "known keys are served meanwhile"
    );
    clock.advance_secs(2);
    assert!(matches!(
        store.lookup("attacker-after-5-min").await,
        Lookup::Unknown
    ));
    assert_eq!(fetches(&store), 3);
}

/// The store's first load finds `key` alone; later fetches get whatever is mounted next.
async fn load_only(idp: &TestIdp, store: &KeyStore, key: &TestKey) {
    TestIdp::on_jwks(TestIdp::publishing(&[key]))
        .up_to_n_times(1)
        .expect(1)
        .mount(&idp.server)
        .await;
    store.refresh().await.expect("loads");
}

#[tokio::test]
async fn a_rotated_in_key_is_found_without_a_restart() {
    let (idp, _clock, store) = arrange().await;
    let old = TestKey::generate("old");
    let new = TestKey::generate("new");
    load_only(&idp, &store, &old).await;
    idp.serve_jwks(&[&old, &new], 1).await;
    assert!(
        found(&store.lookup("new").await),
        "fetched on first sight of the new kid"
    );
    assert!(
        found(&store.lookup("old").await),
        "the old key stays while published"
    );
}

/// Found by the mesh's end-to-end rotation test: the first request with the new kid fetched, and
/// the requests arriving during that fetch were refused `unknown_signing_key` at once.
#[tokio::test]
async fn requests_arriving_during_a_rotation_fetch_wait_for_it() {
    let (idp, _clock, store) = arrange().await;
    let old = TestKey::generate("old");
    let new = TestKey::generate("new");
    load_only(&idp, &store, &old).await;
    // The rotated JWKS answers slowly, so the other lookups arrive while it is being fetched.
    TestIdp::on_jwks(TestIdp::publishing(&[&old, &new]).set_delay(Duration::from_millis(200)))
        .expect(1)
        .mount(&idp.server)
        .await;
    let mut rotation = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let store = store.clone();
        rotation.spawn(async move { store.lookup("new").await });
        tokio::task::yield_now().await;
    }
    while let Some(result) = rotation.join_next().await {
        assert!(
            found(&result.expect("task")),
            "every request finds the new key"
        );
    }
    assert_eq!(
        fetches(&store),
        2,
        "the start-up load and one fetch for the rotation"
    );
}

/// A JWKS fetch that hangs must not park every request with an unknown kid for the fetch's whole
/// timeout: the waiters give up after a bounded wait and are refused as before, without a second
/// fetch. (The answer arrives only after 30 s, so a request that waited for it would find the key.)
#[tokio::test]
async fn waiting_for_a_hanging_fetch_is_bounded() {
    let (idp, _clock, store) = arrange().await;
    let old = TestKey::generate("old");
    let new = TestKey::generate("new");
    load_only(&idp, &store, &old).await;
    TestIdp::on_jwks(TestIdp::publishing(&[&old, &new]).set_delay(Duration::from_secs(30)))
        .mount(&idp.server)
        .await;
    let fetching = {
        let store = store.clone();
        tokio::spawn(async move { store.lookup("new").await })
    };
    // The fetch hangs once its JWKS request reached the identity provider: the 6th request, after
    // the start-up load's 3 and the fetch's 2 discovery documents.
    while idp.server.received_requests().await.map_or(0, |r| r.len()) < 6 {
        tokio::task::yield_now().await;
    }
    let mut waiters = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let store = store.clone();
        waiters.spawn(async move { store.lookup("new").await });
    }
    while let Some(result) = waiters.join_next().await {
        assert!(
            matches!(result.expect("task"), Lookup::Unknown),
            "answered before the hanging fetch ended"
        );
    }
    fetching.abort();
    assert_eq!(fetches(&store), 2);
}

#[tokio::test]
async fn an_outage_keeps_the_last_good_keys_for_24_hours_then_fails_closed() {
    let (idp, clock, store) = arrange().await;
    let key = TestKey::generate("k1");
    TestIdp::on_jwks(TestIdp::publishing(&[&key]))
        .up_to_n_times(1)
        .mount(&idp.server)
        .await;
    store.refresh().await.expect("loads");
    TestIdp::on_jwks(ResponseTemplate::new(503))
        .mount(&idp.server)
        .await;

    clock.advance_secs(12 * 3600);
    assert!(
        store.refresh().await.is_err(),
        "the identity provider is down"
    );
    assert!(
        found(&store.lookup("k1").await),
        "last good keys still work"
    );
    assert_eq!(
        store.readiness(),
        Readiness::Ready {
            age_secs: 12 * 3600
        }
    );

    clock.advance_secs(12 * 3600 + 1);
    assert!(
        matches!(store.lookup("k1").await, Lookup::Unavailable),
        "fails closed after the bound"
    );
    assert_eq!(
        store.readiness(),
        Readiness::Stale {
            age_secs: 24 * 3600 + 1
        }
    );
    assert_eq!(store.metrics.failures.load(Ordering::Relaxed), 2);
    println!(
        "resilience: JWKS outage: last good keys served 12 h into the outage (readiness ready, \
         age 43200 s); at 24 h + 1 s lookups refused (fail closed, readiness stale, age 86401 s); \
         2 failed JWKS fetches counted"
    );
}
