//! Loading a ledger from its storage: rebuilding the chunk index from the files, telling a torn write (which is
//! dropped) from damage (which refuses the load), and finishing or undoing whatever step a crash interrupted.
//!
//! **What may be torn.** Appends reach a chunk file through a buffered writer, in order; a flush makes them
//! durable with one fdatasync per file, and only then is anything reported persisted. So after a crash a file
//! holds, durably, everything up to its length at its last completed sync, then possibly some of what was
//! written after it: a process that dies leaves a prefix of the appended bytes, cut anywhere; a power loss may
//! also leave bytes the file grew by reading as zeros. Nothing after the first byte that did not reach the disk
//! was ever reported durable (a later sync would have covered that byte too). A closed chunk gets its complete
//! name only in the flush after the one that synced its position table, so a complete or committed name means
//! every byte of the file was durable: such a chunk must check out entirely (header, every entry in sequence,
//! position table, the range its name gives), and any disagreement refuses the load with
//! [`LedgerError::Damaged`], naming the file, the byte offset and what is wrong.
//!
//! Only an open-named chunk may end in a torn tail, and only in one of these shapes, after its last whole entry:
//! fewer bytes than an entry header that start as a header does; a whole entry header (of a size this ledger
//! writes) whose entry runs past the end of the file; a prefix of the position table of the entries before it
//! (a close cut short); or zeros to the end of the file. An entry that is complete in size but does not parse,
//! or parses as another seqno, is damage wherever it is, and so is anything else after the last entry: a
//! process that dies never leaves such bytes, so they were changed after being written.
//!
//! **Nothing is dropped before the caller has looked.** Loading never shortens or removes a file. What it found
//! to drop is reported by [`Ledger::torn_tail`] (for the caller to log) and kept out of the index; the files are
//! cut to match (the torn tail truncated, a chunk with no whole entry or chunks started after an interrupted
//! close removed, a stale header cleared) by the first call that writes ([`Ledger::append`], [`Ledger::flush`],
//! [`Ledger::truncate`], [`Ledger::clear`]). So when the replica's checks against the persisted Raft state
//! refuse a ledger that is shorter than what was committed, the bytes are still there to inspect.
//!
//! **Layout.** Chunks must follow one another without gaps or overlaps. An open-named chunk may be followed
//! only by open-named chunks, and only when it holds a close that no flush completed (its position table torn
//! or missing): no later chunk was ever durable (a flush syncs chunks in order), so they are removed with its
//! tail. An open-named chunk before a complete or committed one is refused.

use super::index::{Chunk, ChunkState};
use super::Ledger;
use crate::chunk::{
    chunk_name_open, complete_chunk_entries, entry_is_signature, parse_chunk_name, scan_open_chunk, ChunkName,
    OpenScan, CHUNK_HEADER_SIZE,
};
use crate::entry::{parse_entry, FLAG_FORCE_CHUNK_AFTER};
use crate::error::ChunkFault;
use crate::{LedgerError, LedgerStorage, StorageError};
use std::sync::Mutex;

/// What [`Ledger::load`] dropped as a torn write: the tail of the open chunk (or all of it, when it held no whole
/// entry) and any chunks started after an interrupted close. For the caller to log; the files are cut to match
/// by the ledger's first write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The open chunk file the tail was dropped from.
    pub chunk: String,
    /// Where the dropped bytes start in it (0: the whole file, which held no whole entry, is dropped).
    pub offset: u64,
    /// How many bytes of it are dropped.
    pub bytes: u64,
    /// What the dropped bytes look like.
    pub what: &'static str,
    /// Chunk files after it that are dropped whole (started after a close that no flush completed).
    pub later_chunks: Vec<String>,
}

impl std::fmt::Display for TornTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "dropped a torn tail of {} bytes at offset {} of {} ({})",
            self.bytes, self.offset, self.chunk, self.what
        )?;
        if !self.later_chunks.is_empty() {
            write!(f, " and the chunks after it: {}", self.later_chunks.join(", "))?;
        }
        Ok(())
    }
}

/// The file changes a load decided on, made by the first write (see the module documentation).
#[derive(Debug, Default)]
pub(super) struct Repair {
    /// Files to remove, last first.
    remove: Vec<String>,
    /// The open chunk to shorten to this length.
    cut: Option<(String, u64)>,
    /// The open chunk whose header still holds a stale position table offset.
    clear_header: Option<String>,
    /// The open chunk ends on a signature past the threshold: close it once cut.
    close: bool,
}

impl<S: LedgerStorage> Ledger<S> {
    /// Opens the ledger in `storage`, rebuilding the index from its chunk files (each is read and checked once;
    /// only the open chunk's bytes are kept). Files that are not chunks are ignored. Damage refuses the load
    /// ([`LedgerError::Damaged`]); a torn tail of the open chunk is left out and reported by
    /// [`Self::torn_tail`]. Nothing is removed or shortened on disk until the first write (module documentation).
    pub fn load(mut storage: S, chunk_threshold_bytes: u64) -> Result<Self, LedgerError> {
        let names = chunk_files(&storage)?;
        let mut chunks: Vec<Chunk> = Vec::new();
        let mut open_bytes = Vec::new();
        let mut repair = Repair::default();
        let mut torn_tail = None;
        for (i, (cname, name)) in names.iter().enumerate() {
            if let Some(prev) = chunks.last() {
                check_follows(prev, cname, name)?;
            }
            let bytes = storage.read(name)?;
            if cname.end.is_some() {
                // A complete or committed name: every byte was durable, so the file must check out entirely.
                let (offsets, entries_end) = complete_chunk_entries(name, &bytes, cname.start, cname.end)?;
                chunks.push(load_complete(&mut storage, *cname, name, offsets, entries_end)?);
                continue;
            }
            // An open-named chunk with a valid table was closed but not yet renamed: it is complete too.
            if let Ok((offsets, entries_end)) = complete_chunk_entries(name, &bytes, cname.start, None) {
                chunks.push(load_complete(&mut storage, *cname, name, offsets, entries_end)?);
                continue;
            }
            let later = &names[i + 1..];
            let scan = open_scan(name, &bytes, cname.start, later)?;
            let (chunk, tail) = reopen_chunk(*cname, name, &bytes, &scan, later, &mut repair);
            torn_tail = tail;
            if let Some(chunk) = chunk {
                // A name with leading zeros (`ledger_007`) is the chunk's all the same: give it its usual name.
                if chunk.name() != *name {
                    storage.rename(name, &chunk.name())?;
                }
                open_bytes = bytes;
                open_bytes.truncate(chunk.entries_end as usize);
                open_bytes[..CHUNK_HEADER_SIZE as usize].fill(0);
                chunks.push(chunk);
            }
            // An open chunk is the last one: the chunks after it are dropped with its tail.
            break;
        }
        let mut ledger = Self::assemble(storage, chunk_threshold_bytes, chunks, open_bytes, repair)?;
        ledger.torn_tail = torn_tail;
        Ok(ledger)
    }

    /// What [`Self::load`] dropped as a torn write, if anything (see [`TornTail`]): for the caller to log.
    pub fn torn_tail(&self) -> Option<&TornTail> {
        self.torn_tail.as_ref()
    }

    /// Makes the file changes the load decided on (module documentation); a no-op once done. Each step can be
    /// repeated, so a failure leaves the rest for the next call; a crash midway leaves files that load the same.
    pub(super) fn repair_after_load(&mut self) -> Result<(), LedgerError> {
        let Some(repair) = self.repair.as_mut() else {
            return Ok(());
        };
        while let Some(name) = repair.remove.first() {
            match self.storage.remove(name) {
                Ok(()) | Err(StorageError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
            repair.remove.remove(0);
        }
        if let Some((name, len)) = &repair.cut {
            self.storage.truncate(name, *len)?;
        }
        if let Some(name) = &repair.clear_header {
            self.storage.write_at(name, 0, &[0u8; CHUNK_HEADER_SIZE as usize])?;
        }
        if let Some(name) = repair.cut.as_ref().map(|(n, _)| n).or(repair.clear_header.as_ref()) {
            self.storage.sync(name)?;
        }
        let close = repair.close;
        self.repair = None;
        if close {
            self.close_open_chunk()?;
        }
        Ok(())
    }

    /// The ledger over the chunks [`Self::load`] found. A crash after appending a signature that should close the
    /// open chunk, before the close itself, left it open: the close is finished here as `append` would have done
    /// it, so that the chunk can later become `.committed`.
    fn assemble(
        storage: S,
        chunk_threshold_bytes: u64,
        chunks: Vec<Chunk>,
        open_bytes: Vec<u8>,
        mut repair: Repair,
    ) -> Result<Self, LedgerError> {
        let committed_seqno = chunks
            .iter()
            .filter(|c| c.state == ChunkState::Committed)
            .map(Chunk::end)
            .max()
            .unwrap_or(0);
        // The last entry of the open chunk, if the ledger ends in one.
        let last_open_entry = chunks
            .last()
            .filter(|c| c.state == ChunkState::Open)
            .and_then(|c| c.entry_range(&c.offsets, c.end()))
            .and_then(|(from, to)| open_bytes.get(from..to))
            .map(<[u8]>::to_vec);
        let last_is_signature = last_open_entry.as_ref().is_none_or(|e| entry_is_signature(e));
        let mut ledger = Ledger {
            storage,
            chunk_threshold_bytes,
            chunks,
            open_bytes,
            last_is_signature,
            committed_seqno,
            read_cache: Mutex::new(None),
            spare: Vec::new(),
            settled: 0,
            repair: None,
            torn_tail: None,
        };
        let close_due = ledger.last_is_signature
            && last_open_entry.is_some_and(|e| {
                ledger.open_bytes.len() as u64 >= chunk_threshold_bytes
                    || parse_entry(&e).is_ok_and(|(e, _)| e.flags & FLAG_FORCE_CHUNK_AFTER != 0)
            });
        let pending = !repair.remove.is_empty() || repair.cut.is_some() || repair.clear_header.is_some();
        if pending {
            // The close appends to the open chunk: it waits for the cut (module documentation).
            repair.close = close_due;
            ledger.repair = Some(repair);
        } else if close_due {
            ledger.close_open_chunk()?;
        }
        Ok(ledger)
    }
}

/// The chunk files in `storage` (other files are not this ledger's), by first seqno.
fn chunk_files(storage: &impl LedgerStorage) -> Result<Vec<(ChunkName, String)>, LedgerError> {
    let mut names: Vec<(ChunkName, String)> = storage
        .list()?
        .into_iter()
        .filter_map(|n| parse_chunk_name(&n).map(|c| (c, n)))
        .collect();
    names.sort_by_key(|(c, _)| c.start);
    Ok(names)
}

/// Checks that chunk `name` starts right after `prev`: no gap, no overlap.
fn check_follows(prev: &Chunk, cname: &ChunkName, name: &str) -> Result<(), LedgerError> {
    let expected = prev.end() + 1;
    if cname.start > expected {
        let reason = ChunkFault::Gap {
            previous: prev.name(),
            first_missing: expected,
            last_missing: cname.start - 1,
        };
        return Err(LedgerError::chunk(name, reason));
    }
    if cname.start < expected {
        let reason = ChunkFault::Overlap {
            previous: prev.name(),
            end: prev.end(),
        };
        return Err(LedgerError::chunk(name, reason));
    }
    Ok(())
}

/// The index entry of a chunk whose position table checked out, renamed to the name its state calls for (an
/// open-named chunk with a table was closed but not yet renamed).
fn load_complete(
    storage: &mut impl LedgerStorage,
    cname: ChunkName,
    name: &str,
    offsets: Vec<u64>,
    entries_end: u64,
) -> Result<Chunk, LedgerError> {
    let state = if cname.committed {
        ChunkState::Committed
    } else {
        ChunkState::Complete
    };
    let chunk = Chunk {
        start: cname.start,
        count: offsets.len() as u64,
        offsets,
        entries_end,
        state,
        named: state,
        synced: true,
    };
    if chunk.name() != name {
        storage.rename(name, &chunk.name())?;
    }
    Ok(chunk)
}

/// Scans an open-named chunk that has no valid position table (`later`: the chunk files after it). Only
/// open-named chunks may follow it (an interrupted close); its bytes must be whole entries and a torn tail.
fn open_scan(name: &str, bytes: &[u8], start: u64, later: &[(ChunkName, String)]) -> Result<OpenScan, LedgerError> {
    if let Some((_, closed)) = later.iter().find(|(c, _)| c.end.is_some()) {
        let reason = ChunkFault::OpenBeforeClosed(closed.clone());
        return Err(LedgerError::chunk(name, reason));
    }
    scan_open_chunk(name, bytes, start)
}

/// The open chunk a scan found (None if it holds no whole entry), and what was dropped; records in `repair`
/// the file changes that make the disk match: the later chunks removed (no flush completed after this chunk's
/// close, so none of them was ever durable), the tail cut, the header cleared.
fn reopen_chunk(
    cname: ChunkName,
    name: &str,
    bytes: &[u8],
    scan: &OpenScan,
    later: &[(ChunkName, String)],
    repair: &mut Repair,
) -> (Option<Chunk>, Option<TornTail>) {
    let len = bytes.len() as u64;
    repair.remove = later.iter().rev().map(|(_, n)| n.clone()).collect();
    let later_chunks: Vec<String> = later.iter().map(|(_, n)| n.clone()).collect();
    let what = scan.torn.map_or("nothing", |k| k.describe());
    if scan.offsets.is_empty() {
        repair.remove.push(name.to_string());
        let tail = TornTail {
            chunk: name.to_string(),
            offset: 0,
            bytes: len,
            what: if len <= CHUNK_HEADER_SIZE {
                "an empty chunk"
            } else {
                what
            },
            later_chunks,
        };
        return (None, Some(tail));
    }
    let open_name = chunk_name_open(cname.start);
    if scan.entries_end < len {
        repair.cut = Some((open_name.clone(), scan.entries_end));
    }
    if scan.header != 0 {
        repair.clear_header = Some(open_name);
    }
    let dropped = scan.entries_end < len || !later_chunks.is_empty();
    let tail = dropped.then(|| TornTail {
        chunk: name.to_string(),
        offset: scan.entries_end,
        bytes: len - scan.entries_end,
        what,
        later_chunks,
    });
    let chunk = Chunk {
        start: cname.start,
        count: scan.offsets.len() as u64,
        offsets: scan.offsets.clone(),
        entries_end: scan.entries_end,
        state: ChunkState::Open,
        named: ChunkState::Open,
        synced: false,
    };
    (Some(chunk), tail)
}
