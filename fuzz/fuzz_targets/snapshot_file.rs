//! Fuzz target: arbitrary bytes as a committed snapshot file, split without the ledger secret
//! (`consort_consensus::snapshot_file::split_snapshot_file`), as `consort ledger audit --snapshot` and a joiner's
//! checks read it. Must never panic; what it accepts must be internally consistent.
#![no_main]

use consort_consensus::snapshot_file::split_snapshot_file;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(parts) = split_snapshot_file(data) {
        // Both entries it returns parse whole, at the seqno it names.
        for entry in [&parts.signature_entry, &parts.snapshot_entry] {
            let (e, used) = consort_ledger::parse_entry(entry).expect("an accepted entry parses");
            assert_eq!(used, entry.len());
            assert_eq!(e.seqno, parts.seqno);
        }
    }
});
