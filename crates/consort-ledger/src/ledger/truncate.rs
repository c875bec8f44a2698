//! Dropping entries: rolling back an uncommitted suffix ([`Ledger::truncate`]) or the whole ledger when a
//! snapshot replaces it ([`Ledger::clear`]), in an order that leaves a loadable ledger after a crash at any step.

use super::index::ChunkState;
use super::Ledger;
use crate::chunk::{chunk_name_open, entry_is_signature, CHUNK_HEADER_SIZE};
use crate::{LedgerError, LedgerStorage};

impl<S: LedgerStorage> Ledger<S> {
    /// Drops every entry after `seqno` (Raft rollback, or cleaning up on restart). Chunks entirely after it are
    /// removed; a complete chunk that contains it is reopened. Committed entries cannot be dropped.
    pub fn truncate(&mut self, seqno: u64) -> Result<(), LedgerError> {
        if seqno >= self.last_seqno() {
            return Ok(());
        }
        self.repair_after_load()?;
        if seqno < self.committed_seqno {
            return Err(LedgerError::TruncateCommitted {
                requested: seqno,
                committed: self.committed_seqno,
            });
        }
        *self.read_cache.lock().unwrap_or_else(|p| p.into_inner()) = None;
        // Later chunks go first, last one first, so a crash leaves a contiguous prefix.
        while let Some(c) = self.chunks.last() {
            if c.start <= seqno {
                break;
            }
            let name = c.name();
            self.storage.remove(&name)?;
            self.chunks.pop();
            self.open_bytes = Vec::new();
        }
        let Some(chunk) = self.chunks.last_mut() else {
            self.last_is_signature = true;
            return Ok(());
        };
        if chunk.end() == seqno {
            // A complete chunk ends on a signature; an open one must be reloaded if it was just exposed.
            let open = chunk.state == ChunkState::Open;
            if open && self.open_bytes.is_empty() {
                self.open_bytes = self.storage.read(&chunk.name())?;
            }
            self.last_is_signature = !open || self.entry_at_is_signature(seqno)?;
            return Ok(());
        }
        let keep = (seqno - chunk.start + 1) as usize;
        // The chunk holding `seqno` is not settled (it holds uncommitted entries), so it has its offsets.
        let new_len = chunk.offsets[keep];
        // Rename first, then truncate (drops the position table), then clear the header: a complete name always
        // means a whole chunk, and every intermediate state loads as this same chunk, closed or open.
        let was_open = chunk.state == ChunkState::Open;
        let open_name = chunk_name_open(chunk.start);
        if chunk.named != ChunkState::Open {
            self.storage.rename(&chunk.name(), &open_name)?;
            chunk.named = ChunkState::Open;
        }
        self.storage.truncate(&open_name, new_len)?;
        if !was_open {
            self.storage
                .write_at(&open_name, 0, &[0u8; CHUNK_HEADER_SIZE as usize])?;
        }
        chunk.offsets.truncate(keep);
        chunk.count = keep as u64;
        chunk.entries_end = new_len;
        chunk.state = ChunkState::Open;
        chunk.named = ChunkState::Open;
        chunk.synced = false;
        if was_open && !self.open_bytes.is_empty() {
            self.open_bytes.truncate(new_len as usize);
        } else {
            self.open_bytes = self.storage.read(&open_name)?;
        }
        self.storage.sync(&open_name)?;
        self.last_is_signature = self.entry_at_is_signature(seqno)?;
        Ok(())
    }

    /// Removes every chunk, committed ones included, leaving an empty ledger whose next append may start at any
    /// seqno. For a replica that installs a snapshot past its own ledger: the snapshot replaces the history.
    /// Chunks are removed last one first, so a crash leaves a contiguous prefix.
    pub fn clear(&mut self) -> Result<(), LedgerError> {
        self.repair_after_load()?;
        *self.read_cache.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.settled = 0;
        while let Some(c) = self.chunks.last() {
            let name = c.name();
            self.storage.remove(&name)?;
            self.chunks.pop();
        }
        self.open_bytes = Vec::new();
        self.last_is_signature = true;
        self.committed_seqno = 0;
        Ok(())
    }

    fn entry_at_is_signature(&self, seqno: u64) -> Result<bool, LedgerError> {
        Ok(entry_is_signature(&self.read_entry(seqno)?))
    }
}
