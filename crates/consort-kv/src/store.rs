//! The in-memory store: the locks around the committed state ([`crate::state`]), the commit path (OCC
//! validation and apply), replication apply, rollback, and the state digest.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use consort_crypto::Sha256Hasher;

use crate::state::{State, UndoPolicy};
use crate::tx::{CommitOutcome, ExecuteError, ReadTx, Tx};
use crate::{KvError, Version, WriteBatch, WriteSet};

/// Whether a version applied with [`Store::apply_batch`] is already committed (covered by a committed
/// signature), so it can never be rolled back and needs no undo record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commitment {
    /// Committed: everything up to the applied version becomes committed.
    Committed,
    /// Not yet committed: the version can be rolled back until [`Store::set_committed`] passes it.
    Uncommitted,
}

impl From<bool> for Commitment {
    fn from(committed: bool) -> Self {
        if committed {
            Commitment::Committed
        } else {
            Commitment::Uncommitted
        }
    }
}

/// Thread-safe in-memory store of all maps.
///
/// Locking: readers take the state read lock for the duration of one `get`/`has`/`foreach`. Every mutation
/// (commit, apply, rollback, set_committed) first takes the commit lock, which serialises them, then the state
/// write lock only for the moment it changes the maps. [`Store::commit`] keeps holding the commit lock (but not
/// the state lock) while it runs the caller's callback, so callbacks run in version order while readers proceed.
///
/// Undo information is kept for every version above the committed one: call [`Store::set_committed`] as
/// consensus commits, or memory grows with every transaction.
#[derive(Default)]
pub struct Store {
    commit_lock: Mutex<()>,
    state: RwLock<State>,
    /// Mirror of `state.version` so that `current_version` and `begin` take no lock.
    version: AtomicU64,
    /// Number of rollbacks that undid at least one version. Rollback makes versions reusable, so a read validated
    /// by version alone could match a different value written at the reused version; a transaction begun before a
    /// rollback therefore conflicts. Changed only under the state write lock.
    rollbacks: AtomicU64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The maps may be large; show where the store is, not what it holds.
        f.debug_struct("Store")
            .field("version", &self.current_version())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// An empty store at version 0.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn from_state(state: State) -> Self {
        let version = AtomicU64::new(state.version);
        Store {
            commit_lock: Mutex::new(()),
            state: RwLock::new(state),
            version,
            rollbacks: AtomicU64::new(0),
        }
    }

    pub(crate) fn read_state(&self) -> RwLockReadGuard<'_, State> {
        // A panic elsewhere never leaves the state half-changed (mutations do not call out), so poisoning is moot.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_commits(&self) -> MutexGuard<'_, ()> {
        // The commit lock guards no data, so a panic in a commit callback does not make it unsafe to reuse.
        self.commit_lock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Version of the last applied transaction (0 for an empty store).
    pub fn current_version(&self) -> Version {
        self.version.load(Ordering::Acquire)
    }

    /// Highest version that can no longer be rolled back.
    pub fn committed_version(&self) -> Version {
        self.read_state().committed
    }

    /// A read-write transaction. Each read sees the latest committed state at the time of the read (and the
    /// transaction's own writes); [`Store::commit`] then checks that none of those reads has gone stale, so
    /// committed transactions are serialisable. A transaction that ends up conflicting may have seen a mix of
    /// versions, so bodies must not rely on cross-key invariants for anything but their writes.
    pub fn begin(&self) -> Tx<'_> {
        // Read before any read of the state, so a rollback in between makes the transaction conflict.
        let rollbacks = self.rollback_count();
        Tx::new(self, self.current_version(), rollbacks)
    }

    /// A read-only view: each call reads the latest committed state, records nothing and never conflicts.
    /// (A [`Tx`] with no writes also works read-only: committing it yields [`CommitOutcome::ReadOnly`].)
    pub fn read_only(&self) -> ReadTx<'_> {
        ReadTx::new(self)
    }

    /// Commits `tx`: validates its read set (every key read, including keys read as absent, and every map
    /// iterated must still have the version it had), assigns version = current + 1, applies the writes, and
    /// calls `f(version, &write_set)` while still holding the commit lock, so `f` runs in version order (append
    /// to the ledger there). The new state is visible to readers when `f` runs. `f` must not commit to, apply to,
    /// roll back or `set_committed` this store (that would deadlock).
    ///
    /// Returns `Err(KvError::Conflict)` if a read went stale, or if [`Store::rollback`] undid any version since
    /// the transaction began (undone versions are reused, so versions alone no longer identify values); nothing
    /// is applied then. A transaction without writes gets no version and calls nothing, but its reads are
    /// validated all the same: `Ok(CommitOutcome::ReadOnly)` means they all still hold, so they are those of one
    /// state (else `Err(KvError::Conflict)`, and [`Store::execute`] re-runs the body).
    ///
    /// Panics if `tx` was begun on another store (programmer error).
    pub fn commit<R>(&self, tx: Tx<'_>, f: impl FnOnce(Version, &WriteSet) -> R) -> Result<CommitOutcome<R>, KvError> {
        assert!(
            std::ptr::eq(tx.store(), self),
            "transaction committed to a store it was not begun on"
        );
        let (rollbacks, reads, writes) = tx.into_parts();
        if writes.is_empty() {
            // Nothing to apply, but what the transaction read (and maybe returns to a client) must still be one
            // consistent state. Rollbacks change the counter under the state write lock, so holding the read
            // lock makes both checks one atomic observation.
            let state = self.read_state();
            if self.rollbacks.load(Ordering::Acquire) != rollbacks || !state.validate(&reads) {
                return Err(KvError::Conflict);
            }
            return Ok(CommitOutcome::ReadOnly);
        }
        let _commits = self.lock_commits();
        // Versions undone by a rollback since the transaction began may have been reused for other values.
        if self.rollbacks.load(Ordering::Acquire) != rollbacks {
            return Err(KvError::Conflict);
        }
        // Only commit-lock holders mutate, so validating under the read lock is race-free and lets readers run.
        if !self.read_state().validate(&reads) {
            return Err(KvError::Conflict);
        }
        let version = {
            let mut state = self.write_state();
            let version = state.version + 1;
            state.apply_writes(version, &writes);
            self.version.store(version, Ordering::Release);
            version
        };
        let result = f(version, &writes);
        Ok(CommitOutcome::Committed { version, result })
    }

    /// Runs `body` in a fresh transaction and commits it, re-running on conflict up to `max_attempts` times
    /// (use [`crate::DEFAULT_MAX_OCC_ATTEMPTS`]). `on_commit` is [`Store::commit`]'s callback; it runs at most
    /// once. If `body` fails, its transaction is dropped (nothing is written) and the error returned as
    /// [`ExecuteError::Body`]. After `max_attempts` conflicts: `ExecuteError::Kv(ConflictRetriesExhausted)`.
    ///
    /// Panics if `max_attempts` is 0.
    pub fn execute<T, E, R>(
        &self,
        max_attempts: usize,
        mut body: impl FnMut(&mut Tx<'_>) -> Result<T, E>,
        on_commit: impl FnOnce(Version, &WriteSet) -> R,
    ) -> Result<(T, CommitOutcome<R>), ExecuteError<E>> {
        assert!(max_attempts > 0, "execute needs at least one attempt");
        let mut on_commit = Some(on_commit);
        for _ in 0..max_attempts {
            let mut tx = self.begin();
            let out = body(&mut tx).map_err(ExecuteError::Body)?;
            let committed = self.commit(tx, |v, ws| on_commit.take().map(|cb| cb(v, ws)));
            match committed {
                Ok(CommitOutcome::ReadOnly) => return Ok((out, CommitOutcome::ReadOnly)),
                Ok(CommitOutcome::Committed {
                    version,
                    result: Some(result),
                }) => return Ok((out, CommitOutcome::Committed { version, result })),
                Ok(CommitOutcome::Committed { result: None, .. }) => {
                    unreachable!("on_commit runs only on the single successful commit")
                }
                Err(KvError::Conflict) => continue,
                Err(e) => return Err(ExecuteError::Kv(e)),
            }
        }
        Err(ExecuteError::Kv(KvError::ConflictRetriesExhausted {
            attempts: max_attempts,
        }))
    }

    /// Applies a write set produced elsewhere (a backup replicating, or ledger replay) as exactly `version`,
    /// which must be current + 1. No read validation: the primary already did it.
    pub fn apply(&self, version: Version, ws: &WriteSet) -> Result<(), KvError> {
        let _commits = self.lock_commits();
        let mut state = self.write_state();
        let expected = state.version + 1;
        if version != expected {
            return Err(KvError::VersionMismatch { expected, got: version });
        }
        state.apply_writes(version, ws);
        self.version.store(version, Ordering::Release);
        Ok(())
    }

    /// Applies a write set that is already committed (ledger replay of entries a committed signature covers) as
    /// exactly `version`, which must be current + 1, and marks everything up to it committed. Keeps no undo
    /// record, so it is cheaper than [`Store::apply`] followed by [`Store::set_committed`], with the same result.
    pub fn apply_committed(&self, version: Version, ws: WriteSet) -> Result<(), KvError> {
        self.apply_batch(version, WriteBatch::from(ws), Commitment::Committed)
    }

    /// Applies a write batch (a replicated or replayed entry) as exactly `version`, which must be current + 1;
    /// if it is [`Commitment::Committed`] it also marks everything up to `version` committed, keeping no undo
    /// record (as [`Store::apply_committed`]). `commitment` also takes a `bool` (`true`: committed), the form
    /// callers used before the enum.
    pub fn apply_batch(
        &self,
        version: Version,
        batch: WriteBatch,
        commitment: impl Into<Commitment>,
    ) -> Result<(), KvError> {
        let committed = commitment.into() == Commitment::Committed;
        let _commits = self.lock_commits();
        let mut state = self.write_state();
        let expected = state.version + 1;
        if version != expected {
            return Err(KvError::VersionMismatch { expected, got: version });
        }
        if committed {
            // Earlier versions become committed too: drop their undo records first, so that the remaining records
            // still describe exactly the versions above the committed one.
            let previous = state.version;
            state.committed = previous;
            state.drop_undo_through(previous);
        }
        // A snapshot job needs the undo records of the versions after the one it captures, committed or not.
        let undo_policy = if !committed || state.lowest_pin().is_some() {
            UndoPolicy::Record
        } else {
            UndoPolicy::Skip
        };
        state.apply_maps(version, batch.maps.into_iter(), undo_policy);
        if committed {
            state.committed = version;
        }
        self.version.store(version, Ordering::Release);
        Ok(())
    }

    /// [`Store::apply`] taking the write set by value: its keys and values move into the store.
    pub fn apply_owned(&self, version: Version, ws: WriteSet) -> Result<(), KvError> {
        self.apply_batch(version, WriteBatch::from(ws), Commitment::Uncommitted)
    }

    /// Marks everything up to `v` (capped at the current version) as committed: it can no longer be rolled back,
    /// and its undo information is dropped. Never moves backwards.
    pub fn set_committed(&self, v: Version) {
        let _commits = self.lock_commits();
        let mut state = self.write_state();
        let committed = v.min(state.version).max(state.committed);
        state.committed = committed;
        state.drop_undo_through(committed);
    }

    /// Undoes every version above `to`, which must be between the committed and the current version.
    pub fn rollback(&self, to: Version) -> Result<(), KvError> {
        let _commits = self.lock_commits();
        let mut state = self.write_state();
        if to < state.committed {
            return Err(KvError::RollbackBelowCommitted {
                to,
                committed: state.committed,
            });
        }
        if to > state.version {
            return Err(KvError::RollbackBeyondCurrent {
                to,
                current: state.version,
            });
        }
        if state.version > to {
            self.rollbacks.fetch_add(1, Ordering::AcqRel);
            for pin in state.pins.iter_mut().filter(|p| p.1 > to) {
                pin.2 = false;
            }
        }
        while state.version > to {
            state.undo_last();
        }
        self.version.store(state.version, Ordering::Release);
        Ok(())
    }

    /// Pins version `at` (committed..=current) for a snapshot: its undo records are kept until [`Store::unpin`].
    pub(crate) fn pin(&self, at: Version) -> Result<u64, KvError> {
        let mut state = self.write_state();
        if at < state.committed || at > state.version {
            return Err(KvError::VersionUnavailable {
                requested: at,
                committed: state.committed,
                current: state.version,
            });
        }
        let id = state.next_pin;
        state.next_pin += 1;
        state.pins.push((id, at, true));
        Ok(id)
    }

    /// Releases a pin, dropping the undo records only it was keeping.
    pub(crate) fn unpin(&self, id: u64) {
        let _commits = self.lock_commits();
        let mut state = self.write_state();
        state.pins.retain(|p| p.0 != id);
        let committed = state.committed;
        state.drop_undo_through(committed);
    }

    /// Number of rollbacks that undid at least one version.
    pub(crate) fn rollback_count(&self) -> u64 {
        self.rollbacks.load(Ordering::Acquire)
    }

    /// Adds what `older` holds in the maps `take` selects, where this store has no entry for the key: `older` is
    /// a store replayed separately over versions this store already committed (disaster recovery replays the
    /// private maps of the ledger's old part once the ledger secrets are restored, while the store kept the
    /// public ones and went on). Keys this store has (written or removed since) keep their newer state. `older`
    /// must lie entirely at or below this store's committed version (else [`KvError::VersionUnavailable`]), so no
    /// rollback can reach what is added. Returns the number of keys added.
    pub fn merge_older(&self, older: Store, take: impl Fn(&str) -> bool) -> Result<usize, KvError> {
        let older = older.state.into_inner().unwrap_or_else(PoisonError::into_inner);
        let _commits = self.lock_commits();
        let mut state = self.write_state();
        if older.version > state.committed {
            return Err(KvError::VersionUnavailable {
                requested: older.version,
                committed: state.committed,
                current: state.version,
            });
        }
        let mut added = 0;
        for (name, map) in older.maps.into_iter().filter(|(n, _)| take(n)) {
            added += state.merge_older_map(name, map);
        }
        Ok(added)
    }

    /// Names of the maps that hold at least one key, in order.
    pub fn map_names(&self) -> Vec<String> {
        self.read_state()
            .maps
            .iter()
            .filter(|(_, m)| m.live > 0)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Deterministic SHA-256 over the visible state: the version, and for each non-empty map its name, its
    /// version and every key with its version and value. Two stores with equal digests answer every read alike.
    pub fn digest(&self) -> [u8; 32] {
        let state = self.read_state();
        let mut h = Sha256Hasher::new();
        let sized = |h: &mut Sha256Hasher, b: &[u8]| {
            h.update(&(b.len() as u64).to_le_bytes());
            h.update(b);
        };
        h.update(b"consort-kv state digest v1");
        h.update(&state.version.to_le_bytes());
        for (name, map) in state.maps.iter().filter(|(_, m)| m.live > 0) {
            sized(&mut h, name.as_bytes());
            h.update(&map.version.to_le_bytes());
            h.update(&(map.live as u64).to_le_bytes());
            for (k, e) in &map.entries {
                if let Some(v) = &e.value {
                    sized(&mut h, k.as_slice());
                    h.update(&e.version.to_le_bytes());
                    sized(&mut h, v);
                }
            }
        }
        h.finish()
    }
}

#[cfg(test)]
mod tests;
