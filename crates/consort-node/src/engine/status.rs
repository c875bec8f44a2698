//! What the engine reports about itself: transaction ids and statuses, the Raft state for `/node/consensus`, and the
//! parts of a receipt (the endpoint layer renders them as CCF's JSON).

use super::{Engine, TxId, TxStatus};
use consort_consensus::{NodeId, RaftId, Role, Seqno, View};
use consort_crypto::sha256;
use consort_ledger::{PrimarySignature, ProofStep, SIGNATURES_TABLE, SINGLETON_KEY};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

/// The Raft state of this node, as `/node/consensus` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConsensusState {
    /// This node's id.
    pub node_id: NodeId,
    /// This node's Raft id.
    pub raft_id: RaftId,
    /// `Primary`, `Backup`, `Learner` or `Candidate`.
    pub role: &'static str,
    /// The view (Raft term).
    pub view: View,
    /// Node id of the primary, if known.
    pub leader: Option<NodeId>,
    /// Seqno of the last entry in this node's log.
    pub last_seqno: Seqno,
    /// Raft's commit index (entries a majority has on disk).
    pub raft_commit_index: Seqno,
    /// The commit point (`view.seqno` of the latest committed signature transaction).
    pub commit: String,
    /// Seqno this node's log starts after (its snapshot).
    pub base_seqno: Seqno,
    /// Snapshots built here whose digest did not match the primary's evidence.
    pub snapshot_digest_mismatches: u64,
    /// Every voter and learner by node id.
    pub peers: BTreeMap<String, PeerState>,
}

/// One member of the Raft configuration, as this node sees it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerState {
    /// Its Raft id.
    pub raft_id: RaftId,
    /// Voter (true) or learner.
    pub voter: bool,
    /// Highest index it acknowledged (known on the primary only).
    pub matched: Option<Seqno>,
}

/// What a receipt is made of; the endpoint layer renders it as CCF's JSON.
#[derive(Debug, Clone)]
pub struct ReceiptParts {
    /// The signature transaction that covers the transaction.
    pub signature: PrimarySignature,
    /// Merkle path from the transaction's leaf to the signed root.
    pub proof: Vec<ProofStep>,
    /// SHA-256 of the transaction's ledger entry.
    pub write_set_digest: [u8; 32],
    /// The transaction's commit evidence string.
    pub commit_evidence: String,
    /// The application claims digest its entry records (zeros: none).
    pub claims_digest: [u8; 32],
}

/// Why there is no receipt for a transaction.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReceiptError {
    /// Not committed yet, or not known here.
    #[error("transaction {0} is not committed yet")]
    NotCommitted(TxId),
    /// Committed, but no committed signature covers it yet.
    #[error("no signature covers {0} yet")]
    NoSignatureYet(TxId),
    /// The transaction id names no transaction of this service.
    #[error("transaction {0} is invalid")]
    Invalid(TxId),
    /// The ledger could not produce the parts.
    #[error("{0}")]
    Internal(String),
}

impl Engine {
    /// Raft state for `/node/consensus`.
    pub fn consensus_state(&self) -> ConsensusState {
        let e = self.lock();
        let r = &e.replica;
        let cs = r.conf_state();
        let role = match r.role() {
            Role::Leader => "Primary",
            Role::Follower if cs.learners.contains(&self.raft_id.get()) => "Learner",
            Role::Follower => "Backup",
            Role::PreCandidate | Role::Candidate => "Candidate",
        };
        let peers = cs
            .voters
            .iter()
            .chain(cs.learners.iter())
            .map(|&raw| {
                let id = RaftId(raw);
                let name = self.node_id_of(id).map_or_else(|| id.to_string(), String::from);
                let matched = if r.is_leader() { r.matched(id) } else { None };
                let peer = PeerState {
                    raft_id: id,
                    voter: cs.voters.contains(&raw),
                    matched,
                };
                (name, peer)
            })
            .collect();
        ConsensusState {
            node_id: self.ids.node_id.clone(),
            raft_id: self.raft_id,
            role,
            view: r.view(),
            leader: r.leader().and_then(|l| self.node_id_of(l)),
            last_seqno: r.last_seqno(),
            raft_commit_index: r.raft_commit_index(),
            commit: r.commit_point().to_string(),
            base_seqno: r.base_seqno(),
            snapshot_digest_mismatches: r.snapshot_mismatches(),
            peers,
        }
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

    /// TxID of the latest transaction in the store.
    pub fn current_txid(&self) -> TxId {
        TxId::new(
            View(self.view.load(Ordering::Acquire)),
            Seqno(self.store().current_version()),
        )
    }

    /// TxID of the commit point (the latest committed signature transaction).
    pub fn committed_txid(&self) -> TxId {
        TxId::new(
            View(self.committed_view.load(Ordering::Acquire)),
            Seqno(self.committed_seqno.load(Ordering::Acquire)),
        )
    }

    /// CCF's status of a transaction id.
    pub fn tx_status(&self, id: TxId) -> TxStatus {
        self.lock().replica.tx_status(id)
    }

    /// The parts of a receipt for a committed transaction (the covering signature, the Merkle path, the leaf's
    /// components), or why there is none.
    pub fn receipt(&self, id: TxId) -> Result<ReceiptParts, ReceiptError> {
        self.receipt_with_entry(id).map(|(parts, _)| parts)
    }

    /// [`Engine::receipt`], with the transaction's ledger entry it read (historical queries decode it).
    pub fn receipt_with_entry(&self, id: TxId) -> Result<(ReceiptParts, Vec<u8>), ReceiptError> {
        match self.tx_status(id) {
            TxStatus::Committed => {}
            TxStatus::Pending | TxStatus::Unknown => return Err(ReceiptError::NotCommitted(id)),
            TxStatus::Invalid => return Err(ReceiptError::Invalid(id)),
        }
        // Under the engine lock only what is cheap: the covering signature, the Merkle path if the tree in memory
        // still has it, and where the entries lie. Old entries are read and decoded after the lock is released.
        let e = self.lock();
        let sig_seqno = e
            .replica
            .signature_after(id.seqno)
            .ok_or(ReceiptError::NoSignatureYet(id))?;
        let sources = e
            .replica
            .receipt_sources(id.seqno, sig_seqno)
            .map_err(|err| ReceiptError::Internal(err.to_string()))?;
        let entry = e
            .replica
            .ledger()
            .entry_source(id.seqno.get())
            .map_err(|err| ReceiptError::Internal(err.to_string()))?;
        drop(e);
        let storage = super::storage::FsStorage::new(&self.cfg.storage.ledger_dir)
            .map_err(|err| ReceiptError::Internal(err.to_string()))?;
        let read = |source: &consort_ledger::EntrySource| {
            source
                .read(&storage)
                .map_err(|err| ReceiptError::Internal(err.to_string()))
        };
        let signature_entry = read(&sources.signature_entry)?;
        let entry = read(&entry)?;
        let (signature, proof) = sources
            .finish(&signature_entry)
            .map_err(|err| ReceiptError::Internal(err.to_string()))?;
        let claims_digest = consort_consensus::codec::claims_digest_of(&entry, id.seqno.get())
            .map_err(|err| ReceiptError::Internal(err.to_string()))?;
        let parts = ReceiptParts {
            signature,
            proof,
            claims_digest,
            write_set_digest: sha256(&entry),
            commit_evidence: self
                .ledger_secrets()
                .for_seqno(id.seqno.get())
                .commit_evidence(id.view.get(), id.seqno.get()),
        };
        Ok((parts, entry))
    }

    /// Seqno of the latest signature transaction in the store (0 before the first).
    pub fn last_signature_seqno(&self) -> Seqno {
        Seqno(self.last_signature().map(|s| s.seqno).unwrap_or(0))
    }
}
