//! Loading a damaged ledger: a changed byte in a closed chunk (or in the middle of the open one) is refused with
//! the chunk and the offset named, and nothing on disk is changed; only a torn tail of the open chunk is dropped.

use consort_ledger::testing::{sample_ledger, BuiltEntry};
use consort_ledger::*;

/// A ledger of closed chunks 1-2, 3-6 and 7-9 (threshold 1: each signature closes its chunk), committed up to 6,
/// and an open chunk `ledger_10` holding entries 10 and 11; settled, as a clean stop leaves it.
fn ledger_on_disk() -> (MemStorage, Vec<BuiltEntry>) {
    let mut b = sample_ledger(2, 2); // signatures at 2, 6 and 9
    b.log_tx(100, "tail");
    b.log_tx(101, "tail");
    let entries = b.entries().to_vec();
    let (mut l, _) = Ledger::open(MemStorage::new(), 1).unwrap();
    for e in &entries {
        l.append(e.seqno, &e.bytes, e.is_signature).unwrap();
    }
    l.commit(6).unwrap();
    l.settle().unwrap();
    let storage = l.into_storage();
    let names: Vec<_> = storage.files().keys().cloned().collect();
    assert_eq!(
        names,
        [
            "ledger_1-2.committed",
            "ledger_10",
            "ledger_3-6.committed",
            "ledger_7-9"
        ],
        "the layout these tests damage"
    );
    (storage, entries)
}

/// Offset in its chunk file of entry `seqno`, for the chunk starting at `start` (entries are laid out after the
/// 8-byte header in seqno order).
fn offset_of(entries: &[BuiltEntry], start: u64, seqno: u64) -> usize {
    8 + entries
        .iter()
        .filter(|e| e.seqno >= start && e.seqno < seqno)
        .map(|e| e.bytes.len())
        .sum::<usize>()
}

/// Loads `damaged` and checks it is refused with an error naming `chunk` and `offset`, and that the disk is left
/// exactly as it was.
fn refused(damaged: MemStorage, chunk: &str, offset: usize, what: &str) -> LedgerError {
    let before = damaged.clone();
    let err = match Ledger::load(damaged.clone(), 1) {
        Ok(l) => panic!(
            "{what}: loaded {} entries from a damaged ledger ({:?})",
            l.last_seqno(),
            l.chunk_names()
        ),
        Err(e) => e,
    };
    let text = err.to_string();
    assert!(text.contains(chunk), "{what}: {text} does not name {chunk}");
    assert!(
        text.contains(&format!("offset {offset}")),
        "{what}: {text} does not name offset {offset}"
    );
    // Load refused: the storage it was given is untouched (the refused load may not have written to it).
    let mut after = damaged;
    assert_eq!(after.files_mut().len(), before.files().len(), "{what}");
    assert!(after == before, "{what}: the damaged ledger was changed");
    err
}

#[test]
fn a_flipped_byte_in_a_complete_chunk_refuses_the_load_and_keeps_every_entry() {
    let (disk, entries) = ledger_on_disk();
    // Entry 8 is in the middle of the complete (closed, not yet committed-named) chunk ledger_7-9.
    let at = offset_of(&entries, 7, 8);
    let mut damaged = disk.clone();
    damaged.files_mut().get_mut("ledger_7-9").unwrap()[at] ^= 0x40;
    refused(damaged, "ledger_7-9", at, "version byte of entry 8");
}

#[test]
fn a_flipped_byte_in_a_committed_chunk_refuses_the_load_naming_chunk_and_offset() {
    let (disk, entries) = ledger_on_disk();
    let at = offset_of(&entries, 3, 5) + 7; // the top byte of entry 5's size
    let mut damaged = disk.clone();
    damaged.files_mut().get_mut("ledger_3-6.committed").unwrap()[at] ^= 0x01;
    refused(damaged, "ledger_3-6.committed", at - 7, "size of entry 5");
}

#[test]
fn a_flipped_byte_in_the_middle_of_the_open_chunk_is_damage_not_a_torn_tail() {
    let (disk, entries) = ledger_on_disk();
    // Entry 10 is complete, and entry 11 follows it: this is not a torn write.
    let at = offset_of(&entries, 10, 10);
    let mut damaged = disk.clone();
    damaged.files_mut().get_mut("ledger_10").unwrap()[at] ^= 0x02;
    refused(damaged, "ledger_10", at, "version byte of entry 10");
}

#[test]
fn a_flipped_byte_in_the_last_chunk_with_a_complete_name_refuses_the_load() {
    let (mut disk, entries) = ledger_on_disk();
    // Without the open chunk, the complete chunk ledger_7-9 is the last one.
    disk.files_mut().remove("ledger_10").unwrap();
    let at = offset_of(&entries, 7, 8);
    let mut damaged = disk.clone();
    damaged.files_mut().get_mut("ledger_7-9").unwrap()[at] ^= 0x40;
    refused(damaged, "ledger_7-9", at, "version byte of entry 8 in the last chunk");
}
