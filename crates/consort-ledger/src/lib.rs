//! Consort's ledger: CCF entry framing, the Merkle tree, signature transactions, chunk files and the offline audit.
//!
//! Everything here is sans-IO. Bytes come in and go out as values; the only way to the disk is the
//! [`LedgerStorage`] trait, which the node implements with real files and tests implement with [`MemStorage`].
//! There is no clock, no thread and no socket in this crate.
//!
//! ```text
//! entry       = header(version 1, flags, u48 size) ‖ gcm tag ‖ iv(seqno, view) ‖ u64 public size ‖ public ‖ private
//! leaf        = SHA-256(SHA-256(entry) ‖ SHA-256(commit evidence) ‖ claims digest)
//! root at s   = Merkle root over leaves 0..s-1 (leaf 0 is 32 zero bytes), signed by signature transaction s
//! chunk file  = u64 position-table offset ‖ entries ‖ u32 position table (complete chunks only)
//! ```
//!
//! Modules: [`entry`] frames one transaction; [`merkle`], [`signature`] and [`receipt`] are the tree, the signed
//! roots and the receipts over them; [`chunk`] names chunk files and checks their bytes; [`storage`] is the disk
//! the ledger sees; [`ledger`] appends, closes, commits, reads and truncates chunks over it; [`audit`] verifies a
//! ledger offline; [`secrets`] holds the recovery shares of the ledger secret. `testing` (feature `testing`)
//! holds the storage conformance suite and ledger builders.
#![forbid(unsafe_code)]
#![warn(unreachable_pub, missing_docs)]

pub mod audit;
pub mod chunk;
pub mod entry;
mod error;
pub mod ledger;
pub mod limits;
pub mod merkle;
mod reader;
pub mod receipt;
pub mod secrets;
pub mod segvec;
pub mod signature;
pub mod storage;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use audit::{
    audit_chunks, audit_chunks_from_snapshot, AuditCause, AuditError, AuditReport, SnapshotOrigin, SnapshotStart,
};
pub use chunk::{chunk_name_committed, chunk_name_complete, chunk_name_open, parse_chunk_name, ChunkName};
pub use entry::{
    encode_entry, leaf_digest, parse_entry, try_encode_entry, try_encode_snapshot, EntryView, LedgerSecret,
    ENTRY_HEADER_SIZE, FLAG_FORCE_CHUNK_AFTER, FLAG_FORCE_CHUNK_BEFORE,
};
pub use error::{
    ChunkDamage, ChunkFault, EntryFraming, HeaderDamage, IoError, JsonError, LedgerError, MerkleFault,
    SignatureRecordFault, StorageError, TableDamage,
};
pub use ledger::{ChunkEntries, EntryKind, EntrySource, Ledger, SettledEntry, TornTail};
pub use limits::*;
pub use merkle::{fold_proof, MerkleTree, ProofStep};
pub use receipt::{receipt_json, signature_receipt_json, LeafComponents};
pub use secrets::{KeyringError, LedgerSecrets};
pub use segvec::SegVec;
pub use signature::{
    sign_root, verify_root, PrimarySignature, ENDORSED_CERTS_TABLE, MEMBERS_CERTS_TABLE, NODES_INFO_TABLE,
    SERVICE_INFO_TABLE, SIGNATURES_TABLE, SINGLETON_KEY, TREE_TABLE, USERS_CERTS_TABLE,
};
pub use storage::{LedgerStorage, MemStorage};
#[cfg(any(test, feature = "testing"))]
pub use testing::storage_conformance;
