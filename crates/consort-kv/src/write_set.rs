//! Write sets (the writes of one transaction) and their CCF public/private domain byte format.
//!
//! Layout (docs/formats.md): the public domain is a header (entry type, version, optional claims and
//! commit-evidence digests, max conflict version) followed by the `public:` maps; the private domain plaintext
//! is the same per-map sequence for the other maps, without a header. Per map: name, read version, read count
//! (always 0), the writes, then the removals.

use std::collections::BTreeMap;

use crate::wire::{Reader, Writer};
use crate::{is_public_map, Key, KvError, Value, Version, WireFault};

/// Entry type of a current CCF write set: commit evidence digest and claims digest both present.
pub const ENTRY_TYPE_WRITE_SET_WITH_CE_AND_CLAIMS: u8 = 4;
/// Entry type of a snapshot public domain (see [`crate::Store::snapshot`]).
pub const ENTRY_TYPE_SNAPSHOT: u8 = 1;
/// Deprecated CCF entry types that [`WriteSet::deserialise_public`] still reads (old ledgers).
pub const ENTRY_TYPE_WRITE_SET: u8 = 0;
/// Write set with a claims digest (deprecated by CCF; read only).
pub const ENTRY_TYPE_WRITE_SET_WITH_CLAIMS: u8 = 2;
/// Write set with a commit-evidence digest (deprecated by CCF; read only).
pub const ENTRY_TYPE_WRITE_SET_WITH_CE: u8 = 3;

const DIGEST_SIZE: usize = 32;
/// Smallest possible serialised write: an empty key and an empty value, each a u64 length.
const MIN_WRITE_BYTES: usize = 16;
/// Smallest possible serialised removal: an empty key (its u64 length).
const MIN_REMOVE_BYTES: usize = 8;

fn entry_type_has_claims(entry_type: u8) -> bool {
    matches!(
        entry_type,
        ENTRY_TYPE_WRITE_SET_WITH_CLAIMS | ENTRY_TYPE_WRITE_SET_WITH_CE_AND_CLAIMS
    )
}

fn entry_type_has_commit_evidence(entry_type: u8) -> bool {
    matches!(
        entry_type,
        ENTRY_TYPE_WRITE_SET_WITH_CE | ENTRY_TYPE_WRITE_SET_WITH_CE_AND_CLAIMS
    )
}

/// Header of a serialised public domain (see docs/formats.md).
///
/// On serialisation a digest the entry type calls for but which is `None` is written as 32 zero bytes (CCF's
/// "no claims"); a digest the entry type does not carry is not written. Deserialisation returns `Some` exactly
/// for the digests the entry type carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainHeader {
    /// One of the `ENTRY_TYPE_*` constants.
    pub entry_type: u8,
    /// The transaction's version (seqno).
    pub version: Version,
    /// Digest of the application's claims, when the entry type carries one.
    pub claims_digest: Option<[u8; 32]>,
    /// SHA-256 of the commit evidence string, when the entry type carries one.
    pub commit_evidence_digest: Option<[u8; 32]>,
    /// CCF's max conflict version field, carried as given (serialised as an i64).
    pub max_conflict_version: i64,
}

impl DomainHeader {
    /// The header of a current-format write set at `version`.
    pub fn write_set(
        version: Version,
        claims_digest: [u8; 32],
        commit_evidence_digest: [u8; 32],
        max_conflict_version: i64,
    ) -> Self {
        DomainHeader {
            entry_type: ENTRY_TYPE_WRITE_SET_WITH_CE_AND_CLAIMS,
            version,
            claims_digest: Some(claims_digest),
            commit_evidence_digest: Some(commit_evidence_digest),
            max_conflict_version,
        }
    }
}

/// The writes of one transaction, per map, in deterministic order. `None` is a removal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteSet {
    /// The writes per map name, in name order (the order CCF serialises them in).
    pub maps: BTreeMap<String, MapWrites>,
}

/// The writes of one transaction to one map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapWrites {
    /// Carried through the ledger format for CCF compatibility; Consort sets it to the store version the
    /// transaction started from and never interprets it.
    pub read_version: u64,
    /// Each key written (`Some(value)`) or removed (`None`), in key order.
    pub writes: BTreeMap<Key, Option<Value>>,
}

impl WriteSet {
    /// True when no map has a write or a removal.
    pub fn is_empty(&self) -> bool {
        self.maps.values().all(|m| m.writes.is_empty())
    }

    /// Number of writes and removals over all maps.
    pub fn len(&self) -> usize {
        self.maps.values().map(|m| m.writes.len()).sum()
    }

    pub(crate) fn map_mut(&mut self, map: &str) -> &mut MapWrites {
        // Avoid allocating the name on the hot path when the map is already there.
        if !self.maps.contains_key(map) {
            self.maps.insert(map.to_owned(), MapWrites::default());
        }
        // invariant: inserted just above; a second lookup keeps the name unallocated when the map exists.
        self.maps.get_mut(map).expect("map inserted above")
    }

    /// Records a write of `v` at `k` in `map` (replacing an earlier write of the same key).
    pub fn put(&mut self, map: &str, k: &[u8], v: &[u8]) {
        self.map_mut(map).writes.insert(k.to_vec(), Some(v.to_vec()));
    }

    /// Records a removal of `k` from `map`.
    pub fn remove(&mut self, map: &str, k: &[u8]) {
        self.map_mut(map).writes.insert(k.to_vec(), None);
    }

    /// The public half: a copy holding only the `public:` maps.
    pub fn public_part(&self) -> WriteSet {
        self.filtered(Domain::Public)
    }

    /// The private half: a copy holding only the non-`public:` maps.
    pub fn private_part(&self) -> WriteSet {
        self.filtered(Domain::Private)
    }

    fn filtered(&self, domain: Domain) -> WriteSet {
        WriteSet {
            maps: self
                .maps
                .iter()
                .filter(|(n, _)| domain.holds(n))
                .map(|(n, m)| (n.clone(), m.clone()))
                .collect(),
        }
    }

    /// Header plus the public maps, in CCF's public-domain format.
    ///
    /// Panics if `header.entry_type` is not a write-set entry type (0, 2, 3 or 4): that is a programmer error.
    pub fn serialise_public(&self, header: &DomainHeader) -> Vec<u8> {
        assert!(
            matches!(header.entry_type, 0 | 2 | 3 | 4),
            "serialise_public: entry type {} is not a write-set entry type",
            header.entry_type
        );
        let mut w = Writer::with_capacity(1 + 8 + 2 * DIGEST_SIZE + 8 + self.serialised_maps_size(Domain::Public));
        w.u8(header.entry_type);
        w.i64(header.version as i64);
        if entry_type_has_claims(header.entry_type) {
            w.raw(&header.claims_digest.unwrap_or([0; DIGEST_SIZE]));
        }
        if entry_type_has_commit_evidence(header.entry_type) {
            w.raw(&header.commit_evidence_digest.unwrap_or([0; DIGEST_SIZE]));
        }
        w.i64(header.max_conflict_version);
        self.serialise_maps(&mut w, Domain::Public);
        w.buf
    }

    /// The non-public maps, without a header; an empty Vec when there are none.
    pub fn serialise_private(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(self.serialised_maps_size(Domain::Private));
        self.serialise_maps(&mut w, Domain::Private);
        w.buf
    }

    fn serialised_maps_size(&self, domain: Domain) -> usize {
        self.maps
            .iter()
            .filter(|(n, _)| domain.holds(n))
            .map(|(n, m)| {
                8 + n.len()
                    + 8 * 4
                    + m.writes
                        .iter()
                        .map(|(k, v)| 8 + k.len() + v.as_ref().map_or(0, |v| 8 + v.len()))
                        .sum::<usize>()
            })
            .sum()
    }

    fn serialise_maps(&self, w: &mut Writer, domain: Domain) {
        for (name, map) in self.maps.iter().filter(|(n, _)| domain.holds(n)) {
            w.sized(name.as_bytes());
            w.u64(map.read_version);
            w.u64(0); // read count: read sets are not part of ledger entries
            let removes = map.writes.values().filter(|v| v.is_none()).count();
            w.u64((map.writes.len() - removes) as u64);
            for (k, v) in &map.writes {
                if let Some(v) = v {
                    w.sized(k);
                    w.sized(v);
                }
            }
            w.u64(removes as u64);
            for (k, v) in &map.writes {
                if v.is_none() {
                    w.sized(k);
                }
            }
        }
    }

    /// Parses a public domain produced by [`WriteSet::serialise_public`] or by CCF.
    ///
    /// Rejects snapshots (entry type 1), unknown entry types, negative versions, non-`public:` maps, read sets,
    /// duplicate maps or keys, and trailing garbage.
    pub fn deserialise_public(bytes: &[u8]) -> Result<(DomainHeader, WriteSet), KvError> {
        let mut r = Reader::new(bytes);
        let header = read_header(&mut r)?;
        let ws = read_maps(&mut r, Domain::Public)?;
        Ok((header, ws))
    }

    /// Parses a private domain plaintext (the per-map sequence of non-`public:` maps, no header).
    pub fn deserialise_private(bytes: &[u8]) -> Result<WriteSet, KvError> {
        read_maps(&mut Reader::new(bytes), Domain::Private)
    }

    /// Adds `other`'s writes to this write set; on the same key `other` wins. Used to join the public and
    /// private halves of one transaction.
    pub fn merge(&mut self, other: WriteSet) {
        for (name, theirs) in other.maps {
            match self.maps.get_mut(&name) {
                Some(ours) => {
                    ours.read_version = theirs.read_version;
                    ours.writes.extend(theirs.writes);
                }
                None => {
                    self.maps.insert(name, theirs);
                }
            }
        }
    }
}

/// The writes of one transaction as a ledger entry lists them: per map, the keys written (`Some`) or removed
/// (`None`). Cheaper to build and to apply than a [`WriteSet`] (no B-trees per transaction): for replicas that
/// apply entries they did not execute ([`crate::Store::apply_batch`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    /// Each map written, with its writes, in the order of the entry.
    pub maps: Vec<(String, BatchWrites)>,
}

/// One map's writes in a [`WriteBatch`]: each key at most once; `None` is a removal.
pub type BatchWrites = Vec<(Key, Option<Value>)>;

impl WriteBatch {
    /// Parses a private domain plaintext, with the checks of [`WriteSet::deserialise_private`]: non-public maps,
    /// each at most once, no read sets, no key written or removed twice in a map, no trailing garbage.
    pub fn deserialise_private(bytes: &[u8]) -> Result<WriteBatch, KvError> {
        let mut r = Reader::new(bytes);
        let mut batch = WriteBatch::default();
        while !r.is_empty() {
            let name = r.map_name()?;
            check_domain(&name, Domain::Private)?;
            if batch.maps.iter().any(|(n, _)| *n == name) {
                return Err(WireFault::MapTwice(name).into());
            }
            let _read_version = r.u64("read version")?;
            let read_count = r.u64("read count")?;
            if read_count != 0 {
                return Err(WireFault::ReadCount {
                    map: name,
                    count: read_count,
                }
                .into());
            }
            let write_count = r.count(MIN_WRITE_BYTES, "write count")?;
            let mut writes = Vec::with_capacity(write_count);
            for _ in 0..write_count {
                let k = r.sized("key")?;
                let v = r.sized("value")?;
                writes.push((k.to_vec(), Some(v.to_vec())));
            }
            let remove_count = r.count(MIN_REMOVE_BYTES, "remove count")?;
            writes.reserve(remove_count);
            for _ in 0..remove_count {
                writes.push((r.sized("removed key")?.to_vec(), None));
            }
            if writes.len() > 1 {
                writes.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                if writes.windows(2).any(|w| w[0].0 == w[1].0) {
                    return Err(WireFault::KeyInBatchTwice(name).into());
                }
            }
            batch.maps.push((name, writes));
        }
        Ok(batch)
    }

    /// Adds the maps of `ws` (the other domain of the same transaction).
    pub fn extend(&mut self, ws: WriteSet) {
        self.maps
            .extend(ws.maps.into_iter().map(|(n, m)| (n, m.writes.into_iter().collect())));
    }

    /// Number of writes and removals over all maps.
    pub fn len(&self) -> usize {
        self.maps.iter().map(|(_, w)| w.len()).sum()
    }

    /// Whether no map has a write or removal.
    pub fn is_empty(&self) -> bool {
        self.maps.iter().all(|(_, w)| w.is_empty())
    }
}

impl From<WriteSet> for WriteBatch {
    fn from(ws: WriteSet) -> Self {
        let mut batch = WriteBatch::default();
        batch.extend(ws);
        batch
    }
}

fn read_header(r: &mut Reader<'_>) -> Result<DomainHeader, KvError> {
    let entry_type = r.u8("entry type")?;
    match entry_type {
        ENTRY_TYPE_WRITE_SET
        | ENTRY_TYPE_WRITE_SET_WITH_CLAIMS
        | ENTRY_TYPE_WRITE_SET_WITH_CE
        | ENTRY_TYPE_WRITE_SET_WITH_CE_AND_CLAIMS => {}
        ENTRY_TYPE_SNAPSHOT => {
            return Err(WireFault::SnapshotNotWriteSet.into());
        }
        other => return Err(WireFault::UnknownEntryType(other).into()),
    }
    let version = read_version(r, "version")?;
    let claims_digest = if entry_type_has_claims(entry_type) {
        Some(r.array("claims digest")?)
    } else {
        None
    };
    let commit_evidence_digest = if entry_type_has_commit_evidence(entry_type) {
        Some(r.array("commit evidence digest")?)
    } else {
        None
    };
    let max_conflict_version = r.i64("max conflict version")?;
    Ok(DomainHeader {
        entry_type,
        version,
        claims_digest,
        commit_evidence_digest,
        max_conflict_version,
    })
}

/// An i64 version that must not be negative.
pub(crate) fn read_version(r: &mut Reader<'_>, what: &'static str) -> Result<Version, KvError> {
    let value = r.i64(what)?;
    u64::try_from(value).map_err(|_| WireFault::NegativeVersion { what, value }.into())
}

/// The two halves of a ledger entry or snapshot: `public:` maps in the clear, all other maps encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// The `public:` maps, in the clear.
    Public,
    /// All other maps, encrypted in the ledger.
    Private,
}

impl Domain {
    /// Whether the map `name` belongs in this domain.
    pub(crate) fn holds(self, name: &str) -> bool {
        is_public_map(name) == (self == Domain::Public)
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Domain::Public => "public",
            Domain::Private => "private",
        }
    }

    /// The other half.
    pub(crate) fn other(self) -> Domain {
        match self {
            Domain::Public => Domain::Private,
            Domain::Private => Domain::Public,
        }
    }
}

pub(crate) fn check_domain(name: &str, domain: Domain) -> Result<(), KvError> {
    if !domain.holds(name) {
        return Err(WireFault::WrongDomain {
            map: name.to_owned(),
            domain,
        }
        .into());
    }
    Ok(())
}

fn read_maps(r: &mut Reader<'_>, domain: Domain) -> Result<WriteSet, KvError> {
    let mut ws = WriteSet::default();
    while !r.is_empty() {
        let name = r.map_name()?;
        check_domain(&name, domain)?;
        if ws.maps.contains_key(&name) {
            return Err(WireFault::MapTwice(name).into());
        }
        let read_version = r.u64("read version")?;
        let read_count = r.u64("read count")?;
        if read_count != 0 {
            return Err(WireFault::ReadCount {
                map: name,
                count: read_count,
            }
            .into());
        }
        let mut writes = BTreeMap::new();
        let write_count = r.count(MIN_WRITE_BYTES, "write count")?;
        for _ in 0..write_count {
            let k = r.sized("key")?;
            let v = r.sized("value")?;
            if writes.insert(k.to_vec(), Some(v.to_vec())).is_some() {
                return Err(WireFault::KeyWrittenTwice(name).into());
            }
        }
        let remove_count = r.count(MIN_REMOVE_BYTES, "remove count")?;
        for _ in 0..remove_count {
            let k = r.sized("removed key")?;
            if writes.insert(k.to_vec(), None).is_some() {
                return Err(WireFault::KeyRemovedTwice(name).into());
            }
        }
        ws.maps.insert(name, MapWrites { read_version, writes });
    }
    Ok(ws)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn le(v: u64) -> [u8; 8] {
        v.to_le_bytes()
    }

    /// Hand-assembled bytes for a tiny write set, field by field from docs/formats.md.
    #[test]
    fn write_batch_parses_what_write_set_parses() {
        let mut ws = WriteSet::default();
        ws.put("b", b"k2", b"v");
        ws.put("b", b"k1", b"");
        ws.remove("b", b"gone");
        ws.put("a", b"x", b"y");
        ws.put("public:p", b"x", b"y");
        let private = ws.serialise_private();
        let batch = WriteBatch::deserialise_private(&private).unwrap();
        let mut expected = WriteBatch::from(ws.private_part());
        expected.maps.sort();
        let mut got = batch.clone();
        got.maps.sort();
        assert_eq!(got, expected);
        assert_eq!(batch.len(), 4);
        // Whatever WriteSet refuses, WriteBatch refuses.
        let twice = [private.clone(), private.clone()].concat();
        assert!(WriteBatch::deserialise_private(&twice).is_err());
        for cut in 1..private.len() {
            assert_eq!(
                WriteBatch::deserialise_private(&private[..cut]).is_ok(),
                WriteSet::deserialise_private(&private[..cut]).is_ok(),
                "cut at {cut}"
            );
        }
        let mut dup = WriteSet::default();
        dup.put("m", b"k", b"v");
        let mut bytes = dup.serialise_private();
        // Turn "1 write, 0 removals" into "1 write, 1 removal of the same key".
        bytes.truncate(bytes.len() - 8);
        bytes.extend_from_slice(&1u64.to_le_bytes());
        bytes.extend_from_slice(&1u64.to_le_bytes());
        bytes.push(b'k');
        assert!(WriteSet::deserialise_private(&bytes).is_err());
        assert!(WriteBatch::deserialise_private(&bytes).is_err());
        let public = ws.serialise_public(&DomainHeader::write_set(1, [0; 32], [0; 32], 0));
        assert!(WriteBatch::deserialise_private(&public).is_err());
    }

    #[test]
    fn golden_public_and_private_bytes() {
        let mut ws = WriteSet::default();
        ws.put("public:t", b"k", b"vv");
        ws.remove("public:t", b"gone");
        ws.put("priv", b"a", b"");
        ws.maps.get_mut("public:t").unwrap().read_version = 7;
        let header = DomainHeader::write_set(5, [0xcc; 32], [0xee; 32], 3);

        let mut expected = vec![4u8];
        expected.extend(le(5)); // version
        expected.extend([0xcc; 32]); // claims digest
        expected.extend([0xee; 32]); // commit evidence digest
        expected.extend(le(3)); // max conflict version
        expected.extend(le(8));
        expected.extend(b"public:t");
        expected.extend(le(7)); // read version
        expected.extend(le(0)); // read count
        expected.extend(le(1)); // write count
        expected.extend(le(1));
        expected.extend(b"k");
        expected.extend(le(2));
        expected.extend(b"vv");
        expected.extend(le(1)); // remove count
        expected.extend(le(4));
        expected.extend(b"gone");
        let public = ws.serialise_public(&header);
        assert_eq!(public, expected);

        let mut expected_private = Vec::new();
        expected_private.extend(le(4));
        expected_private.extend(b"priv");
        expected_private.extend(le(0));
        expected_private.extend(le(0));
        expected_private.extend(le(1));
        expected_private.extend(le(1));
        expected_private.extend(b"a");
        expected_private.extend(le(0));
        expected_private.extend(le(0));
        let private = ws.serialise_private();
        assert_eq!(private, expected_private);

        let (h, mut back) = WriteSet::deserialise_public(&public).unwrap();
        assert_eq!(h, header);
        back.merge(WriteSet::deserialise_private(&private).unwrap());
        assert_eq!(back, ws);
    }

    #[test]
    fn no_private_maps_means_empty_private_domain() {
        let mut ws = WriteSet::default();
        ws.put("public:x", b"1", b"2");
        assert!(ws.serialise_private().is_empty());
        assert_eq!(WriteSet::deserialise_private(&[]).unwrap(), WriteSet::default());
    }

    #[test]
    fn header_digests_follow_entry_type() {
        let ws = WriteSet::default();
        let header = DomainHeader {
            entry_type: ENTRY_TYPE_WRITE_SET,
            version: 9,
            claims_digest: None,
            commit_evidence_digest: None,
            max_conflict_version: -1,
        };
        let bytes = ws.serialise_public(&header);
        assert_eq!(bytes.len(), 17);
        assert_eq!(WriteSet::deserialise_public(&bytes).unwrap().0, header);

        let header = DomainHeader {
            entry_type: 4,
            ..header
        };
        let (back, _) = WriteSet::deserialise_public(&ws.serialise_public(&header)).unwrap();
        assert_eq!(back.claims_digest, Some([0; 32]));
        assert_eq!(back.commit_evidence_digest, Some([0; 32]));
    }

    #[test]
    fn rejects_wrong_domain_duplicates_reads_and_truncation() {
        let mut ws = WriteSet::default();
        ws.put("private", b"k", b"v");
        let private = ws.serialise_private();
        // A private map in the public domain is refused, and vice versa.
        let mut public = WriteSet::default().serialise_public(&DomainHeader::write_set(1, [0; 32], [0; 32], 0));
        public.extend(&private);
        assert!(WriteSet::deserialise_public(&public).is_err());
        let mut pws = WriteSet::default();
        pws.put("public:p", b"k", b"v");
        let pbytes = pws.serialise_public(&DomainHeader::write_set(1, [0; 32], [0; 32], 0));
        assert!(WriteSet::deserialise_private(&pbytes[81..]).is_err());
        // Duplicate map.
        let mut twice = private.clone();
        twice.extend(&private);
        assert!(WriteSet::deserialise_private(&twice).is_err());
        // Non-zero read count.
        let mut reads = private.clone();
        reads[8 + 7 + 8] = 1;
        assert!(WriteSet::deserialise_private(&reads).is_err());
        // Every truncation fails.
        for cut in 1..private.len() {
            assert!(WriteSet::deserialise_private(&private[..cut]).is_err(), "cut at {cut}");
        }
        // Cutting right after the 81-byte header leaves a valid empty write set; any other cut fails.
        for cut in (0..pbytes.len()).filter(|c| *c != 81) {
            assert!(WriteSet::deserialise_public(&pbytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn rejects_snapshot_unknown_entry_type_and_negative_version() {
        let mut bytes = WriteSet::default().serialise_public(&DomainHeader::write_set(1, [0; 32], [0; 32], 0));
        bytes[0] = ENTRY_TYPE_SNAPSHOT;
        assert!(WriteSet::deserialise_public(&bytes).is_err());
        bytes[0] = 9;
        assert!(WriteSet::deserialise_public(&bytes).is_err());
        bytes[0] = 4;
        bytes[1..9].copy_from_slice(&(-1i64).to_le_bytes());
        assert!(WriteSet::deserialise_public(&bytes).is_err());
    }

    #[test]
    fn merge_joins_halves_and_later_wins() {
        let mut a = WriteSet::default();
        a.put("public:a", b"1", b"x");
        let mut b = WriteSet::default();
        b.put("b", b"1", b"y");
        b.remove("public:a", b"1");
        a.merge(b);
        assert_eq!(a.maps.len(), 2);
        assert_eq!(a.maps["public:a"].writes[&b"1".to_vec()], None);
        assert_eq!(a.len(), 2);
        assert!(!a.is_empty());
        assert!(WriteSet::default().is_empty());
    }
}
