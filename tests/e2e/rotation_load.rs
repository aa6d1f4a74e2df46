//! Key rotation under load: while eight clients keep calling the API as fast as they can, the
//! emulator rotates its signing key and the callers refresh onto it. Not one request may fail.

use crate::helpers::*;
use mesh_tests::eventually;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

const CLIENTS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotated_under_load_fail_no_request() {
    let test = Arc::new(start().await);
    test.advance_to_run(EVERY, 1).await;
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = tokio::task::JoinSet::new();
    for client in 0..CLIENTS {
        let (test, ok, failed, stop) = (test.clone(), ok.clone(), failed.clone(), stop.clone());
        load.spawn(async move {
            // Half the clients call as the reader, half as the writer, each with whatever token
            // its caller holds right now, as a job would.
            let caller = if client % 2 == 0 { "reader" } else { "writer" };
            let mut statuses = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let token = test.token(caller).await;
                let status = test
                    .mesh
                    .http
                    .get(format!("{}/api/whoami", test.mesh.api.url))
                    .bearer_auth(token.secret())
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                if status == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    statuses.push(status);
                }
            }
            statuses
        });
    }
    let served = |n: u64| {
        let ok = ok.clone();
        async move {
            eventually(&format!("{n} requests served"), || async {
                ok.load(Ordering::Relaxed) >= n
            })
            .await
        }
    };
    served(200).await;

    let new_kid = test.rotate_keys().await;
    // The callers refresh onto the new key while the load goes on.
    test.advance_to_run(Duration::from_secs(46 * 60), 2).await;
    eventually("every caller refreshed its token", || async {
        test.mesh.callers.iter().all(|c| c.tokens_acquired() == 2)
    })
    .await;
    let after_rotation = ok.load(Ordering::Relaxed);
    served(after_rotation + 400).await;
    stop.store(true, Ordering::Relaxed);
    let mut refused = Vec::new();
    while let Some(statuses) = load.join_next().await {
        refused.extend(statuses.expect("client task"));
    }

    assert_eq!(
        test.kid_of("reader").await,
        new_kid,
        "the load ended on the new key"
    );
    assert_eq!(refused, Vec::<u16>::new(), "statuses other than 200");
    let served = ok.load(Ordering::Relaxed);
    let fetches = test.mesh.api.jwks_fetches();
    println!(
        "resilience: key rotation under load: {served} requests from {CLIENTS} clients, 0 failed, \
         {after_rotation} before the callers held new-key tokens; JWKS fetches {fetches}"
    );
    assert_eq!(fetches, 2, "start-up and the new kid");
    let Ok(test) = Arc::try_unwrap(test) else {
        panic!("the load tasks have ended");
    };
    test.mesh.stop().await.expect("stops cleanly");
}
