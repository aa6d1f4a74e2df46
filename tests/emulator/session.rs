//! Every endpoint the discovery documents name on the emulator's host answers as Entra would:
//! served (sign-out, the session-check page, the v1 authorize endpoint) or refused with Entra's
//! answer (device code, Kerberos, the v1 userinfo's Bearer challenge); none gets the emulator's
//! generic 404.

use crate::helpers::*;
use serde_json::Value;

/// The endpoint URLs on the emulator's own host in a discovery document, with their member names
/// (`issuer` is an identifier, not an endpoint, at Entra as here).
fn own_urls(emu: &Emulator, document: &Value) -> Vec<(String, String)> {
    document
        .as_object()
        .expect("object")
        .iter()
        .filter(|(name, _)| name.as_str() != "issuer")
        .filter_map(|(name, value)| {
            let url = value.as_str()?;
            let path = url.strip_prefix(&emu.url)?;
            Some((name.clone(), format!("{}{path}", emu.http_url)))
        })
        .collect()
}

#[tokio::test]
async fn no_url_a_discovery_document_names_is_a_bare_404() {
    let emu = spawn_emulator().await;
    let mut checked = 0;
    for path in [
        format!("/{TENANT}/v2.0/.well-known/openid-configuration"),
        format!("/{TENANT}/.well-known/openid-configuration"),
        "/common/v2.0/.well-known/openid-configuration".to_owned(),
        "/organizations/.well-known/openid-configuration".to_owned(),
    ] {
        let (status, document) = emu.get_json(&path).await;
        assert_eq!(status, 200);
        for (member, url) in own_urls(&emu, &document) {
            let response = emu.http.get(&url).send().await.expect("answers");
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            assert!(
                !(status == 404 && body.contains("not_found")),
                "{path}: {member} ({url}) is the generic 404"
            );
            checked += 1;
        }
    }
    assert!(checked >= 28, "{checked} URLs checked");
}

#[tokio::test]
async fn sign_out_succeeds_and_follows_only_a_registered_redirect() {
    let emu = spawn_emulator().await;
    for (tenant, version) in [
        (TENANT, "oauth2/v2.0/logout"),
        (TENANT, "oauth2/logout"),
        ("common", "oauth2/v2.0/logout"),
    ] {
        let url = format!("{}/{tenant}/{version}", emu.http_url);
        let page = emu.http.get(&url).send().await.expect("answers");
        assert_eq!(page.status(), 200);
        assert!(
            page.text()
                .await
                .expect("text")
                .contains("You signed out of your account")
        );

        let back = emu
            .http
            .get(&url)
            .query(&[("post_logout_redirect_uri", CLI_REDIRECT), ("state", "s1")])
            .send()
            .await
            .expect("answers");
        assert_eq!(back.status(), 302);
        assert_eq!(
            back.headers()["location"],
            format!("{CLI_REDIRECT}?state=s1").as_str()
        );

        let elsewhere = emu
            .http
            .get(&url)
            .query(&[("post_logout_redirect_uri", "https://evil.example/")])
            .send()
            .await
            .expect("answers");
        assert_eq!(elsewhere.status(), 200, "never an open redirect");
    }
}

#[tokio::test]
async fn device_code_and_kerberos_are_refused_as_entra_refuses() {
    let emu = spawn_emulator().await;
    let devicecode = format!("{}/{TENANT}/oauth2/v2.0/devicecode", emu.http_url);
    assert_aadsts(
        emu.http.get(&devicecode).send().await.expect("answers"),
        400,
        "invalid_request",
        900561,
    )
    .await;
    let unknown = emu
        .http
        .post(&devicecode)
        .form(&[
            ("client_id", "00000000-1111-4222-8333-444444444444"),
            ("scope", "openid"),
        ])
        .send()
        .await
        .expect("answers");
    assert_aadsts(unknown, 400, "unauthorized_client", 700016).await;
    for url in [
        devicecode.clone(),
        format!("{}/{TENANT}/oauth2/devicecode", emu.http_url),
    ] {
        let known = emu
            .http
            .post(&url)
            .form(&[("client_id", CLI_ID), ("scope", "openid")])
            .send()
            .await
            .expect("answers");
        assert_aadsts(known, 400, "unsupported_grant_type", 70003).await;
    }
    let kerberos = emu
        .http
        .post(format!("{}/{TENANT}/kerberos", emu.http_url))
        .send()
        .await
        .expect("answers");
    assert_aadsts(kerberos, 400, "unsupported_grant_type", 70003).await;
}

#[tokio::test]
async fn v1_userinfo_answers_the_bearer_challenge() {
    let emu = spawn_emulator().await;
    let url = format!("{}/{TENANT}/openid/userinfo", emu.http_url);
    let bare = emu.http.get(&url).send().await.expect("answers");
    assert_eq!(bare.status(), 401);
    assert_eq!(bare.headers()["www-authenticate"], "Bearer");
    let with_token = emu
        .http
        .get(&url)
        .bearer_auth("not-a-token")
        .send()
        .await
        .expect("answers");
    assert_eq!(with_token.status(), 401);
    assert!(
        with_token.headers()["www-authenticate"]
            .to_str()
            .expect("ascii")
            .starts_with("Bearer error=\"invalid_token\"")
    );
}
