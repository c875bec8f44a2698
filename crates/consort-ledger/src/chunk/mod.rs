//! Chunk files: how they are named and how their bytes are laid out, and (re-exported here, for the paths other
//! crates use) the storage they live in and the [`Ledger`] that writes them.
//!
//! A chunk file is `u64 position-table offset ‖ entries ‖ u32 offset per entry`. While a chunk is open its
//! offset is 0 and it has no table; it is named `ledger_<start>`. Closing it (always right after a signature
//! transaction) appends the table and points the header at it, with no sync and no rename (the caller may hold
//! a lock); the next [`Ledger::flush`] syncs it and the flush after that renames it `ledger_<start>-<end>`, or
//! `ledger_<start>-<end>.committed` once every entry in it is committed (commits too are renamed by a flush).
//! A complete or committed name therefore always means a durable position table.
//!
//! Crash safety comes from the order of these steps: every intermediate state is recognised by
//! [`Ledger::load`], which finishes or undoes the step (a torn tail of the open chunk is dropped; a chunk whose
//! position table is missing or torn is reopened, and open-named chunks after it, which no completed flush
//! covered, are dropped), while anything that a crash cannot leave refuses the load as damage. What may be torn
//! and what is damage is set out in the documentation of the `ledger::load` module.

mod format;
mod name;

pub(crate) use format::{complete_chunk_entries, position_table, scan_open_chunk, OpenScan};
pub use format::{entry_is_signature, CHUNK_HEADER_SIZE};
pub use name::{chunk_name_committed, chunk_name_complete, chunk_name_open, parse_chunk_name, ChunkName};

pub use crate::ledger::{ChunkEntries, EntryKind, Ledger, OPEN_BUFFER_RESERVE_LIMIT};
pub use crate::storage::{LedgerStorage, MemStorage};
#[cfg(any(test, feature = "testing"))]
pub use crate::testing::storage_conformance;
