//! Fuzz target: a directory of arbitrary chunk files (layout: `consort_fuzz::ledger_dir_files`) through
//! `Ledger::load`. Must never panic; a load that succeeds must change no file's bytes, read back every entry it
//! indexed, report a torn tail that fits its file, and, once its first write has cut the files to match, load again
//! to the same entries with nothing torn. A refused load must say which file.
#![no_main]

use consort_ledger::{Ledger, LedgerError, LedgerStorage, MemStorage};
use libfuzzer_sys::fuzz_target;

/// Every entry of `ledger`, read chunk by chunk (as replay reads them), checked against one-by-one reads.
fn entries(ledger: &Ledger<MemStorage>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let Some(mut next) = ledger.first_seqno() else {
        return out;
    };
    while next <= ledger.last_seqno() {
        let chunk = ledger.read_chunk_of(next).expect("an indexed chunk reads back");
        for (seqno, bytes) in chunk.iter() {
            assert_eq!(ledger.read_entry(seqno).expect("an indexed entry reads back"), bytes);
            out.push(bytes.to_vec());
        }
        next = chunk.last_seqno() + 1;
    }
    out
}

fn contents(storage: &MemStorage) -> Vec<Vec<u8>> {
    let mut all: Vec<Vec<u8>> = storage.files().values().cloned().collect();
    all.sort();
    all
}

fuzz_target!(|data: &[u8]| {
    let mut disk = MemStorage::new();
    for (name, bytes) in consort_fuzz::ledger_dir_files(data) {
        disk.files_mut().insert(name, bytes);
    }
    let mut ledger = match Ledger::load(disk.clone(), 1) {
        Ok(l) => l,
        Err(LedgerError::Damaged { name, .. } | LedgerError::Chunk { name, .. }) => {
            assert!(disk.files().contains_key(&name), "the error names {name}, which is not a file");
            return;
        }
        Err(e) => panic!("a refused load that names no file: {e}"),
    };
    // Loading renames at most (a closed chunk not yet renamed): no file's bytes change.
    assert_eq!(contents(ledger.storage()), contents(&disk));
    if let Some(torn) = ledger.torn_tail() {
        let size = disk.files().get(&torn.chunk).map(|f| f.len() as u64);
        assert_eq!(size, Some(torn.offset + torn.bytes), "{torn}");
    }
    let loaded = entries(&ledger);
    assert_eq!(loaded.len() as u64, ledger.first_seqno().map_or(0, |f| ledger.last_seqno() - f + 1));
    ledger.flush().expect("the first write after a load");
    let again = Ledger::load(ledger.into_storage(), 1).expect("the files cut to what was loaded load again");
    assert_eq!(again.torn_tail(), None);
    assert_eq!(entries(&again), loaded);
    assert!(again.storage().list().is_ok());
});
