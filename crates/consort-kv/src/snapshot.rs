//! Whole-store snapshots in CCF's snapshot format (entry type 1): a public domain with a header, hash at
//! snapshot and view history, then per map its name, version and size and its key/versioned-value pairs padded
//! to 8 bytes; the private plaintext holds the other maps in the same per-map layout without a header.

use std::collections::BTreeMap;

use std::ops::Bound;
use std::sync::Arc;

use crate::key::StoredKey;
use crate::state::{merge_by_key, Entry, MapState, State};
use crate::store::Store;
use crate::wire::{Reader, Writer};
use crate::write_set::{check_domain, read_version, Domain};
use crate::{is_public_map, KvError, Version, WireFault, ENTRY_TYPE_SNAPSHOT};

/// Size of the version that prefixes each value in a snapshot.
const VERSION_SIZE: usize = 8;
/// Top bit of a snapshot entry's version: CCF marks deletion tombstones with a negative version.
const TOMBSTONE_BIT: u64 = 1 << 63;

/// The header of a snapshot's public domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// The version the snapshot captures (its seqno).
    pub version: Version,
    /// Hash of the ledger entry at `version` (CCF: SHA-256, 32 bytes); written with a u64 length prefix.
    pub hash_at_snapshot: Vec<u8>,
    /// CCF's view history: for each view, the first seqno of that view.
    pub view_history: Vec<u64>,
}

impl Store {
    /// The state at `header.version` in CCF's snapshot format: `(public domain, private plaintext)`.
    ///
    /// Any version from the committed one to the current one can be captured, so a node may snapshot the
    /// version its last signature covers while transactions continue.
    ///
    /// Panics if `header.version` is outside that range (programmer error); see [`Store::try_snapshot`].
    pub fn snapshot(&self, header: &SnapshotHeader) -> (Vec<u8>, Vec<u8>) {
        match self.try_snapshot(header) {
            Ok(out) => out,
            Err(e) => panic!("snapshot: {e}"),
        }
    }

    /// [`Store::snapshot`], returning [`KvError::VersionUnavailable`] for a version outside
    /// committed..=current.
    pub fn try_snapshot(&self, header: &SnapshotHeader) -> Result<(Vec<u8>, Vec<u8>), KvError> {
        let pin = self.pin(header.version)?;
        let mut builder = Builder::new(pin, header.clone());
        let built = loop {
            match builder.step(self, usize::MAX) {
                Ok(true) => break Ok(builder.take_output()),
                Ok(false) => {}
                Err(e) => break Err(e),
            }
        };
        self.unpin(pin);
        built
    }

    /// A snapshot of the state at `header.version` (committed..=current, as for [`Store::try_snapshot`]) to be
    /// built later, typically on another thread, while transactions go on: see [`SnapshotJob`].
    pub fn snapshot_job(self: &Arc<Self>, header: SnapshotHeader) -> Result<SnapshotJob, KvError> {
        let pin = self.pin(header.version)?;
        Ok(SnapshotJob {
            store: self.clone(),
            builder: Builder::new(pin, header),
        })
    }

    /// Rebuilds a store from [`Store::snapshot`]'s output (or CCF's). The store's version and committed version
    /// are the snapshot's; nothing in it can be rolled back.
    pub fn from_snapshot(public: &[u8], private: &[u8]) -> Result<(Store, SnapshotHeader), KvError> {
        let mut r = Reader::new(public);
        let entry_type = r.u8("entry type")?;
        if entry_type != ENTRY_TYPE_SNAPSHOT {
            return Err(WireFault::NotSnapshot(entry_type).into());
        }
        let version = read_version(&mut r, "snapshot version")?;
        let _max_conflict_version = r.i64("max conflict version")?;
        let hash_at_snapshot = r.sized("hash at snapshot")?.to_vec();
        let view_history_bytes = r.sized("view history")?;
        if view_history_bytes.len() % 8 != 0 {
            return Err(WireFault::ViewHistoryLength.into());
        }
        let view_history = view_history_bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();

        let mut state = State {
            version,
            committed: version,
            ..State::default()
        };
        read_maps(&mut r, Domain::Public, version, &mut state.maps)?;
        read_maps(&mut Reader::new(private), Domain::Private, version, &mut state.maps)?;
        Ok((
            Store::from_state(state),
            SnapshotHeader {
                version,
                hash_at_snapshot,
                view_history,
            },
        ))
    }
}

/// Entries a [`SnapshotJob`] writes per hold of the store's read lock (writers wait at most this long).
pub const SNAPSHOT_BATCH: usize = 1024;

/// A snapshot of the state at a pinned version, built in batches while the store moves on.
///
/// While the job exists the store keeps the undo records of every version after the pinned one, even once
/// committed, so the job can tell each key's entry at that version; each batch holds the store's read lock for at
/// most [`SNAPSHOT_BATCH`] entries. The output is byte for byte what [`Store::snapshot`] would have returned at the
/// pinned version. A rollback below the pinned version abandons the job ([`KvError::SnapshotAbandoned`]).
/// Dropping the job releases the pin.
pub struct SnapshotJob {
    store: Arc<Store>,
    builder: Builder,
}

impl std::fmt::Debug for SnapshotJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotJob")
            .field("version", &self.builder.header.version)
            .finish_non_exhaustive()
    }
}

impl SnapshotJob {
    /// The version being captured.
    pub fn version(&self) -> Version {
        self.builder.header.version
    }

    /// Writes up to `entries` more entries; true once the snapshot is complete.
    pub fn step(&mut self, entries: usize) -> Result<bool, KvError> {
        self.builder.step(&self.store, entries.max(1))
    }

    /// Builds the whole snapshot: `(public domain, private plaintext)`, as [`Store::snapshot`].
    pub fn run(mut self) -> Result<(Vec<u8>, Vec<u8>), KvError> {
        while !self.step(SNAPSHOT_BATCH)? {}
        Ok(self.builder.take_output())
    }
}

impl Drop for SnapshotJob {
    fn drop(&mut self) {
        self.store.unpin(self.builder.pin);
    }
}

/// A map's version and touched keys' entries at the snapshot version, from the undo records after it.
#[derive(Default)]
struct Earlier {
    version: Version,
    /// Each key written after the snapshot version, with its entry then (None: no entry).
    entries: BTreeMap<Vec<u8>, Option<Entry>>,
}

/// Where the builder is inside the map it is writing.
struct MapCursor {
    public: bool,
    /// Offset of the map's name, of its size placeholder, and of its first entry, in its domain's writer.
    start: usize,
    size_at: usize,
    entries_start: usize,
    /// The last key written (None: none yet).
    after: Option<Vec<u8>>,
}

/// The resumable state of a snapshot build (see [`SnapshotJob`]).
#[derive(Default)]
struct Builder {
    pin: u64,
    header: SnapshotHeader,
    /// Names of the maps when the build started, in order (a map created later did not exist at the version).
    names: Option<Vec<String>>,
    next_map: usize,
    current: Option<MapCursor>,
    earlier: BTreeMap<String, Earlier>,
    /// Undo records of versions up to this one are merged into `earlier`.
    merged_to: Version,
    /// The store's rollback count when `earlier` was last brought up to date.
    rollbacks_seen: u64,
    public: Writer,
    private: Writer,
    /// One batch's entries, written under the read lock.
    scratch: Writer,
}

impl Builder {
    fn new(pin: u64, header: SnapshotHeader) -> Self {
        let at = header.version;
        let mut public = Writer::with_capacity(4096);
        public.u8(ENTRY_TYPE_SNAPSHOT);
        public.i64(at as i64);
        public.i64(at as i64); // max conflict version: nothing in a snapshot conflicts beyond its own version
        public.sized(&header.hash_at_snapshot);
        public.u64((header.view_history.len() * 8) as u64);
        for v in &header.view_history {
            public.u64(*v);
        }
        Builder {
            pin,
            header,
            merged_to: at,
            public,
            private: Writer::with_capacity(4096),
            ..Builder::default()
        }
    }

    /// The finished `(public domain, private plaintext)`.
    fn take_output(&mut self) -> (Vec<u8>, Vec<u8>) {
        (
            std::mem::take(&mut self.public.buf),
            std::mem::take(&mut self.private.buf),
        )
    }

    /// Merges the undo records written since the last batch: the oldest record after the snapshot version that
    /// touches a key holds the key's entry at that version. After a rollback (to at or above the snapshot version,
    /// or the pin would be invalid) the records are merged again from the start; entries already known stay right.
    fn catch_up(&mut self, store: &Store, state: &State) {
        let rollbacks = store.rollback_count();
        if rollbacks != self.rollbacks_seen {
            self.rollbacks_seen = rollbacks;
            self.merged_to = self.header.version;
        }
        let Some(first) = state.undo.front().map(|u| u.version) else {
            self.merged_to = self.merged_to.max(state.version);
            return;
        };
        let skip = usize::try_from((self.merged_to + 1).saturating_sub(first)).unwrap_or(usize::MAX);
        for undo in state.undo.iter().skip(skip) {
            for mu in &undo.maps {
                let e = self.earlier.entry(mu.name.clone()).or_insert_with(|| Earlier {
                    version: mu.prev_version,
                    entries: BTreeMap::new(),
                });
                for (k, old) in &mu.prev_entries {
                    e.entries.entry(k.clone()).or_insert_with(|| old.clone());
                }
            }
        }
        self.merged_to = self.merged_to.max(state.version);
    }

    /// One batch: up to `budget` entries of one map, written to a scratch buffer under the read lock and copied
    /// to the output after it (so growing a multi-megabyte output never happens under the lock). True once every
    /// map is written.
    fn step(&mut self, store: &Store, budget: usize) -> Result<bool, KvError> {
        self.scratch.buf.clear();
        let map_done = {
            let state = store.read_state();
            if !state.pin_valid(self.pin) {
                return Err(KvError::SnapshotAbandoned {
                    version: self.header.version,
                });
            }
            self.catch_up(store, &state);
            if !self.next_map_with_entries(&state) {
                return Ok(true);
            }
            self.write_entries(&state, budget)
        };
        let Some(cursor) = self.current.as_ref() else {
            return Ok(false);
        };
        let w = if cursor.public {
            &mut self.public
        } else {
            &mut self.private
        };
        w.raw(&self.scratch.buf);
        if map_done {
            let size = w.buf.len() - cursor.entries_start;
            if size == 0 {
                w.buf.truncate(cursor.start); // no keys at the snapshot version: the map is left out
            } else {
                w.patch_u64(cursor.size_at, size as u64);
            }
            self.current = None;
            self.next_map += 1;
        }
        Ok(false)
    }

    /// Makes `current` the map being written, starting the next one that existed at the snapshot version if none
    /// is; false once every map is written.
    fn next_map_with_entries(&mut self, state: &State) -> bool {
        let names = self.names.get_or_insert_with(|| state.maps.keys().cloned().collect());
        while self.current.is_none() {
            let Some(name) = names.get(self.next_map) else {
                return false;
            };
            // A map written after the snapshot version has an undo record with its version then.
            let version = match self.earlier.get(name.as_str()) {
                Some(e) => e.version,
                None => state.maps.get(name.as_str()).map_or(0, |m| m.version),
            };
            if version == 0 {
                self.next_map += 1; // created after the snapshot version
                continue;
            }
            let public = is_public_map(name);
            let w = if public { &mut self.public } else { &mut self.private };
            let start = w.buf.len();
            w.sized(name.as_bytes());
            w.u64(version);
            let size_at = w.placeholder_u64();
            self.current = Some(MapCursor {
                public,
                start,
                size_at,
                entries_start: w.buf.len(),
                after: None,
            });
        }
        true
    }

    /// Writes up to `budget` more entries of the current map to the scratch buffer, as they were at the snapshot
    /// version; true once the map is exhausted.
    fn write_entries(&mut self, state: &State, budget: usize) -> bool {
        let (Some(cursor), Some(names)) = (self.current.as_mut(), self.names.as_ref()) else {
            return true;
        };
        let name = names[self.next_map].as_str();
        let lower = match &cursor.after {
            Some(k) => Bound::Excluded(k.as_slice()),
            None => Bound::Unbounded,
        };
        let now: Vec<(&[u8], &Entry)> = state
            .maps
            .get(name)
            .into_iter()
            .flat_map(|m| m.entries.range::<[u8], _>((lower, Bound::Unbounded)))
            .take(budget)
            .map(|(k, e)| (k.as_slice(), e))
            .collect();
        let done = now.len() < budget;
        let upper = match (done, now.last()) {
            (false, Some((k, _))) => Bound::Included(*k),
            _ => Bound::Unbounded,
        };
        let then = self
            .earlier
            .get(name)
            .into_iter()
            .flat_map(|e| e.entries.range::<[u8], _>((lower, upper)))
            .map(|(k, e)| (k.as_slice(), e.as_ref()));
        let w = &mut self.scratch;
        merge_by_key(now.iter().copied(), then, |k, now, then| {
            // A key written after the snapshot version is in `then` (its entry at that version, if any).
            let entry = match then {
                Some(then) => then,
                None => now,
            };
            if let Some(Entry {
                version,
                value: Some(value),
            }) = entry
            {
                w.sized(k);
                w.pad8(k.len());
                let size = VERSION_SIZE + value.len();
                w.u64(size as u64);
                w.u64(*version);
                w.raw(value);
                w.pad8(size);
            }
            true
        });
        if let Some((k, _)) = now.last() {
            cursor.after = Some(k.to_vec());
        }
        done
    }
}

fn read_maps(
    r: &mut Reader<'_>,
    domain: Domain,
    snapshot_version: Version,
    maps: &mut BTreeMap<String, MapState>,
) -> Result<(), KvError> {
    while !r.is_empty() {
        let name = r.map_name()?;
        check_domain(&name, domain)?;
        if maps.contains_key(&name) {
            return Err(WireFault::MapTwice(name).into());
        }
        let map_version = r.u64("map version")?;
        if map_version > snapshot_version {
            return Err(WireFault::MapVersionAfterSnapshot {
                map: name,
                version: map_version,
            }
            .into());
        }
        let map_size = r.len("map size")?;
        let mut m = Reader::new(r.take(map_size, "map entries")?);
        let mut map = MapState {
            version: map_version,
            ..MapState::default()
        };
        while !m.is_empty() {
            let key_len = m.len("key size")?;
            let key = m.take(key_len, "key")?;
            m.skip_pad8(key_len, "key padding")?;
            let size = m.len("value size")?;
            if size < VERSION_SIZE {
                return Err(WireFault::VersionedValueTooShort(size).into());
            }
            let version = m.u64("value version")?;
            let value = m.take(size - VERSION_SIZE, "value")?;
            m.skip_pad8(size, "value padding")?;
            if version & TOMBSTONE_BIT != 0 {
                if !value.is_empty() {
                    return Err(WireFault::TombstoneWithValue.into());
                }
                continue; // a deleted key: absent from the restored state
            }
            if version == 0 || version > snapshot_version {
                return Err(WireFault::KeyVersionOutOfRange {
                    version,
                    snapshot: snapshot_version,
                }
                .into());
            }
            let entry = Entry {
                version,
                value: Some(value.to_vec()),
            };
            if map.entries.insert(StoredKey::from(key), entry).is_some() {
                return Err(WireFault::SnapshotKeyTwice(name).into());
            }
            map.live += 1;
            map.version = map.version.max(version);
        }
        if map.live > 0 {
            maps.insert(name, map);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn le(v: u64) -> [u8; 8] {
        v.to_le_bytes()
    }

    fn header(version: Version) -> SnapshotHeader {
        SnapshotHeader {
            version,
            hash_at_snapshot: vec![0xab; 32],
            view_history: vec![1, 5],
        }
    }

    #[test]
    fn golden_snapshot_bytes() {
        let store = Store::new();
        let mut tx = store.begin();
        tx.put("public:m", b"key", b"value");
        tx.put("secret", b"12345678", b"");
        store.commit(tx, |_, _| ()).unwrap();
        let (public, private) = store.snapshot(&header(1));

        let mut expected = vec![1u8];
        expected.extend(le(1)); // version
        expected.extend(le(1)); // max conflict version
        expected.extend(le(32));
        expected.extend([0xab; 32]);
        expected.extend(le(16));
        expected.extend(le(1));
        expected.extend(le(5));
        expected.extend(le(8));
        expected.extend(b"public:m");
        expected.extend(le(1)); // map version
        expected.extend(le(40)); // map size: 8 + 3 + 5 pad + 8 + 8 + 5 + 3 pad
        expected.extend(le(3));
        expected.extend(b"key\0\0\0\0\0");
        expected.extend(le(13));
        expected.extend(le(1));
        expected.extend(b"value\0\0\0");
        assert_eq!(public, expected);

        let mut expected_private = Vec::new();
        expected_private.extend(le(6));
        expected_private.extend(b"secret");
        expected_private.extend(le(1));
        expected_private.extend(le(32));
        expected_private.extend(le(8));
        expected_private.extend(b"12345678");
        expected_private.extend(le(8));
        expected_private.extend(le(1));
        assert_eq!(private, expected_private);

        let (back, h) = Store::from_snapshot(&public, &private).unwrap();
        assert_eq!(h, header(1));
        assert_eq!(back.digest(), store.digest());
    }

    #[test]
    fn snapshot_of_an_earlier_uncommitted_version() {
        let store = Store::new();
        let commit = |f: &dyn Fn(&mut crate::Tx<'_>)| {
            let mut tx = store.begin();
            f(&mut tx);
            store.commit(tx, |_, _| ()).unwrap();
        };
        commit(&|tx| tx.put("m", b"a", b"1"));
        commit(&|tx| tx.put("public:p", b"x", b"1"));
        let at2 = store.digest();
        commit(&|tx| tx.put("m", b"a", b"2"));
        commit(&|tx| tx.remove("public:p", b"x"));
        commit(&|tx| tx.put("new", b"n", b"1"));
        let at5 = store.digest();
        store.set_committed(1);
        let (public, private) = store.snapshot(&header(2));
        let (restored, h) = Store::from_snapshot(&public, &private).unwrap();
        assert_eq!(h.version, 2);
        assert_eq!(restored.digest(), at2);
        assert_eq!(restored.current_version(), 2);
        assert_eq!(restored.committed_version(), 2);
        let (public, private) = store.snapshot(&header(5));
        assert_eq!(Store::from_snapshot(&public, &private).unwrap().0.digest(), at5);
        assert!(matches!(
            store.try_snapshot(&header(0)),
            Err(KvError::VersionUnavailable { .. })
        ));
        assert!(matches!(
            store.try_snapshot(&header(6)),
            Err(KvError::VersionUnavailable { .. })
        ));
    }

    #[test]
    fn rejects_bad_snapshots() {
        let store = Store::new();
        let mut tx = store.begin();
        tx.put("public:m", b"k", b"v");
        tx.put("p", b"k", b"v");
        store.commit(tx, |_, _| ()).unwrap();
        let (public, private) = store.snapshot(&header(1));
        // Cutting right after the 81-byte header leaves a valid snapshot without public maps; any other cut fails.
        for cut in (0..public.len()).filter(|c| *c != 81) {
            assert!(
                Store::from_snapshot(&public[..cut], &private).is_err(),
                "public cut at {cut}"
            );
        }
        for cut in 1..private.len() {
            assert!(
                Store::from_snapshot(&public, &private[..cut]).is_err(),
                "private cut at {cut}"
            );
        }
        // Swapped domains, wrong entry type.
        assert!(Store::from_snapshot(&public, &public).is_err());
        let mut wrong = public.clone();
        wrong[0] = 4;
        assert!(Store::from_snapshot(&wrong, &private).is_err());
    }

    #[test]
    fn tombstones_are_skipped() {
        let mut w = Writer::with_capacity(64);
        w.u8(ENTRY_TYPE_SNAPSHOT);
        w.i64(3);
        w.i64(3);
        w.u64(0);
        w.u64(0);
        w.sized(b"public:t");
        w.u64(3);
        w.u64(24);
        w.u64(0); // empty key, no padding
        w.u64(8);
        w.u64(u64::MAX); // version -1: deleted
        let (store, _) = Store::from_snapshot(&w.buf, &[]).unwrap();
        assert!(store.map_names().is_empty());
        assert_eq!(store.current_version(), 3);
    }

    mod job {
        use super::*;
        use crate::WriteSet;
        use proptest::prelude::*;

        const MAPS: [&str; 3] = ["public:a", "b", "c"];

        #[derive(Debug, Clone)]
        enum Op {
            /// A write set: (map, key, value or removal).
            Write(Vec<(usize, u8, Option<u8>)>),
            /// The same, applied as already committed (ledger catch-up).
            WriteCommitted(Vec<(usize, u8, Option<u8>)>),
            Commit(u64),
            /// Roll back this many versions (never below the pinned or committed version).
            Rollback(u64),
            Step(usize),
        }

        fn writes() -> impl Strategy<Value = Vec<(usize, u8, Option<u8>)>> {
            proptest::collection::vec((0usize..3, 0u8..24, proptest::option::weighted(0.8, any::<u8>())), 1..6)
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                4 => writes().prop_map(Op::Write),
                1 => writes().prop_map(Op::WriteCommitted),
                1 => (0u64..4).prop_map(Op::Commit),
                1 => (0u64..4).prop_map(Op::Rollback),
                3 => (1usize..6).prop_map(Op::Step),
            ]
        }

        fn write_set(w: &[(usize, u8, Option<u8>)]) -> WriteSet {
            let mut ws = WriteSet::default();
            for (m, k, v) in w {
                match v {
                    Some(v) => ws.put(MAPS[*m], &[*k], &[*v; 3]),
                    None => ws.remove(MAPS[*m], &[*k]),
                }
            }
            ws
        }

        fn apply(store: &Store, op: &Op, floor: Version) {
            let next = store.current_version() + 1;
            match op {
                Op::Write(w) => store.apply(next, &write_set(w)).unwrap(),
                Op::WriteCommitted(w) => store.apply_committed(next, write_set(w)).unwrap(),
                Op::Commit(n) => store.set_committed(store.committed_version() + n),
                Op::Rollback(n) => {
                    let floor = floor.max(store.committed_version());
                    store
                        .rollback(store.current_version().saturating_sub(*n).max(floor))
                        .unwrap();
                }
                Op::Step(_) => {}
            }
        }

        proptest! {
            /// A job stepped in small batches while the store applies, commits and rolls back (not below the pinned
            /// version) writes exactly the snapshot taken at the pinned version before anything moved.
            #[test]
            fn job_matches_the_snapshot_taken_at_its_version(
                before in proptest::collection::vec(op(), 0..30),
                during in proptest::collection::vec(op(), 0..60),
            ) {
                let store = Arc::new(Store::new());
                for op in &before {
                    apply(&store, op, 0);
                }
                let at = store.current_version();
                let expected = store.snapshot(&header(at));
                let mut job = store.snapshot_job(header(at)).unwrap();
                let mut done = false;
                for op in &during {
                    match op {
                        Op::Step(n) if !done => done = job.step(*n).unwrap(),
                        _ => apply(&store, op, at),
                    }
                }
                prop_assert_eq!(job.run().unwrap(), expected);
                // The pin is gone: undo records are kept only above the committed version again.
                let state = store.read_state();
                prop_assert!(state.pins.is_empty());
                prop_assert_eq!(state.undo.len() as u64, state.version - state.committed);
            }
        }

        #[test]
        fn a_rollback_below_the_pinned_version_abandons_the_job() {
            let store = Arc::new(Store::new());
            for v in 1..=3u8 {
                store.apply(u64::from(v), &write_set(&[(1, v, Some(v))])).unwrap();
            }
            let mut job = store.snapshot_job(header(3)).unwrap();
            assert!(!job.step(1).unwrap());
            store.rollback(2).unwrap();
            assert!(matches!(job.step(10), Err(KvError::SnapshotAbandoned { version: 3 })));
            drop(job);
            assert!(store.read_state().pins.is_empty());
            assert!(matches!(
                store.snapshot_job(header(3)),
                Err(KvError::VersionUnavailable { .. })
            ));
        }

        #[test]
        fn pinned_undo_records_outlive_the_commit_until_the_job_ends() {
            let store = Arc::new(Store::new());
            store.apply(1, &write_set(&[(0, 1, Some(1))])).unwrap();
            let job = store.snapshot_job(header(1)).unwrap();
            store.apply(2, &write_set(&[(0, 1, Some(2))])).unwrap();
            store.apply_committed(3, write_set(&[(0, 1, None)])).unwrap();
            assert_eq!(store.committed_version(), 3);
            assert_eq!(store.read_state().undo.len(), 2); // versions 2 and 3, kept for the job
            let (public, private) = job.run().unwrap();
            let (restored, _) = Store::from_snapshot(&public, &private).unwrap();
            assert_eq!(restored.read_only().get("public:a", &[1]).unwrap(), vec![1u8; 3]);
            assert!(store.read_state().undo.is_empty());
        }
    }
}
