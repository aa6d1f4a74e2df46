//! The managed-identity endpoint (`/msi/token`, App Service's protocol 2019-08-01) as the Azure
//! SDKs call it: tokens for the directory's managed identities, App Service's answer and errors.

use crate::helpers::*;
use serde_json::Value;

const IDENTITY_HEADER: &str = "emulator-test-identity-header";

async fn spawn_with_endpoint(system_assigned: bool) -> Emulator {
    spawn_with(|settings| {
        settings.managed_identity.identity_header = Some(IDENTITY_HEADER.into());
        if system_assigned {
            settings.managed_identity.system_assigned = Some(nightly_mi::NAME.into());
        }
    })
    .await
}

async fn ask(emu: &Emulator, query: &str, header: Option<&str>) -> (u16, Value) {
    let mut request = emu
        .http
        .get(format!("{}/msi/token?{query}", emu.http_url))
        .header("metadata", "true");
    if let Some(header) = header {
        request = request.header("x-identity-header", header);
    }
    let response = request.send().await.expect("answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

#[tokio::test]
async fn a_managed_identity_gets_an_entra_shaped_token() {
    let emu = spawn_with_endpoint(false).await;
    for selector in [
        format!("client_id={}", nightly_mi::CLIENT_ID),
        format!("object_id={}", nightly_mi::PRINCIPAL_ID),
        format!("principal_id={}", nightly_mi::PRINCIPAL_ID.to_uppercase()),
        format!("mi_res_id={}", nightly_mi::RESOURCE_ID),
        format!("msi_res_id={}", nightly_mi::RESOURCE_ID.to_lowercase()),
    ] {
        let query = format!("resource={API_APP_ID_URI}&api-version=2019-08-01&{selector}");
        let (status, body) = ask(&emu, &query, Some(IDENTITY_HEADER)).await;
        assert_eq!(status, 200, "{selector}: {body}");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["resource"], API_APP_ID_URI);
        assert_eq!(body["client_id"], nightly_mi::CLIENT_ID);
        let expires_on: i64 = body["expires_on"]
            .as_str()
            .expect("a string, as App Service answers")
            .parse()
            .expect("epoch seconds");
        assert!(expires_on > emu.now() + 3000, "{expires_on}");
        let (_, claims) = decode_parts(body["access_token"].as_str().expect("token"));
        assert_eq!(claims["azp"], nightly_mi::CLIENT_ID, "tasks-api issues v2");
        assert_eq!(claims["azpacr"], "2");
        assert_eq!(claims["oid"], nightly_mi::PRINCIPAL_ID);
        assert_eq!(claims["sub"], nightly_mi::PRINCIPAL_ID);
        assert_eq!(claims["idtyp"], "app");
        assert_eq!(claims["xms_mirid"], nightly_mi::RESOURCE_ID);
        assert_eq!(claims["roles"], serde_json::json!(["Tasks.Read.All"]));
        assert_eq!(claims["aud"], API_CLIENT_ID);
    }
}

#[tokio::test]
async fn without_a_selector_the_system_assigned_identity_answers() {
    let emu = spawn_with_endpoint(true).await;
    let (status, body) = ask(
        &emu,
        "resource=https://management.azure.com/&api-version=2019-08-01",
        Some(IDENTITY_HEADER),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, claims) = decode_parts(body["access_token"].as_str().expect("token"));
    assert_eq!(claims["aud"], "https://management.azure.com/");
    assert_eq!(claims["appid"], nightly_mi::CLIENT_ID);
    assert_eq!(claims["xms_mirid"], nightly_mi::RESOURCE_ID);
}

#[tokio::test]
async fn refusals_are_app_services() {
    let emu = spawn_with_endpoint(false).await;
    let good = format!(
        "resource={API_APP_ID_URI}&api-version=2019-08-01&client_id={}",
        nightly_mi::CLIENT_ID
    );
    for (query, header, status, words) in [
        (good.clone(), None, 401, "X-IDENTITY-HEADER"),
        (
            good.clone(),
            Some("emulator-test-identity-headeR"),
            401,
            "X-IDENTITY-HEADER",
        ),
        (
            format!("resource={API_APP_ID_URI}&api-version=2019-08-01"),
            Some(IDENTITY_HEADER),
            400,
            "a system-assigned identity",
        ),
        (
            format!("resource={API_APP_ID_URI}&api-version=2019-08-01&client_id={READER_ID}"),
            Some(IDENTITY_HEADER),
            400,
            "No managed identity with client_id",
        ),
        (
            format!(
                "resource=api://nope&api-version=2019-08-01&client_id={}",
                nightly_mi::CLIENT_ID
            ),
            Some(IDENTITY_HEADER),
            400,
            "AADSTS500011",
        ),
        (
            format!(
                "resource={API_APP_ID_URI}&api-version=2017-09-01&client_id={}",
                nightly_mi::CLIENT_ID
            ),
            Some(IDENTITY_HEADER),
            400,
            "2017-09-01 is not supported",
        ),
    ] {
        let (got, body) = ask(&emu, &query, header).await;
        assert_eq!(got, status, "{query}: {body}");
        assert_eq!(body["statusCode"], status);
        assert!(
            body["message"].as_str().is_some_and(|m| m.contains(words)),
            "{query}: {body}"
        );
    }
    // A managed identity has no secret: the token endpoint does not issue its tokens.
    let response = emu
        .post_secret(nightly_mi::CLIENT_ID, "anything", API_SCOPE)
        .await;
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn the_endpoints_are_off_unless_configured() {
    let emu = spawn_emulator().await;
    let (status, _) = ask(
        &emu,
        &format!("resource={API_APP_ID_URI}&api-version=2019-08-01"),
        Some(IDENTITY_HEADER),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = ask_imds(
        &emu,
        &format!("api-version=2018-02-01&resource={API_APP_ID_URI}"),
        Some("true"),
    )
    .await;
    assert_eq!(status, 404);
}

async fn ask_imds(emu: &Emulator, query: &str, metadata: Option<&str>) -> (u16, Value) {
    let mut request = emu.http.get(format!(
        "{}/metadata/identity/oauth2/token?{query}",
        emu.http_url
    ));
    if let Some(value) = metadata {
        request = request.header("metadata", value);
    }
    let response = request.send().await.expect("answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

#[tokio::test]
async fn the_imds_endpoint_answers_as_the_instance_metadata_service() {
    let emu = spawn_with(|settings| {
        settings.managed_identity.imds = true;
        settings.managed_identity.system_assigned = Some(nightly_mi::NAME.into());
    })
    .await;
    for query in [
        "api-version=2018-02-01&resource=https://management.azure.com/".to_owned(),
        format!(
            "api-version=2019-08-01&resource={API_APP_ID_URI}&msi_res_id={}",
            nightly_mi::RESOURCE_ID
        ),
    ] {
        let (status, body) = ask_imds(&emu, &query, Some("true")).await;
        assert_eq!(status, 200, "{query}: {body}");
        for field in ["expires_in", "expires_on", "ext_expires_in", "not_before"] {
            assert!(
                body[field]
                    .as_str()
                    .is_some_and(|v| v.parse::<i64>().is_ok()),
                "{field} is a string of digits: {body}"
            );
        }
        assert_eq!(body["client_id"], nightly_mi::CLIENT_ID);
        assert_eq!(body["token_type"], "Bearer");
        let (_, claims) = decode_parts(body["access_token"].as_str().expect("token"));
        assert_eq!(claims["xms_mirid"], nightly_mi::RESOURCE_ID);
    }
    let good = format!("api-version=2018-02-01&resource={API_APP_ID_URI}");
    for (query, metadata, error, words) in [
        (
            good.clone(),
            None,
            "bad_request_102",
            "Required metadata header not specified",
        ),
        (
            good.clone(),
            Some("True"),
            "bad_request_102",
            "Required metadata header",
        ),
        (
            format!("{good}&client_id={READER_ID}"),
            Some("true"),
            "invalid_request",
            "Identity not found",
        ),
        (
            "api-version=2018-02-01&resource=api://nope".to_owned(),
            Some("true"),
            "invalid_resource",
            "AADSTS500011",
        ),
        (
            format!("api-version=2017-09-01&resource={API_APP_ID_URI}"),
            Some("true"),
            "invalid_request",
            "2017-09-01 is not supported",
        ),
    ] {
        let (status, body) = ask_imds(&emu, &query, metadata).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"], error, "{query}: {body}");
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| d.contains(words)),
            "{query}: {body}"
        );
    }
}
