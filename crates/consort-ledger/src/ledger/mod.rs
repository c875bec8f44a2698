//! [`Ledger`]: the sans-IO chunk manager over a [`LedgerStorage`] that appends, closes, commits, flushes, reads
//! and truncates entries, keeping an index from seqno to entry. Loading an existing ledger is in `load`, reads
//! in `read`, rollback in `truncate`.

mod index;
mod load;
mod read;
mod truncate;

pub use load::TornTail;
pub use read::{ChunkEntries, EntrySource, SettledEntry};

use crate::chunk::{chunk_name_open, position_table, CHUNK_HEADER_SIZE};
use crate::entry::{parse_entry, FLAG_FORCE_CHUNK_AFTER, FLAG_FORCE_CHUNK_BEFORE};
use crate::error::EntryFraming;
use crate::limits::MAX_CHUNK_SIZE;
use crate::{LedgerError, LedgerStorage};
use index::{Chunk, ChunkState};
use read::CachedChunk;
use std::sync::{Arc, Mutex};

/// Whether an appended entry is a signature transaction. Only a signature may close a chunk, so that every
/// chunk ends on one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// Any transaction but a signature transaction.
    Transaction,
    /// A signature transaction (it writes `public:ccf.internal.signatures`).
    Signature,
}

impl From<bool> for EntryKind {
    /// For callers that hold "is a signature" as a flag: `true` is [`EntryKind::Signature`].
    fn from(is_signature: bool) -> Self {
        if is_signature {
            EntryKind::Signature
        } else {
            EntryKind::Transaction
        }
    }
}

/// Most bytes reserved up front for the open chunk's in-memory copy (a larger chunk threshold grows past it).
pub const OPEN_BUFFER_RESERVE_LIMIT: u64 = 64 * 1024 * 1024;

/// The ledger: CCF chunk files over a [`LedgerStorage`], with an index from seqno to entry.
pub struct Ledger<S: LedgerStorage> {
    storage: S,
    chunk_threshold_bytes: u64,
    /// Contiguous, ascending; only the last may be open.
    chunks: Vec<Chunk>,
    /// Bytes of the open chunk file (header included), mirrored in memory: recent entries are read from here.
    open_bytes: Vec<u8>,
    /// Whether the last entry is a signature transaction (an empty ledger counts as ending on one).
    last_is_signature: bool,
    /// Highest seqno known to be committed.
    committed_seqno: u64,
    /// The last complete chunk read (or just closed), by first seqno: its bytes up to the end of its entries. Followers
    /// that lag behind a chunk close read from it, so the primary does not read the file back from disk.
    /// With the chunk's entry offsets.
    read_cache: Mutex<Option<CachedChunk>>,
    /// A closed chunk's buffer that the read cache gave back: the next open chunk reuses it, so its pages are not
    /// faulted in afresh under the caller's lock for every chunk.
    spare: Vec<u8>,
    /// Chunks before this index are committed, synced and named so: [`Self::flush`] never looks at them again, so
    /// its work under the caller's lock does not grow with the ledger.
    settled: usize,
    /// File changes the load decided on and the first write makes (`load`'s module documentation).
    repair: Option<load::Repair>,
    /// What the load dropped as a torn write.
    torn_tail: Option<TornTail>,
}

impl<S: LedgerStorage> std::fmt::Debug for Ledger<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("chunks", &self.chunk_names())
            .field("last_seqno", &self.last_seqno())
            .field("committed_seqno", &self.committed_seqno)
            .finish()
    }
}

impl<S: LedgerStorage> Ledger<S> {
    /// [`Self::load`], then every entry in seqno order (the first is at [`Self::first_seqno`]). Holds the whole
    /// ledger in memory: for tests and small ledgers; recovery replay reads chunk by chunk with
    /// [`Self::read_chunk_of`].
    pub fn open(storage: S, chunk_threshold_bytes: u64) -> Result<(Self, Vec<Vec<u8>>), LedgerError> {
        let ledger = Self::load(storage, chunk_threshold_bytes)?;
        let entries = match ledger.first_seqno() {
            Some(first) => ledger.read_entries(first, ledger.last_seqno())?,
            None => Vec::new(),
        };
        Ok((ledger, entries))
    }

    /// Entry offsets the index holds in memory: those of the chunks not yet settled (committed, synced and named
    /// so). Settled chunks are read through their files' position tables, so this stays bounded by the
    /// uncommitted suffix of the ledger, however long it grows.
    pub fn offsets_held(&self) -> usize {
        self.chunks.iter().map(|c| c.offsets.len()).sum()
    }

    /// Seqno of the first entry, if any.
    pub fn first_seqno(&self) -> Option<u64> {
        self.chunks.first().map(|c| c.start)
    }

    /// Seqno of the last entry, 0 if the ledger is empty.
    pub fn last_seqno(&self) -> u64 {
        self.chunks.last().map_or(0, Chunk::end)
    }

    /// Highest seqno passed to [`Self::commit`] (after [`Self::open`]: the end of the last committed chunk).
    pub fn committed_seqno(&self) -> u64 {
        self.committed_seqno
    }

    /// Size past which the open chunk is closed at the next signature transaction.
    pub fn chunk_threshold_bytes(&self) -> u64 {
        self.chunk_threshold_bytes
    }

    /// Current file names of all chunks, in order.
    pub fn chunk_names(&self) -> Vec<String> {
        self.chunks.iter().map(Chunk::name).collect()
    }

    /// The storage the chunk files live in.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// Gives the storage back (a tool or test that reopens it, or inspects the files).
    pub fn into_storage(self) -> S {
        self.storage
    }

    fn open_chunk(&mut self) -> Option<&mut Chunk> {
        self.chunks.last_mut().filter(|c| c.state == ChunkState::Open)
    }

    /// Appends the encoded entry for `seqno` (the next seqno, or any seqno if the ledger is empty). After a
    /// signature transaction, the open chunk is closed once it reaches the chunk threshold (or when the entry's
    /// header asks for it). Nothing is synced: call [`Self::flush`] per batch.
    ///
    /// `kind` says whether the entry is a signature transaction (a `bool` converts: `true` is
    /// [`EntryKind::Signature`]); the caller knows it already, and parsing the write set again here would cost
    /// time under its lock.
    pub fn append(&mut self, seqno: u64, entry: &[u8], kind: impl Into<EntryKind>) -> Result<(), LedgerError> {
        let is_signature = kind.into() == EntryKind::Signature;
        let flags = self.check_append(seqno, entry)?;
        self.repair_after_load()?;
        if flags & FLAG_FORCE_CHUNK_BEFORE != 0 && self.last_is_signature && self.open_chunk().is_some() {
            self.close_open_chunk()?;
        }
        if self.open_chunk().is_none() {
            self.start_chunk(seqno)?;
        }
        let offset = self.open_bytes.len() as u64;
        if offset + entry.len() as u64 > MAX_CHUNK_SIZE {
            return Err(LedgerError::TooLarge {
                what: "chunk",
                size: offset + entry.len() as u64,
                limit: MAX_CHUNK_SIZE,
            });
        }
        // invariant: the open chunk exists: it was there or `start_chunk` just pushed it.
        let chunk = self.chunks.last_mut().expect("an open chunk was ensured above");
        self.storage.append(&chunk_name_open(chunk.start), entry)?;
        self.open_bytes.extend_from_slice(entry);
        chunk.offsets.push(offset);
        chunk.count += 1;
        chunk.entries_end = offset + entry.len() as u64;
        self.last_is_signature = is_signature;
        if is_signature
            && (self.open_bytes.len() as u64 >= self.chunk_threshold_bytes || flags & FLAG_FORCE_CHUNK_AFTER != 0)
        {
            self.close_open_chunk()?;
        }
        Ok(())
    }

    /// Checks that `entry` is one whole entry for `seqno`, the next seqno of this ledger; returns its flags.
    fn check_append(&self, seqno: u64, entry: &[u8]) -> Result<u8, LedgerError> {
        let (e, used) = parse_entry(entry)?;
        if used != entry.len() {
            return Err(LedgerError::MalformedEntry(EntryFraming::TrailingBytes(
                entry.len() - used,
            )));
        }
        if e.seqno != seqno {
            return Err(LedgerError::MalformedEntry(EntryFraming::WrongSeqno {
                entry: e.seqno,
                appended: seqno,
            }));
        }
        if seqno == 0 || (!self.chunks.is_empty() && seqno != self.last_seqno() + 1) {
            return Err(LedgerError::OutOfOrder {
                expected: self.last_seqno() + 1,
                got: seqno,
            });
        }
        Ok(e.flags)
    }

    /// Opens a new chunk whose first entry will be `seqno`: its file (header only) and its in-memory copy.
    fn start_chunk(&mut self, seqno: u64) -> Result<(), LedgerError> {
        let name = chunk_name_open(seqno);
        self.storage.append(&name, &[0u8; CHUNK_HEADER_SIZE as usize])?;
        // Reserve the whole chunk up front: growing a multi-megabyte vector by doubling copies it under the
        // caller's lock, which showed as 10-15 ms stalls (and 30-50 ms under load). A chunk closes at the first
        // signature past the threshold, so it overshoots it by the entries of up to a signature interval: half
        // the threshold again covers that.
        if self.open_bytes.capacity() == 0 {
            self.open_bytes = std::mem::take(&mut self.spare);
        }
        self.open_bytes.clear();
        let reserve = self
            .chunk_threshold_bytes
            .saturating_add(self.chunk_threshold_bytes / 2);
        self.open_bytes
            .reserve(reserve.min(OPEN_BUFFER_RESERVE_LIMIT) as usize + CHUNK_HEADER_SIZE as usize);
        self.open_bytes.extend_from_slice(&[0u8; CHUNK_HEADER_SIZE as usize]);
        self.chunks.push(Chunk {
            start: seqno,
            count: 0,
            offsets: Vec::new(),
            entries_end: CHUNK_HEADER_SIZE,
            state: ChunkState::Open,
            named: ChunkState::Open,
            synced: false,
        });
        Ok(())
    }

    /// Closes the open chunk: position table and header offset. Nothing is synced or renamed here (that would
    /// stall the caller on the disk): the next [`Self::flush`] syncs the chunk, the one after renames it. Callers
    /// ensure it ends on a signature.
    fn close_open_chunk(&mut self) -> Result<(), LedgerError> {
        let committed_seqno = self.committed_seqno;
        let Some(chunk) = self.chunks.last_mut() else {
            return Ok(());
        };
        if chunk.state != ChunkState::Open {
            return Ok(());
        }
        let name = chunk.name();
        self.storage.append(&name, &position_table(&chunk.offsets))?;
        self.storage.write_at(&name, 0, &chunk.entries_end.to_le_bytes())?;
        chunk.state = if chunk.end() <= committed_seqno {
            ChunkState::Committed
        } else {
            ChunkState::Complete
        };
        chunk.synced = false;
        // The closed chunk's entries stay readable from memory (its header there is still zero; readers use entry
        // ranges only).
        let closed = std::mem::take(&mut self.open_bytes);
        let evicted = self.read_cache.lock().unwrap_or_else(|p| p.into_inner()).replace((
            chunk.start,
            Arc::new(closed),
            Arc::new(chunk.offsets.clone()),
        ));
        // The chunk before it leaves the cache: keep its buffer for the next chunk unless a reader still holds it.
        if let Some(buffer) = evicted.and_then(|(_, b, _)| Arc::try_unwrap(b).ok()) {
            self.spare = buffer;
        }
        Ok(())
    }

    /// Records that every entry up to `seqno` is committed: complete chunks that end at or before it become
    /// committed, and are renamed `.committed` by the next [`Self::flush`] (no file operation here).
    pub fn commit(&mut self, seqno: u64) -> Result<(), LedgerError> {
        let seqno = seqno.min(self.last_seqno());
        if seqno <= self.committed_seqno {
            return Ok(());
        }
        for c in &mut self.chunks {
            if c.state == ChunkState::Complete && c.end() <= seqno {
                c.state = ChunkState::Committed;
            }
        }
        self.committed_seqno = seqno;
        Ok(())
    }

    /// Makes appended entries durable: syncs the open chunk and the chunks closed since the last flush. Also
    /// renames the closed chunks an earlier flush synced to their complete or `.committed` names (a chunk's name
    /// changes only once its table is durable). With deferred syncs, the caller must complete the syncs of one
    /// flush before the next flush. Each chunk's name changes only once its file is renamed, so a failed rename
    /// leaves the index true to the disk and the next flush retries it.
    pub fn flush(&mut self) -> Result<(), LedgerError> {
        self.repair_after_load()?;
        for i in self.settled..self.chunks.len() {
            let c = &self.chunks[i];
            if c.state != ChunkState::Open && c.synced && c.named != c.state {
                let (from, to) = (c.name(), c.name_for(c.state));
                self.storage.rename(&from, &to)?;
                self.chunks[i].named = self.chunks[i].state;
            }
        }
        for i in self.settled..self.chunks.len() {
            let c = &self.chunks[i];
            if c.state == ChunkState::Open || !c.synced {
                let name = c.name();
                self.storage.sync(&name)?;
                self.chunks[i].synced = c.state != ChunkState::Open;
            }
        }
        while self.chunks.get(self.settled).is_some_and(Chunk::settled) {
            self.chunks[self.settled].offsets = Vec::new();
            self.settled += 1;
        }
        Ok(())
    }

    /// Whether a [`Self::flush`] has work left: a closed chunk to sync or to rename, or files to cut to what
    /// the load kept.
    pub fn needs_flush(&self) -> bool {
        self.repair.is_some()
            || self
                .chunks
                .iter()
                .skip(self.settled)
                .any(|c| c.state != ChunkState::Open && (!c.synced || c.named != c.state))
    }

    /// Flushes twice: everything appended is durable and every chunk has its final name (for a clean stop).
    pub fn settle(&mut self) -> Result<(), LedgerError> {
        self.flush()?;
        self.flush()
    }
}
