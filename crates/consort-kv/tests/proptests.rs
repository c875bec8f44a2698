//! Property tests: replication through serialised write sets, snapshots and rollback all reproduce the same
//! state, and the deserialisers reject garbage without panicking.

use std::collections::BTreeMap;

use consort_kv::{DomainHeader, KvError, SnapshotHeader, Store, Version, WriteSet};
use proptest::prelude::*;

const MAPS: [&str; 4] = ["public:a", "public:b", "secret", "other"];

#[derive(Debug, Clone)]
enum Op {
    Put { map: usize, key: u8, value: Vec<u8> },
    Remove { map: usize, key: u8 },
    Get { map: usize, key: u8 },
    Iterate { map: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..MAPS.len(), 0u8..12, proptest::collection::vec(any::<u8>(), 0..20))
            .prop_map(|(map, key, value)| Op::Put { map, key, value }),
        2 => (0..MAPS.len(), 0u8..12).prop_map(|(map, key)| Op::Remove { map, key }),
        1 => (0..MAPS.len(), 0u8..12).prop_map(|(map, key)| Op::Get { map, key }),
        1 => (0..MAPS.len()).prop_map(|map| Op::Iterate { map }),
    ]
}

fn txs() -> impl Strategy<Value = Vec<Vec<Op>>> {
    proptest::collection::vec(proptest::collection::vec(op(), 0..6), 1..25)
}

/// Keys of varied lengths, so snapshot padding is exercised.
fn key_bytes(key: u8) -> Vec<u8> {
    vec![key; key as usize % 10]
}

/// One committed transaction's ledger halves.
struct Entry {
    version: Version,
    public: Vec<u8>,
    private: Vec<u8>,
}

/// Runs `txs` on a fresh store; returns it, the serialised entries, and the digest after each version.
fn run(txs: &[Vec<Op>]) -> (Store, Vec<Entry>, BTreeMap<Version, [u8; 32]>) {
    let store = Store::new();
    let mut entries = Vec::new();
    let mut digests = BTreeMap::from([(0, store.digest())]);
    for ops in txs {
        let mut tx = store.begin();
        for op in ops {
            match op {
                Op::Put { map, key, value } => tx.put(MAPS[*map], &key_bytes(*key), value),
                Op::Remove { map, key } => tx.remove(MAPS[*map], &key_bytes(*key)),
                Op::Get { map, key } => {
                    tx.get(MAPS[*map], &key_bytes(*key));
                }
                Op::Iterate { map } => tx.foreach(MAPS[*map], |_, _| true),
            }
        }
        let outcome = store
            .commit(tx, |version, ws| {
                let header = DomainHeader::write_set(version, [1; 32], [2; 32], version as i64 - 1);
                Entry {
                    version,
                    public: ws.serialise_public(&header),
                    private: ws.serialise_private(),
                }
            })
            .expect("a single writer never conflicts");
        if let consort_kv::CommitOutcome::Committed { version, result } = outcome {
            entries.push(result);
            digests.insert(version, store.digest());
        }
    }
    (store, entries, digests)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn replaying_serialised_write_sets_reproduces_the_store(txs in txs()) {
        let (primary, entries, _) = run(&txs);
        let backup = Store::new();
        for e in &entries {
            let (header, mut ws) = WriteSet::deserialise_public(&e.public).unwrap();
            prop_assert_eq!(header.version, e.version);
            ws.merge(WriteSet::deserialise_private(&e.private).unwrap());
            // Re-serialising gives the same bytes: the format is canonical for our own output.
            prop_assert_eq!(ws.serialise_public(&header), e.public.clone());
            prop_assert_eq!(ws.serialise_private(), e.private.clone());
            backup.apply(e.version, &ws).unwrap();
        }
        prop_assert_eq!(backup.current_version(), primary.current_version());
        prop_assert_eq!(backup.digest(), primary.digest());
        prop_assert_eq!(backup.map_names(), primary.map_names());
    }

    #[test]
    fn snapshot_round_trip_at_any_undoable_version(txs in txs(), committed_pick in any::<u64>(), at_pick in any::<u64>()) {
        let (store, _, digests) = run(&txs);
        let current = store.current_version();
        let committed = committed_pick % (current + 1);
        store.set_committed(committed);
        let at = committed + at_pick % (current - committed + 1);
        let header = SnapshotHeader { version: at, hash_at_snapshot: vec![7; 32], view_history: vec![1, 3] };
        let (public, private) = store.snapshot(&header);
        let (restored, back) = Store::from_snapshot(&public, &private).unwrap();
        prop_assert_eq!(back, header.clone());
        prop_assert_eq!(restored.digest(), digests[&at]);
        // Snapshotting the restored store gives the same bytes.
        prop_assert_eq!(restored.snapshot(&header), (public, private));
    }

    #[test]
    fn rollback_restores_earlier_digest(txs in txs(), committed_pick in any::<u64>(), to_pick in any::<u64>()) {
        let (store, _, digests) = run(&txs);
        let current = store.current_version();
        let committed = committed_pick % (current + 1);
        store.set_committed(committed);
        let to = committed + to_pick % (current - committed + 1);
        store.rollback(to).unwrap();
        prop_assert_eq!(store.current_version(), to);
        prop_assert_eq!(store.digest(), digests[&to]);
        if committed > 0 {
            prop_assert_eq!(store.rollback(committed - 1), Err(KvError::RollbackBelowCommitted { to: committed - 1, committed }));
        }
    }

    #[test]
    fn deserialisers_never_panic_on_random_bytes(a in proptest::collection::vec(any::<u8>(), 0..300), b in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = WriteSet::deserialise_public(&a);
        let _ = WriteSet::deserialise_private(&a);
        let _ = Store::from_snapshot(&a, &b);
        let mut snap = vec![1u8];
        snap.extend(&a);
        let _ = Store::from_snapshot(&snap, &b);
        let mut ws = vec![4u8];
        ws.extend(&a);
        let _ = WriteSet::deserialise_public(&ws);
    }

    #[test]
    fn deserialisers_survive_corrupted_valid_input(txs in txs(), flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
        let (store, entries, _) = run(&txs);
        let header = SnapshotHeader { version: store.current_version(), hash_at_snapshot: vec![1; 32], view_history: vec![] };
        let (snap_public, snap_private) = store.snapshot(&header);
        let mut inputs = vec![snap_public, snap_private];
        for e in entries.iter().take(3) {
            inputs.push(e.public.clone());
            inputs.push(e.private.clone());
        }
        for input in &mut inputs {
            if input.is_empty() {
                continue;
            }
            for (at, byte) in &flips {
                let i = at.index(input.len());
                input[i] ^= byte | 1;
            }
        }
        for pair in inputs.chunks(2) {
            let _ = WriteSet::deserialise_public(&pair[0]);
            let _ = WriteSet::deserialise_private(&pair[1]);
            let _ = Store::from_snapshot(&pair[0], &pair[1]);
        }
    }

    #[test]
    fn truncated_write_sets_are_never_taken_for_the_original(txs in txs(), cut_pick in any::<prop::sample::Index>()) {
        let (_, entries, _) = run(&txs);
        for e in &entries {
            let (header, public) = WriteSet::deserialise_public(&e.public).unwrap();
            let cut = cut_pick.index(e.public.len());
            if let Ok((h, ws)) = WriteSet::deserialise_public(&e.public[..cut]) {
                // Only a cut exactly between maps parses, and then it lost at least one map.
                prop_assert_eq!(h, header.clone());
                prop_assert!(ws.maps.len() < public.maps.len());
            }
            if !e.private.is_empty() {
                let private = WriteSet::deserialise_private(&e.private).unwrap();
                let cut = cut_pick.index(e.private.len());
                if let Ok(ws) = WriteSet::deserialise_private(&e.private[..cut]) {
                    prop_assert!(ws.maps.len() < private.maps.len());
                }
            }
        }
    }
}

/// Whatever a transaction may write commits, and then it must replicate and snapshot: a write set the store
/// accepted but the deserialisers refuse would stop every backup and every restart at that entry.
#[test]
fn every_committable_write_set_replicates_and_snapshots() {
    let store = Store::new();
    let mut tx = store.begin();
    tx.put("", b"k", b"v"); // the empty map name (private domain)
    tx.put("public:", b"", b""); // the bare public prefix, empty key and value
    tx.remove("never-written", b"gone"); // a map holding only a removal of a never-present key
    let (public, private) = match store
        .commit(tx, |v, ws| {
            let header = DomainHeader::write_set(v, [0; 32], [0; 32], 0);
            (ws.serialise_public(&header), ws.serialise_private())
        })
        .unwrap()
    {
        consort_kv::CommitOutcome::Committed { result, .. } => result,
        consort_kv::CommitOutcome::ReadOnly => unreachable!("the transaction wrote"),
    };
    let (header, mut ws) = WriteSet::deserialise_public(&public).unwrap();
    ws.merge(WriteSet::deserialise_private(&private).unwrap());
    let backup = Store::new();
    backup.apply(header.version, &ws).unwrap();
    assert_eq!(backup.digest(), store.digest());
    let snap = SnapshotHeader {
        version: 1,
        hash_at_snapshot: vec![0; 32],
        view_history: vec![],
    };
    let (sp, sv) = store.snapshot(&snap);
    let (restored, _) = Store::from_snapshot(&sp, &sv).unwrap();
    assert_eq!(restored.digest(), store.digest());
}
