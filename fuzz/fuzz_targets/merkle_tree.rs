//! Fuzz target: arbitrary bytes as a serialised Merkle tree (`consort_ledger::MerkleTree::deserialise`, the
//! `public:ccf.internal.tree` value a signature transaction and a snapshot carry). Must never panic; what it
//! accepts must re-serialise to the same bytes and answer consistently for every prefix it holds
//! (`consort_fuzz::merkle_tree::check`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = consort_fuzz::merkle_tree::check(data);
});
