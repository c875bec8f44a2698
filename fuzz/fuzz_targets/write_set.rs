//! Fuzz target: arbitrary bytes as a public domain and as a private-domain plaintext. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = consort_kv::WriteSet::deserialise_public(data);
    let _ = consort_kv::WriteSet::deserialise_private(data);
});
