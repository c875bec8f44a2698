//! The replica scenarios' harness: [`consort_consensus::testing::Cluster`] driven the simple way (every message
//! delivered in order, every persist and snapshot build carried out at once), with the outcomes recorded.
#![allow(dead_code)] // reason: each test binary that includes this module uses a different part of it.

use consort_consensus::testing::{Cluster as Harness, FaultyDisk, Message as Sent};
use consort_consensus::{
    Action, ConsensusError, Event, NodeIdentity, PersistedState, RaftId, Replica, ReplicaConfig, TxId,
};
use consort_kv::CommitOutcome;
use consort_ledger::LedgerSecret;
use std::collections::BTreeMap;

pub fn identities() -> Vec<NodeIdentity> {
    consort_consensus::testing::fixture_identities()
}

pub fn secret() -> LedgerSecret {
    LedgerSecret::from_bytes([9u8; 32])
}

pub type Tamper = Box<dyn FnMut(u64, u64, Vec<u8>) -> Vec<u8>>;

/// The shared harness ([`consort_consensus::testing::Cluster`]) driven the simple way: every message delivered in
/// order, every persist and snapshot build carried out at once, and the outcomes recorded.
pub struct Cluster {
    pub h: Harness,
    pub halted: Vec<(u64, ConsensusError)>,
    pub dropped: Vec<(u64, ConsensusError)>,
    pub installed: Vec<(u64, TxId)>,
    /// Periodic snapshots reported committed: (replica, seqno, evidence, encoded snapshot).
    pub snapshots: Vec<(u64, u64, u64, Vec<u8>)>,
    /// Snapshot builds handed out: (replica, seqno).
    pub builds: Vec<(u64, u64)>,
    pub tamper: Option<Tamper>,
}

pub fn config(id: u64, snapshot_interval: u64, on_backups: bool) -> ReplicaConfig {
    let mut cfg = ReplicaConfig::new(RaftId(id));
    cfg.signature_interval_tx = 3;
    cfg.snapshot_interval_tx = snapshot_interval;
    cfg.snapshots_on_backups = on_backups;
    cfg
}

impl Cluster {
    pub fn new(n: u64, trusted_for: impl Fn(u64) -> BTreeMap<RaftId, String>) -> Self {
        Self::with_snapshots(n, trusted_for, 0)
    }

    pub fn with_snapshots(
        n: u64,
        trusted_for: impl Fn(u64) -> BTreeMap<RaftId, String>,
        snapshot_interval: u64,
    ) -> Self {
        Self::with_snapshot_builders(n, trusted_for, snapshot_interval, true)
    }

    /// `on_backups`: whether backups build the primary's periodic snapshots too.
    pub fn with_snapshot_builders(
        n: u64,
        trusted_for: impl Fn(u64) -> BTreeMap<RaftId, String>,
        snapshot_interval: u64,
        on_backups: bool,
    ) -> Self {
        let ids = identities();
        let mut h = Harness::new(secret());
        for id in 1..=n {
            let persisted = PersistedState {
                voters: (1..=n).collect(),
                recovery: None,
                ..Default::default()
            };
            let cfg = config(id, snapshot_interval, on_backups);
            let i = h.add_node(cfg, ids[id as usize - 1].clone(), trusted_for(id), persisted);
            h.start(i).expect("open");
        }
        Cluster {
            h,
            halted: Vec::new(),
            dropped: Vec::new(),
            installed: Vec::new(),
            snapshots: Vec::new(),
            builds: Vec::new(),
            tamper: None,
        }
    }

    pub fn replica(&self, i: usize) -> &Replica<FaultyDisk> {
        self.h.replica(i)
    }

    pub fn replicas(&self) -> Vec<&Replica<FaultyDisk>> {
        (0..self.h.nodes.len()).map(|i| self.h.replica(i)).collect()
    }

    /// Adds replica `id` (the next one), trusting every fixture node, and starts it over `disk` from `persisted`.
    pub fn add(&mut self, id: u64, disk: FaultyDisk, persisted: PersistedState) {
        let identity = identities()[id as usize - 1].clone();
        let i = self
            .h
            .add_node(config(id, 0, false), identity, all_trusted(id), persisted.clone());
        self.restart(i, disk, persisted);
    }

    /// Restarts node `i` over `disk` from `persisted` (as after moving to a new disk), with default snapshot
    /// settings.
    pub fn restart(&mut self, i: usize, disk: FaultyDisk, persisted: PersistedState) {
        let n = &mut self.h.nodes[i];
        n.config = config(n.id, 0, false);
        n.disk = disk;
        n.persisted = persisted;
        self.h.start(i).expect("open");
    }

    pub fn record(&mut self, i: usize, actions: &[Action]) {
        let id = self.h.nodes[i].id;
        for a in actions {
            match a {
                Action::Halted { error } => self.halted.push((id, error.clone())),
                Action::Dropped { error, .. } => self.dropped.push((id, error.clone())),
                Action::SnapshotInstalled(tx) => self.installed.push((id, *tx)),
                Action::SnapshotCommitted {
                    seqno,
                    evidence,
                    snapshot,
                } => self.snapshots.push((
                    id,
                    seqno.get(),
                    evidence.get(),
                    consort_consensus::encode_snapshot(snapshot),
                )),
                _ => {}
            }
        }
    }

    /// Steps replica `i`, then carries out at once the snapshot builds and persists it hands out (and those that
    /// follow from them); returns the actions of `event` itself.
    pub fn step(&mut self, i: usize, event: Event) -> Vec<Action> {
        let first = self.h.step(i, event);
        self.record(i, &first);
        loop {
            let id = self.h.nodes[i].id;
            if !self.h.nodes[i].builds.is_empty() {
                // Snapshot builds run at once here (tests/sim.rs interleaves them with everything else).
                for b in self.h.nodes[i].builds.split_off(0) {
                    self.builds.push((id, b.seqno()));
                    let actions = self.h.step(i, Event::SnapshotBuilt(b.run()));
                    self.record(i, &actions);
                }
            } else if !self.h.nodes[i].pending.is_empty() {
                let actions = self.h.persist(i, 1).expect("sync");
                self.record(i, &actions);
            } else {
                return first;
            }
        }
    }

    pub fn deliver_all(&mut self) {
        for _ in 0..10_000 {
            if self.h.net.is_empty() {
                return;
            }
            let Sent { from, to, mut bytes } = self.h.net.remove(0);
            if let Some(t) = self.tamper.as_mut() {
                bytes = t(from, to, bytes);
            }
            self.step(
                to as usize - 1,
                Event::Receive {
                    from: RaftId(from),
                    message: bytes,
                },
            );
        }
    }

    pub fn settle(&mut self, ticks: usize) {
        for _ in 0..ticks {
            for i in 0..self.h.nodes.len() {
                self.step(i, Event::Tick);
            }
            self.deliver_all();
        }
    }

    pub fn elect(&mut self, i: usize) {
        self.step(i, Event::Campaign);
        self.deliver_all();
        assert!(self.replica(i).is_leader(), "replica {} did not win", i + 1);
        self.deliver_all();
    }

    /// Writes each key from replica `i`, delivering everything and ticking once after each write.
    pub fn write_each(&mut self, i: usize, keys: std::ops::Range<u64>) {
        for k in keys {
            self.write(i, k);
            self.deliver_all();
            self.settle(1);
        }
    }

    pub fn write(&mut self, i: usize, key: u64) -> Vec<Action> {
        let store = self.replica(i).store().clone();
        let mut tx = store.begin();
        tx.put("public:records", &key.to_le_bytes(), b"public");
        tx.put("records", &key.to_le_bytes(), b"private");
        let (version, write_set) = match store.commit(tx, |v, ws| (v, ws.clone())) {
            Ok(CommitOutcome::Committed { result, .. }) => result,
            other => panic!("{other:?}"),
        };
        self.step(
            i,
            Event::Propose {
                version,
                write_set,
                claims_digest: None,
            },
        )
    }
}

/// Commits `puts` on replica `i`'s store, proposes the write set, delivers everything and ticks once; returns the
/// version.
pub fn propose(c: &mut Cluster, i: usize, puts: &[(&str, Vec<u8>, Vec<u8>)]) -> u64 {
    let store = c.replica(i).store().clone();
    let mut tx = store.begin();
    for (map, k, v) in puts {
        tx.put(map, k, v);
    }
    let (version, write_set) = match store.commit(tx, |v, ws| (v, ws.clone())) {
        Ok(CommitOutcome::Committed { result, .. }) => result,
        other => panic!("{other:?}"),
    };
    c.step(
        i,
        Event::Propose {
            version,
            write_set,
            claims_digest: None,
        },
    );
    c.deliver_all();
    c.settle(1);
    version
}

pub fn all_trusted(_: u64) -> BTreeMap<RaftId, String> {
    identities()
        .into_iter()
        .enumerate()
        .map(|(i, id)| (RaftId(i as u64 + 1), id.cert_pem))
        .collect()
}

pub fn proposed(actions: &[Action]) -> TxId {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Proposed(tx) => Some(*tx),
            _ => None,
        })
        .expect("proposed")
}
