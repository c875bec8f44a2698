//! [`MemStorage`]: a [`LedgerStorage`] held in a map of byte vectors, for tests and tools.

use super::LedgerStorage;
use crate::StorageError;
use std::collections::BTreeMap;

/// In-memory storage for tests and the simulator. Cloning it snapshots the "disk".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemStorage {
    files: BTreeMap<String, Vec<u8>>,
}

impl MemStorage {
    /// An empty storage.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every file, by name.
    pub fn files(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.files
    }

    /// Direct access, for tests that damage files.
    pub fn files_mut(&mut self) -> &mut BTreeMap<String, Vec<u8>> {
        &mut self.files
    }

    fn file_mut(&mut self, name: &str) -> Result<&mut Vec<u8>, StorageError> {
        self.files
            .get_mut(name)
            .ok_or_else(|| StorageError::NotFound(name.to_string()))
    }
}

impl LedgerStorage for MemStorage {
    fn list(&self) -> Result<Vec<String>, StorageError> {
        Ok(self.files.keys().cloned().collect())
    }
    fn read(&self, name: &str) -> Result<Vec<u8>, StorageError> {
        self.files
            .get(name)
            .cloned()
            .ok_or_else(|| StorageError::NotFound(name.to_string()))
    }
    fn append(&mut self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.files.entry(name.to_string()).or_default().extend_from_slice(bytes);
        Ok(())
    }
    fn write_at(&mut self, name: &str, offset: u64, bytes: &[u8]) -> Result<(), StorageError> {
        let f = self.file_mut(name)?;
        if offset > f.len() as u64 {
            return Err(StorageError::OutOfRange(name.to_string()));
        }
        let offset = offset as usize;
        let overlap = bytes.len().min(f.len() - offset);
        f[offset..offset + overlap].copy_from_slice(&bytes[..overlap]);
        f.extend_from_slice(&bytes[overlap..]);
        Ok(())
    }
    fn truncate(&mut self, name: &str, len: u64) -> Result<(), StorageError> {
        let f = self.file_mut(name)?;
        if len > f.len() as u64 {
            return Err(StorageError::OutOfRange(name.to_string()));
        }
        f.truncate(len as usize);
        Ok(())
    }
    fn rename(&mut self, from: &str, to: &str) -> Result<(), StorageError> {
        let f = self
            .files
            .remove(from)
            .ok_or_else(|| StorageError::NotFound(from.to_string()))?;
        self.files.insert(to.to_string(), f);
        Ok(())
    }
    fn remove(&mut self, name: &str) -> Result<(), StorageError> {
        self.files
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| StorageError::NotFound(name.to_string()))
    }
    fn sync(&mut self, name: &str) -> Result<(), StorageError> {
        self.file_mut(name).map(|_| ())
    }
}
