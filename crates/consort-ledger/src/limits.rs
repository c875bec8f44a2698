//! Named limits on everything this crate reads from untrusted bytes or the disk, in one place.

/// Largest ledger entry (header included) this crate encodes or accepts.
pub const MAX_ENTRY_SIZE: usize = 64 * 1024 * 1024;

/// Largest chunk file: position-table offsets are u32, so no entry may start at or beyond 4 GiB.
pub const MAX_CHUNK_SIZE: u64 = u32::MAX as u64;

/// Most entries one chunk may hold (bounds the position table read from disk).
pub const MAX_ENTRIES_PER_CHUNK: u64 = 16 * 1024 * 1024;

/// Most tables one public domain may name.
pub const MAX_TABLES_PER_DOMAIN: usize = 4096;

/// Longest table name in a public domain.
pub const MAX_TABLE_NAME_SIZE: usize = 1024;

/// Most leaves a serialised Merkle tree may hold.
pub const MAX_MERKLE_LEAVES: u64 = 1 << 40;

/// Largest JSON value the auditor parses from an internal table (signatures, nodes, service info).
pub const MAX_JSON_VALUE_SIZE: usize = 1024 * 1024;
