//! Making the engine's state durable: ledger fsyncs (deferred out of the engine lock), the installed snapshot and
//! the Raft hard state, written atomically; the persister thread's loop.
//!
//! One persist round writes, in this order: the ledger (flush, fsync), the snapshot file [`SNAPSHOT_FILE`] (if
//! the replica installed one), the hard state [`HARD_STATE_FILE`], and only then reports the round durable to the
//! replica. Each file is replaced atomically (temporary file, fsync, rename, fsync of the directory), so a crash
//! leaves either the old or the new file. The order keeps every crash point restartable:
//!
//! - the ledger first, so a hard state's commit index never points past the entries on disk;
//! - the snapshot before the hard state, since the hard state that comes with an install has the snapshot's seqno
//!   as its commit index, past the old ledger's end;
//! - the old ledger chunks a snapshot replaces are removed by the replica only when it is told the round is
//!   durable (after both files). A crash before that leaves the new snapshot over the old chunks, which
//!   `Replica::open` recognises and removes; a crash before the snapshot file is renamed leaves the old snapshot
//!   and the old ledger untouched.

use super::{fatal, Engine, EngineError, EngineGuard};
use crate::config::NodeConfig;
use consort_consensus::eraftpb::HardState;
use consort_consensus::{encode_hard_state, Event};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The persister also looks for work this often without being woken (and notices that the node is stopping).
const PERSIST_POLL: Duration = Duration::from_millis(10);
/// File in the node directory holding the last durable Raft hard state (term, vote, commit).
pub const HARD_STATE_FILE: &str = "raft_hard_state";
/// File in the node directory holding the last installed (or joined-from) snapshot, an encoded Raft snapshot.
pub const SNAPSHOT_FILE: &str = "raft_snapshot";
/// A hard state whose term and vote did not change is written at most this often: Raft's safety needs the term
/// and vote on disk before dependent messages, not the commit index (a restarted node learns it again from the
/// primary), so under load most persists skip the two fsyncs of the hard-state file, and a restarted node's
/// commit point lags what it last reported by at most this long.
pub const HARD_STATE_COMMIT_INTERVAL: Duration = Duration::from_millis(50);

/// Persist work handed out by the replica and not done yet (later hard states and snapshots replace earlier ones).
#[derive(Debug, Default)]
pub(super) struct PendingPersist {
    pub(super) number: u64,
    pub(super) hard_state: Option<HardState>,
    pub(super) snapshot: Option<Vec<u8>>,
}

/// Writes `bytes` to `path` atomically and durably: a temporary file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    fail::fail_point!("atomic::write", |_| Err(std::io::Error::from_raw_os_error(28)));
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fail::fail_point!("atomic::rename");
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The files one persist round writes after the ledger, in the order they must be written: the installed snapshot
/// before the hard state, whose commit index may be the snapshot's (module documentation). Each with what it is,
/// for the fatal message.
fn persist_files(
    cfg: &NodeConfig,
    snapshot: Option<&[u8]>,
    hard_state: Option<&HardState>,
) -> Vec<(&'static str, PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    if let Some(s) = snapshot {
        files.push(("snapshot write", Engine::snapshot_path(cfg), s.to_vec()));
    }
    if let Some(hs) = hard_state {
        files.push(("hard state write", Engine::hard_state_path(cfg), encode_hard_state(hs)));
    }
    files
}

pub(super) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, EngineError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(EngineError::io(path, e)),
    }
}

impl Engine {
    pub(super) fn hard_state_path(cfg: &NodeConfig) -> PathBuf {
        cfg.storage.secrets_dir.join(HARD_STATE_FILE)
    }

    pub(super) fn snapshot_path(cfg: &NodeConfig) -> PathBuf {
        cfg.storage.secrets_dir.join(SNAPSHOT_FILE)
    }

    /// Does the queued persist work: ledger fsync, snapshot, hard state, in that order, then tells the replica.
    /// Only the flush of buffered ledger bytes runs under the engine lock; the fsyncs and file writes run outside
    /// it, so transactions keep executing (and are batched into the next persist) while the disk works. Takes and
    /// gives back the engine guard.
    pub(super) fn persist_pending<'a>(&'a self, mut e: EngineGuard<'a>) -> EngineGuard<'a> {
        // One persister at a time, in order; another caller leaves the work to it (never blocks on it while holding
        // the engine lock, which the persister needs back).
        let Ok(_serial) = self.persisting.try_lock() else {
            return e;
        };
        // One round: the work queued so far (later persists replace earlier hard states and snapshots, so this covers
        // everything up to the newest number) or, with nothing queued, the ledger's own work left over (a closed
        // chunk to sync or rename).
        let mut p = e.pending.take();
        if p.is_none() && !e.replica.ledger_needs_flush() {
            return e;
        }
        let flushed = self.syncs.deferring(|| e.replica.sync_ledger());
        if let Err(err) = flushed {
            fatal("ledger sync", err);
        }
        fail::fail_point!("persist::flushed");
        let hard_state = p.as_mut().and_then(|p| p.hard_state.take()).filter(|hs| {
            e.durable_hard_state.as_ref().is_none_or(|(d, at)| {
                d.term != hs.term
                    || d.vote != hs.vote
                    || (hs.commit > d.commit && at.elapsed() >= HARD_STATE_COMMIT_INTERVAL)
            })
        });
        if let Some(hs) = &hard_state {
            e.durable_hard_state = Some((hs.clone(), Instant::now()));
        }
        drop(e);
        if let Err(err) = self.syncs.sync() {
            fatal("ledger sync", err);
        }
        fail::fail_point!("persist::synced");
        let snapshot = p.as_ref().and_then(|p| p.snapshot.as_deref());
        let files = persist_files(&self.cfg, snapshot, hard_state.as_ref());
        for (what, path, bytes) in files {
            if let Err(err) = write_atomic(&path, &bytes) {
                fatal(what, err);
            }
        }
        fail::fail_point!("persist::written");
        e = self.lock();
        if let Some(p) = p {
            let actions = e.replica.step(Event::Persisted { number: p.number });
            self.handle(&mut e, actions);
        }
        e
    }

    /// The persister loop: performs persist work as soon as it is queued, until `stopping` is set and nothing is
    /// left to persist. Runs on its own thread (it fsyncs).
    pub fn persist_loop(&self, stopping: &AtomicBool) {
        while !stopping.load(Ordering::Acquire) {
            {
                let (flag, cv) = &self.wake;
                let guard = flag.lock().unwrap_or_else(|e| e.into_inner());
                let (mut guard, _) = cv
                    .wait_timeout_while(guard, PERSIST_POLL, |woken| !*woken)
                    .unwrap_or_else(|e| e.into_inner());
                *guard = false;
            }
            // Also when idle, so that a closed chunk is synced and renamed without waiting for more writes.
            drop(self.persist_pending(self.lock()));
        }
        loop {
            let e = self.lock();
            if e.pending.is_none() {
                break;
            }
            drop(self.persist_pending(e));
        }
        if let Err(err) = self.lock().replica.settle_ledger() {
            tracing::warn!(%err, "could not settle the ledger on stop");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(HARD_STATE_FILE);
        write_atomic(&path, b"first version, longer").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert!(!path.with_extension("tmp").exists());
    }

    /// An install's hard state commits the snapshot's seqno, past the old ledger: were it durable without the
    /// snapshot, the node could not restart (consort-consensus tests/install_crash.rs reopens at each step).
    #[test]
    fn a_persist_writes_the_snapshot_before_the_hard_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "[network]\nrpc_address = \"127.0.0.1:9000\"\n").unwrap();
        let cfg = NodeConfig::load(&path).unwrap();
        let hs = HardState {
            term: 3,
            vote: 1,
            commit: 40,
            ..Default::default()
        };
        let files = persist_files(&cfg, Some(b"snapshot"), Some(&hs));
        let names: Vec<_> = files
            .iter()
            .map(|(_, p, _)| p.file_name().unwrap().to_str().unwrap().to_string())
            .collect();
        assert_eq!(names, [SNAPSHOT_FILE, HARD_STATE_FILE]);
        assert_eq!(files[0].2, b"snapshot");
        assert_eq!(files[1].2, encode_hard_state(&hs));
        assert_eq!(persist_files(&cfg, None, Some(&hs)).len(), 1);
        assert!(persist_files(&cfg, None, None).is_empty());
    }
}
