//! Typed errors: what a peer, the disk or a caller can get wrong, and why a proposal was refused.

use consort_kv::KvError;
use consort_ledger::LedgerError;

/// Errors of the replication core. Anything that comes from a peer or the disk maps to one of these; none of
/// them is a panic.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ConsensusError {
    #[error("malformed message: {0}")]
    MalformedMessage(String),
    #[error("{what} of {size} bytes exceeds the limit of {limit}")]
    TooLarge { what: &'static str, size: u64, limit: u64 },
    #[error("invalid entry at seqno {seqno}: {reason}")]
    InvalidEntry { seqno: u64, reason: String },
    #[error("bad signature transaction at seqno {seqno}: {reason}")]
    BadSignature { seqno: u64, reason: String },
    #[error("invalid snapshot: {0}")]
    InvalidSnapshot(String),
    #[error("inconsistent persisted state: {0}")]
    Inconsistent(String),
    #[error("raft: {0}")]
    Raft(String),
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("kv: {0}")]
    Kv(#[from] KvError),
    #[error("replica halted: {0}")]
    Halted(String),
}

impl ConsensusError {
    pub(crate) fn entry(seqno: u64, reason: impl Into<String>) -> Self {
        ConsensusError::InvalidEntry {
            seqno,
            reason: reason.into(),
        }
    }
}

/// Why a proposal was not added to the log. For client proposals the replica has rolled its store back to the
/// version before the proposal: the transaction did not happen.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ProposeError {
    #[error("not the primary (leader: {leader:?})")]
    NotLeader { leader: Option<u64> },
    #[error("proposal for version {got}, the next seqno is {expected}")]
    VersionMismatch { expected: u64, got: u64 },
    #[error("raft dropped the proposal: {0}")]
    Dropped(String),
    #[error("could not encode the entry: {0}")]
    Encode(String),
    #[error("replica halted: {0}")]
    Halted(String),
}
