//! What is wrong with bytes that should be a write set, batch or snapshot: the cause inside
//! [`crate::KvError::Malformed`], one variant per check, whose text names the field and the offset.

use crate::write_set::Domain;
use crate::Version;

/// Why serialised bytes from a peer or the disk are not a valid write set, batch or snapshot. Fields are named as
/// the codec reads them (`key size`, `map version`, ...).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum WireFault {
    /// A field needs more bytes than remain.
    #[error("{what}: need {need} bytes at offset {offset}, only {left} left")]
    Truncated {
        /// The field.
        what: &'static str,
        /// The bytes it needs.
        need: usize,
        /// Where it starts.
        offset: usize,
        /// The bytes that remain.
        left: usize,
    },
    /// A length prefix larger than the bytes that remain.
    #[error("{what}: length {len} at offset {offset} exceeds the {left} bytes left")]
    LengthTooLong {
        /// The field.
        what: &'static str,
        /// The length read.
        len: u64,
        /// Where the length prefix starts.
        offset: usize,
        /// The bytes that remain after it.
        left: usize,
    },
    /// An item count that cannot fit in the bytes that remain.
    #[error("{what}: count {count} cannot fit in the {left} bytes left")]
    CountTooLarge {
        /// The field.
        what: &'static str,
        /// The count read.
        count: u64,
        /// The bytes that remain.
        left: usize,
    },
    /// A map name that is not UTF-8.
    #[error("map name is not UTF-8")]
    MapNameNotUtf8(#[source] std::str::Utf8Error),
    /// A version field (i64 on the wire) that is negative.
    #[error("negative {what} {value}")]
    NegativeVersion {
        /// The field.
        what: &'static str,
        /// The value read.
        value: i64,
    },
    /// A map in the other domain's half (a private map in the public domain or the reverse).
    #[error("{} map {map:?} in the {} domain", .domain.other().name(), .domain.name())]
    WrongDomain {
        /// The map.
        map: String,
        /// The domain being read.
        domain: Domain,
    },
    /// A map that appears twice in one domain.
    #[error("map {0:?} appears twice")]
    MapTwice(String),
    /// A write set map with a read set (CCF never serialises one).
    #[error("map {map:?}: unexpected read count {count}")]
    ReadCount {
        /// The map.
        map: String,
        /// The read count.
        count: u64,
    },
    /// A key written twice in one map of a write set.
    #[error("map {0:?}: key written twice")]
    KeyWrittenTwice(String),
    /// A key removed twice, or written and removed, in one map of a write set.
    #[error("map {0:?}: key both written and removed, or removed twice")]
    KeyRemovedTwice(String),
    /// A key written or removed twice in one map of a private batch.
    #[error("map {0:?}: a key is written or removed twice")]
    KeyInBatchTwice(String),
    /// A snapshot where a write set was expected.
    #[error("snapshot public domain where a write set was expected")]
    SnapshotNotWriteSet,
    /// An entry type this codec does not know.
    #[error("unknown entry type {0}")]
    UnknownEntryType(u8),
    /// Another entry type where a snapshot was expected.
    #[error("entry type {0} is not a snapshot")]
    NotSnapshot(u8),
    /// A snapshot's view history whose length is not a multiple of 8.
    #[error("view history is not a whole number of u64s")]
    ViewHistoryLength,
    /// A snapshot map whose version is after the snapshot's.
    #[error("map {map:?} version {version} is after the snapshot")]
    MapVersionAfterSnapshot {
        /// The map.
        map: String,
        /// Its version.
        version: Version,
    },
    /// A snapshot value too short to hold its version.
    #[error("versioned value of {0} bytes")]
    VersionedValueTooShort(usize),
    /// A snapshot tombstone (deleted key) that carries a value.
    #[error("tombstone with a value")]
    TombstoneWithValue,
    /// A snapshot key whose version is 0 or after the snapshot.
    #[error("key version {version} outside 1..={snapshot}")]
    KeyVersionOutOfRange {
        /// The key's version.
        version: Version,
        /// The snapshot's version.
        snapshot: Version,
    },
    /// A key that appears twice in one snapshot map.
    #[error("map {0:?}: key appears twice")]
    SnapshotKeyTwice(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KvError, WriteBatch, WriteSet};
    use std::error::Error as _;

    fn sized(bytes: &[u8]) -> Vec<u8> {
        let mut out = (bytes.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn a_truncated_field_is_named_with_its_offset() {
        let err = WriteBatch::deserialise_private(&[1, 0, 0]).unwrap_err();
        assert_eq!(
            err,
            KvError::Malformed(WireFault::Truncated {
                what: "map name",
                need: 8,
                offset: 0,
                left: 3
            })
        );
        assert_eq!(
            err.to_string(),
            "malformed serialised data: map name: need 8 bytes at offset 0, only 3 left"
        );
    }

    #[test]
    fn a_map_in_the_wrong_domain_names_both_domains() {
        let err = WriteBatch::deserialise_private(&sized(b"public:t")).unwrap_err();
        let KvError::Malformed(fault) = &err else {
            panic!("not malformed: {err:?}");
        };
        assert_eq!(
            *fault,
            WireFault::WrongDomain {
                map: "public:t".into(),
                domain: Domain::Private
            }
        );
        assert_eq!(
            err.to_string(),
            "malformed serialised data: public map \"public:t\" in the private domain"
        );
        // The fault is the error's source, so a caller walking the chain finds what was wrong.
        assert_eq!(err.source().and_then(|s| s.downcast_ref::<WireFault>()), Some(fault));
    }

    #[test]
    fn a_map_name_that_is_not_utf8_keeps_the_utf8_error() {
        let err = WriteBatch::deserialise_private(&sized(&[0xff, 0xfe])).unwrap_err();
        assert_eq!(err.to_string(), "malformed serialised data: map name is not UTF-8");
        let fault = err.source().expect("the fault is kept");
        assert!(
            fault.source().is_some_and(|s| s.is::<std::str::Utf8Error>()),
            "{fault:?}"
        );
    }

    #[test]
    fn a_snapshot_where_a_write_set_belongs_is_refused_by_type() {
        let err = WriteSet::deserialise_public(&[crate::ENTRY_TYPE_SNAPSHOT]).unwrap_err();
        assert_eq!(err, KvError::Malformed(WireFault::SnapshotNotWriteSet));
        let err = WriteSet::deserialise_public(&[0x7f]).unwrap_err();
        assert_eq!(err, KvError::Malformed(WireFault::UnknownEntryType(0x7f)));
        assert_eq!(err.to_string(), "malformed serialised data: unknown entry type 127");
    }
}
