//! The fuzz harnesses: each module is one target's input format and oracle. The targets in
//! `fuzz_targets/` call them; the crates' regression tests include the same files by path and
//! replay the committed inputs in `fuzz/seeds/` and `fuzz/regressions/` through them.
#![forbid(unsafe_code)]

pub mod preparse;
pub mod token_form;
pub mod validator;
