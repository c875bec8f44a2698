//! Fuzz target: arbitrary bytes as a KV snapshot's public domain and private plaintext
//! (`consort_kv::Store::from_snapshot`; layout in `consort_fuzz::kv_snapshot::split`). Must never panic; a store
//! it accepts must snapshot again to domains that restore the same state, and go on taking writes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = consort_fuzz::kv_snapshot::check(data);
});
