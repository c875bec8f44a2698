//! File-backed [`LedgerStorage`]: the ledger crate's storage trait implemented with real files in one directory.

use consort_ledger::{LedgerStorage, StorageError};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Ledger files in a directory. Appends go through a buffered writer kept open per file; `sync` flushes the
/// buffer and fdatasyncs, which is the only durability point.
pub struct FsStorage {
    dir: PathBuf,
    open: HashMap<String, std::io::BufWriter<File>>,
    /// A file was created since the directory was last synced (its entry is not durable yet).
    dir_dirty: bool,
    syncs: SyncQueue,
}

/// Takes fsyncs off the caller's critical section. While [`SyncQueue::deferring`] runs, [`LedgerStorage::sync`]
/// writes the buffered bytes to the kernel and queues the file instead of calling fsync; [`SyncQueue::sync`] then
/// makes them durable (and the directory, if a file was created), outside any lock. The node defers only the
/// ledger flush of a persist, and reports the persist durable only after `sync` returned.
#[derive(Clone, Default)]
pub struct SyncQueue {
    inner: std::sync::Arc<std::sync::Mutex<SyncQueueState>>,
}

#[derive(Default)]
struct SyncQueueState {
    deferring: bool,
    files: Vec<File>,
    dir: Option<PathBuf>,
}

impl SyncQueue {
    fn state(&self) -> std::sync::MutexGuard<'_, SyncQueueState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` with syncs deferred.
    pub fn deferring<R>(&self, f: impl FnOnce() -> R) -> R {
        self.state().deferring = true;
        let r = f();
        self.state().deferring = false;
        r
    }

    /// Makes every queued file (and directory) durable.
    pub fn sync(&self) -> std::io::Result<()> {
        fail::fail_point!("ledger::fsync", |_| Err(injected(IO_ERROR)));
        let (files, dir) = {
            let mut s = self.state();
            (std::mem::take(&mut s.files), s.dir.take())
        };
        for f in files {
            f.sync_data()?;
        }
        if let Some(d) = dir {
            File::open(d)?.sync_all()?;
        }
        Ok(())
    }
}

/// `ENOSPC` and `EIO`, the storage errors the failpoints inject (tests only; see `tests/crash_points.rs`).
#[cfg_attr(not(feature = "failpoints"), allow(dead_code, reason = "used only by failpoints"))]
const NO_SPACE: i32 = 28;
#[cfg_attr(not(feature = "failpoints"), allow(dead_code, reason = "used only by failpoints"))]
const IO_ERROR: i32 = 5;

/// The error an injected storage failure reports.
#[cfg_attr(not(feature = "failpoints"), allow(dead_code, reason = "used only by failpoints"))]
fn injected(errno: i32) -> std::io::Error {
    std::io::Error::from_raw_os_error(errno)
}

impl std::fmt::Debug for FsStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsStorage").field("dir", &self.dir).finish()
    }
}

/// The operating system's error on `path`, kept as the source.
fn serr(path: &Path, e: std::io::Error) -> StorageError {
    StorageError::io(path.display().to_string(), e)
}

/// Size of the user-space write buffer per open file.
pub const WRITE_BUFFER_BYTES: usize = 1 << 20;

impl FsStorage {
    pub fn new(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            open: HashMap::new(),
            dir_dirty: false,
            syncs: SyncQueue::default(),
        })
    }

    /// File storage whose syncs can be deferred through `syncs` (see [`SyncQueue`]).
    pub fn with_sync_queue(dir: &Path, syncs: SyncQueue) -> std::io::Result<Self> {
        let mut s = Self::new(dir)?;
        s.syncs = syncs;
        Ok(s)
    }

    fn path(&self, name: &str) -> Result<PathBuf, StorageError> {
        if name.is_empty() || name.contains('/') || name.contains("..") {
            return Err(StorageError::InvalidName(name.to_string()));
        }
        Ok(self.dir.join(name))
    }

    fn writer(&mut self, name: &str) -> Result<&mut std::io::BufWriter<File>, StorageError> {
        if !self.open.contains_key(name) {
            let path = self.path(name)?;
            self.dir_dirty |= !path.exists();
            let mut f = OpenOptions::new()
                .create(true)
                .read(true)
                .write(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| serr(&path, e))?;
            f.seek(SeekFrom::End(0)).map_err(|e| serr(&path, e))?;
            self.open.insert(
                name.to_string(),
                std::io::BufWriter::with_capacity(WRITE_BUFFER_BYTES, f),
            );
        }
        // invariant: inserted above when it was missing.
        Ok(self.open.get_mut(name).expect("inserted above"))
    }

    /// Flushes the buffer of `name` (if open) so that reads see every append.
    fn flush_buffer(&mut self, name: &str) -> Result<(), StorageError> {
        if let Some(w) = self.open.get_mut(name) {
            w.flush().map_err(|e| self.io_err(name, e))?;
        }
        Ok(())
    }

    fn sync_dir(&self) -> Result<(), StorageError> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| serr(&self.dir, e))
    }

    /// The operating system's error on file `name` of this directory (a missing file is
    /// [`StorageError::NotFound`]).
    fn io_err(&self, name: &str, e: std::io::Error) -> StorageError {
        match e.kind() {
            std::io::ErrorKind::NotFound => StorageError::NotFound(name.to_string()),
            _ => serr(&self.dir.join(name), e),
        }
    }
}

impl FsStorage {
    /// Length of `name` as readers see it (on disk plus buffered appends).
    fn len_of(&self, name: &str) -> Result<u64, StorageError> {
        let on_disk = std::fs::metadata(self.path(name)?)
            .map_err(|e| self.io_err(name, e))?
            .len();
        Ok(on_disk + self.open.get(name).map_or(0, |w| w.buffer().len() as u64))
    }
}

impl LedgerStorage for FsStorage {
    fn list(&self) -> Result<Vec<String>, StorageError> {
        let mut names = vec![];
        let dir_err = |e| serr(&self.dir, e);
        for e in std::fs::read_dir(&self.dir).map_err(dir_err)? {
            let e = e.map_err(dir_err)?;
            if e.file_type().map_err(dir_err)?.is_file() {
                if let Some(n) = e.file_name().to_str() {
                    names.push(n.to_string());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, StorageError> {
        // A file being appended to is read as on disk plus what is still buffered.
        let mut bytes = std::fs::read(self.path(name)?).map_err(|e| self.io_err(name, e))?;
        if let Some(w) = self.open.get(name) {
            bytes.extend_from_slice(w.buffer());
        }
        Ok(bytes)
    }

    fn append(&mut self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
        fail::fail_point!("ledger::append", |_| Err(self.io_err(name, injected(NO_SPACE))));
        self.writer(name)?.write_all(bytes).map_err(|e| self.io_err(name, e))
    }

    fn write_at(&mut self, name: &str, offset: u64, bytes: &[u8]) -> Result<(), StorageError> {
        let len = self.len_of(name)?;
        if offset > len {
            return Err(StorageError::OutOfRange(name.to_string()));
        }
        self.flush_buffer(name)?;
        let f = OpenOptions::new()
            .write(true)
            .open(self.path(name)?)
            .map_err(|e| self.io_err(name, e))?;
        f.write_all_at(bytes, offset).map_err(|e| self.io_err(name, e))
    }

    fn truncate(&mut self, name: &str, len: u64) -> Result<(), StorageError> {
        if len > self.len_of(name)? {
            return Err(StorageError::OutOfRange(name.to_string()));
        }
        self.flush_buffer(name)?;
        // Drop the writer: its file position would be past the new end.
        self.open.remove(name);
        let f = OpenOptions::new()
            .write(true)
            .open(self.path(name)?)
            .map_err(|e| self.io_err(name, e))?;
        f.set_len(len).map_err(|e| self.io_err(name, e))?;
        f.sync_data().map_err(|e| self.io_err(name, e))
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), StorageError> {
        let (src, dst) = (self.path(from)?, self.path(to)?);
        if !src.exists() {
            return Err(StorageError::NotFound(from.to_string()));
        }
        self.flush_buffer(from)?;
        let deferring = self.syncs.state().deferring;
        if let Some(w) = self.open.remove(from) {
            let file = w.into_inner().map_err(|e| self.io_err(from, e.into_error()))?;
            if deferring {
                self.syncs.state().files.push(file);
            } else {
                file.sync_data().map_err(|e| self.io_err(from, e))?;
            }
        }
        self.open.remove(to);
        fail::fail_point!("ledger::rename");
        std::fs::rename(src, dst).map_err(|e| self.io_err(from, e))?;
        if deferring {
            // Made durable with the other deferred syncs, before anything that depends on it is reported.
            self.syncs.state().dir = Some(self.dir.clone());
            return Ok(());
        }
        self.sync_dir()
    }

    fn remove(&mut self, name: &str) -> Result<(), StorageError> {
        self.open.remove(name);
        std::fs::remove_file(self.path(name)?).map_err(|e| self.io_err(name, e))?;
        self.sync_dir()
    }

    fn sync(&mut self, name: &str) -> Result<(), StorageError> {
        fail::fail_point!("ledger::fsync", |_| Err(self.io_err(name, injected(IO_ERROR))));
        if let Some(w) = self.open.get_mut(name) {
            w.flush().map_err(|e| self.io_err(name, e))?;
        }
        let dir_dirty = std::mem::take(&mut self.dir_dirty);
        let mut q = self.syncs.state();
        if q.deferring {
            // A second handle to the same file: its fsync later covers what was just written.
            let file = match self.open.get(name) {
                Some(w) => w.get_ref().try_clone(),
                None => File::open(self.path(name)?),
            };
            q.files.push(file.map_err(|e| self.io_err(name, e))?);
            if dir_dirty {
                q.dir = Some(self.dir.clone());
            }
            return Ok(());
        }
        drop(q);
        let synced = match self.open.get(name) {
            Some(w) => w.get_ref().sync_data(),
            None => File::open(self.path(name)?).and_then(|f| f.sync_data()),
        };
        synced.map_err(|e| self.io_err(name, e))?;
        if dir_dirty {
            self.sync_dir()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_storage_passes_the_ledger_storage_conformance_suite() {
        let root = tempfile::tempdir().unwrap();
        let counter = std::sync::atomic::AtomicUsize::new(0);
        consort_ledger::storage_conformance(|| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::new(FsStorage::new(&root.path().join(n.to_string())).unwrap())
        });
    }

    #[test]
    fn rejects_path_traversal() {
        let root = tempfile::tempdir().unwrap();
        let mut s = FsStorage::new(root.path()).unwrap();
        assert!(s.append("../escape", b"x").is_err());
        assert!(s.append("a/b", b"x").is_err());
    }
}
