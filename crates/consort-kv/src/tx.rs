//! Transactions: the read set recorded for optimistic concurrency control, the buffered write set, and the
//! read-only view.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::state::merge_by_key;
use crate::store::Store;
use crate::{KvError, Value, Version, WriteSet};
use std::sync::Arc;

/// What one transaction read from one map, with the versions it saw (0: never written).
#[derive(Debug, Default)]
pub(crate) struct MapReads {
    /// Set when the transaction iterated the map: any later write to the map makes it stale.
    pub(crate) map_version: Option<Version>,
    pub(crate) keys: HashMap<Vec<u8>, Version>,
}

#[derive(Debug, Default)]
pub(crate) struct ReadSet {
    pub(crate) maps: BTreeMap<String, MapReads>,
}

impl ReadSet {
    fn map_mut(&mut self, map: &str) -> &mut MapReads {
        if !self.maps.contains_key(map) {
            self.maps.insert(map.to_owned(), MapReads::default());
        }
        // invariant: inserted just above; a second lookup keeps the name unallocated when the map exists.
        self.maps.get_mut(map).expect("map inserted above")
    }

    /// Records the first version seen for `key` (later reads of the same key are validated by the first).
    fn record_key(&mut self, map: &str, key: &[u8], version: Version) {
        let reads = self.map_mut(map);
        if reads.map_version.is_none() && !reads.keys.contains_key(key) {
            reads.keys.insert(key.to_vec(), version);
        }
    }

    fn record_map(&mut self, map: &str, version: Version) {
        let reads = self.map_mut(map);
        if reads.map_version.is_none() {
            reads.map_version = Some(version);
        }
    }
}

/// Result of [`Store::commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome<R> {
    /// The transaction wrote nothing: no version was assigned and the callback was not called.
    ReadOnly,
    /// The writes were applied at `version`; `result` is what the callback returned.
    Committed {
        /// The version (= seqno) the writes were applied at.
        version: Version,
        /// What the commit callback returned.
        result: R,
    },
}

impl<R> CommitOutcome<R> {
    /// The assigned version, if the transaction wrote anything.
    pub fn version(&self) -> Option<Version> {
        match self {
            CommitOutcome::ReadOnly => None,
            CommitOutcome::Committed { version, .. } => Some(*version),
        }
    }
}

/// Error of [`Store::execute`]: the body's own error, or the store's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecuteError<E> {
    /// The transaction body returned this error; nothing was committed.
    Body(E),
    /// The store refused the commit (for example: still conflicting after every attempt).
    Kv(KvError),
}

impl<E: fmt::Display> fmt::Display for ExecuteError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecuteError::Body(e) => write!(f, "{e}"),
            ExecuteError::Kv(e) => write!(f, "{e}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for ExecuteError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ExecuteError::Body(e) => Some(e),
            ExecuteError::Kv(e) => Some(e),
        }
    }
}

/// A read-write transaction on a [`Store`]; see [`Store::begin`] for what reads see. Commit with
/// [`Store::commit`]; dropping it discards the writes.
#[derive(Debug)]
pub struct Tx<'s> {
    store: StoreRef<'s>,
    start_version: Version,
    /// The store's rollback count when the transaction began (see [`Store::commit`]).
    rollbacks: u64,
    reads: ReadSet,
    writes: WriteSet,
}

/// How a [`Tx`] holds its store: borrowed (the usual case), or shared through an `Arc` so that the transaction is
/// `'static` and can move into callbacks that must own what they use (the JavaScript runtime's host functions).
#[derive(Debug, Clone)]
enum StoreRef<'s> {
    Borrowed(&'s Store),
    Shared(Arc<Store>),
}

impl std::ops::Deref for StoreRef<'_> {
    type Target = Store;
    fn deref(&self) -> &Store {
        match self {
            StoreRef::Borrowed(s) => s,
            StoreRef::Shared(s) => s,
        }
    }
}

impl Tx<'static> {
    /// A transaction that holds its store through `store` (see [`Store::begin`] for what reads see).
    pub fn shared(store: Arc<Store>) -> Self {
        let rollbacks = store.rollback_count();
        let start_version = store.current_version();
        Tx::with_ref(StoreRef::Shared(store), start_version, rollbacks)
    }
}

impl<'s> Tx<'s> {
    pub(crate) fn new(store: &'s Store, start_version: Version, rollbacks: u64) -> Self {
        Tx::with_ref(StoreRef::Borrowed(store), start_version, rollbacks)
    }

    fn with_ref(store: StoreRef<'s>, start_version: Version, rollbacks: u64) -> Self {
        Tx {
            store,
            start_version,
            rollbacks,
            reads: ReadSet::default(),
            writes: WriteSet::default(),
        }
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Takes this transaction's reads and writes out, leaving in their place an empty transaction on the same
    /// store that began at the same moment. Put the taken one back with `*tx = taken` before committing `tx`.
    pub fn take(&mut self) -> Tx<'s> {
        let empty = Tx::with_ref(self.store.clone(), self.start_version, self.rollbacks);
        std::mem::replace(self, empty)
    }

    pub(crate) fn into_parts(self) -> (u64, ReadSet, WriteSet) {
        (self.rollbacks, self.reads, self.writes)
    }

    /// The store version when the transaction began.
    pub fn start_version(&self) -> Version {
        self.start_version
    }

    fn own_write(&self, map: &str, key: &[u8]) -> Option<&Option<Value>> {
        self.writes.maps.get(map).and_then(|m| m.writes.get(key))
    }

    /// The value of `key`: this transaction's own write if any, else the committed one (recorded in the read
    /// set, also when absent).
    pub fn get(&mut self, map: &str, key: &[u8]) -> Option<Value> {
        if let Some(own) = self.own_write(map, key) {
            return own.clone();
        }
        let (version, value) = {
            let state = self.store.read_state();
            match state.maps.get(map).and_then(|m| m.entries.get(key)) {
                Some(e) => (e.version, e.value.clone()),
                None => (0, None),
            }
        };
        self.reads.record_key(map, key, version);
        value
    }

    /// Whether `key` has a value, recorded like [`Tx::get`] but without copying the value.
    pub fn has(&mut self, map: &str, key: &[u8]) -> bool {
        if let Some(own) = self.own_write(map, key) {
            return own.is_some();
        }
        let (version, present) = {
            let state = self.store.read_state();
            match state.maps.get(map).and_then(|m| m.entries.get(key)) {
                Some(e) => (e.version, e.value.is_some()),
                None => (0, false),
            }
        };
        self.reads.record_key(map, key, version);
        present
    }

    /// The version that last wrote `key` before this transaction (ignoring the transaction's own writes), or
    /// `None` if no committed value is there; recorded in the read set like [`Tx::get`].
    pub fn version_of(&mut self, map: &str, key: &[u8]) -> Option<Version> {
        let (version, present) = {
            let state = self.store.read_state();
            match state.maps.get(map).and_then(|m| m.entries.get(key)) {
                Some(e) => (e.version, e.value.is_some()),
                None => (0, false),
            }
        };
        self.reads.record_key(map, key, version);
        present.then_some(version)
    }

    /// Buffers a write of `value` at `key` in `map`; visible to this transaction's reads at once.
    pub fn put(&mut self, map: &str, key: &[u8], value: &[u8]) {
        let start_version = self.start_version;
        let writes = self.writes.map_mut(map);
        writes.read_version = start_version;
        writes.writes.insert(key.to_vec(), Some(value.to_vec()));
    }

    /// Buffers a removal of `key` from `map`.
    pub fn remove(&mut self, map: &str, key: &[u8]) {
        let start_version = self.start_version;
        let writes = self.writes.map_mut(map);
        writes.read_version = start_version;
        writes.writes.insert(key.to_vec(), None);
    }

    /// Calls `f(key, value)` for every key of `map` — committed state overlaid with this transaction's own
    /// writes — in key order, until `f` returns false. Records a map-level read: any commit to `map` after this
    /// makes the transaction conflict. The store's read lock is held while iterating, so `f` must not use this
    /// store.
    pub fn foreach(&mut self, map: &str, mut f: impl FnMut(&[u8], &[u8]) -> bool) {
        let state = self.store.read_state();
        let committed = state.maps.get(map);
        let map_version = committed.map_or(0, |m| m.version);
        let committed_iter = committed
            .into_iter()
            .flat_map(|m| m.entries.iter())
            .map(|(k, e)| (k.as_slice(), e));
        let own_iter = self
            .writes
            .maps
            .get(map)
            .into_iter()
            .flat_map(|m| m.writes.iter())
            .map(|(k, v)| (k.as_slice(), v));
        merge_by_key(committed_iter, own_iter, |k, committed, own| {
            let value = match own {
                Some(own) => own.as_deref(),
                None => committed.and_then(|e| e.value.as_deref()),
            };
            match value {
                Some(v) => f(k, v),
                None => true,
            }
        });
        drop(state);
        self.reads.record_map(map, map_version);
    }

    /// Calls `f(version, key, value)` for every committed key of `map` (this transaction's own writes are not
    /// seen), with the version that last wrote it, in key order, until `f` returns false. Records a map-level
    /// read, like [`Tx::foreach`]; the same lock rule applies.
    pub fn foreach_committed_versioned(&mut self, map: &str, mut f: impl FnMut(Version, &[u8], &[u8]) -> bool) {
        let state = self.store.read_state();
        let committed = state.maps.get(map);
        let map_version = committed.map_or(0, |m| m.version);
        for (k, e) in committed.into_iter().flat_map(|m| m.entries.iter()) {
            if let Some(v) = e.value.as_deref() {
                if !f(e.version, k.as_slice(), v) {
                    break;
                }
            }
        }
        drop(state);
        self.reads.record_map(map, map_version);
    }

    /// The writes so far.
    pub fn write_set(&self) -> &WriteSet {
        &self.writes
    }

    /// Whether the transaction wrote or removed anything (a commit then assigns a version).
    pub fn has_writes(&self) -> bool {
        !self.writes.is_empty()
    }
}

/// A read-only view of a [`Store`]: every call reads the latest committed state under a brief read lock, records
/// nothing and never conflicts. Successive calls may see different versions.
#[derive(Debug, Clone, Copy)]
pub struct ReadTx<'s> {
    store: &'s Store,
}

impl<'s> ReadTx<'s> {
    pub(crate) fn new(store: &'s Store) -> Self {
        ReadTx { store }
    }

    /// The committed value of `key` in `map` as of now (read-only transactions record no read set).
    pub fn get(&self, map: &str, key: &[u8]) -> Option<Value> {
        let state = self.store.read_state();
        state
            .maps
            .get(map)
            .and_then(|m| m.entries.get(key))
            .and_then(|e| e.value.clone())
    }

    /// Whether `key` is present in `map`.
    pub fn has(&self, map: &str, key: &[u8]) -> bool {
        let state = self.store.read_state();
        state
            .maps
            .get(map)
            .and_then(|m| m.entries.get(key))
            .is_some_and(|e| e.value.is_some())
    }

    /// `get` together with the version that last wrote the key.
    pub fn get_versioned(&self, map: &str, key: &[u8]) -> Option<(Version, Value)> {
        let state = self.store.read_state();
        let e = state.maps.get(map).and_then(|m| m.entries.get(key))?;
        e.value.clone().map(|v| (e.version, v))
    }

    /// The version of the last commit that changed `map` (0 if it never was written): a cheap way to tell whether
    /// a cache built from the map is still current.
    pub fn map_version(&self, map: &str) -> Version {
        self.store.read_state().maps.get(map).map_or(0, |m| m.version)
    }

    /// Calls `f(key, value)` for every key of `map` in key order until it returns false. The store's read lock is
    /// held meanwhile, so `f` must not use this store.
    pub fn foreach(&self, map: &str, mut f: impl FnMut(&[u8], &[u8]) -> bool) {
        let state = self.store.read_state();
        if let Some(m) = state.maps.get(map) {
            for (k, e) in &m.entries {
                if let Some(v) = &e.value {
                    if !f(k.as_slice(), v) {
                        return;
                    }
                }
            }
        }
    }

    /// Number of keys in `map`.
    pub fn key_count(&self, map: &str) -> usize {
        self.store.read_state().maps.get(map).map_or(0, |m| m.live)
    }
}
