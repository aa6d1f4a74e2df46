#![no_main]

use libfuzzer_sys::fuzz_target;
use m2m_fuzz::validator::Harness;
use std::sync::LazyLock;

static HARNESS: LazyLock<Harness> = LazyLock::new(Harness::new);

fuzz_target!(
    init: {
        LazyLock::force(&HARNESS);
    },
    |data: &[u8]| {
        let _ = HARNESS.check(data);
    }
);
