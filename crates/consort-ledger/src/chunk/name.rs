//! Chunk file names: `ledger_<start>` while open, `ledger_<start>-<end>` once complete and
//! `ledger_<start>-<end>.committed` once every entry in it is committed, as CCF names them.

const COMMITTED_SUFFIX: &str = ".committed";
const CHUNK_PREFIX: &str = "ledger_";

/// The name of the open chunk whose first entry is `start`.
pub fn chunk_name_open(start: u64) -> String {
    format!("{CHUNK_PREFIX}{start}")
}

/// The name of a complete (closed, not yet committed) chunk holding entries `start..=end`.
pub fn chunk_name_complete(start: u64, end: u64) -> String {
    format!("{CHUNK_PREFIX}{start}-{end}")
}

/// The name of a committed chunk holding entries `start..=end`.
pub fn chunk_name_committed(start: u64, end: u64) -> String {
    format!("{CHUNK_PREFIX}{start}-{end}{COMMITTED_SUFFIX}")
}

/// What a chunk file name says: first seqno, last seqno (complete chunks) and whether it is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkName {
    /// Seqno of the chunk's first entry.
    pub start: u64,
    /// Seqno of its last entry; None while the chunk is open.
    pub end: Option<u64>,
    /// Whether the name ends in `.committed`.
    pub committed: bool,
}

impl ChunkName {
    /// The file name this describes (the inverse of [`parse_chunk_name`]).
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
