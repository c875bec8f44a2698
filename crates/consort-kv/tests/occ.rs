//! Serialisability of optimistic concurrency control, checked against a model: transactions are interleaved
//! (begin, reads, iteration, writes, commit) with commits of others, replicated applies, rollbacks and
//! `set_committed`, and every transaction that commits must have read exactly what the store held just before
//! its commit, as if it had run alone at its commit point.

use std::collections::BTreeMap;

use consort_kv::{Store, Tx, WriteSet};
use proptest::prelude::*;

const MAPS: [&str; 2] = ["public:a", "b"];
const SLOTS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Begin(usize),
    Get(usize, usize, u8),
    Has(usize, usize, u8),
    Iterate(usize, usize, u8),
    Put(usize, usize, u8, u8),
    Remove(usize, usize, u8),
    Commit(usize),
    /// A write set from elsewhere (a primary) applied at the next version.
    Apply(usize, u8, Option<u8>),
    Rollback(u8),
    SetCommitted(u8),
}

fn op() -> impl Strategy<Value = Op> {
    let slot = 0..SLOTS;
    let map = 0..MAPS.len();
    let key = 0u8..3;
    prop_oneof![
        2 => slot.clone().prop_map(Op::Begin),
        3 => (slot.clone(), map.clone(), key.clone()).prop_map(|(s, m, k)| Op::Get(s, m, k)),
        1 => (slot.clone(), map.clone(), key.clone()).prop_map(|(s, m, k)| Op::Has(s, m, k)),
        2 => (slot.clone(), map.clone(), 0u8..4).prop_map(|(s, m, stop)| Op::Iterate(s, m, stop)),
        3 => (slot.clone(), map.clone(), key.clone(), any::<u8>()).prop_map(|(s, m, k, v)| Op::Put(s, m, k, v)),
        1 => (slot.clone(), map.clone(), key.clone()).prop_map(|(s, m, k)| Op::Remove(s, m, k)),
        3 => slot.prop_map(Op::Commit),
        1 => (map, key, proptest::option::of(any::<u8>())).prop_map(|(m, k, v)| Op::Apply(m, k, v)),
        3 => (0u8..3).prop_map(Op::Rollback),
        1 => (0u8..3).prop_map(Op::SetCommitted),
    ]
}

/// What a transaction observed of the committed state (reads served from its own writes are not recorded).
#[derive(Debug)]
enum Seen {
    Value(usize, Vec<u8>, Option<Vec<u8>>),
    /// The first `n` live keys of a map, as far as the iteration went, where the transaction had no own
    /// writes in that map.
    Prefix(usize, Vec<(Vec<u8>, Vec<u8>)>, bool),
}

struct Open<'s> {
    tx: Tx<'s>,
    seen: Vec<Seen>,
}

type Model = Vec<BTreeMap<Vec<u8>, Vec<u8>>>;

fn state(store: &Store) -> Model {
    MAPS.iter()
        .map(|m| {
            let mut out = BTreeMap::new();
            store.read_only().foreach(m, |k, v| {
                out.insert(k.to_vec(), v.to_vec());
                true
            });
            out
        })
        .collect()
}

fn check(seen: &[Seen], before: &Model) -> Result<(), String> {
    for s in seen {
        match s {
            Seen::Value(m, k, v) => {
                if before[*m].get(k) != v.as_ref() {
                    return Err(format!(
                        "read {}[{k:?}] = {v:?}, store held {:?}",
                        MAPS[*m],
                        before[*m].get(k)
                    ));
                }
            }
            Seen::Prefix(m, items, complete) => {
                let actual: Vec<_> = before[*m].iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                let ok = if *complete {
                    &actual == items
                } else {
                    actual.starts_with(items)
                };
                if !ok {
                    return Err(format!("iterated {} as {items:?}, store held {actual:?}", MAPS[*m]));
                }
            }
        }
    }
    Ok(())
}

fn own_write(tx: &Tx<'_>, map: usize, key: &[u8]) -> bool {
    tx.write_set()
        .maps
        .get(MAPS[map])
        .is_some_and(|m| m.writes.contains_key(key))
}

fn own_writes_in(tx: &Tx<'_>, map: usize) -> bool {
    tx.write_set().maps.get(MAPS[map]).is_some_and(|m| !m.writes.is_empty())
}

fn run(ops: &[Op]) -> Result<(), String> {
    let store = Store::new();
    let mut open: Vec<Option<Open<'_>>> = (0..SLOTS).map(|_| None).collect();
    for op in ops {
        match op.clone() {
            Op::Begin(s) => {
                open[s] = Some(Open {
                    tx: store.begin(),
                    seen: Vec::new(),
                })
            }
            Op::Get(s, m, k) | Op::Has(s, m, k) => {
                let Some(o) = open[s].as_mut() else { continue };
                let key = vec![k];
                let own = own_write(&o.tx, m, &key);
                let value = if matches!(op, Op::Get(..)) {
                    o.tx.get(MAPS[m], &key)
                } else {
                    // `has` is checked for presence only: record it as the value it implies when absent.
                    let present = o.tx.has(MAPS[m], &key);
                    if !own && !present {
                        o.seen.push(Seen::Value(m, key.clone(), None));
                    }
                    continue;
                };
                if !own {
                    o.seen.push(Seen::Value(m, key, value));
                }
            }
            Op::Iterate(s, m, stop) => {
                let Some(o) = open[s].as_mut() else { continue };
                let own = own_writes_in(&o.tx, m);
                let mut items = Vec::new();
                let mut complete = true;
                o.tx.foreach(MAPS[m], |k, v| {
                    if items.len() == stop as usize + 1 {
                        complete = false;
                        return false;
                    }
                    items.push((k.to_vec(), v.to_vec()));
                    true
                });
                if !own {
                    o.seen.push(Seen::Prefix(m, items, complete));
                }
            }
            Op::Put(s, m, k, v) => {
                if let Some(o) = open[s].as_mut() {
                    o.tx.put(MAPS[m], &[k], &[v]);
                }
            }
            Op::Remove(s, m, k) => {
                if let Some(o) = open[s].as_mut() {
                    o.tx.remove(MAPS[m], &[k]);
                }
            }
            Op::Commit(s) => {
                let Some(o) = open[s].take() else { continue };
                let before = state(&store);
                // Read-only transactions too: what they read may be returned to a client.
                if store.commit(o.tx, |_, _| ()).is_ok() {
                    check(&o.seen, &before).map_err(|e| format!("committed although it {e}"))?;
                }
            }
            Op::Apply(m, k, v) => {
                let mut ws = WriteSet::default();
                match v {
                    Some(v) => ws.put(MAPS[m], &[k], &[v]),
                    None => ws.remove(MAPS[m], &[k]),
                }
                store
                    .apply(store.current_version() + 1, &ws)
                    .map_err(|e| e.to_string())?;
            }
            Op::Rollback(n) => {
                let to = store
                    .current_version()
                    .saturating_sub(u64::from(n))
                    .max(store.committed_version());
                store.rollback(to).map_err(|e| e.to_string())?;
            }
            Op::SetCommitted(n) => store.set_committed(store.current_version().saturating_sub(u64::from(n))),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10000))]

    #[test]
    fn committed_transactions_read_what_their_commit_point_held(ops in proptest::collection::vec(op(), 1..40)) {
        if let Err(e) = run(&ops) {
            prop_assert!(false, "{}", e);
        }
    }
}

/// Commit callbacks may read the store, while other threads mark versions committed, snapshot, iterate and
/// commit: no deadlock, no lost increment, callbacks in version order.
#[test]
fn commit_callbacks_readers_snapshots_and_set_committed_run_together() {
    use consort_kv::{SnapshotHeader, DEFAULT_MAX_OCC_ATTEMPTS};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;
    const WRITERS: usize = 3;
    const INCREMENTS: u64 = 150;
    let store = Store::new();
    let done = AtomicBool::new(false);
    let order = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|_| {
                s.spawn(|| {
                    for _ in 0..INCREMENTS {
                        store
                            .execute(
                                10_000,
                                |tx| {
                                    let n = tx
                                        .get("c", b"n")
                                        .map_or(0, |v| u64::from_le_bytes(v.try_into().unwrap()));
                                    tx.put("c", b"n", &(n + 1).to_le_bytes());
                                    Ok::<_, ()>(())
                                },
                                |version, _| {
                                    // The new state is visible to the callback; reading it must not deadlock.
                                    assert!(store.read_only().get("c", b"n").is_some());
                                    order.lock().unwrap().push(version);
                                },
                            )
                            .unwrap();
                    }
                })
            })
            .collect();
        s.spawn(|| {
            while !done.load(Ordering::Acquire) {
                let v = store.current_version();
                store.set_committed(v.saturating_sub(2));
                let header = SnapshotHeader {
                    version: store.committed_version(),
                    hash_at_snapshot: vec![],
                    view_history: vec![],
                };
                let _ = store.try_snapshot(&header);
            }
        });
        s.spawn(|| {
            while !done.load(Ordering::Acquire) {
                let mut tx = store.begin();
                tx.foreach("c", |_, _| true);
                let _ = store.commit(tx, |_, _| ());
                let _ = store.execute(DEFAULT_MAX_OCC_ATTEMPTS, |tx| Ok::<_, ()>(tx.get("c", b"n")), |_, _| ());
            }
        });
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Release);
    });
    let total = WRITERS as u64 * INCREMENTS;
    let n = store.read_only().get("c", b"n").unwrap();
    assert_eq!(u64::from_le_bytes(n.try_into().unwrap()), total);
    assert_eq!(order.into_inner().unwrap(), (1..=total).collect::<Vec<_>>());
}

#[test]
fn a_versioned_scan_sees_committed_keys_with_their_versions_and_conflicts_on_map_writes() {
    let store = std::sync::Arc::new(Store::new());
    for (k, v) in [(b"a", b"1"), (b"b", b"2")] {
        let mut tx = Tx::shared(store.clone());
        tx.put("m", k, v);
        store.commit(tx, |_, _| ()).unwrap();
    }
    let mut tx = Tx::shared(store.clone());
    tx.put("m", b"c", b"own");
    let mut seen = vec![];
    tx.foreach_committed_versioned("m", |version, k, v| {
        seen.push((version, k.to_vec(), v.to_vec()));
        true
    });
    assert_eq!(
        seen,
        vec![(1, b"a".to_vec(), b"1".to_vec()), (2, b"b".to_vec(), b"2".to_vec())]
    );
    // The scan is a map-level read: a write to the map meanwhile makes the transaction conflict.
    let mut other = Tx::shared(store.clone());
    other.put("m", b"z", b"9");
    store.commit(other, |_, _| ()).unwrap();
    assert!(store.commit(tx, |_, _| ()).is_err());
}
