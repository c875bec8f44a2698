//! Whole-store snapshots in CCF's snapshot format (entry type 1): a public domain with a header, hash at
//! snapshot and view history, then per map its name, version and size and its key/versioned-value pairs padded
//! to 8 bytes; the private plaintext holds the other maps in the same per-map layout without a header.

use std::collections::BTreeMap;

use crate::key::StoredKey;
use crate::store::{merge_by_key, Entry, MapState, State, Store};
use crate::wire::{Reader, Writer};
use crate::write_set::{check_domain, read_version};
use crate::{is_public_map, KvError, Version, ENTRY_TYPE_SNAPSHOT};

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

/// A map's state at an earlier version, derived from the undo records of the versions after it.
struct MapAtVersion<'a> {
    version: Version,
    entries: BTreeMap<&'a [u8], Option<&'a Entry>>,
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
        let state = self.read_state();
        let at = header.version;
        if at < state.committed || at > state.version {
            return Err(KvError::VersionUnavailable {
                requested: at,
                committed: state.committed,
                current: state.version,
            });
        }

        // Undo the versions after `at` on paper: the oldest record touching a key holds its entry at `at`.
        let mut earlier: BTreeMap<&str, MapAtVersion<'_>> = BTreeMap::new();
        let newer = usize::try_from(at - state.committed).unwrap_or(usize::MAX);
        for undo in state.undo.iter().skip(newer) {
            for mu in &undo.maps {
                let map = earlier.entry(mu.name.as_str()).or_insert_with(|| MapAtVersion {
                    version: mu.prev_version,
                    entries: BTreeMap::new(),
                });
                for (k, old) in &mu.prev_entries {
                    map.entries.entry(k.as_slice()).or_insert(old.as_ref());
                }
            }
        }

        let mut public = Writer::with_capacity(4096);
        public.u8(ENTRY_TYPE_SNAPSHOT);
        public.i64(at as i64);
        public.i64(at as i64); // max conflict version: nothing in a snapshot conflicts beyond its own version
        public.sized(&header.hash_at_snapshot);
        public.u64((header.view_history.len() * 8) as u64);
        for v in &header.view_history {
            public.u64(*v);
        }
        let mut private = Writer::with_capacity(4096);
        for (name, map) in &state.maps {
            let w = if is_public_map(name) { &mut public } else { &mut private };
            write_map(w, name, map, earlier.get(name.as_str()));
        }
        Ok((public.buf, private.buf))
    }

    /// Rebuilds a store from [`Store::snapshot`]'s output (or CCF's). The store's version and committed version
    /// are the snapshot's; nothing in it can be rolled back.
    pub fn from_snapshot(public: &[u8], private: &[u8]) -> Result<(Store, SnapshotHeader), KvError> {
        let mut r = Reader::new(public);
        let entry_type = r.u8("entry type")?;
        if entry_type != ENTRY_TYPE_SNAPSHOT {
            return Err(KvError::Malformed(format!("entry type {entry_type} is not a snapshot")));
        }
        let version = read_version(&mut r, "snapshot version")?;
        let _max_conflict_version = r.i64("max conflict version")?;
        let hash_at_snapshot = r.sized("hash at snapshot")?.to_vec();
        let view_history_bytes = r.sized("view history")?;
        if view_history_bytes.len() % 8 != 0 {
            return Err(KvError::Malformed("view history is not a whole number of u64s".into()));
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
        read_maps(&mut r, true, version, &mut state.maps)?;
        read_maps(&mut Reader::new(private), false, version, &mut state.maps)?;
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

/// Writes one map as it was at the snapshot version; a map without keys then is left out.
fn write_map(w: &mut Writer, name: &str, map: &MapState, earlier: Option<&MapAtVersion<'_>>) {
    let map_version = earlier.map_or(map.version, |e| e.version);
    if map_version == 0 {
        return; // created after the snapshot version
    }
    let start = w.buf.len();
    w.sized(name.as_bytes());
    w.u64(map_version);
    let size_at = w.placeholder_u64();
    let entries_start = w.buf.len();
    let current = map.entries.iter().map(|(k, e)| (k.as_slice(), e));
    let overrides = earlier
        .into_iter()
        .flat_map(|e| e.entries.iter())
        .map(|(k, e)| (*k, *e));
    merge_by_key(current, overrides, |k, now, then| {
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
    let size = w.buf.len() - entries_start;
    if size == 0 {
        w.buf.truncate(start);
    } else {
        w.patch_u64(size_at, size as u64);
    }
}

fn read_maps(
    r: &mut Reader<'_>,
    public: bool,
    snapshot_version: Version,
    maps: &mut BTreeMap<String, MapState>,
) -> Result<(), KvError> {
    while !r.is_empty() {
        let name = r.map_name()?;
        check_domain(&name, public)?;
        if maps.contains_key(&name) {
            return Err(KvError::Malformed(format!("map {name:?} appears twice")));
        }
        let map_version = r.u64("map version")?;
        if map_version > snapshot_version {
            return Err(KvError::Malformed(format!(
                "map {name:?} version {map_version} is after the snapshot"
            )));
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
                return Err(KvError::Malformed(format!("versioned value of {size} bytes")));
            }
            let version = m.u64("value version")?;
            let value = m.take(size - VERSION_SIZE, "value")?;
            m.skip_pad8(size, "value padding")?;
            if version & TOMBSTONE_BIT != 0 {
                if !value.is_empty() {
                    return Err(KvError::Malformed("tombstone with a value".into()));
                }
                continue; // a deleted key: absent from the restored state
            }
            if version == 0 || version > snapshot_version {
                return Err(KvError::Malformed(format!(
                    "key version {version} outside 1..={snapshot_version}"
                )));
            }
            let entry = Entry {
                version,
                value: Some(value.to_vec()),
            };
            if map.entries.insert(StoredKey::from(key), entry).is_some() {
                return Err(KvError::Malformed(format!("map {name:?}: key appears twice")));
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
}
