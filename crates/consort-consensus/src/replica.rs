//! The replica: raft-rs's `RawNode` over the ledger, driven as a step function from [`Event`]s to [`Action`]s,
//! with CCF's execution model (primary executes, backups apply), signature transactions and commit rule.

use crate::codec::{conf_change_entry, decode, encode_write_set_entry, inspect, normalise, DecodedEntry};
use crate::error::{ConsensusError, ProposeError};
use crate::history::ViewHistory;
use crate::limits::{
    DEFAULT_MAX_APPEND_BYTES, DEFAULT_MAX_INFLIGHT_APPENDS, MAX_ENTRIES_PER_MESSAGE, MAX_MESSAGE_SIZE,
};
use crate::log::{Log, Terms};
use crate::replay::{DecodedChunk, Offload};
use crate::snapshot::{self, SnapshotBuild, SnapshotBuilt};
use consort_crypto::SigningKey;
use consort_kv::{Store, Version, WriteBatch, WriteSet};
use consort_ledger::{
    verify_root, Ledger, LedgerSecret, LedgerStorage, MerkleTree, PrimarySignature, ProofStep, SIGNATURES_TABLE,
    SINGLETON_KEY, TREE_TABLE,
};
use protobuf::Message as _;
use raft::eraftpb::{ConfChangeV2, ConfState, EntryType, HardState, Message, MessageType, Snapshot};
use raft::{RawNode, StateRole};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

/// A transaction id: view (Raft term) and seqno (Raft index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TxId {
    pub view: u64,
    pub seqno: u64,
}

impl std::fmt::Display for TxId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.view, self.seqno)
    }
}

/// Parses CCF's `<view>.<seqno>` form.
impl std::str::FromStr for TxId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (v, n) = s
            .split_once('.')
            .ok_or_else(|| format!("{s:?} is not of the form <view>.<seqno>"))?;
        let view = v.parse().map_err(|_| format!("bad view in {s:?}"))?;
        let seqno = n.parse().map_err(|_| format!("bad seqno in {s:?}"))?;
        Ok(TxId { view, seqno })
    }
}

/// CCF's transaction status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxStatus {
    /// This replica cannot tell yet (it has not seen the seqno, or seen it in another view without a later commit).
    Unknown,
    /// In this replica's log, not yet covered by a committed signature.
    Pending,
    /// Covered by a committed signature transaction: final.
    Committed,
    /// Can never be committed: another transaction holds its seqno for good. Final.
    Invalid,
}

impl TxStatus {
    /// CCF's name of the status (as in `GET /tx` answers).
    pub fn as_str(self) -> &'static str {
        match self {
            TxStatus::Unknown => "Unknown",
            TxStatus::Pending => "Pending",
            TxStatus::Committed => "Committed",
            TxStatus::Invalid => "Invalid",
        }
    }
}

/// Raft role of a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

impl From<StateRole> for Role {
    fn from(r: StateRole) -> Self {
        match r {
            StateRole::Follower => Role::Follower,
            StateRole::PreCandidate => Role::PreCandidate,
            StateRole::Candidate => Role::Candidate,
            StateRole::Leader => Role::Leader,
        }
    }
}

/// This node's signing identity: signature transactions carry its certificate and node id.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    pub key: SigningKey,
    pub cert_pem: String,
    /// CCF node id (hex SHA-256 of the public key DER).
    pub node_id: String,
}

/// Tunables of one replica. Time is in ticks: the node decides how long a tick is.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// Raft id of this replica (non-zero).
    pub id: u64,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// The primary signs after this many transactions...
    pub signature_interval_tx: u64,
    /// ...or this many ticks after the first unsigned one, whichever comes first.
    pub signature_interval_ticks: u64,
    pub max_append_bytes: u64,
    pub max_inflight_appends: usize,
    /// Ledger chunks are closed at the first signature after they reach this size.
    pub chunk_threshold_bytes: u64,
    /// Seed of the generator that draws election timeouts in [election_ticks, 2 * election_ticks) (randomness is
    /// injected: pass a random seed in production, a fixed one in simulation).
    pub random_seed: u64,
    /// Whether a replica that becomes primary signs at once (so that the commit point moves into its view
    /// quickly). A genesis node turns this off until its genesis transaction is in the log: auditors need the
    /// signing node's certificate recorded before the first signature.
    pub sign_on_election: bool,
    /// The primary snapshots the state at the first signature transaction this many transactions after the last
    /// snapshot (0: never). The primary builds it and hands it out once its evidence commits.
    pub snapshot_interval_tx: u64,
    /// Whether backups build the primary's periodic snapshots too (each checks its own against the evidence and
    /// hands it out once that commits). Off by default, as in CCF: a build costs every replica a snapshot's worth
    /// of CPU at once, on machines the replicas may share, and a backup restarts from its ledger quickly.
    pub snapshots_on_backups: bool,
}

impl ReplicaConfig {
    pub fn new(id: u64) -> Self {
        ReplicaConfig {
            id,
            election_ticks: 10,
            heartbeat_ticks: 2,
            signature_interval_tx: 100,
            signature_interval_ticks: 5,
            max_append_bytes: DEFAULT_MAX_APPEND_BYTES,
            max_inflight_appends: DEFAULT_MAX_INFLIGHT_APPENDS,
            chunk_threshold_bytes: 5 * 1024 * 1024,
            random_seed: id,
            sign_on_election: true,
            snapshot_interval_tx: 0,
            snapshots_on_backups: false,
        }
    }
}

/// What the node kept on disk besides the ledger chunks, handed back at start-up.
#[derive(Debug, Clone, Default)]
pub struct PersistedState {
    /// The last hard state from an [`Action::Persist`] that completed.
    pub hard_state: Option<HardState>,
    /// The last snapshot from an [`Action::Persist`] that completed, or the snapshot a joiner was given
    /// ([`Replica::snapshot`] on a member), as an encoded Raft `Snapshot`.
    pub snapshot: Option<Vec<u8>>,
    /// The first membership of the service (used only when there is no snapshot).
    pub voters: Vec<u64>,
}

/// An input to [`Replica::step`].
#[derive(Debug, Clone)]
pub enum Event {
    /// One unit of time passed.
    Tick,
    /// A Raft message from peer `from` (authenticated by the node-to-node channel).
    Receive { from: u64, message: Vec<u8> },
    /// The primary executed a transaction and committed it locally to [`Replica::store`] at `version` (the
    /// store's current version, which must be [`Replica::last_seqno`] + 1). Answered by [`Action::Proposed`]
    /// or, after the replica rolled the store back to `version - 1`, [`Action::ProposalRejected`].
    Propose { version: Version, write_set: WriteSet },
    /// Change the membership (add a learner, promote it to voter, remove a node).
    ProposeConfChange { change: ConfChangeV2 },
    /// The [`Action::Persist`] with this number (and every earlier one) is durable.
    Persisted { number: u64 },
    /// Start an election now.
    Campaign,
    /// On the primary: hand the primary role to voter `to` (Raft leadership transfer: `to` campaigns at once when
    /// its log is up to date). Used before the primary is removed from the membership.
    TransferLeadership { to: u64 },
    /// A build handed out by [`Action::BuildSnapshot`] finished.
    SnapshotBuilt(SnapshotBuilt),
}

/// An output of [`Replica::step`], in the order the node must carry them out.
#[derive(Debug)]
pub enum Action {
    /// Send an encoded Raft message to a peer (best effort: Raft retries).
    Send {
        to: u64,
        message: Vec<u8>,
    },
    /// Make the ledger durable ([`Replica::sync_ledger`]), then durably store `hard_state` (if any, replacing the
    /// previous one) and `snapshot` (if any: an installed snapshot, which the ledger now starts after), in that
    /// order, then report [`Event::Persisted`]. Persist in order; completing number n completes all before it.
    /// Messages that depend on this durability are held back until then.
    Persist {
        number: u64,
        hard_state: Option<HardState>,
        snapshot: Option<Vec<u8>>,
    },
    /// The CCF commit point advanced: every transaction up to this signature transaction is Committed.
    Committed(TxId),
    /// Entries from the primary were appended and their write sets applied to the store (not yet committed).
    Applied {
        first: u64,
        last: u64,
    },
    /// Uncommitted transactions after `to` were dropped from the ledger, the Merkle tree and the store; they will
    /// never be Committed in their view.
    RolledBack {
        to: u64,
    },
    /// A snapshot from the primary replaced this replica's state (store, ledger, tree).
    SnapshotInstalled(TxId),
    /// Build this periodic snapshot off the engine lock (on any thread: [`SnapshotBuild::run`]) and report the
    /// result as [`Event::SnapshotBuilt`]. Transactions go on meanwhile. Dropping the build abandons it.
    BuildSnapshot(Box<SnapshotBuild>),
    /// A periodic snapshot of the state at signature transaction `seqno` is final: its digest, recorded by the
    /// evidence transaction `evidence`, is covered by a committed signature. `snapshot` is the Raft `Snapshot` a
    /// joiner can start from; the node stores it ([`encode_snapshot`], off the engine lock: it is megabytes) as
    /// `snapshot_<seqno>_<evidence>.committed`.
    SnapshotCommitted {
        seqno: u64,
        evidence: u64,
        snapshot: Snapshot,
    },
    /// The client proposal is in the log at this transaction id.
    Proposed(TxId),
    /// The proposal of `version` was refused; for client proposals the store was rolled back to `version - 1`.
    ProposalRejected {
        version: Version,
        error: ProposeError,
    },
    /// A membership change committed and took effect.
    ConfChanged {
        seqno: u64,
        conf_state: ConfState,
    },
    RoleChanged {
        role: Role,
        view: u64,
        leader: Option<u64>,
    },
    /// An input was refused and ignored (malformed or invalid message from a peer, unknown persist number).
    Dropped {
        from: Option<u64>,
        error: ConsensusError,
    },
    /// The replica found something it must not go past (a bad signature transaction, an entry that does not
    /// decrypt, a disk error) and stopped: it ignores every further event.
    Halted {
        error: ConsensusError,
    },
}

/// Encodes a hard state for the node's disk.
pub fn encode_hard_state(hs: &HardState) -> Vec<u8> {
    hs.write_to_bytes()
        .expect("encoding a protobuf message to a Vec cannot fail")
}

/// Encodes a Raft snapshot (as [`Action::SnapshotCommitted`] hands it out) for the node's disk or a joiner.
pub fn encode_snapshot(snapshot: &Snapshot) -> Vec<u8> {
    snapshot
        .write_to_bytes()
        .expect("encoding a protobuf message to a Vec cannot fail")
}

/// Decodes what [`encode_hard_state`] wrote.
pub fn decode_hard_state(bytes: &[u8]) -> Result<HardState, ConsensusError> {
    HardState::parse_from_bytes(bytes).map_err(|e| ConsensusError::Inconsistent(format!("hard state: {e}")))
}

/// A periodic snapshot built at a signature transaction, waiting for its evidence transaction to commit.
#[derive(Debug)]
struct PendingSnapshot {
    seqno: u64,
    evidence: u64,
    /// The snapshot bundle ([`snapshot::build`]) whose SHA-256 the evidence records.
    data: Vec<u8>,
}

/// A snapshot bundle and its SHA-256.
type Bundle = (Vec<u8>, [u8; 32]);

/// Periodic snapshot bookkeeping. The primary marks a signature transaction for a snapshot; every replica that
/// takes that entry builds the snapshot of its state there off the engine lock ([`Action::BuildSnapshot`]). When
/// the primary's build finishes it records the digest in an evidence transaction; a backup keeps its own build
/// only if the digests agree. A snapshot is handed out once its evidence is committed.
#[derive(Debug, Default)]
struct Snapshots {
    /// Seqno of the latest snapshot started, installed or (by a backup that does not build) marked.
    last: u64,
    /// Whether this replica builds the snapshots a primary marks while it is a backup.
    on_backups: bool,
    /// Snapshot at the next signature whatever the interval (governance's `trigger_snapshot`).
    asap: bool,
    /// Builds handed out and not yet reported, by seqno, with the generation each was started as (a build of an
    /// entry that was since rolled back is stale even if the seqno is marked again).
    building: BTreeMap<u64, u64>,
    generation: u64,
    /// Builds to hand to the node with the actions of the current step.
    to_start: Vec<SnapshotBuild>,
    /// Bundles this replica built whose evidence it has not seen, by seqno.
    built: BTreeMap<u64, Bundle>,
    /// Evidence seen before this replica's build finished: seqno -> (evidence seqno, claimed digest).
    claimed: BTreeMap<u64, (u64, [u8; 32])>,
    pending: VecDeque<PendingSnapshot>,
    /// Evidence whose snapshot this replica built with a different digest.
    mismatches: u64,
}

impl Snapshots {
    fn push(&mut self, p: PendingSnapshot) {
        self.pending.push_back(p);
        while self.pending.len() > MAX_PENDING_SNAPSHOTS {
            self.pending.pop_front();
        }
    }

    /// Starts building the snapshot at signature transaction `seqno`, just applied to `store`.
    fn start(
        &mut self,
        store: &Arc<Store>,
        log: &Log<impl LedgerStorage>,
        sig_entry: Vec<u8>,
        view: u64,
        seqno: u64,
    ) -> Result<(), ConsensusError> {
        self.generation += 1;
        let history = log.view_history_at(view, seqno);
        let build = SnapshotBuild::start(store, &log.secret, sig_entry, view, seqno, history, self.generation)?;
        self.building.insert(seqno, self.generation);
        // A build the node never reports back (it could not start a thread) must not be waited for forever.
        while self.building.len() > MAX_PENDING_SNAPSHOTS {
            if let Some((old, _)) = self.building.pop_first() {
                self.claimed.remove(&old);
            }
        }
        self.to_start.push(build);
        self.last = self.last.max(seqno);
        self.asap = false;
        Ok(())
    }

    /// A backup took signature transaction `seqno`, which the primary marked for a snapshot: builds it too if
    /// configured to; otherwise only notes it, so that the interval counts from there should this replica become
    /// primary.
    fn marked(
        &mut self,
        store: &Arc<Store>,
        log: &Log<impl LedgerStorage>,
        sig_entry: &[u8],
        view: u64,
        seqno: u64,
    ) -> Result<(), ConsensusError> {
        if self.on_backups {
            return self.start(store, log, sig_entry.to_vec(), view, seqno);
        }
        self.last = self.last.max(seqno);
        Ok(())
    }

    /// Compares this replica's bundle at `seqno` with the digest evidence transaction `evidence` claims.
    fn compare(&mut self, seqno: u64, evidence: u64, claimed: [u8; 32], data: Vec<u8>, digest: [u8; 32]) {
        if digest == claimed {
            self.push(PendingSnapshot { seqno, evidence, data });
        } else {
            self.mismatches += 1;
        }
    }

    /// Evidence transaction `evidence` claims digest `hash` for the snapshot at `seqno`.
    fn claim(&mut self, evidence: u64, seqno: u64, hash: [u8; 32]) {
        if let Some((data, digest)) = self.built.remove(&seqno) {
            self.compare(seqno, evidence, hash, data, digest);
        } else if self.building.contains_key(&seqno) {
            self.claimed.insert(seqno, (evidence, hash));
        }
        // Otherwise this replica never took the marked entry (it started from a later snapshot): nothing to keep.
    }

    /// A build finished: returns its bundle and digest if nothing claims it yet (a primary then records it).
    fn finished(&mut self, built: SnapshotBuilt) -> Result<Option<Bundle>, ConsensusError> {
        let seqno = built.seqno;
        if self.building.get(&seqno) != Some(&built.generation) {
            return Ok(None); // stale: the entry was rolled back, or a snapshot was installed since
        }
        self.building.remove(&seqno);
        let (data, digest) = built.result?;
        match self.claimed.remove(&seqno) {
            Some((evidence, hash)) => {
                self.compare(seqno, evidence, hash, data, digest);
                Ok(None)
            }
            None => Ok(Some((data, digest))),
        }
    }

    /// Keeps a bundle for the evidence to come (only the newest few).
    fn keep_built(&mut self, seqno: u64, data: Vec<u8>, digest: [u8; 32]) {
        self.built.insert(seqno, (data, digest));
        while self.built.len() > MAX_PENDING_SNAPSHOTS {
            self.built.pop_first();
        }
    }

    /// Forgets everything about entries after `to` (rolled back).
    fn truncate(&mut self, to: u64) {
        self.building.retain(|&s, _| s <= to);
        self.to_start.retain(|b| b.seqno <= to);
        self.built.retain(|&s, _| s <= to);
        self.claimed.retain(|_, (e, _)| *e <= to);
        self.pending.retain(|p| p.evidence <= to);
    }

    /// A snapshot at `base` replaced the state: nothing built or claimed before applies any more.
    fn reset(&mut self, base: u64) {
        self.building.clear();
        self.to_start.clear();
        self.built.clear();
        self.claimed.clear();
        self.pending.clear();
        self.last = base;
    }
}

/// Snapshots built and not yet committed that a replica keeps (older ones are dropped: a newer one supersedes them).
pub const MAX_PENDING_SNAPSHOTS: usize = 2;

/// One replica of the service. See the crate documentation for the model.
pub struct Replica<S: LedgerStorage> {
    cfg: ReplicaConfig,
    identity: NodeIdentity,
    /// Certificates of the nodes whose signature transactions this replica accepts, by Raft id.
    trusted: BTreeMap<u64, String>,
    node: RawNode<Log<S>>,
    /// Leaves 0..=last seqno.
    tree: MerkleTree,
    /// Seqnos of the signature transactions in the log (and the snapshot base).
    signatures: BTreeSet<u64>,
    txs_since_signature: u64,
    ticks_since_signature: u64,
    sign_asap: bool,
    /// The next signature ends the current ledger chunk (governance's `trigger_ledger_chunk`).
    chunk_after_next_signature: bool,
    /// Persist numbers handed out and not yet reported durable.
    outstanding: VecDeque<u64>,
    /// Messages waiting for a persist number to become durable.
    held: VecDeque<(u64, Vec<Message>)>,
    halted: Option<ConsensusError>,
    /// State of the election-timeout generator (splitmix64).
    random_state: u64,
    snapshots: Snapshots,
}

impl<S: LedgerStorage> std::fmt::Debug for Replica<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("id", &self.cfg.id)
            .field("role", &self.role())
            .field("view", &self.view())
            .field("last_seqno", &self.last_seqno())
            .field("commit", &self.commit_point())
            .finish_non_exhaustive()
    }
}

fn send(msgs: Vec<Message>, out: &mut Vec<Action>) {
    for m in msgs {
        let message = m
            .write_to_bytes()
            .expect("encoding a protobuf message to a Vec cannot fail");
        out.push(Action::Send { to: m.to, message });
    }
}

impl<S: LedgerStorage> Replica<S> {
    /// Opens a replica over `storage` (its ledger chunks) and what the node persisted. A fresh member passes an
    /// empty storage and `voters`; a joiner passes an empty storage and a snapshot from a member; a restarting
    /// node passes what it kept. Every entry is replayed: write sets applied, signatures verified.
    pub fn open(
        cfg: ReplicaConfig,
        identity: NodeIdentity,
        trusted: BTreeMap<u64, String>,
        secret: LedgerSecret,
        storage: S,
        persisted: PersistedState,
    ) -> Result<Self, ConsensusError> {
        Self::open_with_offload(cfg, identity, trusted, secret, storage, persisted, None)
    }

    /// [`Replica::open`], decoding (parse, decrypt, hash) the next ledger chunk on the core `offload` lends while
    /// this thread applies the current one. The result is the same; only the wall-clock time differs.
    pub fn open_with_offload(
        cfg: ReplicaConfig,
        identity: NodeIdentity,
        trusted: BTreeMap<u64, String>,
        secret: LedgerSecret,
        storage: S,
        persisted: PersistedState,
        offload: Option<&dyn Offload>,
    ) -> Result<Self, ConsensusError> {
        let ledger = Ledger::load(storage, cfg.chunk_threshold_bytes)?;
        let is_trusted = |pem: &str| trusted.values().any(|c| c == pem);
        let mut tree = MerkleTree::new();
        let mut signatures = BTreeSet::new();
        let (store, base, views, base_conf, base_bundle) = match &persisted.snapshot {
            Some(bytes) => {
                let snap = Snapshot::parse_from_bytes(bytes)
                    .map_err(|e| ConsensusError::InvalidSnapshot(format!("protobuf: {e}")))?;
                let v = snapshot::open(&snap.data, &secret, is_trusted)?;
                let meta = snap.get_metadata();
                if (meta.index, meta.term) != (v.seqno, v.view) {
                    return Err(ConsensusError::InvalidSnapshot(
                        "metadata does not match the bundle".into(),
                    ));
                }
                tree = v.tree;
                signatures.insert(v.seqno);
                let base = TxId {
                    view: v.view,
                    seqno: v.seqno,
                };
                (
                    v.store,
                    base,
                    v.view_history,
                    meta.get_conf_state().clone(),
                    Some(snap.data.to_vec()),
                )
            }
            None => {
                let cs = ConfState {
                    voters: persisted.voters.clone(),
                    ..Default::default()
                };
                (Store::new(), TxId::default(), ViewHistory::default(), cs, None)
            }
        };
        let first = ledger.first_seqno().unwrap_or(base.seqno + 1);
        if first > base.seqno + 1 {
            return Err(ConsensusError::Inconsistent(format!(
                "the ledger starts at {first}, after the snapshot at {}",
                base.seqno
            )));
        }
        let log = Log {
            ledger,
            base_index: base.seqno,
            base_term: base.view,
            base_bundle,
            terms: Terms::default(),
            conf_changes: BTreeMap::new(),
            hard_state: persisted.hard_state.clone().unwrap_or_default(),
            conf_history: vec![(base.seqno, base_conf)],
            store: Arc::new(store),
            secret,
            views,
            commit: base,
        };
        // RawNode reads the log at creation, so replay into a Log first, then build the node around it.
        let mut replica = PartialReplica {
            log,
            tree,
            signatures,
            trusted: &trusted,
        };
        let base_seqno = base.seqno;
        let raft_commit = persisted.hard_state.as_ref().map_or(0, |hs| hs.commit);
        replica.replay(first.max(base.seqno + 1), raft_commit, offload)?;
        let PartialReplica {
            mut log,
            tree,
            signatures,
            ..
        } = replica;
        let last = log.last_index();
        let hs = &mut log.hard_state;
        if hs.commit > last {
            return Err(ConsensusError::Inconsistent(format!(
                "hard state commits {} but the ledger ends at {last}",
                hs.commit
            )));
        }
        hs.commit = hs.commit.max(base.seqno);
        hs.term = hs.term.max(base.view);
        let commit_seqno = signatures
            .range(..=hs.commit)
            .next_back()
            .copied()
            .unwrap_or(0)
            .max(base.seqno);
        log.commit = TxId {
            view: log.views.view_of(commit_seqno).unwrap_or(0),
            seqno: commit_seqno,
        };
        log.store.set_committed(commit_seqno);
        log.ledger.commit(commit_seqno)?;

        let raft_cfg = raft::Config {
            id: cfg.id,
            election_tick: cfg.election_ticks,
            heartbeat_tick: cfg.heartbeat_ticks,
            applied: base.seqno,
            max_size_per_msg: cfg.max_append_bytes,
            max_inflight_msgs: cfg.max_inflight_appends,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        raft_cfg.validate().map_err(|e| ConsensusError::Raft(e.to_string()))?;
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let node = RawNode::new(&raft_cfg, log, &logger).map_err(|e| ConsensusError::Raft(e.to_string()))?;
        let random_state = cfg.random_seed;
        let snapshots_on_backups = cfg.snapshots_on_backups;
        let mut replica = Replica {
            cfg,
            identity,
            trusted,
            node,
            tree,
            signatures,
            txs_since_signature: 0,
            ticks_since_signature: 0,
            sign_asap: false,
            chunk_after_next_signature: false,
            outstanding: VecDeque::new(),
            held: VecDeque::new(),
            halted: None,
            random_state,
            snapshots: Snapshots {
                last: base_seqno,
                on_backups: snapshots_on_backups,
                ..Default::default()
            },
        };
        let commit = replica.commit_point().seqno;
        replica.tree.flush_to(commit);
        replica.draw_election_timeout();
        Ok(replica)
    }

    /// raft-rs draws election timeouts from the thread's RNG, which a simulation cannot replay; whenever the
    /// election clock restarts, this replaces the draw with one from the injected seed.
    fn draw_election_timeout(&mut self) {
        if self.node.raft.election_elapsed != 0 {
            return;
        }
        self.random_state = self.random_state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.random_state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let base = self.cfg.election_ticks;
        self.node
            .raft
            .set_randomized_election_timeout(base + (z % base as u64) as usize);
    }

    // ----- queries -----

    pub fn id(&self) -> u64 {
        self.cfg.id
    }

    /// The key-value store, holding every transaction in the log (committed or not). Replaced by a snapshot
    /// install: fetch it again after [`Action::SnapshotInstalled`].
    pub fn store(&self) -> &Arc<Store> {
        &self.node.store().store
    }

    pub fn ledger(&self) -> &Ledger<S> {
        &self.node.store().ledger
    }

    pub fn role(&self) -> Role {
        self.node.raft.state.into()
    }

    pub fn is_leader(&self) -> bool {
        self.node.raft.state == StateRole::Leader
    }

    /// The current view (Raft term).
    pub fn view(&self) -> u64 {
        self.node.raft.term
    }

    pub fn leader(&self) -> Option<u64> {
        Some(self.node.raft.leader_id).filter(|&l| l != raft::INVALID_ID)
    }

    pub fn last_seqno(&self) -> u64 {
        self.node.store().last_index()
    }

    /// The CCF commit point: the last committed signature transaction.
    pub fn commit_point(&self) -> TxId {
        self.node.store().commit
    }

    /// Raft's commit index (may be past the commit point, up to the next signature).
    pub fn raft_commit_index(&self) -> u64 {
        self.node.raft.raft_log.committed
    }

    /// Seqno of the snapshot this replica's log starts after (0 if none).
    pub fn base_seqno(&self) -> u64 {
        self.node.store().base_index
    }

    pub fn is_signature(&self, seqno: u64) -> bool {
        self.signatures.contains(&seqno)
    }

    /// The view of `seqno` in this replica's log.
    pub fn view_of(&self, seqno: u64) -> Option<u64> {
        if seqno > self.last_seqno() {
            return None;
        }
        self.node.store().views.view_of(seqno)
    }

    pub fn halted(&self) -> Option<&ConsensusError> {
        self.halted.as_ref()
    }

    /// Membership currently in force.
    pub fn conf_state(&self) -> ConfState {
        self.node.raft.prs().conf().to_conf_state()
    }

    /// On the primary: the highest seqno known to be replicated on `peer`.
    pub fn matched(&self, peer: u64) -> Option<u64> {
        self.node.raft.prs().get(peer).map(|p| p.matched)
    }

    /// CCF's status of a transaction id, from this replica's point of view.
    pub fn tx_status(&self, tx: TxId) -> TxStatus {
        let commit = self.commit_point();
        if tx.seqno == 0 {
            return TxStatus::Unknown;
        }
        let local_view = self.view_of(tx.seqno);
        let views_match = local_view == Some(tx.view);
        if commit.seqno >= tx.seqno {
            if views_match {
                TxStatus::Committed
            } else {
                TxStatus::Invalid
            }
        } else if views_match {
            TxStatus::Pending
        } else if commit.view > tx.view {
            // Every seqno past the commit point belongs to a view at least the commit point's.
            TxStatus::Invalid
        } else {
            TxStatus::Unknown
        }
    }

    /// Merkle root over every entry in the log (leaves 0..=last seqno).
    pub fn merkle_root(&self) -> [u8; 32] {
        self.tree.root()
    }

    /// The first signature transaction after `seqno` in the log: the one whose signed root covers `seqno`.
    pub fn signature_after(&self, seqno: u64) -> Option<u64> {
        self.signatures.range(seqno + 1..).next().copied()
    }

    /// The latest signature transaction at or below the commit point, if any is in the log.
    pub fn last_committed_signature(&self) -> Option<u64> {
        self.signatures.range(..=self.commit_point().seqno).next_back().copied()
    }

    /// What a receipt for `seqno` needs besides its leaf components: the signature transaction `sig_seqno`
    /// covering it (its signed record, read back from the ledger) and the Merkle path from leaf `seqno` to the
    /// root that signature signs (leaves 0..sig_seqno-1).
    pub fn receipt_parts(
        &self,
        seqno: u64,
        sig_seqno: u64,
    ) -> Result<(PrimarySignature, Vec<ProofStep>), ConsensusError> {
        if !self.signatures.contains(&sig_seqno) || seqno >= sig_seqno {
            return Err(ConsensusError::Inconsistent(format!(
                "{sig_seqno} is not a signature transaction covering {seqno}"
            )));
        }
        let bytes = self.ledger().read_entry(sig_seqno)?;
        let info = inspect(&bytes, self.view_of(sig_seqno).unwrap_or_default(), sig_seqno)?;
        let value = |table: &str| match info
            .public
            .maps
            .get(table)
            .and_then(|m| m.writes.get(&SINGLETON_KEY[..]))
        {
            Some(Some(v)) => Ok(v),
            _ => Err(ConsensusError::entry(
                sig_seqno,
                format!("no {table} at the singleton key"),
            )),
        };
        // The tree in memory keeps paths only from the commit point on; for an older transaction, the tree its
        // signature transaction stored (flushed to the commit point of the time, which is below `seqno`) has it.
        let path = if seqno >= self.tree.first_retained() {
            self.tree.path(seqno, sig_seqno)
        } else {
            MerkleTree::deserialise(value(TREE_TABLE)?).and_then(|stored| stored.path(seqno, sig_seqno))
        }
        .map_err(|e| ConsensusError::entry(sig_seqno, format!("Merkle path for {seqno}: {e}")))?;
        let raw = value(SIGNATURES_TABLE)?.clone();
        let sig =
            PrimarySignature::from_json_bytes(&raw).map_err(|e| ConsensusError::entry(sig_seqno, e.to_string()))?;
        Ok((sig, path))
    }

    /// Evidence transactions whose snapshot this replica built with a different digest (and so did not keep).
    pub fn snapshot_mismatches(&self) -> u64 {
        self.snapshots.mismatches
    }

    /// See [`ReplicaConfig::sign_on_election`].
    pub fn set_sign_on_election(&mut self, sign: bool) {
        self.cfg.sign_on_election = sign;
    }

    /// Trusts signature transactions signed with `cert_pem` (a node that joined).
    /// Ends the current ledger chunk at the next signature transaction (signed as soon as possible). On the
    /// primary only: the flag travels in the signature entry's header, so every replica closes the same chunk.
    pub fn request_chunk_end(&mut self) {
        self.chunk_after_next_signature = true;
        self.sign_asap = true;
    }

    /// Snapshots at the next signature transaction (signed as soon as possible), whatever the interval. On the
    /// primary only: backups snapshot where the primary's evidence says.
    pub fn request_snapshot(&mut self) {
        self.snapshots.asap = true;
        self.sign_asap = true;
    }

    pub fn trust_node(&mut self, id: u64, cert_pem: String) {
        self.trusted.insert(id, cert_pem);
    }

    /// A snapshot at the commit point (an encoded Raft `Snapshot`), for the snapshots directory and for joiners.
    pub fn snapshot(&self) -> Result<Vec<u8>, ConsensusError> {
        let snap = self.node.store().snapshot_at_commit()?;
        Ok(snap
            .write_to_bytes()
            .expect("encoding a protobuf message to a Vec cannot fail"))
    }

    /// Makes every appended ledger entry durable (called for [`Action::Persist`]).
    pub fn sync_ledger(&mut self) -> Result<(), ConsensusError> {
        Ok(self.node.mut_store().ledger.flush()?)
    }

    /// Whether the ledger has closed chunks left to sync or rename ([`Replica::sync_ledger`] does that work; an
    /// idle node should call it once in a while so that chunk files get their final names).
    pub fn ledger_needs_flush(&self) -> bool {
        self.node.store().ledger.needs_flush()
    }

    /// Makes everything durable and gives every chunk file its final name (a clean stop).
    pub fn settle_ledger(&mut self) -> Result<(), ConsensusError> {
        Ok(self.node.mut_store().ledger.settle()?)
    }

    // ----- the step function -----

    /// Feeds one event and returns what the node must do, in order.
    pub fn step(&mut self, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(error) = &self.halted {
            if let Event::Propose { version, .. } = event {
                let error = ProposeError::Halted(error.to_string());
                self.reject_client_proposal(version, error, &mut out);
            }
            return out;
        }
        match event {
            Event::Tick => {
                self.node.tick();
                self.ticks_since_signature += 1;
            }
            Event::Receive { from, message } => {
                if let Err(error) = self.receive(from, &message) {
                    out.push(Action::Dropped {
                        from: Some(from),
                        error,
                    });
                }
            }
            Event::Propose { version, write_set } => match self.propose(version, &write_set) {
                Ok(tx) => {
                    self.txs_since_signature += 1;
                    out.push(Action::Proposed(tx));
                }
                Err(error) => self.reject_client_proposal(version, error, &mut out),
            },
            Event::ProposeConfChange { change } => {
                let version = self.last_seqno() + 1;
                match self.propose_conf_change(change) {
                    Ok(tx) => out.push(Action::Proposed(tx)),
                    Err(error) => out.push(Action::ProposalRejected { version, error }),
                }
            }
            Event::Persisted { number } => self.persisted(number, &mut out),
            Event::TransferLeadership { to } => {
                let voters = self.conf_state().voters;
                if self.is_leader() && to != self.cfg.id && voters.contains(&to) {
                    self.node.transfer_leader(to);
                } else {
                    let error = ConsensusError::Raft(format!("cannot transfer the primary role to {to}"));
                    out.push(Action::Dropped { from: None, error });
                }
            }
            Event::SnapshotBuilt(built) => {
                if let Err(error) = self.snapshot_built(built) {
                    out.push(Action::Dropped { from: None, error });
                }
            }
            Event::Campaign => {
                if let Err(e) = self.node.campaign() {
                    out.push(Action::Dropped {
                        from: None,
                        error: ConsensusError::Raft(e.to_string()),
                    });
                }
            }
        }
        self.drain(&mut out);
        if self.halted.is_none() && self.is_leader() && self.node.raft.lead_transferee.is_none() {
            let unsigned = self.signatures.range(..).next_back().copied().unwrap_or(0) < self.last_seqno();
            let due = self.sign_asap
                || self.txs_since_signature >= self.cfg.signature_interval_tx
                || (unsigned && self.ticks_since_signature >= self.cfg.signature_interval_ticks);
            if due {
                if let Err(error) = self.emit_signature() {
                    self.halt(error, &mut out);
                }
                self.drain(&mut out);
            }
        }
        for build in self.snapshots.to_start.drain(..) {
            out.push(Action::BuildSnapshot(Box::new(build)));
        }
        self.draw_election_timeout();
        out
    }

    fn halt(&mut self, error: ConsensusError, out: &mut Vec<Action>) {
        if self.halted.is_none() {
            self.halted = Some(error.clone());
            out.push(Action::Halted { error });
        }
    }

    fn reject_client_proposal(&mut self, version: Version, error: ProposeError, out: &mut Vec<Action>) {
        let store = self.store().clone();
        if store.current_version() == version {
            if let Err(e) = store.rollback(version.saturating_sub(1)) {
                self.halt(ConsensusError::Kv(e), out);
            }
        }
        out.push(Action::ProposalRejected { version, error });
    }

    fn receive(&mut self, from: u64, bytes: &[u8]) -> Result<(), ConsensusError> {
        if bytes.len() > MAX_MESSAGE_SIZE {
            return Err(ConsensusError::TooLarge {
                what: "message",
                size: bytes.len() as u64,
                limit: MAX_MESSAGE_SIZE as u64,
            });
        }
        let mut m = Message::parse_from_bytes(bytes).map_err(|e| ConsensusError::MalformedMessage(e.to_string()))?;
        if m.from != from || m.to != self.cfg.id {
            return Err(ConsensusError::MalformedMessage(format!(
                "message from {} to {} on the channel from {from} to {}",
                m.from, m.to, self.cfg.id
            )));
        }
        if m.get_msg_type() == MessageType::MsgPropose {
            return Err(ConsensusError::MalformedMessage("peers may not propose".into()));
        }
        if m.entries.len() > MAX_ENTRIES_PER_MESSAGE {
            return Err(ConsensusError::TooLarge {
                what: "entries in a message",
                size: m.entries.len() as u64,
                limit: MAX_ENTRIES_PER_MESSAGE as u64,
            });
        }
        let secret = self.node.store().secret.clone();
        for e in m.mut_entries().iter_mut() {
            normalise(&secret, e)?;
        }
        self.node.step(m).map_err(|e| ConsensusError::Raft(e.to_string()))
    }

    fn check_can_propose(&self, version: Version) -> Result<(), ProposeError> {
        if !self.is_leader() {
            return Err(ProposeError::NotLeader { leader: self.leader() });
        }
        let expected = self.last_seqno() + 1;
        if version != expected {
            return Err(ProposeError::VersionMismatch { expected, got: version });
        }
        Ok(())
    }

    fn propose(&mut self, version: Version, ws: &WriteSet) -> Result<TxId, ProposeError> {
        self.check_can_propose(version)?;
        let current = self.store().current_version();
        if current != version {
            return Err(ProposeError::VersionMismatch {
                expected: current,
                got: version,
            });
        }
        let view = self.view();
        let bytes = encode_write_set_entry(&self.node.store().secret, view, version, ws)
            .map_err(|e| ProposeError::Encode(e.to_string()))?;
        self.node
            .propose(Vec::new(), bytes)
            .map_err(|e| ProposeError::Dropped(e.to_string()))?;
        if self.node.raft.raft_log.last_index() != version {
            return Err(ProposeError::Dropped("raft did not append the entry".into()));
        }
        Ok(TxId { view, seqno: version })
    }

    fn propose_conf_change(&mut self, cc: ConfChangeV2) -> Result<TxId, ProposeError> {
        let version = self.last_seqno() + 1;
        self.check_can_propose(version)?;
        let view = self.view();
        let bytes = conf_change_entry(&self.node.store().secret, view, version, &cc)
            .map_err(|e| ProposeError::Encode(e.to_string()))?;
        self.node
            .propose_conf_change(bytes, cc)
            .map_err(|e| ProposeError::Dropped(e.to_string()))?;
        if self.node.raft.raft_log.last_index() != version || self.node.raft.pending_conf_index != version {
            // Raft appended an empty entry instead (another change is pending or the change is invalid now).
            return Err(ProposeError::Dropped("raft refused the membership change".into()));
        }
        Ok(TxId { view, seqno: version })
    }

    /// Appends a signature transaction over the Merkle root of every entry so far (leaves 0..s-1).
    fn emit_signature(&mut self) -> Result<(), ConsensusError> {
        self.sign_asap = false;
        self.txs_since_signature = 0;
        self.ticks_since_signature = 0;
        let seqno = self.last_seqno() + 1;
        if self.tree.len() != seqno || self.store().current_version() != seqno - 1 {
            return Err(ConsensusError::Inconsistent(format!(
                "signing at {seqno} with {} leaves and store version {}",
                self.tree.len(),
                self.store().current_version()
            )));
        }
        let view = self.view();
        let commit = self.commit_point();
        let root = self.tree.root();
        let id = &self.identity;
        let sig = PrimarySignature::new(
            &id.key,
            &id.node_id,
            &id.cert_pem,
            view,
            seqno,
            commit.view,
            commit.seqno,
            &root,
        );
        // The stored tree keeps only what roots after the commit point need, so it stays small.
        let mut ws = WriteSet::default();
        ws.put(SIGNATURES_TABLE, &SINGLETON_KEY, &sig.to_json_bytes());
        ws.put(
            TREE_TABLE,
            &SINGLETON_KEY,
            &self.tree.serialise_flushed_to(commit.seqno),
        );
        let interval = self.cfg.snapshot_interval_tx;
        let snapshot_due =
            self.snapshots.asap || (interval > 0 && seqno >= self.snapshots.last.saturating_add(interval));
        if snapshot_due {
            snapshot::mark_for_snapshot(&mut ws, seqno);
        }
        let flags = if self.chunk_after_next_signature {
            consort_ledger::entry::FLAG_FORCE_CHUNK_AFTER
        } else {
            0
        };
        let bytes =
            crate::codec::encode_write_set_entry_with_flags(&self.node.store().secret, view, seqno, flags, &ws)?;
        let sig_entry = if snapshot_due { Some(bytes.clone()) } else { None };
        if !self.append_own(seqno, &ws, bytes)? {
            return Ok(());
        }
        self.chunk_after_next_signature = false;
        if let Some(sig_entry) = sig_entry {
            let store = self.store().clone();
            self.snapshots
                .start(&store, self.node.store(), sig_entry, view, seqno)?;
        }
        Ok(())
    }

    /// Appends a transaction the replica itself writes (signature, snapshot evidence) as `seqno`, the next one:
    /// applies `ws` to the store and proposes its encoded entry `bytes`. False, with the store rolled back, if Raft
    /// did not take it (the replica is no longer primary, or is handing the role over).
    fn append_own(&mut self, seqno: u64, ws: &WriteSet, bytes: Vec<u8>) -> Result<bool, ConsensusError> {
        let store = self.store().clone();
        store.apply(seqno, ws)?;
        let appended = self.node.propose(Vec::new(), bytes).is_ok() && self.node.raft.raft_log.last_index() == seqno;
        if !appended {
            store.rollback(seqno - 1)?;
        }
        Ok(appended)
    }

    /// A snapshot build finished. The primary records a digest nobody has claimed yet in an evidence transaction
    /// (its signature must still be in the log: the build is not stale); a backup keeps it for the evidence to come.
    fn snapshot_built(&mut self, built: SnapshotBuilt) -> Result<(), ConsensusError> {
        let seqno = built.seqno;
        let Some((data, digest)) = self.snapshots.finished(built)? else {
            return Ok(());
        };
        if !self.is_leader() || !self.signatures.contains(&seqno) {
            self.snapshots.keep_built(seqno, data, digest);
            return Ok(());
        }
        // The store refuses the evidence if it is not at the log's end (`append_own` applies it as the next version).
        let evidence = self.last_seqno() + 1;
        let ws = snapshot::evidence_write_set(&digest, seqno);
        let bytes = encode_write_set_entry(&self.node.store().secret, self.view(), evidence, &ws)?;
        if !self.append_own(evidence, &ws, bytes)? {
            self.snapshots.keep_built(seqno, data, digest);
            return Ok(());
        }
        self.txs_since_signature += 1;
        self.snapshots.push(PendingSnapshot { seqno, evidence, data });
        Ok(())
    }

    fn persisted(&mut self, number: u64, out: &mut Vec<Action>) {
        if !self.outstanding.contains(&number) {
            let error = ConsensusError::Inconsistent(format!("persist number {number} is not outstanding"));
            out.push(Action::Dropped { from: None, error });
            return;
        }
        self.outstanding.retain(|&n| n > number);
        self.node.on_persist_ready(number);
        while self.held.front().is_some_and(|(n, _)| *n <= number) {
            if let Some((_, msgs)) = self.held.pop_front() {
                send(msgs, out);
            }
        }
    }

    /// Handles every pending Ready: send, install, commit, append, persist.
    fn drain(&mut self, out: &mut Vec<Action>) {
        while self.halted.is_none() && self.node.has_ready() {
            let mut rd = self.node.ready();
            // The leader sends appends before its own disk write (Raft thesis 10.2.1). Snapshots are sent best
            // effort like any message: report them finished so Raft goes back to probing (and resends if lost).
            let messages = rd.take_messages();
            let snapshots_to: Vec<u64> = messages
                .iter()
                .filter(|m| m.get_msg_type() == MessageType::MsgSnapshot)
                .map(|m| m.to)
                .collect();
            send(messages, out);
            if let Some(ss) = rd.ss() {
                let role = Role::from(ss.raft_state);
                if role == Role::Leader {
                    self.sign_asap = self.cfg.sign_on_election;
                    self.txs_since_signature = 0;
                    self.ticks_since_signature = 0;
                }
                let leader = Some(ss.leader_id).filter(|&l| l != raft::INVALID_ID);
                out.push(Action::RoleChanged {
                    role,
                    view: self.node.raft.term,
                    leader,
                });
            }
            let mut snapshot = None;
            if !rd.snapshot().is_empty() {
                let snap = rd.snapshot().clone();
                if let Err(e) = self.install_snapshot(&snap, out) {
                    return self.halt(e, out);
                }
                snapshot = Some(
                    snap.write_to_bytes()
                        .expect("encoding a protobuf message to a Vec cannot fail"),
                );
            }
            let committed = rd.take_committed_entries();
            if let Err(e) = self.handle_committed(&committed, out) {
                return self.halt(e, out);
            }
            let entries = rd.take_entries();
            if let Err(e) = self.append(&entries, out) {
                return self.halt(e, out);
            }
            let hard_state = rd.hs().cloned();
            if let Some(hs) = &hard_state {
                self.node.mut_store().hard_state = hs.clone();
            }
            let held = rd.take_persisted_messages();
            let number = rd.number();
            let must_persist = rd.must_sync() || !entries.is_empty() || hard_state.is_some() || snapshot.is_some();
            self.node.advance_append_async(rd);
            if let Some(last) = committed.last() {
                self.node.advance_apply_to(last.index);
            }
            for to in snapshots_to {
                self.node.report_snapshot(to, raft::SnapshotStatus::Finish);
            }
            if must_persist {
                self.outstanding.push_back(number);
                out.push(Action::Persist {
                    number,
                    hard_state,
                    snapshot,
                });
                if !held.is_empty() {
                    self.held.push_back((number, held));
                }
            } else if let Some(&pending) = self.outstanding.back() {
                if !held.is_empty() {
                    self.held.push_back((pending, held));
                }
            } else {
                send(held, out);
            }
        }
    }

    fn handle_committed(
        &mut self,
        entries: &[raft::eraftpb::Entry],
        out: &mut Vec<Action>,
    ) -> Result<(), ConsensusError> {
        let mut new_commit = None;
        for e in entries {
            if e.get_entry_type() == EntryType::EntryConfChangeV2 {
                let cc = ConfChangeV2::parse_from_bytes(&e.data)
                    .map_err(|err| ConsensusError::entry(e.index, format!("conf change: {err}")))?;
                // Raft refuses changes that became invalid (e.g. removing the last voter): the entry stays in the
                // ledger, the membership does not change.
                if let Ok(cs) = self.node.apply_conf_change(&cc) {
                    // Sign soon, so that the commit point (and snapshots for joiners) move past the change.
                    self.sign_asap = true;
                    self.node.mut_store().conf_history.push((e.index, cs.clone()));
                    out.push(Action::ConfChanged {
                        seqno: e.index,
                        conf_state: cs,
                    });
                }
            }
            if self.signatures.contains(&e.index) {
                new_commit = Some(TxId {
                    view: e.term,
                    seqno: e.index,
                });
            }
        }
        if let Some(c) = new_commit.filter(|c| c.seqno > self.commit_point().seqno) {
            // Paths below the commit point are served from the trees signature transactions store: memory stays
            // proportional to the uncommitted suffix, not to the ledger.
            self.tree.flush_to(c.seqno);
            let log = self.node.mut_store();
            log.commit = c;
            log.store.set_committed(c.seqno);
            log.ledger.commit(c.seqno)?;
            out.push(Action::Committed(c));
            while self.snapshots.pending.front().is_some_and(|p| p.evidence <= c.seqno) {
                let Some(p) = self.snapshots.pending.pop_front() else {
                    break;
                };
                let log = self.node.store();
                let view = log.views.view_of(p.seqno).unwrap_or_default();
                let snap = log.raft_snapshot(p.data, p.seqno, view);
                out.push(Action::SnapshotCommitted {
                    seqno: p.seqno,
                    evidence: p.evidence,
                    snapshot: snap,
                });
            }
        }
        Ok(())
    }

    fn append(&mut self, entries: &[raft::eraftpb::Entry], out: &mut Vec<Action>) -> Result<(), ConsensusError> {
        let Some(first) = entries.first().map(|e| e.index) else {
            return Ok(());
        };
        if first <= self.last_seqno() {
            self.truncate(first - 1, out)?;
        }
        let secret = self.node.store().secret.clone();
        let before = self.store().current_version();
        for e in entries {
            // Entries from peers were checked by `normalise` when received, and this replica's own proposals are
            // well formed; `accept` parses each one again in any case. Only Raft's empty entries need bytes here.
            let mut e = e.clone();
            crate::codec::fill_empty(&secret, &mut e)?;
            let bytes = crate::codec::ledger_bytes(&e).to_vec();
            self.with_partial(|p| p.accept(e.term, e.index, bytes, true))?;
        }
        let now = self.store().current_version();
        if now > before {
            out.push(Action::Applied {
                first: before + 1,
                last: now,
            });
        }
        Ok(())
    }

    /// Drops every entry after `to` (a new primary's log replaces an uncommitted suffix).
    fn truncate(&mut self, to: u64, out: &mut Vec<Action>) -> Result<(), ConsensusError> {
        let commit = self.commit_point().seqno;
        if to < commit {
            return Err(ConsensusError::Inconsistent(format!(
                "rollback to {to} below the commit point {commit}"
            )));
        }
        let log = self.node.mut_store();
        log.ledger.truncate(to)?;
        log.store.rollback(to)?;
        log.terms.truncate((to - log.base_index) as usize);
        log.views.truncate(to);
        log.conf_changes.split_off(&(to + 1));
        self.tree.truncate(to + 1);
        self.signatures.split_off(&(to + 1));
        self.snapshots.truncate(to);
        out.push(Action::RolledBack { to });
        Ok(())
    }

    fn install_snapshot(&mut self, snap: &Snapshot, out: &mut Vec<Action>) -> Result<(), ConsensusError> {
        let trusted = &self.trusted;
        let secret = self.node.store().secret.clone();
        let v = snapshot::open(&snap.data, &secret, |pem| trusted.values().any(|c| c == pem))?;
        let meta = snap.get_metadata();
        if (meta.index, meta.term) != (v.seqno, v.view) {
            return Err(ConsensusError::InvalidSnapshot(
                "metadata does not match the bundle".into(),
            ));
        }
        let base = TxId {
            view: v.view,
            seqno: v.seqno,
        };
        let log = self.node.mut_store();
        log.ledger.clear()?;
        log.store = Arc::new(v.store);
        log.base_index = base.seqno;
        log.base_term = base.view;
        log.base_bundle = Some(snap.data.to_vec());
        log.terms.clear();
        log.conf_changes.clear();
        log.conf_history = vec![(base.seqno, meta.get_conf_state().clone())];
        log.views = v.view_history;
        log.commit = base;
        self.tree = v.tree;
        self.signatures = [base.seqno].into();
        self.snapshots.reset(base.seqno);
        out.push(Action::SnapshotInstalled(base));
        out.push(Action::Committed(base));
        Ok(())
    }

    fn with_partial<R>(&mut self, f: impl FnOnce(&mut PartialReplicaRef<'_, S>) -> R) -> R {
        let mut p = PartialReplicaRef {
            log: self.node.mut_store(),
            tree: &mut self.tree,
            signatures: &mut self.signatures,
            trusted: &self.trusted,
            snapshots: Some(&mut self.snapshots),
        };
        f(&mut p)
    }
}

/// The replica's state before its `RawNode` exists (replay at start-up).
struct PartialReplica<'a, S: LedgerStorage> {
    log: Log<S>,
    tree: MerkleTree,
    signatures: BTreeSet<u64>,
    trusted: &'a BTreeMap<u64, String>,
}

impl<S: LedgerStorage> PartialReplica<'_, S> {
    fn as_ref(&mut self) -> PartialReplicaRef<'_, S> {
        PartialReplicaRef {
            log: &mut self.log,
            tree: &mut self.tree,
            signatures: &mut self.signatures,
            trusted: self.trusted,
            snapshots: None,
        }
    }

    /// Replays the ledger from seqno `from` on, streaming it one chunk at a time, so memory holds at most two
    /// chunks besides the store and the tree. Each chunk is decoded (parsed, decrypted, hashed) in one pass, on
    /// `offload`'s core while this one applies the previous chunk if there is one; entries are then taken in
    /// order exactly as [`PartialReplicaRef::accept`] would, signatures verified against the recomputed root.
    /// Entries covered by a signature at or below `raft_commit` (the persisted Raft commit index) are committed:
    /// the store keeps no undo records for them.
    fn replay(&mut self, from: u64, raft_commit: u64, offload: Option<&dyn Offload>) -> Result<(), ConsensusError> {
        let last = self.log.ledger.last_seqno();
        if from > last {
            return Ok(());
        }
        let secret = self.log.secret.clone();
        let mut current = DecodedChunk::decode(&secret, self.log.ledger.read_chunk_of(from)?, from);
        loop {
            let next_from = current.chunk.last_seqno() + 1;
            let Some(offload) = offload.filter(|_| next_from <= last) else {
                self.apply_chunk(current, raft_commit)?;
                if next_from > last {
                    return Ok(());
                }
                current = DecodedChunk::decode(&secret, self.log.ledger.read_chunk_of(next_from)?, next_from);
                continue;
            };
            let next_chunk = self.log.ledger.read_chunk_of(next_from)?;
            let mut next = None;
            let mut applied = Ok(());
            let mut current_slot = Some(current);
            offload.run_beside(
                Box::new(|| next = Some(DecodedChunk::decode(&secret, next_chunk, next_from))),
                &mut || {
                    if let Some(c) = current_slot.take() {
                        applied = self.apply_chunk(c, raft_commit);
                    }
                },
            );
            applied?;
            current = next.ok_or_else(|| ConsensusError::Inconsistent("the offloaded decoding did not run".into()))?;
        }
    }

    fn apply_chunk(&mut self, decoded: DecodedChunk, raft_commit: u64) -> Result<(), ConsensusError> {
        let committed_through = decoded.committed_through(raft_commit).unwrap_or(0);
        for (seqno, view, entry) in decoded.entries {
            let is_signature = entry.info.is_signature;
            let bytes = decoded
                .chunk
                .entry(seqno)
                .ok_or_else(|| ConsensusError::Inconsistent(format!("entry {seqno} is not in its chunk")))?;
            self.as_ref()
                .accept_decoded(view, seqno, bytes, entry, false, seqno <= committed_through)?;
            if is_signature && seqno <= raft_commit {
                // Entries of earlier chunks that this signature covers still had undo records.
                self.log.store.set_committed(seqno);
            }
        }
        match decoded.error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Borrowed view of the state one entry changes.
struct PartialReplicaRef<'a, S: LedgerStorage> {
    log: &'a mut Log<S>,
    tree: &'a mut MerkleTree,
    signatures: &'a mut BTreeSet<u64>,
    trusted: &'a BTreeMap<u64, String>,
    /// Where periodic snapshots are started and claimed (none while replaying the ledger at start-up).
    snapshots: Option<&'a mut Snapshots>,
}

impl<S: LedgerStorage> PartialReplicaRef<'_, S> {
    /// Takes entry `(view, seqno)` into the log: checks it, applies its write set to the store unless the store
    /// already holds it (the primary's own transactions), verifies it first if it is a signature transaction,
    /// appends it to the ledger (unless replaying the ledger) and to the Merkle tree.
    fn accept(&mut self, view: u64, seqno: u64, bytes: Vec<u8>, append: bool) -> Result<(), ConsensusError> {
        let decrypt = seqno > self.log.store.current_version();
        let decoded = decode(&self.log.secret, &bytes, view, seqno, decrypt)?;
        self.accept_decoded(view, seqno, &bytes, decoded, append, false)
    }

    /// [`Self::accept`] for an entry already [`decode`]d (decrypted if the store does not hold it yet).
    /// `committed`: a committed signature covers the entry (replay), so the store keeps no undo record for it.
    fn accept_decoded(
        &mut self,
        view: u64,
        seqno: u64,
        bytes: &[u8],
        decoded: DecodedEntry,
        append: bool,
        committed: bool,
    ) -> Result<(), ConsensusError> {
        if seqno != self.log.last_index() + 1 || self.tree.len() != seqno {
            return Err(ConsensusError::Inconsistent(format!(
                "entry {seqno} after {} with {} Merkle leaves",
                self.log.last_index(),
                self.tree.len()
            )));
        }
        if self.log.terms.last().is_some_and(|t| t > view) || view < self.log.base_term {
            return Err(ConsensusError::entry(seqno, format!("view {view} goes backwards")));
        }
        let DecodedEntry { info, private } = decoded;
        let store = self.log.store.clone();
        if seqno > store.current_version() {
            let private =
                private.ok_or_else(|| ConsensusError::Inconsistent(format!("entry {seqno} was not decrypted")))?;
            if info.is_signature {
                // The signatures table is public: the public maps are all the check needs.
                self.verify_signature(view, seqno, &info.public)?;
            }
            if let Some(claimed) = snapshot::evidence_in(&info.public) {
                self.claim_snapshot(seqno, claimed);
            }
            let marked = info.is_signature && snapshot::is_marked_for_snapshot(&info.public, seqno);
            let mut batch = WriteBatch::from(info.public);
            batch.maps.extend(private.maps);
            store.apply_batch(seqno, batch, committed)?;
            if marked {
                if let Some(snapshots) = self.snapshots.as_deref_mut() {
                    snapshots.marked(&store, self.log, bytes, view, seqno)?;
                }
            }
        }
        if append {
            self.log.ledger.append(seqno, bytes, info.is_signature)?;
        }
        self.tree.append(info.leaf);
        self.log.terms.push(view);
        self.log.views.note(view, seqno);
        if let Some(cc) = info.conf_change {
            self.log.conf_changes.insert(seqno, cc);
        }
        if info.is_signature {
            self.signatures.insert(seqno);
        }
        Ok(())
    }

    /// A backup received evidence transaction `evidence` claiming a snapshot at `claimed.seqno` with digest
    /// `claimed.hash`: its own build of that snapshot is kept if the digests agree. Not fatal otherwise (the
    /// snapshot is only an optimisation for joiners): counted in `mismatches`.
    fn claim_snapshot(&mut self, evidence: u64, claimed: snapshot::Evidence) {
        let seqno = claimed.seqno;
        // A replica whose log starts at or after `seqno` (it installed a snapshot there) has nothing to compare.
        let usable = seqno < evidence && seqno > self.log.base_index && self.signatures.contains(&seqno);
        if let Some(snapshots) = self.snapshots.as_deref_mut().filter(|_| usable) {
            snapshots.claim(evidence, seqno, claimed.hash);
        }
    }

    fn verify_signature(&self, view: u64, seqno: u64, ws: &WriteSet) -> Result<(), ConsensusError> {
        let bad = |reason: String| ConsensusError::BadSignature { seqno, reason };
        let value = match ws
            .maps
            .get(SIGNATURES_TABLE)
            .and_then(|m| m.writes.get(&SINGLETON_KEY[..]))
        {
            Some(Some(v)) => v,
            _ => return Err(bad("no signature at the singleton key".into())),
        };
        let sig = PrimarySignature::from_json_bytes(value).map_err(|e| bad(e.to_string()))?;
        if sig.seqno != seqno || sig.view != view {
            return Err(bad(format!("signature claims {}.{}", sig.view, sig.seqno)));
        }
        let root = self.tree.try_root_at(seqno).map_err(|e| bad(e.to_string()))?;
        if sig.root_bytes().map_err(|e| bad(e.to_string()))? != root {
            return Err(bad(format!(
                "signed root {} is not the Merkle root {}",
                sig.root,
                hex::encode(root)
            )));
        }
        if !self.trusted.values().any(|c| *c == sig.cert) {
            return Err(bad(format!("signer {} is not a trusted node", sig.node)));
        }
        let der = sig.sig_bytes().map_err(|e| bad(e.to_string()))?;
        verify_root(&sig.cert, &root, &der).map_err(|e| bad(e.to_string()))
    }
}
