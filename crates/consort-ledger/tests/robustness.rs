//! Untrusted bytes never panic the chunk reader or the auditor (the fuzz target's properties, run as proptests).

use consort_ledger::testing::sample_ledger;
use consort_ledger::*;
use proptest::prelude::*;

fn names(end: u64) -> [String; 3] {
    [
        "ledger_1".to_string(),
        format!("ledger_1-{end}"),
        format!("ledger_1-{end}.committed"),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn audit_and_open_never_panic_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400),
                                                  end in 1u64..40) {
        for name in names(end) {
            let _ = audit_chunks(&[(name.clone(), bytes.clone())]);
            let mut s = MemStorage::new();
            s.files_mut().insert(name, bytes.clone());
            let _ = Ledger::open(s, 1);
        }
    }

    #[test]
    fn audit_and_open_never_panic_on_damaged_chunks(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
                                                    cut in any::<usize>()) {
        let files = sample_ledger(1, 2).committed_chunk_files(1);
        let mut damaged = files.clone();
        for (pos, byte) in edits {
            let f = &mut damaged[pos % files.len()].1;
            let at = (pos / 7) % f.len();
            f[at] = byte;
        }
        let f = &mut damaged[cut % files.len()].1;
        if cut % 3 == 0 {
            f.truncate(cut % (f.len() + 1));
        }
        let _ = audit_chunks(&damaged);
        let mut s = MemStorage::new();
        for (n, b) in &damaged {
            s.files_mut().insert(n.clone(), b.clone());
        }
        if let Ok((l, entries)) = Ledger::open(s, 1) {
            for (i, e) in entries.iter().enumerate() {
                prop_assert_eq!(&l.read_entry(l.first_seqno().unwrap() + i as u64).unwrap(), e);
            }
        }
    }
}
