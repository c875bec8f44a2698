//! Fuzz target: arbitrary bytes as a `POST /node/join` body through `consort_node::api::join::parse_join`. Must
//! never panic, and a refusal must be the caller's fault (a 4xx status), never a server error.
#![no_main]

use consort_node::api::join::parse_join;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_join(data) {
        Ok(join) => {
            // The node id is the key's, whatever the request said.
            assert_eq!(join.node_id.as_str(), consort_crypto::key_id(&join.key.to_spki_der()));
        }
        Err(e) => assert!(
            (400..500).contains(&e.status),
            "a malformed join request answered {} {}: {}",
            e.status,
            e.code,
            e.message
        ),
    }
});
