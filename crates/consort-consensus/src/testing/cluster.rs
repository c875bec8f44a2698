//! One test harness for a cluster of replicas on one thread, shared by the scenario tests and the simulator: it
//! builds N replicas over [`FaultyDisk`]s, carries their messages, persists and snapshot builds, ticks them, and
//! crashes and restarts them. *When* each thing happens is the caller's choice: the scenario tests deliver and
//! persist everything at once, the simulator draws the order from a seed.
//!
//! A persist is carried out in the node's steps and order ([`PersistStep`], [`NODE_PERSIST_ORDER`]: consort-node's
//! `engine/persist.rs` syncs the ledger, writes the snapshot file, then the hard state, and only then reports the
//! persist durable, which is when an installed snapshot's old chunks go), and [`Cluster::persist_partly`] stops
//! after any of them, so that a crash can fall between any two.

use super::FaultyDisk;
use crate::snapshot::SnapshotBuild;
use crate::{Action, ConsensusError, Event, NodeIdentity, PersistedState, RaftId, Replica, ReplicaConfig};
use consort_ledger::LedgerSecret;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// One step of carrying out an [`Action::Persist`], as the node does it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersistStep {
    /// Sync the ledger (flush, fsync, closed chunks renamed).
    Ledger,
    /// Store the installed snapshot, if the persist carries one (the node's `raft_snapshot` file).
    Snapshot,
    /// Store the hard state, if the persist carries one (the node's `raft_hard_state` file).
    HardState,
    /// Report the persist durable ([`Event::Persisted`]); the replica then removes the chunks an installed snapshot
    /// replaced.
    Report,
}

/// The order consort-node carries out a persist in (`engine/persist.rs`): the ledger first, so that a hard state's
/// commit index never points past the entries on disk; the snapshot before the hard state, whose commit index may
/// be the snapshot's; the report last, since it lets the replica drop the old ledger the snapshot replaces.
pub const NODE_PERSIST_ORDER: [PersistStep; 4] = [
    PersistStep::Ledger,
    PersistStep::Snapshot,
    PersistStep::HardState,
    PersistStep::Report,
];

/// An [`Action::Persist`] handed out and not yet carried out.
#[derive(Debug)]
pub struct PendingPersist {
    /// The persist number to report back as [`Event::Persisted`].
    pub number: u64,
    /// Hard state to store, if any.
    pub hard_state: Option<crate::eraftpb::HardState>,
    /// Encoded installed snapshot to store, if any.
    pub snapshot: Option<Vec<u8>>,
}

/// One node of the cluster: its replica while it runs, and what survives a crash (disk, persisted state, identity).
#[derive(Debug)]
pub struct Node {
    /// Raft id (its index in the cluster plus one).
    pub id: u64,
    /// The running replica; `None` while the node is down (never started, or crashed).
    pub replica: Option<Replica<FaultyDisk>>,
    /// The node's ledger disk; a clone shares it, so it outlives the replica.
    pub disk: FaultyDisk,
    /// What the completed persists wrote (and the first membership): handed to the replica at each start.
    pub persisted: PersistedState,
    /// Tunables the replica is opened with.
    pub config: ReplicaConfig,
    /// Signing identity the replica is opened with.
    pub identity: NodeIdentity,
    /// Certificates of the nodes whose signatures the replica accepts, by Raft id.
    pub trusted: BTreeMap<RaftId, String>,
    /// The keyring the replica opens with; `None`: the cluster's shared secret alone.
    pub secrets: Option<consort_ledger::LedgerSecrets>,
    /// Persists handed out and not yet carried out, oldest first.
    pub pending: VecDeque<PendingPersist>,
    /// Snapshot builds handed out and not yet finished.
    pub builds: Vec<SnapshotBuild>,
}

/// A Raft message on its way.
#[derive(Debug, Clone)]
pub struct Message {
    /// Sender's Raft id.
    pub from: u64,
    /// Receiver's Raft id.
    pub to: u64,
    /// The encoded Raft message.
    pub bytes: Vec<u8>,
}

/// How [`Cluster::deliver`] treats the message it delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The message leaves the network.
    Take,
    /// A copy is delivered and the message stays in the network (the network duplicated it).
    Duplicate,
}

/// N replicas, the network between them, and the work they handed out. Steps route [`Action::Send`] into
/// [`Cluster::net`], [`Action::Persist`] into the node's `pending` and [`Action::BuildSnapshot`] into its `builds`,
/// and return every other action to the caller.
#[derive(Debug)]
pub struct Cluster {
    /// The nodes, node `i` with Raft id `i + 1`.
    pub nodes: Vec<Node>,
    /// Messages sent and not yet delivered or lost, in the order they were sent.
    pub net: Vec<Message>,
    /// Nodes cut off from everyone else: what they send is lost, what is sent to them is not delivered.
    pub isolated: BTreeSet<u64>,
    /// The order persists are carried out in: [`NODE_PERSIST_ORDER`] unless a test sets another, to check that the
    /// simulation catches a wrong one.
    pub persist_order: [PersistStep; 4],
    secret: LedgerSecret,
}

impl Cluster {
    /// An empty cluster whose replicas share `secret` as their ledger secret.
    pub fn new(secret: LedgerSecret) -> Self {
        Cluster {
            nodes: Vec::new(),
            net: Vec::new(),
            isolated: BTreeSet::new(),
            persist_order: NODE_PERSIST_ORDER,
            secret,
        }
    }

    /// Adds a node that is not started yet, with an empty disk and `persisted` as its start-up state; returns its
    /// index. Its Raft id is `config.id`, which must be its index plus one.
    pub fn add_node(
        &mut self,
        config: ReplicaConfig,
        identity: NodeIdentity,
        trusted: BTreeMap<RaftId, String>,
        persisted: PersistedState,
    ) -> usize {
        assert_eq!(
            config.id.get(),
            self.nodes.len() as u64 + 1,
            "node ids follow their index"
        );
        self.nodes.push(Node {
            id: config.id.get(),
            replica: None,
            disk: FaultyDisk::new(),
            persisted,
            config,
            identity,
            trusted,
            secrets: None,
            pending: VecDeque::new(),
            builds: Vec::new(),
        });
        self.nodes.len() - 1
    }

    /// Opens node `i`'s replica over its disk and persisted state (a first start or a restart).
    pub fn start(&mut self, i: usize) -> Result<&Replica<FaultyDisk>, ConsensusError> {
        let n = &mut self.nodes[i];
        let replica = Replica::open(
            n.config.clone(),
            n.identity.clone(),
            n.trusted.clone(),
            n.secrets
                .clone()
                .unwrap_or_else(|| consort_ledger::LedgerSecrets::new(self.secret.clone())),
            n.disk.clone(),
            n.persisted.clone(),
        )?;
        Ok(n.replica.insert(replica))
    }

    /// Stops node `i` abruptly: the replica and the work it handed out are gone, and its disk loses unsynced data
    /// (`torn` as in [`FaultyDisk::crash`]).
    pub fn crash(&mut self, i: usize, torn: impl FnMut(usize) -> usize) {
        let n = &mut self.nodes[i];
        n.replica = None;
        n.pending.clear();
        n.builds.clear();
        n.disk.crash(torn);
    }

    /// Node `i`'s running replica.
    ///
    /// # Panics
    /// If node `i` is down (a test that asks for it is wrong).
    pub fn replica(&self, i: usize) -> &Replica<FaultyDisk> {
        match self.nodes[i].replica.as_ref() {
            Some(r) => r,
            None => panic!("node {} is down", i + 1),
        }
    }

    /// Node `i`'s running replica, mutably. Panics as [`Cluster::replica`] does.
    pub fn replica_mut(&mut self, i: usize) -> &mut Replica<FaultyDisk> {
        match self.nodes[i].replica.as_mut() {
            Some(r) => r,
            None => panic!("node {} is down", i + 1),
        }
    }

    /// Indices of the nodes whose replica runs.
    pub fn alive(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].replica.is_some())
            .collect()
    }

    /// Steps node `i` (nothing if it is down), routes its messages, persists and builds, and returns its other
    /// actions.
    pub fn step(&mut self, i: usize, event: Event) -> Vec<Action> {
        let Some(r) = self.nodes[i].replica.as_mut() else {
            return Vec::new();
        };
        let actions = r.step(event);
        self.route(i, actions)
    }

    fn route(&mut self, i: usize, actions: Vec<Action>) -> Vec<Action> {
        let id = self.nodes[i].id;
        let mut rest = Vec::new();
        for a in actions {
            match a {
                Action::Send { to, message } => {
                    if !self.isolated.contains(&id) && !self.isolated.contains(&to.get()) {
                        self.net.push(Message {
                            from: id,
                            to: to.get(),
                            bytes: message,
                        });
                    }
                }
                Action::Persist {
                    number,
                    hard_state,
                    snapshot,
                } => self.nodes[i].pending.push_back(PendingPersist {
                    number,
                    hard_state,
                    snapshot,
                }),
                Action::BuildSnapshot(b) => self.nodes[i].builds.push(*b),
                other => rest.push(other),
            }
        }
        rest
    }

    /// Carries out the oldest `count` pending persists of node `i` in [`Cluster::persist_order`] (sync the ledger,
    /// keep snapshot and hard state as persisted state) and reports the last of them, as the node reports one round;
    /// returns the replica's actions. A failed ledger sync is returned as the error.
    pub fn persist(&mut self, i: usize, count: usize) -> Result<Vec<Action>, ConsensusError> {
        let mut out = Vec::new();
        for k in 0..count {
            if self.nodes[i].replica.is_none() {
                break;
            }
            let Some(p) = self.nodes[i].pending.pop_front() else {
                break;
            };
            let last = k + 1 == count || self.nodes[i].pending.is_empty();
            for step in self.persist_order {
                if step != PersistStep::Report || last {
                    out.extend(self.persist_step(i, &p, step)?);
                }
            }
        }
        Ok(out)
    }

    /// Carries out only the first `steps` steps (in [`Cluster::persist_order`]) of node `i`'s oldest pending
    /// persist, and drops it: what a crash right after them leaves (the caller crashes the node next). Returns
    /// the replica's actions (from the report, if it is among the steps).
    pub fn persist_partly(&mut self, i: usize, steps: usize) -> Result<Vec<Action>, ConsensusError> {
        let mut out = Vec::new();
        if self.nodes[i].replica.is_none() {
            return Ok(out);
        }
        let Some(p) = self.nodes[i].pending.pop_front() else {
            return Ok(out);
        };
        for step in self.persist_order.into_iter().take(steps) {
            out.extend(self.persist_step(i, &p, step)?);
        }
        Ok(out)
    }

    fn persist_step(&mut self, i: usize, p: &PendingPersist, step: PersistStep) -> Result<Vec<Action>, ConsensusError> {
        let n = &mut self.nodes[i];
        match step {
            PersistStep::Ledger => {
                if let Some(r) = n.replica.as_mut() {
                    r.sync_ledger()?;
                }
            }
            PersistStep::Snapshot => {
                if let Some(s) = &p.snapshot {
                    n.persisted.snapshot = Some(s.clone());
                }
            }
            PersistStep::HardState => {
                if let Some(hs) = &p.hard_state {
                    n.persisted.hard_state = Some(hs.clone());
                }
            }
            PersistStep::Report => return Ok(self.step(i, Event::Persisted { number: p.number })),
        }
        Ok(Vec::new())
    }

    /// Finishes node `i`'s `k`th snapshot build and reports it; returns the build's seqno and the replica's
    /// actions.
    pub fn finish_build(&mut self, i: usize, k: usize) -> (u64, Vec<Action>) {
        let built = self.nodes[i].builds.remove(k).run();
        let seqno = built.seqno();
        (seqno, self.step(i, Event::SnapshotBuilt(built)))
    }

    /// Delivers the `k`th message in the network (unless either end is isolated or the receiver is not in the
    /// cluster); returns the receiver's index and actions.
    pub fn deliver(&mut self, k: usize, delivery: Delivery) -> Option<(usize, Vec<Action>)> {
        let m = match delivery {
            Delivery::Duplicate => self.net[k].clone(),
            Delivery::Take => self.net.swap_remove(k),
        };
        self.receive(m)
    }

    /// Delivers `m` (already taken out of the network) as [`Cluster::deliver`] does.
    pub fn receive(&mut self, m: Message) -> Option<(usize, Vec<Action>)> {
        let i = self.nodes.iter().position(|n| n.id == m.to)?;
        if self.isolated.contains(&m.from) || self.isolated.contains(&m.to) {
            return None;
        }
        let event = Event::Receive {
            from: RaftId(m.from),
            message: m.bytes,
        };
        Some((i, self.step(i, event)))
    }
}
