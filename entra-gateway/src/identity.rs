//! The caller's identity as headers for the upstream, and the rule that keeps a client from
//! sending its own.

use entra_auth::AppCaller;
use shared::claims::TokenVersion;
use std::borrow::Cow;

/// Every identity header starts with this; any incoming header that does is removed before the
/// gateway sets its own, so no client can pass as another application.
pub const PREFIX: &str = "x-entra-";

/// The calling application's client ID (`azp` in v2 tokens, `appid` in v1).
pub const CLIENT_ID: &str = "x-entra-client-id";
/// The tenant that issued the token (`tid`).
pub const TENANT_ID: &str = "x-entra-tenant-id";
/// The calling application's service principal (`oid`); empty when the token has none.
pub const OBJECT_ID: &str = "x-entra-object-id";
/// Its app roles (`roles`), space-separated (Entra role values cannot contain spaces); empty
/// when it holds none.
pub const ROLES: &str = "x-entra-roles";
/// `1.0` or `2.0`.
pub const TOKEN_VERSION: &str = "x-entra-token-version";
/// Entra's unique token identifier (`uti`), to correlate with sign-in logs; empty when absent.
pub const TOKEN_ID: &str = "x-entra-token-id";

/// All of them, in the order the README lists them.
pub const ALL: [&str; 6] = [
    CLIENT_ID,
    TENANT_ID,
    OBJECT_ID,
    ROLES,
    TOKEN_VERSION,
    TOKEN_ID,
];

/// [`ALL`] as header names of the server side (actix-web's `http` 0.2), built at compile time: a
/// `&str` name would be parsed again for every answer.
pub static SERVER_NAMES: [actix_web::http::header::HeaderName; 6] = [
    actix_web::http::header::HeaderName::from_static(CLIENT_ID),
    actix_web::http::header::HeaderName::from_static(TENANT_ID),
    actix_web::http::header::HeaderName::from_static(OBJECT_ID),
    actix_web::http::header::HeaderName::from_static(ROLES),
    actix_web::http::header::HeaderName::from_static(TOKEN_VERSION),
    actix_web::http::header::HeaderName::from_static(TOKEN_ID),
];

/// [`ALL`] as header names of the upstream client (hyper's `http` 1), as [`SERVER_NAMES`].
pub static CLIENT_NAMES: [shared::upstream::HeaderName; 6] = [
    shared::upstream::HeaderName::from_static(CLIENT_ID),
    shared::upstream::HeaderName::from_static(TENANT_ID),
    shared::upstream::HeaderName::from_static(OBJECT_ID),
    shared::upstream::HeaderName::from_static(ROLES),
    shared::upstream::HeaderName::from_static(TOKEN_VERSION),
    shared::upstream::HeaderName::from_static(TOKEN_ID),
];

/// Whether a (lower-case) header name is one of ours, or claims to be.
pub fn is_identity(name: &str) -> bool {
    name.starts_with(PREFIX)
}

/// The identity headers and their values: every header is present (empty when the token has no
/// such claim), so that a gateway copying them from a forward-auth answer overwrites a client's
/// own. Values that a header cannot carry (never the case for Entra's claims) are left empty.
/// Borrowed from the caller where it can be: the proxy copies each value into its upstream
/// request once, with no copy in between.
pub fn values(caller: &AppCaller) -> [(&'static str, Cow<'_, str>); 6] {
    [
        (CLIENT_ID, printable(Cow::Borrowed(&caller.client_app_id))),
        (TENANT_ID, printable(Cow::Borrowed(&caller.tenant_id))),
        (
            OBJECT_ID,
            printable(Cow::Borrowed(caller.object_id.as_deref().unwrap_or(""))),
        ),
        (ROLES, printable(Cow::Owned(caller.roles.join(" ")))),
        (
            TOKEN_VERSION,
            Cow::Borrowed(match caller.version {
                TokenVersion::V1 => "1.0",
                TokenVersion::V2 => "2.0",
            }),
        ),
        (
            TOKEN_ID,
            printable(Cow::Borrowed(caller.token_id.as_deref().unwrap_or(""))),
        ),
    ]
}

/// `text`, or empty when a header could not carry it.
fn printable(text: Cow<'_, str>) -> Cow<'_, str> {
    if text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        text
    } else {
        Cow::Borrowed("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prebuilt_names_are_all_in_order() {
        let server: Vec<&str> = SERVER_NAMES.iter().map(|n| n.as_str()).collect();
        let client: Vec<&str> = CLIENT_NAMES.iter().map(|n| n.as_str()).collect();
        assert_eq!(server, ALL);
        assert_eq!(client, ALL);
    }

    #[test]
    fn every_identity_header_is_recognised_by_its_prefix() {
        assert!(ALL.iter().all(|name| is_identity(name)));
        assert!(is_identity("x-entra-anything-else"));
        assert!(!is_identity("x-request-id"));
    }
}
