//! Taking one entry into the log: the checks every entry passes (seqno, view, signature transactions), applying
//! its write set to the store, appending it to the ledger and the Merkle tree. Shared by the running replica and
//! by replay at start-up.

use crate::codec::{decode, DecodedEntry, PrivateDomain};
use crate::error::{ConsensusError, EntryFault, Inconsistency, SignatureFault};
use crate::log::Log;
use crate::periodic::Snapshots;
use crate::recovery::Trust;
use crate::snapshot;
use crate::vocab::{Seqno, TxId, View};
use consort_kv::{Commitment, WriteBatch, WriteSet};
use consort_ledger::{
    verify_root, EntryKind, LedgerStorage, MerkleTree, PrimarySignature, SIGNATURES_TABLE, SINGLETON_KEY,
};
use std::collections::BTreeSet;

/// Borrowed view of the state one entry changes.
pub(crate) struct PartialReplicaRef<'a, S: LedgerStorage> {
    pub(crate) log: &'a mut Log<S>,
    pub(crate) tree: &'a mut MerkleTree,
    pub(crate) signatures: &'a mut BTreeSet<u64>,
    pub(crate) trusted: Trust<'a>,
    /// Where periodic snapshots are started and claimed (none while replaying the ledger at start-up).
    pub(crate) snapshots: Option<&'a mut Snapshots>,
}

/// Where an entry taken into the log comes from, which decides whether it still has to be written to the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// From Raft (a peer's append or this replica's own proposal): appended to the ledger here.
    Raft,
    /// Read back from the ledger at start-up: it is there already.
    Ledger,
}

impl<S: LedgerStorage> PartialReplicaRef<'_, S> {
    /// Takes entry `(view, seqno)` from Raft into the log: checks it, applies its write set to the store unless the
    /// store already holds it (the primary's own transactions), verifies it first if it is a signature transaction,
    /// appends it to the ledger and to the Merkle tree.
    pub(crate) fn accept(&mut self, view: u64, seqno: u64, bytes: Vec<u8>) -> Result<(), ConsensusError> {
        let private = if seqno > self.log.store.current_version() {
            PrivateDomain::Decrypt
        } else {
            PrivateDomain::Skip
        };
        let decoded = decode(self.log.secrets.for_seqno(seqno), &bytes, view, seqno, private)?;
        self.accept_decoded(view, seqno, &bytes, decoded, Origin::Raft, Commitment::Uncommitted)
    }

    /// [`Self::accept`] for an entry already [`decode`]d (decrypted if the store does not hold it yet), from
    /// `origin`, with what is known of its `commitment`: [`Commitment::Committed`] when a committed signature
    /// transaction is known to cover it (only replay knows that ahead), and then the store keeps no undo record
    /// for it, as it can never be rolled back.
    pub(crate) fn accept_decoded(
        &mut self,
        view: u64,
        seqno: u64,
        bytes: &[u8],
        decoded: DecodedEntry,
        origin: Origin,
        commitment: Commitment,
    ) -> Result<(), ConsensusError> {
        if seqno != self.log.last_index() + 1 || self.tree.len() != seqno {
            return Err(Inconsistency::EntryOutOfOrder {
                seqno,
                last: self.log.last_index(),
                leaves: self.tree.len(),
            }
            .into());
        }
        if self.log.terms.last().is_some_and(|t| t > view) || view < self.log.base_term {
            return Err(ConsensusError::entry(seqno, EntryFault::ViewBackwards(view)));
        }
        let DecodedEntry { info, private } = decoded;
        let store = self.log.store.clone();
        if seqno > store.current_version() {
            // The old part of a recovered ledger before its secrets are restored: public maps only.
            let private = match private {
                Some(private) => private,
                None if !self.log.secrets.covers(seqno) => WriteBatch::default(),
                None => return Err(Inconsistency::NotDecrypted { seqno }.into()),
            };
            if info.is_signature {
                // The signatures table is public: the public maps are all the check needs.
                self.verify_signature(view, seqno, &info.public)?;
                if let crate::recovery::Trust::LedgerTables = self.trusted {
                    let extra = crate::recovery::extra_signature_write(&info.public)
                        .map(str::to_owned)
                        .or_else(|| private.maps.first().map(|(name, _)| name.clone()));
                    if let Some(table) = extra {
                        return Err(ConsensusError::BadSignature {
                            seqno,
                            reason: SignatureFault::WritesMore { table },
                        });
                    }
                }
            }
            if let Some(claimed) = snapshot::evidence_in(&info.public) {
                self.claim_snapshot(seqno, claimed);
            }
            let marked = info.is_signature && snapshot::is_marked_for_snapshot(&info.public, seqno);
            crate::rekey::learn(
                &mut self.log.secrets,
                self.log.secret_opener.as_deref(),
                seqno,
                &info.public,
            )?;
            let mut batch = WriteBatch::from(info.public);
            batch.maps.extend(private.maps);
            store.apply_batch(seqno, batch, commitment)?;
            if marked {
                if let Some(snapshots) = self.snapshots.as_deref_mut() {
                    snapshots.marked(&store, self.log, bytes, view, seqno)?;
                }
            }
        }
        if origin == Origin::Raft {
            let kind = if info.is_signature {
                EntryKind::Signature
            } else {
                EntryKind::Transaction
            };
            self.log.ledger.append(seqno, bytes, kind)?;
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
    pub(crate) fn claim_snapshot(&mut self, evidence: u64, claimed: snapshot::Evidence) {
        let seqno = claimed.seqno;
        // A replica whose log starts at or after `seqno` (it installed a snapshot there) has nothing to compare.
        let usable = seqno < evidence && seqno > self.log.base_index && self.signatures.contains(&seqno);
        if let Some(snapshots) = self.snapshots.as_deref_mut().filter(|_| usable) {
            snapshots.claim(evidence, seqno, claimed.hash);
        }
    }

    pub(crate) fn verify_signature(&self, view: u64, seqno: u64, ws: &WriteSet) -> Result<(), ConsensusError> {
        let bad = |reason: SignatureFault| ConsensusError::BadSignature { seqno, reason };
        let value = match ws
            .maps
            .get(SIGNATURES_TABLE)
            .and_then(|m| m.writes.get(&SINGLETON_KEY[..]))
        {
            Some(Some(v)) => v,
            _ => return Err(bad(SignatureFault::NoSignature)),
        };
        let sig = PrimarySignature::from_json_bytes(value).map_err(|e| bad(SignatureFault::Record(e)))?;
        if sig.seqno != seqno || sig.view != view {
            return Err(bad(SignatureFault::WrongTransaction(TxId::new(
                View(sig.view),
                Seqno(sig.seqno),
            ))));
        }
        let root = self.tree.try_root_at(seqno).map_err(|e| bad(SignatureFault::Root(e)))?;
        if sig.root_bytes().map_err(|e| bad(SignatureFault::Record(e)))? != root {
            return Err(bad(SignatureFault::RootMismatch {
                signed: sig.root.clone(),
                root: hex::encode(root),
                first_covered: self.signatures.range(..seqno).next_back().map_or(1, |s| s + 1),
            }));
        }
        if !self.trusted.trusts(&self.log.store, &sig.node, &sig.cert) {
            return Err(bad(SignatureFault::UntrustedSigner { node: sig.node.clone() }));
        }
        let der = sig.sig_bytes().map_err(|e| bad(SignatureFault::Record(e)))?;
        verify_root(&sig.cert, &root, &der).map_err(|e| bad(SignatureFault::Verify(e)))
    }
}
