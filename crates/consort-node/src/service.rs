//! The node's transaction engine: executes requests in KV transactions, turns each commit into a ledger entry,
//! maintains the Merkle tree, emits signature transactions and tracks which transactions are committed.
//!
//! Ordering invariant: every commit goes through the `pipeline` mutex, so KV versions, ledger entries and Merkle
//! leaves are produced in exactly the same order (version n is entry n is leaf n). A failure to write the ledger
//! after the store has applied a transaction is fatal (the node stops rather than diverge from its ledger).

use crate::apps::{App, AppRequest, AppResponse, Caller};
use crate::config::NodeConfig;
use crate::identity::Identities;
use crate::metrics::Metrics;
use crate::storage::FsStorage;
use consort_crypto::sha256;
use consort_kv::{CommitOutcome, DomainHeader, Store, Tx, Version, WriteSet};
use consort_ledger::{
    encode_entry, leaf_digest, parse_entry, sign_root, Ledger, MerkleTree, PrimarySignature, ProofStep,
    ENDORSED_CERTS_TABLE, NODES_INFO_TABLE, SERVICE_INFO_TABLE, SIGNATURES_TABLE, SINGLETON_KEY, TREE_TABLE,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Users' certificates (user id -> PEM).
pub const USERS_CERTS_TABLE: &str = consort_gov::tables::USERS_CERTS;
/// Prefix of the maps only the node itself and governance may write.
pub const RESERVED_MAP_PREFIX: &str = "public:ccf.";

/// A transaction id: view and seqno.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct TxId {
    pub view: u64,
    pub seqno: u64,
}

impl std::fmt::Display for TxId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.view, self.seqno)
    }
}

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxStatus {
    Unknown,
    Pending,
    Committed,
    Invalid,
}

impl TxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TxStatus::Unknown => "Unknown",
            TxStatus::Pending => "Pending",
            TxStatus::Committed => "Committed",
            TxStatus::Invalid => "Invalid",
        }
    }
}

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
}

/// Why [`Service::execute_write`] did not commit.
#[derive(Debug)]
pub enum WriteError<E> {
    /// The transaction body refused (its writes were dropped).
    Body(E),
    /// Conflicts persisted through every re-execution.
    Conflict,
}

/// A signature transaction's record, kept in memory to serve receipts.
#[derive(Debug, Clone)]
struct SignatureRecord {
    sig_b64: String,
    node_id: String,
    cert_pem: String,
}

/// Ledger-side state; only touched under the pipeline mutex.
struct Pipeline {
    ledger: Ledger<FsStorage>,
    tree: MerkleTree,
    /// Current view (term). A restarted node starts a new view.
    view: u64,
    /// (view, first seqno of that view), ascending.
    view_history: Vec<(u64, u64)>,
    last_signature_seqno: u64,
    last_signature_at: Instant,
    signatures: BTreeMap<u64, SignatureRecord>,
    txs_since_signature: u64,
}

impl Pipeline {
    fn view_of(&self, seqno: u64) -> Option<u64> {
        self.view_history
            .iter()
            .rev()
            .find(|(_, start)| *start <= seqno)
            .map(|(v, _)| *v)
    }

    fn note_view(&mut self, view: u64, seqno: u64) {
        if self.view_history.last().map(|(v, _)| *v) != Some(view) {
            self.view_history.push((view, seqno));
        }
    }
}

/// The engine of one node.
pub struct Service {
    pub cfg: NodeConfig,
    pub ids: Identities,
    pub store: Store,
    pub metrics: Metrics,
    app: Box<dyn App>,
    pipeline: Mutex<Pipeline>,
    committed_seqno: AtomicU64,
    committed_view: AtomicU64,
    /// Mirror of the pipeline's view, so that stamping a response with a TxID does not take the pipeline lock.
    view: AtomicU64,
    started: Instant,
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

/// Stops the process: the store has applied a transaction its ledger could not record.
fn fatal(what: &str, e: impl std::fmt::Display) -> ! {
    tracing::error!("fatal: {what}: {e}; stopping the node to keep store and ledger consistent");
    eprintln!("fatal: {what}: {e}");
    std::process::exit(70)
}

impl Service {
    /// Opens the node's ledger: replays it if it has entries (restart), or creates a new service (genesis).
    pub fn open(cfg: NodeConfig, ids: Identities, app: Box<dyn App>) -> Result<Arc<Self>, ServiceError> {
        std::fs::create_dir_all(&cfg.storage.ledger_dir).map_err(ledger_err)?;
        std::fs::create_dir_all(&cfg.storage.snapshots_dir).map_err(ledger_err)?;
        let storage = FsStorage::new(&cfg.storage.ledger_dir).map_err(ledger_err)?;
        let (ledger, entries) = Ledger::open(storage, cfg.ledger.chunk_threshold_bytes).map_err(ledger_err)?;
        let store = Store::new();
        let mut pipeline = Pipeline {
            ledger,
            tree: MerkleTree::new(),
            view: 1,
            view_history: vec![],
            last_signature_seqno: 0,
            last_signature_at: Instant::now(),
            signatures: BTreeMap::new(),
            txs_since_signature: 0,
        };
        let fresh = entries.is_empty();
        if !fresh {
            replay(&store, &mut pipeline, &ids, &entries)?;
        }
        let committed = pipeline.last_signature_seqno;
        let committed_view = pipeline.view_of(committed).unwrap_or(0);
        let view = pipeline.view;
        let svc = Arc::new(Service {
            cfg,
            ids,
            store,
            metrics: Metrics::new(),
            app,
            pipeline: Mutex::new(pipeline),
            committed_seqno: AtomicU64::new(committed),
            committed_view: AtomicU64::new(committed_view),
            view: AtomicU64::new(view),
            started: Instant::now(),
        });
        if fresh {
            svc.genesis()?;
        }
        Ok(svc)
    }

    fn lock(&self) -> MutexGuard<'_, Pipeline> {
        // A poisoned lock means a thread panicked mid-commit; the state may be torn, so stop.
        self.pipeline
            .lock()
            .unwrap_or_else(|e| fatal("pipeline lock poisoned", e))
    }

    /// Genesis: service info, this node, initial members and users; optionally open; then sign and commit.
    fn genesis(&self) -> Result<(), ServiceError> {
        let start = &self.cfg.start;
        let mut tx = self.store.begin();
        let service_info = serde_json::json!({
            "cert": self.ids.service_cert_pem,
            "status": "Opening",
            "recovery_count": 0,
            "current_service_create_txid": "1.1",
        });
        tx.put(SERVICE_INFO_TABLE, &SINGLETON_KEY, service_info.to_string().as_bytes());
        let node_info = serde_json::json!({
            "status": "Trusted",
            "public_key": self.ids.node_key.verifying_key().to_pem(),
            "rpc_interfaces": {"primary_rpc_interface": {"bind_address": self.cfg.network.rpc_address}},
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
        consort_gov::genesis(&mut tx, &members, &users, &constitution, start.recovery_threshold)
            .map_err(|e| ServiceError::Genesis(e.to_string()))?;
        self.commit_internal(tx).map_err(ServiceError::Genesis)?;
        if start.open_at_genesis {
            self.set_service_status("Open").map_err(ServiceError::Genesis)?;
        }
        self.sign_and_commit_now();
        Ok(())
    }

    /// Changes `status` in `public:ccf.gov.service.info`.
    pub fn set_service_status(&self, status: &str) -> Result<TxId, String> {
        let mut tx = self.store.begin();
        let raw = tx.get(SERVICE_INFO_TABLE, &SINGLETON_KEY).ok_or("no service info")?;
        let mut info: serde_json::Value = serde_json::from_slice(&raw).map_err(|e| e.to_string())?;
        info["status"] = serde_json::Value::String(status.to_string());
        tx.put(SERVICE_INFO_TABLE, &SINGLETON_KEY, info.to_string().as_bytes());
        self.commit_internal(tx)?.ok_or_else(|| "no write".to_string())
    }

    /// The service status from the store.
    pub fn service_status(&self) -> Option<String> {
        let tx = self.store.read_only();
        let raw = tx.get(SERVICE_INFO_TABLE, &SINGLETON_KEY)?;
        let info: serde_json::Value = serde_json::from_slice(&raw).ok()?;
        info["status"].as_str().map(str::to_string)
    }

    /// Commits a transaction built by the node itself (no OCC retry: nothing else writes these maps concurrently
    /// except governance, which goes through the same path).
    fn commit_internal(&self, tx: Tx<'_>) -> Result<Option<TxId>, String> {
        let mut p = self.lock();
        let outcome = self
            .store
            .commit(tx, |version, ws| append(&mut p, &self.ids, version, ws));
        match outcome {
            Ok(CommitOutcome::Committed { version, .. }) => {
                let view = p.view;
                self.after_commit(&mut p);
                Ok(Some(TxId { view, seqno: version }))
            }
            Ok(CommitOutcome::ReadOnly) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Bookkeeping after each commit: emit a signature when the transaction interval is reached.
    fn after_commit(&self, p: &mut Pipeline) {
        p.txs_since_signature += 1;
        self.metrics.transactions.inc();
        if p.txs_since_signature >= self.cfg.ledger.signature_interval_tx {
            self.emit_signature(p);
        }
    }

    /// Appends a signature transaction over the current Merkle root (leaves 0..seqno-1).
    fn emit_signature(&self, p: &mut Pipeline) {
        let seqno = self.store.current_version() + 1;
        assert_eq!(p.tree.len(), seqno, "Merkle tree out of step with the store");
        let root = p.tree.root();
        let sig = sign_root(&self.ids.node_key, &root);
        let committed = self.committed_seqno.load(Ordering::Acquire);
        let ps = PrimarySignature {
            seqno,
            view: p.view,
            commit_seqno: committed,
            commit_view: self.committed_view.load(Ordering::Acquire),
            root: hex::encode(root),
            sig: base64_encode(&sig),
            node: self.ids.node_id.clone(),
            cert: self.ids.node_cert_pem.clone(),
            hashing_algorithm: "SHA256".into(),
            signature_algorithm: "ECDSA".into(),
        };
        let mut tx = self.store.begin();
        let ps_json = serde_json::to_vec(&ps).expect("signature serialises");
        tx.put(SIGNATURES_TABLE, &SINGLETON_KEY, &ps_json);
        tx.put(TREE_TABLE, &SINGLETON_KEY, &tree_summary(&p.tree));
        match self.store.commit(tx, |version, ws| append(p, &self.ids, version, ws)) {
            Ok(CommitOutcome::Committed { version, .. }) => {
                debug_assert_eq!(version, seqno);
                p.last_signature_seqno = seqno;
                p.last_signature_at = Instant::now();
                p.txs_since_signature = 0;
                p.signatures.insert(
                    seqno,
                    SignatureRecord {
                        sig_b64: ps.sig,
                        node_id: ps.node,
                        cert_pem: ps.cert,
                    },
                );
                self.metrics.signatures.inc();
            }
            other => fatal("signature transaction did not commit", format!("{other:?}")),
        }
    }

    /// Signs what is unsigned, makes the ledger durable and advances the commit point. Called by the commit
    /// loop every few milliseconds and at genesis.
    pub fn sign_and_commit_now(&self) {
        let mut p = self.lock();
        if self.store.current_version() > p.last_signature_seqno {
            self.emit_signature(&mut p);
        }
        self.flush_and_commit(&mut p);
    }

    /// One tick of the commit loop: a signature when the time interval has passed, then durability and commit.
    pub fn tick(&self) {
        let mut p = self.lock();
        let interval = Duration::from_millis(self.cfg.ledger.signature_interval_ms);
        if self.store.current_version() > p.last_signature_seqno && p.last_signature_at.elapsed() >= interval {
            self.emit_signature(&mut p);
        }
        self.flush_and_commit(&mut p);
    }

    fn flush_and_commit(&self, p: &mut Pipeline) {
        let target = p.last_signature_seqno;
        if target <= self.committed_seqno.load(Ordering::Acquire) {
            return;
        }
        // Single node: a signature is committed once it is durable on this node's disk. With replication the
        // commit point will come from the consensus layer instead.
        if let Err(e) = p.ledger.flush() {
            fatal("ledger flush", e);
        }
        if let Err(e) = p.ledger.commit(target) {
            fatal("ledger commit", e);
        }
        self.store.set_committed(target);
        let view = p.view_of(target).unwrap_or(p.view);
        self.committed_view.store(view, Ordering::Release);
        self.committed_seqno.store(target, Ordering::Release);
        self.metrics.committed_seqno.set(target as i64);
    }

    /// Runs a user request against the app. Write transactions are re-executed on conflict, up to the limit.
    pub fn execute_app(&self, req: &AppRequest<'_>, read_only: bool) -> (AppResponse, TxId) {
        if read_only {
            let mut tx = self.store.begin();
            let resp = self.app.handle(req, &mut tx);
            return (resp, self.current_txid());
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
        }
    }

    /// Runs `body` in a transaction and commits it (ledger entry, Merkle leaf) if it returns Ok and wrote
    /// something; re-executes on optimistic-concurrency conflicts up to `limits.max_occ_attempts` times. `body`
    /// also gets the current Merkle root (the root at the transaction's read version). An Err drops the writes.
    pub fn execute_write<T, E>(
        &self,
        mut body: impl FnMut(&mut Tx<'_>, &[u8; 32]) -> Result<T, E>,
    ) -> Result<(T, TxId), WriteError<E>> {
        for _ in 0..self.cfg.limits.max_occ_attempts {
            let root = self.lock().tree.root();
            let mut tx = self.store.begin();
            let value = body(&mut tx, &root).map_err(WriteError::Body)?;
            let mut p = self.lock();
            match self
                .store
                .commit(tx, |version, ws| append(&mut p, &self.ids, version, ws))
            {
                Ok(CommitOutcome::Committed { version, .. }) => {
                    let txid = TxId {
                        view: p.view,
                        seqno: version,
                    };
                    self.after_commit(&mut p);
                    return Ok((value, txid));
                }
                Ok(CommitOutcome::ReadOnly) => {
                    drop(p);
                    return Ok((value, self.current_txid()));
                }
                Err(_) => {
                    drop(p);
                    self.metrics.occ_conflicts.inc();
                }
            }
        }
        Err(WriteError::Conflict)
    }

    /// Hex Merkle root signed by the latest signature transaction, if any.
    pub fn last_signed_root(&self) -> Option<String> {
        let p = self.lock();
        (p.last_signature_seqno > 0).then(|| hex::encode(p.tree.root_at(p.last_signature_seqno)))
    }

    /// The identity of a caller presenting `cert_der`, per `public:ccf.gov.users.certs`.
    pub fn caller_of(&self, cert_der: Option<&[u8]>) -> Caller {
        let Some(der) = cert_der else { return Caller::Anonymous };
        let id = consort_crypto::cert_id(der);
        if self.store.read_only().has(USERS_CERTS_TABLE, id.as_bytes()) {
            Caller::User(id)
        } else {
            Caller::Anonymous
        }
    }

    /// TxID of the latest transaction in the store.
    pub fn current_txid(&self) -> TxId {
        TxId {
            view: self.view.load(Ordering::Acquire),
            seqno: self.store.current_version(),
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
        let p = self.lock();
        let current = self.store.current_version();
        if id.seqno == 0 || id.seqno > current {
            return if id.view < p.view && id.seqno > 0 {
                TxStatus::Invalid
            } else {
                TxStatus::Unknown
            };
        }
        match p.view_of(id.seqno) {
            Some(v) if v == id.view => {
                if id.seqno <= self.committed_seqno.load(Ordering::Acquire) {
                    TxStatus::Committed
                } else {
                    TxStatus::Pending
                }
            }
            _ => TxStatus::Invalid,
        }
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
        let p = self.lock();
        let (&sig_seqno, record) = p.signatures.range(id.seqno + 1..).next().ok_or((
            202,
            "TransactionPendingOrUnknown",
            format!("no signature covers {id} yet"),
        ))?;
        let entry = p
            .ledger
            .read_entry(id.seqno)
            .map_err(|e| (500, "InternalError", e.to_string()))?;
        let ws_digest = sha256(&entry);
        let proof = p
            .tree
            .path(id.seqno, sig_seqno)
            .map_err(|e| (500, "InternalError", e.to_string()))?;
        let commit_evidence = self.ids.ledger_secret.commit_evidence(id.view, id.seqno);
        let proof: Vec<serde_json::Value> = proof
            .iter()
            .map(|s| match s {
                ProofStep::Left(h) => serde_json::json!({"left": hex::encode(h)}),
                ProofStep::Right(h) => serde_json::json!({"right": hex::encode(h)}),
            })
            .collect();
        Ok(serde_json::json!({
            "cert": record.cert_pem,
            "node_id": record.node_id,
            "signature": record.sig_b64,
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
        self.lock().last_signature_seqno
    }

    pub fn app(&self) -> &dyn App {
        self.app.as_ref()
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Compact summary of the tree stored in `public:ccf.internal.tree`: leaf count (u64 LE) and root.
fn tree_summary(tree: &MerkleTree) -> Vec<u8> {
    let mut out = tree.len().to_le_bytes().to_vec();
    out.extend_from_slice(&tree.root());
    out
}

/// Serialises, encrypts and appends one committed write set; extends the Merkle tree. Runs under the pipeline lock.
fn append(p: &mut Pipeline, ids: &Identities, version: Version, ws: &WriteSet) {
    let view = p.view;
    let commit_evidence = ids.ledger_secret.commit_evidence(view, version);
    let ce_digest = sha256(commit_evidence.as_bytes());
    let header = DomainHeader {
        entry_type: consort_kv::ENTRY_TYPE_WRITE_SET_WITH_CE_AND_CLAIMS,
        version,
        claims_digest: Some([0u8; 32]),
        commit_evidence_digest: Some(ce_digest),
        max_conflict_version: version as i64 - 1,
    };
    let public = ws.serialise_public(&header);
    let private = ws.serialise_private();
    let entry = encode_entry(&ids.ledger_secret, view, version, 0, &public, &private);
    p.tree.append(leaf_digest(&sha256(&entry), &ce_digest, &[0u8; 32]));
    let is_signature = ws.maps.contains_key(SIGNATURES_TABLE);
    p.note_view(view, version);
    if let Err(e) = p.ledger.append(version, &entry, is_signature) {
        fatal("ledger append", e);
    }
}

/// Rebuilds store, tree and signature index from the ledger; drops entries after the last signature (they were
/// never committed); the node then continues in a new view.
fn replay(store: &Store, p: &mut Pipeline, ids: &Identities, entries: &[Vec<u8>]) -> Result<(), ServiceError> {
    // First pass: find the last signature transaction, so nothing after it is applied.
    let mut last_sig = 0u64;
    for (i, raw) in entries.iter().enumerate() {
        let seqno = i as u64 + 1;
        let (entry, _) = parse_entry(raw).map_err(|e| ServiceError::Replay {
            seqno,
            reason: e.to_string(),
        })?;
        if entry.seqno != seqno {
            return Err(ServiceError::Replay {
                seqno,
                reason: format!("entry claims seqno {}", entry.seqno),
            });
        }
        let (_, ws) = WriteSet::deserialise_public(entry.public_domain).map_err(|e| ServiceError::Replay {
            seqno,
            reason: e.to_string(),
        })?;
        if ws.maps.contains_key(SIGNATURES_TABLE) {
            last_sig = seqno;
        }
    }
    let mut max_view = 0;
    for (i, raw) in entries.iter().take(last_sig as usize).enumerate() {
        let seqno = i as u64 + 1;
        let rerr = |reason: String| ServiceError::Replay { seqno, reason };
        let (entry, _) = parse_entry(raw).map_err(|e| rerr(e.to_string()))?;
        let (header, mut ws) = WriteSet::deserialise_public(entry.public_domain).map_err(|e| rerr(e.to_string()))?;
        let private = entry
            .decrypt_private(&ids.ledger_secret)
            .map_err(|e| rerr(e.to_string()))?;
        ws.merge(WriteSet::deserialise_private(&private).map_err(|e| rerr(e.to_string()))?);
        if let Some(raw_sig) = ws
            .maps
            .get(SIGNATURES_TABLE)
            .and_then(|m| m.writes.get(SINGLETON_KEY.as_slice()))
        {
            let raw_sig = raw_sig.as_ref().ok_or_else(|| rerr("signature removed".into()))?;
            let ps: PrimarySignature = serde_json::from_slice(raw_sig).map_err(|e| rerr(e.to_string()))?;
            let root = p.tree.root();
            if hex::encode(root) != ps.root {
                return Err(rerr(format!(
                    "Merkle root mismatch: ledger says {}, computed {}",
                    ps.root,
                    hex::encode(root)
                )));
            }
            consort_ledger::verify_root(&ps.cert, &root, &base64_decode(&ps.sig).map_err(rerr)?)
                .map_err(|e| rerr(e.to_string()))?;
            p.signatures.insert(
                seqno,
                SignatureRecord {
                    sig_b64: ps.sig,
                    node_id: ps.node,
                    cert_pem: ps.cert,
                },
            );
        }
        store.apply(seqno, &ws).map_err(|e| rerr(e.to_string()))?;
        let ce_digest = header.commit_evidence_digest.unwrap_or([0u8; 32]);
        let claims = header.claims_digest.unwrap_or([0u8; 32]);
        p.tree
            .append(leaf_digest(&entry.write_set_digest(), &ce_digest, &claims));
        p.note_view(entry.view, seqno);
        max_view = max_view.max(entry.view);
    }
    p.ledger.truncate(last_sig).map_err(ledger_err)?;
    p.ledger.commit(last_sig).map_err(ledger_err)?;
    store.set_committed(last_sig);
    p.last_signature_seqno = last_sig;
    p.view = max_view + 1;
    tracing::info!(
        seqno = last_sig,
        view = p.view,
        dropped = entries.len() as u64 - last_sig,
        "ledger replayed"
    );
    Ok(())
}

fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| e.to_string())
}
