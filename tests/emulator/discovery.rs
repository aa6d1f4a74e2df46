//! OpenID discovery, instance discovery (as MSAL calls it) and the JWKS.

use crate::helpers::*;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

#[tokio::test]
async fn v2_discovery_by_guid_and_domain() {
    let emu = spawn_emulator().await;
    for tenant in [TENANT, TENANT_DOMAIN] {
        let response = emu
            .http
            .get(format!(
                "{}/{tenant}/v2.0/.well-known/openid-configuration",
                emu.url
            ))
            .send()
            .await
            .expect("answers over HTTPS");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["cache-control"],
            "max-age=86400, private"
        );
        let doc: serde_json::Value = response.json().await.expect("json");
        assert_eq!(doc["issuer"], format!("{}/{TENANT}/v2.0", emu.url));
        assert_eq!(
            doc["token_endpoint"],
            format!("{}/{TENANT}/oauth2/v2.0/token", emu.url)
        );
        assert_eq!(
            doc["jwks_uri"],
            format!("{}/{TENANT}/discovery/v2.0/keys", emu.url)
        );
        assert_eq!(
            doc["authorization_endpoint"],
            format!("{}/{TENANT}/oauth2/v2.0/authorize", emu.url)
        );
        assert_eq!(
            doc["token_endpoint_auth_methods_supported"],
            serde_json::json!([
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic"
            ])
        );
        assert_eq!(
            doc["id_token_signing_alg_values_supported"],
            serde_json::json!(["RS256"])
        );
    }
}

#[tokio::test]
async fn v1_and_common_discovery() {
    let emu = spawn_emulator().await;
    let (status, v1) = emu
        .get_json(&format!("/{TENANT}/.well-known/openid-configuration"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(v1["issuer"], format!("{}/{TENANT}/", emu.url));
    assert_eq!(
        v1["jwks_uri"],
        format!("{}/{TENANT}/discovery/keys", emu.url)
    );
    let (status, common) = emu
        .get_json("/common/v2.0/.well-known/openid-configuration")
        .await;
    assert_eq!(status, 200);
    assert_eq!(common["issuer"], format!("{}/{{tenantid}}/v2.0", emu.url));
}

#[tokio::test]
async fn unknown_tenant_discovery_is_90002() {
    let emu = spawn_emulator().await;
    let response = emu
        .http
        .get(format!(
            "{}/not-a-tenant.example/v2.0/.well-known/openid-configuration",
            emu.http_url
        ))
        .send()
        .await
        .expect("answers");
    assert_aadsts(response, 400, "invalid_tenant", 90002).await;
}

#[tokio::test]
async fn jwks_publishes_two_keys_with_entras_members() {
    let emu = spawn_emulator().await;
    let (status, jwks) = emu
        .get_json(&format!("/{TENANT}/discovery/v2.0/keys"))
        .await;
    assert_eq!(status, 200);
    let keys = jwks["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 2, "Entra always publishes more than one key");
    for key in keys {
        assert_eq!(key["kty"], "RSA");
        assert_eq!(key["use"], "sig");
        assert_eq!(key["e"], "AQAB");
        assert!(key.get("alg").is_none(), "Entra publishes no alg member");
        assert_eq!(key["kid"], key["x5t"]);
        assert_eq!(key["issuer"], format!("{}/{TENANT}/v2.0", emu.url));
        let cert = STANDARD
            .decode(key["x5c"][0].as_str().expect("x5c"))
            .expect("base64 DER");
        let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &cert);
        assert_eq!(
            key["x5t"],
            URL_SAFE_NO_PAD.encode(sha1),
            "x5t is the certificate's thumbprint"
        );
        let n = URL_SAFE_NO_PAD
            .decode(key["n"].as_str().expect("n"))
            .expect("n");
        assert_eq!(n.len(), 256, "RSA-2048");
    }
    let (_, v1) = emu.get_json(&format!("/{TENANT}/discovery/keys")).await;
    assert!(
        v1["keys"][0].get("issuer").is_none(),
        "v1 keys carry no issuer"
    );
    let (status, bare) = emu.get_json("/discovery/keys").await;
    assert_eq!(status, 200);
    assert_eq!(bare["keys"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn instance_discovery_answers_msal_for_python() {
    let emu = spawn_emulator().await;
    // What MSAL for Python sends: api-version 1.0 and the authority's host without its port.
    let response = emu
        .http
        .get(format!("{}/common/discovery/instance", emu.url))
        .query(&[
            ("api-version", "1.0"),
            (
                "authorization_endpoint",
                &format!("https://localhost/{TENANT}/oauth2/v2.0/authorize"),
            ),
        ])
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(
        body["tenant_discovery_endpoint"],
        format!("{}/{TENANT}/v2.0/.well-known/openid-configuration", emu.url)
    );
    let network = emu.url.trim_start_matches("https://");
    assert_eq!(body["metadata"][0]["preferred_network"], network);

    let foreign = emu
        .http
        .get(format!("{}/common/discovery/instance", emu.http_url))
        .query(&[
            ("api-version", "1.1"),
            (
                "authorization_endpoint",
                "https://evil.example/common/oauth2/v2.0/authorize",
            ),
        ])
        .send()
        .await
        .expect("answers");
    assert_aadsts(foreign, 400, "invalid_instance", 50049).await;
}
