//! A crash at every storage operation of append (with chunk closes), commit and truncate: the ledger reopens,
//! and holds a prefix of the entries that is at least what was committed and flushed before the crash.

use consort_ledger::testing::{sample_ledger, BuiltEntry};
use consort_ledger::*;
use std::cell::RefCell;
use std::rc::Rc;

/// MemStorage that fails every mutation once `budget` mutations have been made; `disk` stays readable after
/// the crash (also when the ledger that used it is gone), as the disk the crash left.
struct Crashing {
    disk: Rc<RefCell<MemStorage>>,
    budget: usize,
}

impl Crashing {
    fn new(disk: &MemStorage, budget: usize) -> (Self, Rc<RefCell<MemStorage>>) {
        let disk = Rc::new(RefCell::new(disk.clone()));
        (
            Crashing {
                disk: disk.clone(),
                budget,
            },
            disk,
        )
    }

    fn spend(&mut self) -> Result<(), StorageError> {
        if self.budget == 0 {
            return Err(StorageError::io("disk", std::io::Error::other("crashed")));
        }
        self.budget -= 1;
        Ok(())
    }
}

impl LedgerStorage for Crashing {
    fn list(&self) -> Result<Vec<String>, StorageError> {
        self.disk.borrow().list()
    }
    fn read(&self, name: &str) -> Result<Vec<u8>, StorageError> {
        self.disk.borrow().read(name)
    }
    fn append(&mut self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.spend()?;
        self.disk.borrow_mut().append(name, bytes)
    }
    fn write_at(&mut self, name: &str, offset: u64, bytes: &[u8]) -> Result<(), StorageError> {
        self.spend()?;
        self.disk.borrow_mut().write_at(name, offset, bytes)
    }
    fn truncate(&mut self, name: &str, len: u64) -> Result<(), StorageError> {
        self.spend()?;
        self.disk.borrow_mut().truncate(name, len)
    }
    fn rename(&mut self, from: &str, to: &str) -> Result<(), StorageError> {
        self.spend()?;
        self.disk.borrow_mut().rename(from, to)
    }
    fn remove(&mut self, name: &str) -> Result<(), StorageError> {
        self.spend()?;
        self.disk.borrow_mut().remove(name)
    }
    fn sync(&mut self, name: &str) -> Result<(), StorageError> {
        self.spend()?;
        self.disk.borrow_mut().sync(name)
    }
}

/// Reopens what the crash left and checks it holds `entries[..m]` for some `m` in `min..=max`; returns `m`.
fn reopened_prefix(disk: MemStorage, entries: &[BuiltEntry], min: usize, max: usize, what: &str) -> usize {
    let (ledger, got) = Ledger::open(disk, 1).unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
    assert!(
        (min..=max).contains(&got.len()),
        "{what}: reopened with {} entries, expected {min}..={max}",
        got.len()
    );
    for (e, g) in entries.iter().zip(&got) {
        assert!(&e.bytes == g, "{what}: entry {} differs", e.seqno);
    }
    assert_eq!(ledger.last_seqno(), got.len() as u64, "{what}");
    got.len()
}

#[test]
fn crash_at_every_storage_operation_of_append_commit_and_truncate() {
    let b = sample_ledger(3, 2); // signatures at 2, 6, 9, 12
    let entries = b.entries().to_vec();
    let n = entries.len();

    // Appending everything (closing a chunk at each signature) and committing as signatures arrive.
    for budget in 0.. {
        let (storage, disk) = Crashing::new(&MemStorage::new(), budget);
        let (mut l, _) = Ledger::open(storage, 1).unwrap();
        let mut flushed = 0;
        let mut crashed = false;
        for e in &entries {
            let step = l.append(e.seqno, &e.bytes, e.is_signature).and_then(|()| {
                if e.is_signature {
                    l.flush()?;
                    l.commit(e.seqno)?;
                }
                Ok(())
            });
            if step.is_err() {
                crashed = true;
                break;
            }
            if e.is_signature {
                flushed = e.seqno as usize;
            }
        }
        drop(l);
        let left = disk.borrow().clone();
        let what = format!("append, crash after {budget} operations");
        reopened_prefix(left.clone(), &entries, flushed, n, &what);
        // A second crash, during the recovery that reopening and the first write do, leaves a disk that still
        // reopens.
        for recovery_budget in 0..8 {
            let (storage, disk) = Crashing::new(&left, recovery_budget);
            if Ledger::open(storage, 1).and_then(|(mut l, _)| l.flush()).is_ok() {
                break;
            }
            let again = disk.borrow().clone();
            reopened_prefix(
                again,
                &entries,
                flushed,
                n,
                &format!("{what}, recovery crash after {recovery_budget}"),
            );
        }
        if !crashed {
            break;
        }
    }

    // Truncating to every seqno from the last committed one, from a ledger committed up to 6.
    let full = {
        let (mut l, _) = Ledger::open(MemStorage::new(), 1).unwrap();
        for e in &entries {
            l.append(e.seqno, &e.bytes, e.is_signature).unwrap();
        }
        l.commit(6).unwrap();
        l.settle().unwrap();
        l.into_storage()
    };
    for cut in 6..n {
        for budget in 0.. {
            let (storage, shared) = Crashing::new(&full, budget);
            let (mut l, _) = Ledger::open(storage, 1).unwrap();
            let crashed = l.truncate(cut as u64).is_err();
            drop(l);
            let disk = shared.borrow().clone();
            let what = format!("truncate to {cut}, crash after {budget} operations");
            let m = reopened_prefix(disk.clone(), &entries, cut, n, &what);
            if !crashed {
                assert_eq!(m, cut, "{what}");
                break;
            }
            // The ledger goes on from wherever the crash left it.
            let (mut l, _) = Ledger::open(disk, 1).unwrap();
            l.truncate(cut as u64).unwrap();
            for e in &entries[cut..] {
                l.append(e.seqno, &e.bytes, e.is_signature).unwrap();
            }
            assert_eq!(l.last_seqno(), n as u64, "{what}");
        }
    }
}

/// MemStorage whose renames fail while `fail_renames` is set (a transient error, not a crash).
struct FlakyRenames {
    inner: MemStorage,
    fail_renames: Rc<std::cell::Cell<bool>>,
}

impl LedgerStorage for FlakyRenames {
    fn list(&self) -> Result<Vec<String>, StorageError> {
        self.inner.list()
    }
    fn read(&self, name: &str) -> Result<Vec<u8>, StorageError> {
        self.inner.read(name)
    }
    fn append(&mut self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.inner.append(name, bytes)
    }
    fn write_at(&mut self, name: &str, offset: u64, bytes: &[u8]) -> Result<(), StorageError> {
        self.inner.write_at(name, offset, bytes)
    }
    fn truncate(&mut self, name: &str, len: u64) -> Result<(), StorageError> {
        self.inner.truncate(name, len)
    }
    fn rename(&mut self, from: &str, to: &str) -> Result<(), StorageError> {
        if self.fail_renames.get() {
            return Err(StorageError::io("disk", std::io::Error::other("rename refused")));
        }
        self.inner.rename(from, to)
    }
    fn remove(&mut self, name: &str) -> Result<(), StorageError> {
        self.inner.remove(name)
    }
    fn sync(&mut self, name: &str) -> Result<(), StorageError> {
        self.inner.sync(name)
    }
}

#[test]
fn a_failed_commit_rename_leaves_the_index_true_and_can_be_retried() {
    let b = sample_ledger(2, 2); // chunks 1-2, 3-6, 7-9 with threshold 1
    let fail_renames = Rc::new(std::cell::Cell::new(false));
    let storage = FlakyRenames {
        inner: MemStorage::new(),
        fail_renames: fail_renames.clone(),
    };
    let (mut l, _) = Ledger::open(storage, 1).unwrap();
    for e in b.entries() {
        l.append(e.seqno, &e.bytes, e.is_signature).unwrap();
    }
    l.commit(9).unwrap();
    l.flush().unwrap(); // syncs the closed chunks; the next flush renames them
    fail_renames.set(true);
    assert!(l.flush().is_err());
    // Every entry is still readable where the index says it is.
    for e in b.entries() {
        assert_eq!(l.read_entry(e.seqno).unwrap(), e.bytes, "seqno {}", e.seqno);
    }
    fail_renames.set(false);
    l.flush().unwrap();
    assert_eq!(
        l.chunk_names(),
        vec!["ledger_1-2.committed", "ledger_3-6.committed", "ledger_7-9.committed"]
    );
    for e in b.entries() {
        assert_eq!(l.read_entry(e.seqno).unwrap(), e.bytes, "seqno {}", e.seqno);
    }
    let mut names = l.storage().inner.list().unwrap();
    names.sort();
    assert_eq!(names, l.chunk_names());
}
