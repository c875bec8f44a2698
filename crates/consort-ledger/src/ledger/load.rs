//! Loading a ledger from its storage: rebuilding the chunk index from the files, and finishing or undoing
//! whatever step a crash interrupted.

use super::index::{Chunk, ChunkState};
use super::Ledger;
use crate::chunk::{
    chunk_name_open, complete_chunk_entries, entry_is_signature, parse_chunk_name, scan_entries, ChunkName,
    CHUNK_HEADER_SIZE,
};
use crate::entry::{parse_entry, FLAG_FORCE_CHUNK_AFTER};
use crate::{LedgerError, LedgerStorage};
use std::sync::Mutex;

impl<S: LedgerStorage> Ledger<S> {
    /// Opens the ledger in `storage`, rebuilding the index from its chunk files (each is read and checked once;
    /// only the open chunk's bytes are kept). Files that are not chunks are ignored. A torn final entry is
    /// truncated away; a last chunk whose close was interrupted is finished or reopened.
    pub fn load(mut storage: S, chunk_threshold_bytes: u64) -> Result<Self, LedgerError> {
        let names = chunk_files(&storage)?;
        let mut chunks: Vec<Chunk> = Vec::new();
        let mut open_bytes = Vec::new();
        for (i, (cname, name)) in names.iter().enumerate() {
            if let Some(prev) = chunks.last() {
                check_follows(prev, cname, name)?;
            }
            let mut bytes = storage.read(name)?;
            // An open-named chunk with a table was closed but not yet renamed: it is complete too.
            let chunk = match complete_chunk_entries(name, &bytes, cname.start, cname.end) {
                Ok((offsets, entries_end)) => load_complete(&mut storage, *cname, name, offsets, entries_end)?,
                Err(e) => match reopen_chunk(&mut storage, *cname, name, &mut bytes, &names[i + 1..], e)? {
                    Some(chunk) => chunk,
                    // It held no whole entry and is gone, and so is every chunk after it.
                    None => break,
                },
            };
            let open = chunk.state == ChunkState::Open;
            chunks.push(chunk);
            if open {
                // A reopened chunk is the last one: the chunks after it were removed as it reopened.
                open_bytes = bytes;
                break;
            }
        }
        Self::assemble(storage, chunk_threshold_bytes, chunks, open_bytes)
    }

    /// The ledger over the chunks [`Self::load`] found. A crash after appending a signature that should close the
    /// open chunk, before the close itself, left it open: the close is finished here as `append` would have done
    /// it, so that the chunk can later become `.committed`.
    fn assemble(
        storage: S,
        chunk_threshold_bytes: u64,
        chunks: Vec<Chunk>,
        open_bytes: Vec<u8>,
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
        };
        let close_due = ledger.last_is_signature
            && last_open_entry.is_some_and(|e| {
                ledger.open_bytes.len() as u64 >= chunk_threshold_bytes
                    || parse_entry(&e).is_ok_and(|(e, _)| e.flags & FLAG_FORCE_CHUNK_AFTER != 0)
            });
        if close_due {
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

/// Checks that chunk `name` starts right after `prev`, which is closed.
fn check_follows(prev: &Chunk, cname: &ChunkName, name: &str) -> Result<(), LedgerError> {
    if prev.state == ChunkState::Open {
        return Err(LedgerError::chunk(name, "follows an open chunk"));
    }
    if cname.start != prev.end() + 1 {
        return Err(LedgerError::chunk(
            name,
            format!("does not follow seqno {}", prev.end()),
        ));
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

/// A chunk whose position table is missing or torn (`error` says how). Only the last chunk, or an open-named one
/// followed only by open-named chunks, may be such a chunk: it is reopened with its whole, in-sequence entries
/// (None if it has none, and is removed). Open-named chunks after it are removed: no flush completed after its
/// close (a flush syncs the table before anything after it), so none of their entries was ever durable.
fn reopen_chunk(
    storage: &mut impl LedgerStorage,
    cname: ChunkName,
    name: &str,
    bytes: &mut Vec<u8>,
    later: &[(ChunkName, String)],
    error: LedgerError,
) -> Result<Option<Chunk>, LedgerError> {
    let later_all_open = later.iter().all(|(c, _)| c.end.is_none());
    if cname.committed || !(later.is_empty() || (cname.end.is_none() && later_all_open)) {
        return Err(match cname.end {
            Some(_) => error,
            None => LedgerError::chunk(name, "open chunk is not the last chunk"),
        });
    }
    for (_, later) in later {
        storage.remove(later)?;
    }
    let (offsets, entries_end) = scan_entries(name, bytes, cname.start)?;
    if offsets.is_empty() {
        storage.remove(name)?;
        return Ok(None);
    }
    if entries_end < bytes.len() as u64 {
        storage.truncate(name, entries_end)?;
        bytes.truncate(entries_end as usize);
    }
    const ZERO_HEADER: [u8; CHUNK_HEADER_SIZE as usize] = [0u8; CHUNK_HEADER_SIZE as usize];
    if bytes[..ZERO_HEADER.len()] != ZERO_HEADER {
        storage.write_at(name, 0, &ZERO_HEADER)?;
        bytes[..ZERO_HEADER.len()].copy_from_slice(&ZERO_HEADER);
    }
    let open_name = chunk_name_open(cname.start);
    if name != open_name {
        storage.rename(name, &open_name)?;
    }
    storage.sync(&open_name)?;
    Ok(Some(Chunk {
        start: cname.start,
        count: offsets.len() as u64,
        offsets,
        entries_end,
        state: ChunkState::Open,
        named: ChunkState::Open,
        synced: false,
    }))
}
