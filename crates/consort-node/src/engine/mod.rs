//! The transaction engine of one node over the replication core: the replica behind its lock, the store it
//! mirrors for lock-free reads, and the threads that drive it (ticker, persister, snapshot builds).
//!
//! The primary executes transactions and proposes their write sets to its [`Replica`]; backups apply what the
//! primary replicates. Raft messages leave through the [`RaftTransport`] the node attaches (the node-to-node
//! channels); the engine knows nothing of HTTP or TLS.
//!
//! Ordering invariant: every store commit and every replica step happens under the engine lock, and a write is
//! committed to the store and proposed (`Event::Propose`) under one hold of it, so KV versions, ledger entries and
//! Merkle leaves are produced in the same order (version n is entry n is leaf n). A one-node service is a one-voter
//! Raft: the same code path, with nobody to send to.

pub mod certificates;
mod execute;
mod genesis;
mod historical;
mod join_record;
mod membership;
mod persist;
pub mod recovery;
mod refusal;
pub mod secrets;
mod snapshots;
mod status;
mod ticker;

pub mod offload;
pub mod snapshot_files;
pub mod storage;

pub use execute::WriteError;
pub use genesis::GenesisError;
pub use historical::{CommittedEntries, MAX_ENTRY_SOURCES_PER_HOLD};

pub use join_record::{JoinRecord, JoinStart, SeedPeer, JOIN_FILE};
pub use membership::{node_records, NodeRecord, PEERS_FILE};
pub use persist::{write_atomic, HARD_STATE_COMMIT_INTERVAL, HARD_STATE_FILE, SNAPSHOT_FILE};
use refusal::endorsed_peer;
pub use refusal::{NodeDirs, PeerCertFault, StartRefusal};
pub use status::{ConsensusState, PeerState, ReceiptError, ReceiptParts};
pub use ticker::TICK_MS;

use crate::config::NodeConfig;
use crate::identity::Identities;
use crate::metrics::Metrics;
use bytes::Bytes;
use consort_consensus::eraftpb::HardState;
use consort_consensus::{Action, Event, NodeIdentity, PersistedState, ProposeError, Replica};
use consort_kv::Store;
use consort_ledger::{SERVICE_INFO_TABLE, SINGLETON_KEY};
use persist::{read_optional, PendingPersist};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};
use storage::{FsStorage, SyncQueue};

pub use consort_consensus::{NodeId, RaftId, Seqno, TxId, TxStatus, View};

/// How [`Engine::open_with`] opens the engine, beyond the configuration and identities.
#[derive(Default)]
pub struct OpenOptions {
    /// How this node comes up; see [`Start`].
    pub start: Start,
    /// For a genesis node: its own attestation, recorded in the nodes table, and its code id, added to the join
    /// policy (as CCF 6 does, so that nodes running the same code can join).
    pub attestation: Option<GenesisAttestation>,
    /// The platform that seals the node's files: the keyring file is written again, sealed, when a rekey changes
    /// it. Without one (tests) the new keyring is kept in memory only.
    pub platform: Option<Arc<dyn consort_attest::Platform>>,
}

impl std::fmt::Debug for OpenOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenOptions")
            .field("start", &self.start)
            .field("attestation", &self.attestation)
            .field("platform", &self.platform.as_ref().map(|p| p.kind()))
            .finish()
    }
}

/// How a node comes up. Which one is never inferred from what happens to be on disk: a host that deletes a node's
/// ledger and Raft state must not make it start a new service under the real service identity (reusing the ledger
/// secret with the same IVs), nor make a voter forget its votes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// A restart: the node must find its ledger, Raft state or snapshot; if all are gone it refuses to start.
    #[default]
    Restart,
    /// A new service whose identity was created just now: the directories must hold no state; runs genesis.
    Genesis,
    /// Right after a join: starts from the join record, waiting for the primary to replicate.
    Joined,
    /// A new service on a copy of an old ledger (`consort node recover`): the identity was created just now and
    /// the recovery record names the old ledger's base; writes the recovery transaction.
    Recover,
}

/// The genesis node's attestation.
#[derive(Debug, Clone)]
pub struct GenesisAttestation {
    /// CCF's `quote_info` object (`format`, `quote`, `endorsements`).
    pub quote_info: serde_json::Value,
    /// What the join policy starts with, as (table, key, JSON value): the code id (virtual), or the launch
    /// measurement, host data and minimum TCB of the genesis node's own report (SNP), so that nodes like it can join.
    pub join_policy: Vec<(&'static str, String, Vec<u8>)>,
}

/// What the engine calls with the node id of a new primary.
pub type PrimaryChangeHook = Box<dyn Fn(&NodeId) + Send + Sync>;

/// Where the engine's Raft messages go: the node-to-node channels in a running node, nothing in a test engine.
pub trait RaftTransport: Send + Sync {
    /// Queues `message` for the node `node_id`; dropping it is allowed (Raft retransmits).
    fn send_raft(&self, node_id: &NodeId, message: Bytes);
}

/// Errors while starting or running the engine; each keeps its cause.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A file or directory of the node could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The peers file does not parse.
    #[error("{PEERS_FILE}: {0}")]
    PeersFile(#[source] serde_json::Error),
    /// The node must not start from what it found (see [`Start`]).
    #[error("refusing to start: {0}")]
    Refused(#[source] StartRefusal),
    /// The join record does not parse.
    #[error("{}: {source}", path.display())]
    JoinRecord {
        /// The record's file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The replication core refused to open or step.
    #[error("consensus: {0}")]
    Consensus(#[from] consort_consensus::ConsensusError),
    /// An entry of the ledger on disk did not check out during replay (a changed byte inside an entry fails its
    /// AES-GCM tag or its signature): the chunk file that holds it.
    #[error("ledger chunk {}: {source}", file.display())]
    DamagedEntry {
        /// The chunk file holding the entry.
        file: PathBuf,
        /// What replay found, naming the transaction (boxed: it is large, and this error is rare).
        #[source]
        source: Box<consort_consensus::ConsensusError>,
    },
    /// Governance refused the genesis transaction.
    #[error("genesis: {0}")]
    Gov(#[from] consort_gov::GovError),
    /// Genesis could not complete.
    #[error("genesis: {0}")]
    Genesis(#[from] GenesisError),
    /// A recovery could not start or go on.
    #[error("recovery: {0}")]
    Recovery(#[from] recovery::RecoveryError),
}

impl EngineError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EngineError::Io {
            path: path.into(),
            source,
        }
    }
}

/// The peers file, read: certificate by node id (as saved), and the well-formed node ids by Raft id.
type SavedPeers = (BTreeMap<NodeId, String>, BTreeMap<RaftId, NodeId>);

/// State changed only under the engine mutex.
struct Locked {
    replica: Replica<FsStorage>,
    pending: Option<PendingPersist>,
    /// Seqno of the membership change that made each node a learner or voter (as seen by this node).
    member_since: BTreeMap<u64, u64>,
    /// The hard state last written to disk, and when.
    durable_hard_state: Option<(HardState, Instant)>,
    /// The keyring as last mirrored and saved: its size and newest version.
    secrets_saved: (usize, u64),
}

/// The replica's signing identity, and its opener of rekeys' secrets, from the node's identities.
fn replica_identity(ids: &Identities) -> NodeIdentity {
    NodeIdentity {
        key: ids.node_key.clone(),
        cert_pem: ids.node_cert_pem.clone(),
        node_id: ids.node_id.to_string(),
        secret_opener: Some(Arc::new(secrets::NodeSecretOpener::new(ids))),
    }
}

fn replica_secrets_mark(replica: &Replica<FsStorage>) -> (usize, u64) {
    let s = replica.ledger_secrets();
    (s.len(), s.latest().0)
}

/// Holding the engine lock longer than this is logged (with where it was taken): every transaction on the node
/// waits while it is held, so long holds show up directly in commit latency.
const SLOW_ENGINE_LOCK: Duration = Duration::from_millis(20);

/// The engine lock, held: logs a warning when released after more than [`SLOW_ENGINE_LOCK`].
struct EngineGuard<'a> {
    guard: MutexGuard<'a, Locked>,
    since: Instant,
    at: &'static std::panic::Location<'static>,
}

impl std::ops::Deref for EngineGuard<'_> {
    type Target = Locked;
    fn deref(&self) -> &Locked {
        &self.guard
    }
}

impl std::ops::DerefMut for EngineGuard<'_> {
    fn deref_mut(&mut self) -> &mut Locked {
        &mut self.guard
    }
}

impl Drop for EngineGuard<'_> {
    fn drop(&mut self) {
        let held = self.since.elapsed();
        if held > SLOW_ENGINE_LOCK {
            tracing::warn!(held_ms = held.as_millis() as u64, at = %self.at, "engine lock held long");
        }
    }
}

/// The engine of one node: owns the replica (behind the engine lock), the mirrors of its state that requests read
/// without the lock, and the node's peers. Created by [`Engine::open`].
pub struct Engine {
    cfg: NodeConfig,
    ids: Identities,
    metrics: Metrics,
    locked: Mutex<Locked>,
    /// The replica's store, mirrored so that reads need not take the engine lock (replaced by a snapshot install).
    store: RwLock<Arc<Store>>,
    committed_seqno: AtomicU64,
    committed_view: AtomicU64,
    /// Mirror of the replica's view, so that stamping a response with a TxID does not take the engine lock.
    view: AtomicU64,
    /// Mirror of the replica's ledger secrets (commit evidence, join answers), replaced when a rekey changes them.
    secrets: RwLock<consort_ledger::LedgerSecrets>,
    /// Seals the keyring file (see [`OpenOptions::platform`]).
    platform: Option<Arc<dyn consort_attest::Platform>>,
    /// Raft id of the primary as last seen (0: unknown).
    leader: AtomicU64,
    node_id: NodeId,
    raft_id: RaftId,
    /// Wakes the persister thread when there is persist work.
    wake: (Mutex<bool>, Condvar),
    /// Ledger fsyncs deferred out of the engine lock (see `persist_pending`).
    syncs: SyncQueue,
    /// Held by the thread doing persist work, which runs partly outside the engine lock.
    persisting: Mutex<()>,
    transport: OnceLock<Arc<dyn RaftTransport>>,
    /// Told the node id of a new primary as soon as this node learns it.
    on_primary_change: OnceLock<PrimaryChangeHook>,
    /// Node id of every peer by Raft id.
    peers: RwLock<BTreeMap<RaftId, NodeId>>,
    /// Certificate of every peer by node id, as saved in [`PEERS_FILE`].
    peer_certs: Mutex<BTreeMap<NodeId, String>>,
    /// For a joined node, the nodes its join answer named (see [`Engine::join_seed`]).
    join_seed: Vec<SeedPeer>,
    started: Instant,
    /// This engine, for the threads it starts (snapshot builds) to report back to.
    me: OnceLock<Weak<Engine>>,
    /// For a recovered service: the recovery base and where the recovery stands.
    recovery: Mutex<Option<(u64, recovery::RecoveryStage)>>,
    /// A private restore is running (one at a time).
    restoring: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("node_id", &self.ids.node_id)
            .finish_non_exhaustive()
    }
}

/// The peers saved in [`PEERS_FILE`] (node id -> certificate), and their node ids by Raft id. The file is on the
/// host's disk: a signer is believed only with a certificate the service endorsed for the key its node id names;
/// anything else stops the node.
fn saved_peers(cfg: &NodeConfig, ids: &Identities) -> Result<SavedPeers, EngineError> {
    let Some(raw) = read_optional(&cfg.storage.secrets_dir.join(PEERS_FILE))? else {
        return Ok(Default::default());
    };
    let saved: BTreeMap<String, String> = serde_json::from_slice(&raw).map_err(EngineError::PeersFile)?;
    let service_key = ids.service_key.verifying_key();
    let (mut certs, mut peers) = (BTreeMap::new(), BTreeMap::new());
    for (node_id, cert) in saved {
        let id = endorsed_peer(&node_id, &cert, &service_key)
            .map_err(|cause| EngineError::Refused(StartRefusal::UnendorsedPeer { node_id, cause }))?;
        peers.insert(id.raft_id(), id.clone());
        certs.insert(id, cert);
    }
    Ok((certs, peers))
}

/// The nodes whose signatures this node accepts at start (itself, and the peers it saved, each believed only with
/// a certificate the service endorsed), and the saved peers.
fn trusted_signers(cfg: &NodeConfig, ids: &Identities) -> Result<(BTreeMap<RaftId, String>, SavedPeers), EngineError> {
    let mut trusted = BTreeMap::from([(ids.node_id.raft_id(), ids.node_cert_pem.clone())]);
    let (known_peers, peers) = saved_peers(cfg, ids)?;
    for (id, node_id) in &peers {
        trusted.extend(known_peers.get(node_id).map(|cert| (*id, cert.clone())));
    }
    Ok((trusted, (known_peers, peers)))
}

/// A crash cut an append short: the ledger left those bytes out (its files are cut at the first write).
fn warn_torn_tail(replica: &Replica<FsStorage>) {
    if let Some(torn) = replica.ledger().torn_tail() {
        tracing::warn!("ledger: {torn}");
    }
}

fn dir_is_empty(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).map(|mut d| d.next().is_none()).unwrap_or(true)
}

/// Whether the node may start as `start` with what it found (`empty`: no ledger, Raft state or snapshot), and
/// whether that is genesis. Genesis only for an identity created just now; a joined node waits for the primary.
fn may_start(
    cfg: &NodeConfig,
    ids: &Identities,
    start: Start,
    empty: bool,
    join_record: Option<&JoinRecord>,
) -> Result<bool, EngineError> {
    let dirs = || NodeDirs {
        secrets: cfg.storage.secrets_dir.clone(),
        ledger: cfg.storage.ledger_dir.clone(),
    };
    let raft_id = ids.node_id.raft_id();
    let refusal = if join_record.is_some_and(|r| r.initial_voters.contains(&raft_id.get())) {
        StartRefusal::JoinerInFirstMembership { dirs: dirs() }
    } else {
        match (start, empty) {
            (Start::Genesis, true) => return Ok(true),
            (Start::Genesis, false) => StartRefusal::GenesisOverState { dirs: dirs() },
            (Start::Joined, _) if join_record.is_none() => StartRefusal::JoinedWithoutRecord { dirs: dirs() },
            (Start::Joined, _) | (Start::Restart, false) | (Start::Recover, _) => return Ok(false),
            (Start::Restart, true) => StartRefusal::StateGone { dirs: dirs() },
        }
    };
    Err(EngineError::Refused(refusal))
}

/// The Raft state of a node that has none on disk yet, made durable before the node writes its first ledger entry:
/// from then on a ledger without `raft_hard_state` means the file was deleted (the node may have voted and forgot
/// it), which [`may_start`]'s caller refuses. A node with no hard state may hold a join snapshot (it joined and
/// had not started yet) but no ledger entry.
fn first_hard_state(cfg: &NodeConfig, start: Start) -> Result<HardState, EngineError> {
    let ledger = &cfg.storage.ledger_dir;
    let path = Engine::hard_state_path(cfg);
    if start == Start::Recover {
        // A recovered node starts Raft afresh over the old ledger (its old part is the base).
        let hs = HardState::default();
        write_atomic(&path, &consort_consensus::encode_hard_state(&hs)).map_err(|e| EngineError::io(&path, e))?;
        return Ok(hs);
    }
    let holds_entries = std::fs::read_dir(ledger)
        .map_err(|e| EngineError::io(ledger, e))?
        .flatten()
        .any(|f| f.metadata().is_ok_and(|m| m.len() > 0));
    if holds_entries {
        return Err(EngineError::Refused(StartRefusal::HardStateMissing {
            hard_state: path,
            ledger_dir: ledger.clone(),
        }));
    }
    let hs = HardState::default();
    write_atomic(&path, &consort_consensus::encode_hard_state(&hs)).map_err(|e| EngineError::io(&path, e))?;
    Ok(hs)
}

/// Names the chunk file that holds the entry a replay error is about (a changed byte inside an entry is found by
/// decryption or signature checks, which know the seqno but not the file); other errors pass through.
fn name_damaged_chunk(ledger_dir: &std::path::Path, e: consort_consensus::ConsensusError) -> EngineError {
    use consort_consensus::ConsensusError::{BadSignature, InvalidEntry};
    let seqno = match &e {
        InvalidEntry { seqno, .. } | BadSignature { seqno, .. } => *seqno,
        _ => return e.into(),
    };
    let holder = std::fs::read_dir(ledger_dir).into_iter().flatten().flatten().find(|f| {
        consort_ledger::parse_chunk_name(&f.file_name().to_string_lossy())
            .is_some_and(|c| c.start <= seqno && c.end.is_none_or(|end| seqno <= end))
    });
    match holder {
        Some(f) => EngineError::DamagedEntry {
            file: f.path(),
            source: Box::new(e),
        },
        None => e.into(),
    }
}

/// Stops the process: the node found a state it must not go past (disk failure, halted replica).
fn fatal(what: &str, e: impl std::fmt::Display) -> ! {
    tracing::error!("fatal: {what}: {e}; stopping the node to keep store and ledger consistent");
    eprintln!("fatal: {what}: {e}");
    std::process::exit(70)
}

impl Engine {
    /// Opens the node's ledger and Raft state: replays them if the node has run before (restart), or creates a
    /// new service with this node as its only voter (genesis). `trusted` lists the other nodes whose signature
    /// transactions this node accepts (Raft id -> certificate PEM).
    pub fn open(cfg: NodeConfig, ids: Identities) -> Result<Arc<Self>, EngineError> {
        Self::open_with(
            cfg,
            ids,
            OpenOptions {
                start: Start::Genesis,
                ..OpenOptions::default()
            },
        )
    }

    /// [`Engine::open`] with, for a genesis node, its attestation. A node that joined a service (it holds a
    /// [`JoinRecord`]) starts from what the record names, and never runs genesis.
    pub fn open_with(cfg: NodeConfig, ids: Identities, options: OpenOptions) -> Result<Arc<Self>, EngineError> {
        let join_record = JoinRecord::load(&cfg.storage.secrets_dir)?;
        for dir in [&cfg.storage.ledger_dir, &cfg.storage.snapshots_dir] {
            std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
        }
        let syncs = SyncQueue::default();
        let storage = FsStorage::with_sync_queue(&cfg.storage.ledger_dir, syncs.clone())
            .map_err(|e| EngineError::io(&cfg.storage.ledger_dir, e))?;
        let node_id = ids.node_id.clone();
        let raft_id = node_id.raft_id();
        let (trusted, (known_peers, peers)) = trusted_signers(&cfg, &ids)?;
        let hard_state: Option<HardState> = read_optional(&Self::hard_state_path(&cfg))?
            .map(|b| consort_consensus::decode_hard_state(&b))
            .transpose()?;
        let snapshot = read_optional(&Self::snapshot_path(&cfg))?;
        let empty = hard_state.is_none() && snapshot.is_none() && dir_is_empty(&cfg.storage.ledger_dir);
        let fresh = may_start(&cfg, &ids, options.start, empty, join_record.as_ref())?;
        let record = recovery::our_record(&cfg, &ids, options.platform.as_deref())?;
        let hard_state = match hard_state {
            Some(hs) => Some(hs),
            None => Some(first_hard_state(&cfg, options.start)?),
        };
        let durable_hard_state = hard_state.clone().map(|h| (h, Instant::now()));
        let persisted = PersistedState {
            hard_state,
            snapshot,
            // The first membership of the service: this node at genesis; for a joiner, what the primary named.
            voters: match &join_record {
                Some(record) => record.initial_voters.clone(),
                None => vec![raft_id.get()],
            },
            recovery: recovery::base_of(record.as_ref()),
        };
        let identity = replica_identity(&ids);
        let mut rc = Self::replica_config(&cfg, raft_id);
        // A new service's first node signs only after the transaction that records it (genesis, or the recovery
        // transaction): a ledger reader must know the signer's certificate before its first signature.
        rc.sign_on_election = !fresh && record.is_none();
        // Restart replay decodes the next ledger chunk on a second core while this one applies the current one.
        let offload = offload::ThreadOffload;
        let secrets = ids.ledger_secrets.clone();
        let replica = Replica::open_with_offload(rc, identity, trusted, secrets, storage, persisted, Some(&offload))
            .map_err(|e| name_damaged_chunk(&cfg.storage.ledger_dir, e))?;
        warn_torn_tail(&replica);
        let store = replica.store().clone();
        let commit = replica.commit_point();
        let view = replica.view();
        let secrets_now = replica.ledger_secrets().clone();
        let secrets_saved = replica_secrets_mark(&replica);
        let svc = Arc::new(Engine {
            cfg,
            ids,
            metrics: Metrics::new(),
            locked: Mutex::new(Locked {
                replica,
                pending: None,
                member_since: BTreeMap::new(),
                secrets_saved,
                durable_hard_state,
            }),
            store: RwLock::new(store),
            committed_seqno: AtomicU64::new(commit.seqno.get()),
            committed_view: AtomicU64::new(commit.view.get()),
            view: AtomicU64::new(view.get()),
            secrets: RwLock::new(secrets_now),
            platform: options.platform,
            leader: AtomicU64::new(0),
            node_id,
            raft_id,
            wake: (Mutex::new(false), Condvar::new()),
            syncs,
            persisting: Mutex::new(()),
            transport: OnceLock::new(),
            on_primary_change: OnceLock::new(),
            peers: RwLock::new(peers),
            peer_certs: Mutex::new(known_peers),
            join_seed: join_record.map(|r| r.peers).unwrap_or_default(),
            started: Instant::now(),
            me: OnceLock::new(),
            recovery: Mutex::new(
                record
                    .as_ref()
                    .map(|r| (r.base_seqno, recovery::RecoveryStage::WaitingForShares)),
            ),
            restoring: std::sync::atomic::AtomicBool::new(false),
        });
        let _ = svc.me.set(Arc::downgrade(&svc));
        svc.metrics.committed_seqno.set(commit.seqno.get() as i64);
        // The only voter need not wait for an election timeout.
        svc.campaign_if_alone();
        if fresh {
            svc.genesis(options.attestation.as_ref())?;
            svc.lock().replica.set_sign_on_election(true);
        }
        if let Some(r) = record {
            svc.continue_recovery(&r)?;
        }
        Ok(svc)
    }

    #[track_caller]
    fn lock(&self) -> EngineGuard<'_> {
        let at = std::panic::Location::caller();
        // A poisoned lock means a thread panicked mid-commit; the state may be torn, so stop.
        let guard = self.locked.lock().unwrap_or_else(|e| fatal("engine lock poisoned", e));
        EngineGuard {
            guard,
            since: Instant::now(),
            at,
        }
    }

    /// Ends the current ledger chunk at the next signature (governance's `trigger_ledger_chunk`; a no-op on a
    /// backup, whose chunks follow the primary's entries).
    pub fn request_chunk_end(&self) {
        let mut engine = self.lock();
        if engine.replica.is_leader() {
            engine.replica.request_chunk_end();
        }
    }

    /// Snapshots the state at the next signature (governance's `trigger_snapshot`; a no-op on a backup, which
    /// snapshots where the primary's evidence says).
    pub fn request_snapshot(&self) {
        let mut engine = self.lock();
        if engine.replica.is_leader() {
            engine.replica.request_snapshot();
        }
    }

    /// This node's Raft id.
    pub fn raft_id(&self) -> RaftId {
        self.raft_id
    }

    /// The store holding every transaction this node has (committed or not).
    pub fn store(&self) -> Arc<Store> {
        self.store.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Changes `status` in `public:ccf.gov.service.info`.
    pub fn set_service_status(&self, status: &str) -> Result<TxId, String> {
        let outcome = self.execute_write(|tx, _| -> Result<(), String> {
            let raw = tx.get(SERVICE_INFO_TABLE, &SINGLETON_KEY).ok_or("no service info")?;
            let mut info: serde_json::Value = serde_json::from_slice(&raw).map_err(|e| e.to_string())?;
            info["status"] = serde_json::Value::String(status.to_string());
            tx.put(SERVICE_INFO_TABLE, &SINGLETON_KEY, info.to_string().as_bytes());
            Ok(())
        });
        match outcome {
            Ok(((), txid)) => Ok(txid),
            Err(WriteError::Body(e)) => Err(e),
            Err(other) => Err(format!("{other:?}")),
        }
    }

    /// The service status from the store.
    pub fn service_status(&self) -> Option<String> {
        self.service_info()?["status"].as_str().map(str::to_string)
    }

    /// `public:ccf.gov.service.info` as JSON.
    pub fn service_info(&self) -> Option<serde_json::Value> {
        let store = self.store();
        let tx = store.read_only();
        let raw = tx.get(SERVICE_INFO_TABLE, &SINGLETON_KEY)?;
        serde_json::from_slice(&raw).ok()
    }

    /// Carries out the replica's actions (except Persist, which is queued for the persister). Returns the outcome of
    /// a proposal made in the step that produced them.
    fn handle(&self, e: &mut Locked, actions: Vec<Action>) -> Option<Result<TxId, ProposeError>> {
        let mut outcome = None;
        let mut wake = false;
        for a in actions {
            match a {
                Action::Send { to, message } => self.send(to, message),
                Action::Persist {
                    number,
                    hard_state,
                    snapshot,
                } => {
                    let p = e.pending.get_or_insert_with(PendingPersist::default);
                    p.number = number;
                    if hard_state.is_some() {
                        p.hard_state = hard_state;
                    }
                    if snapshot.is_some() {
                        p.snapshot = snapshot;
                    }
                    wake = true;
                }
                Action::Committed(tx) => {
                    self.committed_view.store(tx.view.get(), Ordering::Release);
                    self.committed_seqno.store(tx.seqno.get(), Ordering::Release);
                    self.metrics.committed_seqno.set(tx.seqno.get() as i64);
                }
                Action::Applied { first, last } => {
                    self.metrics.transactions.inc_by(last.next().since(first));
                }
                Action::RolledBack { to } => tracing::info!(to = to.get(), "uncommitted transactions rolled back"),
                Action::SnapshotCommitted {
                    seqno,
                    evidence,
                    snapshot,
                } => self.write_committed_snapshot(seqno.get(), evidence.get(), snapshot),
                Action::BuildSnapshot(build) => self.build_snapshot(build),
                Action::SnapshotInstalled(tx) => {
                    tracing::info!(%tx, "snapshot installed");
                    *self.store.write().unwrap_or_else(|e| e.into_inner()) = e.replica.store().clone();
                }
                Action::Proposed(tx) => {
                    outcome.get_or_insert(Ok(tx));
                }
                Action::ProposalRejected { error, .. } => {
                    outcome.get_or_insert(Err(error));
                }
                Action::ConfChanged { seqno, conf_state } => {
                    for id in conf_state.voters.iter().chain(conf_state.learners.iter()) {
                        e.member_since.entry(*id).or_insert(seqno.get());
                    }
                    tracing::info!(seqno = seqno.get(), voters = ?conf_state.voters, learners = ?conf_state.learners, "membership changed");
                }
                Action::RoleChanged { role, view, leader } => {
                    tracing::info!(?role, view = view.get(), leader = ?leader.map(RaftId::get), "role changed");
                    self.leader.store(leader.map_or(0, RaftId::get), Ordering::Release);
                    // Requests forwarded to an earlier primary will not be answered once another node leads: answer
                    // them now. While no primary is known (an election, or a primary that is merely slow), they keep
                    // waiting, up to the forwarding timeout.
                    if let Some(primary) = leader.and_then(|l| self.node_id_of(l)) {
                        if let Some(notify) = self.on_primary_change.get() {
                            notify(&primary);
                        }
                    }
                }
                Action::Dropped { from, error } => {
                    self.metrics.dropped_inputs.inc();
                    tracing::warn!(from = ?from.map(RaftId::get), %error, "input dropped");
                }
                Action::Halted { error } => fatal("replica halted", error),
            }
        }
        self.view.store(e.replica.view().get(), Ordering::Release);
        self.keep_secrets(e);
        if wake {
            let (flag, cv) = &self.wake;
            *flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
            cv.notify_one();
        }
        outcome
    }

    fn send(&self, to: RaftId, message: Vec<u8>) {
        let Some(transport) = self.transport.get() else { return };
        let node = self.peers.read().unwrap_or_else(|e| e.into_inner()).get(&to).cloned();
        match node {
            Some(node_id) => {
                transport.send_raft(&node_id, Bytes::from(message));
            }
            None => tracing::debug!(to = to.get(), "no channel to raft peer"),
        }
    }

    /// Feeds a Raft message from peer `from` (authenticated by the node-to-node channel).
    pub fn receive(&self, from: RaftId, message: Vec<u8>) {
        let mut e = self.lock();
        let actions = e.replica.step(Event::Receive { from, message });
        self.handle(&mut e, actions);
    }

    /// Raft id of the primary as last seen, if any.
    pub fn leader(&self) -> Option<RaftId> {
        Some(self.leader.load(Ordering::Acquire))
            .filter(|&l| l != 0)
            .map(RaftId)
    }

    /// Node id of a Raft peer (or of this node).
    pub fn node_id_of(&self, raft_id: RaftId) -> Option<NodeId> {
        if raft_id == self.raft_id {
            return Some(self.node_id.clone());
        }
        self.peers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&raft_id)
            .cloned()
    }

    /// Whether this node is the primary, as of the last role change (without the engine lock: every write request
    /// asks). A write that reaches a replica that is no longer primary is refused there in any case.
    pub fn is_primary(&self) -> bool {
        self.leader.load(Ordering::Acquire) == self.raft_id.get()
    }

    /// Attaches the transport Raft messages leave through (the node-to-node channels); the first one stays.
    pub fn set_transport(&self, transport: Arc<dyn RaftTransport>) {
        let _ = self.transport.set(transport);
    }

    /// Registers what to do when another node becomes primary (answer requests forwarded to the old one); the first
    /// registration stays.
    pub fn on_primary_change(&self, notify: PrimaryChangeHook) {
        let _ = self.on_primary_change.set(notify);
    }

    /// The node's configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    /// The node's identities (node key and certificate, service certificate, ledger secret).
    pub fn identities(&self) -> &Identities {
        &self.ids
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Seconds since the service object was created.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// This engine as shared (for work that outlives the caller's borrow, such as a recovery's private replay).
    pub fn shared(&self) -> Option<Arc<Engine>> {
        self.me.get().and_then(Weak::upgrade)
    }

    /// The view (Raft term) as of the last step.
    pub fn current_view(&self) -> View {
        View(self.view.load(Ordering::Acquire))
    }
}
