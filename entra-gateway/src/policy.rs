//! The gateway's route policies: method + path pattern → any-of roles, or any allowed app. The
//! first rule that matches decides; a request no rule matches is refused
//! (`route_has_no_policy`), never passed.
//!
//! Patterns are `/`-separated segments: a literal, `{name}` for exactly one segment, or `**` as
//! the last segment for any number of further segments (zero included). Paths are judged after
//! percent-decoding each segment, and a path that would mean something else to a server that
//! normalises it (an empty, `.` or `..` segment; an encoded `/` or `\`; invalid UTF-8) matches no
//! rule: `/public/%2e%2e/admin` cannot borrow `/public/**`'s policy.

use actix_web::http::Method;
use entra_auth::Access;
use serde::Deserialize;
use shared::config::ConfigError;
use std::borrow::Cow;

/// One `[[routes]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSettings {
    /// `GET`, `POST`, … or `*` for any method.
    pub method: String,
    pub path: String,
    /// Any one of these app roles lets the caller in.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    /// Any allowed client application, whatever its roles.
    #[serde(default)]
    pub any_allowed_app: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    One,
    Rest,
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    method: Option<Method>,
    segments: Vec<Segment>,
    pub access: Access,
    /// `METHOD pattern` as written: the metrics label of every request it decides.
    pub label: String,
}

impl RuleSettings {
    pub fn compile(&self, key: &str) -> Result<Rule, ConfigError> {
        let method = match self.method.as_str() {
            "*" => None,
            name => Some(
                Method::from_bytes(name.to_ascii_uppercase().as_bytes())
                    .ok()
                    .filter(|m| m.as_str().bytes().all(|b| b.is_ascii_uppercase()))
                    .ok_or_else(|| {
                        ConfigError::key(
                            &format!("{key}.method"),
                            format!("must be an HTTP method or `*`, not `{name}`"),
                        )
                    })?,
            ),
        };
        let segments = compile_pattern(&self.path)
            .map_err(|reason| ConfigError::key(&format!("{key}.path"), reason))?;
        let access = match (&self.roles, self.any_allowed_app) {
            (Some(_), true) => {
                return Err(ConfigError::key(
                    key,
                    "sets both `roles` and `any_allowed_app`; choose one",
                ));
            }
            (Some(roles), false) => {
                if roles.is_empty() || roles.iter().any(|r| r.trim().is_empty()) {
                    return Err(ConfigError::key(
                        &format!("{key}.roles"),
                        "must list at least one app role, none empty (or set any_allowed_app = true)",
                    ));
                }
                Access::any_role_of(roles.clone())
            }
            (None, true) => Access::AnyAllowedApp,
            (None, false) => {
                return Err(ConfigError::key(
                    key,
                    "needs `roles = [...]` or `any_allowed_app = true`",
                ));
            }
        };
        Ok(Rule {
            method,
            segments,
            access,
            label: format!("{} {}", self.method.to_ascii_uppercase(), self.path),
        })
    }
}

fn compile_pattern(pattern: &str) -> Result<Vec<Segment>, String> {
    let rest = pattern
        .strip_prefix('/')
        .ok_or_else(|| format!("must start with `/`, not `{pattern}`"))?;
    if rest.contains(['?', '#', '%', '\\']) {
        return Err("must be a plain path (no query, fragment, escapes or `\\`)".into());
    }
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let parts: Vec<&str> = rest.split('/').collect();
    let last = parts.len() - 1;
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| match *part {
            "**" if i == last => Ok(Segment::Rest),
            "**" => Err("`**` may only be the last segment".to_owned()),
            "" if i == last => Ok(Segment::Literal(String::new())),
            "" | "." | ".." => Err(format!("has an empty, `.` or `..` segment: `{pattern}`")),
            p if p.starts_with('{') && p.ends_with('}') && p.len() > 2 => Ok(Segment::One),
            p if p.contains(['{', '}', '*']) => Err(format!(
                "segment `{p}`: use `{{name}}` for one whole segment or `**` for the rest"
            )),
            p => Ok(Segment::Literal(p.to_owned())),
        })
        .collect()
}

/// The path's segments, percent-decoded, or `None` when the path is not canonical (see the
/// module's notes). The query, if any, is ignored.
pub fn canonical_segments(path_and_query: &str) -> Option<Vec<Cow<'_, str>>> {
    let path = path_and_query.split(['?', '#']).next().unwrap_or_default();
    let rest = path.strip_prefix('/')?;
    if rest.is_empty() {
        return Some(Vec::new());
    }
    let parts: Vec<&str> = rest.split('/').collect();
    let last = parts.len() - 1;
    parts
        .into_iter()
        .enumerate()
        .map(|(i, raw)| {
            let segment = decode(raw)?;
            let bad = matches!(&*segment, "." | "..")
                || (segment.is_empty() && i != last)
                || segment.contains(['/', '\\', '\0']);
            (!bad).then_some(segment)
        })
        .collect()
}

fn decode(raw: &str) -> Option<Cow<'_, str>> {
    if !raw.contains('%') {
        return Some(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let value = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            out.push(value);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

impl Rule {
    fn matches(&self, method: &Method, segments: &[Cow<'_, str>]) -> bool {
        if self.method.as_ref().is_some_and(|m| m != method) {
            return false;
        }
        let mut given = segments.iter();
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Rest => return true,
                Segment::One => match given.next() {
                    Some(s) if !s.is_empty() => {}
                    _ => return false,
                },
                Segment::Literal(literal) => match given.next() {
                    Some(s) if s == literal => {}
                    _ => return false,
                },
            }
            if i == self.segments.len() - 1 {
                return given.next().is_none();
            }
        }
        segments.is_empty()
    }
}

/// The first rule for `method` and `path_and_query`, if any, with its index in `rules`.
pub fn find<'r>(
    rules: &'r [Rule],
    method: &Method,
    path_and_query: &str,
) -> Option<(usize, &'r Rule)> {
    let segments = canonical_segments(path_and_query)?;
    rules
        .iter()
        .enumerate()
        .find(|(_, rule)| rule.matches(method, &segments))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(method: &str, path: &str, roles: Option<&[&str]>) -> Rule {
        RuleSettings {
            method: method.into(),
            path: path.into(),
            roles: roles.map(|r| r.iter().map(|s| (*s).to_owned()).collect()),
            any_allowed_app: roles.is_none(),
        }
        .compile("routes[0]")
        .expect("valid rule")
    }

    fn label(rules: &[Rule], method: Method, path: &str) -> Option<String> {
        find(rules, &method, path).map(|(_, r)| r.label.clone())
    }

    #[test]
    fn first_match_wins_by_method_and_pattern() {
        let rules = [
            rule("GET", "/reports", Some(&["Reports.Read.All"])),
            rule("GET", "/reports/{id}", Some(&["Reports.Read.All"])),
            rule("POST", "/reports", Some(&["Reports.Write.All"])),
            rule("*", "/files/**", None),
            rule("GET", "/", None),
        ];
        assert_eq!(
            label(&rules, Method::GET, "/reports?page=2").as_deref(),
            Some("GET /reports")
        );
        assert_eq!(
            label(&rules, Method::GET, "/reports/42").as_deref(),
            Some("GET /reports/{id}")
        );
        assert_eq!(
            label(&rules, Method::POST, "/reports").as_deref(),
            Some("POST /reports")
        );
        assert_eq!(label(&rules, Method::DELETE, "/reports"), None);
        assert_eq!(label(&rules, Method::GET, "/reports/42/extra"), None);
        assert_eq!(label(&rules, Method::GET, "/reports/"), None);
        assert_eq!(
            label(&rules, Method::PUT, "/files/a/b/c").as_deref(),
            Some("* /files/**")
        );
        assert_eq!(
            label(&rules, Method::PUT, "/files").as_deref(),
            Some("* /files/**")
        );
        assert_eq!(label(&rules, Method::GET, "/").as_deref(), Some("GET /"));
        assert_eq!(label(&rules, Method::GET, "/other"), None);
    }

    #[test]
    fn paths_that_normalise_to_something_else_match_nothing() {
        let rules = [rule("*", "/public/**", None)];
        for path in [
            "/public/../admin",
            "/public/%2e%2e/admin",
            "/public/%2E%2E/admin",
            "/public/./x",
            "/public//x",
            "/public/a%2fb",
            "/public/a%5Cb",
            "/public/%ff",
            "/public/%zz",
            "/public/%00",
            "public/x",
        ] {
            assert_eq!(label(&rules, Method::GET, path), None, "{path}");
        }
        assert_eq!(
            label(&rules, Method::GET, "/public/r%C3%A9sum%C3%A9").as_deref(),
            Some("* /public/**"),
            "escapes of ordinary characters are decoded"
        );
        let exact = [rule("GET", "/reports", None)];
        assert_eq!(
            label(&exact, Method::GET, "/rep%6Frts").as_deref(),
            Some("GET /reports")
        );
    }

    #[test]
    fn bad_patterns_are_refused_with_the_reason() {
        for (path, needle) in [
            ("reports", "must start"),
            ("/a/**/b", "last segment"),
            ("/a//b", "empty"),
            ("/a/../b", "empty"),
            ("/a/x{id}", "whole segment"),
            ("/a?x=1", "plain path"),
        ] {
            let err = compile_pattern(path).expect_err(path);
            assert!(err.contains(needle), "{path}: {err}");
        }
    }
}
