//! Chunk files and the ledger over them: naming, the storage trait (with its conformance suite), an in-memory
//! storage, and [`Ledger`], the sans-IO chunk manager that appends, closes, commits, reads and truncates entries.
//!
//! A chunk file is `u64 position-table offset ‖ entries ‖ u32 offset per entry`. While a chunk is open its
//! offset is 0 and it has no table; it is named `ledger_<start>`. Closing it (always right after a signature
//! transaction) appends the table and points the header at it, with no sync and no rename (the caller may hold
//! a lock); the next [`Ledger::flush`] syncs it and the flush after that renames it `ledger_<start>-<end>`, or
//! `ledger_<start>-<end>.committed` once every entry in it is committed (commits too are renamed by a flush).
//! A complete or committed name therefore always means a durable position table.
//!
//! Crash safety comes from the order of these steps: every intermediate state is recognised by
//! [`Ledger::open`], which finishes or undoes the step (a torn final entry is truncated away; a chunk whose
//! position table is missing or torn is reopened by scanning its entries, and open-named chunks after it, which
//! no completed flush covered, are removed).

use crate::entry::{parse_entry, FLAG_FORCE_CHUNK_AFTER, FLAG_FORCE_CHUNK_BEFORE};
use crate::limits::{MAX_CHUNK_SIZE, MAX_ENTRIES_PER_CHUNK};
use crate::signature::SIGNATURES_TABLE;
use crate::{LedgerError, StorageError};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Size of the chunk header (the u64 offset of the position table).
pub const CHUNK_HEADER_SIZE: u64 = 8;
const COMMITTED_SUFFIX: &str = ".committed";
const CHUNK_PREFIX: &str = "ledger_";

pub fn chunk_name_open(start: u64) -> String {
    format!("{CHUNK_PREFIX}{start}")
}

pub fn chunk_name_complete(start: u64, end: u64) -> String {
    format!("{CHUNK_PREFIX}{start}-{end}")
}

pub fn chunk_name_committed(start: u64, end: u64) -> String {
    format!("{CHUNK_PREFIX}{start}-{end}{COMMITTED_SUFFIX}")
}

/// What a chunk file name says: first seqno, last seqno (complete chunks) and whether it is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkName {
    pub start: u64,
    pub end: Option<u64>,
    pub committed: bool,
}

impl ChunkName {
    pub fn file_name(&self) -> String {
        match (self.end, self.committed) {
            (None, _) => chunk_name_open(self.start),
            (Some(end), false) => chunk_name_complete(self.start, end),
            (Some(end), true) => chunk_name_committed(self.start, end),
        }
    }
}

fn parse_seqno(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses `ledger_<start>`, `ledger_<start>-<end>` or `ledger_<start>-<end>.committed`; anything else (including
/// CCF's `.recovery` and `.ignored` files) is not a chunk of this ledger.
pub fn parse_chunk_name(name: &str) -> Option<ChunkName> {
    let rest = name.strip_prefix(CHUNK_PREFIX)?;
    let (rest, committed) = match rest.strip_suffix(COMMITTED_SUFFIX) {
        Some(r) => (r, true),
        None => (rest, false),
    };
    let (start, end) = match rest.split_once('-') {
        Some((a, b)) => (parse_seqno(a)?, Some(parse_seqno(b)?)),
        None => (parse_seqno(rest)?, None),
    };
    if start == 0 || end.is_some_and(|e| e < start) || (committed && end.is_none()) {
        return None;
    }
    Some(ChunkName { start, end, committed })
}

/// The disk as the ledger sees it: a flat directory of named files. The node implements it with real files, the
/// simulator with a faulty in-memory disk. Every implementation must pass [`storage_conformance`].
pub trait LedgerStorage {
    /// Names of all files (any order).
    fn list(&self) -> Result<Vec<String>, StorageError>;
    /// Whole content of a file; [`StorageError::NotFound`] if missing.
    fn read(&self, name: &str) -> Result<Vec<u8>, StorageError>;
    /// Appends to a file, creating it if missing.
    fn append(&mut self, name: &str, bytes: &[u8]) -> Result<(), StorageError>;
    /// Overwrites bytes at `offset`; may extend the file but `offset` must be at most its length
    /// ([`StorageError::OutOfRange`] otherwise, [`StorageError::NotFound`] if missing).
    fn write_at(&mut self, name: &str, offset: u64, bytes: &[u8]) -> Result<(), StorageError>;
    /// Shrinks a file to `len` bytes; [`StorageError::OutOfRange`] if `len` exceeds its length.
    fn truncate(&mut self, name: &str, len: u64) -> Result<(), StorageError>;
    /// Atomically renames, replacing `to` if it exists.
    fn rename(&mut self, from: &str, to: &str) -> Result<(), StorageError>;
    fn remove(&mut self, name: &str) -> Result<(), StorageError>;
    /// Makes the file's content (and its name) durable.
    fn sync(&mut self, name: &str) -> Result<(), StorageError>;
}

impl<T: LedgerStorage + ?Sized> LedgerStorage for Box<T> {
    fn list(&self) -> Result<Vec<String>, StorageError> {
        (**self).list()
    }
    fn read(&self, name: &str) -> Result<Vec<u8>, StorageError> {
        (**self).read(name)
    }
    fn append(&mut self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
        (**self).append(name, bytes)
    }
    fn write_at(&mut self, name: &str, offset: u64, bytes: &[u8]) -> Result<(), StorageError> {
        (**self).write_at(name, offset, bytes)
    }
    fn truncate(&mut self, name: &str, len: u64) -> Result<(), StorageError> {
        (**self).truncate(name, len)
    }
    fn rename(&mut self, from: &str, to: &str) -> Result<(), StorageError> {
        (**self).rename(from, to)
    }
    fn remove(&mut self, name: &str) -> Result<(), StorageError> {
        (**self).remove(name)
    }
    fn sync(&mut self, name: &str) -> Result<(), StorageError> {
        (**self).sync(name)
    }
}

/// In-memory storage for tests and the simulator. Cloning it snapshots the "disk".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemStorage {
    files: BTreeMap<String, Vec<u8>>,
}

impl MemStorage {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn files(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.files
    }

    /// Direct access, for tests that damage files.
    pub fn files_mut(&mut self) -> &mut BTreeMap<String, Vec<u8>> {
        &mut self.files
    }

    fn file_mut(&mut self, name: &str) -> Result<&mut Vec<u8>, StorageError> {
        self.files
            .get_mut(name)
            .ok_or_else(|| StorageError::NotFound(name.to_string()))
    }
}

impl LedgerStorage for MemStorage {
    fn list(&self) -> Result<Vec<String>, StorageError> {
        Ok(self.files.keys().cloned().collect())
    }
    fn read(&self, name: &str) -> Result<Vec<u8>, StorageError> {
        self.files
            .get(name)
            .cloned()
            .ok_or_else(|| StorageError::NotFound(name.to_string()))
    }
    fn append(&mut self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.files.entry(name.to_string()).or_default().extend_from_slice(bytes);
        Ok(())
    }
    fn write_at(&mut self, name: &str, offset: u64, bytes: &[u8]) -> Result<(), StorageError> {
        let f = self.file_mut(name)?;
        if offset > f.len() as u64 {
            return Err(StorageError::OutOfRange(name.to_string()));
        }
        let offset = offset as usize;
        let overlap = bytes.len().min(f.len() - offset);
        f[offset..offset + overlap].copy_from_slice(&bytes[..overlap]);
        f.extend_from_slice(&bytes[overlap..]);
        Ok(())
    }
    fn truncate(&mut self, name: &str, len: u64) -> Result<(), StorageError> {
        let f = self.file_mut(name)?;
        if len > f.len() as u64 {
            return Err(StorageError::OutOfRange(name.to_string()));
        }
        f.truncate(len as usize);
        Ok(())
    }
    fn rename(&mut self, from: &str, to: &str) -> Result<(), StorageError> {
        let f = self
            .files
            .remove(from)
            .ok_or_else(|| StorageError::NotFound(from.to_string()))?;
        self.files.insert(to.to_string(), f);
        Ok(())
    }
    fn remove(&mut self, name: &str) -> Result<(), StorageError> {
        self.files
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| StorageError::NotFound(name.to_string()))
    }
    fn sync(&mut self, name: &str) -> Result<(), StorageError> {
        self.file_mut(name).map(|_| ())
    }
}

/// The conformance suite every [`LedgerStorage`] must pass. `make` returns a fresh, empty storage each call.
/// Panics (with a message naming the property) on the first violation.
pub fn storage_conformance(make: impl Fn() -> Box<dyn LedgerStorage>) {
    let not_found = |r: Result<_, StorageError>, what: &str| {
        assert!(matches!(r, Err(StorageError::NotFound(_))), "{what}: expected NotFound");
    };
    // A fresh storage is empty, and missing files are NotFound for every operation that needs one.
    let mut s = make();
    assert_eq!(s.list().unwrap(), Vec::<String>::new(), "fresh storage must be empty");
    not_found(s.read("ledger_1").map(|_| ()), "read missing");
    not_found(s.write_at("ledger_1", 0, b"x"), "write_at missing");
    not_found(s.truncate("ledger_1", 0), "truncate missing");
    not_found(s.rename("ledger_1", "ledger_2"), "rename missing");
    not_found(s.remove("ledger_1"), "remove missing");
    not_found(s.sync("ledger_1"), "sync missing");

    // Append creates, then extends; an empty append creates an empty file.
    s.append("ledger_1", b"hello").unwrap();
    s.append("ledger_1", b" world").unwrap();
    assert_eq!(s.read("ledger_1").unwrap(), b"hello world", "append extends");
    s.append("empty", b"").unwrap();
    assert_eq!(s.read("empty").unwrap(), b"", "empty append creates");
    let mut names = s.list().unwrap();
    names.sort();
    assert_eq!(
        names,
        vec!["empty".to_string(), "ledger_1".to_string()],
        "list names every file"
    );

    // write_at overwrites in place, may extend from within or at the end, not beyond.
    s.write_at("ledger_1", 0, b"J").unwrap();
    assert_eq!(s.read("ledger_1").unwrap(), b"Jello world");
    s.write_at("ledger_1", 9, b"LDS").unwrap();
    assert_eq!(s.read("ledger_1").unwrap(), b"Jello worLDS", "write_at may extend");
    s.write_at("ledger_1", 12, b"!").unwrap();
    assert_eq!(
        s.read("ledger_1").unwrap(),
        b"Jello worLDS!",
        "write_at at the end appends"
    );
    assert!(
        matches!(s.write_at("ledger_1", 20, b"x"), Err(StorageError::OutOfRange(_))),
        "write_at beyond the end must fail"
    );
    assert_eq!(
        s.read("ledger_1").unwrap(),
        b"Jello worLDS!",
        "a failed write_at changes nothing"
    );

    // truncate shrinks only.
    s.truncate("ledger_1", 5).unwrap();
    assert_eq!(s.read("ledger_1").unwrap(), b"Jello");
    assert!(
        matches!(s.truncate("ledger_1", 6), Err(StorageError::OutOfRange(_))),
        "truncate cannot grow"
    );
    s.truncate("ledger_1", 5).unwrap();
    s.truncate("ledger_1", 0).unwrap();
    assert_eq!(s.read("ledger_1").unwrap(), b"");
    s.append("ledger_1", b"again").unwrap();
    assert_eq!(s.read("ledger_1").unwrap(), b"again");

    // rename moves, replacing the target; remove deletes.
    s.rename("ledger_1", "ledger_1-5").unwrap();
    not_found(s.read("ledger_1").map(|_| ()), "rename source is gone");
    assert_eq!(s.read("ledger_1-5").unwrap(), b"again");
    s.append("ledger_1-5.committed", b"old").unwrap();
    s.rename("ledger_1-5", "ledger_1-5.committed").unwrap();
    assert_eq!(
        s.read("ledger_1-5.committed").unwrap(),
        b"again",
        "rename replaces the target"
    );
    s.sync("ledger_1-5.committed").unwrap();
    s.remove("empty").unwrap();
    let mut names = s.list().unwrap();
    names.sort();
    assert_eq!(names, vec!["ledger_1-5.committed".to_string()]);
    s.remove("ledger_1-5.committed").unwrap();
    assert!(s.list().unwrap().is_empty(), "remove deletes");

    // Larger binary content survives intact.
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut s = make();
    s.append("big", &big[..100_000]).unwrap();
    s.append("big", &big[100_000..]).unwrap();
    s.write_at("big", 0, &8u64.to_le_bytes()).unwrap();
    let mut expected = big.clone();
    expected[..8].copy_from_slice(&8u64.to_le_bytes());
    assert_eq!(s.read("big").unwrap(), expected, "binary content round trips");

    // A fresh storage from `make` is independent of earlier ones.
    assert!(make().list().unwrap().is_empty(), "make() must return an empty storage");
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Open,
    Complete,
    Committed,
}

#[derive(Debug, Clone)]
struct Chunk {
    start: u64,
    /// Number of entries; never 0 (empty chunks are not kept).
    count: u64,
    /// Offset of each entry in the file. Dropped once the chunk is settled (its file's position table has them,
    /// and nothing changes it again), so the index costs memory per chunk, not per entry, however long the ledger.
    offsets: Vec<u64>,
    /// End of the last entry: where the position table starts once complete.
    entries_end: u64,
    state: ChunkState,
    /// The state the file's name says. A closed chunk keeps its open name until its table is durable (the
    /// [`Ledger::flush`] after the one that synced it renames it), so that a complete name always means a
    /// durable table; a commit's rename to `.committed` also waits for the next flush.
    named: ChunkState,
    /// Whether a flush has synced this closed chunk (so the next flush may rename it).
    synced: bool,
}

impl Chunk {
    fn end(&self) -> u64 {
        self.start + self.count - 1
    }

    fn name(&self) -> String {
        self.name_for(self.named)
    }

    /// Committed, synced and named so: nothing will change this chunk's file again.
    fn settled(&self) -> bool {
        self.state == ChunkState::Committed && self.synced && self.named == ChunkState::Committed
    }

    fn name_for(&self, state: ChunkState) -> String {
        match state {
            ChunkState::Open => chunk_name_open(self.start),
            ChunkState::Complete => chunk_name_complete(self.start, self.end()),
            ChunkState::Committed => chunk_name_committed(self.start, self.end()),
        }
    }

    /// Byte range of entry `seqno` given this chunk's entry offsets (`self.offsets`, or the file's table once
    /// the chunk is settled); None if the offsets do not cover it.
    fn entry_range(&self, offsets: &[u64], seqno: u64) -> Option<(usize, usize)> {
        let i = usize::try_from(seqno.checked_sub(self.start)?).ok()?;
        let from = *offsets.get(i)?;
        let to = offsets.get(i + 1).copied().unwrap_or(self.entries_end);
        Some((from as usize, to as usize))
    }
}

/// A settled chunk's entry offsets, read from its file's position table and checked against its entries (None
/// for a chunk that still holds its offsets in memory).
fn settled_offsets(chunk: &Chunk, bytes: &[u8]) -> Result<Option<Vec<u64>>, LedgerError> {
    if !chunk.offsets.is_empty() {
        return Ok(None);
    }
    let (offsets, _) = complete_chunk_entries(&chunk.name(), bytes, chunk.start, Some(chunk.end()))?;
    Ok(Some(offsets))
}

/// Whether an encoded entry is a signature transaction (its public domain writes the signatures table).
pub fn entry_is_signature(entry: &[u8]) -> bool {
    parse_entry(entry)
        .ok()
        .and_then(|(e, _)| consort_kv::WriteSet::deserialise_public(e.public_domain).ok())
        .is_some_and(|(_, ws)| ws.maps.contains_key(SIGNATURES_TABLE))
}

/// Entries of a chunk's bytes, found by scanning from the header. Returns the offsets and the end of the last
/// whole, well-formed entry with the expected seqno; `Err` only for an entry that parses but is out of sequence.
fn scan_entries(name: &str, bytes: &[u8], start: u64) -> Result<(Vec<u64>, u64), LedgerError> {
    let mut offsets = Vec::new();
    let mut pos = CHUNK_HEADER_SIZE;
    while pos < bytes.len() as u64 {
        let Ok((e, used)) = parse_entry(&bytes[pos as usize..]) else {
            break;
        };
        let expected = start + offsets.len() as u64;
        if e.seqno != expected {
            return Err(LedgerError::chunk(
                name,
                format!("entry at offset {pos} has seqno {}, expected {expected}", e.seqno),
            ));
        }
        offsets.push(pos);
        pos += used as u64;
    }
    Ok((offsets, pos.min(bytes.len() as u64)))
}

/// Validates a complete chunk's header and position table against its entries; returns (offsets, entries end).
/// `expected_end`, when known from the file name, must match the number of entries.
pub(crate) fn complete_chunk_entries(
    name: &str,
    bytes: &[u8],
    start: u64,
    expected_end: Option<u64>,
) -> Result<(Vec<u64>, u64), LedgerError> {
    let err = |m: String| LedgerError::chunk(name, m);
    if (bytes.len() as u64) < CHUNK_HEADER_SIZE {
        return Err(err(format!("{} bytes is shorter than the chunk header", bytes.len())));
    }
    let mut hdr = [0u8; 8];
    hdr.copy_from_slice(&bytes[..8]);
    let table_at = u64::from_le_bytes(hdr);
    let len = bytes.len() as u64;
    if table_at <= CHUNK_HEADER_SIZE || table_at > len || (len - table_at) & 3 != 0 {
        return Err(err(format!(
            "invalid position table offset {table_at} in a file of {len} bytes"
        )));
    }
    let count = (len - table_at) / 4;
    if count == 0 || count > MAX_ENTRIES_PER_CHUNK {
        return Err(err(format!("position table holds {count} entries")));
    }
    if let Some(end) = expected_end {
        if end - start + 1 != count {
            return Err(err(format!(
                "name says {} entries, position table holds {count}",
                end - start + 1
            )));
        }
    }
    let table = &bytes[table_at as usize..];
    let offsets: Vec<u64> = table
        .chunks_exact(4)
        .map(|c| u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        .collect();
    let entries = &bytes[..table_at as usize];
    let mut pos = CHUNK_HEADER_SIZE;
    for (i, &offset) in offsets.iter().enumerate() {
        let seqno = start + i as u64;
        if offset != pos {
            return Err(err(format!("position of seqno {seqno} is {offset}, entry is at {pos}")));
        }
        let (e, used) = parse_entry(&entries[pos as usize..]).map_err(|e| err(format!("seqno {seqno}: {e}")))?;
        if e.seqno != seqno {
            return Err(err(format!(
                "entry at offset {pos} has seqno {}, expected {seqno}",
                e.seqno
            )));
        }
        pos += used as u64;
    }
    if pos != table_at {
        return Err(err(format!(
            "entries end at {pos}, position table starts at {table_at}"
        )));
    }
    Ok((offsets, table_at))
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

    pub fn len(&self) -> usize {
        self.ranges.len()
    }

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
    last_is_signature: bool,
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
}

/// A closed chunk's bytes and entry offsets, shared with readers.
type ChunkBytes = (Arc<Vec<u8>>, Arc<Vec<u64>>);
/// A closed chunk held in memory for reads: (first seqno, bytes, entry offsets).
type CachedChunk = (u64, Arc<Vec<u8>>, Arc<Vec<u64>>);

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

    /// Opens the ledger in `storage`, rebuilding the index from its chunk files (each is read and checked once;
    /// only the open chunk's bytes are kept). Files that are not chunks are ignored. A torn final entry is
    /// truncated away; a last chunk whose close was interrupted is finished or reopened.
    pub fn load(mut storage: S, chunk_threshold_bytes: u64) -> Result<Self, LedgerError> {
        let mut names: Vec<(ChunkName, String)> = storage
            .list()?
            .into_iter()
            .filter_map(|n| parse_chunk_name(&n).map(|c| (c, n)))
            .collect();
        names.sort_by_key(|(c, _)| c.start);
        let mut chunks: Vec<Chunk> = Vec::new();
        let mut open_bytes = Vec::new();
        let count = names.len();
        for i in 0..count {
            let (cname, name) = (names[i].0, names[i].1.clone());
            let is_last = i + 1 == count;
            let later_all_open = names[i + 1..].iter().all(|(c, _)| c.end.is_none());
            if let Some(prev) = chunks.last() {
                if prev.state == ChunkState::Open {
                    return Err(LedgerError::chunk(&name, "follows an open chunk"));
                }
                if cname.start != prev.end() + 1 {
                    return Err(LedgerError::chunk(
                        &name,
                        format!("does not follow seqno {}", prev.end()),
                    ));
                }
            }
            let mut bytes = storage.read(&name)?;
            let complete = match cname.end {
                Some(end) => complete_chunk_entries(&name, &bytes, cname.start, Some(end)),
                // An open-named chunk with a table was closed but not yet renamed.
                None => complete_chunk_entries(&name, &bytes, cname.start, None),
            };
            let chunk = match complete {
                Ok((offsets, entries_end)) => {
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
                        storage.rename(&name, &chunk.name())?;
                    }
                    chunk
                }
                // Reopening is for the last chunk, or an open-named one followed only by open-named chunks.
                Err(e) if cname.committed || !(is_last || (cname.end.is_none() && later_all_open)) => {
                    if cname.end.is_some() {
                        return Err(e);
                    }
                    return Err(LedgerError::chunk(&name, "open chunk is not the last chunk"));
                }
                Err(_) => {
                    // An open-named chunk whose close was interrupted, followed only by open-named chunks: no
                    // flush completed after the close (a flush syncs the table before anything after it), so no
                    // later entry was ever durable. The later chunks go, this one reopens.
                    if !is_last {
                        for (_, later) in &names[i + 1..] {
                            storage.remove(later)?;
                        }
                    }
                    // The last chunk is (or must become again) open: keep its whole, in-sequence entries.
                    let (offsets, entries_end) = scan_entries(&name, &bytes, cname.start)?;
                    let open_name = chunk_name_open(cname.start);
                    if offsets.is_empty() {
                        storage.remove(&name)?;
                        break; // the last chunk, or every later one was removed above
                    }
                    if entries_end < bytes.len() as u64 {
                        storage.truncate(&name, entries_end)?;
                        bytes.truncate(entries_end as usize);
                    }
                    if bytes[..8] != [0u8; 8] {
                        storage.write_at(&name, 0, &[0u8; 8])?;
                        bytes[..8].copy_from_slice(&[0u8; 8]);
                    }
                    if name != open_name {
                        storage.rename(&name, &open_name)?;
                    }
                    storage.sync(&open_name)?;
                    Chunk {
                        start: cname.start,
                        count: offsets.len() as u64,
                        offsets,
                        entries_end,
                        state: ChunkState::Open,
                        named: ChunkState::Open,
                        synced: false,
                    }
                }
            };
            if chunk.state == ChunkState::Open {
                open_bytes = bytes;
            }
            let reopened_early = chunk.state == ChunkState::Open && !is_last;
            chunks.push(chunk);
            if reopened_early {
                break;
            }
        }
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
        // A crash after appending a signature that should close the chunk, before the close itself, leaves the
        // chunk open: finish the close as `append` would have, so the chunk can later become `.committed`.
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

    pub fn chunk_threshold_bytes(&self) -> u64 {
        self.chunk_threshold_bytes
    }

    /// Current file names of all chunks, in order.
    pub fn chunk_names(&self) -> Vec<String> {
        self.chunks.iter().map(Chunk::name).collect()
    }

    pub fn storage(&self) -> &S {
        &self.storage
    }

    pub fn into_storage(self) -> S {
        self.storage
    }

    fn open_chunk(&mut self) -> Option<&mut Chunk> {
        self.chunks.last_mut().filter(|c| c.state == ChunkState::Open)
    }

    /// Appends the encoded entry for `seqno` (the next seqno, or any seqno if the ledger is empty). After a
    /// signature transaction, the open chunk is closed once it reaches the chunk threshold (or when the entry's
    /// header asks for it). Nothing is synced: call [`Self::flush`] per batch.
    pub fn append(&mut self, seqno: u64, entry: &[u8], is_signature: bool) -> Result<(), LedgerError> {
        let (e, used) = parse_entry(entry)?;
        if used != entry.len() {
            return Err(LedgerError::MalformedEntry(format!(
                "{} trailing bytes after the entry",
                entry.len() - used
            )));
        }
        if e.seqno != seqno {
            return Err(LedgerError::MalformedEntry(format!(
                "entry is for seqno {}, appended at {seqno}",
                e.seqno
            )));
        }
        if seqno == 0 || (!self.chunks.is_empty() && seqno != self.last_seqno() + 1) {
            return Err(LedgerError::OutOfOrder {
                expected: self.last_seqno() + 1,
                got: seqno,
            });
        }
        let flags = e.flags;
        if flags & FLAG_FORCE_CHUNK_BEFORE != 0 && self.last_is_signature && self.open_chunk().is_some() {
            self.close_open_chunk()?;
        }
        if self.open_chunk().is_none() {
            let name = chunk_name_open(seqno);
            self.storage.append(&name, &[0u8; 8])?;
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
                .reserve(reserve.min(OPEN_BUFFER_RESERVE_LIMIT) as usize + 8);
            self.open_bytes.extend_from_slice(&[0u8; 8]);
            self.chunks.push(Chunk {
                start: seqno,
                count: 0,
                offsets: Vec::new(),
                entries_end: CHUNK_HEADER_SIZE,
                state: ChunkState::Open,
                named: ChunkState::Open,
                synced: false,
            });
        }
        let offset = self.open_bytes.len() as u64;
        if offset + entry.len() as u64 > MAX_CHUNK_SIZE {
            return Err(LedgerError::TooLarge {
                what: "chunk",
                size: offset + entry.len() as u64,
                limit: MAX_CHUNK_SIZE,
            });
        }
        let name = chunk_name_open(self.chunks.last().map_or(seqno, |c| c.start));
        self.storage.append(&name, entry)?;
        self.open_bytes.extend_from_slice(entry);
        let chunk = self.chunks.last_mut().expect("an open chunk was just ensured");
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

    /// Closes the open chunk: position table and header offset. Nothing is synced or renamed here (that would
    /// stall the caller on the disk): the next [`Self::flush`] syncs the chunk, the one after renames it. Callers
    /// ensure it ends on a signature.
    fn close_open_chunk(&mut self) -> Result<(), LedgerError> {
        let Some(chunk) = self.chunks.last() else { return Ok(()) };
        if chunk.state != ChunkState::Open {
            return Ok(());
        }
        let name = chunk.name();
        let mut table = Vec::with_capacity(chunk.offsets.len() * 4);
        for &o in &chunk.offsets {
            // Offsets are below MAX_CHUNK_SIZE = u32::MAX, checked on append.
            table.extend_from_slice(&(o as u32).to_le_bytes());
        }
        let entries_end = chunk.entries_end;
        self.storage.append(&name, &table)?;
        self.storage.write_at(&name, 0, &entries_end.to_le_bytes())?;
        let committed_seqno = self.committed_seqno;
        let chunk = self.chunks.last_mut().expect("checked above");
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

    /// Whether a [`Self::flush`] has work left: a closed chunk to sync or to rename.
    pub fn needs_flush(&self) -> bool {
        self.chunks
            .iter()
            .skip(self.settled)
            .any(|c| c.state != ChunkState::Open && (!c.synced || c.named != c.state))
    }

    /// Flushes twice: everything appended is durable and every chunk has its final name (for a clean stop).
    pub fn settle(&mut self) -> Result<(), LedgerError> {
        self.flush()?;
        self.flush()
    }

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
        let bytes = bytes.ok_or_else(|| LedgerError::chunk(&chunk.name(), "file is shorter than its index"))?;
        match parse_entry(&bytes) {
            Ok((e, used)) if used == bytes.len() && e.seqno == seqno => Ok(bytes),
            _ => Err(LedgerError::chunk(
                &chunk.name(),
                format!("entry {seqno} on disk does not match the index"),
            )),
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
                return Err(LedgerError::chunk(&chunk.name(), "file is shorter than its index"));
            };
            if checked {
                ranges.push((from, to));
                continue;
            }
            match parse_entry(entry) {
                Ok((e, used)) if used == entry.len() && e.seqno == s => ranges.push((from, to)),
                _ => {
                    return Err(LedgerError::chunk(
                        &chunk.name(),
                        format!("entry {s} on disk does not match the index"),
                    ))
                }
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

    /// Drops every entry after `seqno` (Raft rollback, or cleaning up on restart). Chunks entirely after it are
    /// removed; a complete chunk that contains it is reopened. Committed entries cannot be dropped.
    pub fn truncate(&mut self, seqno: u64) -> Result<(), LedgerError> {
        if seqno >= self.last_seqno() {
            return Ok(());
        }
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
        let Some(chunk) = self.chunks.last() else {
            self.last_is_signature = true;
            return Ok(());
        };
        if chunk.end() == seqno {
            // A complete chunk ends on a signature; an open one must be reloaded if it was just exposed.
            if chunk.state == ChunkState::Open && self.open_bytes.is_empty() {
                self.open_bytes = self.storage.read(&chunk.name())?;
            }
            self.last_is_signature = chunk.state != ChunkState::Open || self.entry_at_is_signature(seqno)?;
            return Ok(());
        }
        let name = chunk.name();
        let keep = (seqno - chunk.start + 1) as usize;
        let new_len = chunk.offsets[keep];
        // Truncate first (drops the position table), then clear the header, then rename: every intermediate
        // state reopens as this same open chunk.
        self.storage.truncate(&name, new_len)?;
        let was_open = chunk.state == ChunkState::Open;
        if !was_open {
            self.storage.write_at(&name, 0, &[0u8; 8])?;
            if chunk.named != ChunkState::Open {
                self.storage.rename(&name, &chunk_name_open(chunk.start))?;
            }
        }
        let chunk = self.chunks.last_mut().expect("checked above");
        chunk.offsets.truncate(keep);
        chunk.count = keep as u64;
        chunk.entries_end = new_len;
        chunk.state = ChunkState::Open;
        chunk.named = ChunkState::Open;
        chunk.synced = false;
        let open_name = chunk.name();
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
