//! Fuzz target: arbitrary bytes as a signature record (`public:ccf.internal.signatures`), parsed as
//! `consort_ledger::PrimarySignature`, checked by the offline auditor at the signature transaction of a fixed
//! ledger, and by a replica opening a snapshot bundle whose signature transaction carries it
//! (`consort_consensus::snapshot::open`), both against the fixed node of `fuzz/signature/`. Must never panic;
//! neither may accept a record that is not the node's signature over the fixed root.
#![no_main]

use std::sync::OnceLock;

use consort_fuzz::signature_record::{audit, check_parse, Fixture};
use libfuzzer_sys::fuzz_target;

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let fx = FIXTURE.get_or_init(Fixture::new);
    let parsed = check_parse(data);
    let _ = audit(fx, data);
    let replica = consort_fuzz::signature_replica::open(fx, data);
    // The replica reads the record with `PrimarySignature`, so it accepts nothing that does not parse.
    assert!(
        replica.is_err() || parsed.is_some(),
        "the replica accepted a record that does not parse"
    );
});
