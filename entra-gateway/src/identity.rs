//! The caller's identity as headers for the upstream, and the rule that keeps a client from
//! sending its own.

use entra_auth::AppCaller;
use shared::claims::TokenVersion;
use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;

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
fn values(caller: &AppCaller) -> [Cow<'_, str>; 6] {
    [
        printable(Cow::Borrowed(&caller.client_app_id)),
        printable(Cow::Borrowed(&caller.tenant_id)),
        printable(Cow::Borrowed(caller.object_id.as_deref().unwrap_or(""))),
        printable(Cow::Owned(caller.roles.join(" "))),
        Cow::Borrowed(match caller.version {
            TokenVersion::V1 => "1.0",
            TokenVersion::V2 => "2.0",
        }),
        printable(Cow::Borrowed(caller.token_id.as_deref().unwrap_or(""))),
    ]
}

/// A caller's identity headers as values ready to set, in the order of [`ALL`]: made once per
/// accepted token on each server worker and reused while that token is in use, so answering or
/// forwarding a request clones six values (a reference count each) instead of building them.
pub struct Prepared {
    caller: AppCaller,
    /// For a forward-auth answer (actix-web's `http` 0.2): every header, empty ones included.
    pub server: [actix_web::http::header::HeaderValue; 6],
    /// For the upstream request (hyper's `http` 1): `None` where the value is empty, which the
    /// proxy leaves out.
    pub client: [Option<shared::upstream::HeaderValue>; 6],
}

impl Prepared {
    fn new(caller: &AppCaller) -> Self {
        let values = values(caller);
        Self {
            caller: caller.clone(),
            server: std::array::from_fn(|i| {
                actix_web::http::header::HeaderValue::from_str(&values[i])
                    .unwrap_or_else(|_| actix_web::http::header::HeaderValue::from_static(""))
            }),
            client: std::array::from_fn(|i| {
                (!values[i].is_empty())
                    .then(|| shared::upstream::HeaderValue::from_str(&values[i]).ok())
                    .flatten()
            }),
        }
    }
}

/// Callers' prepared headers kept on each thread: as many as the distinct tokens a worker sees
/// at once in a busy mesh; past that, the oldest entry is made again when next needed.
const PREPARED_SLOTS: usize = 8;

thread_local! {
    static PREPARED: RefCell<(usize, [Option<Rc<Prepared>>; PREPARED_SLOTS])> =
        RefCell::new((0, std::array::from_fn(|_| None)));
}

/// `caller`'s identity headers, made the first time this thread sees this very caller: the
/// validator answers a token from its per-thread front cache with the same [`AppCaller`] each
/// time, so in the steady state they are made once per token and worker (another handle on
/// equal claims only costs making them again).
pub fn prepared(caller: &AppCaller) -> Rc<Prepared> {
    PREPARED.with(|cell| {
        let mut cell = cell.borrow_mut();
        let (next, slots) = &mut *cell;
        if let Some(hit) = slots
            .iter()
            .flatten()
            .find(|p| AppCaller::same(&p.caller, caller))
        {
            return Rc::clone(hit);
        }
        let made = Rc::new(Prepared::new(caller));
        slots[*next] = Some(Rc::clone(&made));
        *next = (*next + 1) % PREPARED_SLOTS;
        made
    })
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

    fn caller(roles: &[&str]) -> AppCaller {
        AppCaller::from(entra_auth::CallerIdentity {
            client_app_id: "0b9a1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d".into(),
            tenant_id: "72f1c3d4-5b6a-4c8d-9e0f-1a2b3c4d5e6f".into(),
            object_id: None,
            roles: roles.iter().map(|r| r.to_string()).collect(),
            version: TokenVersion::V2,
            token_id: Some("uti\u{e9}".into()),
        })
    }

    #[test]
    fn each_value_goes_under_its_own_name() {
        let caller = AppCaller::from(entra_auth::CallerIdentity {
            client_app_id: "client".into(),
            tenant_id: "tenant".into(),
            object_id: Some("object".into()),
            roles: vec!["A".into(), "B".into()],
            version: TokenVersion::V1,
            token_id: Some("uti".into()),
        });
        let prepared = prepared(&caller);
        let expected = [
            (CLIENT_ID, "client"),
            (TENANT_ID, "tenant"),
            (OBJECT_ID, "object"),
            (ROLES, "A B"),
            (TOKEN_VERSION, "1.0"),
            (TOKEN_ID, "uti"),
        ];
        for (i, (name, value)) in expected.into_iter().enumerate() {
            assert_eq!(SERVER_NAMES[i].as_str(), name);
            assert_eq!(prepared.server[i].as_bytes(), value.as_bytes(), "{name}");
            assert_eq!(CLIENT_NAMES[i].as_str(), name);
            let client = prepared.client[i].as_ref().map(|v| v.as_bytes());
            assert_eq!(client, Some(value.as_bytes()), "{name}");
        }
    }

    #[test]
    fn prepared_headers_hold_the_callers_claims_and_are_made_once_per_caller() {
        let reader = caller(&["Reports.Read.All", "Reports.Write.All"]);
        let prepared = prepared(&reader);
        let server: Vec<&[u8]> = prepared.server.iter().map(|v| v.as_bytes()).collect();
        assert_eq!(
            server,
            [
                &b"0b9a1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"[..],
                b"72f1c3d4-5b6a-4c8d-9e0f-1a2b3c4d5e6f",
                b"",
                b"Reports.Read.All Reports.Write.All",
                b"2.0",
                // Not printable ASCII: left empty rather than mangled.
                b"",
            ]
        );
        let client: Vec<Option<&[u8]>> = prepared
            .client
            .iter()
            .map(|v| v.as_ref().map(|v| v.as_bytes()))
            .collect();
        assert_eq!(client[2], None, "an empty value is not forwarded");
        assert_eq!(client[3], Some(&b"Reports.Read.All Reports.Write.All"[..]));
        assert_eq!(client[5], None);

        // The same handle again: the same prepared values. Another caller with equal claims
        // (another token, or another thread's acceptance) gets its own.
        assert!(Rc::ptr_eq(&prepared, &super::prepared(&reader.clone())));
        let twin = caller(&["Reports.Read.All", "Reports.Write.All"]);
        assert!(!Rc::ptr_eq(&prepared, &super::prepared(&twin)));
        // More callers than slots: the oldest is made again, with the same values.
        let others: Vec<AppCaller> = (0..PREPARED_SLOTS).map(|_| caller(&[])).collect();
        for other in &others {
            assert_eq!(super::prepared(other).server[3].as_bytes(), b"");
        }
        let again = super::prepared(&reader);
        assert!(!Rc::ptr_eq(&prepared, &again));
        assert_eq!(
            again.server[3].as_bytes(),
            b"Reports.Read.All Reports.Write.All"
        );
    }

    #[test]
    fn every_identity_header_is_recognised_by_its_prefix() {
        assert!(ALL.iter().all(|name| is_identity(name)));
        assert!(is_identity("x-entra-anything-else"));
        assert!(!is_identity("x-request-id"));
    }
}
