//! What historical queries need from the engine: where the committed entries of a seqno range lie, read under the
//! engine lock in bounded steps, so that the entries themselves are read and decoded after it is released.

use super::{Engine, ReceiptError, TxId, TxStatus};
use consort_consensus::{Seqno, View};
use consort_ledger::EntrySource;

/// Entry sources looked up per hold of the engine lock (each is cheap for a settled chunk; an entry of a chunk that
/// is not settled yet is copied), so that a long range never holds the lock for long.
pub const MAX_ENTRY_SOURCES_PER_HOLD: usize = 256;

/// Where the committed entries `from..=through` lie, each with its TxID.
#[derive(Debug)]
pub struct CommittedEntries {
    /// One per seqno, in order.
    pub entries: Vec<(TxId, EntrySource)>,
}

impl Engine {
    /// The view of `seqno` in this node's log, if it has that entry.
    pub fn view_of(&self, seqno: Seqno) -> Option<View> {
        self.lock().replica.view_of(seqno)
    }

    /// The status of the transaction at `seqno` (under the view this node's log has for it).
    pub fn seqno_status(&self, seqno: Seqno) -> (Option<View>, TxStatus) {
        let e = self.lock();
        match e.replica.view_of(seqno) {
            Some(view) => (Some(view), e.replica.tx_status(TxId::new(view, seqno))),
            None => (None, TxStatus::Unknown),
        }
    }

    /// Where the committed entries `from..=to` lie. Fails if `to` is not committed (then neither is any entry
    /// after the last committed one) or an entry is not in this node's ledger (it started from a later snapshot).
    pub fn committed_entries(&self, from: Seqno, to: Seqno) -> Result<CommittedEntries, ReceiptError> {
        let mut entries = Vec::new();
        let mut next = from;
        while next <= to {
            let e = self.lock();
            let last = Seqno(to.get().min(next.get() + MAX_ENTRY_SOURCES_PER_HOLD as u64 - 1));
            let Some(view) = e.replica.view_of(to) else {
                return Err(ReceiptError::NotCommitted(TxId::new(View(0), to)));
            };
            match e.replica.tx_status(TxId::new(view, to)) {
                TxStatus::Committed => {}
                _ => return Err(ReceiptError::NotCommitted(TxId::new(view, to))),
            }
            for s in next.get()..=last.get() {
                let seqno = Seqno(s);
                let id = TxId::new(e.replica.view_of(seqno).unwrap_or(View(0)), seqno);
                let source = e
                    .replica
                    .ledger()
                    .entry_source(s)
                    .map_err(|err| ReceiptError::Internal(err.to_string()))?;
                entries.push((id, source));
            }
            drop(e);
            next = last.next();
        }
        Ok(CommittedEntries { entries })
    }
}
