//! OpenID discovery, instance discovery (as MSAL calls it) and the JWKS.

use crate::helpers::*;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// The members of Entra's v2 document (`login.microsoftonline.com/{tenant}/v2.0/.well-known/
/// openid-configuration`, 2024–2025), no more and no fewer.
const ENTRA_V2_MEMBERS: [&str; 23] = [
    "token_endpoint",
    "token_endpoint_auth_methods_supported",
    "jwks_uri",
    "response_modes_supported",
    "subject_types_supported",
    "id_token_signing_alg_values_supported",
    "response_types_supported",
    "scopes_supported",
    "issuer",
    "request_uri_parameter_supported",
    "userinfo_endpoint",
    "authorization_endpoint",
    "device_authorization_endpoint",
    "http_logout_supported",
    "frontchannel_logout_supported",
    "end_session_endpoint",
    "claims_supported",
    "kerberos_endpoint",
    "tenant_region_scope",
    "cloud_instance_name",
    "cloud_graph_host_name",
    "msgraph_host",
    "rbac_url",
];

/// The members of Entra's v1 document (`login.microsoftonline.com/{tenant}/.well-known/
/// openid-configuration`).
const ENTRA_V1_MEMBERS: [&str; 24] = [
    "token_endpoint",
    "token_endpoint_auth_methods_supported",
    "jwks_uri",
    "response_modes_supported",
    "subject_types_supported",
    "id_token_signing_alg_values_supported",
    "response_types_supported",
    "scopes_supported",
    "issuer",
    "microsoft_multi_refresh_token",
    "authorization_endpoint",
    "device_authorization_endpoint",
    "http_logout_supported",
    "frontchannel_logout_supported",
    "end_session_endpoint",
    "claims_supported",
    "check_session_iframe",
    "userinfo_endpoint",
    "kerberos_endpoint",
    "tenant_region_scope",
    "cloud_instance_name",
    "cloud_graph_host_name",
    "msgraph_host",
    "rbac_url",
];

/// `doc` has exactly `members`: every one Entra's has, and none Entra's lacks.
fn assert_members(doc: &serde_json::Value, members: &[&str]) {
    let mut have: Vec<&str> = doc
        .as_object()
        .expect("a JSON object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut want = members.to_vec();
    have.sort_unstable();
    want.sort_unstable();
    assert_eq!(have, want, "the document's members are Entra's");
}

fn strings(values: &[&str]) -> serde_json::Value {
    serde_json::json!(values)
}

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
        assert_members(&doc, &ENTRA_V2_MEMBERS);
        let at = |path: &str| format!("{}/{TENANT}{path}", emu.url);
        assert_eq!(doc["issuer"], at("/v2.0"));
        assert_eq!(doc["token_endpoint"], at("/oauth2/v2.0/token"));
        assert_eq!(doc["jwks_uri"], at("/discovery/v2.0/keys"));
        assert_eq!(doc["authorization_endpoint"], at("/oauth2/v2.0/authorize"));
        assert_eq!(
            doc["device_authorization_endpoint"],
            at("/oauth2/v2.0/devicecode")
        );
        assert_eq!(doc["end_session_endpoint"], at("/oauth2/v2.0/logout"));
        assert_eq!(doc["kerberos_endpoint"], at("/kerberos"));
        assert_eq!(
            doc["userinfo_endpoint"], "https://graph.microsoft.com/oidc/userinfo",
            "Graph's, as in Entra's"
        );
        assert_eq!(
            doc["token_endpoint_auth_methods_supported"],
            strings(&[
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic"
            ])
        );
        assert_eq!(
            doc["response_modes_supported"],
            strings(&["query", "fragment", "form_post"])
        );
        assert_eq!(doc["subject_types_supported"], strings(&["pairwise"]));
        assert_eq!(
            doc["id_token_signing_alg_values_supported"],
            strings(&["RS256"])
        );
        assert_eq!(
            doc["response_types_supported"],
            strings(&["code", "id_token", "code id_token", "id_token token"])
        );
        assert_eq!(
            doc["scopes_supported"],
            strings(&["openid", "profile", "email", "offline_access"])
        );
        assert_eq!(doc["request_uri_parameter_supported"], false);
        assert_eq!(doc["http_logout_supported"], true);
        assert_eq!(doc["frontchannel_logout_supported"], true);
        assert_eq!(
            doc["claims_supported"],
            strings(&[
                "sub",
                "iss",
                "cloud_instance_name",
                "cloud_instance_host_name",
                "cloud_graph_host_name",
                "msgraph_host",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "acr",
                "nonce",
                "preferred_username",
                "name",
                "tid",
                "ver",
                "at_hash",
                "c_hash",
                "email",
            ])
        );
        assert_eq!(doc["tenant_region_scope"], "NA");
        assert_eq!(doc["cloud_instance_name"], "microsoftonline.com");
        assert_eq!(doc["cloud_graph_host_name"], "graph.windows.net");
        assert_eq!(doc["msgraph_host"], "graph.microsoft.com");
        assert_eq!(doc["rbac_url"], "https://pas.windows.net");
    }
}

#[tokio::test]
async fn v1_discovery_has_entras_members() {
    let emu = spawn_emulator().await;
    for tenant in [TENANT, TENANT_DOMAIN] {
        let (status, v1) = emu
            .get_json(&format!("/{tenant}/.well-known/openid-configuration"))
            .await;
        assert_eq!(status, 200);
        assert_members(&v1, &ENTRA_V1_MEMBERS);
        let at = |path: &str| format!("{}/{TENANT}{path}", emu.url);
        assert_eq!(v1["issuer"], at("/"));
        assert_eq!(v1["token_endpoint"], at("/oauth2/token"));
        assert_eq!(
            v1["jwks_uri"],
            format!("{}/common/discovery/keys", emu.url),
            "Entra's v1 document names common's keys"
        );
        assert_eq!(v1["authorization_endpoint"], at("/oauth2/authorize"));
        assert_eq!(
            v1["device_authorization_endpoint"],
            at("/oauth2/devicecode")
        );
        assert_eq!(v1["end_session_endpoint"], at("/oauth2/logout"));
        assert_eq!(v1["check_session_iframe"], at("/oauth2/checksession"));
        assert_eq!(v1["userinfo_endpoint"], at("/openid/userinfo"));
        assert_eq!(v1["kerberos_endpoint"], at("/kerberos"));
        assert_eq!(
            v1["response_modes_supported"],
            strings(&["query", "fragment", "form_post"])
        );
        assert_eq!(
            v1["response_types_supported"],
            strings(&[
                "code",
                "id_token",
                "code id_token",
                "token id_token",
                "token"
            ])
        );
        assert_eq!(v1["scopes_supported"], strings(&["openid"]));
        assert_eq!(v1["microsoft_multi_refresh_token"], true);
        assert_eq!(v1["http_logout_supported"], true);
        assert_eq!(v1["frontchannel_logout_supported"], true);
        assert_eq!(
            v1["claims_supported"],
            strings(&[
                "sub",
                "iss",
                "cloud_instance_name",
                "cloud_instance_host_name",
                "cloud_graph_host_name",
                "msgraph_host",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "acr",
                "amr",
                "nonce",
                "email",
                "given_name",
                "family_name",
                "nickname",
            ])
        );
        assert_eq!(v1["tenant_region_scope"], "NA");
        assert_eq!(v1["cloud_instance_name"], "microsoftonline.com");
        assert_eq!(v1["cloud_graph_host_name"], "graph.windows.net");
        assert_eq!(v1["msgraph_host"], "graph.microsoft.com");
        assert_eq!(v1["rbac_url"], "https://pas.windows.net");
        // The keys it names are the tenant's.
        let (status, keys) = emu.get_json("/common/discovery/keys").await;
        assert_eq!(status, 200);
        assert_eq!(keys["keys"].as_array().map(Vec::len), Some(2));
    }
}

#[tokio::test]
async fn multi_tenant_discovery_has_the_template_and_no_region() {
    let emu = spawn_emulator().await;
    for alias in ["common", "organizations", "consumers"] {
        let (status, v2) = emu
            .get_json(&format!("/{alias}/v2.0/.well-known/openid-configuration"))
            .await;
        assert_eq!(status, 200);
        assert_members(&v2, &ENTRA_V2_MEMBERS);
        assert_eq!(v2["issuer"], format!("{}/{{tenantid}}/v2.0", emu.url));
        assert_eq!(
            v2["token_endpoint"],
            format!("{}/{alias}/oauth2/v2.0/token", emu.url)
        );
        assert_eq!(
            v2["kerberos_endpoint"],
            format!("{}/{alias}/kerberos", emu.url)
        );
        assert!(
            v2["tenant_region_scope"].is_null(),
            "{alias}: null, as Entra's"
        );
    }
    let (status, v1) = emu
        .get_json("/common/.well-known/openid-configuration")
        .await;
    assert_eq!(status, 200);
    assert_members(&v1, &ENTRA_V1_MEMBERS);
    assert_eq!(v1["issuer"], format!("{}/{{tenantid}}/", emu.url));
    assert!(v1["tenant_region_scope"].is_null());
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
