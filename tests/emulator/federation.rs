//! Workload identity federation at the token endpoint: projected service-account tokens from the
//! emulator's own stand-in cluster issuer (fetched over HTTPS from its discovery, as any issuer's)
//! exchanged for app tokens, and Entra's answer for each way the exchange fails.

use crate::helpers::*;
use entra_emulator::cluster::{ClusterIssuer, ServiceAccount, TOKEN_EXCHANGE_AUDIENCE};
use serde_json::Value;
use std::sync::Arc;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn archiver() -> ServiceAccount {
    ServiceAccount::new("jobs", "archiver").expect("valid names")
}

/// The running emulator's cluster issuer: the same keys, read from its data directory.
fn issuer_of(emu: &Emulator) -> ClusterIssuer {
    ClusterIssuer::open(&emu.dir.0, &emu.url, emu.now()).expect("cluster keys")
}

async fn exchange(emu: &Emulator, client_id: &str, assertion: &str) -> reqwest::Response {
    emu.post_token(&[
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion),
        ("scope", API_SCOPE),
    ])
    .await
}

fn mint(issuer: &ClusterIssuer, account: &ServiceAccount, audience: &str, now: i64) -> String {
    issuer
        .mint(account, audience, 3600, now)
        .expect("projected token")
        .token
}

#[tokio::test]
async fn a_projected_service_account_token_is_exchanged_for_an_app_token() {
    let emu = spawn_emulator().await;

    let (status, discovery) = emu
        .get_json("/cluster/.well-known/openid-configuration")
        .await;
    assert_eq!(status, 200, "{discovery}");
    let issuer_url = format!("{}/cluster", emu.url);
    assert_eq!(discovery["issuer"], issuer_url.as_str());
    assert_eq!(
        discovery["jwks_uri"],
        format!("{issuer_url}/openid/v1/jwks").as_str()
    );
    let (status, jwks) = emu.get_json("/cluster/openid/v1/jwks").await;
    assert_eq!(status, 200);
    let issuer = issuer_of(&emu);
    assert_eq!(issuer.issuer(), issuer_url);

    let projected = mint(&issuer, &archiver(), TOKEN_EXCHANGE_AUDIENCE, emu.now());
    let (header, claims) = decode_parts(&projected);
    assert_eq!(claims["sub"], archiver_job::FEDERATED_SUBJECT);
    assert_eq!(claims["aud"], serde_json::json!([TOKEN_EXCHANGE_AUDIENCE]));
    assert_eq!(claims["kubernetes.io"]["namespace"], "jobs");
    assert_eq!(claims["exp"].as_i64(), Some(emu.now() + 3600));
    let kids: Vec<&Value> = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| &k["kid"])
        .collect();
    assert!(kids.contains(&&header["kid"]), "{header} not in {jwks}");

    let response = exchange(&emu, archiver_job::CLIENT_ID, &projected).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    let (_, token) = decode_parts(body["access_token"].as_str().expect("token"));
    assert_eq!(token["azp"], archiver_job::CLIENT_ID);
    assert_eq!(
        token["azpacr"], "2",
        "a client assertion, as Entra marks it"
    );
    assert_eq!(token["oid"], archiver_job::SERVICE_PRINCIPAL_ID);
    assert_eq!(token["roles"], serde_json::json!(["Tasks.Read.All"]));
    assert_eq!(token["idtyp"], "app");

    // The same projected token again: it is reused all hour, so no replay rule applies to it.
    let again = exchange(&emu, archiver_job::CLIENT_ID, &projected).await;
    assert_eq!(again.status(), 200);
}

#[tokio::test]
async fn each_mismatch_is_answered_with_entra_s_code_naming_what_was_presented() {
    let emu = spawn_emulator().await;
    let issuer = issuer_of(&emu);
    let now = emu.now();

    // An app with no federated credential at all.
    let projected = mint(&issuer, &archiver(), TOKEN_EXCHANGE_AUDIENCE, now);
    let body = assert_aadsts(
        exchange(&emu, STRANGER_ID, &projected).await,
        400,
        "invalid_request",
        70021,
    )
    .await;
    let description = body["error_description"].as_str().expect("text");
    for part in [
        format!("Assertion Issuer: '{}'", issuer.issuer()),
        "Assertion Subject: 'system:serviceaccount:jobs:archiver'".to_owned(),
        format!("Assertion Audience: '{TOKEN_EXCHANGE_AUDIENCE}'"),
    ] {
        assert!(description.contains(&part), "{part} in {description}");
    }

    // Another issuer (another cluster's keys and URL).
    let elsewhere = TempDir::new("other-cluster");
    let other = ClusterIssuer::open(&elsewhere.0, "https://oidc.example.net", now).expect("keys");
    let body = assert_aadsts(
        exchange(
            &emu,
            archiver_job::CLIENT_ID,
            &mint(&other, &archiver(), TOKEN_EXCHANGE_AUDIENCE, now),
        )
        .await,
        401,
        "invalid_client",
        700211,
    )
    .await;
    assert!(
        body["error_description"]
            .as_str()
            .expect("text")
            .contains("presented assertion issuer 'https://oidc.example.net/cluster'"),
        "{body}"
    );

    // Another service account of the same cluster.
    let reports = ServiceAccount::new("jobs", "reports").expect("names");
    assert_aadsts(
        exchange(
            &emu,
            archiver_job::CLIENT_ID,
            &mint(&issuer, &reports, TOKEN_EXCHANGE_AUDIENCE, now),
        )
        .await,
        401,
        "invalid_client",
        700213,
    )
    .await;

    // The same subject in other case: Entra matches case-sensitively and says so.
    let shouting = ServiceAccount {
        namespace: "JOBS".into(),
        name: "archiver".into(),
    };
    let body = assert_aadsts(
        exchange(
            &emu,
            archiver_job::CLIENT_ID,
            &mint(&issuer, &shouting, TOKEN_EXCHANGE_AUDIENCE, now),
        )
        .await,
        401,
        "invalid_client",
        7002138,
    )
    .await;
    assert!(
        body["error_description"]
            .as_str()
            .expect("text")
            .contains("matches with case-insensitive comparison"),
        "{body}"
    );

    // Another audience.
    assert_aadsts(
        exchange(
            &emu,
            archiver_job::CLIENT_ID,
            &mint(&issuer, &archiver(), "api://some-other-exchange", now),
        )
        .await,
        401,
        "invalid_client",
        700212,
    )
    .await;
}

#[tokio::test]
async fn expired_unknown_key_and_forged_assertions_are_refused() {
    let clock = Arc::new(ManualClock::at_system_time());
    let emu = spawn_on(Arc::new(TempDir::new("emulator")), clock.clone(), |_| {}).await;
    let issuer = issuer_of(&emu);
    let now = emu.now();
    let projected = mint(&issuer, &archiver(), TOKEN_EXCHANGE_AUDIENCE, now);

    // Signed with keys the issuer does not publish, under its URL.
    let impostor_dir = TempDir::new("impostor");
    let impostor = ClusterIssuer::open(&impostor_dir.0, &emu.url, now).expect("keys");
    let forged = mint(&impostor, &archiver(), TOKEN_EXCHANGE_AUDIENCE, now);
    let body = assert_aadsts(
        exchange(&emu, archiver_job::CLIENT_ID, &forged).await,
        401,
        "invalid_client",
        7000272,
    )
    .await;
    let (forged_header, _) = decode_parts(&forged);
    let kid = forged_header["kid"].as_str().expect("kid");
    assert!(
        body["error_description"]
            .as_str()
            .expect("text")
            .contains(&format!(
                "identifier {kid} used to sign the federated credential"
            )),
        "{body}"
    );

    // The issuer's kid with another token's signature.
    let other = mint(&issuer, &archiver(), TOKEN_EXCHANGE_AUDIENCE, now + 1);
    let (head, _) = projected.rsplit_once('.').expect("JWS");
    let (_, signature) = other.rsplit_once('.').expect("JWS");
    assert_aadsts(
        exchange(
            &emu,
            archiver_job::CLIENT_ID,
            &format!("{head}.{signature}"),
        )
        .await,
        401,
        "invalid_client",
        700027,
    )
    .await;

    // Minted in the future (the issuer's clock ahead by 10 minutes): refused until it is valid.
    let early = mint(&issuer, &archiver(), TOKEN_EXCHANGE_AUDIENCE, now + 600);
    assert_aadsts(
        exchange(&emu, archiver_job::CLIENT_ID, &early).await,
        401,
        "invalid_client",
        700024,
    )
    .await;

    // No `nbf`, issued 10 minutes ahead: `iat` alone puts it in the future.
    let issued_ahead = issuer
        .sign(&serde_json::json!({
            "iss": issuer.issuer(), "sub": archiver_job::FEDERATED_SUBJECT,
            "aud": [TOKEN_EXCHANGE_AUDIENCE], "iat": now + 600, "exp": now + 3600,
        }))
        .expect("signed");
    assert_aadsts(
        exchange(&emu, archiver_job::CLIENT_ID, &issued_ahead).await,
        401,
        "invalid_client",
        700024,
    )
    .await;
    // And the same claims issued now: accepted, so the refusal above was the `iat`.
    let issued_now = issuer
        .sign(&serde_json::json!({
            "iss": issuer.issuer(), "sub": archiver_job::FEDERATED_SUBJECT,
            "aud": [TOKEN_EXCHANGE_AUDIENCE], "iat": now, "exp": now + 3600,
        }))
        .expect("signed");
    assert_eq!(
        exchange(&emu, archiver_job::CLIENT_ID, &issued_now)
            .await
            .status(),
        200
    );

    // Valid an hour; refused past its end and the five minutes of skew.
    let ok = exchange(&emu, archiver_job::CLIENT_ID, &projected).await;
    assert_eq!(ok.status(), 200);
    clock.advance_secs(3600 + 301);
    assert_aadsts(
        exchange(&emu, archiver_job::CLIENT_ID, &projected).await,
        401,
        "invalid_client",
        700024,
    )
    .await;
}

#[tokio::test]
async fn a_removed_credential_is_refused_at_the_next_exchange() {
    let emu = spawn_emulator().await;
    let issuer = issuer_of(&emu);
    let projected = mint(&issuer, &archiver(), TOKEN_EXCHANGE_AUDIENCE, emu.now());
    assert_eq!(
        exchange(&emu, archiver_job::CLIENT_ID, &projected)
            .await
            .status(),
        200
    );

    let (status, listed) = emu.get_json("/admin/federated-credentials").await;
    assert_eq!(status, 200);
    assert_eq!(
        listed["federated_credentials"][TENANT][archiver_job::CLIENT_ID][0]["issuer"],
        issuer.issuer()
    );
    let path = format!(
        "{}/admin/federated-credentials/{}/{}",
        emu.http_url,
        archiver_job::CLIENT_ID,
        archiver_job::FEDERATED_CREDENTIAL
    );
    let removed = emu.http.delete(&path).send().await.expect("answers");
    assert_eq!(removed.status(), 200);
    let again = emu.http.delete(&path).send().await.expect("answers");
    assert_eq!(again.status(), 404, "already gone");

    assert_aadsts(
        exchange(&emu, archiver_job::CLIENT_ID, &projected).await,
        400,
        "invalid_request",
        70021,
    )
    .await;
}

#[tokio::test]
async fn an_issuer_that_cannot_be_reached_is_aadsts50166() {
    let dir = Arc::new(TempDir::new("emulator"));
    // Nothing listens on port 1; the credential names that issuer.
    let unreachable = "https://127.0.0.1:1";
    let text = std::fs::read_to_string(demo_dir().join("directory.toml"))
        .expect("demo directory")
        .replace(
            "issuer = \"cluster\"",
            &format!("issuer = \"{unreachable}/cluster\""),
        );
    let directory = dir.0.join("directory.toml");
    std::fs::write(&directory, text).expect("write directory");
    std::fs::create_dir_all(dir.0.join("certs")).expect("certs dir");
    std::fs::copy(
        demo_dir().join("certs/cert-job.crt"),
        dir.0.join("certs/cert-job.crt"),
    )
    .expect("copy cert");
    let emu = spawn_in(dir.clone(), |settings| settings.directory = directory).await;
    let elsewhere = TempDir::new("unreachable-cluster");
    let issuer = ClusterIssuer::open(&elsewhere.0, unreachable, emu.now()).expect("keys");
    assert_aadsts(
        exchange(
            &emu,
            archiver_job::CLIENT_ID,
            &mint(&issuer, &archiver(), TOKEN_EXCHANGE_AUDIENCE, emu.now()),
        )
        .await,
        400,
        "invalid_request",
        50166,
    )
    .await;
}

/// `serve` and `project-token` starting together on a fresh data directory: both open the cluster
/// keys at once, and they must agree on one set (the second finds the first's file and loads it).
#[test]
fn two_openers_of_a_fresh_data_directory_agree_on_one_key_set() {
    for _ in 0..5 {
        let dir = Arc::new(TempDir::new("race"));
        let openers: Vec<_> = (0..4)
            .map(|_| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    ClusterIssuer::open(&dir.0, "https://localhost:8443", 0)
                        .expect("opens")
                        .jwks()
                })
            })
            .collect();
        let sets: Vec<Value> = openers
            .into_iter()
            .map(|t| t.join().expect("joins"))
            .collect();
        assert!(sets.windows(2).all(|w| w[0] == w[1]), "{sets:?}");
    }
}
