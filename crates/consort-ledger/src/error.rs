//! Typed errors of the ledger crate: framing, crypto, Merkle, chunk and storage failures. Errors that come from
//! another crate's error keep it as their source.

use consort_crypto::{CryptoError, SharedError};
use consort_kv::KvError;
use std::sync::Arc;

/// Errors from a [`crate::LedgerStorage`] implementation.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StorageError {
    /// The named file does not exist.
    #[error("no such file: {0}")]
    NotFound(String),
    /// An offset or length beyond the end of the named file.
    #[error("offset or length out of range in {0}")]
    OutOfRange(String),
    /// A file name the storage refuses (for example one that would leave its directory).
    #[error("invalid file name: {0}")]
    InvalidName(String),
    /// The operating system refused an operation on `path`; `source` is its error, kept (its
    /// [`std::io::ErrorKind`] tells a full disk from a failing one).
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file or directory operated on, as the storage names it.
        path: String,
        /// The operating system's error.
        #[source]
        source: IoError,
    },
}

impl StorageError {
    /// [`StorageError::Io`] on `path`.
    pub fn io(path: impl Into<String>, source: std::io::Error) -> Self {
        StorageError::Io {
            path: path.into(),
            source: IoError(Arc::new(source)),
        }
    }
}

/// A `std::io::Error` shared so that [`StorageError`] stays `Clone` and comparable (`std::io::Error` is
/// neither); two are equal when they have the same kind and say the same thing.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct IoError(#[source] Arc<std::io::Error>);

impl IoError {
    /// The operating system's error.
    pub fn get(&self) -> &std::io::Error {
        &self.0
    }

    /// Its kind (for example [`std::io::ErrorKind::StorageFull`]).
    pub fn kind(&self) -> std::io::ErrorKind {
        self.0.kind()
    }
}

impl PartialEq for IoError {
    fn eq(&self, other: &Self) -> bool {
        self.0.kind() == other.0.kind() && self.0.to_string() == other.0.to_string()
    }
}

impl Eq for IoError {}

/// What is wrong with a damaged chunk file (see [`LedgerError::Damaged`]).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ChunkDamage {
    /// The 8-byte chunk header (the position table's offset) is missing or holds a value this ledger never
    /// writes there.
    #[error("bad chunk header: {0}")]
    BadHeader(HeaderDamage),
    /// The position table at the end of a closed chunk is missing, torn or disagrees with the entries.
    #[error("bad position table: {0}")]
    BadPositionTable(TableDamage),
    /// A closed chunk's name says it holds entries `start..=end`, its position table says otherwise.
    #[error("the name says seqnos {start}-{end}, the position table holds {held} entries")]
    NameRange {
        /// First seqno of the name.
        start: u64,
        /// Last seqno of the name.
        end: u64,
        /// Entries the position table lists.
        held: u64,
    },
    /// An entry whose header claims more bytes than there are before the end of its chunk's entries (in a
    /// closed chunk, or not at the end of the open one, this is damage, not a torn write).
    #[error("entry for seqno {seqno} claims {need} bytes, only {have} remain")]
    LengthBeyondEnd {
        /// Seqno the entry should have.
        seqno: u64,
        /// Bytes its header claims (header included).
        need: u64,
        /// Bytes left before the end.
        have: u64,
    },
    /// An entry that does not parse.
    #[error("bad entry for seqno {seqno}: {source}")]
    BadEntry {
        /// Seqno the entry should have.
        seqno: u64,
        /// Why it does not parse.
        #[source]
        source: Box<LedgerError>,
    },
    /// An entry that parses, for another seqno than its place in the chunk.
    #[error("entry has seqno {got}, expected {expected}")]
    WrongSeqno {
        /// Seqno its place calls for.
        expected: u64,
        /// Seqno the entry holds.
        got: u64,
    },
}

/// Errors from parsing, encoding, verifying or storing ledger data. Malformed bytes always map to one of these.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum LedgerError {
    /// Fewer bytes than a length field or fixed header promised.
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes needed.
        need: u64,
        /// Bytes there were.
        have: u64,
    },
    /// An entry header with a version other than [`crate::entry::ENTRY_VERSION`].
    #[error("unsupported entry version {0}")]
    UnsupportedVersion(u8),
    /// Something larger than its named limit (see [`crate::limits`]).
    #[error("{what} of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit it exceeds.
        limit: u64,
    },
    /// An entry whose framing is inconsistent, or that is not the entry expected.
    #[error("malformed entry: {0}")]
    MalformedEntry(EntryFraming),
    /// An entry's public domain that is not a valid write set.
    #[error("malformed entry: public domain: {0}")]
    PublicDomain(#[source] KvError),
    /// The private domain does not decrypt: the wrong secret, or a tampered entry.
    #[error("private domain decryption failed (wrong secret or tampered entry)")]
    Decrypt,
    /// A Merkle tree question with no answer (a flushed or missing leaf) or a malformed serialised tree.
    #[error("merkle tree: {0}")]
    Merkle(MerkleFault),
    /// A signature record that is malformed or inconsistent.
    #[error("signature: {0}")]
    Signature(#[source] SignatureRecordFault),
    /// A signature record that is not valid JSON.
    #[error("signature: malformed signature JSON: {0}")]
    SignatureJson(#[source] JsonError),
    /// A signature record whose signature is not base64.
    #[error("signature: sig is not base64")]
    SigBase64(#[source] base64::DecodeError),
    /// A signing certificate or key that cannot be used, or a root signature that does not verify.
    #[error("signature: {what}: {source}")]
    Crypto {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        #[source]
        source: CryptoError,
    },
    /// A chunk file that does not hold what its name and index say.
    #[error("chunk {name}: {reason}")]
    Chunk {
        /// The file's name.
        name: String,
        /// What is wrong.
        reason: ChunkFault,
    },
    /// A chunk file whose bytes were changed after they were written: not a torn write the ledger may drop.
    /// Loading refuses the ledger (a node stops); the file is left as it is.
    #[error("chunk {name} is damaged at byte offset {offset}: {damage}")]
    Damaged {
        /// The file's name.
        name: String,
        /// Where in the file the damage was found.
        offset: u64,
        /// What is wrong there.
        #[source]
        damage: ChunkDamage,
    },
    /// An append that is not the next seqno.
    #[error("seqno {got} out of order: expected {expected}")]
    OutOfOrder {
        /// The next seqno.
        expected: u64,
        /// The seqno appended.
        got: u64,
    },
    /// A seqno the ledger does not hold.
    #[error("seqno {0} is not in the ledger")]
    NotFound(u64),
    /// A truncation that would drop committed entries.
    #[error("cannot truncate to {requested}: seqno {committed} is committed")]
    TruncateCommitted {
        /// Seqno truncated to.
        requested: u64,
        /// The committed seqno it is below.
        committed: u64,
    },
    /// The storage failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

impl LedgerError {
    pub(crate) fn chunk(name: &str, reason: ChunkFault) -> Self {
        LedgerError::Chunk {
            name: name.to_string(),
            reason,
        }
    }

    pub(crate) fn damaged(name: &str, offset: u64, damage: ChunkDamage) -> Self {
        LedgerError::Damaged {
            name: name.to_string(),
            offset,
            damage,
        }
    }
}

/// What is wrong with a damaged chunk's 8-byte header (see [`ChunkDamage::BadHeader`]).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum HeaderDamage {
    /// A file shorter than the header whose bytes are not the zeros the header is written as.
    #[error("a torn header of {0} bytes that are not all zero")]
    TornNotZero(u64),
    /// An open chunk's header that is neither 0, the entries' end (or part of it), nor a close's left-over.
    #[error("position table offset {header} in an open chunk whose entries end at {entries_end} of {len} bytes")]
    OpenChunkOffset {
        /// The header's value.
        header: u64,
        /// Where the entries end.
        entries_end: u64,
        /// The file's length.
        len: u64,
    },
    /// A closed chunk shorter than its header.
    #[error("{0} bytes is shorter than the chunk header")]
    Short(u64),
    /// A closed chunk's header that points where no position table can be.
    #[error("position table offset {table_at} in a file of {len} bytes")]
    TableOffset {
        /// The header's value.
        table_at: u64,
        /// The file's length.
        len: u64,
    },
}

/// What is wrong with a closed chunk's position table (see [`ChunkDamage::BadPositionTable`]).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TableDamage {
    /// No entries, or more than a chunk may hold.
    #[error("it holds {0} entries")]
    Count(u64),
    /// The table places an entry elsewhere than it is.
    #[error("it places seqno {seqno} at {offset}, the entry is at {actual}")]
    Misplaced {
        /// The entry's seqno.
        seqno: u64,
        /// Where the table places it.
        offset: u64,
        /// Where it is.
        actual: u64,
    },
    /// The entries end before or after the table starts.
    #[error("the entries end at {entries_end}, the position table starts at {table_at}")]
    EntriesEnd {
        /// Where the entries end.
        entries_end: u64,
        /// Where the table starts.
        table_at: u64,
    },
}

/// What is inconsistent in an entry's framing, or makes it another entry than the one expected (see
/// [`LedgerError::MalformedEntry`]).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum EntryFraming {
    /// A view the entry's IV cannot hold.
    #[error("view {0} does not fit in 31 bits")]
    ViewTooLarge(u64),
    /// A size field smaller than the headers every entry has.
    #[error("entry size {0} is smaller than its fixed headers")]
    SmallerThanHeaders(u64),
    /// A public domain size past the end of the entry.
    #[error("public domain size {size} exceeds the {left} bytes left in the entry")]
    PublicDomainSize {
        /// The public domain size field.
        size: u64,
        /// Bytes left in the entry.
        left: usize,
    },
    /// Bytes after the one entry appended.
    #[error("{0} trailing bytes after the entry")]
    TrailingBytes(usize),
    /// An entry appended at another seqno than its own.
    #[error("entry is for seqno {entry}, appended at {appended}")]
    WrongSeqno {
        /// The entry's seqno.
        entry: u64,
        /// The seqno it was appended at.
        appended: u64,
    },
}

/// A Merkle tree question with no answer, or a serialised tree that does not parse (see [`LedgerError::Merkle`]).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum MerkleFault {
    /// No root for that many leaves: none, more than the tree holds, or fewer than it kept.
    #[error("no root for {leaves} leaves (tree holds {len}, flushed below {first})")]
    NoRoot {
        /// The leaves asked for.
        leaves: u64,
        /// The leaves the tree holds.
        len: u64,
        /// The first leaf it kept.
        first: u64,
    },
    /// No path for that leaf in that tree.
    #[error("no path for leaf {index} in {leaves} leaves (tree holds {len}, flushed below {first})")]
    NoPath {
        /// The leaf asked for.
        index: u64,
        /// The tree's size asked for.
        leaves: u64,
        /// The leaves the tree holds.
        len: u64,
        /// The first leaf it kept.
        first: u64,
    },
    /// A serialised tree that does not start with its magic.
    #[error("bad magic")]
    BadMagic,
    /// A serialised tree with sizes no tree has.
    #[error("invalid sizes: first {first}, len {len}")]
    InvalidSizes {
        /// The first leaf kept.
        first: u64,
        /// The leaves.
        len: u64,
    },
    /// A serialised tree with more or fewer node bytes than its sizes call for.
    #[error("expected {expected} nodes, found {found} bytes")]
    NodeCount {
        /// Nodes the sizes call for.
        expected: u64,
        /// Bytes there are.
        found: usize,
    },
    /// A node whose children the serialised tree does not hold.
    #[error("level {level} node {index} has no children")]
    NoChildren {
        /// The node's level.
        level: usize,
        /// Its index in the level.
        index: u64,
    },
}

/// What is wrong with a signature record (see [`LedgerError::Signature`]).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SignatureRecordFault {
    /// The signatures table is written without a value at the singleton key.
    #[error("signatures table without a value at the singleton key")]
    NoValue,
    /// The root is not hex.
    #[error("root is not hex")]
    RootNotHex(#[source] SharedError<hex::FromHexError>),
    /// The root is not a 32-byte digest.
    #[error("root is not 32 bytes")]
    RootLength(usize),
}

/// Why a chunk file does not hold what its name and the index say (see [`LedgerError::Chunk`]).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ChunkFault {
    /// The file ends before an entry the index places in it.
    #[error("file is shorter than its index")]
    ShorterThanIndex,
    /// The entry where the index places it is not that entry.
    #[error("entry {0} on disk does not match the index")]
    EntryNotAsIndexed(u64),
    /// The chunk starts after the seqno following the chunk before it.
    #[error("does not follow {previous}: seqnos {first_missing}-{last_missing} are missing")]
    Gap {
        /// The chunk before it.
        previous: String,
        /// The first seqno missing.
        first_missing: u64,
        /// The last seqno missing.
        last_missing: u64,
    },
    /// The chunk starts at or before the end of the chunk before it.
    #[error("overlaps {previous}, which ends at seqno {end}")]
    Overlap {
        /// The chunk before it.
        previous: String,
        /// That chunk's last seqno.
        end: u64,
    },
    /// An open chunk with a closed chunk after it.
    #[error("open chunk is followed by the closed chunk {0}: only the last chunk may be open")]
    OpenBeforeClosed(String),
}

/// A JSON error shared so that [`LedgerError`] stays `Clone` and comparable (`serde_json::Error` is neither);
/// two are equal when they say the same thing.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(#[source] Arc<serde_json::Error>);

impl From<serde_json::Error> for JsonError {
    fn from(e: serde_json::Error) -> Self {
        JsonError(Arc::new(e))
    }
}

impl PartialEq for JsonError {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}

impl Eq for JsonError {}
