//! The Raft log as raft-rs sees it ([`raft::Storage`]), implemented over the CCF ledger: entries are read back
//! from the ledger's chunks (one copy of each entry), terms and membership changes are indexed in memory.

use crate::codec::raft_entry;
use crate::history::ViewHistory;
use crate::snapshot;
use crate::vocab::TxId;
use consort_kv::Store;
use consort_ledger::{Ledger, LedgerSecrets, LedgerStorage};
use raft::eraftpb::{ConfChangeV2, ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Everything raft-rs reads through [`raft::Storage`], plus what a snapshot needs.
pub(crate) struct Log<S: LedgerStorage> {
    pub ledger: Ledger<S>,
    /// Seqno and view of the snapshot the log starts after ((0, 0) without one).
    pub base_index: u64,
    pub base_term: u64,
    /// The encoded bundle of that snapshot, served again until a later signature commits.
    pub base_bundle: Option<Vec<u8>>,
    /// `terms.get(i)` is the view of seqno `base_index + 1 + i`.
    pub terms: Terms,
    /// Membership changes in the log, by seqno.
    pub conf_changes: BTreeMap<u64, ConfChangeV2>,
    pub hard_state: HardState,
    /// The membership at `base_index`, and after each applied change: (seqno, membership).
    pub conf_history: Vec<(u64, ConfState)>,
    pub store: Arc<Store>,
    /// The ledger secrets by the seqno they start at; rekeys add to it, rollbacks take their secrets out again.
    pub secrets: LedgerSecrets,
    /// Opens this node's copy of a rekey's secret ([`crate::rekey::learn`]).
    pub secret_opener: Option<Arc<dyn crate::rekey::SecretOpener>>,
    pub views: ViewHistory,
    /// CCF commit point: the last committed signature transaction.
    pub commit: TxId,
}

/// The view of every entry in the log, held as runs of equal views (views change rarely), so that it costs
/// memory per view, not per entry. The same operations as a `Vec<u64>` of views, as far as the log needs them.
#[derive(Debug, Default, Clone)]
pub(crate) struct Terms {
    /// (index of the run's first entry, its view), in increasing order of both.
    runs: Vec<(u64, u64)>,
    len: u64,
}

impl Terms {
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    pub(crate) fn get(&self, i: usize) -> Option<u64> {
        let i = i as u64;
        if i >= self.len {
            return None;
        }
        let run = self.runs.partition_point(|&(first, _)| first <= i);
        self.runs.get(run.checked_sub(1)?).map(|&(_, view)| view)
    }

    pub(crate) fn last(&self) -> Option<u64> {
        self.runs.last().map(|&(_, view)| view)
    }

    pub(crate) fn push(&mut self, view: u64) {
        if self.last() != Some(view) {
            self.runs.push((self.len, view));
        }
        self.len += 1;
    }

    /// Keeps the first `len` entries.
    pub(crate) fn truncate(&mut self, len: usize) {
        let len = len as u64;
        if len >= self.len {
            return;
        }
        self.len = len;
        while self.runs.last().is_some_and(|&(first, _)| first >= len) {
            self.runs.pop();
        }
    }

    pub(crate) fn clear(&mut self) {
        self.runs.clear();
        self.len = 0;
    }
}

fn other(e: impl std::error::Error + Send + Sync + 'static) -> raft::Error {
    raft::Error::Store(StorageError::Other(Box::new(e)))
}

impl<S: LedgerStorage> Log<S> {
    pub(crate) fn last_index(&self) -> u64 {
        self.base_index + self.terms.len() as u64
    }

    pub(crate) fn term_of(&self, seqno: u64) -> Option<u64> {
        if seqno == self.base_index {
            return Some(self.base_term);
        }
        let i = seqno.checked_sub(self.base_index + 1)?;
        self.terms.get(usize::try_from(i).ok()?)
    }

    /// The membership in force at `seqno` (for a snapshot taken there).
    pub(crate) fn conf_state_at(&self, seqno: u64) -> ConfState {
        self.conf_history
            .iter()
            .rev()
            .find(|(at, _)| *at <= seqno)
            .or(self.conf_history.first())
            .map(|(_, cs)| cs.clone())
            .unwrap_or_default()
    }

    /// A Raft snapshot of the state at the commit point.
    pub(crate) fn snapshot_at_commit(&self) -> Result<Snapshot, crate::ConsensusError> {
        let (view, seqno) = (self.commit.view.get(), self.commit.seqno.get());
        let data = if seqno == self.base_index {
            self.base_bundle.clone().ok_or(crate::SnapshotError::NothingCommitted)?
        } else {
            self.build_bundle(&self.ledger.read_entry(seqno)?, view, seqno)?
        };
        Ok(self.raft_snapshot(data, seqno, view))
    }

    /// The snapshot bundle of the store at signature transaction `seqno` (whose entry is `sig_entry`, in `view`),
    /// which must be at or above the store's committed version.
    pub(crate) fn build_bundle(
        &self,
        sig_entry: &[u8],
        view: u64,
        seqno: u64,
    ) -> Result<Vec<u8>, crate::ConsensusError> {
        snapshot::build(
            &self.store,
            &self.secrets,
            sig_entry,
            view,
            seqno,
            self.view_history_at(view, seqno),
        )
    }

    /// CCF's view history up to `seqno`, which is in `view` (and may not be in `views` yet: the primary starts a
    /// snapshot before its own signature entry comes back through Raft, a backup before it notes the entry).
    pub(crate) fn view_history_at(&self, view: u64, seqno: u64) -> Vec<u64> {
        let mut views = self.views.clone();
        views.note(view, seqno);
        views.up_to(seqno)
    }

    /// The Raft snapshot carrying `bundle`, made at `seqno` in `view`, with the membership in force there.
    pub(crate) fn raft_snapshot(&self, bundle: Vec<u8>, seqno: u64, view: u64) -> Snapshot {
        let mut snap = Snapshot {
            data: bundle.into(),
            ..Default::default()
        };
        let meta = snap.mut_metadata();
        meta.index = seqno;
        meta.term = view;
        meta.set_conf_state(self.conf_state_at(seqno));
        snap
    }
}

impl<S: LedgerStorage> raft::Storage for Log<S> {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state_at(self.base_index),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.base_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last_index() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let max_size = max_size.into().unwrap_or(u64::MAX);
        let mut out = Vec::new();
        let mut size = 0u64;
        for seqno in low..high {
            let bytes = self.ledger.read_entry(seqno).map_err(other)?;
            size += bytes.len() as u64;
            if !out.is_empty() && size > max_size {
                break;
            }
            let term = self
                .term_of(seqno)
                .ok_or(raft::Error::Store(StorageError::Unavailable))?;
            out.push(raft_entry(term, seqno, bytes, self.conf_changes.get(&seqno)));
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx < self.base_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        self.term_of(idx).ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.base_index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index())
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        // Raft refuses a snapshot whose membership does not name the receiver; wait until a signature commits
        // after the change that added it (the primary signs right after a membership change).
        let cs = self.conf_state_at(self.commit.seqno.get());
        let named = cs
            .voters
            .iter()
            .chain(&cs.learners)
            .chain(&cs.voters_outgoing)
            .chain(&cs.learners_next);
        if self.commit.seqno.get() < request_index || !named.into_iter().any(|&id| id == to) {
            return Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable));
        }
        self.snapshot_at_commit()
            .map_err(|_| raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable))
    }
}

#[cfg(test)]
mod tests {
    use super::Terms;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Push(u64),
        Truncate(usize),
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (0u64..4).prop_map(Op::Push),
            2 => (0usize..40).prop_map(Op::Truncate),
            1 => Just(Op::Clear),
        ]
    }

    proptest! {
        /// Terms answers like the Vec of views it replaces, after any pushes, truncations and clears.
        #[test]
        fn terms_behave_like_a_vec(ops in proptest::collection::vec(op(), 0..200)) {
            let (mut terms, mut model) = (Terms::default(), Vec::<u64>::new());
            for op in ops {
                match op {
                    Op::Push(v) => {
                        // Views never go backwards in a log.
                        let v = model.last().copied().unwrap_or(0) + v;
                        terms.push(v);
                        model.push(v);
                    }
                    Op::Truncate(n) => {
                        terms.truncate(n);
                        model.truncate(n);
                    }
                    Op::Clear => {
                        terms.clear();
                        model.clear();
                    }
                }
                prop_assert_eq!(terms.len(), model.len());
                prop_assert_eq!(terms.last(), model.last().copied());
                for i in 0..model.len() + 2 {
                    prop_assert_eq!(terms.get(i), model.get(i).copied());
                }
            }
        }
    }
}
