//! The `token_form` fuzz target's committed inputs, replayed through the target's own checks (the
//! harness file of `fuzz/` is included by path), so a crash fixed once stays fixed and the harness
//! keeps compiling with the crate. Inputs: `fuzz/seeds/token_form/` and
//! `fuzz/regressions/token_form/`; see `fuzz/README.md`.

#[path = "../../fuzz/src/token_form.rs"]
mod token_form;

use actix_web::http::StatusCode;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::Path;

#[test]
fn token_form_inputs_replay() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let harness = token_form::Harness::new(&mesh_tests::demo::demo_dir().join("directory.toml"));
    let mut inputs = Vec::new();
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join("../fuzz").join(dir).join("token_form"))
        else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            inputs.push((
                path.clone(),
                std::fs::read(&path).expect("a committed input"),
            ));
        }
    }
    assert!(inputs.len() >= 5, "the committed inputs are missing");
    let mut issued = Vec::new();
    for (path, data) in &inputs {
        match catch_unwind(AssertUnwindSafe(|| harness.check(data))) {
            Ok(StatusCode::OK) => issued.extend(path.file_name().and_then(|n| n.to_str())),
            Ok(_) => {}
            Err(panic) => {
                eprintln!("{} fails the token_form target's checks", path.display());
                resume_unwind(panic)
            }
        }
    }
    // The seeds show the harness reaches both answers: tokens for valid secrets, errors otherwise.
    issued.sort_unstable();
    let expected_issued = ["v1-writer-resource", "v2-reader-secret"];
    assert!(
        expected_issued.iter().all(|seed| issued.contains(seed)),
        "{issued:?}"
    );
}
