//! A backup installing a snapshot from the primary crashes at each step of the install (before the snapshot is
//! durable, after the snapshot file, after the hard state, midway through removing the old ledger chunks, after
//! appending past the snapshot); each time it restarts from what was durable, with every committed entry it had,
//! and catches up with the primary. The steps are the harness's, in the node's order ([`NODE_PERSIST_ORDER`]); a
//! seeded campaign crashes between every two of them, and checks that the campaign fails with the orders that
//! lose a node (the ledger cleared before the snapshot is durable, the hard state before the snapshot).

use consort_consensus::codec::encode_write_set_entry;
use consort_consensus::eraftpb::HardState;
use consort_consensus::testing::{Cluster, FaultyDisk, PersistStep, NODE_PERSIST_ORDER};
use consort_consensus::{Action, Event, PersistedState, RaftId, ReplicaConfig, Seqno, TxId, TxStatus};
use consort_kv::CommitOutcome;
use consort_ledger::{Ledger, LedgerSecret, LedgerStorage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Node 3's index: the backup that falls behind and gets a snapshot.
const BACKUP: usize = 2;

fn config(id: u64) -> ReplicaConfig {
    let mut cfg = ReplicaConfig::new(RaftId(id));
    cfg.signature_interval_tx = 3;
    // Small chunks: each signature closes one, so the old ledger has several to remove.
    cfg.chunk_threshold_bytes = 64;
    cfg
}

fn all_trusted() -> BTreeMap<RaftId, String> {
    consort_consensus::testing::fixture_identities()
        .into_iter()
        .enumerate()
        .map(|(i, id)| (RaftId(i as u64 + 1), id.cert_pem))
        .collect()
}

/// The shared harness, with every persist carried out at once except the held node's snapshot install.
struct T {
    h: Cluster,
    /// The node whose persists wait for the test.
    hold: Option<usize>,
    halted: Vec<String>,
    /// Snapshots installed: (node index, seqno).
    installed: Vec<(usize, u64)>,
}

impl T {
    fn new() -> Self {
        let ids = consort_consensus::testing::fixture_identities();
        let mut h = Cluster::new(LedgerSecret::from_bytes([9u8; 32]));
        for id in 1..=3u64 {
            let persisted = PersistedState {
                voters: vec![1, 2, 3],
                recovery: None,
                ..Default::default()
            };
            let i = h.add_node(config(id), ids[id as usize - 1].clone(), all_trusted(), persisted);
            h.start(i).expect("open");
        }
        T {
            h,
            hold: None,
            halted: Vec::new(),
            installed: Vec::new(),
        }
    }

    fn record(&mut self, i: usize, actions: &[Action]) {
        for a in actions {
            match a {
                Action::Halted { error } => self.halted.push(error.to_string()),
                Action::SnapshotInstalled(tx) => self.installed.push((i, tx.seqno.get())),
                _ => {}
            }
        }
    }

    fn step(&mut self, i: usize, event: Event) -> Vec<Action> {
        let first = self.h.step(i, event);
        self.record(i, &first);
        // The held node's persists are carried out too, up to the first that carries a snapshot.
        while let Some(p) = self.h.nodes[i].pending.front() {
            if self.hold == Some(i) && p.snapshot.is_some() {
                break;
            }
            let actions = self.h.persist(i, 1).expect("sync");
            self.record(i, &actions);
        }
        first
    }

    /// Whether the held node has a persist carrying a snapshot waiting.
    fn snapshot_waiting(&self) -> bool {
        self.hold
            .is_some_and(|i| self.h.nodes[i].pending.iter().any(|p| p.snapshot.is_some()))
    }

    /// Delivers messages in order until none is left or the held node waits with a snapshot to persist.
    fn deliver_all(&mut self) {
        for _ in 0..10_000 {
            if self.h.net.is_empty() || self.snapshot_waiting() {
                return;
            }
            let m = self.h.net.remove(0);
            if self.h.nodes[m.to as usize - 1].replica.is_none() {
                continue;
            }
            self.step(
                m.to as usize - 1,
                Event::Receive {
                    from: RaftId(m.from),
                    message: m.bytes,
                },
            );
        }
    }

    fn settle(&mut self, ticks: usize) {
        for _ in 0..ticks {
            if self.snapshot_waiting() {
                return;
            }
            for i in self.h.alive() {
                self.step(i, Event::Tick);
            }
            self.deliver_all();
        }
    }

    fn elect(&mut self, i: usize) {
        self.step(i, Event::Campaign);
        self.deliver_all();
        assert!(self.h.replica(i).is_leader(), "replica {} did not win", i + 1);
        self.deliver_all();
    }

    fn write(&mut self, i: usize, key: u64) -> TxId {
        let store = self.h.replica(i).store().clone();
        let mut tx = store.begin();
        tx.put("public:records", &key.to_le_bytes(), b"public");
        tx.put("records", &key.to_le_bytes(), b"private");
        let (version, write_set) = match store.commit(tx, |v, ws| (v, ws.clone())) {
            Ok(CommitOutcome::Committed { result, .. }) => result,
            other => panic!("{other:?}"),
        };
        let actions = self.step(
            i,
            Event::Propose {
                version,
                write_set,
                claims_digest: None,
            },
        );
        let tx = actions.iter().find_map(|a| match a {
            Action::Proposed(tx) => Some(*tx),
            _ => None,
        });
        self.deliver_all();
        tx.expect("proposed")
    }

    /// Restarts node `i` from the primary's current snapshot and the ledger after it (as a node moved to a new
    /// disk): its ledger no longer holds the entries before the snapshot, so it brings backups up with it.
    fn restart_from_snapshot_of(&mut self, i: usize, from: usize) -> u64 {
        let r = self.h.replica(from);
        let snapshot = r.snapshot().expect("snapshot");
        let s = r.commit_point().seqno.get();
        let (mut ledger, _) = Ledger::open(FaultyDisk::new(), 64).expect("ledger");
        for seqno in s + 1..=r.last_seqno().get() {
            let bytes = r.ledger().read_entry(seqno).expect("entry");
            ledger
                .append(seqno, &bytes, r.is_signature(Seqno(seqno)))
                .expect("append");
        }
        ledger.flush().expect("flush");
        ledger.settle().expect("settle");
        let hs = HardState {
            term: r.view().get(),
            vote: from as u64 + 1,
            commit: r.raft_commit_index().get(),
            ..Default::default()
        };
        let persisted = PersistedState {
            hard_state: Some(hs),
            snapshot: Some(snapshot),
            voters: vec![1, 2, 3],
            recovery: None,
        };
        self.h.crash(i, |_| 0);
        let n = &mut self.h.nodes[i];
        n.disk = ledger.into_storage();
        n.persisted = persisted;
        self.h.start(i).expect("open from snapshot");
        s
    }
}

/// What the held backup had durable before the install, to compare a restart with.
struct Before {
    last: u64,
    commit: TxId,
    committed: Vec<TxId>,
}

/// Brings the cluster to the point where node 3, whose ledger stopped at the first writes, has just installed a
/// snapshot from the primary (whose ledger starts after it) and the persist carrying it waits. Returns the
/// the installed snapshot's seqno and node 3's state before.
fn up_to_install() -> (T, u64, Before) {
    up_to_install_with(NODE_PERSIST_ORDER, 6, 20)
}

/// [`up_to_install`] with persists carried out in `order`, `early` writes node 3 has and writes up to key
/// `late` it misses.
fn up_to_install_with(order: [PersistStep; 4], early: u64, late: u64) -> (T, u64, Before) {
    let mut t = T::new();
    t.h.persist_order = order;
    t.elect(0);
    let committed: Vec<TxId> = (0..early).map(|k| t.write(0, k)).collect();
    t.settle(5);
    let b = t.h.replica(BACKUP);
    for tx in &committed {
        assert_eq!(b.tx_status(*tx), TxStatus::Committed);
    }
    let before = Before {
        last: b.last_seqno().get(),
        commit: b.commit_point(),
        committed,
    };
    assert!(
        b.ledger().chunk_names().len() >= 2,
        "several chunks: {:?}",
        b.ledger().chunk_names()
    );
    // Node 3 is cut off while the service goes on; then both others restart from a snapshot past its ledger.
    t.h.isolated.insert(BACKUP as u64 + 1);
    for k in early..late {
        t.write(0, k);
    }
    t.settle(5);
    let first = t.restart_from_snapshot_of(0, 0);
    assert!(
        first > before.last,
        "snapshot {first} is past node 3's ledger (ends at {})",
        before.last
    );
    t.restart_from_snapshot_of(1, 0);
    t.elect(0);
    t.hold = Some(BACKUP);
    t.h.isolated.clear();
    for _ in 0..50 {
        if t.snapshot_waiting() {
            break;
        }
        t.settle(1);
    }
    assert!(t.snapshot_waiting(), "node 3 got a snapshot to install");
    assert!(t.halted.is_empty(), "{:?}", t.halted);
    let s = match t.installed.as_slice() {
        [(BACKUP, s)] => *s,
        other => panic!("one install, by node 3: {other:?}"),
    };
    assert!(s >= first);
    (t, s, before)
}

/// Carries out node 3's waiting persists up to and including the one with the snapshot, doing only the steps
/// `upto` allows, as a crash would cut them: 0 nothing, 1 the ledger sync and snapshot file, 2 also the hard
/// state, 3 also the report to the replica (which removes the old chunks).
fn persist_install(t: &mut T, upto: usize) {
    // The harness's steps in the node's order: ledger, snapshot, hard state, report.
    let steps = [0, 2, 3, 4][upto];
    persist_install_steps(t, steps);
}

/// Carries out node 3's waiting persists before the one with the snapshot, then the first `steps` steps of that
/// one (in the harness's order).
fn persist_install_steps(t: &mut T, steps: usize) {
    while t.h.nodes[BACKUP].pending.front().is_some_and(|p| p.snapshot.is_none()) {
        let actions = t.h.persist(BACKUP, 1).expect("sync");
        t.record(BACKUP, &actions);
    }
    let actions = t.h.persist_partly(BACKUP, steps).expect("sync");
    t.record(BACKUP, &actions);
}

/// Restarts node 3 from what is durable, lets it catch up, and checks it has everything committed.
fn restart_and_catch_up(t: &mut T, s: u64, before: &Before, expect_snapshot: bool) {
    t.h.crash(BACKUP, |_| 0);
    let r = match t.h.start(BACKUP) {
        Ok(r) => r,
        Err(e) => panic!("node 3 cannot start after the crash: {e}"),
    };
    if expect_snapshot {
        assert_eq!(r.base_seqno(), s, "restarted from the new snapshot");
        assert!(r.commit_point().seqno >= s);
        let first = r.ledger().first_seqno();
        assert!(
            first.is_none_or(|f| f == s + 1),
            "ledger continues after the snapshot: {first:?}"
        );
    } else {
        // The old state, intact.
        assert_eq!(r.last_seqno(), before.last, "old ledger intact");
        assert_eq!(r.commit_point(), before.commit, "old commit point");
        for tx in &before.committed {
            assert_eq!(r.tx_status(*tx), TxStatus::Committed, "{tx} still committed");
        }
    }
    t.hold = None;
    t.settle(30);
    let late = t.write(0, 100);
    t.settle(10);
    let (p, b) = (t.h.replica(0), t.h.replica(BACKUP));
    assert_eq!(b.tx_status(late), TxStatus::Committed);
    assert_eq!(b.commit_point(), p.commit_point());
    assert_eq!(b.store().digest(), p.store().digest());
    assert!(t.halted.is_empty(), "{:?}", t.halted);
    // And it restarts again from where it caught up.
    let commit = b.commit_point();
    t.h.crash(BACKUP, |_| 0);
    let r = t.h.start(BACKUP).expect("second restart");
    assert_eq!(r.commit_point(), commit);
}

#[test]
fn crash_before_the_snapshot_is_durable_keeps_the_old_ledger() {
    let (mut t, s, before) = up_to_install();
    persist_install(&mut t, 0);
    restart_and_catch_up(&mut t, s, &before, false);
}

#[test]
fn crash_after_the_snapshot_file_before_the_hard_state() {
    let (mut t, s, before) = up_to_install();
    persist_install(&mut t, 1);
    restart_and_catch_up(&mut t, s, &before, true);
}

#[test]
fn crash_after_the_hard_state_before_the_old_chunks_are_removed() {
    let (mut t, s, before) = up_to_install();
    persist_install(&mut t, 2);
    restart_and_catch_up(&mut t, s, &before, true);
}

#[test]
fn crash_midway_through_removing_the_old_chunks() {
    let (mut t, s, before) = up_to_install();
    persist_install(&mut t, 2);
    // The removal goes last chunk first: the crash leaves the first ones.
    let mut disk = t.h.nodes[BACKUP].disk.clone();
    let names = t.h.replica(BACKUP).ledger().chunk_names();
    assert!(names.len() >= 2, "{names:?}");
    disk.remove(names.last().expect("a chunk")).expect("remove");
    restart_and_catch_up(&mut t, s, &before, true);
}

#[test]
fn crash_after_the_install_and_appends_past_the_snapshot() {
    let (mut t, s, before) = up_to_install();
    persist_install(&mut t, 3);
    assert_eq!(
        t.h.replica(BACKUP).ledger().first_seqno(),
        None,
        "old chunks removed once durable"
    );
    t.hold = None;
    t.write(0, 50);
    t.settle(5);
    assert_eq!(t.h.replica(BACKUP).ledger().first_seqno(), Some(s + 1));
    restart_and_catch_up(&mut t, s, &before, true);
}

/// The install itself, before anything is durable, leaves the old chunks on disk.
#[test]
fn installing_removes_nothing_before_the_snapshot_is_durable() {
    let (t, _, before) = up_to_install();
    let b = t.h.replica(BACKUP);
    let on_disk = t.h.nodes[BACKUP].disk.list().expect("list");
    for name in b.ledger().chunk_names() {
        assert!(on_disk.contains(&name), "{name} still on disk: {on_disk:?}");
    }
    assert_eq!(b.ledger().last_seqno(), before.last);
}

/// The snapshot replaced an uncommitted suffix of another view that went past its seqno: after a crash before the
/// old chunks were removed, that suffix is not replayed on top of the snapshot; the chunks go and the ledger
/// continues after the snapshot.
#[test]
fn a_leftover_suffix_of_another_view_past_the_snapshot_is_dropped() {
    let (mut t, s, before) = up_to_install();
    persist_install(&mut t, 1);
    t.h.crash(BACKUP, |_| 0);
    // Node 3's old ledger, extended with well-formed entries of an old view up to past the snapshot.
    let view = t.h.replica(0).view_of(Seqno(s)).expect("view of the snapshot");
    let old_view = before.commit.view;
    assert_ne!(view, old_view, "the snapshot is from a later view");
    let secret = LedgerSecret::from_bytes([9u8; 32]);
    let mut ledger = Ledger::load(t.h.nodes[BACKUP].disk.clone(), 64).expect("load");
    for seqno in before.last + 1..=s + 2 {
        let mut ws = consort_kv::WriteSet::default();
        ws.put("public:records", &seqno.to_le_bytes(), b"other view");
        let bytes = encode_write_set_entry(&secret, old_view.get(), seqno, &ws).expect("entry");
        ledger.append(seqno, &bytes, false).expect("append");
    }
    ledger.settle().expect("settle");
    assert_eq!(ledger.last_seqno(), s + 2);
    drop(ledger);
    restart_and_catch_up(&mut t, s, &before, true);
}

/// Crashes node 3 (losing a seeded part of what it had not synced), restarts it, and checks what it comes back
/// with: it starts, every transaction it had committed is still committed, and its commit point did not go back;
/// then it catches up with the primary and commits a new write. Returns what broke instead of panicking, so that
/// a campaign can count failures.
fn crash_restart_check(t: &mut T, rng: &mut ChaCha8Rng, before: &Before) -> Result<(), String> {
    t.h.crash(BACKUP, |len| if len == 0 { 0 } else { rng.gen_range(0..=len) });
    let r =
        t.h.start(BACKUP)
            .map_err(|e| format!("node 3 cannot start after the crash: {e}"))?;
    if r.commit_point().seqno < before.commit.seqno {
        return Err(format!(
            "commit point went back from {} to {}",
            before.commit,
            r.commit_point()
        ));
    }
    if let Some(tx) = before
        .committed
        .iter()
        .find(|tx| r.tx_status(**tx) != TxStatus::Committed)
    {
        return Err(format!("{tx} is {:?} after the restart", r.tx_status(*tx)));
    }
    t.hold = None;
    t.settle(30);
    let late = t.write(0, 1000);
    t.settle(10);
    let (p, b) = (t.h.replica(0), t.h.replica(BACKUP));
    if b.tx_status(late) != TxStatus::Committed || b.store().digest() != p.store().digest() {
        return Err(format!(
            "node 3 did not catch up: {} vs {}",
            b.commit_point(),
            p.commit_point()
        ));
    }
    if !t.halted.is_empty() {
        return Err(format!("halted: {:?}", t.halted));
    }
    Ok(())
}

/// For each seed (how many writes node 3 has and misses, what a crash tears) and each crash point of the persist
/// that carries the installed snapshot (after 0, 1, ... all of its steps in `order`): the failures, as
/// `(seed, steps, what broke)`.
fn install_crash_campaign(order: [PersistStep; 4], seeds: u64) -> Vec<(u64, usize, String)> {
    let mut failures = Vec::new();
    for seed in 0..seeds {
        for steps in 0..=order.len() {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let early = rng.gen_range(6..=9);
            let late = early + rng.gen_range(8..=16);
            let (mut t, _, before) = up_to_install_with(order, early, late);
            persist_install_steps(&mut t, steps);
            if let Err(e) = crash_restart_check(&mut t, &mut rng, &before) {
                failures.push((seed, steps, e));
            }
        }
    }
    failures
}

const CAMPAIGN_SEEDS: u64 = 12;

/// The node's order survives a crash between any two steps of an install's persist, over many seeds.
#[test]
fn a_crash_between_any_two_persist_steps_of_an_install_loses_nothing() {
    let failures = install_crash_campaign(NODE_PERSIST_ORDER, CAMPAIGN_SEEDS);
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The snapshot-install bug this simulation must catch: the old ledger cleared before the snapshot file is durable
/// (here: the persist reported, which clears it, before the snapshot is stored). A crash in between leaves a node
/// with neither, which cannot start.
#[test]
fn the_campaign_catches_the_ledger_cleared_before_the_snapshot_is_durable() {
    let order = [
        PersistStep::Ledger,
        PersistStep::Report,
        PersistStep::Snapshot,
        PersistStep::HardState,
    ];
    let failures = install_crash_campaign(order, CAMPAIGN_SEEDS);
    assert!(
        failures
            .iter()
            .any(|(_, steps, e)| *steps == 2 && e.contains("cannot start")),
        "{failures:#?}"
    );
}

/// The hard state of an install commits the snapshot's seqno: stored before the snapshot, a crash in between
/// leaves a hard state committing past the old ledger.
#[test]
fn the_campaign_catches_the_hard_state_before_the_snapshot() {
    let order = [
        PersistStep::Ledger,
        PersistStep::HardState,
        PersistStep::Snapshot,
        PersistStep::Report,
    ];
    let failures = install_crash_campaign(order, CAMPAIGN_SEEDS);
    assert!(
        failures
            .iter()
            .any(|(_, steps, e)| *steps == 2 && e.contains("cannot start")),
        "{failures:#?}"
    );
}
