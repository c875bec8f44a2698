//! Tests of the store: transactions, OCC conflicts, replication apply, rollback and commit.

use super::*;
use crate::DEFAULT_MAX_OCC_ATTEMPTS;

fn put(store: &Store, map: &str, k: &[u8], v: &[u8]) -> Version {
    let mut tx = store.begin();
    tx.put(map, k, v);
    store.commit(tx, |_, _| ()).unwrap().version().unwrap()
}

#[test]
fn get_put_remove_has() {
    let store = Store::new();
    let mut tx = store.begin();
    assert_eq!(tx.get("m", b"k"), None);
    assert!(!tx.has("m", b"k"));
    tx.put("m", b"k", b"v1");
    assert_eq!(tx.get("m", b"k"), Some(b"v1".to_vec())); // read-your-writes
    assert!(tx.has("m", b"k"));
    // Not visible to others before commit.
    assert_eq!(store.read_only().get("m", b"k"), None);
    assert_eq!(
        store.commit(tx, |v, ws| (v, ws.len())).unwrap(),
        CommitOutcome::Committed {
            version: 1,
            result: (1, 1)
        }
    );
    assert_eq!(store.read_only().get("m", b"k"), Some(b"v1".to_vec()));

    let mut tx = store.begin();
    tx.remove("m", b"k");
    assert_eq!(tx.get("m", b"k"), None);
    assert!(!tx.has("m", b"k"));
    store.commit(tx, |_, _| ()).unwrap();
    assert_eq!(store.read_only().get("m", b"k"), None);
    assert!(!store.read_only().has("m", b"k"));
    assert_eq!(store.current_version(), 2);
    assert!(store.map_names().is_empty());
}

#[test]
fn foreach_merges_committed_and_own_writes_in_order() {
    let store = Store::new();
    for k in [b"a", b"c", b"e"] {
        put(&store, "m", k, b"old");
    }
    let mut tx = store.begin();
    tx.put("m", b"b", b"new");
    tx.put("m", b"c", b"new");
    tx.remove("m", b"e");
    let mut seen = Vec::new();
    tx.foreach("m", |k, v| {
        seen.push((k.to_vec(), v.to_vec()));
        true
    });
    assert_eq!(
        seen,
        vec![
            (b"a".to_vec(), b"old".to_vec()),
            (b"b".to_vec(), b"new".to_vec()),
            (b"c".to_vec(), b"new".to_vec())
        ]
    );
    let mut first = Vec::new();
    tx.foreach("m", |k, _| {
        first.push(k.to_vec());
        false
    });
    assert_eq!(first, vec![b"a".to_vec()]);
    let mut ro = Vec::new();
    store.read_only().foreach("m", |k, _| {
        ro.push(k.to_vec());
        true
    });
    assert_eq!(ro, vec![b"a".to_vec(), b"c".to_vec(), b"e".to_vec()]);
}

#[test]
fn read_only_tx_gets_no_version() {
    let store = Store::new();
    put(&store, "m", b"k", b"v");
    let mut tx = store.begin();
    assert!(tx.get("m", b"k").is_some());
    assert!(!tx.has_writes());
    let mut called = false;
    assert_eq!(store.commit(tx, |_, _| called = true).unwrap(), CommitOutcome::ReadOnly);
    assert!(!called);
    assert_eq!(store.current_version(), 1);
}

#[test]
fn versions_increase_by_one_and_key_versions_follow() {
    let store = Store::new();
    let versions: Vec<_> = (0..5).map(|i| put(&store, "m", &[i], b"v")).collect();
    assert_eq!(versions, vec![1, 2, 3, 4, 5]);
    let state = store.read_state();
    assert_eq!(state.key_version("m", &[3]), 4);
    assert_eq!(state.map_version("m"), 5);
}

#[test]
fn stale_read_conflicts_and_execute_retries() {
    let store = Store::new();
    let incr = |tx: &mut Tx<'_>| {
        let n = tx.get("c", b"n").map_or(0, |v| v[0]);
        tx.put("c", b"n", &[n + 1]);
    };
    let mut a = store.begin();
    let mut b = store.begin();
    incr(&mut a);
    incr(&mut b);
    assert_eq!(store.commit(a, |v, _| v).unwrap().version(), Some(1));
    assert_eq!(store.commit(b, |v, _| v), Err(KvError::Conflict));
    assert_eq!(store.read_only().get("c", b"n"), Some(vec![1]));

    // The same race, with the loser re-run by execute.
    let mut a = store.begin();
    incr(&mut a);
    let mut attempts = 0;
    let mut interloper = Some(a);
    let (_, outcome) = store
        .execute(
            DEFAULT_MAX_OCC_ATTEMPTS,
            |tx| {
                attempts += 1;
                incr(tx);
                // Let the other transaction commit in between our read and our commit, once.
                if let Some(a) = interloper.take() {
                    assert_eq!(store.commit(a, |v, _| v).unwrap().version(), Some(2));
                }
                Ok::<_, ()>(())
            },
            |v, _| v,
        )
        .unwrap();
    assert_eq!(attempts, 2);
    assert_eq!(outcome, CommitOutcome::Committed { version: 3, result: 3 });
    assert_eq!(store.read_only().get("c", b"n"), Some(vec![3]));
}

#[test]
fn reading_absent_key_conflicts_with_its_creation() {
    let store = Store::new();
    let mut tx = store.begin();
    assert!(!tx.has("m", b"k"));
    tx.put("other", b"x", b"y");
    put(&store, "m", b"k", b"v");
    assert_eq!(store.commit(tx, |_, _| ()), Err(KvError::Conflict));
}

#[test]
fn iteration_conflicts_with_any_write_to_the_map() {
    let store = Store::new();
    put(&store, "m", b"a", b"1");
    let mut tx = store.begin();
    tx.foreach("m", |_, _| true);
    tx.put("out", b"n", b"1");
    put(&store, "m", b"zzz", b"2");
    assert_eq!(store.commit(tx, |_, _| ()), Err(KvError::Conflict));
    // A write to another map does not disturb it.
    let mut tx = store.begin();
    tx.foreach("m", |_, _| true);
    tx.put("out", b"n", b"1");
    put(&store, "elsewhere", b"a", b"2");
    assert!(store.commit(tx, |_, _| ()).is_ok());
}

#[test]
fn execute_gives_up_and_passes_body_errors() {
    let store = Store::new();
    let r: Result<((), CommitOutcome<()>), _> = store.execute(3, |_| Err("nope"), |_, _| ());
    assert_eq!(r, Err(ExecuteError::Body("nope")));
    let mut n = 0u8;
    let r = store.execute(
        3,
        |tx| {
            tx.get("c", b"k");
            tx.put("c", b"k", b"v");
            n += 1;
            let mut other = store.begin();
            other.put("c", b"k", &[n]);
            store.commit(other, |_, _| ()).unwrap();
            Ok::<_, ()>(())
        },
        |_, _| (),
    );
    assert_eq!(
        r,
        Err(ExecuteError::Kv(KvError::ConflictRetriesExhausted { attempts: 3 }))
    );
}

#[test]
fn concurrent_increments_all_land() {
    const THREADS: usize = 4;
    const INCREMENTS: usize = 200;
    let store = Store::new();
    let seen = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..INCREMENTS {
                    store
                        .execute(
                            1000,
                            |tx| {
                                let n = tx
                                    .get("c", b"n")
                                    .map_or(0, |v| u64::from_le_bytes(v.try_into().unwrap()));
                                tx.put("c", b"n", &(n + 1).to_le_bytes());
                                Ok::<_, ()>(())
                            },
                            |v, ws| {
                                let n = ws.maps["c"].writes[&b"n".to_vec()].clone().unwrap();
                                seen.lock()
                                    .unwrap()
                                    .push((v, u64::from_le_bytes(n.try_into().unwrap())));
                            },
                        )
                        .unwrap();
                }
            });
        }
    });
    let total = (THREADS * INCREMENTS) as u64;
    let n = store.read_only().get("c", b"n").unwrap();
    assert_eq!(u64::from_le_bytes(n.try_into().unwrap()), total);
    // Callbacks ran in version order, each version writing counter == version.
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen, (1..=total).map(|v| (v, v)).collect::<Vec<_>>());
}

#[test]
fn apply_requires_the_next_version() {
    let store = Store::new();
    let mut ws = WriteSet::default();
    ws.put("m", b"k", b"v");
    assert_eq!(
        store.apply(2, &ws),
        Err(KvError::VersionMismatch { expected: 1, got: 2 })
    );
    store.apply(1, &ws).unwrap();
    assert_eq!(store.current_version(), 1);
    assert_eq!(store.read_only().get("m", b"k"), Some(b"v".to_vec()));
}

#[test]
fn rollback_restores_digest_and_respects_committed() {
    let store = Store::new();
    put(&store, "m", b"a", b"1");
    put(&store, "m", b"b", b"1");
    let at2 = store.digest();
    put(&store, "m", b"a", b"2");
    let mut tx = store.begin();
    tx.remove("m", b"b");
    tx.put("n", b"new", b"map");
    store.commit(tx, |_, _| ()).unwrap();
    assert_ne!(store.digest(), at2);
    store.set_committed(2);
    assert_eq!(
        store.rollback(1),
        Err(KvError::RollbackBelowCommitted { to: 1, committed: 2 })
    );
    assert_eq!(
        store.rollback(9),
        Err(KvError::RollbackBeyondCurrent { to: 9, current: 4 })
    );
    store.rollback(2).unwrap();
    assert_eq!(store.digest(), at2);
    assert_eq!(store.current_version(), 2);
    assert_eq!(store.map_names(), vec!["m".to_string()]);
    assert_eq!(store.read_state().undo.len(), 0);
    // Versions are reused after a rollback.
    assert_eq!(put(&store, "m", b"c", b"1"), 3);
}

#[test]
fn reads_of_rolled_back_versions_conflict_even_when_versions_are_reused() {
    // A key read at version 2 is rolled back and rewritten at the reused version 2 with another value: the
    // per-key version matches again, but the transaction read a value that no longer exists.
    let store = Store::new();
    put(&store, "m", b"k", b"a");
    put(&store, "m", b"k", b"x");
    let mut tx = store.begin();
    assert_eq!(tx.get("m", b"k"), Some(b"x".to_vec()));
    tx.put("out", b"copy", b"x");
    store.rollback(1).unwrap();
    assert_eq!(put(&store, "m", b"k", b"y"), 2);
    assert_eq!(store.commit(tx, |_, _| ()), Err(KvError::Conflict));

    // The same through a map-level read (iteration).
    let mut tx = store.begin();
    tx.foreach("m", |_, _| true);
    tx.put("out", b"n", b"1");
    store.rollback(1).unwrap();
    assert_eq!(put(&store, "m", b"k", b"z"), 2);
    assert_eq!(store.commit(tx, |_, _| ()), Err(KvError::Conflict));

    // A transaction begun after the rollback is unaffected, and a no-op rollback disturbs nothing.
    let mut tx = store.begin();
    assert_eq!(tx.get("m", b"k"), Some(b"z".to_vec()));
    tx.put("out", b"n", b"2");
    store.rollback(store.current_version()).unwrap();
    assert!(store.commit(tx, |_, _| ()).is_ok());
}

#[test]
fn read_only_transaction_with_a_torn_view_conflicts() {
    // A transfer moves 1 from a to b between the two reads: the reader saw a + b = 1, never a real state.
    let store = Store::new();
    let mut setup = store.begin();
    setup.put("m", b"a", b"1");
    setup.put("m", b"b", b"0");
    store.commit(setup, |_, _| ()).unwrap();
    let mut reader = store.begin();
    assert_eq!(reader.get("m", b"a"), Some(b"1".to_vec()));
    let mut transfer = store.begin();
    transfer.put("m", b"a", b"0");
    transfer.put("m", b"b", b"1");
    store.commit(transfer, |_, _| ()).unwrap();
    assert_eq!(reader.get("m", b"b"), Some(b"1".to_vec()));
    assert_eq!(store.commit(reader, |_, _| ()), Err(KvError::Conflict));
    // execute re-runs such a body and returns a consistent view.
    let mut interloper = Some(());
    let (sum, outcome) = store
        .execute(
            DEFAULT_MAX_OCC_ATTEMPTS,
            |tx| {
                let a = tx.get("m", b"a").unwrap()[0] - b'0';
                if interloper.take().is_some() {
                    put(&store, "m", b"a", b"1");
                    put(&store, "m", b"b", b"0");
                }
                let b = tx.get("m", b"b").unwrap()[0] - b'0';
                Ok::<_, ()>(a + b)
            },
            |_, _| (),
        )
        .unwrap();
    assert_eq!((sum, outcome), (1, CommitOutcome::ReadOnly));
}

#[test]
fn rollback_does_not_resurrect_committed_tombstones() {
    let store = Store::new();
    put(&store, "m", b"k", b"1");
    let mut tx = store.begin();
    tx.remove("m", b"k");
    store.commit(tx, |_, _| ()).unwrap(); // tombstone at 2
    put(&store, "m", b"k", b"3"); // overwrites it at 3, so set_committed(2) keeps the entry
    store.set_committed(2);
    store.rollback(2).unwrap();
    assert_eq!(store.read_only().get("m", b"k"), None);
    // Nothing can bring the value removed at 2 back: the tombstone is not kept forever.
    assert!(store.read_state().maps["m"].entries.is_empty());
    assert!(store.map_names().is_empty());
}

#[test]
fn set_committed_drops_undo_and_tombstones() {
    let store = Store::new();
    put(&store, "m", b"a", b"1");
    let mut tx = store.begin();
    tx.remove("m", b"a");
    store.commit(tx, |_, _| ()).unwrap();
    assert_eq!(store.read_state().maps["m"].entries.len(), 1); // tombstone kept while undo-able
    store.set_committed(100); // capped at current
    assert_eq!(store.committed_version(), 2);
    let state = store.read_state();
    assert!(state.undo.is_empty());
    assert!(state.maps["m"].entries.is_empty());
}

#[test]
fn apply_committed_matches_apply_then_set_committed() {
    let mut sets = Vec::new();
    let mut ws = WriteSet::default();
    ws.put("m", b"a", b"1");
    ws.put("m", b"b", b"1");
    sets.push(ws);
    let mut ws = WriteSet::default();
    ws.remove("m", b"a");
    ws.put("n", b"c", b"2");
    sets.push(ws);
    sets.push(WriteSet::default());
    let mut ws = WriteSet::default();
    ws.remove("m", b"never-there");
    ws.put("m", b"a", b"4");
    ws.remove("n", b"c");
    sets.push(ws);
    let (slow, fast) = (Store::new(), Store::new());
    for (i, ws) in sets.iter().enumerate() {
        let v = i as Version + 1;
        slow.apply(v, ws).unwrap();
        slow.set_committed(v);
        fast.apply_committed(v, ws.clone()).unwrap();
        assert_eq!(fast.digest(), slow.digest(), "after version {v}");
        assert_eq!(fast.committed_version(), v);
        let header = crate::SnapshotHeader {
            version: v,
            ..Default::default()
        };
        assert_eq!(fast.snapshot(&header), slow.snapshot(&header), "snapshot at {v}");
    }
    assert!(fast.read_state().undo.is_empty());
    assert_eq!(fast.map_names(), slow.map_names());
    // The same through write batches, committed and not.
    let (batched, batched_committed) = (Store::new(), Store::new());
    for (i, ws) in sets.iter().enumerate() {
        let v = i as Version + 1;
        batched.apply_batch(v, WriteBatch::from(ws.clone()), false).unwrap();
        batched_committed
            .apply_batch(v, WriteBatch::from(ws.clone()), true)
            .unwrap();
    }
    assert_eq!(batched.read_state().undo.len(), sets.len());
    assert_eq!(batched.digest(), slow.digest());
    assert_eq!(batched_committed.digest(), slow.digest());
    assert_eq!(batched_committed.committed_version(), sets.len() as Version);
    batched.rollback(1).unwrap();
    let first = Store::new();
    first.apply(1, &sets[0]).unwrap();
    assert_eq!(batched.digest(), first.digest());
    // Versions applied with undo before a committed one become committed with it.
    let mut ws = WriteSet::default();
    ws.put("m", b"z", b"5");
    fast.apply_owned(5, ws.clone()).unwrap();
    assert_eq!(fast.read_state().undo.len(), 1);
    fast.apply_committed(6, ws).unwrap();
    assert!(fast.read_state().undo.is_empty());
    assert_eq!(
        fast.rollback(5),
        Err(KvError::RollbackBelowCommitted { to: 5, committed: 6 })
    );
    assert_eq!(
        fast.apply_committed(9, WriteSet::default()),
        Err(KvError::VersionMismatch { expected: 7, got: 9 })
    );
}

#[test]
fn merge_older_adds_the_selected_maps_where_the_store_has_no_newer_entry() {
    // The older store: private maps replayed over versions 1..=3.
    let older = Store::new();
    put(&older, "priv", b"a", b"old-a");
    put(&older, "priv", b"b", b"old-b");
    put(&older, "public:x", b"p", b"ignored");
    // The live store went on: it has versions 1..=5, wrote "b" and removed "c" since, all committed.
    let live = Store::new();
    put(&live, "public:x", b"p", b"live");
    put(&live, "public:y", b"q", b"1");
    put(&live, "priv", b"b", b"new-b");
    put(&live, "priv", b"c", b"new-c");
    let mut tx = live.begin();
    tx.remove("priv", b"c");
    live.commit(tx, |_, _| ()).unwrap();
    live.set_committed(5);
    let added = live.merge_older(older, |name| !name.starts_with("public:")).unwrap();
    assert_eq!(added, 1);
    let read = live.read_only();
    assert_eq!(read.get("priv", b"a"), Some(b"old-a".to_vec()));
    assert_eq!(read.get("priv", b"b"), Some(b"new-b".to_vec()));
    assert_eq!(read.get("priv", b"c"), None);
    assert_eq!(read.get("public:x", b"p"), Some(b"live".to_vec()));
    assert_eq!(live.current_version(), 5);
    let mut seen = 0;
    read.foreach("priv", |_, _| {
        seen += 1;
        true
    });
    assert_eq!(seen, 2);
}

#[test]
fn merge_older_refuses_a_store_beyond_the_committed_version() {
    let older = Store::new();
    put(&older, "priv", b"a", b"1");
    put(&older, "priv", b"a", b"2");
    let live = Store::new();
    put(&live, "public:x", b"p", b"1");
    put(&live, "public:x", b"p", b"2");
    live.set_committed(1);
    assert!(matches!(
        live.merge_older(older, |_| true),
        Err(KvError::VersionUnavailable { requested: 2, .. })
    ));
    assert_eq!(live.read_only().get("priv", b"a"), None);
}
