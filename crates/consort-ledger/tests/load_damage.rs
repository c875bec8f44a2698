//! Loading a damaged ledger: a changed byte in a closed chunk (or in the middle of the open one) is refused with
//! the chunk and the offset named, and nothing on disk is changed; only a torn tail of the open chunk is dropped.

use consort_ledger::testing::{sample_ledger, BuiltEntry};
use consort_ledger::*;

/// A ledger of closed chunks 1-2, 3-6 and 7-9 (threshold 1: each signature closes its chunk), committed up to 6,
/// and an open chunk `ledger_10` holding entries 10 and 11; settled, as a clean stop leaves it. Built once.
fn ledger_on_disk() -> (MemStorage, Vec<BuiltEntry>) {
    static BUILT: std::sync::OnceLock<(MemStorage, Vec<BuiltEntry>)> = std::sync::OnceLock::new();
    BUILT.get_or_init(build_ledger).clone()
}

fn build_ledger() -> (MemStorage, Vec<BuiltEntry>) {
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

/// The typed error of a refused load: the damaged file, the offset and what is wrong there.
fn damage_of(err: &LedgerError) -> (&str, u64, &ChunkDamage) {
    match err {
        LedgerError::Damaged { name, offset, damage } => (name, *offset, damage),
        other => panic!("expected Damaged, got {other}"),
    }
}

#[test]
fn damage_is_typed_with_what_was_wrong() {
    let (disk, entries) = ledger_on_disk();
    let at = offset_of(&entries, 7, 8);
    let mut version = disk.clone();
    version.files_mut().get_mut("ledger_7-9").unwrap()[at] = 7;
    let err = refused(version, "ledger_7-9", at, "version");
    assert!(matches!(
        damage_of(&err),
        ("ledger_7-9", _, ChunkDamage::BadEntry { seqno: 8, source }) if **source == LedgerError::UnsupportedVersion(7)
    ));

    // A size that runs past the position table (and is within the entry size limit).
    let mut size = disk.clone();
    size.files_mut().get_mut("ledger_7-9").unwrap()[at + 4] ^= 0x01;
    let err = refused(size, "ledger_7-9", at, "size");
    assert!(matches!(
        damage_of(&err).2,
        ChunkDamage::LengthBeyondEnd { seqno: 8, .. }
    ));

    // The chunk header (position table offset).
    let mut header = disk.clone();
    header.files_mut().get_mut("ledger_3-6.committed").unwrap()[1] ^= 0x10;
    let err = refused(header, "ledger_3-6.committed", 0, "header");
    assert!(matches!(damage_of(&err).2, ChunkDamage::BadHeader(_)));

    // The position table.
    let mut table = disk.clone();
    let f = table.files_mut().get_mut("ledger_3-6.committed").unwrap();
    let last = f.len() - 4;
    f[last] ^= 0x01;
    let err = refused(table, "ledger_3-6.committed", last, "position table");
    assert!(matches!(damage_of(&err).2, ChunkDamage::BadPositionTable(_)));

    // An entry of another seqno in its place (entry 8's IV says 0x108).
    let mut seqno = disk.clone();
    seqno.files_mut().get_mut("ledger_7-9").unwrap()[at + 8 + 16 + 1] ^= 0x01;
    let err = refused(seqno, "ledger_7-9", at, "seqno");
    assert!(matches!(
        damage_of(&err).2,
        ChunkDamage::WrongSeqno {
            expected: 8,
            got: 0x108
        }
    ));

    // A closed chunk whose name disagrees with its entries.
    let mut renamed = disk.clone();
    let bytes = renamed.files_mut().remove("ledger_7-9").unwrap();
    renamed.files_mut().insert("ledger_7-10".into(), bytes);
    renamed.files_mut().remove("ledger_10").unwrap();
    let err = Ledger::load(renamed, 1).unwrap_err();
    assert!(matches!(
        damage_of(&err),
        (
            "ledger_7-10",
            _,
            ChunkDamage::NameRange {
                start: 7,
                end: 10,
                held: 3
            }
        )
    ));
}

/// Every single-bit flip anywhere in a closed chunk either refuses the load naming that chunk, or (a bit of an
/// entry's payload, which only its AES-GCM tag covers: replay checks it) loads every entry; none drops one.
#[test]
fn no_flipped_bit_in_a_closed_chunk_loses_an_entry() {
    let (disk, entries) = ledger_on_disk();
    for name in ["ledger_1-2.committed", "ledger_3-6.committed", "ledger_7-9"] {
        let len = disk.files()[name].len();
        for at in 0..len {
            for bit in [0x01u8, 0x80] {
                let mut damaged = disk.clone();
                damaged.files_mut().get_mut(name).unwrap()[at] ^= bit;
                match Ledger::load(damaged, 1) {
                    Ok(l) => {
                        assert_eq!(l.last_seqno(), entries.len() as u64, "{name} byte {at} bit {bit:#x}");
                        assert_eq!(l.torn_tail(), None, "{name} byte {at} bit {bit:#x}");
                    }
                    Err(e) => assert_eq!(damage_of(&e).0, name, "byte {at} bit {bit:#x}"),
                }
            }
        }
    }
}

#[test]
fn torn_tails_of_the_open_chunk_are_dropped_and_nothing_else() {
    let (disk, entries) = ledger_on_disk();
    let open = disk.files()["ledger_10"].clone();
    let last = &entries[10].bytes;
    let table: Vec<u8> = [8u32, 8 + entries[9].bytes.len() as u32]
        .iter()
        .flat_map(|o| o.to_le_bytes())
        .collect();
    let cases: [(&str, Vec<u8>, u64); 5] = [
        ("a partial header", last[..5].to_vec(), 11),
        ("a partial entry", last[..last.len() - 1].to_vec(), 11),
        ("zeros", vec![0; 300], 11),
        ("a partial position table", table[..6].to_vec(), 11),
        ("the whole position table", table.clone(), 11),
    ];
    for (what, tail, last_seqno) in cases {
        let mut torn = disk.clone();
        torn.files_mut().get_mut("ledger_10").unwrap().extend_from_slice(&tail);
        let before = torn.clone();
        let (mut l, got) = Ledger::open(torn, 1).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(l.last_seqno(), last_seqno, "{what}");
        assert_eq!(got.len(), entries.len(), "{what}");
        let t = l.torn_tail().unwrap_or_else(|| panic!("{what}: not reported")).clone();
        assert_eq!(
            (t.chunk.as_str(), t.offset, t.bytes),
            ("ledger_10", open.len() as u64, tail.len() as u64)
        );
        assert!(l.storage() == &before, "{what}: loading changed the disk");
        l.flush().unwrap();
        assert_eq!(
            l.storage().files()["ledger_10"],
            open,
            "{what}: the first write cuts the tail"
        );
    }
}

#[test]
fn bytes_after_the_open_chunk_that_no_torn_write_leaves_are_damage() {
    let (disk, entries) = ledger_on_disk();
    let open_len = disk.files()["ledger_10"].len();
    let last = &entries[10].bytes;
    let cases: [(&str, Vec<u8>); 4] = [
        ("garbage", b"not a ledger entry".to_vec()),
        ("a whole entry of the wrong seqno", entries[3].bytes.clone()),
        ("a header claiming more than an entry may hold", {
            let mut h = last[..8].to_vec();
            h[7] = 0xff;
            h
        }),
        ("zeros, then data", [vec![0u8; 16], b"data".to_vec()].concat()),
    ];
    for (what, tail) in cases {
        let mut damaged = disk.clone();
        damaged
            .files_mut()
            .get_mut("ledger_10")
            .unwrap()
            .extend_from_slice(&tail);
        refused(damaged, "ledger_10", open_len, what);
    }
    // A header of the open chunk that no close or rollback writes.
    let mut header = disk.clone();
    header.files_mut().get_mut("ledger_10").unwrap()[0] = 9;
    refused(header, "ledger_10", 0, "open chunk header");
}

#[test]
fn gaps_overlaps_and_an_open_chunk_before_a_closed_one_are_refused_by_name() {
    let (disk, _) = ledger_on_disk();
    let mut gap = disk.clone();
    gap.files_mut().remove("ledger_3-6.committed").unwrap();
    let err = Ledger::load(gap, 1).unwrap_err().to_string();
    assert!(err.contains("ledger_7-9") && err.contains("3-6 are missing"), "{err}");

    let mut overlap = disk.clone();
    let bytes = overlap.files()["ledger_3-6.committed"].clone();
    overlap.files_mut().insert("ledger_3-6".into(), bytes);
    let err = Ledger::load(overlap, 1).unwrap_err().to_string();
    assert!(err.contains("overlaps"), "{err}");

    let mut open_first = disk.clone();
    let mut bytes = open_first.files_mut().remove("ledger_3-6.committed").unwrap();
    let table_at = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    bytes.truncate(table_at);
    bytes[..8].fill(0);
    open_first.files_mut().insert("ledger_3".into(), bytes);
    let before = open_first.clone();
    let err = Ledger::load(open_first.clone(), 1).unwrap_err().to_string();
    assert!(
        err.contains("ledger_3") && err.contains("followed by the closed chunk ledger_7-9"),
        "{err}"
    );
    assert!(open_first == before);
}

/// Storage errors keep the operating system's error as their source.
#[test]
fn storage_io_errors_keep_their_source() {
    use std::error::Error;
    let err = StorageError::io("ledger/ledger_1", std::io::Error::from(std::io::ErrorKind::StorageFull));
    let StorageError::Io { path, source } = &err else {
        panic!("{err}");
    };
    assert_eq!(
        (path.as_str(), source.kind()),
        ("ledger/ledger_1", std::io::ErrorKind::StorageFull)
    );
    let ledger_err = LedgerError::from(err.clone());
    let chain = ledger_err.source().and_then(|s| s.source()).map(|s| s.to_string());
    assert_eq!(chain, Some(source.to_string()));
    assert!(ledger_err.to_string().contains("ledger/ledger_1"));
}

/// Every entry of `ledger`, read chunk by chunk as replay reads them, checked against one-by-one reads.
fn read_all(ledger: &Ledger<MemStorage>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let Some(mut next) = ledger.first_seqno() else {
        return out;
    };
    while next <= ledger.last_seqno() {
        let chunk = ledger.read_chunk_of(next).unwrap();
        for (seqno, bytes) in chunk.iter() {
            assert_eq!(ledger.read_entry(seqno).unwrap(), bytes);
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

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

    /// The `ledger_load` fuzz target's properties, over edits of a valid ledger: a refusal names one of the files;
    /// a load changes no file's bytes, keeps every entry of the chunks nobody touched, reports a torn tail that
    /// fits its file, and once its first write cut the files, loads again to the same entries, nothing torn.
    #[test]
    fn edited_ledgers_load_consistently_or_are_refused_by_name(
        edits in proptest::collection::vec((0usize..4, proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 0..3),
        cut in proptest::option::of((0usize..4, proptest::prelude::any::<usize>())),
        tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..12),
    ) {
        let (mut disk, entries) = ledger_on_disk();
        let names: Vec<String> = disk.files().keys().cloned().collect();
        let mut touched = std::collections::BTreeSet::new();
        for (file, at, byte) in edits {
            let f = disk.files_mut().get_mut(&names[file]).unwrap();
            let at = at % f.len();
            if f[at] != byte {
                f[at] = byte;
                touched.insert(names[file].clone());
            }
        }
        if let Some((file, len)) = cut {
            let f = disk.files_mut().get_mut(&names[file]).unwrap();
            let len = len % (f.len() + 1);
            if len < f.len() {
                f.truncate(len);
                touched.insert(names[file].clone());
            }
        }
        if !tail.is_empty() {
            disk.files_mut().get_mut("ledger_10").unwrap().extend_from_slice(&tail);
            touched.insert("ledger_10".to_string());
        }
        let mut ledger = match Ledger::load(disk.clone(), 1) {
            Ok(l) => l,
            Err(LedgerError::Damaged { name, .. } | LedgerError::Chunk { name, .. }) => {
                proptest::prop_assert!(touched.contains(&name), "{name} was not edited");
                return Ok(());
            }
            Err(e) => panic!("a refused load that names no file: {e}"),
        };
        proptest::prop_assert_eq!(contents(ledger.storage()), contents(&disk));
        if let Some(t) = ledger.torn_tail() {
            proptest::prop_assert!(touched.contains(&t.chunk), "{t}");
            let size = disk.files().get(&t.chunk).map(|f| f.len() as u64);
            proptest::prop_assert_eq!(size, Some(t.offset + t.bytes));
        }
        let loaded = read_all(&ledger);
        // Only the open chunk may lose entries (a torn tail), so entries 1-9 are all there; those of chunks nobody
        // edited are as written (an edited payload byte is for replay's AES-GCM check to find).
        proptest::prop_assert!(loaded.len() >= 9);
        for (e, got) in entries.iter().zip(&loaded).take(9) {
            let chunk = ["ledger_1-2.committed", "ledger_3-6.committed", "ledger_7-9"][usize::from(e.seqno > 2) + usize::from(e.seqno > 6)];
            if !touched.contains(chunk) {
                proptest::prop_assert_eq!(&e.bytes, got);
            }
        }
        ledger.flush().unwrap();
        let again = Ledger::load(ledger.into_storage(), 1).unwrap();
        proptest::prop_assert_eq!(again.torn_tail(), None);
        proptest::prop_assert_eq!(read_all(&again), loaded);
    }
}
