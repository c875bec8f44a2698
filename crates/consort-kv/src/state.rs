//! The store's committed state: per-key entries with versions and tombstones, per-map versions, and the undo
//! records that let versions above the committed one be rolled back.

use std::collections::{BTreeMap, VecDeque};
use std::iter::Peekable;

use crate::key::StoredKey;
use crate::tx::ReadSet;
use crate::{Key, Value, Version, WriteSet};

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

/// Whether applying a version records how to undo it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UndoPolicy {
    /// Keep an undo record: the version may be rolled back, or a snapshot job needs it.
    Record,
    /// Keep none: the version is committed as it is applied and nothing captures the state before it.
    Skip,
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

    /// Adds `older`'s live entries to map `name` where the map has no entry for the key (see
    /// [`crate::Store::merge_older`]); returns how many were added.
    pub(crate) fn merge_older_map(&mut self, name: String, older: MapState) -> usize {
        let map = self.maps.entry(name).or_default();
        map.version = map.version.max(older.version);
        let mut added = 0;
        for (key, entry) in older.entries {
            if entry.value.is_none() || map.entries.contains_key(key.as_slice()) {
                continue;
            }
            map.entries.insert(key, entry);
            map.live += 1;
            added += 1;
        }
        added
    }

    /// True if every read in `reads` still sees the version it saw.
    pub(crate) fn validate(&self, reads: &ReadSet) -> bool {
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
    pub(crate) fn apply_writes(&mut self, version: Version, ws: &WriteSet) {
        self.apply_owned(version, ws.clone(), UndoPolicy::Record);
    }

    /// Applies `ws` as version `version` (which must be the next one), moving its keys and values into the maps.
    /// With [`UndoPolicy::Record`] it records how to undo it; with `Skip`, the caller commits `version` at once (a removal then
    /// leaves no tombstone, as [`Self::drop_undo_through`] would have dropped it).
    pub(crate) fn apply_owned(&mut self, version: Version, ws: WriteSet, undo_policy: UndoPolicy) {
        self.apply_maps(version, ws.maps.into_iter().map(|(n, m)| (n, m.writes)), undo_policy);
    }

    /// [`Self::apply_owned`] over any sequence of (map name, writes) with each map and each key at most once.
    pub(crate) fn apply_maps<W: IntoIterator<Item = (Key, Option<Value>)>>(
        &mut self,
        version: Version,
        maps: impl Iterator<Item = (String, W)>,
        undo_policy: UndoPolicy,
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
            if undo_policy == UndoPolicy::Skip {
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
        if undo_policy == UndoPolicy::Record {
            self.undo.push_back(undo);
        }
        self.version = version;
    }

    /// Undoes the newest version.
    pub(crate) fn undo_last(&mut self) {
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
    pub(crate) fn lowest_pin(&self) -> Option<Version> {
        self.pins.iter().filter(|p| p.2).map(|p| p.1).min()
    }

    /// Drops undo records at or below `committed` (and at or below every valid pin), and with them the tombstones
    /// those versions left that nothing has overwritten since (no rollback can bring the removed value back any
    /// more).
    pub(crate) fn drop_undo_through(&mut self, committed: Version) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
