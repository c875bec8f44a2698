//! Reading entries back: one entry, a range, or a whole chunk at a time (for replay), from the open chunk's
//! in-memory copy, the read cache of the last closed chunk, or the chunk file (checked against the index).

use super::index::{Chunk, ChunkState};
use super::Ledger;
use crate::chunk::complete_chunk_entries;
use crate::entry::parse_entry;
use crate::error::ChunkFault;
use crate::{LedgerError, LedgerStorage};
use std::sync::Arc;

/// A settled chunk's entry offsets, read from its file's position table and checked against its entries (None
/// for a chunk that still holds its offsets in memory).
fn settled_offsets(chunk: &Chunk, bytes: &[u8]) -> Result<Option<Vec<u64>>, LedgerError> {
    if !chunk.offsets.is_empty() {
        return Ok(None);
    }
    let (offsets, _) = complete_chunk_entries(&chunk.name(), bytes, chunk.start, Some(chunk.end()))?;
    Ok(Some(offsets))
}

/// The entries of one chunk, as [`Ledger::read_chunk_of`] read them: the file's bytes (shared, so they can be
/// handed to another thread) and where each entry lies in them.
#[derive(Debug, Clone)]
pub struct ChunkEntries {
    first_seqno: u64,
    bytes: Arc<Vec<u8>>,
    ranges: Vec<(usize, usize)>,
}

impl ChunkEntries {
    /// Seqno of the chunk's first entry.
    pub fn first_seqno(&self) -> u64 {
        self.first_seqno
    }

    /// Seqno of the chunk's last entry.
    pub fn last_seqno(&self) -> u64 {
        self.first_seqno + self.ranges.len() as u64 - 1
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether it holds no entry (never, for a chunk read from a ledger).
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The encoded entry at `seqno`, if it is in this chunk.
    pub fn entry(&self, seqno: u64) -> Option<&[u8]> {
        let i = usize::try_from(seqno.checked_sub(self.first_seqno)?).ok()?;
        let &(from, to) = self.ranges.get(i)?;
        Some(&self.bytes[from..to])
    }

    /// `(seqno, encoded entry)` for every entry, in order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[u8])> + '_ {
        (self.first_seqno..).zip(self.ranges.iter().map(|&(from, to)| &self.bytes[from..to]))
    }
}

/// A closed chunk's bytes and entry offsets, shared with readers.
type ChunkBytes = (Arc<Vec<u8>>, Arc<Vec<u64>>);
/// A closed chunk held in memory for reads: (first seqno, bytes, entry offsets).
pub(super) type CachedChunk = (u64, Arc<Vec<u8>>, Arc<Vec<u64>>);

impl<S: LedgerStorage> Ledger<S> {
    fn chunk_index(&self, seqno: u64) -> Option<usize> {
        let i = self.chunks.partition_point(|c| c.start <= seqno);
        let c = self.chunks.get(i.checked_sub(1)?)?;
        (seqno <= c.end()).then_some(i - 1)
    }

    /// The encoded entry at `seqno`, checked to parse as that seqno's entry.
    pub fn read_entry(&self, seqno: u64) -> Result<Vec<u8>, LedgerError> {
        let i = self.chunk_index(seqno).ok_or(LedgerError::NotFound(seqno))?;
        let chunk = &self.chunks[i];
        let bytes = if chunk.state == ChunkState::Open {
            chunk
                .entry_range(&chunk.offsets, seqno)
                .and_then(|(from, to)| self.open_bytes.get(from..to))
                .map(<[u8]>::to_vec)
        } else {
            let (file, offsets) = self.read_chunk_cached(chunk)?;
            chunk
                .entry_range(&offsets, seqno)
                .and_then(|(from, to)| file.get(from..to))
                .map(<[u8]>::to_vec)
        };
        let bytes = bytes.ok_or_else(|| LedgerError::chunk(&chunk.name(), ChunkFault::ShorterThanIndex))?;
        match parse_entry(&bytes) {
            Ok((e, used)) if used == bytes.len() && e.seqno == seqno => Ok(bytes),
            _ => Err(LedgerError::chunk(&chunk.name(), ChunkFault::EntryNotAsIndexed(seqno))),
        }
    }

    /// Every entry of the chunk holding `seqno`, read in one go and checked against the index (for replay: one
    /// chunk at a time in memory, however long the ledger).
    pub fn read_chunk_of(&self, seqno: u64) -> Result<ChunkEntries, LedgerError> {
        let i = self.chunk_index(seqno).ok_or(LedgerError::NotFound(seqno))?;
        let chunk = &self.chunks[i];
        let (bytes, table_offsets) = if chunk.state == ChunkState::Open {
            (Arc::new(self.open_bytes.clone()), None)
        } else {
            let bytes = self.storage.read(&chunk.name())?;
            let offsets = settled_offsets(chunk, &bytes)?;
            (Arc::new(bytes), offsets)
        };
        // Offsets read from a settled chunk's table were checked against every entry already.
        let checked = table_offsets.is_some();
        let offsets = table_offsets.as_deref().unwrap_or(&chunk.offsets);
        let mut ranges = Vec::with_capacity(chunk.count as usize);
        for s in chunk.start..=chunk.end() {
            let entry = chunk
                .entry_range(offsets, s)
                .and_then(|(from, to)| Some((from, to, bytes.get(from..to)?)));
            let Some((from, to, entry)) = entry else {
                return Err(LedgerError::chunk(&chunk.name(), ChunkFault::ShorterThanIndex));
            };
            if checked {
                ranges.push((from, to));
                continue;
            }
            match parse_entry(entry) {
                Ok((e, used)) if used == entry.len() && e.seqno == s => ranges.push((from, to)),
                _ => return Err(LedgerError::chunk(&chunk.name(), ChunkFault::EntryNotAsIndexed(s))),
            }
        }
        Ok(ChunkEntries {
            first_seqno: chunk.start,
            bytes,
            ranges,
        })
    }

    /// Entries `from..=to`, in order.
    pub fn read_entries(&self, from: u64, to: u64) -> Result<Vec<Vec<u8>>, LedgerError> {
        (from..=to).map(|s| self.read_entry(s)).collect()
    }

    /// A closed chunk's bytes and entry offsets, from the read cache or its file (a settled chunk's offsets come
    /// from the file's position table, checked against its entries).
    fn read_chunk_cached(&self, chunk: &Chunk) -> Result<ChunkBytes, LedgerError> {
        let mut cache = self.read_cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((s, bytes, offsets)) = cache.as_ref() {
            if *s == chunk.start {
                return Ok((bytes.clone(), offsets.clone()));
            }
        }
        let bytes = self.storage.read(&chunk.name())?;
        let offsets = settled_offsets(chunk, &bytes)?.unwrap_or_else(|| chunk.offsets.clone());
        let (bytes, offsets) = (Arc::new(bytes), Arc::new(offsets));
        *cache = Some((chunk.start, bytes.clone(), offsets.clone()));
        Ok((bytes, offsets))
    }
}

/// Where an entry can be read, for a reader that does not hold the ledger (a node serving receipts reads old
/// entries without holding its engine lock): the entry itself, or the settled chunk file holding it, which
/// nothing rewrites or renames again.
#[derive(Debug, Clone)]
pub enum EntrySource {
    /// The entry's bytes (it was in memory, or in a chunk that is not settled yet).
    Bytes(Vec<u8>),
    /// A settled chunk holds it: read it with [`SettledEntry::read`].
    Settled(SettledEntry),
}

/// An entry in a settled chunk file.
#[derive(Debug, Clone)]
pub struct SettledEntry {
    chunk: Chunk,
    seqno: u64,
}

impl SettledEntry {
    /// Reads the entry from `storage` (a handle on the same ledger directory), checked as
    /// [`Ledger::read_entry`] checks it.
    pub fn read(&self, storage: &impl LedgerStorage) -> Result<Vec<u8>, LedgerError> {
        let bytes = storage.read(&self.chunk.name())?;
        self.read_in(&bytes)
    }

    /// The name of the chunk file holding the entry: entries of one chunk can share one read of it (see
    /// [`SettledEntry::read_in`]).
    pub fn chunk_file(&self) -> String {
        self.chunk.name()
    }

    /// The entry, taken from `chunk_bytes` (the contents of [`SettledEntry::chunk_file`]) and checked as
    /// [`SettledEntry::read`] checks it.
    pub fn read_in(&self, chunk_bytes: &[u8]) -> Result<Vec<u8>, LedgerError> {
        let name = self.chunk.name();
        let offsets = settled_offsets(&self.chunk, chunk_bytes)?.unwrap_or_else(|| self.chunk.offsets.clone());
        self.chunk
            .entry_range(&offsets, self.seqno)
            .and_then(|(from, to)| chunk_bytes.get(from..to))
            .filter(|entry| matches!(parse_entry(entry), Ok((e, used)) if used == entry.len() && e.seqno == self.seqno))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| LedgerError::chunk(&name, ChunkFault::EntryNotAsIndexed(self.seqno)))
    }
}

impl EntrySource {
    /// The entry, reading it from `storage` if it lies in a settled chunk.
    pub fn read(&self, storage: &impl LedgerStorage) -> Result<Vec<u8>, LedgerError> {
        match self {
            EntrySource::Bytes(b) => Ok(b.clone()),
            EntrySource::Settled(s) => s.read(storage),
        }
    }
}

impl<S: LedgerStorage> Ledger<S> {
    /// Where entry `seqno` can be read without this ledger (see [`EntrySource`]): cheap for a settled chunk (no
    /// file is read), [`Ledger::read_entry`] otherwise.
    pub fn entry_source(&self, seqno: u64) -> Result<EntrySource, LedgerError> {
        let i = self.chunk_index(seqno).ok_or(LedgerError::NotFound(seqno))?;
        let chunk = &self.chunks[i];
        if chunk.settled() {
            return Ok(EntrySource::Settled(SettledEntry {
                chunk: chunk.clone(),
                seqno,
            }));
        }
        self.read_entry(seqno).map(EntrySource::Bytes)
    }
}
