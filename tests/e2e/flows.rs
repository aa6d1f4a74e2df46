//! Who gets in: the reader reads, the writer writes, the app the API does not allow and a user's
//! delegated token are refused, and an expired token is answered 401.

use crate::helpers::*;
use std::time::Duration;

#[tokio::test]
async fn reader_reads_writer_writes_and_the_others_are_refused() {
    let test = start().await;
    for runs in 1..=3 {
        test.advance_to_run(EVERY, runs).await;
    }
    assert_eq!(test.runs("reader", "success"), 3);
    assert_eq!(test.runs("writer", "success"), 3, "each POST answered 201");
    assert_eq!(test.runs("stranger", "failure"), 3, "each answered 403");
    assert_eq!(
        test.runs("archiver", "success"),
        3,
        "the secretless caller, on its projected service-account token"
    );
    for name in ["reader", "writer", "stranger", "archiver"] {
        assert_eq!(
            test.runs(name, "error"),
            0,
            "{name}: every call was answered"
        );
        assert_eq!(
            test.mesh.caller(name).idp_requests(),
            1,
            "{name}: one token, reused for every run"
        );
    }

    // The archiver's token came from a federated credential: no secret anywhere in its settings.
    let archiver = test.token("archiver").await;
    let (_, claims) = mesh_tests::emulator::decode_parts(archiver.secret());
    assert_eq!(claims["azp"], test.mesh.caller("archiver").client_id);
    assert_eq!(
        claims["azpacr"], "2",
        "a client assertion: the projected token"
    );

    // What the writer created, the reader sees.
    let reader = test.token("reader").await;
    let listed: serde_json::Value = test
        .mesh
        .http
        .get(format!("{}/api/tasks?limit=10", test.mesh.api.url))
        .bearer_auth(reader.secret())
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let items = listed["items"].as_array().expect("items");
    assert_eq!(items.len(), 3, "{listed}");
    let writer_id = test.mesh.caller("writer").client_id;
    assert!(
        items.iter().all(|t| t["created_by"] == writer_id),
        "{listed}"
    );

    // The stranger's refusals carry their reason; so does a user's delegated token.
    let stranger = test.token("stranger").await;
    assert_eq!(
        test.mesh
            .call_api("/api/tasks", stranger.secret())
            .await
            .expect("answered"),
        (403, Some("client_not_allowed".into()))
    );
    let user = test
        .mesh
        .user_token()
        .await
        .expect("Ada signs in with PKCE");
    assert_eq!(
        test.mesh
            .call_api("/api/whoami", &user)
            .await
            .expect("answered"),
        (403, Some("user_delegated_token".into()))
    );
    let metrics = test.api_metrics().await;
    for line in [
        r#"api_auth_outcomes_total{outcome="client_not_allowed"} 4"#,
        r#"api_auth_outcomes_total{outcome="user_delegated_token"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} not in {metrics}");
    }
    test.mesh.stop().await.expect("stops cleanly");
}

#[tokio::test]
async fn an_expired_token_is_answered_401_expired() {
    let test = start_with(vec![], |_| {}).await;
    let reader = &mesh::demo_callers(EVERY)[0];
    let token = test
        .mesh
        .app_token(
            reader.client_id,
            reader.secret().expect("the reader has a secret"),
        )
        .await
        .expect("the emulator issues it");
    // Three hours later on the mesh's one clock, the token (1-1.5 h of life) has expired.
    test.clock.advance(Duration::from_secs(3 * 3600));
    let response = test
        .mesh
        .http
        .get(format!("{}/api/whoami", test.mesh.api.url))
        .bearer_auth(&token)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
    let body: serde_json::Value = response.json().await.expect("problem+json");
    assert_eq!(body["reason"], "expired");
    test.mesh.stop().await.expect("stops cleanly");
}

/// The Python reports service (no token code) behind entra-gateway, called by the demo's jobs:
/// the reader's reports arrive with its identity, the stranger is refused by the gateway and never
/// reaches Python, and nobody but the gateway sent the identity headers.
#[tokio::test]
async fn the_python_reports_service_serves_only_what_the_gateway_lets_through() {
    let Some(python) = mesh_tests::python3_or_skip() else {
        return;
    };
    let test = start_with(every_tick_callers(), |options| {
        options.add_reports(python);
        for job in options.callers.iter_mut().flat_map(|c| c.jobs.iter_mut()) {
            job.every = EVERY;
        }
        if let Some(reports) = &mut options.reports {
            reports.gateway_port = 0;
        }
    })
    .await;
    for runs in 1..=2 {
        test.advance_to_run(EVERY, runs).await;
    }
    let reader = test.mesh.caller("reader");
    let stranger = test.mesh.caller("stranger");
    assert_eq!(reader.runs("daily-report", "success"), 2);
    assert_eq!(stranger.runs("peek-report", "failure"), 2, "refused");
    assert_eq!(reader.idp_requests(), 2, "one token per service");
    let reports = test
        .mesh
        .reports
        .as_ref()
        .expect("the reports service runs");
    let lines = reports.lines.lock().expect("lines").clone();
    let served: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("/reports/daily"))
        .collect();
    assert_eq!(
        served.len(),
        2,
        "only the reader's calls reached Python: {lines:?}"
    );
    for line in served {
        assert!(
            line.contains(&format!("→ 200 for app {}", reader.client_id))
                && line.contains("(roles: Reports.Read)"),
            "{line}"
        );
    }

    // The stranger's refusal is the gateway's, with the API's reason; a spoofed identity header
    // is replaced by the gateway's own.
    let token = stranger
        .tokens
        .get_token(mesh::Service::Reports.scope())
        .await
        .expect("the stranger holds a reports token");
    let refused = test
        .mesh
        .http
        .get(format!("{}/reports/daily", reports.url))
        .bearer_auth(token.secret())
        .send()
        .await
        .expect("answered");
    assert_eq!(refused.status(), 403);
    let body: serde_json::Value = refused.json().await.expect("problem+json");
    assert_eq!(body["reason"], "client_not_allowed", "{body}");
    // A token for the tasks API: the gateway wants the reports service's audience.
    let reader_token = test
        .mesh
        .app_token(reader.client_id, mesh::demo::reader_job::SECRET)
        .await
        .expect("a reader token for the tasks API");
    let wrong_audience = test
        .mesh
        .http
        .get(format!("{}/reports/daily", reports.url))
        .bearer_auth(&reader_token)
        .send()
        .await
        .expect("answered");
    assert_eq!(
        wrong_audience.status(),
        401,
        "a tasks API token is not for the reports service"
    );
    let metrics = test
        .mesh
        .http
        .get(format!("{}/metrics", reports.url))
        .send()
        .await
        .expect("gateway metrics")
        .text()
        .await
        .expect("body");
    assert_eq!(
        mesh::sum_samples(&metrics, "gateway_decisions_total", r#"outcome="accepted""#),
        2,
        "{metrics}"
    );
    test.mesh.stop().await.expect("stops cleanly");
}

/// A Python app with no token code next to the reader's token sidecar: its calls to the tasks
/// API and (through the gateway) the reports service carry the reader's identity, and the token
/// it takes from the managed-identity endpoint is one the API accepts. It costs the reader no
/// token beyond those its own jobs use.
#[tokio::test]
async fn a_python_app_with_no_token_code_calls_as_the_sidecars_identity() {
    let Some(python) = mesh_tests::python3_or_skip() else {
        return;
    };
    let test = start_with(mesh::demo_callers(EVERY), |options| {
        options.add_reports(python.clone());
        // One round of calls: the app's own clock is real time.
        options.add_sidecar(python, Duration::from_secs(3600));
        if let Some(reports) = &mut options.reports {
            reports.gateway_port = 0;
        }
        if let Some(sidecar) = &mut options.sidecar {
            sidecar.port = 0;
        }
    })
    .await;
    let reader = test.mesh.caller("reader");
    let inventory = test.mesh.inventory.as_ref().expect("the app runs");
    assert!(
        inventory
            .first
            .starts_with("GET /api/tasks?limit=5 via the sidecar → 200"),
        "{}",
        inventory.first
    );
    let whoami = format!(
        "GET /api/whoami with it → 200 (as app {})",
        reader.client_id
    );
    mesh_tests::eventually("the app's round of calls", || async {
        inventory
            .lines
            .lock()
            .expect("lines")
            .iter()
            .any(|l| l.contains(&whoami))
    })
    .await;
    let lines = inventory.lines.lock().expect("lines").clone();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("GET /reports/daily via the sidecar → 200")),
        "{lines:?}"
    );
    let reports = test.mesh.reports.as_ref().expect("reports run");
    let served = reports.lines.lock().expect("lines").clone();
    assert!(
        served
            .iter()
            .any(|l| l.contains(&format!("→ 200 for app {}", reader.client_id))),
        "the gateway passed the sidecar's identity on: {served:?}"
    );
    assert_eq!(
        reader.idp_requests(),
        2,
        "one token per service, shared with the jobs"
    );
    let exposition = reader.metrics.render();
    assert_eq!(
        mesh::sum_samples(
            &exposition,
            "caller_sidecar_requests_total",
            r#"status="200""#
        ),
        2
    );
    assert_eq!(
        mesh::sum_samples(
            &exposition,
            "caller_sidecar_identity_requests_total",
            r#"result="ok""#
        ),
        1
    );
    test.mesh.stop().await.expect("stops cleanly");
}
