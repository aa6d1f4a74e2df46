//! The fuzz targets' committed inputs, replayed through the targets' own checks: the harness files
//! of `fuzz/` are included by path, so a crash fixed once stays fixed and the harnesses keep
//! compiling with the crate. Inputs: the seeds (`fuzz/seeds/<target>/`) and the crashes and
//! chosen corpus entries (`fuzz/regressions/<target>/`); see `fuzz/README.md`.

#[path = "../../fuzz/src/preparse.rs"]
mod preparse;
#[path = "../../fuzz/src/validator.rs"]
mod validator;

use entra_auth::Reason;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::{Path, PathBuf};

/// Every committed input of `target`, by file name.
fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut inputs = Vec::new();
    for dir in ["seeds", "regressions"] {
        let dir: PathBuf = fuzz.join(dir).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            let data = std::fs::read(&path).expect("a committed input");
            inputs.push((path.display().to_string(), data));
        }
    }
    inputs.sort();
    assert!(
        inputs.len() >= 5,
        "{target}: the committed inputs are missing"
    );
    inputs
}

/// Runs `check` on each input, naming the file when one panics.
fn replay<T>(target: &str, mut check: impl FnMut(&[u8]) -> T) -> Vec<(String, T)> {
    inputs(target)
        .into_iter()
        .map(
            |(name, data)| match catch_unwind(AssertUnwindSafe(|| check(&data))) {
                Ok(outcome) => (name, outcome),
                Err(panic) => {
                    eprintln!("{name} fails the {target} target's checks");
                    resume_unwind(panic)
                }
            },
        )
        .collect()
}

fn outcome_of<'a, T>(outcomes: &'a [(String, T)], file: &str) -> &'a T {
    &outcomes
        .iter()
        .find(|(name, _)| name.ends_with(&format!("/{file}")))
        .unwrap_or_else(|| panic!("no input {file}"))
        .1
}

#[test]
fn preparse_inputs_replay() {
    let outcomes = replay("preparse", preparse::check);
    assert!(outcome_of(&outcomes, "bearer-rs256"));
    assert!(outcome_of(&outcomes, "lowercase-scheme"));
    for refused in ["alg-none", "crit", "jku", "jwe-five-parts", "basic"] {
        assert!(!outcome_of(&outcomes, refused), "{refused}");
    }
}

#[test]
fn validator_inputs_replay() {
    let harness = validator::Harness::default();
    let outcomes = replay("validator", |data| harness.check(data));
    // The seeds show the harness reaches both sides of the checks behind the signature.
    for accepted in [
        "v2-app-reader",
        "v2-no-idtyp-oid-is-sub-writer",
        "v1-app-appid",
        "v2-second-tenant",
    ] {
        let caller = outcome_of(&outcomes, accepted);
        assert!(caller.is_ok(), "{accepted}: {caller:?}");
    }
    for (refused, reason) in [
        ("v2-user-scp", Reason::UserDelegatedToken),
        ("v2-foreign-key", Reason::SigningKeyIssuerMismatch),
        ("v2-expired", Reason::Expired),
        ("v2-stranger-no-roles", Reason::ClientNotAllowed),
    ] {
        assert_eq!(
            outcome_of(&outcomes, refused).as_ref().err(),
            Some(&reason),
            "{refused}"
        );
    }
}
