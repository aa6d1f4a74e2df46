//! The whole validation against a wiremock identity provider and tokens the test signs.

use entra_auth::Reason;
use mesh_tests::api::*;
use std::sync::Arc;
use std::sync::atomic::Ordering;

async fn setup() -> (TestIdp, TestKey, Arc<ManualClock>, entra_auth::Validator) {
    let idp = TestIdp::start().await;
    let key = TestKey::generate("k1");
    idp.serve_discovery().await;
    let clock = test_clock();
    let store = idp.key_store(clock.clone());
    let validator = validator(store, clock.clone());
    (idp, key, clock, validator)
}

/// As [`setup`], with the key published (one JWKS fetch) and loaded.
async fn loaded() -> (TestIdp, TestKey, Arc<ManualClock>, entra_auth::Validator) {
    let (idp, key, clock, validator) = setup().await;
    idp.serve_jwks(&[&key], 1).await;
    validator.keys().refresh().await.expect("keys");
    (idp, key, clock, validator)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn a_valid_app_token_is_accepted_and_its_signature_checked_once() {
    let (_idp, key, clock, validator) = loaded().await;
    let token = key.mint(clock.unix(), |_| {});
    for _ in 0..5 {
        let caller = validator
            .validate(Some(&bearer(&token)))
            .await
            .expect("accepted");
        assert_eq!(caller.client_app_id, READER_ID);
        assert_eq!(caller.roles, ["Tasks.Read.All"]);
    }
    assert_eq!(
        validator.metrics.signature_checks.load(Ordering::Relaxed),
        1
    );
    assert_eq!(validator.metrics.cache_hits.load(Ordering::Relaxed), 4);
}

#[tokio::test]
async fn the_cache_spares_the_signature_never_the_claims() {
    let (_idp, key, clock, validator) = loaded().await;
    let token = key.mint(clock.unix(), |c| c["exp"] = (1_800_000_000i64 + 600).into());
    assert!(validator.validate(Some(&bearer(&token))).await.is_ok());
    clock.advance_secs(661);
    let err = validator
        .validate(Some(&bearer(&token)))
        .await
        .expect_err("expired meanwhile");
    assert_eq!(err.reason, Reason::Expired);
}

#[tokio::test]
async fn a_signature_by_another_key_under_a_published_kid_is_refused() {
    let (_idp, _key, clock, validator) = loaded().await;
    let impostor = TestKey::generate("k1");
    let token = impostor.mint(clock.unix(), |_| {});
    let err = validator
        .validate(Some(&bearer(&token)))
        .await
        .expect_err("forged");
    assert_eq!(err.reason, Reason::InvalidSignature);
}

#[tokio::test]
async fn a_user_token_and_a_stranger_are_refused_with_403_reasons() {
    let (_idp, key, clock, validator) = loaded().await;
    let now = clock.unix();
    let user = key.mint(now, |c| {
        c["idtyp"] = "user".into();
        c["scp"] = "Tasks.Read".into();
        c["sub"] = "pairwise".into();
    });
    assert_eq!(
        validator
            .validate(Some(&bearer(&user)))
            .await
            .expect_err("user")
            .reason,
        Reason::UserDelegatedToken
    );
    let stranger = key.mint(now, |c| c["azp"] = STRANGER_ID.into());
    assert_eq!(
        validator
            .validate(Some(&bearer(&stranger)))
            .await
            .expect_err("stranger")
            .reason,
        Reason::ClientNotAllowed
    );
}

#[tokio::test]
async fn a_cached_token_stops_working_when_its_key_is_retired() {
    let (idp, key, clock, validator) = setup().await;
    let successor = TestKey::generate("k2");
    TestIdp::on_jwks(TestIdp::publishing(&[&key]))
        .up_to_n_times(1)
        .mount(&idp.server)
        .await;
    validator.keys().refresh().await.expect("keys");
    let token = key.mint(clock.unix(), |_| {});
    assert!(
        validator.validate(Some(&bearer(&token))).await.is_ok(),
        "verified and cached"
    );
    idp.serve_jwks(&[&successor], 1).await;
    validator
        .keys()
        .refresh()
        .await
        .expect("k1 retired, k2 published");
    let err = validator
        .validate(Some(&bearer(&token)))
        .await
        .expect_err("retired key");
    assert_eq!(err.reason, Reason::UnknownSigningKey);
}
