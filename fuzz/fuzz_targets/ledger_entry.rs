//! Fuzz target: arbitrary bytes as one ledger entry and as a chunk file, through the entry parser and the offline
//! audit. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = consort_ledger::parse_entry(data);
    // The first byte picks the chunk's claimed end seqno, so complete chunks with position tables are reached too.
    let Some((&end_byte, chunk)) = data.split_first() else {
        return;
    };
    let end = u64::from(end_byte) + 1;
    for name in [
        "ledger_1".to_string(),
        format!("ledger_1-{end}"),
        format!("ledger_1-{end}.committed"),
    ] {
        let _ = consort_ledger::audit_chunks(&[(name, chunk.to_vec())]);
    }
});
