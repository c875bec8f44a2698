//! Ledger over MemStorage: append, close, commit, read, truncate, reopen and crash recovery.

use consort_ledger::chunk::{entry_is_signature, CHUNK_HEADER_SIZE};
use consort_ledger::testing::{sample_ledger, LedgerBuilder, TestService};
use consort_ledger::*;

fn open(storage: MemStorage, threshold: u64) -> (Ledger<MemStorage>, Vec<Vec<u8>>) {
    Ledger::open(storage, threshold).unwrap()
}

fn names(l: &Ledger<MemStorage>) -> Vec<String> {
    l.chunk_names()
}

#[test]
fn mem_storage_conformance() {
    storage_conformance(|| Box::new(MemStorage::new()));
}

#[test]
fn chunk_names_parse() {
    assert_eq!(
        parse_chunk_name("ledger_1"),
        Some(ChunkName {
            start: 1,
            end: None,
            committed: false
        })
    );
    assert_eq!(
        parse_chunk_name("ledger_1-9"),
        Some(ChunkName {
            start: 1,
            end: Some(9),
            committed: false
        })
    );
    assert_eq!(
        parse_chunk_name("ledger_10-19.committed"),
        Some(ChunkName {
            start: 10,
            end: Some(19),
            committed: true
        })
    );
    for bad in [
        "ledger_",
        "ledger_0",
        "ledger_5-4",
        "ledger_1.committed",
        "ledger_1-2.recovery",
        "ledger_1-2.ignored",
        "snapshot_1_2",
        "ledger_+1",
        "ledger_1-2-3",
        "ledger_a",
    ] {
        assert_eq!(parse_chunk_name(bad), None, "{bad}");
    }
    let c = parse_chunk_name("ledger_10-19.committed").unwrap();
    assert_eq!(c.file_name(), chunk_name_committed(10, 19));
    assert_eq!(chunk_name_complete(3, 4), "ledger_3-4");
    assert_eq!(chunk_name_open(3), "ledger_3");
}

#[test]
fn append_close_commit_read() {
    let b = sample_ledger(4, 3);
    let (mut l, entries) = open(MemStorage::new(), 1);
    assert!(entries.is_empty());
    assert_eq!(l.last_seqno(), 0);
    for e in b.entries() {
        l.append(e.seqno, &e.bytes, e.is_signature).unwrap();
    }
    // Threshold 1 byte: every signature closes a chunk. Sigs at 2, 7, 11, 15, 19. Closing writes the position
    // table but neither syncs nor renames: the next flush syncs, the one after renames.
    let open_names = vec!["ledger_1", "ledger_3", "ledger_8", "ledger_12", "ledger_16"];
    assert_eq!(names(&l), open_names);
    assert!(l.needs_flush());
    l.flush().unwrap();
    assert_eq!(names(&l), open_names);
    l.flush().unwrap();
    assert!(!l.needs_flush());
    assert_eq!(
        names(&l),
        vec![
            "ledger_1-2",
            "ledger_3-7",
            "ledger_8-11",
            "ledger_12-15",
            "ledger_16-19"
        ]
    );
    l.commit(9).unwrap();
    assert!(l.needs_flush());
    l.flush().unwrap();
    assert_eq!(
        names(&l),
        vec![
            "ledger_1-2.committed",
            "ledger_3-7.committed",
            "ledger_8-11",
            "ledger_12-15",
            "ledger_16-19"
        ]
    );
    assert_eq!(l.committed_seqno(), 9);
    for e in b.entries() {
        assert_eq!(l.read_entry(e.seqno).unwrap(), e.bytes, "seqno {}", e.seqno);
    }
    assert_eq!(l.read_entry(0), Err(LedgerError::NotFound(0)));
    assert_eq!(l.read_entry(20), Err(LedgerError::NotFound(20)));
    assert_eq!(l.read_entries(3, 5).unwrap().len(), 3);
    l.flush().unwrap();
    // Out-of-order and mismatched appends are rejected.
    let next = &b.entries()[0].bytes;
    assert!(matches!(l.append(21, next, false), Err(LedgerError::MalformedEntry(_))));
    assert!(matches!(l.append(1, next, false), Err(LedgerError::OutOfOrder { .. })));
    // Committed chunks end on signatures and the files have the documented layout.
    for (name, bytes) in l.storage().files() {
        let c = parse_chunk_name(name).unwrap();
        let table_at = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        let count = (bytes.len() as u64 - table_at) / 4;
        assert_eq!(count, c.end.unwrap() - c.start + 1);
        assert_eq!(
            u32::from_le_bytes(bytes[table_at as usize..table_at as usize + 4].try_into().unwrap()),
            8
        );
        let last = l.read_entry(c.end.unwrap()).unwrap();
        assert!(entry_is_signature(&last));
    }
}

#[test]
fn threshold_groups_signatures_and_open_chunk_stays_open() {
    let mut b = sample_ledger(6, 2);
    b.log_tx(100, "unsigned");
    let (mut l, _) = open(MemStorage::new(), 4000);
    for e in b.entries() {
        l.append(e.seqno, &e.bytes, e.is_signature).unwrap();
    }
    l.settle().unwrap();
    let ns = names(&l);
    assert!(ns.len() >= 2, "{ns:?}");
    assert!(
        ns.last().unwrap().starts_with("ledger_") && !ns.last().unwrap().contains('-'),
        "{ns:?}"
    );
    for n in &ns[..ns.len() - 1] {
        let c = parse_chunk_name(n).unwrap();
        assert!(entry_is_signature(&l.read_entry(c.end.unwrap()).unwrap()));
    }
}

#[test]
fn reopen_rebuilds_index_and_entries() {
    let mut b = sample_ledger(5, 2);
    b.log_tx(50, "tail 1");
    b.log_tx(51, "tail 2");
    let (mut l, _) = open(MemStorage::new(), 1);
    b.write_to(&mut l).unwrap();
    let before = names(&l);
    let (l2, entries) = open(l.into_storage(), 1);
    assert_eq!(names(&l2), before);
    assert_eq!(entries.len(), b.entries().len());
    for (e, got) in b.entries().iter().zip(&entries) {
        assert_eq!(&e.bytes, got);
        assert_eq!(l2.read_entry(e.seqno).unwrap(), e.bytes);
    }
    assert_eq!(l2.committed_seqno(), b.last_signature_seqno());
    assert_eq!(l2.first_seqno(), Some(1));
}

#[test]
fn truncate_open_and_complete_chunks_then_continue() {
    let b = sample_ledger(4, 3); // sigs at 2, 7, 11, 15, 19
    for cut in [18, 15, 13, 11, 8, 7, 3, 2] {
        let (mut l, _) = open(MemStorage::new(), 1);
        for e in b.entries() {
            l.append(e.seqno, &e.bytes, e.is_signature).unwrap();
        }
        l.commit(2).unwrap();
        l.truncate(cut).unwrap();
        assert_eq!(l.last_seqno(), cut, "cut {cut}");
        assert!(l.read_entry(cut + 1).is_err());
        assert_eq!(l.read_entry(cut).unwrap(), b.entries()[cut as usize - 1].bytes);
        // The same ledger after reopening.
        let (mut l, entries) = open(l.into_storage(), 1);
        assert_eq!(entries.len() as u64, cut);
        // Re-append the rest: the files end up identical to an uninterrupted run.
        for e in &b.entries()[cut as usize..] {
            l.append(e.seqno, &e.bytes, e.is_signature).unwrap();
        }
        let (mut reference, _) = open(MemStorage::new(), 1);
        for e in b.entries() {
            reference.append(e.seqno, &e.bytes, e.is_signature).unwrap();
        }
        reference.commit(2).unwrap();
        reference.settle().unwrap();
        // A commit is on disk only once a flush renamed its chunks: after a reopen it is learned again.
        l.commit(2).unwrap();
        l.settle().unwrap();
        assert_eq!(l.storage(), reference.storage(), "cut {cut}");
    }
    // Committed entries cannot be truncated away; truncating to 0 empties the ledger.
    let (mut l, _) = open(MemStorage::new(), 1);
    b.write_to(&mut l).unwrap();
    assert!(matches!(l.truncate(3), Err(LedgerError::TruncateCommitted { .. })));
    let (mut l, _) = open(MemStorage::new(), 1);
    for e in b.entries() {
        l.append(e.seqno, &e.bytes, e.is_signature).unwrap();
    }
    l.truncate(0).unwrap();
    assert_eq!(l.last_seqno(), 0);
    assert!(l.storage().files().is_empty());
}

#[test]
fn torn_final_entry_is_dropped_on_open_and_cut_by_the_first_write() {
    let b = sample_ledger(2, 3);
    let (mut l, _) = open(MemStorage::new(), 1 << 20);
    for e in b.entries() {
        l.append(e.seqno, &e.bytes, e.is_signature).unwrap();
    }
    let mut storage = l.into_storage();
    let full = storage.files()["ledger_1"].clone();
    let kept = full.len() - b.entries().last().unwrap().bytes.len();
    for cut in [full.len() - 1, full.len() - 40, kept + 3] {
        let mut s = storage.clone();
        s.files_mut().insert("ledger_1".into(), full[..cut].to_vec());
        let (mut l, entries) = open(s, 1 << 20);
        assert_eq!(entries.len(), b.entries().len() - 1);
        assert_eq!(l.last_seqno(), b.entries().len() as u64 - 1);
        let torn = l.torn_tail().expect("the torn entry is reported").clone();
        assert_eq!(
            (torn.chunk.as_str(), torn.offset, torn.bytes),
            ("ledger_1", kept as u64, (cut - kept) as u64)
        );
        // Loading changed nothing on disk; the first write cuts the file to what was kept.
        assert_eq!(l.storage().files()["ledger_1"].len(), cut);
        assert!(l.needs_flush());
        l.flush().unwrap();
        assert_eq!(l.storage().files()["ledger_1"].len(), kept);
        assert_eq!(l.torn_tail(), Some(&torn), "still reported after the cut");
    }
    // A chunk torn inside its header holds nothing and is removed (by the first write).
    storage.files_mut().insert("ledger_1".into(), vec![0, 0, 0]);
    let (mut l, entries) = open(storage, 1 << 20);
    assert!(entries.is_empty() && l.chunk_names().is_empty());
    assert_eq!(l.torn_tail().map(|t| (t.offset, t.bytes)), Some((0, 3)));
    assert_eq!(l.storage().files().len(), 1);
    l.flush().unwrap();
    assert!(l.storage().files().is_empty());
}

#[test]
fn interrupted_close_and_reopen_are_recovered() {
    let b = sample_ledger(1, 2); // 1..=6, sigs at 2 and 6
    let (mut l, _) = open(MemStorage::new(), 1 << 20);
    for e in b.entries() {
        l.append(e.seqno, &e.bytes, e.is_signature).unwrap();
    }
    let open_file = l.storage().files()["ledger_1"].clone();
    let entries_len = open_file.len() as u64;
    // Crash after appending the position table, before writing the header: reopened as an open chunk.
    let mut table = Vec::new();
    let (mut reference, _) = open(MemStorage::new(), 1);
    for e in b.entries() {
        reference.append(e.seqno, &e.bytes, false).unwrap();
    }
    let mut pos = CHUNK_HEADER_SIZE as u32;
    for e in b.entries() {
        table.extend_from_slice(&pos.to_le_bytes());
        pos += e.bytes.len() as u32;
    }
    let mut s = MemStorage::new();
    s.files_mut()
        .insert("ledger_1".into(), [&open_file[..], &table[..]].concat());
    let (mut l2, entries) = open(s, 1 << 20);
    assert_eq!(entries.len(), 6);
    assert_eq!(l2.chunk_names(), vec!["ledger_1"]);
    l2.flush().unwrap();
    assert_eq!(l2.storage().files()["ledger_1"], open_file);
    // Crash after writing the header, before the rename: the close is finished.
    let mut closed = [&open_file[..], &table[..]].concat();
    closed[..8].copy_from_slice(&entries_len.to_le_bytes());
    let mut s = MemStorage::new();
    s.files_mut().insert("ledger_1".into(), closed.clone());
    let (l3, entries) = open(s, 1 << 20);
    assert_eq!(entries.len(), 6);
    assert_eq!(l3.chunk_names(), vec!["ledger_1-6"]);
    // Crash while rolling a complete chunk back (renamed open, table truncated, header stale): reopened as open.
    let mut torn = closed.clone();
    torn.truncate(open_file.len() - b.entries()[5].bytes.len());
    let mut s = MemStorage::new();
    s.files_mut().insert("ledger_1".into(), torn.clone());
    let (mut l4, entries) = open(s, 1 << 20);
    assert_eq!(entries.len(), 5);
    assert_eq!(l4.chunk_names(), vec!["ledger_1"]);
    assert_eq!(l4.torn_tail(), None, "nothing was dropped");
    l4.flush().unwrap();
    assert_eq!(&l4.storage().files()["ledger_1"][..8], &[0u8; 8]);
    // The same bytes under a complete name are damage: a rollback renames the chunk open before truncating it.
    let mut s = MemStorage::new();
    s.files_mut().insert("ledger_1-6".into(), torn);
    assert!(matches!(
        Ledger::open(s, 1 << 20),
        Err(LedgerError::Damaged {
            offset: 0,
            damage: ChunkDamage::BadHeader(_),
            ..
        })
    ));
    // A damaged committed chunk is an error, not silently truncated.
    let mut s = MemStorage::new();
    let mut bad = closed;
    bad.pop();
    s.files_mut().insert("ledger_1-6.committed".into(), bad);
    assert!(Ledger::open(s, 1).is_err());
}

#[test]
fn gaps_and_misplaced_open_chunks_are_rejected() {
    let files = sample_ledger(3, 2).chunk_files(1);
    let mut s = MemStorage::new();
    for (n, b) in &files {
        s.files_mut().insert(n.clone(), b.clone());
    }
    let mut gap = s.clone();
    gap.files_mut().remove("ledger_3-6.committed").unwrap();
    assert!(Ledger::open(gap, 1).is_err());
    let mut open_in_middle = s.clone();
    let mut b = open_in_middle.files_mut().remove("ledger_3-6.committed").unwrap();
    let table_at = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    b.truncate(table_at);
    b[..8].copy_from_slice(&[0u8; 8]);
    open_in_middle.files_mut().insert("ledger_3".into(), b);
    assert!(Ledger::open(open_in_middle, 1).is_err());
    assert!(Ledger::open(s, 1).is_ok());
}

#[test]
fn ledger_may_start_after_a_snapshot_and_force_flags_are_honoured() {
    let service = TestService::generate();
    let mut b = LedgerBuilder::new(service);
    b.genesis("Open");
    b.signature();
    for i in 0..5 {
        b.log_tx(i, "x");
    }
    b.signature(); // seqno 8
    let (mut l, _) = open(MemStorage::new(), 1 << 30);
    for e in &b.entries()[4..] {
        l.append(e.seqno, &e.bytes, e.is_signature).unwrap();
    }
    assert_eq!(l.first_seqno(), Some(5));
    assert_eq!(l.chunk_names(), vec!["ledger_5"]);
    // Header flag bit 0 on a signature closes the chunk regardless of the threshold.
    let e = b.entries().last().unwrap();
    let mut flagged = e.bytes.clone();
    flagged[1] = 0x01;
    let (mut l, _) = open(MemStorage::new(), 1 << 30);
    for e in &b.entries()[..7] {
        l.append(e.seqno, &e.bytes, e.is_signature).unwrap();
    }
    l.append(8, &flagged, true).unwrap();
    l.settle().unwrap();
    assert_eq!(l.chunk_names(), vec!["ledger_1-8"]);
}

#[test]
fn clear_removes_every_chunk_and_restarts_anywhere() {
    let b = sample_ledger(3, 4);
    let (mut ledger, _) = open(MemStorage::new(), 256);
    b.write_to(&mut ledger).unwrap();
    assert!(ledger.committed_seqno() > 0 && ledger.chunk_names().len() > 1);
    ledger.clear().unwrap();
    assert_eq!(
        (ledger.last_seqno(), ledger.committed_seqno(), ledger.first_seqno()),
        (0, 0, None)
    );
    assert!(ledger.storage().files().is_empty());
    // A snapshot at seqno 7 was installed: the ledger resumes at 8.
    let e = &b.entries()[7];
    ledger.append(8, &e.bytes, e.is_signature).unwrap();
    let (reopened, entries) = open(ledger.into_storage(), 256);
    assert_eq!((reopened.first_seqno(), entries.len()), (Some(8), 1));
}

/// Appends `entries` to a fresh ledger (threshold 1: each signature closes its chunk) and commits `committed`.
fn reference_storage(entries: &[testing::BuiltEntry], committed: u64) -> MemStorage {
    let (mut l, _) = open(MemStorage::new(), 1);
    for e in entries {
        l.append(e.seqno, &e.bytes, e.is_signature).unwrap();
    }
    l.commit(committed).unwrap();
    l.settle().unwrap();
    l.into_storage()
}

/// Reopens `s`, checks it holds exactly the first `whole` entries, re-appends the rest and checks the files are
/// those of an uninterrupted run.
fn recovers_to(s: MemStorage, entries: &[testing::BuiltEntry], whole: usize, committed: u64, what: &str) {
    let (mut l, got) = Ledger::open(s, 1).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(got.len(), whole, "{what}");
    for (e, g) in entries.iter().zip(&got) {
        assert_eq!(&e.bytes, g, "{what}");
    }
    for e in &entries[whole..] {
        l.append(e.seqno, &e.bytes, e.is_signature).unwrap();
    }
    l.commit(committed).unwrap();
    l.settle().unwrap();
    let reference = reference_storage(entries, committed);
    // Compared by name and length first: a byte dump of a whole ledger helps nobody.
    let shape = |s: &MemStorage| s.files().iter().map(|(n, b)| (n.clone(), b.len())).collect::<Vec<_>>();
    assert_eq!(shape(l.storage()), shape(&reference), "{what}");
    assert!(
        l.storage() == &reference,
        "{what}: same files and sizes, different bytes"
    );
}

#[test]
fn crash_at_every_byte_of_the_last_entry_and_of_the_close() {
    let mut b = sample_ledger(2, 2); // 1-2 | 3-6 | 7-9 with threshold 1; signatures at 2, 6, 9
    b.log_tx(100, "tail");
    b.log_tx(101, "tail");
    let entries = b.entries().to_vec();
    let n = entries.len();
    let committed = 6;
    // The disk as it was before the last entry (11, in the open chunk ledger_10) was appended.
    let before_last = reference_storage(&entries[..n - 1], committed);
    let last = &entries[n - 1].bytes;
    for cut in 0..last.len() {
        let mut s = before_last.clone();
        s.files_mut()
            .get_mut("ledger_10")
            .unwrap()
            .extend_from_slice(&last[..cut]);
        recovers_to(s, &entries, n - 1, committed, &format!("entry 11 torn at {cut}"));
    }

    // Closing chunk 7-9: the signature entry 9 is torn, then the position table, then the header.
    let sig = &entries[8].bytes;
    let open_789 = reference_storage(&entries[..8], committed);
    let mut whole_file = open_789.files()["ledger_7"].clone();
    for cut in 0..sig.len() {
        let mut s = open_789.clone();
        s.files_mut()
            .get_mut("ledger_7")
            .unwrap()
            .extend_from_slice(&sig[..cut]);
        recovers_to(s, &entries, 8, committed, &format!("signature 9 torn at {cut}"));
    }
    whole_file.extend_from_slice(sig);
    let entries_end = whole_file.len() as u64;
    let mut table = Vec::new();
    let mut pos = CHUNK_HEADER_SIZE;
    for e in &entries[6..9] {
        table.extend_from_slice(&(pos as u32).to_le_bytes());
        pos += e.bytes.len() as u64;
    }
    for cut in 0..=table.len() {
        let mut s = open_789.clone();
        let f = s.files_mut().get_mut("ledger_7").unwrap();
        *f = whole_file.clone();
        f.extend_from_slice(&table[..cut]);
        recovers_to(s, &entries, 9, committed, &format!("position table torn at {cut}"));
    }
    let header = entries_end.to_le_bytes();
    for cut in 0..=8 {
        let mut s = open_789.clone();
        let f = s.files_mut().get_mut("ledger_7").unwrap();
        *f = [&whole_file[..], &table[..]].concat();
        f[..cut].copy_from_slice(&header[..cut]);
        recovers_to(s, &entries, 9, committed, &format!("header torn at {cut}"));
    }

    // The close is not synced before the next chunk starts: chunk 7-9 keeps its open name with its table or header
    // torn while ledger_10 already holds entry 10. No flush completed since the close, so entry 10 was never
    // durable: the torn chunk reopens and ledger_10 goes. With table and header whole, nothing is lost.
    let mut next = vec![0u8; 8];
    next.extend_from_slice(&entries[9].bytes);
    for (cut_table, cut_header) in (0..=table.len())
        .map(|c| (c, 0))
        .chain((0..=8).map(|c| (table.len(), c)))
    {
        let mut s = open_789.clone();
        let f = s.files_mut().get_mut("ledger_7").unwrap();
        *f = [&whole_file[..], &table[..cut_table]].concat();
        f[..cut_header].copy_from_slice(&header[..cut_header]);
        s.files_mut().insert("ledger_10".into(), next.clone());
        // A header torn after its last non-zero byte is whole.
        let mut torn_header = [0u8; 8];
        torn_header[..cut_header].copy_from_slice(&header[..cut_header]);
        let closed = cut_table == table.len() && torn_header == header;
        let whole = if closed { 10 } else { 9 };
        recovers_to(
            s,
            &entries,
            whole,
            committed,
            &format!("next chunk started, table torn at {cut_table}, header at {cut_header}"),
        );
    }
}

#[test]
fn load_keeps_no_entries_and_chunks_stream_in_order() {
    let mut b = sample_ledger(5, 3);
    // An open chunk at the end: two entries after the last signature.
    b.log_tx(100, "tail");
    b.log_tx(101, "tail");
    let (mut l, _) = open(MemStorage::new(), 1);
    for e in b.entries() {
        l.append(e.seqno, &e.bytes, e.is_signature).unwrap();
    }
    l.flush().unwrap();
    let storage = l.into_storage();
    let (_, all) = open(storage.clone(), 1);
    let loaded = Ledger::load(storage, 1).unwrap();
    assert!(loaded.chunk_names().len() > 3);
    let mut streamed = Vec::new();
    let mut next = loaded.first_seqno().unwrap();
    while next <= loaded.last_seqno() {
        let chunk = loaded.read_chunk_of(next).unwrap();
        assert_eq!(chunk.first_seqno(), next);
        assert_eq!(chunk.entry(chunk.last_seqno() + 1), None);
        for (seqno, bytes) in chunk.iter() {
            assert_eq!(seqno, streamed.len() as u64 + 1);
            assert_eq!(chunk.entry(seqno), Some(bytes));
            streamed.push(bytes.to_vec());
        }
        next = chunk.last_seqno() + 1;
    }
    assert_eq!(streamed, all);
    assert!(matches!(
        loaded.read_chunk_of(loaded.last_seqno() + 1),
        Err(LedgerError::NotFound(_))
    ));
}

/// Settled chunks (committed, synced, named so) drop their entry offsets from memory; their entries are still read
/// back exactly, one by one and chunk by chunk, through the files' position tables, also after a reload.
#[test]
fn settled_chunks_drop_their_offsets_and_still_read_back() {
    let b = sample_ledger(12, 3);
    let (mut l, _) = open(MemStorage::new(), 1);
    for e in b.entries() {
        l.append(e.seqno, &e.bytes, e.is_signature).unwrap();
    }
    let all = b.entries().len();
    assert_eq!(l.offsets_held(), all, "every entry is indexed before anything settles");
    let last_sig = b.entries().iter().rev().find(|e| e.is_signature).unwrap().seqno;
    let middle_sig = b.entries().iter().filter(|e| e.is_signature).nth(6).unwrap().seqno;
    l.commit(middle_sig).unwrap();
    l.flush().unwrap();
    l.flush().unwrap();
    l.flush().unwrap();
    let unsettled = b.entries().iter().filter(|e| e.seqno > middle_sig).count();
    assert_eq!(
        l.offsets_held(),
        unsettled,
        "only chunks after the commit point keep their offsets"
    );
    let check = |l: &Ledger<MemStorage>| {
        for e in b.entries() {
            assert_eq!(l.read_entry(e.seqno).unwrap(), e.bytes, "seqno {}", e.seqno);
        }
        let mut next = l.first_seqno().unwrap();
        while next <= l.last_seqno() {
            let chunk = l.read_chunk_of(next).unwrap();
            for (seqno, bytes) in chunk.iter() {
                assert_eq!(bytes, &b.entries()[seqno as usize - 1].bytes[..], "seqno {seqno}");
            }
            next = chunk.last_seqno() + 1;
        }
        // Through an entry source, read from another handle on the same files, as a reader off the ledger's lock
        // does: settled chunks' entries point to their files, the rest are handed over as bytes.
        let mut settled = 0;
        for e in b.entries() {
            let source = l.entry_source(e.seqno).unwrap();
            if matches!(source, consort_ledger::EntrySource::Settled(_)) {
                settled += 1;
            }
            assert_eq!(source.read(l.storage()).unwrap(), e.bytes, "seqno {}", e.seqno);
        }
        assert_eq!(
            settled,
            all - l.offsets_held(),
            "settled entries are read from their files"
        );
        // Reads in reverse order too (every read of an earlier chunk goes back to its file).
        for e in b.entries().iter().rev() {
            assert_eq!(l.read_entry(e.seqno).unwrap(), e.bytes, "seqno {}", e.seqno);
        }
    };
    check(&l);
    l.commit(last_sig).unwrap();
    l.flush().unwrap();
    l.flush().unwrap();
    assert_eq!(
        l.offsets_held(),
        all - last_sig as usize,
        "what follows the last signature stays indexed"
    );
    check(&l);
    let (mut reloaded, _) = open(l.into_storage(), 1);
    reloaded.flush().unwrap();
    assert_eq!(reloaded.offsets_held(), all - last_sig as usize);
    check(&reloaded);
}
