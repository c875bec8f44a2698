//! The ledger's in-memory index of its chunks: where each one starts, how far it got (open, complete,
//! committed), what its file is named on disk and where its entries lie.

use crate::chunk::{chunk_name_committed, chunk_name_complete, chunk_name_open};

/// How far a chunk got: entries are still appended to it, it is closed, or every entry in it is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChunkState {
    Open,
    Complete,
    Committed,
}

/// One chunk file as the index knows it.
#[derive(Debug, Clone)]
pub(super) struct Chunk {
    /// Seqno of its first entry.
    pub(super) start: u64,
    /// Number of entries; never 0 (empty chunks are not kept).
    pub(super) count: u64,
    /// Offset of each entry in the file. Dropped once the chunk is settled (its file's position table has them,
    /// and nothing changes it again), so the index costs memory per chunk, not per entry, however long the ledger.
    pub(super) offsets: Vec<u64>,
    /// End of the last entry: where the position table starts once complete.
    pub(super) entries_end: u64,
    /// How far the chunk got in memory (its file's name may still lag behind: see `named`).
    pub(super) state: ChunkState,
    /// The state the file's name says. A closed chunk keeps its open name until its table is durable (the
    /// [`super::Ledger::flush`] after the one that synced it renames it), so that a complete name always means a
    /// durable table; a commit's rename to `.committed` also waits for the next flush.
    pub(super) named: ChunkState,
    /// Whether a flush has synced this closed chunk (so the next flush may rename it).
    pub(super) synced: bool,
}

impl Chunk {
    /// Seqno of its last entry.
    pub(super) fn end(&self) -> u64 {
        self.start + self.count - 1
    }

    /// The file's current name.
    pub(super) fn name(&self) -> String {
        self.name_for(self.named)
    }

    /// Committed, synced and named so: nothing will change this chunk's file again.
    pub(super) fn settled(&self) -> bool {
        self.state == ChunkState::Committed && self.synced && self.named == ChunkState::Committed
    }

    /// The file's name once it reflects `state`.
    pub(super) fn name_for(&self, state: ChunkState) -> String {
        match state {
            ChunkState::Open => chunk_name_open(self.start),
            ChunkState::Complete => chunk_name_complete(self.start, self.end()),
            ChunkState::Committed => chunk_name_committed(self.start, self.end()),
        }
    }

    /// Byte range of entry `seqno` given this chunk's entry offsets (`self.offsets`, or the file's table once
    /// the chunk is settled); None if the offsets do not cover it.
    pub(super) fn entry_range(&self, offsets: &[u64], seqno: u64) -> Option<(usize, usize)> {
        let i = usize::try_from(seqno.checked_sub(self.start)?).ok()?;
        let from = *offsets.get(i)?;
        let to = offsets.get(i + 1).copied().unwrap_or(self.entries_end);
        Some((from as usize, to as usize))
    }
}
