//! A minimal reader and writer of CCF's public domain (header and per-map write sets), used by the auditor and
//! the test ledger builder. The key-value store's own serialiser lives in consort-kv; this one only needs tables.

use crate::limits::{MAX_TABLES_PER_DOMAIN, MAX_TABLE_NAME_SIZE};
use crate::reader::Reader;
use crate::LedgerError;

/// CCF entry types (first byte of the public domain).
pub const ENTRY_TYPE_WRITE_SET: u8 = 0;
pub const ENTRY_TYPE_SNAPSHOT: u8 = 1;
pub const ENTRY_TYPE_WRITE_SET_WITH_CLAIMS: u8 = 2;
pub const ENTRY_TYPE_WRITE_SET_WITH_COMMIT_EVIDENCE: u8 = 3;
pub const ENTRY_TYPE_WRITE_SET_WITH_COMMIT_EVIDENCE_AND_CLAIMS: u8 = 4;

/// Writes and removals of one map in one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableWrites {
    pub name: String,
    pub read_version: u64,
    pub writes: Vec<(Vec<u8>, Vec<u8>)>,
    pub removes: Vec<Vec<u8>>,
}

impl TableWrites {
    pub fn new(name: &str) -> Self {
        TableWrites {
            name: name.to_string(),
            ..Default::default()
        }
    }

    pub fn write(mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        self.writes.push((key.into(), value.into()));
        self
    }

    pub fn remove(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.removes.push(key.into());
        self
    }

    /// The value written at `key`, if any.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.writes
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }

    fn write_to(&self, out: &mut Vec<u8>) {
        put_sized(out, self.name.as_bytes());
        out.extend_from_slice(&self.read_version.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes()); // read count: CCF never records reads in the ledger
        out.extend_from_slice(&(self.writes.len() as u64).to_le_bytes());
        for (k, v) in &self.writes {
            put_sized(out, k);
            put_sized(out, v);
        }
        out.extend_from_slice(&(self.removes.len() as u64).to_le_bytes());
        for k in &self.removes {
            put_sized(out, k);
        }
    }
}

fn put_sized(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// A decoded public domain: header fields and the public maps' write sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicDomain {
    pub entry_type: u8,
    pub version: i64,
    pub claims_digest: Option<[u8; 32]>,
    pub commit_evidence_digest: Option<[u8; 32]>,
    pub max_conflict_version: i64,
    pub tables: Vec<TableWrites>,
}

impl PublicDomain {
    /// A type-4 public domain (commit evidence and claims), as Consort writes.
    pub fn new(version: u64, commit_evidence_digest: [u8; 32], tables: Vec<TableWrites>) -> Self {
        PublicDomain {
            entry_type: ENTRY_TYPE_WRITE_SET_WITH_COMMIT_EVIDENCE_AND_CLAIMS,
            version: version as i64,
            claims_digest: Some([0u8; 32]),
            commit_evidence_digest: Some(commit_evidence_digest),
            max_conflict_version: version as i64 - 1,
            tables,
        }
    }

    pub fn table(&self, name: &str) -> Option<&TableWrites> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// Serialises with tables in name order, as CCF does.
    pub fn serialise(&self) -> Vec<u8> {
        let mut out = vec![self.entry_type];
        out.extend_from_slice(&self.version.to_le_bytes());
        if let Some(c) = &self.claims_digest {
            out.extend_from_slice(c);
        }
        if let Some(c) = &self.commit_evidence_digest {
            out.extend_from_slice(c);
        }
        out.extend_from_slice(&self.max_conflict_version.to_le_bytes());
        let mut tables: Vec<&TableWrites> = self.tables.iter().collect();
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        for t in tables {
            t.write_to(&mut out);
        }
        out
    }

    /// Parses a write-set public domain (entry types 0, 2, 3, 4; snapshots are rejected).
    pub fn parse(bytes: &[u8]) -> Result<Self, LedgerError> {
        let bad = |m: String| LedgerError::MalformedPublicDomain(m);
        let mut r = Reader::new(bytes, "public domain");
        let entry_type = r.u8()?;
        let (has_claims, has_evidence) = match entry_type {
            ENTRY_TYPE_WRITE_SET => (false, false),
            ENTRY_TYPE_WRITE_SET_WITH_CLAIMS => (true, false),
            ENTRY_TYPE_WRITE_SET_WITH_COMMIT_EVIDENCE => (false, true),
            ENTRY_TYPE_WRITE_SET_WITH_COMMIT_EVIDENCE_AND_CLAIMS => (true, true),
            ENTRY_TYPE_SNAPSHOT => return Err(bad("snapshot entry in a ledger chunk".into())),
            other => return Err(bad(format!("unknown entry type {other}"))),
        };
        let version = r.i64()?;
        let claims_digest = if has_claims { Some(r.array()?) } else { None };
        let commit_evidence_digest = if has_evidence { Some(r.array()?) } else { None };
        let max_conflict_version = r.i64()?;
        let mut tables: Vec<TableWrites> = Vec::new();
        while !r.is_empty() {
            if tables.len() >= MAX_TABLES_PER_DOMAIN {
                return Err(bad(format!("more than {MAX_TABLES_PER_DOMAIN} tables")));
            }
            let name = r.sized()?;
            if name.len() > MAX_TABLE_NAME_SIZE {
                return Err(bad(format!("table name of {} bytes", name.len())));
            }
            let name = std::str::from_utf8(name)
                .map_err(|_| bad("table name is not UTF-8".into()))?
                .to_string();
            if tables.last().is_some_and(|t| t.name >= name) {
                return Err(bad(format!("table {name} out of order or repeated")));
            }
            let read_version = r.u64()?;
            let read_count = r.u64()?;
            if read_count != 0 {
                return Err(bad(format!("table {name}: unexpected read count {read_count}")));
            }
            // Counts are untrusted: entries are pushed one by one, each read bounds-checked, no pre-allocation.
            let write_count = r.u64()?;
            let mut writes = Vec::new();
            for _ in 0..write_count {
                let k = r.sized()?.to_vec();
                let v = r.sized()?.to_vec();
                writes.push((k, v));
            }
            let remove_count = r.u64()?;
            let mut removes = Vec::new();
            for _ in 0..remove_count {
                removes.push(r.sized()?.to_vec());
            }
            tables.push(TableWrites {
                name,
                read_version,
                writes,
                removes,
            });
        }
        Ok(PublicDomain {
            entry_type,
            version,
            claims_digest,
            commit_evidence_digest,
            max_conflict_version,
            tables,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_sorts_tables() {
        let pd = PublicDomain::new(
            5,
            [3u8; 32],
            vec![
                TableWrites::new("public:z")
                    .write(b"k".to_vec(), b"v".to_vec())
                    .remove(b"gone".to_vec()),
                TableWrites::new("public:a").write(b"x".to_vec(), b"".to_vec()),
            ],
        );
        let bytes = pd.serialise();
        let back = PublicDomain::parse(&bytes).unwrap();
        assert_eq!(back.tables[0].name, "public:a");
        assert_eq!(back.table("public:z").unwrap().get(b"k"), Some(&b"v"[..]));
        assert_eq!(back.table("public:z").unwrap().removes, vec![b"gone".to_vec()]);
        assert_eq!((back.version, back.max_conflict_version), (5, 4));
        assert_eq!(back.commit_evidence_digest, Some([3u8; 32]));
    }

    #[test]
    fn rejects_huge_counts_without_allocating() {
        let mut bytes = PublicDomain::new(1, [0u8; 32], vec![]).serialise();
        bytes.extend_from_slice(&1u64.to_le_bytes());
        bytes.push(b't');
        bytes.extend_from_slice(&0u64.to_le_bytes());
        bytes.extend_from_slice(&0u64.to_le_bytes());
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(PublicDomain::parse(&bytes).is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = PublicDomain::parse(&bytes);
        }
    }
}
