//! The node's transaction engine over the replication core: the primary executes requests in KV transactions and
//! proposes their write sets to its [`Replica`]; backups apply what the primary replicates. A ticker thread ticks
//! the replica, a persister thread makes the ledger and Raft state durable, snapshot builds run on threads of their
//! own, and Raft messages go out over the node-to-node channels.
//!
//! Ordering invariant: every store commit and every replica step happens under the `engine` mutex, and a write
//! is committed to the store and proposed (`Event::Propose`) under one hold of it, so KV versions, ledger entries
//! and Merkle leaves are produced in the same order (version n is entry n is leaf n). A one-node service is a
//! one-voter Raft: the same code path, with nobody to send to.

use crate::apps::{App, AppRequest, AppResponse, Caller};
use crate::channels::Channels;
use crate::config::NodeConfig;
use crate::identity::Identities;
use crate::metrics::Metrics;
use crate::storage::FsStorage;
use bytes::Bytes;
use consort_consensus::eraftpb::HardState;
use consort_consensus::{
    encode_hard_state, Action, Event, NodeIdentity, PersistedState, ProposeError, Replica, ReplicaConfig, Role,
};
use consort_crypto::sha256;
use consort_kv::{CommitOutcome, Store, Tx};
use consort_ledger::{
    PrimarySignature, ProofStep, ENDORSED_CERTS_TABLE, NODES_INFO_TABLE, SERVICE_INFO_TABLE, SIGNATURES_TABLE,
    SINGLETON_KEY,
};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::{Duration, Instant};

/// Users' certificates (user id -> PEM).
pub const USERS_CERTS_TABLE: &str = consort_gov::tables::USERS_CERTS;
/// Prefix of the maps only the node itself and governance may write.
pub const RESERVED_MAP_PREFIX: &str = "public:ccf.";
/// Length of one replica tick: the unit of Raft time (election timeout, heartbeat, signature interval).
pub const TICK_MS: u64 = 10;
/// Most ticks the ticker replays at once after it was held up; longer stalls are not made up (a burst of election
/// ticks after a long stall would only start a pre-vote).
const MAX_CATCH_UP_TICKS: u32 = 10;
/// A snapshot build pauses this many times as long as each batch took (so it uses at most a quarter of a core).
const SNAPSHOT_BUILD_PAUSE_FACTOR: u32 = 3;
/// The persister also looks for work this often without being woken (and notices that the node is stopping).
const PERSIST_POLL: Duration = Duration::from_millis(10);
/// File in the node directory holding the last durable Raft hard state (term, vote, commit).
pub const HARD_STATE_FILE: &str = "raft_hard_state";
/// File in the node directory holding the last installed (or joined-from) snapshot, an encoded Raft snapshot.
pub const SNAPSHOT_FILE: &str = "raft_snapshot";
/// File in the node directory listing the peers this node trusts (node id -> certificate PEM), so that a restart
/// can verify their signature transactions while replaying the ledger.
pub const PEERS_FILE: &str = "peers.json";
/// A hard state whose term and vote did not change is written at most this often: Raft's safety needs the term
/// and vote on disk before dependent messages, not the commit index (a restarted node learns it again from the
/// primary), so under load most persists skip the two fsyncs of the hard-state file, and a restarted node's
/// commit point lags what it last reported by at most this long.
pub const HARD_STATE_COMMIT_INTERVAL: Duration = Duration::from_millis(50);
/// Ticks a starting node waits at most to become primary of a one-voter service.
const MAX_GENESIS_TICKS: usize = 1_000;

pub use consort_consensus::{TxId, TxStatus};

/// Errors while starting or running the engine.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("ledger: {0}")]
    Ledger(String),
    #[error("ledger replay at seqno {seqno}: {reason}")]
    Replay { seqno: u64, reason: String },
    #[error("identity: {0}")]
    Identity(String),
    #[error("genesis: {0}")]
    Genesis(String),
    #[error("consensus: {0}")]
    Consensus(String),
}

/// Why [`Service::execute_write`] did not commit.
#[derive(Debug)]
pub enum WriteError<E> {
    /// The transaction body refused (its writes were dropped).
    Body(E),
    /// Conflicts persisted through every re-execution.
    Conflict,
    /// This node is not the primary (Raft id of the primary, if known): the request must go there.
    NotPrimary(Option<u64>),
    /// The replica refused the proposal (it stopped, or lost the primary role meanwhile).
    Refused(String),
}

/// The Raft id of a node: the first 8 bytes of its node id (hex SHA-256 of its public key) as a big-endian u64,
/// never 0 (Raft's "nobody"). Every node derives every other node's Raft id from its node id alone.
pub fn raft_id_of(node_id: &str) -> u64 {
    let bytes = hex::decode(node_id.get(..16).unwrap_or("")).unwrap_or_default();
    let mut be = [0u8; 8];
    for (d, s) in be.iter_mut().zip(bytes.iter()) {
        *d = *s;
    }
    u64::from_be_bytes(be).max(1)
}

/// Persist work handed out by the replica and not done yet (later hard states and snapshots replace earlier ones).
#[derive(Debug, Default)]
struct PendingPersist {
    number: u64,
    hard_state: Option<HardState>,
    snapshot: Option<Vec<u8>>,
}

/// State changed only under the engine mutex.
struct Engine {
    replica: Replica<FsStorage>,
    pending: Option<PendingPersist>,
    /// Seqno of the membership change that made each node a learner or voter (as seen by this node).
    member_since: BTreeMap<u64, u64>,
    /// The hard state last written to disk, and when.
    durable_hard_state: Option<(HardState, Instant)>,
}

/// Holding the engine lock longer than this is logged (with where it was taken): every transaction on the node
/// waits while it is held, so long holds show up directly in commit latency.
const SLOW_ENGINE_LOCK: Duration = Duration::from_millis(20);

/// The engine lock, held: logs a warning when released after more than [`SLOW_ENGINE_LOCK`].
struct EngineGuard<'a> {
    guard: MutexGuard<'a, Engine>,
    since: Instant,
    at: &'static std::panic::Location<'static>,
}

impl std::ops::Deref for EngineGuard<'_> {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        &self.guard
    }
}

impl std::ops::DerefMut for EngineGuard<'_> {
    fn deref_mut(&mut self) -> &mut Engine {
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

/// The engine of one node.
pub struct Service {
    pub cfg: NodeConfig,
    pub ids: Identities,
    pub metrics: Metrics,
    app: Box<dyn App>,
    engine: Mutex<Engine>,
    /// The replica's store, mirrored so that reads need not take the engine lock (replaced by a snapshot install).
    store: RwLock<Arc<Store>>,
    committed_seqno: AtomicU64,
    committed_view: AtomicU64,
    /// Mirror of the replica's view, so that stamping a response with a TxID does not take the engine lock.
    view: AtomicU64,
    /// Raft id of the primary as last seen (0: unknown).
    leader: AtomicU64,
    raft_id: u64,
    /// Wakes the persister thread when there is persist work.
    wake: (Mutex<bool>, Condvar),
    /// Ledger fsyncs deferred out of the engine lock (see [`Service::persist_pending`]).
    syncs: crate::storage::SyncQueue,
    /// Held by the thread doing persist work, which runs partly outside the engine lock.
    persisting: Mutex<()>,
    channels: OnceLock<Arc<Channels>>,
    /// Node id of every peer by Raft id.
    peers: RwLock<BTreeMap<u64, String>>,
    /// Requests this node forwarded to the primary and waits on.
    pub forwarder: crate::forwarding::Forwarder,
    /// Certificate of every peer by node id, as saved in [`PEERS_FILE`].
    peer_certs: Mutex<BTreeMap<String, String>>,
    started: Instant,
    /// This service, for the threads it starts (snapshot builds) to report back to.
    me: OnceLock<std::sync::Weak<Service>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("node_id", &self.ids.node_id)
            .finish_non_exhaustive()
    }
}

fn ledger_err(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Ledger(e.to_string())
}

/// Stops the process: the node found a state it must not go past (disk failure, halted replica).
fn fatal(what: &str, e: impl std::fmt::Display) -> ! {
    tracing::error!("fatal: {what}: {e}; stopping the node to keep store and ledger consistent");
    eprintln!("fatal: {what}: {e}");
    std::process::exit(70)
}

/// Writes `bytes` to `path` atomically and durably: a temporary file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, ServiceError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ServiceError::Ledger(format!("{}: {e}", path.display()))),
    }
}

/// A random seed for election timeouts (std's randomly keyed hasher; no extra dependency).
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

fn ticks(ms: u64) -> usize {
    ms.div_ceil(TICK_MS).max(1) as usize
}

impl Service {
    fn hard_state_path(cfg: &NodeConfig) -> PathBuf {
        cfg.storage.secrets_dir.join(HARD_STATE_FILE)
    }

    fn snapshot_path(cfg: &NodeConfig) -> PathBuf {
        cfg.storage.secrets_dir.join(SNAPSHOT_FILE)
    }

    /// The replica configuration this node runs with.
    pub fn replica_config(cfg: &NodeConfig, raft_id: u64) -> ReplicaConfig {
        let mut rc = ReplicaConfig::new(raft_id);
        rc.election_ticks = ticks(cfg.consensus.election_timeout_ms);
        rc.heartbeat_ticks = ticks(cfg.consensus.heartbeat_ms);
        rc.signature_interval_tx = cfg.ledger.signature_interval_tx;
        rc.signature_interval_ticks = ticks(cfg.ledger.signature_interval_ms) as u64;
        rc.chunk_threshold_bytes = cfg.ledger.chunk_threshold_bytes;
        rc.snapshot_interval_tx = cfg.ledger.snapshot_tx_interval;
        rc.snapshots_on_backups = cfg.ledger.snapshots_on_backups;
        rc.random_seed = random_seed();
        rc
    }

    /// Opens the node's ledger and Raft state: replays them if the node has run before (restart), or creates a
    /// new service with this node as its only voter (genesis). `trusted` lists the other nodes whose signature
    /// transactions this node accepts (Raft id -> certificate PEM).
    pub fn open(cfg: NodeConfig, ids: Identities, app: Box<dyn App>) -> Result<Arc<Self>, ServiceError> {
        Self::open_with(cfg, ids, app, BTreeMap::new(), None)
    }

    /// [`Service::open`] with extra trusted nodes and, for a joiner, the snapshot it starts from.
    pub fn open_with(
        cfg: NodeConfig,
        ids: Identities,
        app: Box<dyn App>,
        mut trusted: BTreeMap<u64, String>,
        join_snapshot: Option<Vec<u8>>,
    ) -> Result<Arc<Self>, ServiceError> {
        std::fs::create_dir_all(&cfg.storage.ledger_dir).map_err(ledger_err)?;
        std::fs::create_dir_all(&cfg.storage.snapshots_dir).map_err(ledger_err)?;
        let syncs = crate::storage::SyncQueue::default();
        let storage = FsStorage::with_sync_queue(&cfg.storage.ledger_dir, syncs.clone()).map_err(ledger_err)?;
        let raft_id = raft_id_of(&ids.node_id);
        trusted.insert(raft_id, ids.node_cert_pem.clone());
        let mut known_peers = BTreeMap::new();
        if let Some(raw) = read_optional(&cfg.storage.secrets_dir.join(PEERS_FILE))? {
            let saved: BTreeMap<String, String> =
                serde_json::from_slice(&raw).map_err(|e| ServiceError::Consensus(format!("{PEERS_FILE}: {e}")))?;
            for (node_id, cert) in saved {
                trusted.insert(raft_id_of(&node_id), cert.clone());
                known_peers.insert(node_id, cert);
            }
        }
        let hard_state: Option<HardState> = read_optional(&Self::hard_state_path(&cfg))?
            .map(|b| consort_consensus::decode_hard_state(&b))
            .transpose()
            .map_err(|e| ServiceError::Consensus(e.to_string()))?;
        let mut snapshot = read_optional(&Self::snapshot_path(&cfg))?;
        if let Some(s) = join_snapshot {
            write_atomic(&Self::snapshot_path(&cfg), &s).map_err(ledger_err)?;
            snapshot = Some(s);
        }
        let fresh = hard_state.is_none() && snapshot.is_none() && {
            std::fs::read_dir(&cfg.storage.ledger_dir)
                .map(|mut d| d.next().is_none())
                .unwrap_or(true)
        };
        let durable_hard_state = hard_state.clone().map(|h| (h, Instant::now()));
        let persisted = PersistedState {
            hard_state,
            snapshot,
            voters: vec![raft_id],
        };
        let identity = NodeIdentity {
            key: ids.node_key.clone(),
            cert_pem: ids.node_cert_pem.clone(),
            node_id: ids.node_id.clone(),
        };
        let mut rc = Self::replica_config(&cfg, raft_id);
        rc.sign_on_election = !fresh;
        // Restart replay decodes the next ledger chunk on a second core while this one applies the current one.
        let offload = crate::offload::ThreadOffload;
        let secret = ids.ledger_secret.clone();
        let replica = Replica::open_with_offload(rc, identity, trusted, secret, storage, persisted, Some(&offload))
            .map_err(|e| ServiceError::Consensus(e.to_string()))?;
        let store = replica.store().clone();
        let commit = replica.commit_point();
        let view = replica.view();
        let svc = Arc::new(Service {
            cfg,
            ids,
            metrics: Metrics::new(),
            app,
            engine: Mutex::new(Engine {
                replica,
                pending: None,
                member_since: BTreeMap::new(),
                durable_hard_state,
            }),
            store: RwLock::new(store),
            committed_seqno: AtomicU64::new(commit.seqno),
            committed_view: AtomicU64::new(commit.view),
            view: AtomicU64::new(view),
            leader: AtomicU64::new(0),
            raft_id,
            wake: (Mutex::new(false), Condvar::new()),
            syncs,
            persisting: Mutex::new(()),
            channels: OnceLock::new(),
            peers: RwLock::new(known_peers.keys().map(|n| (raft_id_of(n), n.clone())).collect()),
            peer_certs: Mutex::new(known_peers),
            forwarder: Default::default(),
            started: Instant::now(),
            me: OnceLock::new(),
        });
        let _ = svc.me.set(Arc::downgrade(&svc));
        svc.metrics.committed_seqno.set(commit.seqno as i64);
        // The only voter need not wait for an election timeout.
        svc.campaign_if_alone();
        if fresh {
            svc.genesis()?;
            svc.lock().replica.set_sign_on_election(true);
        }
        Ok(svc)
    }

    #[track_caller]
    fn lock(&self) -> EngineGuard<'_> {
        let at = std::panic::Location::caller();
        // A poisoned lock means a thread panicked mid-commit; the state may be torn, so stop.
        let guard = self.engine.lock().unwrap_or_else(|e| fatal("engine lock poisoned", e));
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
    pub fn raft_id(&self) -> u64 {
        self.raft_id
    }

    /// The store holding every transaction this node has (committed or not).
    pub fn store(&self) -> Arc<Store> {
        self.store.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Starts an election at once if this node is the only voter and not yet primary; drives it to completion.
    fn campaign_if_alone(&self) {
        let mut e = self.lock();
        let voters = e.replica.conf_state().voters;
        if voters != [self.raft_id] || e.replica.is_leader() {
            return;
        }
        let actions = e.replica.step(Event::Campaign);
        self.handle(&mut e, actions);
        for _ in 0..MAX_GENESIS_TICKS {
            e = self.persist_pending(e);
            if e.replica.is_leader() {
                break;
            }
            let actions = e.replica.step(Event::Tick);
            self.handle(&mut e, actions);
        }
    }

    /// Genesis: service info, this node, initial members and users; optionally open. Proposed through the replica;
    /// the replica signs it.
    fn genesis(&self) -> Result<(), ServiceError> {
        let start = &self.cfg.start;
        let gerr = |what: &str, path: &std::path::Path, e: &dyn std::fmt::Display| {
            ServiceError::Genesis(format!("{what} {}: {e}", path.display()))
        };
        let mut members = vec![];
        for m in &start.members {
            let cert_pem = std::fs::read_to_string(&m.cert).map_err(|e| gerr("member cert", &m.cert, &e))?;
            let encryption_public_key_pem = match &m.encryption_public_key {
                Some(k) => Some(std::fs::read_to_string(k).map_err(|e| gerr("member key", k, &e))?),
                None => None,
            };
            members.push(consort_gov::MemberSpec {
                cert_pem,
                encryption_public_key_pem,
                member_data: m.data.clone(),
                recovery_role: None,
            });
        }
        let mut users = vec![];
        for u in &start.users {
            let cert_pem = std::fs::read_to_string(&u.cert).map_err(|e| gerr("user cert", &u.cert, &e))?;
            users.push(consort_gov::UserSpec {
                cert_pem,
                user_data: u.data.clone(),
            });
        }
        let constitution = if start.constitution_files.is_empty() {
            consort_gov::DEFAULT_CONSTITUTION.to_string()
        } else {
            let mut text = String::new();
            for f in &start.constitution_files {
                text.push_str(&std::fs::read_to_string(f).map_err(|e| gerr("constitution", f, &e))?);
                text.push('\n');
            }
            text
        };
        let next = {
            let e = self.lock();
            if !e.replica.is_leader() {
                return Err(ServiceError::Genesis("this node did not become primary".into()));
            }
            TxId {
                view: e.replica.view(),
                seqno: e.replica.last_seqno() + 1,
            }
        };
        let outcome = self.execute_write(|tx, _| -> Result<(), ServiceError> {
            let service_info = serde_json::json!({
                "cert": self.ids.service_cert_pem,
                "status": "Opening",
                "recovery_count": 0,
                "current_service_create_txid": next.to_string(),
            });
            tx.put(SERVICE_INFO_TABLE, &SINGLETON_KEY, service_info.to_string().as_bytes());
            let node_info = serde_json::json!({
                "status": "Trusted",
                "public_key": self.ids.node_key.verifying_key().to_pem(),
                "rpc_interfaces": {"primary_rpc_interface": {"bind_address": self.cfg.network.rpc_address}},
                "node_to_node_address": self.cfg.network.node_to_node_address,
                "node_data": null,
                "ledger_secret_seqno": 0,
                "retired_committed": false,
            });
            tx.put(
                NODES_INFO_TABLE,
                self.ids.node_id.as_bytes(),
                node_info.to_string().as_bytes(),
            );
            tx.put(
                ENDORSED_CERTS_TABLE,
                self.ids.node_id.as_bytes(),
                self.ids.node_cert_pem.as_bytes(),
            );
            consort_gov::genesis(tx, &members, &users, &constitution, start.recovery_threshold)
                .map(|_| ())
                .map_err(|e| ServiceError::Genesis(e.to_string()))
        });
        match outcome {
            Ok(_) => {}
            Err(WriteError::Body(e)) => return Err(e),
            Err(other) => return Err(ServiceError::Genesis(format!("{other:?}"))),
        }
        if start.open_at_genesis {
            self.set_service_status("Open").map_err(ServiceError::Genesis)?;
        }
        self.wait_committed_inline(MAX_GENESIS_TICKS);
        Ok(())
    }

    /// Drives the replica on the calling thread until everything proposed so far is committed (bounded).
    fn wait_committed_inline(&self, max_ticks: usize) {
        let mut e = self.lock();
        for _ in 0..max_ticks {
            e = self.persist_pending(e);
            if e.replica.commit_point().seqno >= e.replica.last_seqno() {
                return;
            }
            let actions = e.replica.step(Event::Tick);
            self.handle(&mut e, actions);
        }
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
    fn handle(&self, e: &mut Engine, actions: Vec<Action>) -> Option<Result<TxId, ProposeError>> {
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
                    self.committed_view.store(tx.view, Ordering::Release);
                    self.committed_seqno.store(tx.seqno, Ordering::Release);
                    self.metrics.committed_seqno.set(tx.seqno as i64);
                }
                Action::Applied { first, last } => {
                    self.metrics.transactions.inc_by(last + 1 - first);
                }
                Action::RolledBack { to } => tracing::info!(to, "uncommitted transactions rolled back"),
                Action::SnapshotCommitted {
                    seqno,
                    evidence,
                    snapshot,
                } => {
                    tracing::info!(seqno, evidence, bytes = snapshot.data.len(), "snapshot committed");
                    self.metrics.snapshots.inc();
                    // Encoded and written off the engine lock: a large file must not stall transactions.
                    let dir = self.cfg.storage.snapshots_dir.clone();
                    let keep = self.cfg.ledger.snapshots_to_keep;
                    let spawned = std::thread::Builder::new()
                        .name("snapshot-writer".into())
                        .spawn(move || {
                            let bytes = consort_consensus::encode_snapshot(&snapshot);
                            crate::snapshots::write_committed(&dir, seqno, evidence, &bytes, keep)
                        });
                    if let Err(err) = spawned {
                        tracing::warn!(%err, "could not start the snapshot writer");
                    }
                }
                Action::BuildSnapshot(build) => {
                    // Built on a thread of its own while transactions go on; the result comes back as an event.
                    let me = self.me.get().cloned();
                    let seqno = build.seqno();
                    let spawned = std::thread::Builder::new()
                        .name("snapshot-builder".into())
                        .spawn(move || {
                            // Each batch holds the store's read lock briefly; pausing between batches makes it
                            // unlikely that the builder is preempted while holding it (with more runnable threads
                            // than cores, writers would then wait for it to be scheduled again), and keeps the
                            // build to a share of a core so that transactions keep theirs.
                            let mut build = build;
                            loop {
                                let batch = Instant::now();
                                if build.step(consort_kv::SNAPSHOT_BATCH) {
                                    break;
                                }
                                std::thread::sleep(batch.elapsed() * SNAPSHOT_BUILD_PAUSE_FACTOR);
                            }
                            let built = build.run();
                            if let Some(svc) = me.and_then(|w| w.upgrade()) {
                                let mut e = svc.lock();
                                let actions = e.replica.step(Event::SnapshotBuilt(built));
                                svc.handle(&mut e, actions);
                            }
                        });
                    if let Err(err) = spawned {
                        tracing::warn!(%err, seqno, "could not start the snapshot builder");
                    }
                }
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
                        e.member_since.entry(*id).or_insert(seqno);
                    }
                    tracing::info!(seqno, voters = ?conf_state.voters, learners = ?conf_state.learners, "membership changed");
                }
                Action::RoleChanged { role, view, leader } => {
                    tracing::info!(?role, view, ?leader, "role changed");
                    self.leader.store(leader.unwrap_or(0), Ordering::Release);
                    // Requests forwarded to an earlier primary will not be answered once another node leads: answer
                    // them now. While no primary is known (an election, or a primary that is merely slow), they keep
                    // waiting, up to the forwarding timeout.
                    if let Some(primary) = leader.and_then(|l| self.node_id_of(l)) {
                        self.forwarder.abandon_all_but(Some(&primary));
                    }
                }
                Action::Dropped { from, error } => tracing::warn!(?from, %error, "input dropped"),
                Action::Halted { error } => fatal("replica halted", error),
            }
        }
        self.view.store(e.replica.view(), Ordering::Release);
        if wake {
            let (flag, cv) = &self.wake;
            *flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
            cv.notify_one();
        }
        outcome
    }

    fn send(&self, to: u64, message: Vec<u8>) {
        let Some(ch) = self.channels.get() else { return };
        let node = self.peers.read().unwrap_or_else(|e| e.into_inner()).get(&to).cloned();
        match node {
            Some(node_id) => {
                ch.send(&node_id, crate::channels::FrameKind::Raft, Bytes::from(message));
            }
            None => tracing::debug!(to, "no channel to raft peer"),
        }
    }

    /// Does the queued persist work: ledger fsync, hard state, snapshot, in that order, then tells the replica.
    /// Only the flush of buffered ledger bytes runs under the engine lock; the fsyncs and file writes run outside
    /// it, so transactions keep executing (and are batched into the next persist) while the disk works. Takes and
    /// gives back the engine guard.
    fn persist_pending<'a>(&'a self, mut e: EngineGuard<'a>) -> EngineGuard<'a> {
        // One persister at a time, in order; another caller leaves the work to it (never blocks on it while holding
        // the engine lock, which the persister needs back).
        let Ok(_serial) = self.persisting.try_lock() else {
            return e;
        };
        // One round: the work queued so far (later persists replace earlier hard states and snapshots, so this covers
        // everything up to the newest number) or, with nothing queued, the ledger's own work left over (a closed
        // chunk to sync or rename).
        let mut p = e.pending.take();
        if p.is_none() && !e.replica.ledger_needs_flush() {
            return e;
        }
        let flushed = self.syncs.deferring(|| e.replica.sync_ledger());
        if let Err(err) = flushed {
            fatal("ledger sync", err);
        }
        let hard_state = p.as_mut().and_then(|p| p.hard_state.take()).filter(|hs| {
            e.durable_hard_state.as_ref().is_none_or(|(d, at)| {
                d.term != hs.term
                    || d.vote != hs.vote
                    || (hs.commit > d.commit && at.elapsed() >= HARD_STATE_COMMIT_INTERVAL)
            })
        });
        if let Some(hs) = &hard_state {
            e.durable_hard_state = Some((hs.clone(), Instant::now()));
        }
        drop(e);
        if let Err(err) = self.syncs.sync() {
            fatal("ledger sync", err);
        }
        if let Some(hs) = &hard_state {
            if let Err(err) = write_atomic(&Self::hard_state_path(&self.cfg), &encode_hard_state(hs)) {
                fatal("hard state write", err);
            }
        }
        if let Some(s) = p.as_ref().and_then(|p| p.snapshot.as_ref()) {
            if let Err(err) = write_atomic(&Self::snapshot_path(&self.cfg), s) {
                fatal("snapshot write", err);
            }
        }
        e = self.lock();
        if let Some(p) = p {
            let actions = e.replica.step(Event::Persisted { number: p.number });
            self.handle(&mut e, actions);
        }
        e
    }

    /// The ticker loop: ticks the replica every [`TICK_MS`] until `stopping` is set. Runs on its own thread, apart
    /// from the persister ([`Service::persist_loop`]), so that an fsync never delays the Raft clock or the
    /// signature interval.
    pub fn drive(&self, stopping: &AtomicBool) {
        let tick = Duration::from_millis(TICK_MS);
        let mut next_tick = Instant::now() + tick;
        while !stopping.load(Ordering::Acquire) {
            let now = Instant::now();
            if now < next_tick {
                std::thread::sleep(next_tick - now);
                continue;
            }
            let mut e = self.lock();
            // Ticks missed while the engine lock was held elsewhere are caught up (up to MAX_CATCH_UP_TICKS), so
            // the signature interval and heartbeats keep to wall-clock time under load.
            let mut caught_up = 0;
            while Instant::now() >= next_tick && caught_up < MAX_CATCH_UP_TICKS {
                let actions = e.replica.step(Event::Tick);
                self.handle(&mut e, actions);
                next_tick += tick;
                caught_up += 1;
            }
            next_tick = next_tick.max(Instant::now());
        }
    }

    /// The persister loop: performs persist work as soon as it is queued, until `stopping` is set and nothing is
    /// left to persist. Runs on its own thread (it fsyncs).
    pub fn persist_loop(&self, stopping: &AtomicBool) {
        while !stopping.load(Ordering::Acquire) {
            {
                let (flag, cv) = &self.wake;
                let guard = flag.lock().unwrap_or_else(|e| e.into_inner());
                let (mut guard, _) = cv
                    .wait_timeout_while(guard, PERSIST_POLL, |woken| !*woken)
                    .unwrap_or_else(|e| e.into_inner());
                *guard = false;
            }
            // Also when idle, so that a closed chunk is synced and renamed without waiting for more writes.
            drop(self.persist_pending(self.lock()));
        }
        loop {
            let e = self.lock();
            if e.pending.is_none() {
                break;
            }
            drop(self.persist_pending(e));
        }
        if let Err(err) = self.lock().replica.settle_ledger() {
            tracing::warn!(%err, "could not settle the ledger on stop");
        }
    }

    /// Feeds a Raft message from peer `from` (authenticated by the node-to-node channel).
    pub fn receive(&self, from: u64, message: Vec<u8>) {
        let mut e = self.lock();
        let actions = e.replica.step(Event::Receive { from, message });
        self.handle(&mut e, actions);
    }

    /// The node-to-node channels, once attached.
    pub fn channels(&self) -> Option<Arc<Channels>> {
        self.channels.get().cloned()
    }

    /// Attaches the node-to-node channels (Raft messages go out through them from now on).
    pub fn set_channels(&self, channels: Arc<Channels>) {
        let _ = self.channels.set(channels);
    }

    /// Records the node id of a Raft peer, and trusts its signatures (remembered in [`PEERS_FILE`]).
    pub fn add_peer(&self, node_id: &str, cert_pem: &str) -> u64 {
        let id = raft_id_of(node_id);
        if node_id == self.ids.node_id {
            return id;
        }
        let mut certs = self.peer_certs.lock().unwrap_or_else(|e| e.into_inner());
        if certs.get(node_id).map(String::as_str) == Some(cert_pem) {
            return id;
        }
        certs.insert(node_id.to_string(), cert_pem.to_string());
        let bytes = serde_json::to_vec_pretty(&*certs).unwrap_or_default();
        if let Err(e) = write_atomic(&self.cfg.storage.secrets_dir.join(PEERS_FILE), &bytes) {
            fatal("peers file write", e);
        }
        drop(certs);
        self.peers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, node_id.to_string());
        self.lock().replica.trust_node(id, cert_pem.to_string());
        id
    }

    /// On the primary: moves the Raft membership one step towards `trusted` (the Raft ids of the Trusted nodes):
    /// adds a missing node as a learner, or promotes a learner that has caught up with the commit index.
    pub fn reconcile_membership(&self, trusted: &[u64], retired: &[u64]) {
        use consort_consensus::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2};
        let mut e = self.lock();
        if !e.replica.is_leader() {
            return;
        }
        let cs = e.replica.conf_state();
        let single = |change_type, node_id| {
            let mut c = ConfChangeSingle::default();
            c.set_change_type(change_type);
            c.node_id = node_id;
            let mut cc = ConfChangeV2::default();
            cc.mut_changes().push(c);
            cc
        };
        let change = if let Some(&new) = trusted
            .iter()
            .find(|id| !cs.voters.contains(id) && !cs.learners.contains(id))
        {
            Some(single(ConfChangeType::AddLearnerNode, new))
        } else {
            let commit = e.replica.raft_commit_index();
            let promote = cs
                .learners
                .iter()
                .find(|l| trusted.contains(l) && e.replica.matched(**l).unwrap_or(0) >= commit)
                .map(|&l| single(ConfChangeType::AddNode, l));
            // Retirement (governance's remove_node marked the node Retired): the primary takes it out of the
            // Raft membership, one change at a time like every other. Raft's joint agreement on the change keeps
            // every commit. A retired primary first hands its role to the most caught-up other voter, which
            // then removes it.
            let own = e.replica.id();
            promote.or_else(|| {
                cs.voters
                    .iter()
                    .chain(cs.learners.iter())
                    .find(|id| retired.contains(id) && **id != own)
                    .map(|&id| single(ConfChangeType::RemoveNode, id))
            })
        };
        if change.is_none() && retired.contains(&e.replica.id()) {
            let own = e.replica.id();
            let successor = cs
                .voters
                .iter()
                .filter(|id| **id != own && !retired.contains(id))
                .max_by_key(|id| e.replica.matched(**id).unwrap_or(0))
                .copied();
            match successor {
                Some(to) => {
                    tracing::info!(to, "retired: handing the primary role over");
                    let actions = e.replica.step(Event::TransferLeadership { to });
                    self.handle(&mut e, actions);
                }
                None => tracing::warn!("retired, but no other voter can take over the primary role"),
            }
            return;
        }
        if let Some(change) = change {
            let actions = e.replica.step(Event::ProposeConfChange { change });
            if let Some(Err(err)) = self.handle(&mut e, actions) {
                tracing::debug!(%err, "membership change not proposed yet");
            }
        }
    }

    /// Whether `raft_id` is a learner or voter (as this node sees the membership).
    pub fn is_member(&self, raft_id: u64) -> bool {
        let cs = self.lock().replica.conf_state();
        cs.voters.contains(&raft_id) || cs.learners.contains(&raft_id)
    }

    /// The snapshot a joining node starts from, once the commit point covers its addition to the membership: the
    /// latest committed snapshot file if there is one (the joiner catches up from the ledger after it), else a
    /// snapshot at the commit point.
    pub fn snapshot_for(&self, raft_id: u64) -> Option<Vec<u8>> {
        let e = self.lock();
        // The membership at the commit point must already hold the joiner. A node that restarted since the change
        // did not see it happen: then every change applied so far must be at or below the commit point.
        let cs = e.replica.conf_state();
        if !cs.voters.contains(&raft_id) && !cs.learners.contains(&raft_id) {
            return None;
        }
        let commit = e.replica.commit_point().seqno;
        let covered = match e.member_since.get(&raft_id) {
            Some(&since) => commit >= since,
            None => commit >= e.replica.raft_commit_index(),
        };
        if !covered {
            return None;
        }
        let base = e.replica.base_seqno();
        // The file is read off the engine lock.
        drop(e);
        if let Some(file) = crate::snapshots::latest_committed(&self.cfg.storage.snapshots_dir) {
            // A file from before this node's own log starts cannot be followed by entries this node has.
            if file.seqno >= base {
                match std::fs::read(&file.path) {
                    Ok(bytes) => return Some(bytes),
                    Err(err) => tracing::warn!(%err, path = %file.path.display(), "snapshot file unreadable"),
                }
            }
        }
        self.lock().replica.snapshot().ok()
    }

    /// Raft id of the primary as last seen, if any.
    pub fn leader(&self) -> Option<u64> {
        Some(self.leader.load(Ordering::Acquire)).filter(|&l| l != 0)
    }

    /// Node id of a Raft peer (or of this node).
    pub fn node_id_of(&self, raft_id: u64) -> Option<String> {
        if raft_id == self.raft_id {
            return Some(self.ids.node_id.clone());
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
        self.leader.load(Ordering::Acquire) == self.raft_id
    }

    /// Raft state for `/node/consensus`.
    pub fn consensus_state(&self) -> serde_json::Value {
        let e = self.lock();
        let r = &e.replica;
        let cs = r.conf_state();
        let role = match r.role() {
            Role::Leader => "Primary",
            Role::Follower if cs.learners.contains(&self.raft_id) => "Learner",
            Role::Follower => "Backup",
            Role::PreCandidate | Role::Candidate => "Candidate",
        };
        let mut peers = serde_json::Map::new();
        for id in cs.voters.iter().chain(cs.learners.iter()) {
            let name = self.node_id_of(*id).unwrap_or_else(|| id.to_string());
            let matched = if r.is_leader() { r.matched(*id) } else { None };
            peers.insert(
                name,
                serde_json::json!({"raft_id": id, "voter": cs.voters.contains(id), "matched": matched}),
            );
        }
        serde_json::json!({
            "node_id": self.ids.node_id,
            "raft_id": self.raft_id,
            "role": role,
            "view": r.view(),
            "leader": r.leader().and_then(|l| self.node_id_of(l)),
            "last_seqno": r.last_seqno(),
            "raft_commit_index": r.raft_commit_index(),
            "commit": r.commit_point().to_string(),
            "base_seqno": r.base_seqno(),
            "snapshot_digest_mismatches": r.snapshot_mismatches(),
            "peers": peers,
        })
    }

    /// Runs a user request against the app. Write transactions are re-executed on conflict, up to the limit.
    pub fn execute_app(&self, req: &AppRequest<'_>, read_only: bool) -> (AppResponse, TxId) {
        if read_only {
            // Reads are validated like writes: a transaction whose reads changed underneath it (a torn view
            // across several keys) is run again, so every answer reflects one consistent state.
            for _ in 0..self.cfg.limits.max_occ_attempts {
                let store = self.store();
                let mut tx = store.begin();
                let resp = self.app.handle(req, &mut tx);
                if tx.has_writes() {
                    // A read-only endpoint must not write: its writes would bypass consensus.
                    let msg = "a read-only endpoint attempted to write; nothing was written";
                    return (AppResponse::error(500, "InternalError", msg), self.current_txid());
                }
                match store.commit(tx, |_, _| ()) {
                    Ok(_) => return (resp, self.current_txid()),
                    Err(_) => {
                        self.metrics.occ_conflicts.inc();
                    }
                }
            }
            return (
                AppResponse::error(
                    409,
                    "TransactionConflict",
                    "reads kept conflicting with concurrent writes; retry",
                ),
                self.current_txid(),
            );
        }
        let outcome = self.execute_write(|tx, _| {
            let resp = self.app.handle(req, tx);
            if !resp.is_success() {
                return Err(resp);
            }
            if let Some(bad) = tx.write_set().maps.keys().find(|m| m.starts_with(RESERVED_MAP_PREFIX)) {
                return Err(AppResponse::error(
                    403,
                    "ReservedMap",
                    format!("applications may not write the reserved map {bad}"),
                ));
            }
            Ok(resp)
        });
        match outcome {
            Ok((resp, txid)) => (resp, txid),
            Err(WriteError::Body(resp)) => (resp, self.current_txid()),
            Err(WriteError::Conflict) => (
                AppResponse::error(
                    409,
                    "TransactionConflict",
                    "too many concurrent conflicting transactions; retry",
                ),
                self.current_txid(),
            ),
            Err(WriteError::NotPrimary(_)) => (
                AppResponse::error(503, "NotPrimary", "this node is not the primary; retry on the primary"),
                self.current_txid(),
            ),
            Err(WriteError::Refused(msg)) => (AppResponse::error(503, "ProposalRefused", msg), self.current_txid()),
        }
    }

    /// Runs `body` in a transaction and, if it returns Ok and wrote something, commits it to the store and
    /// proposes it to the replica under one hold of the engine lock; re-executes on optimistic-concurrency
    /// conflicts up to `limits.max_occ_attempts` times. `body` can also ask for the current Merkle root (computed on
    /// demand: governance needs it for proposal ids, application writes do not). An Err drops the writes.
    pub fn execute_write<T, E>(
        &self,
        mut body: impl FnMut(&mut Tx<'_>, &dyn Fn() -> [u8; 32]) -> Result<T, E>,
    ) -> Result<(T, TxId), WriteError<E>> {
        let root = || self.lock().replica.merkle_root();
        for _ in 0..self.cfg.limits.max_occ_attempts {
            let store = {
                let e = self.lock();
                if !e.replica.is_leader() {
                    return Err(WriteError::NotPrimary(e.replica.leader()));
                }
                e.replica.store().clone()
            };
            let mut tx = store.begin();
            let value = body(&mut tx, &root).map_err(WriteError::Body)?;
            let mut e = self.lock();
            if !Arc::ptr_eq(&store, e.replica.store()) {
                // A snapshot replaced the store meanwhile: run again on the new one.
                continue;
            }
            if !e.replica.is_leader() {
                return Err(WriteError::NotPrimary(e.replica.leader()));
            }
            match store.commit(tx, |version, ws| (version, ws.clone())) {
                Ok(CommitOutcome::Committed {
                    result: (version, write_set),
                    ..
                }) => {
                    let actions = e.replica.step(Event::Propose { version, write_set });
                    match self.handle(&mut e, actions) {
                        Some(Ok(txid)) => {
                            self.metrics.transactions.inc();
                            return Ok((value, txid));
                        }
                        Some(Err(ProposeError::NotLeader { leader })) => return Err(WriteError::NotPrimary(leader)),
                        Some(Err(err)) => return Err(WriteError::Refused(err.to_string())),
                        None => return Err(WriteError::Refused("the replica did not answer the proposal".into())),
                    }
                }
                Ok(CommitOutcome::ReadOnly) => {
                    drop(e);
                    return Ok((value, self.current_txid()));
                }
                Err(_) => {
                    drop(e);
                    self.metrics.occ_conflicts.inc();
                }
            }
        }
        Err(WriteError::Conflict)
    }

    /// The latest signature record in the store, if any.
    fn last_signature(&self) -> Option<PrimarySignature> {
        let store = self.store();
        let tx = store.read_only();
        let raw = tx.get(SIGNATURES_TABLE, &SINGLETON_KEY)?;
        PrimarySignature::from_json_bytes(&raw).ok()
    }

    /// Hex Merkle root signed by the latest signature transaction, if any.
    pub fn last_signed_root(&self) -> Option<String> {
        self.last_signature().map(|s| s.root)
    }

    /// The identity of a caller whose TLS certificate has id `cert_id`, per `public:ccf.gov.users.certs`.
    pub fn caller_of(&self, cert_id: Option<&str>) -> Caller {
        let Some(id) = cert_id else { return Caller::Anonymous };
        if self.store().read_only().has(USERS_CERTS_TABLE, id.as_bytes()) {
            Caller::User(id.to_string())
        } else {
            Caller::Anonymous
        }
    }

    /// Whether `user_id` is a registered user.
    pub fn is_user(&self, user_id: &str) -> bool {
        self.store().read_only().has(USERS_CERTS_TABLE, user_id.as_bytes())
    }

    /// TxID of the latest transaction in the store.
    pub fn current_txid(&self) -> TxId {
        TxId {
            view: self.view.load(Ordering::Acquire),
            seqno: self.store().current_version(),
        }
    }

    /// TxID of the commit point (the latest committed signature transaction).
    pub fn committed_txid(&self) -> TxId {
        TxId {
            view: self.committed_view.load(Ordering::Acquire),
            seqno: self.committed_seqno.load(Ordering::Acquire),
        }
    }

    /// CCF's status of a transaction id.
    pub fn tx_status(&self, id: TxId) -> TxStatus {
        self.lock().replica.tx_status(id)
    }

    /// CCF JSON receipt for a committed transaction, or the reason there is none.
    pub fn receipt(&self, id: TxId) -> Result<serde_json::Value, (u16, &'static str, String)> {
        match self.tx_status(id) {
            TxStatus::Committed => {}
            TxStatus::Pending | TxStatus::Unknown => {
                return Err((
                    202,
                    "TransactionPendingOrUnknown",
                    format!("transaction {id} is not committed yet"),
                ))
            }
            TxStatus::Invalid => return Err((404, "TransactionInvalid", format!("transaction {id} is invalid"))),
        }
        let e = self.lock();
        let sig_seqno = e.replica.signature_after(id.seqno).ok_or((
            202,
            "TransactionPendingOrUnknown",
            format!("no signature covers {id} yet"),
        ))?;
        let internal = |err: &dyn std::fmt::Display| (500, "InternalError", err.to_string());
        let (sig, proof) = e
            .replica
            .receipt_parts(id.seqno, sig_seqno)
            .map_err(|err| internal(&err))?;
        let entry = e.replica.ledger().read_entry(id.seqno).map_err(|err| internal(&err))?;
        drop(e);
        let ws_digest = sha256(&entry);
        let commit_evidence = self.ids.ledger_secret.commit_evidence(id.view, id.seqno);
        let proof: Vec<serde_json::Value> = proof
            .iter()
            .map(|s| match s {
                ProofStep::Left(h) => serde_json::json!({"left": hex::encode(h)}),
                ProofStep::Right(h) => serde_json::json!({"right": hex::encode(h)}),
            })
            .collect();
        Ok(serde_json::json!({
            "cert": sig.cert,
            "node_id": sig.node,
            "signature": sig.sig,
            "is_signature_transaction": false,
            "leaf_components": {
                "write_set_digest": hex::encode(ws_digest),
                "commit_evidence": commit_evidence,
                "claims_digest": hex::encode([0u8; 32]),
            },
            "proof": proof,
            "service_endorsements": [],
        }))
    }

    /// Seconds since the service object was created.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn current_view(&self) -> u64 {
        self.view.load(Ordering::Acquire)
    }

    pub fn last_signature_seqno(&self) -> u64 {
        self.last_signature().map(|s| s.seqno).unwrap_or(0)
    }

    pub fn app(&self) -> &dyn App {
        self.app.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_ids_come_from_the_node_id_prefix_and_are_never_zero() {
        let id = "0102030405060708".to_string() + &"ab".repeat(24);
        assert_eq!(raft_id_of(&id), 0x0102_0304_0506_0708);
        assert_eq!(raft_id_of(&"00".repeat(32)), 1);
        assert_eq!(raft_id_of("not hex"), 1);
        assert_eq!(raft_id_of(""), 1);
    }

    #[test]
    fn atomic_writes_replace_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(HARD_STATE_FILE);
        write_atomic(&path, b"first version, longer").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert!(!path.with_extension("tmp").exists());
    }

    #[test]
    fn ticks_round_up() {
        assert_eq!(ticks(1), 1);
        assert_eq!(ticks(TICK_MS), 1);
        assert_eq!(ticks(TICK_MS + 1), 2);
        assert_eq!(ticks(1_000), (1_000 / TICK_MS) as usize);
    }
}
