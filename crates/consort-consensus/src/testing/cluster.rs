//! One test harness for a cluster of replicas on one thread, shared by the scenario tests and the simulator: it
//! builds N replicas over [`FaultyDisk`]s, carries their messages, persists and snapshot builds, ticks them, and
//! crashes and restarts them. *When* each thing happens is the caller's choice: the scenario tests deliver and
//! persist everything at once, the simulator draws the order from a seed.

use super::FaultyDisk;
use crate::snapshot::SnapshotBuild;
use crate::{Action, ConsensusError, Event, NodeIdentity, PersistedState, RaftId, Replica, ReplicaConfig};
use consort_ledger::LedgerSecret;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

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
    secret: LedgerSecret,
}

impl Cluster {
    /// An empty cluster whose replicas share `secret` as their ledger secret.
    pub fn new(secret: LedgerSecret) -> Self {
        Cluster {
            nodes: Vec::new(),
            net: Vec::new(),
            isolated: BTreeSet::new(),
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
            self.secret.clone(),
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

    /// Carries out the oldest `count` pending persists of node `i` (sync the ledger, keep hard state and snapshot
    /// as persisted state) and reports the last of them; returns the replica's actions. A failed ledger sync is
    /// returned as the error.
    pub fn persist(&mut self, i: usize, count: usize) -> Result<Vec<Action>, ConsensusError> {
        let mut last = None;
        for _ in 0..count {
            let n = &mut self.nodes[i];
            let Some(r) = n.replica.as_mut() else {
                return Ok(Vec::new());
            };
            let Some(p) = n.pending.pop_front() else {
                break;
            };
            r.sync_ledger()?;
            if let Some(hs) = p.hard_state {
                n.persisted.hard_state = Some(hs);
            }
            if let Some(s) = p.snapshot {
                n.persisted.snapshot = Some(s);
            }
            last = Some(p.number);
        }
        Ok(match last {
            Some(number) => self.step(i, Event::Persisted { number }),
            None => Vec::new(),
        })
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
