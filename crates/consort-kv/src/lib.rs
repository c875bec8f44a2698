//! Consort's transactional key-value store: maps, transactions with optimistic concurrency, write sets and
//! snapshots in CCF's byte format.
//!
//! This crate is a sans-IO core: no files, sockets, clocks or threads. Bytes come in and go out as values; the
//! node decides where they are stored and sent.
//!
//! - [`Store`]: all maps of one node, thread-safe. Transactions ([`Tx`]) read the latest committed state, buffer
//!   their writes, and commit with [`Store::commit`], which validates the read set and applies the writes at the
//!   next version (= seqno) while holding the commit lock, so the caller can append to its ledger in order.
//! - [`WriteSet`]: the writes of one transaction, (de)serialised as CCF's public domain (`public:` maps, with a
//!   header) and private domain plaintext (all other maps).
//! - [`WriteBatch`]: the flat form of a replicated or replayed entry, applied with [`Store::apply_batch`].
//! - Snapshots: [`Store::snapshot`] / [`Store::from_snapshot`] in CCF's snapshot public-domain format, and
//!   [`Store::snapshot_job`]: the same snapshot of a pinned version built in batches of [`SNAPSHOT_BATCH`]
//!   entries while the store moves on.
//! - Undo for Raft: versions above [`Store::set_committed`] can be rolled back with [`Store::rollback`].
#![forbid(unsafe_code)]
#![warn(unreachable_pub, missing_docs)]

mod fault;
mod key;
mod snapshot;
mod state;
mod store;
mod tx;
mod wire;
mod write_set;

pub use fault::WireFault;
pub use snapshot::{SnapshotHeader, SnapshotJob, SNAPSHOT_BATCH};
pub use store::{Commitment, Store};
pub use tx::{CommitOutcome, ExecuteError, ReadTx, Tx};
pub use write_set::{
    BatchWrites, Domain, DomainHeader, MapWrites, WriteBatch, WriteSet, ENTRY_TYPE_SNAPSHOT, ENTRY_TYPE_WRITE_SET,
    ENTRY_TYPE_WRITE_SET_WITH_CE, ENTRY_TYPE_WRITE_SET_WITH_CE_AND_CLAIMS, ENTRY_TYPE_WRITE_SET_WITH_CLAIMS,
};

/// A transaction's version in the store; equal to its seqno in the ledger. 0 means "before any transaction".
pub type Version = u64;
/// A key in a map: raw bytes, ordered bytewise.
pub type Key = Vec<u8>;
/// A value in a map: raw bytes.
pub type Value = Vec<u8>;

/// Prefix of the maps stored in the clear in the ledger; every other map is encrypted.
pub const PUBLIC_MAP_PREFIX: &str = "public:";

/// How many times [`Store::execute`] runs a transaction body that keeps conflicting before giving up.
pub const DEFAULT_MAX_OCC_ATTEMPTS: usize = 16;

/// True for maps whose writes go in the public (cleartext) domain of a ledger entry.
pub fn is_public_map(name: &str) -> bool {
    name.starts_with(PUBLIC_MAP_PREFIX)
}

/// Errors from this crate. Malformed bytes from peers or disk are `Malformed` (with a [`WireFault`] saying what is
/// wrong); the rest are conditions the
/// caller handles (retry on `Conflict`, resynchronise on `VersionMismatch`, ...).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum KvError {
    /// Bytes from a peer or the disk that are not a valid write set, batch or snapshot; says what is wrong.
    #[error("malformed serialised data: {0}")]
    Malformed(#[from] WireFault),
    /// Optimistic concurrency control: the transaction read something that has changed since; re-execute it.
    #[error("transaction conflict: a key or map it read has changed since")]
    Conflict,
    /// [`Store::execute`] kept conflicting.
    #[error("transaction still conflicting after {attempts} attempts")]
    ConflictRetriesExhausted {
        /// How many times the body ran.
        attempts: usize,
    },
    /// A replicated or replayed write set is not for the next version.
    #[error("write set for version {got} cannot be applied: the next version is {expected}")]
    VersionMismatch {
        /// The store's next version.
        expected: Version,
        /// The version the write set was for.
        got: Version,
    },
    /// A rollback would undo a committed version.
    #[error("cannot roll back to {to}: version {committed} is committed")]
    RollbackBelowCommitted {
        /// The version asked to roll back to.
        to: Version,
        /// The committed version.
        committed: Version,
    },
    /// A rollback to a version the store has not reached.
    #[error("cannot roll back to {to}: the store is only at version {current}")]
    RollbackBeyondCurrent {
        /// The version asked to roll back to.
        to: Version,
        /// The store's current version.
        current: Version,
    },
    /// The state at a version cannot be reconstructed (no undo records reach it).
    #[error("state at version {requested} is unavailable (committed {committed}, current {current})")]
    VersionUnavailable {
        /// The version asked for.
        requested: Version,
        /// The committed version.
        committed: Version,
        /// The store's current version.
        current: Version,
    },
    /// A snapshot job lost its version to a rollback below it.
    #[error("the snapshot at version {version} was abandoned: a rollback undid that version")]
    SnapshotAbandoned {
        /// The version the job was capturing.
        version: Version,
    },
}
