//! Typed errors of the ledger crate: framing, crypto, Merkle, chunk and storage failures.

/// Errors from a [`crate::LedgerStorage`] implementation.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StorageError {
    #[error("no such file: {0}")]
    NotFound(String),
    #[error("offset or length out of range in {0}")]
    OutOfRange(String),
    #[error("invalid file name: {0}")]
    InvalidName(String),
    #[error("i/o error: {0}")]
    Io(String),
}

/// Errors from parsing, encoding, verifying or storing ledger data. Malformed bytes always map to one of these.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum LedgerError {
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated { what: &'static str, need: u64, have: u64 },
    #[error("unsupported entry version {0}")]
    UnsupportedVersion(u8),
    #[error("{what} of {size} bytes exceeds the limit of {limit}")]
    TooLarge { what: &'static str, size: u64, limit: u64 },
    #[error("malformed entry: {0}")]
    MalformedEntry(String),
    #[error("private domain decryption failed (wrong secret or tampered entry)")]
    Decrypt,
    #[error("merkle tree: {0}")]
    Merkle(String),
    #[error("signature: {0}")]
    Signature(String),
    #[error("chunk {name}: {reason}")]
    Chunk { name: String, reason: String },
    #[error("seqno {got} out of order: expected {expected}")]
    OutOfOrder { expected: u64, got: u64 },
    #[error("seqno {0} is not in the ledger")]
    NotFound(u64),
    #[error("cannot truncate to {requested}: seqno {committed} is committed")]
    TruncateCommitted { requested: u64, committed: u64 },
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

impl LedgerError {
    pub(crate) fn chunk(name: &str, reason: impl Into<String>) -> Self {
        LedgerError::Chunk {
            name: name.to_string(),
            reason: reason.into(),
        }
    }
}
