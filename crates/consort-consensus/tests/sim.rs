//! Deterministic simulation of N replicas (consensus + kv + ledger on a faulty in-memory disk) on one thread:
//! a seeded network that drops, delays, reorders and duplicates messages, partitions, crash-restarts that lose
//! unsynced data (half of them between two steps of a persist, which the harness carries out in the node's order), a joiner that starts from a snapshot as a learner and is promoted, and clients writing to the
//! primary. Safety invariants are checked after every step; liveness once the faults stop.
//!
//! Replay one seed: `CONSORT_SIM_SEED=1234 CONSORT_SIM_NODES=3 cargo test -p consort-consensus --test sim -- replay`
//! More seeds: `CONSORT_SIM_SEEDS=10000 cargo test -p consort-consensus --test sim`.

use consort_consensus::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2};
use consort_consensus::testing::{Cluster, Delivery};
use consort_consensus::{
    Action, ConsensusError, Event, NodeIdentity, PersistedState, RaftId, ReplicaConfig, Seqno, TxId, TxStatus, View,
};
use consort_crypto::sha256;
use consort_kv::CommitOutcome;
use consort_ledger::LedgerSecret;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::OnceLock;

const CHAOS_STEPS: usize = 700;
const CALM_ROUNDS: usize = 120;

/// Fixed node identities (P-256 keys and self-signed certificates, generated once by
/// `cargo run -p consort-consensus --example sim_identities`),
/// so that every run of a seed produces the same bytes, message sizes and schedule.
fn identities() -> &'static Vec<NodeIdentity> {
    static IDS: OnceLock<Vec<NodeIdentity>> = OnceLock::new();
    IDS.get_or_init(consort_consensus::testing::fixture_identities)
}

fn trusted() -> BTreeMap<RaftId, String> {
    identities()
        .iter()
        .enumerate()
        .map(|(i, id)| (RaftId(i as u64 + 1), id.cert_pem.clone()))
        .collect()
}

fn secret() -> LedgerSecret {
    LedgerSecret::from_bytes([7u8; 32])
}

fn config(id: u64, seed: u64) -> ReplicaConfig {
    let mut c = ReplicaConfig::new(RaftId(id));
    c.random_seed = seed.wrapping_mul(1000).wrapping_add(id);
    c.election_ticks = 8;
    c.heartbeat_ticks = 2;
    c.signature_interval_tx = 4;
    c.signature_interval_ticks = 3;
    c.chunk_threshold_bytes = 4096;
    c.snapshot_interval_tx = 10;
    // Half the seeds have backups build (and check) the primary's snapshots too.
    c.snapshots_on_backups = seed.is_multiple_of(2);
    c.max_append_bytes = 16 * 1024;
    c
}

/// What the simulator checks about each node across its restarts (the harness holds the node itself).
#[derive(Default)]
struct Watch {
    /// Commit point seen since the last restart (must not go backwards while alive).
    seen_commit: Seqno,
    /// Committed entries already checked against the global record.
    checked: Seqno,
    /// Whether the node was ever started (the joiner is not, until it gets a snapshot).
    started: bool,
}

/// Whether a simulation has a fifth (or fourth) node join as a learner and get promoted.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Joiner {
    With,
    Without,
}

struct Sim {
    rng: ChaCha8Rng,
    cluster: Cluster,
    watch: Vec<Watch>,
    leaders: BTreeMap<View, u64>,
    committed: BTreeMap<u64, [u8; 32]>,
    final_status: BTreeMap<TxId, TxStatus>,
    /// Digest of the committed periodic snapshot at each seqno, as first reported.
    snapshots: BTreeMap<Seqno, [u8; 32]>,
    proposals: Vec<TxId>,
    next_key: u64,
    joiner: Option<u64>,
    joiner_added_at: Option<TxId>,
    joiner_promoted: bool,
    log: Vec<String>,
}

fn fail(msg: String) -> ! {
    panic!("{msg}")
}

impl Sim {
    fn new(seed: u64, voters: usize, joiner: Joiner) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(seed);
        let voter_ids: Vec<u64> = (1..=voters as u64).collect();
        let total = voters + usize::from(joiner == Joiner::With);
        let mut cluster = Cluster::new(secret());
        let mut watch = Vec::new();
        for id in 1..=total as u64 {
            let persisted = PersistedState {
                voters: voter_ids.clone(),
                recovery: None,
                ..Default::default()
            };
            cluster.add_node(
                config(id, seed),
                identities()[id as usize - 1].clone(),
                trusted(),
                persisted,
            );
            watch.push(Watch {
                started: id <= voters as u64,
                ..Default::default()
            });
        }
        let mut sim = Sim {
            rng,
            cluster,
            watch,
            leaders: BTreeMap::new(),
            committed: BTreeMap::new(),
            final_status: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            proposals: Vec::new(),
            next_key: 0,
            joiner: (joiner == Joiner::With).then_some(total as u64),
            joiner_added_at: None,
            joiner_promoted: false,
            log: Vec::new(),
        };
        for i in 0..voters {
            sim.start(i);
        }
        sim
    }

    fn start(&mut self, i: usize) {
        match self.cluster.start(i) {
            Ok(r) => {
                self.watch[i].seen_commit = r.commit_point().seqno;
                self.watch[i].checked = r.base_seqno();
            }
            Err(e) => fail(format!("node {} failed to restart: {e}", i + 1)),
        }
    }

    fn crash(&mut self, i: usize) {
        // Half the crashes fall inside a persist, after some of its steps (ledger, snapshot, hard state, report).
        if !self.cluster.nodes[i].pending.is_empty() && self.rng.gen_bool(0.5) {
            let steps = self.rng.gen_range(0..self.cluster.persist_order.len());
            match self.cluster.persist_partly(i, steps) {
                Ok(actions) => self.handle(i, actions),
                Err(e) => fail(format!("sync: {e}")),
            }
            self.log.push(format!("{} persisted {steps} steps of a persist", i + 1));
        }
        let rng = &mut self.rng;
        self.cluster.crash(i, |len| {
            if len == 0 || rng.gen_bool(0.5) {
                0
            } else {
                rng.gen_range(0..=len)
            }
        });
        self.log.push(format!("crash {}", i + 1));
    }

    fn step_node(&mut self, i: usize, event: Event) {
        let actions = self.cluster.step(i, event);
        self.handle(i, actions);
    }

    /// The actions the harness did not route (messages, persists and builds it keeps for later).
    fn handle(&mut self, i: usize, actions: Vec<Action>) {
        let id = self.cluster.nodes[i].id;
        for a in actions {
            match a {
                Action::Halted { error } => fail(format!("node {id} halted: {error}")),
                Action::Dropped {
                    error: ConsensusError::Raft(_),
                    ..
                } => {}
                Action::Dropped { from, error } => fail(format!("node {id} dropped input from {from:?}: {error}")),
                Action::Proposed(tx) => self.log.push(format!("{id} proposed {tx}")),
                Action::RoleChanged { role, view, .. } => self.log.push(format!("{id} {role:?} in view {view}")),
                Action::RolledBack { to } => self.log.push(format!("{id} rolled back to {to}")),
                Action::Committed(tx) => self.log.push(format!("{id} committed {tx}")),
                Action::SnapshotInstalled(tx) => self.log.push(format!("{id} installed snapshot {tx}")),
                Action::SnapshotCommitted { seqno, snapshot, .. } => {
                    let h = sha256(&consort_consensus::encode_snapshot(&snapshot));
                    if self.snapshots.insert(seqno, h).is_some_and(|p| p != h) {
                        fail(format!(
                            "node {id}: committed snapshot at {seqno} differs from another replica's"
                        ));
                    }
                    self.log.push(format!("{id} snapshot at {seqno} committed"));
                }
                Action::ConfChanged { seqno, conf_state } => self
                    .log
                    .push(format!("{id} conf change at {seqno}: {:?}", conf_state.voters)),
                Action::Applied { .. } | Action::ProposalRejected { .. } => {}
                Action::Send { .. } | Action::Persist { .. } | Action::BuildSnapshot(_) => {}
            }
        }
    }

    /// Carries out the oldest `count` pending persists of node `i`.
    fn persist(&mut self, i: usize, count: usize) {
        match self.cluster.persist(i, count) {
            Ok(actions) => self.handle(i, actions),
            Err(e) => fail(format!("sync: {e}")),
        }
    }

    /// Finishes node `i`'s `k`th snapshot build and reports it.
    fn finish_build(&mut self, i: usize, k: usize) {
        let (seqno, actions) = self.cluster.finish_build(i, k);
        self.log.push(format!("{} built snapshot at {seqno}", i + 1));
        self.handle(i, actions);
    }

    fn deliver(&mut self, k: usize, delivery: Delivery) {
        if let Some((i, actions)) = self.cluster.deliver(k, delivery) {
            self.handle(i, actions);
        }
    }

    fn leader(&self) -> Option<usize> {
        let mut best: Option<(View, usize)> = None;
        for (i, n) in self.cluster.nodes.iter().enumerate() {
            if let Some(r) = n
                .replica
                .as_ref()
                .filter(|r| r.is_leader() && !self.cluster.isolated.contains(&n.id))
            {
                if best.is_none_or(|(v, _)| r.view() > v) {
                    best = Some((r.view(), i));
                }
            }
        }
        best.map(|(_, i)| i)
    }

    fn propose(&mut self, i: usize) {
        let key = self.next_key;
        self.next_key += 1;
        let Some(r) = self.cluster.nodes[i].replica.as_ref() else {
            return;
        };
        let store = r.store().clone();
        let mut tx = store.begin();
        tx.put("public:records", &key.to_le_bytes(), format!("public {key}").as_bytes());
        tx.put("records", &key.to_le_bytes(), format!("private {key}").as_bytes());
        let (version, ws) = match store.commit(tx, |v, ws| (v, ws.clone())) {
            Ok(CommitOutcome::Committed { result, .. }) => result,
            other => fail(format!("local commit failed: {other:?}")),
        };
        let actions = self.cluster.step(
            i,
            Event::Propose {
                version,
                write_set: ws,
                claims_digest: None,
            },
        );
        for a in &actions {
            if let Action::Proposed(tx) = a {
                self.proposals.push(*tx);
            }
        }
        self.handle(i, actions);
    }

    fn conf_change(&mut self, i: usize, ty: ConfChangeType, node: u64) -> Option<TxId> {
        let mut cc = ConfChangeV2::default();
        let mut single = ConfChangeSingle::default();
        single.set_change_type(ty);
        single.node_id = node;
        cc.mut_changes().push(single);
        self.cluster.nodes[i].replica.as_ref()?;
        let actions = self.cluster.step(i, Event::ProposeConfChange { change: cc });
        let at = actions.iter().find_map(|a| match a {
            Action::Proposed(tx) => Some(*tx),
            _ => None,
        });
        self.handle(i, actions);
        at
    }

    /// The joiner: added as a learner, started from a snapshot once that is committed, promoted once caught up.
    fn drive_joiner(&mut self) {
        let Some(jid) = self.joiner else { return };
        let Some(l) = self.leader() else { return };
        let j = (jid - 1) as usize;
        let r = self.cluster.replica(l);
        let commit = r.commit_point().seqno;
        match self.joiner_added_at {
            None if commit > 0 => {
                self.joiner_added_at = self.conf_change(l, ConfChangeType::AddLearnerNode, jid);
            }
            Some(at) if !self.watch[j].started => match r.tx_status(at) {
                TxStatus::Committed => {
                    let snapshot = r.snapshot().unwrap_or_else(|e| fail(format!("snapshot: {e}")));
                    self.cluster.nodes[j].persisted.snapshot = Some(snapshot);
                    self.watch[j].started = true;
                    self.log.push(format!("start joiner {jid} from a snapshot at {commit}"));
                    self.start(j);
                }
                // The change was lost in a leader change: propose it again.
                TxStatus::Invalid => self.joiner_added_at = None,
                TxStatus::Pending | TxStatus::Unknown => {}
            },
            Some(_) if !self.joiner_promoted => {
                let learner = r.conf_state().learners.contains(&jid);
                if learner && r.matched(RaftId(jid)).is_some_and(|m| m >= commit) {
                    if self.conf_change(l, ConfChangeType::AddNode, jid).is_some() {
                        self.joiner_promoted = true;
                    }
                } else if r.conf_state().voters.contains(&jid) {
                    self.joiner_promoted = true;
                }
            }
            _ => {}
        }
    }

    fn check(&mut self) {
        for (n, w) in self.cluster.nodes.iter().zip(self.watch.iter_mut()) {
            let Some(r) = n.replica.as_ref() else { continue };
            let id = n.id;
            if r.is_leader() {
                if let Some(other) = self.leaders.insert(r.view(), id).filter(|&o| o != id) {
                    fail(format!("two leaders in view {}: {other} and {id}", r.view()));
                }
            }
            let c = r.commit_point();
            if c.seqno < w.seen_commit {
                fail(format!(
                    "node {id}: commit point went back from {} to {}",
                    w.seen_commit, c.seqno
                ));
            }
            w.seen_commit = c.seqno;
            if r.snapshot_mismatches() > 0 {
                fail(format!(
                    "node {id}: rebuilt a snapshot with a digest other than the evidence's"
                ));
            }
            if c.seqno > 0 && !r.is_signature(c.seqno) {
                fail(format!("node {id}: commit point {c} is not a signature transaction"));
            }
            if r.store().committed_version() != c.seqno {
                fail(format!(
                    "node {id}: store committed {} != commit point {c}",
                    r.store().committed_version()
                ));
            }
            if r.raft_commit_index() < c.seqno {
                fail(format!("node {id}: commit point {c} past raft's commit index"));
            }
            for seqno in w.checked.max(r.base_seqno()).get() + 1..=c.seqno.get() {
                let bytes = r
                    .ledger()
                    .read_entry(seqno)
                    .unwrap_or_else(|e| fail(format!("node {id} read {seqno}: {e}")));
                let h = sha256(&bytes);
                if let Some(prev) = self.committed.insert(seqno, h).filter(|p| *p != h) {
                    let _ = prev;
                    fail(format!(
                        "node {id}: committed entry {seqno} differs from another replica's"
                    ));
                }
            }
            w.checked = w.checked.max(c.seqno);
            for tx in &self.proposals {
                let st = r.tx_status(*tx);
                if matches!(st, TxStatus::Committed | TxStatus::Invalid) {
                    if let Some(prev) = self.final_status.insert(*tx, st).filter(|p| *p != st) {
                        fail(format!("node {id} says {tx} is {st:?}, earlier {prev:?}"));
                    }
                }
            }
        }
    }

    fn alive(&self) -> Vec<usize> {
        self.cluster.alive()
    }

    fn chaos(&mut self, steps: usize) {
        let voters = self.cluster.nodes.len() - usize::from(self.joiner.is_some());
        for _ in 0..steps {
            let roll = self.rng.gen_range(0..100);
            match roll {
                0..=34 => {
                    for _ in 0..self.rng.gen_range(1..=4) {
                        if self.cluster.net.is_empty() {
                            break;
                        }
                        let k = self.rng.gen_range(0..self.cluster.net.len());
                        match self.rng.gen_range(0..100) {
                            0..=4 => {
                                self.cluster.net.swap_remove(k);
                            }
                            5..=7 => self.deliver(k, Delivery::Duplicate),
                            _ => self.deliver(k, Delivery::Take),
                        }
                    }
                }
                35..=54 => {
                    for i in self.alive() {
                        self.step_node(i, Event::Tick);
                    }
                    if self.rng.gen_bool(0.3) {
                        self.drive_joiner();
                    }
                }
                55..=67 => {
                    let alive = self.alive();
                    if !alive.is_empty() {
                        let i = alive[self.rng.gen_range(0..alive.len())];
                        let count = self.rng.gen_range(1..=3);
                        self.persist(i, count);
                    }
                }
                68..=71 => {
                    let building: Vec<usize> = self
                        .alive()
                        .into_iter()
                        .filter(|&i| !self.cluster.nodes[i].builds.is_empty())
                        .collect();
                    if !building.is_empty() {
                        let i = building[self.rng.gen_range(0..building.len())];
                        let k = self.rng.gen_range(0..self.cluster.nodes[i].builds.len());
                        if self.rng.gen_bool(0.6) {
                            let entries = self.rng.gen_range(1..=4);
                            self.cluster.nodes[i].builds[k].step(entries);
                        } else {
                            self.finish_build(i, k);
                        }
                    }
                }
                72..=85 => {
                    if let Some(l) = self.leader() {
                        self.propose(l);
                    }
                }
                86 => {
                    let alive = self.alive();
                    // Keep a majority of the voters up most of the time, but not always.
                    if alive.len() * 2 > voters + 1 || self.rng.gen_bool(0.2) {
                        if let Some(&i) = alive.get(self.rng.gen_range(0..alive.len().max(1))) {
                            self.crash(i);
                        }
                    }
                }
                87..=88 => {
                    let dead: Vec<usize> = (0..self.cluster.nodes.len())
                        .filter(|&i| self.cluster.nodes[i].replica.is_none() && self.watch[i].started)
                        .collect();
                    if !dead.is_empty() {
                        let i = dead[self.rng.gen_range(0..dead.len())];
                        self.log.push(format!("restart {}", i + 1));
                        self.start(i);
                    }
                }
                89 => {
                    if self.cluster.isolated.is_empty() {
                        let id = self.rng.gen_range(1..=self.cluster.nodes.len() as u64);
                        self.cluster.isolated.insert(id);
                        self.log.push(format!("isolate {id}"));
                    } else {
                        self.cluster.isolated.clear();
                        self.log.push("heal".into());
                    }
                }
                90..=94 => {
                    for i in self.alive() {
                        self.step_node(i, Event::Tick);
                    }
                }
                _ => {
                    // A message stuck in the network for a long time: deliver the oldest.
                    if !self.cluster.net.is_empty() {
                        self.deliver(0, Delivery::Take);
                    }
                }
            }
            self.check();
        }
    }

    /// No more faults: heal, restart everyone, deliver everything, and require the service to commit a new
    /// transaction on every replica.
    fn calm(&mut self) {
        self.cluster.isolated.clear();
        for i in 0..self.cluster.nodes.len() {
            if self.cluster.nodes[i].replica.is_none() && self.watch[i].started {
                self.start(i);
            }
        }
        let mut target: Option<TxId> = None;
        for _ in 0..CALM_ROUNDS {
            while !self.cluster.net.is_empty() {
                let k = self.rng.gen_range(0..self.cluster.net.len());
                self.deliver(k, Delivery::Take);
                self.check();
            }
            for i in self.alive() {
                let n = self.cluster.nodes[i].pending.len();
                self.persist(i, n);
                while !self.cluster.nodes[i].builds.is_empty() {
                    self.finish_build(i, 0);
                }
            }
            for i in self.alive() {
                self.step_node(i, Event::Tick);
            }
            self.drive_joiner();
            self.check();
            if target.is_none() {
                if let Some(l) = self.leader() {
                    self.propose(l);
                    target = self.proposals.last().copied().filter(|t| {
                        self.cluster.nodes[l]
                            .replica
                            .as_ref()
                            .is_some_and(|r| r.view_of(t.seqno) == Some(t.view))
                    });
                }
            }
            if let Some(t) = target {
                let all = self.alive().iter().all(|&i| {
                    let r = self.cluster.replica(i);
                    r.tx_status(t) == TxStatus::Committed
                });
                let lost = self.alive().iter().any(|&i| {
                    self.cluster.nodes[i]
                        .replica
                        .as_ref()
                        .is_some_and(|r| r.tx_status(t) == TxStatus::Invalid)
                });
                if lost {
                    target = None;
                } else if all {
                    return;
                }
            }
        }
        let states: Vec<String> = self
            .cluster
            .nodes
            .iter()
            .filter_map(|n| n.replica.as_ref())
            .map(|r| {
                format!(
                    "{} {:?} view {} last {} raft commit {} commit {} conf {:?}/{:?} pending {}",
                    r.id(),
                    r.role(),
                    r.view(),
                    r.last_seqno(),
                    r.raft_commit_index(),
                    r.commit_point(),
                    r.conf_state().voters,
                    r.conf_state().learners,
                    self.cluster.nodes[(r.id().get() - 1) as usize].pending.len()
                )
            })
            .collect();
        fail(format!(
            "no progress after the faults stopped (target {target:?}): {states:#?}"
        ));
    }
}

fn run(seed: u64, voters: usize) {
    let joiner = if seed.is_multiple_of(2) {
        Joiner::With
    } else {
        Joiner::Without
    };
    let mut sim = Sim::new(seed, voters, joiner);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        sim.chaos(CHAOS_STEPS);
        sim.calm();
    }));
    if std::env::var("CONSORT_SIM_STATS").is_ok() {
        let count = |w: &str| sim.log.iter().filter(|l| l.contains(w)).count();
        let invalid = sim.final_status.values().filter(|s| **s == TxStatus::Invalid).count();
        eprintln!(
            "STATS seed {seed} voters {voters} proposals {} committed {} invalid {invalid} rollbacks {} raft-snapshots {} \
             joined {} promoted {} crashes {} leaders {} snapshot-builds {} periodic-snapshots {}",
            sim.proposals.len(),
            sim.committed.len(),
            count("rolled back"),
            count("installed snapshot"),
            count("start joiner"),
            sim.joiner_promoted,
            count("crash"),
            sim.leaders.len(),
            count("built snapshot"),
            sim.snapshots.len()
        );
    }
    if std::env::var("CONSORT_SIM_VERBOSE").is_ok() {
        for line in &sim.log {
            eprintln!("{line}");
        }
        let commits: Vec<String> = sim
            .cluster
            .nodes
            .iter()
            .filter_map(|n| n.replica.as_ref())
            .map(|r| r.commit_point().to_string())
            .collect();
        eprintln!(
            "proposals {} final {} commits {commits:?} committed entries {}",
            sim.proposals.len(),
            sim.final_status.len(),
            sim.committed.len()
        );
    }
    if let Err(e) = outcome {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        let tail: Vec<&String> = sim.log.iter().rev().take(40).collect();
        panic!(
            "simulation failed: {msg}\nlast events (newest first): {tail:#?}\nreplay: CONSORT_SIM_SEED={seed} \
             CONSORT_SIM_NODES={voters} cargo test -p consort-consensus --test sim -- replay"
        );
    }
}

fn seeds(default: u64) -> u64 {
    std::env::var("CONSORT_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn run_many(voters: usize, count: u64) {
    // Failures are reported below with their replay command; the default hook would print every nested panic.
    std::panic::set_hook(Box::new(|_| {}));
    let mut failed = Vec::new();
    for seed in 0..count {
        let r = std::panic::catch_unwind(|| run(seed, voters));
        if let Err(e) = r {
            let msg = e.downcast_ref::<String>().cloned().unwrap_or_default();
            eprintln!("{msg}");
            failed.push(seed);
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {count} seeds failed with {voters} voters: {failed:?}",
        failed.len()
    );
}

#[test]
fn a_seed_replays_identically() {
    let events = |seed| {
        let mut sim = Sim::new(seed, 3, Joiner::With);
        sim.chaos(400);
        sim.log
    };
    assert_eq!(events(11), events(11));
}

#[test]
fn three_replicas() {
    run_many(3, seeds(600));
}

#[test]
fn five_replicas() {
    run_many(5, seeds(400));
}

/// Replays the seed in `CONSORT_SIM_SEED` (with `CONSORT_SIM_NODES` voters, default 3); does nothing without it.
#[test]
fn replay() {
    let Some(seed) = std::env::var("CONSORT_SIM_SEED").ok().and_then(|s| s.parse().ok()) else {
        return;
    };
    let voters = std::env::var("CONSORT_SIM_NODES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    run(seed, voters);
}
