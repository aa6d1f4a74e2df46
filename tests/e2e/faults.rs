//! The mesh under the identity provider's bad days: keys rotated mid-run, the token endpoint
//! down for longer than the refresh window, the emulator restarted. Jobs must not notice.

use crate::helpers::*;
use mesh::API_SCOPE;
use mesh_tests::eventually;
use std::time::Duration;

/// Past the latest refresh point of any token (half of 90 min), short of the earliest end of
/// serving (60 min minus the 60 s safety margin).
const PAST_REFRESH: Duration = Duration::from_secs(46 * 60);

fn assert_no_failed_job(test: &TestMesh) {
    for name in ["reader", "writer"] {
        assert_eq!(test.runs(name, "failure"), 0, "{name}");
        assert_eq!(test.runs(name, "error"), 0, "{name}");
    }
    assert_eq!(
        test.runs("stranger", "error"),
        0,
        "the stranger is refused, never unanswered"
    );
}

/// Successful runs of the reader's and writer's jobs, for the `resilience:` lines.
fn served(test: &TestMesh) -> u64 {
    test.runs("reader", "success") + test.runs("writer", "success")
}

/// The caller's `caller_token_serving_stale` gauge, set as a scrape of its `/metrics` sets it.
fn serving_stale(caller: &mesh::Caller) -> i64 {
    caller.tokens.update_gauges();
    caller
        .metrics
        .serving_stale
        .with_label_values(&[API_SCOPE])
        .get()
}

#[tokio::test]
async fn keys_rotated_mid_run_fail_no_call() {
    let test = start().await;
    test.advance_to_run(EVERY, 1).await;
    let old_kid = test.kid_of("reader").await;

    let new_kid = test.rotate_keys().await;
    assert_ne!(new_kid, old_kid);

    // The refreshers fetch tokens signed with the new key while jobs keep running.
    test.advance_to_run(PAST_REFRESH, 2).await;
    eventually("every caller refreshed its token", || async {
        test.mesh.callers.iter().all(|c| c.tokens_acquired() == 2)
    })
    .await;
    for runs in 3..=4 {
        test.advance_to_run(EVERY, runs).await;
    }
    for name in ["reader", "writer", "stranger"] {
        assert_eq!(
            test.kid_of(name).await,
            new_kid,
            "{name} signs with the new key"
        );
    }
    assert_no_failed_job(&test);
    assert_eq!(test.runs("writer", "success"), 4);
    // The API learned the new key on demand: one fetch at start, one for the new kid.
    assert_eq!(test.mesh.api.jwks_fetches(), 2);
    println!(
        "resilience: signing key rotated mid-run: {} reader and writer job runs, 0 failed; the \
         stranger's {} runs refused (403), none unanswered; every caller on the new kid; API JWKS \
         fetches 2 (start-up and the new kid)",
        served(&test),
        test.runs("stranger", "failure")
    );
    test.mesh.stop().await.expect("stops cleanly");
}

#[tokio::test]
async fn a_token_endpoint_outage_past_the_refresh_point_fails_no_job() {
    let test = start().await;
    test.advance_to_run(EVERY, 1).await;
    let served_before = served(&test);
    token_endpoint_down(&test);

    // Past every refresh point: the refreshers try, get 503, back off, and the jobs run on.
    test.advance_to_run(PAST_REFRESH, 2).await;
    for runs in 3..=8 {
        test.advance_to_run(EVERY, runs).await;
    }
    assert_no_failed_job(&test);
    println!(
        "resilience: token endpoint down (503) past every refresh point: {} reader and writer \
         job runs in 52 min of outage (the clock moved 46 min, then 6 × 1 min), 0 failed; refused \
         refresh attempts: {}",
        served(&test) - served_before,
        test.mesh
            .callers
            .iter()
            .map(|c| format!("{} {}", c.name, c.idp_requests() - 1))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for caller in &test.mesh.callers {
        assert!(
            caller.idp_requests() > 1,
            "{}: refresh attempts were made and failed",
            caller.name
        );
        assert_eq!(caller.tokens_acquired(), 1, "{}", caller.name);
        assert_eq!(
            serving_stale(caller),
            1,
            "{}: serving a token whose refresh fails",
            caller.name
        );
    }

    // The identity provider comes back: the next attempt succeeds and the flag clears.
    test.mesh.emulator.state.faults.clear();
    for runs in 9..=10 {
        test.advance_to_run(EVERY, runs).await;
    }
    eventually("every caller refreshed after the outage", || async {
        test.mesh.callers.iter().all(|c| c.tokens_acquired() == 2)
    })
    .await;
    for caller in &test.mesh.callers {
        assert_eq!(serving_stale(caller), 0, "{}", caller.name);
    }
    assert_no_failed_job(&test);
    println!(
        "resilience: token endpoint back after the outage: every caller refreshed with its next \
         attempt and stopped serving stale; 0 failed job runs in all"
    );
    test.mesh.stop().await.expect("stops cleanly");
}

#[tokio::test]
async fn the_emulator_restarted_leaves_every_token_valid() {
    let mut test = start().await;
    test.advance_to_run(EVERY, 1).await;
    let kid_before = test.kid_of("reader").await;

    test.mesh.emulator.restart().await.expect("restarts");
    // Cached tokens keep working: the API never needed the emulator for them.
    test.advance_to_run(EVERY, 2).await;
    // New tokens from the restarted emulator carry the same key, which the API already has.
    test.advance_to_run(PAST_REFRESH, 3).await;
    eventually(
        "every caller refreshed from the restarted emulator",
        || async { test.mesh.callers.iter().all(|c| c.tokens_acquired() == 2) },
    )
    .await;
    test.advance_to_run(EVERY, 4).await;
    assert_eq!(test.kid_of("reader").await, kid_before);
    assert_no_failed_job(&test);
    assert_eq!(test.runs("reader", "success"), 4);
    assert_eq!(test.mesh.api.jwks_fetches(), 1);
    println!(
        "resilience: emulator restarted: {} reader and writer job runs, 0 failed; tokens from the \
         restarted emulator carry the same kid; API JWKS fetches 1 (start-up only)",
        served(&test)
    );
    test.mesh.stop().await.expect("stops cleanly");
}

/// The same outage seen by an app with no token code: a Python client calling the tasks API
/// through the reader's token sidecar gets 200 from the refresh point on while the emulator's
/// token endpoint answers 503, and 503 `no_token` once the reader's token is past its safety
/// margin, never a stale token.
#[tokio::test]
async fn an_app_behind_the_sidecar_rides_the_token_endpoint_outage() {
    let Some(python) = mesh_tests::python3_or_skip() else {
        return;
    };
    let test = start_with(every_tick_callers(), |options| {
        // The inventory app makes one round of calls (its own clock is real time).
        options.add_sidecar(python.clone(), Duration::from_secs(3600));
        if let Some(sidecar) = &mut options.sidecar {
            sidecar.port = 0;
        }
    })
    .await;
    let reader = test.mesh.caller("reader");
    let url = format!(
        "{}/tasks/api/tasks?limit=1",
        reader
            .sidecar
            .as_deref()
            .expect("the reader hosts the sidecar")
    );
    let ask = || {
        let (python, url) = (python.clone(), url.clone());
        tokio::task::spawn_blocking(move || mesh_tests::python_get(&python, &url))
    };
    test.advance_to_run(EVERY, 1).await;
    assert_eq!(ask().await.expect("joins"), 200);

    token_endpoint_down(&test);
    test.advance_to_run(PAST_REFRESH, 2).await;
    let mut answered = 0;
    for runs in 3..=6 {
        test.advance_to_run(EVERY, runs).await;
        assert_eq!(ask().await.expect("joins"), 200, "run {runs}");
        answered += 1;
    }
    let refused = reader.idp_requests() - 1;
    assert!(refused > 0, "refresh attempts were made and refused");

    // Past any token's end (90 min at most): no token to lend, and the app is told why.
    test.advance_to_run(Duration::from_secs(45 * 60), 7).await;
    assert_eq!(ask().await.expect("joins"), 503);
    println!(
        "resilience: sidecar through the emulator's token outage: a Python client got {answered} \
         of {answered} answers 200 through the reader's sidecar from 46 to 50 min of the outage, \
         the reader's {refused} refresh attempts refused (503); past the token's end 503 no_token"
    );
    test.mesh.stop().await.expect("stops cleanly");
}
