//! Typed errors: what a peer, the disk or a caller can get wrong, and why a proposal was refused.

use consort_kv::KvError;
use consort_ledger::LedgerError;

/// Errors of the replication core. Anything that comes from a peer or the disk maps to one of these; none of
/// them is a panic.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ConsensusError {
    /// A peer's message does not decode, or breaks the protocol (wrong sender, a proposal).
    #[error("malformed message: {0}")]
    MalformedMessage(String),
    #[error("{what} of {size} bytes exceeds the limit of {limit}")]
    /// Something from a peer or the disk is over its named limit ([`crate::limits`]).
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit it exceeds.
        limit: u64,
    },
    #[error("invalid entry at seqno {seqno}: {reason}")]
    /// A ledger entry does not parse, decrypt or fit where it stands.
    InvalidEntry {
        /// The entry's seqno.
        seqno: u64,
        /// What is wrong with it.
        reason: String,
    },
    #[error("bad signature transaction at seqno {seqno}: {reason}")]
    /// A signature transaction does not verify: wrong root, untrusted signer, bad signature.
    BadSignature {
        /// The signature transaction's seqno.
        seqno: u64,
        /// Why it does not verify.
        reason: String,
    },
    /// A snapshot (from a peer or the disk) does not verify or does not match its metadata.
    #[error("invalid snapshot: {0}")]
    InvalidSnapshot(String),
    /// What the node persisted, or what it asks, contradicts the replica's state.
    #[error("inconsistent persisted state: {0}")]
    Inconsistent(String),
    /// raft-rs refused an input or a configuration.
    #[error("raft: {0}")]
    Raft(String),
    /// The ledger (chunk files) failed.
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// The key-value store refused a write set or a rollback.
    #[error("kv: {0}")]
    Kv(#[from] KvError),
    /// The replica halted earlier and takes no more input.
    /// The replica halted earlier and takes no more proposals.
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
    /// This replica is not the primary.
    NotLeader {
        /// The primary this replica knows of, if any.
        leader: Option<u64>,
    },
    #[error("proposal for version {got}, the next seqno is {expected}")]
    /// The proposal's store version is not the next seqno.
    VersionMismatch {
        /// The next seqno.
        expected: u64,
        /// The proposal's version.
        got: u64,
    },
    /// raft-rs did not append the proposal (e.g. a leadership transfer is under way).
    #[error("raft dropped the proposal: {0}")]
    Dropped(String),
    /// The write set could not be encoded as a ledger entry.
    #[error("could not encode the entry: {0}")]
    Encode(String),
    /// The replica halted earlier and takes no more proposals.
    #[error("replica halted: {0}")]
    Halted(String),
}
