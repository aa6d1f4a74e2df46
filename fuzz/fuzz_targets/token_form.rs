#![no_main]

use libfuzzer_sys::fuzz_target;
use m2m_fuzz::token_form::Harness;
use std::path::Path;

thread_local! {
    // The emulator's actix service is single-threaded; libFuzzer calls the target on one thread.
    // Leaked: dropping actix services in thread-local destructors at exit touches actix's own
    // thread-locals, which may be gone by then.
    static HARNESS: &'static Harness = Box::leak(Box::new(Harness::new(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../entra-emulator/demo/directory.toml"),
    )));
}

fuzz_target!(
    init: {
        HARNESS.with(|_| {});
    },
    |data: &[u8]| {
        HARNESS.with(|harness| harness.check(data));
    }
);
