//! Recovery replay over a multi-chunk ledger: a replica reopened on its disk equals the original (store digest,
//! Merkle root, commit point, statuses), with or without a second core for decoding, and a damaged entry in a
//! committed chunk still stops the replay, even in a chunk older than the snapshot the replica starts from (which
//! replay does not read).

use consort_consensus::eraftpb::HardState;
use consort_consensus::testing::{FaultyDisk, ScopedThreadOffload};
use consort_consensus::{
    Action, ConsensusError, Event, NodeIdentity, Offload, PersistedState, RaftId, Replica, ReplicaConfig, Seqno,
    TxStatus,
};
use consort_kv::CommitOutcome;
use consort_ledger::{parse_chunk_name, LedgerSecret, LedgerStorage};
use std::collections::BTreeMap;

fn identity() -> NodeIdentity {
    consort_consensus::testing::fixture_identities().remove(0)
}

fn config() -> ReplicaConfig {
    let mut cfg = ReplicaConfig::new(RaftId(1));
    cfg.signature_interval_tx = 7;
    cfg.chunk_threshold_bytes = 4096;
    cfg
}

fn open(disk: FaultyDisk, hard_state: Option<HardState>, offload: Option<&dyn Offload>) -> Replica<FaultyDisk> {
    let id = identity();
    let trusted = BTreeMap::from([(RaftId(1), id.cert_pem.clone())]);
    let persisted = PersistedState {
        hard_state,
        snapshot: None,
        voters: vec![1],
        recovery: None,
    };
    let secret = LedgerSecret::from_bytes([5u8; 32]);
    Replica::open_with_offload(config(), id, trusted, secret, disk, persisted, offload)
        .unwrap_or_else(|e| panic!("open: {e}"))
}

/// One voter driven like the node: every persist is carried out at once, keeping the latest hard state.
struct Node {
    replica: Replica<FaultyDisk>,
    hard_state: Option<HardState>,
}

impl Node {
    fn step(&mut self, event: Event) {
        let mut work = vec![event];
        while let Some(event) = work.pop() {
            for a in self.replica.step(event) {
                match a {
                    Action::Persist { number, hard_state, .. } => {
                        self.replica.sync_ledger().expect("sync");
                        if hard_state.is_some() {
                            self.hard_state = hard_state;
                        }
                        work.push(Event::Persisted { number });
                    }
                    Action::Halted { error } => panic!("halted: {error}"),
                    Action::ProposalRejected { version, error } => panic!("{version} rejected: {error}"),
                    _ => {}
                }
            }
        }
    }

    fn write(&mut self, i: u64) {
        let store = self.replica.store().clone();
        let mut tx = store.begin();
        tx.put("records", &i.to_le_bytes(), format!("message {i}").as_bytes());
        tx.put("public:records", &(i % 10).to_le_bytes(), b"public");
        if i.is_multiple_of(5) {
            tx.remove("records", &(i - 3).to_le_bytes());
        }
        let (version, write_set) = match store.commit(tx, |v, ws| (v, ws.clone())) {
            Ok(CommitOutcome::Committed { result, .. }) => result,
            other => panic!("{other:?}"),
        };
        self.step(Event::Propose {
            version,
            write_set,
            claims_digest: None,
        });
    }
}

/// A ledger of several chunks whose last entries are not covered by a signature yet.
fn build() -> (Node, FaultyDisk) {
    let disk = FaultyDisk::new();
    let mut node = Node {
        replica: open(disk.clone(), None, None),
        hard_state: None,
    };
    node.step(Event::Campaign);
    for i in 10..300 {
        node.write(i);
    }
    for _ in 0..10 {
        node.step(Event::Tick);
    }
    // An uncommitted tail: no signature after these yet.
    for i in 300..303 {
        node.write(i);
    }
    let chunks = disk.list().unwrap().iter().filter_map(|n| parse_chunk_name(n)).count();
    assert!(chunks > 5, "the ledger spans {chunks} chunks");
    (node, disk)
}

#[test]
fn a_reopened_replica_equals_the_original() {
    let (node, disk) = build();
    let r = &node.replica;
    let commit = r.commit_point();
    assert!(commit.seqno > 250 && commit.seqno < r.last_seqno());
    for offload in [None, Some(&ScopedThreadOffload as &dyn Offload)] {
        let again = open(disk.clone(), node.hard_state.clone(), offload);
        assert_eq!(again.last_seqno(), r.last_seqno());
        assert_eq!(again.commit_point(), commit);
        assert_eq!(again.merkle_root(), r.merkle_root());
        assert_eq!(again.store().digest(), r.store().digest());
        assert_eq!(again.store().current_version(), r.last_seqno());
        // Replay committed the store exactly up to the commit point: the tail can still be rolled back.
        assert_eq!(again.store().committed_version(), commit.seqno);
        for seqno in [Seqno(1), commit.seqno, r.last_seqno()] {
            let tx = consort_consensus::TxId {
                view: r.view_of(seqno).unwrap(),
                seqno,
            };
            assert_eq!(again.tx_status(tx), r.tx_status(tx), "{tx}");
            assert_eq!(again.is_signature(seqno), r.is_signature(seqno));
        }
        assert_eq!(again.tx_status(commit), TxStatus::Committed);
    }
}

/// A copy of `disk` (clones of a FaultyDisk share their files).
fn copy_of(disk: &FaultyDisk) -> FaultyDisk {
    let mut copy = FaultyDisk::new();
    for n in disk.list().unwrap() {
        copy.append(&n, &disk.read(&n).unwrap()).unwrap();
        copy.sync(&n).unwrap();
    }
    copy
}

/// The chaos campaign's round 35: a node restarting from a snapshot ran with a flipped byte in a committed chunk
/// older than the snapshot, because replay starts after the snapshot and never read that chunk. Such a replica must
/// refuse to open, naming an entry of that chunk; the same ledger undamaged opens from the same snapshot.
#[test]
fn a_damaged_entry_in_a_committed_chunk_before_the_snapshot_refuses_the_open() {
    let (node, disk) = build();
    let snapshot = node.replica.snapshot().expect("snapshot");
    let base = node.replica.commit_point().seqno.get();
    let open_from_snapshot = |disk: FaultyDisk| {
        let id = identity();
        let trusted = BTreeMap::from([(RaftId(1), id.cert_pem.clone())]);
        let persisted = PersistedState {
            hard_state: node.hard_state.clone(),
            snapshot: Some(snapshot.clone()),
            voters: vec![1],
            recovery: None,
        };
        let secret = LedgerSecret::from_bytes([5u8; 32]);
        Replica::open(config(), id, trusted, secret, disk, persisted)
    };
    let again = open_from_snapshot(copy_of(&disk)).unwrap_or_else(|e| panic!("undamaged: {e}"));
    assert_eq!(again.base_seqno().get(), base);
    assert_eq!(again.merkle_root(), node.replica.merkle_root());
    let older: Vec<String> = disk
        .list()
        .unwrap()
        .into_iter()
        .filter(|n| parse_chunk_name(n).is_some_and(|c| c.committed && c.end.is_some_and(|e| e < base)))
        .collect();
    assert!(
        older.len() >= 3,
        "committed chunks before the snapshot at {base}: {older:?}"
    );
    for name in [&older[0], &older[older.len() / 2], &older[older.len() - 1]] {
        let range = parse_chunk_name(name).unwrap();
        let bytes = disk.read(name).unwrap();
        for at in [bytes.len() / 3, bytes.len() / 2, 2 * bytes.len() / 3] {
            let mut copy = copy_of(&disk);
            copy.write_at(name, at as u64, &[bytes[at] ^ 0xff]).unwrap();
            match open_from_snapshot(copy) {
                Ok(_) => panic!("byte {at} of {name} flipped, and the replica opened from the snapshot at {base}"),
                Err(ConsensusError::InvalidEntry { seqno, .. }) => assert!(
                    range.start <= seqno && range.end.is_some_and(|e| seqno <= e),
                    "byte {at} of {name}: the entry named, {seqno}, is not in that chunk"
                ),
                Err(e) => assert!(e.to_string().contains(name.as_str()), "byte {at} of {name}: {e}"),
            }
        }
    }
}

#[test]
fn a_damaged_entry_in_a_committed_chunk_stops_the_replay() {
    let (node, disk) = build();
    let name = disk
        .list()
        .unwrap()
        .into_iter()
        .filter(|n| parse_chunk_name(n).is_some_and(|c| c.committed && c.start > 1))
        .min()
        .expect("a committed chunk after the first");
    let bytes = disk.read(&name).unwrap();
    for at in [bytes.len() / 3, bytes.len() / 2] {
        // A copy of the disk (clones of a FaultyDisk share their files).
        let mut copy = FaultyDisk::new();
        for n in disk.list().unwrap() {
            copy.append(&n, &disk.read(&n).unwrap()).unwrap();
            copy.sync(&n).unwrap();
        }
        copy.write_at(&name, at as u64, &[bytes[at] ^ 0x20]).unwrap();
        let id = identity();
        let trusted = BTreeMap::from([(RaftId(1), id.cert_pem.clone())]);
        let persisted = PersistedState {
            hard_state: node.hard_state.clone(),
            snapshot: None,
            voters: vec![1],
            recovery: None,
        };
        let secret = LedgerSecret::from_bytes([5u8; 32]);
        let opened = Replica::open_with_offload(
            config(),
            id,
            trusted,
            secret,
            copy,
            persisted,
            Some(&ScopedThreadOffload),
        );
        assert!(opened.is_err(), "a flipped byte at {at} of {name} went unnoticed");
    }
}

/// Start-up cost of opening from a snapshot over a ledger kept whole (the check of the chunks before the snapshot
/// included): `cargo test --release -p consort-consensus --test replay -- --ignored --nocapture open_cost`.
#[test]
#[ignore = "a measurement, not a check: run it in release"]
fn open_cost_from_a_snapshot_over_a_long_ledger() {
    let disk = FaultyDisk::new();
    let mut cfg = config();
    cfg.signature_interval_tx = 100;
    cfg.chunk_threshold_bytes = 1 << 20;
    let id = identity();
    let trusted = BTreeMap::from([(RaftId(1), id.cert_pem.clone())]);
    let secret = LedgerSecret::from_bytes([5u8; 32]);
    let fresh = PersistedState {
        hard_state: None,
        snapshot: None,
        voters: vec![1],
        recovery: None,
    };
    let replica = Replica::open(
        cfg.clone(),
        id.clone(),
        trusted.clone(),
        secret.clone(),
        disk.clone(),
        fresh,
    )
    .expect("open");
    let mut node = Node {
        replica,
        hard_state: None,
    };
    node.step(Event::Campaign);
    let value = vec![7u8; 1000];
    for i in 0..50_000u64 {
        let store = node.replica.store().clone();
        let mut tx = store.begin();
        tx.put("records", &(i % 1000).to_le_bytes(), &value);
        tx.put("public:records", &(i % 100).to_le_bytes(), b"public");
        let (version, write_set) = match store.commit(tx, |v, ws| (v, ws.clone())) {
            Ok(CommitOutcome::Committed { result, .. }) => result,
            other => panic!("{other:?}"),
        };
        node.step(Event::Propose {
            version,
            write_set,
            claims_digest: None,
        });
        if i % 100 == 0 {
            node.step(Event::Tick);
        }
    }
    for _ in 0..10 {
        node.step(Event::Tick);
    }
    let snapshot = node.replica.snapshot().expect("snapshot");
    // The ledger continues after the snapshot (a ledger that ends at it is what an install left over: cleared).
    for i in 100..105 {
        node.write(i);
    }
    let bytes: usize = disk.list().unwrap().iter().map(|n| disk.read(n).unwrap().len()).sum();
    let persisted = PersistedState {
        hard_state: node.hard_state.clone(),
        snapshot: Some(snapshot),
        voters: vec![1],
        recovery: None,
    };
    for _ in 0..3 {
        let copy = copy_of(&disk);
        let started = std::time::Instant::now();
        let r = Replica::open(
            cfg.clone(),
            id.clone(),
            trusted.clone(),
            secret.clone(),
            copy,
            persisted.clone(),
        )
        .expect("open");
        assert!(r.base_seqno().get() > 50_000 && r.last_seqno() > r.base_seqno());
        println!(
            "open from the snapshot at {} over {} entries ({} MB of chunks): {:?}",
            r.base_seqno(),
            r.last_seqno(),
            bytes / 1_000_000,
            started.elapsed()
        );
    }
}
