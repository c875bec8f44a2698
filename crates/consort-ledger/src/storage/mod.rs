//! The disk as the ledger sees it ([`LedgerStorage`]), and an in-memory implementation of it ([`MemStorage`]).

mod mem;

pub use mem::MemStorage;

use crate::StorageError;

/// The disk as the ledger sees it: a flat directory of named files. The node implements it with real files, the
/// simulator with a faulty in-memory disk. Every implementation must pass the conformance suite
/// (`testing::storage_conformance`, behind the `testing` feature).
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
    /// Deletes a file; [`StorageError::NotFound`] if missing.
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
