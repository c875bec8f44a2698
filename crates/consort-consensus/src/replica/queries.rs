//! What a node may ask a replica between steps (role, view, commit point, transaction status, receipt parts),
//! and the few settings it may change (signing on election, chunk ends, snapshots, trusted nodes, ledger flushes).

use super::Replica;
use crate::error::{ConsensusError, EntryFault, Inconsistency};
use crate::receipt::ReceiptSources;
use crate::vocab::{RaftId, Role, Seqno, TxId, TxStatus, View};
use consort_kv::Store;
use consort_ledger::{Ledger, LedgerStorage, PrimarySignature, ProofStep};
use raft::eraftpb::ConfState;
use raft::StateRole;
use std::sync::Arc;

impl<S: LedgerStorage> Replica<S> {
    /// This replica's Raft id.
    pub fn id(&self) -> RaftId {
        self.cfg.id
    }

    /// The key-value store, holding every transaction in the log (committed or not). Replaced by a snapshot
    /// install: fetch it again after [`Action::SnapshotInstalled`].
    pub fn store(&self) -> &Arc<Store> {
        &self.node.store().store
    }

    /// The ledger (the Raft log), for reading entries back.
    pub fn ledger(&self) -> &Ledger<S> {
        &self.node.store().ledger
    }

    /// This replica's Raft role.
    pub fn role(&self) -> Role {
        self.node.raft.state.into()
    }

    /// Whether this replica is the primary (Raft leader).
    pub fn is_leader(&self) -> bool {
        self.node.raft.state == StateRole::Leader
    }

    /// The current view (Raft term).
    pub fn view(&self) -> View {
        View(self.node.raft.term)
    }

    /// The primary this replica knows of, if any.
    pub fn leader(&self) -> Option<RaftId> {
        Some(self.node.raft.leader_id)
            .filter(|&l| l != raft::INVALID_ID)
            .map(RaftId)
    }

    /// Seqno of the last entry in this replica's log.
    pub fn last_seqno(&self) -> Seqno {
        Seqno(self.node.store().last_index())
    }

    /// The CCF commit point: the last committed signature transaction.
    pub fn commit_point(&self) -> TxId {
        self.node.store().commit
    }

    /// Raft's commit index (may be past the commit point, up to the next signature).
    pub fn raft_commit_index(&self) -> Seqno {
        Seqno(self.node.raft.raft_log.committed)
    }

    /// Seqno of the snapshot this replica's log starts after (0 if none).
    pub fn base_seqno(&self) -> Seqno {
        Seqno(self.node.store().base_index)
    }

    /// The service's first membership (Raft voter ids), when this replica's log starts at seqno 1: it is not in the
    /// ledger (the first node starts as the only voter), so a node that replicates the ledger from seqno 1 must be
    /// told it. `None` when the log starts after a snapshot.
    pub fn initial_voters(&self) -> Option<Vec<RaftId>> {
        let log = self.node.store();
        match log.conf_history.first() {
            Some((0, cs)) if log.base_index == 0 => Some(cs.voters.iter().copied().map(RaftId).collect()),
            _ => None,
        }
    }

    /// Whether `seqno` is a signature transaction in this replica's log.
    pub fn is_signature(&self, seqno: Seqno) -> bool {
        self.signatures.contains(&seqno.get())
    }

    /// The view of `seqno` in this replica's log.
    pub fn view_of(&self, seqno: Seqno) -> Option<View> {
        if seqno > self.last_seqno() {
            return None;
        }
        self.node.store().views.view_of(seqno.get()).map(View)
    }

    /// The error that stopped this replica, if it halted.
    pub fn halted(&self) -> Option<&ConsensusError> {
        self.halted.as_ref()
    }

    /// The ledger secrets this replica reads and writes with: the first one, and those rekeys in its log gave it.
    /// The node keeps a sealed copy and derives commit evidence from the secret of each seqno.
    pub fn ledger_secrets(&self) -> &consort_ledger::LedgerSecrets {
        &self.node.store().secrets
    }

    /// Membership currently in force.
    pub fn conf_state(&self) -> ConfState {
        self.node.raft.prs().conf().to_conf_state()
    }

    /// On the primary: the highest seqno known to be replicated on `peer`.
    pub fn matched(&self, peer: RaftId) -> Option<Seqno> {
        self.node.raft.prs().get(peer.get()).map(|p| Seqno(p.matched))
    }

    /// CCF's status of a transaction id, from this replica's point of view.
    pub fn tx_status(&self, tx: TxId) -> TxStatus {
        let commit = self.commit_point();
        if tx.seqno == Seqno(0) {
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
    pub fn signature_after(&self, seqno: Seqno) -> Option<Seqno> {
        self.signatures.range(seqno.get() + 1..).next().copied().map(Seqno)
    }

    /// The latest signature transaction at or below the commit point, if any is in the log.
    pub fn last_committed_signature(&self) -> Option<Seqno> {
        self.signatures
            .range(..=self.commit_point().seqno.get())
            .next_back()
            .copied()
            .map(Seqno)
    }

    /// What a receipt for `seqno` needs besides its leaf components: the signature transaction `sig_seqno`
    /// covering it (its signed record, read back from the ledger) and the Merkle path from leaf `seqno` to the
    /// root that signature signs (leaves 0..sig_seqno-1).
    pub fn receipt_parts(
        &self,
        seqno: Seqno,
        sig_seqno: Seqno,
    ) -> Result<(PrimarySignature, Vec<ProofStep>), ConsensusError> {
        let sources = self.receipt_sources(seqno, sig_seqno)?;
        let signature_entry = self.ledger().read_entry(sig_seqno.get())?;
        sources.finish(&signature_entry)
    }

    /// The cheap part of [`Replica::receipt_parts`], for a caller that finishes the rest without holding the
    /// replica: checks that `sig_seqno` covers `seqno`, takes the Merkle path from the tree in memory when it still
    /// has it, and says where the signature entry lies (see [`ReceiptSources::finish`]).
    pub fn receipt_sources(&self, seqno: Seqno, sig_seqno: Seqno) -> Result<ReceiptSources, ConsensusError> {
        let (seqno, sig_seqno) = (seqno.get(), sig_seqno.get());
        if !self.signatures.contains(&sig_seqno) || seqno >= sig_seqno {
            return Err(Inconsistency::NotCoveringSignature {
                signature: sig_seqno,
                seqno,
            }
            .into());
        }
        // The tree in memory keeps paths only from the commit point on; for an older transaction, the tree its
        // signature transaction stored (flushed to the commit point of the time, which is below `seqno`) has it.
        let path = if seqno >= self.tree.first_retained() {
            Some(
                self.tree
                    .path(seqno, sig_seqno)
                    .map_err(|source| ConsensusError::entry(sig_seqno, EntryFault::MerklePath { seqno, source }))?,
            )
        } else {
            None
        };
        Ok(ReceiptSources {
            seqno,
            sig_seqno,
            sig_view: self.view_of(Seqno(sig_seqno)).unwrap_or_default().get(),
            path,
            signature_entry: self.ledger().entry_source(sig_seqno)?,
        })
    }

    /// Evidence transactions whose snapshot this replica built with a different digest (and so did not keep).
    pub fn snapshot_mismatches(&self) -> u64 {
        self.snapshots.mismatches
    }

    /// See [`ReplicaConfig::sign_on_election`].
    pub fn set_sign_on_election(&mut self, sign: bool) {
        self.cfg.sign_on_election = sign;
    }

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

    /// Trusts signature transactions signed with `cert_pem` by Raft id `id` (a node that joined).
    pub fn trust_node(&mut self, id: RaftId, cert_pem: String) {
        self.trusted.insert(id, cert_pem);
    }

    /// A snapshot at the commit point (an encoded Raft `Snapshot`), for the snapshots directory and for joiners.
    pub fn snapshot(&self) -> Result<Vec<u8>, ConsensusError> {
        if let Some(through) = self.private_pending_through() {
            return Err(crate::recovery::RecoveryFault::PrivatePending { through }.into());
        }
        let snap = self.node.store().snapshot_at_commit()?;
        Ok(crate::persisted::encode_protobuf(&snap))
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
}
