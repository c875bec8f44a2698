//! Test support: a faulty in-memory disk for deterministic simulation (writes land in a volatile copy, `sync` makes
//! a file's content durable, and [`FaultyDisk::crash`] throws away what was not synced, keeping a torn prefix of
//! it), the fixed node identities the scenario, simulation and replay tests sign with, and the [`Cluster`] harness
//! both the scenario tests and the simulator drive.

mod cluster;

pub use cluster::{Cluster, Delivery, Message, Node, PendingPersist, PersistStep, NODE_PERSIST_ORDER};

use crate::NodeIdentity;
use consort_crypto::{key_id, SigningKey};
use consort_ledger::{LedgerStorage, StorageError};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

#[derive(Debug, Clone, Default)]
struct File {
    data: Vec<u8>,
    /// Content as of the last sync; `None` if never synced.
    durable: Option<Vec<u8>>,
}

/// Cloning shares the disk: the simulator keeps a handle across a replica's crash and restart.
/// Renames and removals are durable at once (as with a journaled directory); file contents only on `sync`.
#[derive(Debug, Clone, Default)]
pub struct FaultyDisk {
    files: Rc<RefCell<BTreeMap<String, File>>>,
}

impl FaultyDisk {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    /// Loses unsynced data. For each file with unsynced bytes appended after its durable content,
    /// `torn(unsynced_len)` says how many of them survive (a torn write); a file rewritten in place since its
    /// last sync goes back to its durable content; a never-synced file keeps `torn(len)` bytes.
    pub fn crash(&self, mut torn: impl FnMut(usize) -> usize) {
        for f in self.files.borrow_mut().values_mut() {
            let durable = f.durable.clone().unwrap_or_default();
            if f.data.starts_with(&durable) {
                let extra = f.data.len() - durable.len();
                let keep = torn(extra).min(extra);
                f.data.truncate(durable.len() + keep);
            } else {
                f.data = durable;
            }
        }
    }

    /// A disk of its own holding a copy of this one's files as they are now (an operator copying a ledger
    /// directory).
    pub fn deep_copy(&self) -> Self {
        FaultyDisk {
            files: Rc::new(RefCell::new(self.files.borrow().clone())),
        }
    }

    /// Flips bit `mask` of byte `offset` in file `name` (damage on the host's disk); false if there is no such
    /// byte.
    pub fn flip(&self, name: &str, offset: usize, mask: u8) -> bool {
        let mut files = self.files.borrow_mut();
        let Some(f) = files.get_mut(name) else { return false };
        let Some(b) = f.data.get_mut(offset) else { return false };
        *b ^= mask;
        if let Some(d) = f.durable.as_mut().and_then(|d| d.get_mut(offset)) {
            *d ^= mask;
        }
        true
    }

    /// Total bytes written but not yet synced, over all files.
    pub fn unsynced_bytes(&self) -> usize {
        self.files
            .borrow()
            .values()
            .map(|f| f.data.len().abs_diff(f.durable.as_ref().map_or(0, Vec::len)))
            .sum()
    }
}

fn not_found(name: &str) -> StorageError {
    StorageError::NotFound(name.to_string())
}

impl LedgerStorage for FaultyDisk {
    fn list(&self) -> Result<Vec<String>, StorageError> {
        Ok(self.files.borrow().keys().cloned().collect())
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, StorageError> {
        self.files
            .borrow()
            .get(name)
            .map(|f| f.data.clone())
            .ok_or_else(|| not_found(name))
    }

    fn append(&mut self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.files
            .borrow_mut()
            .entry(name.to_string())
            .or_default()
            .data
            .extend_from_slice(bytes);
        Ok(())
    }

    fn write_at(&mut self, name: &str, offset: u64, bytes: &[u8]) -> Result<(), StorageError> {
        let mut files = self.files.borrow_mut();
        let f = files.get_mut(name).ok_or_else(|| not_found(name))?;
        if offset > f.data.len() as u64 {
            return Err(StorageError::OutOfRange(name.to_string()));
        }
        let offset = offset as usize;
        let overlap = bytes.len().min(f.data.len() - offset);
        f.data[offset..offset + overlap].copy_from_slice(&bytes[..overlap]);
        f.data.extend_from_slice(&bytes[overlap..]);
        Ok(())
    }

    fn truncate(&mut self, name: &str, len: u64) -> Result<(), StorageError> {
        let mut files = self.files.borrow_mut();
        let f = files.get_mut(name).ok_or_else(|| not_found(name))?;
        if len > f.data.len() as u64 {
            return Err(StorageError::OutOfRange(name.to_string()));
        }
        f.data.truncate(len as usize);
        Ok(())
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), StorageError> {
        let mut files = self.files.borrow_mut();
        let f = files.remove(from).ok_or_else(|| not_found(from))?;
        files.insert(to.to_string(), f);
        Ok(())
    }

    fn remove(&mut self, name: &str) -> Result<(), StorageError> {
        self.files
            .borrow_mut()
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| not_found(name))
    }

    fn sync(&mut self, name: &str) -> Result<(), StorageError> {
        let mut files = self.files.borrow_mut();
        let f = files.get_mut(name).ok_or_else(|| not_found(name))?;
        f.durable = Some(f.data.clone());
        Ok(())
    }
}

/// The table a recovered ledger's old signature transaction must not write besides the signature tables, if any
/// (the replica's check, for tests).
pub fn extra_signature_write_for_tests(ws: &consort_kv::WriteSet) -> Option<String> {
    crate::recovery::extra_signature_write(ws).map(str::to_owned)
}

/// The node identities of `tests/fixtures/identities.txt` (private key PEM followed by certificate PEM, blocks
/// separated by `=====` lines), in file order: fixed so that simulations replay byte for byte.
pub fn fixture_identities() -> Vec<NodeIdentity> {
    include_str!("../../tests/fixtures/identities.txt")
        .split("=====\n")
        .filter(|s| !s.trim().is_empty())
        .map(|block| {
            let end = "-----END PRIVATE KEY-----\n";
            let at = block.find(end).expect("fixture holds a key") + end.len();
            let key = SigningKey::from_pem(&block[..at]).expect("fixture key parses");
            let node_id = key_id(&key.verifying_key().to_spki_der());
            NodeIdentity {
                key,
                cert_pem: block[at..].to_string(),
                node_id,
                secret_opener: None,
            }
        })
        .collect()
}

/// Lends recovery replay a second core with a scoped thread, as the node's `offload::ThreadOffload` does (for the
/// replay tests and example; the replica itself never starts threads).
#[derive(Debug, Clone, Copy, Default)]
pub struct ScopedThreadOffload;

impl crate::Offload for ScopedThreadOffload {
    // A test harness lending a thread the way the node does; the replica itself never starts one.
    #[allow(clippy::disallowed_methods)]
    fn run_beside(&self, background: Box<dyn FnOnce() + Send + '_>, foreground: &mut dyn FnMut()) {
        std::thread::scope(|s| {
            let worker = s.spawn(background);
            foreground();
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformance() {
        consort_ledger::storage_conformance(|| Box::new(FaultyDisk::new()));
    }

    #[test]
    fn crash_loses_unsynced_data() {
        let mut d = FaultyDisk::new();
        d.append("a", b"durable").unwrap();
        d.sync("a").unwrap();
        d.append("a", b" lost").unwrap();
        d.append("b", b"never synced").unwrap();
        assert_eq!(d.unsynced_bytes(), 5 + 12);
        d.crash(|n| n.min(2));
        assert_eq!(d.read("a").unwrap(), b"durable l");
        assert_eq!(d.read("b").unwrap(), b"ne");
        d.write_at("a", 0, b"D").unwrap();
        d.crash(|_| 0);
        assert_eq!(
            d.read("a").unwrap(),
            b"durable",
            "an in-place rewrite reverts to the durable content"
        );
    }
}
