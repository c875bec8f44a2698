//! The in-memory store: committed state with per-key versions, the commit path (OCC validation and apply),
//! replication apply, undo for rollback, and the state digest.

use std::collections::{BTreeMap, VecDeque};
use std::iter::Peekable;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use consort_crypto::Sha256Hasher;

use crate::key::StoredKey;
use crate::tx::{CommitOutcome, ExecuteError, ReadSet, ReadTx, Tx};
use crate::{Key, KvError, Value, Version, WriteBatch, WriteSet};

/// One key's committed state. `value == None` is a tombstone: the key was removed at `version`, which is kept
/// so that a transaction that read the key as absent before the removal's predecessor write still conflicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) version: Version,
    pub(crate) value: Option<Value>,
}

fn is_live(entry: Option<&Entry>) -> bool {
    entry.is_some_and(|e| e.value.is_some())
}

/// One map's committed state.
#[derive(Debug, Default)]
pub(crate) struct MapState {
    /// Version of the last transaction that wrote this map; a map-level read (iteration) validates against it.
    pub(crate) version: Version,
    pub(crate) entries: BTreeMap<StoredKey, Entry>,
    /// Number of entries that are not tombstones.
    pub(crate) live: usize,
}

impl MapState {
    /// Sets `key` to `entry` (or deletes it for `None`), keeping `live` right; returns the previous entry.
    fn replace(&mut self, key: Key, entry: Option<Entry>) -> Option<Entry> {
        let now_live = is_live(entry.as_ref());
        let old = match entry {
            Some(e) => self.entries.insert(StoredKey::from(key), e),
            None => self.entries.remove(key.as_slice()),
        };
        match (is_live(old.as_ref()), now_live) {
            (true, false) => self.live -= 1,
            (false, true) => self.live += 1,
            _ => {}
        }
        old
    }
}

/// What one version changed in one map, enough to undo it.
#[derive(Debug)]
pub(crate) struct MapUndo {
    pub(crate) name: String,
    pub(crate) prev_version: Version,
    /// Each key the version wrote, with its entry before (None: the key had no entry).
    pub(crate) prev_entries: Vec<(Key, Option<Entry>)>,
    /// Whether any of those writes was a removal (only then can committing the version leave a tombstone to drop).
    pub(crate) removes: bool,
}

#[derive(Debug)]
pub(crate) struct Undo {
    pub(crate) version: Version,
    pub(crate) maps: Vec<MapUndo>,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) version: Version,
    /// Versions at or below this can no longer be rolled back.
    pub(crate) committed: Version,
    pub(crate) maps: BTreeMap<String, MapState>,
    /// One record per version in `min(committed, pinned)+1 ..= version`, oldest first, where `pinned` is the
    /// lowest version a [`crate::SnapshotJob`] is capturing.
    pub(crate) undo: VecDeque<Undo>,
    /// Versions being captured by snapshot jobs: (pin id, version, still valid). A rollback below a pinned
    /// version invalidates the pin.
    pub(crate) pins: Vec<(u64, Version, bool)>,
    pub(crate) next_pin: u64,
}

impl State {
    #[cfg(test)]
    pub(crate) fn key_version(&self, map: &str, key: &[u8]) -> Version {
        self.maps
            .get(map)
            .and_then(|m| m.entries.get(key))
            .map_or(0, |e| e.version)
    }

    #[cfg(test)]
    pub(crate) fn map_version(&self, map: &str) -> Version {
        self.maps.get(map).map_or(0, |m| m.version)
    }

    /// True if every read in `reads` still sees the version it saw.
    fn validate(&self, reads: &ReadSet) -> bool {
        reads.maps.iter().all(|(name, r)| {
            let map = self.maps.get(name.as_str());
            if let Some(v) = r.map_version {
                if map.map_or(0, |m| m.version) != v {
                    return false;
                }
            }
            r.keys
                .iter()
                .all(|(k, v)| map.and_then(|m| m.entries.get(k.as_slice())).map_or(0, |e| e.version) == *v)
        })
    }

    /// Applies `ws` as version `version` (which must be the next one) and records how to undo it.
    fn apply_writes(&mut self, version: Version, ws: &WriteSet) {
        self.apply_owned(version, ws.clone(), true);
    }

    /// Applies `ws` as version `version` (which must be the next one), moving its keys and values into the maps.
    /// With `keep_undo` it records how to undo it; without, the caller commits `version` at once (a removal then
    /// leaves no tombstone, as [`Self::drop_undo_through`] would have dropped it).
    fn apply_owned(&mut self, version: Version, ws: WriteSet, keep_undo: bool) {
        self.apply_maps(version, ws.maps.into_iter().map(|(n, m)| (n, m.writes)), keep_undo);
    }

    /// [`Self::apply_owned`] over any sequence of (map name, writes) with each map and each key at most once.
    fn apply_maps<W: IntoIterator<Item = (Key, Option<Value>)>>(
        &mut self,
        version: Version,
        maps: impl Iterator<Item = (String, W)>,
        keep_undo: bool,
    ) {
        debug_assert_eq!(version, self.version + 1);
        let mut undo = Undo {
            version,
            maps: Vec::new(),
        };
        for (name, writes) in maps {
            let mut writes = writes.into_iter().peekable();
            if writes.peek().is_none() {
                continue;
            }
            let map = match self.maps.get_mut(name.as_str()) {
                Some(m) => m,
                None => self.maps.entry(name.clone()).or_default(),
            };
            if !keep_undo {
                for (k, value) in writes {
                    let entry = value.map(|value| Entry {
                        version,
                        value: Some(value),
                    });
                    map.replace(k, entry);
                }
                map.version = version;
                continue;
            }
            let mut prev_entries = Vec::with_capacity(writes.size_hint().0);
            let mut removes = false;
            for (k, value) in writes {
                removes |= value.is_none();
                let old = map.replace(k.clone(), Some(Entry { version, value }));
                prev_entries.push((k, old));
            }
            undo.maps.push(MapUndo {
                name,
                prev_version: map.version,
                prev_entries,
                removes,
            });
            map.version = version;
        }
        if keep_undo {
            self.undo.push_back(undo);
        }
        self.version = version;
    }

    /// Undoes the newest version.
    fn undo_last(&mut self) {
        let Some(undo) = self.undo.pop_back() else { return };
        debug_assert_eq!(undo.version, self.version);
        for mu in undo.maps.into_iter().rev() {
            let Some(map) = self.maps.get_mut(mu.name.as_str()) else {
                debug_assert!(false, "undo record for a missing map");
                continue;
            };
            for (k, old) in mu.prev_entries.into_iter().rev() {
                // A tombstone at or below the committed version can never be rolled back to a value again:
                // set_committed has already dropped its undo record, so drop it here as that would have.
                let old = old.filter(|e| e.value.is_some() || e.version > self.committed);
                map.replace(k, old);
            }
            map.version = mu.prev_version;
            if map.version == 0 && map.entries.is_empty() {
                self.maps.remove(mu.name.as_str());
            }
        }
        self.version = undo.version - 1;
    }

    /// Whether pin `id` exists and no rollback went below its version.
    pub(crate) fn pin_valid(&self, id: u64) -> bool {
        self.pins.iter().any(|&(p, _, valid)| p == id && valid)
    }

    /// Lowest version a valid pin captures: undo records after it are kept even once committed.
    fn lowest_pin(&self) -> Option<Version> {
        self.pins.iter().filter(|p| p.2).map(|p| p.1).min()
    }

    /// Drops undo records at or below `committed` (and at or below every valid pin), and with them the tombstones
    /// those versions left that nothing has overwritten since (no rollback can bring the removed value back any
    /// more).
    fn drop_undo_through(&mut self, committed: Version) {
        let committed = self.lowest_pin().map_or(committed, |p| committed.min(p));
        while self.undo.front().is_some_and(|u| u.version <= committed) {
            let Some(undo) = self.undo.pop_front() else { break };
            for mu in undo.maps.into_iter().filter(|mu| mu.removes) {
                let Some(map) = self.maps.get_mut(mu.name.as_str()) else {
                    continue;
                };
                for (k, _) in mu.prev_entries {
                    if map
                        .entries
                        .get(k.as_slice())
                        .is_some_and(|e| e.value.is_none() && e.version == undo.version)
                    {
                        map.entries.remove(k.as_slice());
                    }
                }
            }
        }
    }
}

/// Walks two key-ordered sequences together; `f(key, a, b)` gets each key once with what each side holds.
/// Returns early when `f` returns false.
pub(crate) fn merge_by_key<'k, A, B>(
    a: impl Iterator<Item = (&'k [u8], A)>,
    b: impl Iterator<Item = (&'k [u8], B)>,
    mut f: impl FnMut(&'k [u8], Option<A>, Option<B>) -> bool,
) {
    let (mut a, mut b): (Peekable<_>, Peekable<_>) = (a.peekable(), b.peekable());
    loop {
        let order = match (a.peek(), b.peek()) {
            (None, None) => return,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some((ka, _)), Some((kb, _))) => ka.cmp(kb),
        };
        let go_on = match order {
            std::cmp::Ordering::Less => a.next().is_some_and(|(k, va)| f(k, Some(va), None)),
            std::cmp::Ordering::Greater => b.next().is_some_and(|(k, vb)| f(k, None, Some(vb))),
            std::cmp::Ordering::Equal => match (a.next(), b.next()) {
                (Some((k, va)), Some((_, vb))) => f(k, Some(va), Some(vb)),
                _ => false,
            },
        };
        if !go_on {
            return;
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
        let rollbacks = self.rollbacks.load(Ordering::Acquire);
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
        self.apply_batch(version, WriteBatch::from(ws), true)
    }

    /// Applies a write batch (a replicated or replayed entry) as exactly `version`, which must be current + 1;
    /// with `committed` it also marks everything up to `version` committed, keeping no undo record (as
    /// [`Store::apply_committed`]).
    pub fn apply_batch(&self, version: Version, batch: WriteBatch, committed: bool) -> Result<(), KvError> {
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
        let keep_undo = !committed || state.lowest_pin().is_some();
        state.apply_maps(version, batch.maps.into_iter(), keep_undo);
        if committed {
            state.committed = version;
        }
        self.version.store(version, Ordering::Release);
        Ok(())
    }

    /// [`Store::apply`] taking the write set by value: its keys and values move into the store.
    pub fn apply_owned(&self, version: Version, ws: WriteSet) -> Result<(), KvError> {
        self.apply_batch(version, WriteBatch::from(ws), false)
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
mod tests {
    use super::*;
    use crate::DEFAULT_MAX_OCC_ATTEMPTS;

    fn put(store: &Store, map: &str, k: &[u8], v: &[u8]) -> Version {
        let mut tx = store.begin();
        tx.put(map, k, v);
        store.commit(tx, |_, _| ()).unwrap().version().unwrap()
    }

    #[test]
    fn get_put_remove_has() {
        let store = Store::new();
        let mut tx = store.begin();
        assert_eq!(tx.get("m", b"k"), None);
        assert!(!tx.has("m", b"k"));
        tx.put("m", b"k", b"v1");
        assert_eq!(tx.get("m", b"k"), Some(b"v1".to_vec())); // read-your-writes
        assert!(tx.has("m", b"k"));
        // Not visible to others before commit.
        assert_eq!(store.read_only().get("m", b"k"), None);
        assert_eq!(
            store.commit(tx, |v, ws| (v, ws.len())).unwrap(),
            CommitOutcome::Committed {
                version: 1,
                result: (1, 1)
            }
        );
        assert_eq!(store.read_only().get("m", b"k"), Some(b"v1".to_vec()));

        let mut tx = store.begin();
        tx.remove("m", b"k");
        assert_eq!(tx.get("m", b"k"), None);
        assert!(!tx.has("m", b"k"));
        store.commit(tx, |_, _| ()).unwrap();
        assert_eq!(store.read_only().get("m", b"k"), None);
        assert!(!store.read_only().has("m", b"k"));
        assert_eq!(store.current_version(), 2);
        assert!(store.map_names().is_empty());
    }

    #[test]
    fn foreach_merges_committed_and_own_writes_in_order() {
        let store = Store::new();
        for k in [b"a", b"c", b"e"] {
            put(&store, "m", k, b"old");
        }
        let mut tx = store.begin();
        tx.put("m", b"b", b"new");
        tx.put("m", b"c", b"new");
        tx.remove("m", b"e");
        let mut seen = Vec::new();
        tx.foreach("m", |k, v| {
            seen.push((k.to_vec(), v.to_vec()));
            true
        });
        assert_eq!(
            seen,
            vec![
                (b"a".to_vec(), b"old".to_vec()),
                (b"b".to_vec(), b"new".to_vec()),
                (b"c".to_vec(), b"new".to_vec())
            ]
        );
        let mut first = Vec::new();
        tx.foreach("m", |k, _| {
            first.push(k.to_vec());
            false
        });
        assert_eq!(first, vec![b"a".to_vec()]);
        let mut ro = Vec::new();
        store.read_only().foreach("m", |k, _| {
            ro.push(k.to_vec());
            true
        });
        assert_eq!(ro, vec![b"a".to_vec(), b"c".to_vec(), b"e".to_vec()]);
    }

    #[test]
    fn read_only_tx_gets_no_version() {
        let store = Store::new();
        put(&store, "m", b"k", b"v");
        let mut tx = store.begin();
        assert!(tx.get("m", b"k").is_some());
        assert!(!tx.has_writes());
        let mut called = false;
        assert_eq!(store.commit(tx, |_, _| called = true).unwrap(), CommitOutcome::ReadOnly);
        assert!(!called);
        assert_eq!(store.current_version(), 1);
    }

    #[test]
    fn versions_increase_by_one_and_key_versions_follow() {
        let store = Store::new();
        let versions: Vec<_> = (0..5).map(|i| put(&store, "m", &[i], b"v")).collect();
        assert_eq!(versions, vec![1, 2, 3, 4, 5]);
        let state = store.read_state();
        assert_eq!(state.key_version("m", &[3]), 4);
        assert_eq!(state.map_version("m"), 5);
    }

    #[test]
    fn stale_read_conflicts_and_execute_retries() {
        let store = Store::new();
        let incr = |tx: &mut Tx<'_>| {
            let n = tx.get("c", b"n").map_or(0, |v| v[0]);
            tx.put("c", b"n", &[n + 1]);
        };
        let mut a = store.begin();
        let mut b = store.begin();
        incr(&mut a);
        incr(&mut b);
        assert_eq!(store.commit(a, |v, _| v).unwrap().version(), Some(1));
        assert_eq!(store.commit(b, |v, _| v), Err(KvError::Conflict));
        assert_eq!(store.read_only().get("c", b"n"), Some(vec![1]));

        // The same race, with the loser re-run by execute.
        let mut a = store.begin();
        incr(&mut a);
        let mut attempts = 0;
        let mut interloper = Some(a);
        let (_, outcome) = store
            .execute(
                DEFAULT_MAX_OCC_ATTEMPTS,
                |tx| {
                    attempts += 1;
                    incr(tx);
                    // Let the other transaction commit in between our read and our commit, once.
                    if let Some(a) = interloper.take() {
                        assert_eq!(store.commit(a, |v, _| v).unwrap().version(), Some(2));
                    }
                    Ok::<_, ()>(())
                },
                |v, _| v,
            )
            .unwrap();
        assert_eq!(attempts, 2);
        assert_eq!(outcome, CommitOutcome::Committed { version: 3, result: 3 });
        assert_eq!(store.read_only().get("c", b"n"), Some(vec![3]));
    }

    #[test]
    fn reading_absent_key_conflicts_with_its_creation() {
        let store = Store::new();
        let mut tx = store.begin();
        assert!(!tx.has("m", b"k"));
        tx.put("other", b"x", b"y");
        put(&store, "m", b"k", b"v");
        assert_eq!(store.commit(tx, |_, _| ()), Err(KvError::Conflict));
    }

    #[test]
    fn iteration_conflicts_with_any_write_to_the_map() {
        let store = Store::new();
        put(&store, "m", b"a", b"1");
        let mut tx = store.begin();
        tx.foreach("m", |_, _| true);
        tx.put("out", b"n", b"1");
        put(&store, "m", b"zzz", b"2");
        assert_eq!(store.commit(tx, |_, _| ()), Err(KvError::Conflict));
        // A write to another map does not disturb it.
        let mut tx = store.begin();
        tx.foreach("m", |_, _| true);
        tx.put("out", b"n", b"1");
        put(&store, "elsewhere", b"a", b"2");
        assert!(store.commit(tx, |_, _| ()).is_ok());
    }

    #[test]
    fn execute_gives_up_and_passes_body_errors() {
        let store = Store::new();
        let r: Result<((), CommitOutcome<()>), _> = store.execute(3, |_| Err("nope"), |_, _| ());
        assert_eq!(r, Err(ExecuteError::Body("nope")));
        let mut n = 0u8;
        let r = store.execute(
            3,
            |tx| {
                tx.get("c", b"k");
                tx.put("c", b"k", b"v");
                n += 1;
                let mut other = store.begin();
                other.put("c", b"k", &[n]);
                store.commit(other, |_, _| ()).unwrap();
                Ok::<_, ()>(())
            },
            |_, _| (),
        );
        assert_eq!(
            r,
            Err(ExecuteError::Kv(KvError::ConflictRetriesExhausted { attempts: 3 }))
        );
    }

    #[test]
    fn concurrent_increments_all_land() {
        const THREADS: usize = 4;
        const INCREMENTS: usize = 200;
        let store = Store::new();
        let seen = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| {
                    for _ in 0..INCREMENTS {
                        store
                            .execute(
                                1000,
                                |tx| {
                                    let n = tx
                                        .get("c", b"n")
                                        .map_or(0, |v| u64::from_le_bytes(v.try_into().unwrap()));
                                    tx.put("c", b"n", &(n + 1).to_le_bytes());
                                    Ok::<_, ()>(())
                                },
                                |v, ws| {
                                    let n = ws.maps["c"].writes[&b"n".to_vec()].clone().unwrap();
                                    seen.lock()
                                        .unwrap()
                                        .push((v, u64::from_le_bytes(n.try_into().unwrap())));
                                },
                            )
                            .unwrap();
                    }
                });
            }
        });
        let total = (THREADS * INCREMENTS) as u64;
        let n = store.read_only().get("c", b"n").unwrap();
        assert_eq!(u64::from_le_bytes(n.try_into().unwrap()), total);
        // Callbacks ran in version order, each version writing counter == version.
        let seen = seen.into_inner().unwrap();
        assert_eq!(seen, (1..=total).map(|v| (v, v)).collect::<Vec<_>>());
    }

    #[test]
    fn apply_requires_the_next_version() {
        let store = Store::new();
        let mut ws = WriteSet::default();
        ws.put("m", b"k", b"v");
        assert_eq!(
            store.apply(2, &ws),
            Err(KvError::VersionMismatch { expected: 1, got: 2 })
        );
        store.apply(1, &ws).unwrap();
        assert_eq!(store.current_version(), 1);
        assert_eq!(store.read_only().get("m", b"k"), Some(b"v".to_vec()));
    }

    #[test]
    fn rollback_restores_digest_and_respects_committed() {
        let store = Store::new();
        put(&store, "m", b"a", b"1");
        put(&store, "m", b"b", b"1");
        let at2 = store.digest();
        put(&store, "m", b"a", b"2");
        let mut tx = store.begin();
        tx.remove("m", b"b");
        tx.put("n", b"new", b"map");
        store.commit(tx, |_, _| ()).unwrap();
        assert_ne!(store.digest(), at2);
        store.set_committed(2);
        assert_eq!(
            store.rollback(1),
            Err(KvError::RollbackBelowCommitted { to: 1, committed: 2 })
        );
        assert_eq!(
            store.rollback(9),
            Err(KvError::RollbackBeyondCurrent { to: 9, current: 4 })
        );
        store.rollback(2).unwrap();
        assert_eq!(store.digest(), at2);
        assert_eq!(store.current_version(), 2);
        assert_eq!(store.map_names(), vec!["m".to_string()]);
        assert_eq!(store.read_state().undo.len(), 0);
        // Versions are reused after a rollback.
        assert_eq!(put(&store, "m", b"c", b"1"), 3);
    }

    #[test]
    fn reads_of_rolled_back_versions_conflict_even_when_versions_are_reused() {
        // A key read at version 2 is rolled back and rewritten at the reused version 2 with another value: the
        // per-key version matches again, but the transaction read a value that no longer exists.
        let store = Store::new();
        put(&store, "m", b"k", b"a");
        put(&store, "m", b"k", b"x");
        let mut tx = store.begin();
        assert_eq!(tx.get("m", b"k"), Some(b"x".to_vec()));
        tx.put("out", b"copy", b"x");
        store.rollback(1).unwrap();
        assert_eq!(put(&store, "m", b"k", b"y"), 2);
        assert_eq!(store.commit(tx, |_, _| ()), Err(KvError::Conflict));

        // The same through a map-level read (iteration).
        let mut tx = store.begin();
        tx.foreach("m", |_, _| true);
        tx.put("out", b"n", b"1");
        store.rollback(1).unwrap();
        assert_eq!(put(&store, "m", b"k", b"z"), 2);
        assert_eq!(store.commit(tx, |_, _| ()), Err(KvError::Conflict));

        // A transaction begun after the rollback is unaffected, and a no-op rollback disturbs nothing.
        let mut tx = store.begin();
        assert_eq!(tx.get("m", b"k"), Some(b"z".to_vec()));
        tx.put("out", b"n", b"2");
        store.rollback(store.current_version()).unwrap();
        assert!(store.commit(tx, |_, _| ()).is_ok());
    }

    #[test]
    fn read_only_transaction_with_a_torn_view_conflicts() {
        // A transfer moves 1 from a to b between the two reads: the reader saw a + b = 1, never a real state.
        let store = Store::new();
        let mut setup = store.begin();
        setup.put("m", b"a", b"1");
        setup.put("m", b"b", b"0");
        store.commit(setup, |_, _| ()).unwrap();
        let mut reader = store.begin();
        assert_eq!(reader.get("m", b"a"), Some(b"1".to_vec()));
        let mut transfer = store.begin();
        transfer.put("m", b"a", b"0");
        transfer.put("m", b"b", b"1");
        store.commit(transfer, |_, _| ()).unwrap();
        assert_eq!(reader.get("m", b"b"), Some(b"1".to_vec()));
        assert_eq!(store.commit(reader, |_, _| ()), Err(KvError::Conflict));
        // execute re-runs such a body and returns a consistent view.
        let mut interloper = Some(());
        let (sum, outcome) = store
            .execute(
                DEFAULT_MAX_OCC_ATTEMPTS,
                |tx| {
                    let a = tx.get("m", b"a").unwrap()[0] - b'0';
                    if interloper.take().is_some() {
                        put(&store, "m", b"a", b"1");
                        put(&store, "m", b"b", b"0");
                    }
                    let b = tx.get("m", b"b").unwrap()[0] - b'0';
                    Ok::<_, ()>(a + b)
                },
                |_, _| (),
            )
            .unwrap();
        assert_eq!((sum, outcome), (1, CommitOutcome::ReadOnly));
    }

    #[test]
    fn rollback_does_not_resurrect_committed_tombstones() {
        let store = Store::new();
        put(&store, "m", b"k", b"1");
        let mut tx = store.begin();
        tx.remove("m", b"k");
        store.commit(tx, |_, _| ()).unwrap(); // tombstone at 2
        put(&store, "m", b"k", b"3"); // overwrites it at 3, so set_committed(2) keeps the entry
        store.set_committed(2);
        store.rollback(2).unwrap();
        assert_eq!(store.read_only().get("m", b"k"), None);
        // Nothing can bring the value removed at 2 back: the tombstone is not kept forever.
        assert!(store.read_state().maps["m"].entries.is_empty());
        assert!(store.map_names().is_empty());
    }

    #[test]
    fn set_committed_drops_undo_and_tombstones() {
        let store = Store::new();
        put(&store, "m", b"a", b"1");
        let mut tx = store.begin();
        tx.remove("m", b"a");
        store.commit(tx, |_, _| ()).unwrap();
        assert_eq!(store.read_state().maps["m"].entries.len(), 1); // tombstone kept while undo-able
        store.set_committed(100); // capped at current
        assert_eq!(store.committed_version(), 2);
        let state = store.read_state();
        assert!(state.undo.is_empty());
        assert!(state.maps["m"].entries.is_empty());
    }

    #[test]
    fn apply_committed_matches_apply_then_set_committed() {
        let mut sets = Vec::new();
        let mut ws = WriteSet::default();
        ws.put("m", b"a", b"1");
        ws.put("m", b"b", b"1");
        sets.push(ws);
        let mut ws = WriteSet::default();
        ws.remove("m", b"a");
        ws.put("n", b"c", b"2");
        sets.push(ws);
        sets.push(WriteSet::default());
        let mut ws = WriteSet::default();
        ws.remove("m", b"never-there");
        ws.put("m", b"a", b"4");
        ws.remove("n", b"c");
        sets.push(ws);
        let (slow, fast) = (Store::new(), Store::new());
        for (i, ws) in sets.iter().enumerate() {
            let v = i as Version + 1;
            slow.apply(v, ws).unwrap();
            slow.set_committed(v);
            fast.apply_committed(v, ws.clone()).unwrap();
            assert_eq!(fast.digest(), slow.digest(), "after version {v}");
            assert_eq!(fast.committed_version(), v);
            let header = crate::SnapshotHeader {
                version: v,
                ..Default::default()
            };
            assert_eq!(fast.snapshot(&header), slow.snapshot(&header), "snapshot at {v}");
        }
        assert!(fast.read_state().undo.is_empty());
        assert_eq!(fast.map_names(), slow.map_names());
        // The same through write batches, committed and not.
        let (batched, batched_committed) = (Store::new(), Store::new());
        for (i, ws) in sets.iter().enumerate() {
            let v = i as Version + 1;
            batched.apply_batch(v, WriteBatch::from(ws.clone()), false).unwrap();
            batched_committed
                .apply_batch(v, WriteBatch::from(ws.clone()), true)
                .unwrap();
        }
        assert_eq!(batched.read_state().undo.len(), sets.len());
        assert_eq!(batched.digest(), slow.digest());
        assert_eq!(batched_committed.digest(), slow.digest());
        assert_eq!(batched_committed.committed_version(), sets.len() as Version);
        batched.rollback(1).unwrap();
        let first = Store::new();
        first.apply(1, &sets[0]).unwrap();
        assert_eq!(batched.digest(), first.digest());
        // Versions applied with undo before a committed one become committed with it.
        let mut ws = WriteSet::default();
        ws.put("m", b"z", b"5");
        fast.apply_owned(5, ws.clone()).unwrap();
        assert_eq!(fast.read_state().undo.len(), 1);
        fast.apply_committed(6, ws).unwrap();
        assert!(fast.read_state().undo.is_empty());
        assert_eq!(
            fast.rollback(5),
            Err(KvError::RollbackBelowCommitted { to: 5, committed: 6 })
        );
        assert_eq!(
            fast.apply_committed(9, WriteSet::default()),
            Err(KvError::VersionMismatch { expected: 7, got: 9 })
        );
    }

    #[test]
    fn merge_by_key_visits_union_in_order() {
        let a = [(b"a".as_slice(), 1), (b"c".as_slice(), 3)];
        let b = [(b"b".as_slice(), 20), (b"c".as_slice(), 30)];
        let mut out = Vec::new();
        merge_by_key(a.iter().copied(), b.iter().copied(), |k, x, y| {
            out.push((k.to_vec(), x, y));
            true
        });
        assert_eq!(
            out,
            vec![
                (b"a".to_vec(), Some(1), None),
                (b"b".to_vec(), None, Some(20)),
                (b"c".to_vec(), Some(3), Some(30))
            ]
        );
    }
}
