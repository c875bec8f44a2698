//! The snapshots directory: committed periodic snapshots as `snapshot_<seqno>_<evidence seqno>.committed` files
//! (each an encoded Raft snapshot whose bundle digest the ledger records at the evidence seqno), written atomically,
//! the newest few kept.

use std::path::{Path, PathBuf};

/// Taking a snapshot file apart without the ledger secret, for offline tools (`consort ledger audit --snapshot`),
/// which reach the consensus crate only through the node.
pub use consort_consensus::{
    snapshot_file::{split_snapshot_file, SnapshotFileParts},
    ConsensusError,
};

/// A committed snapshot file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    pub seqno: u64,
    pub evidence: u64,
    pub path: PathBuf,
}

/// The file name of the committed snapshot at `seqno` whose evidence is at `evidence`.
pub fn committed_name(seqno: u64, evidence: u64) -> String {
    format!("snapshot_{seqno}_{evidence}.committed")
}

/// Parses a committed snapshot file name; anything else (temporary files, other names) is `None`.
pub fn parse_committed_name(name: &str) -> Option<(u64, u64)> {
    let rest = name.strip_prefix("snapshot_")?.strip_suffix(".committed")?;
    let (s, e) = rest.split_once('_')?;
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(s) || !digits(e) {
        return None;
    }
    let (seqno, evidence) = (s.parse().ok()?, e.parse().ok()?);
    (evidence > seqno).then_some((seqno, evidence))
}

/// Every committed snapshot file in `dir`, oldest first.
pub fn list_committed(dir: &Path) -> Vec<SnapshotFile> {
    let mut out: Vec<SnapshotFile> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let (seqno, evidence) = parse_committed_name(&name)?;
            Some(SnapshotFile {
                seqno,
                evidence,
                path: e.path(),
            })
        })
        .collect();
    out.sort_by_key(|f| (f.seqno, f.evidence));
    out
}

/// The newest committed snapshot file in `dir`.
pub fn latest_committed(dir: &Path) -> Option<SnapshotFile> {
    list_committed(dir).pop()
}

/// Writes a committed snapshot (atomically and durably), then deletes all but the newest `keep` (at least one).
/// Errors are logged: a missing snapshot only makes joiners start from a snapshot made on demand.
pub fn write_committed(dir: &Path, seqno: u64, evidence: u64, snapshot: &[u8], keep: usize) {
    let path = dir.join(committed_name(seqno, evidence));
    if let Err(err) = super::write_atomic(&path, snapshot) {
        tracing::warn!(%err, path = %path.display(), "could not write the snapshot");
        return;
    }
    let all = list_committed(dir);
    let surplus = all.len().saturating_sub(keep.max(1));
    for old in &all[..surplus] {
        if let Err(err) = std::fs::remove_file(&old.path) {
            tracing::warn!(%err, path = %old.path.display(), "could not delete an old snapshot");
        }
    }
}

/// What the ledger's latest evidence transaction records about a periodic snapshot (`{"hash", "version"}` in
/// `public:ccf.internal.snapshot_evidence`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordedEvidence {
    /// Seqno of the snapshot the evidence names.
    pub seqno: u64,
    /// SHA-256 of its bundle.
    pub digest: [u8; 32],
}

impl RecordedEvidence {
    /// Parses the evidence table's singleton value; `None` if it is not a well-formed evidence record.
    pub fn parse(value: &[u8]) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_slice(value).ok()?;
        let digest = hex::decode(v["hash"].as_str()?).ok()?.try_into().ok()?;
        Some(Self {
            seqno: v["version"].as_u64()?,
            digest,
        })
    }
}

/// Why a committed snapshot file on disk is not handed to a joiner (the host may have replaced or damaged it).
#[derive(Debug, thiserror::Error)]
pub enum UnusableSnapshot {
    #[error("{path}: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Malformed {
        path: PathBuf,
        /// Boxed: the consensus error is large, and this one is rare.
        #[source]
        source: Box<ConsensusError>,
    },
    #[error("{path}: the file is named for seqno {named} but holds the snapshot at {inside}")]
    Misnamed { path: PathBuf, named: u64, inside: u64 },
    #[error(
        "{path}: the ledger records no evidence for a snapshot at seqno {seqno} (its latest evidence: {latest:?})"
    )]
    NoEvidence {
        path: PathBuf,
        seqno: u64,
        latest: Option<u64>,
    },
    #[error("{path}: its digest {found} is not the {recorded} that the ledger's evidence records")]
    DigestMismatch {
        path: PathBuf,
        found: String,
        recorded: String,
    },
}

/// Reads `file` and checks it against `evidence` (the ledger's latest snapshot evidence): it must be a
/// well-formed snapshot file taken at the seqno its name gives, and its bundle digest must be the one the
/// evidence records. Returns the bytes to hand out.
pub fn read_verified(file: &SnapshotFile, evidence: Option<RecordedEvidence>) -> Result<Vec<u8>, UnusableSnapshot> {
    let path = || file.path.clone();
    let bytes = std::fs::read(&file.path).map_err(|source| UnusableSnapshot::Unreadable { path: path(), source })?;
    let parts = split_snapshot_file(&bytes).map_err(|source| UnusableSnapshot::Malformed {
        path: path(),
        source: Box::new(source),
    })?;
    if parts.seqno != file.seqno {
        return Err(UnusableSnapshot::Misnamed {
            path: path(),
            named: file.seqno,
            inside: parts.seqno,
        });
    }
    match evidence {
        Some(ev) if ev.seqno == file.seqno && ev.digest == parts.bundle_digest => Ok(bytes),
        Some(ev) if ev.seqno == file.seqno => Err(UnusableSnapshot::DigestMismatch {
            path: path(),
            found: hex::encode(parts.bundle_digest),
            recorded: hex::encode(ev.digest),
        }),
        other => Err(UnusableSnapshot::NoEvidence {
            path: path(),
            seqno: file.seqno,
            latest: other.map(|ev| ev.seqno),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_strangers_are_ignored() {
        assert_eq!(committed_name(10, 11), "snapshot_10_11.committed");
        assert_eq!(parse_committed_name("snapshot_10_11.committed"), Some((10, 11)));
        for bad in [
            "snapshot_10_11",
            "snapshot_10_11.committed.tmp",
            "snapshot_11_10.committed",
            "snapshot__11.committed",
            "snapshot_+1_2.committed",
            "snapshot_1_99999999999999999999999.committed",
            "ledger_1-5.committed",
        ] {
            assert_eq!(parse_committed_name(bad), None, "{bad}");
        }
    }

    /// A committed snapshot file of a sample ledger's state at its last signature, in `dir`, and its evidence.
    fn sample_snapshot(dir: &Path) -> (SnapshotFile, RecordedEvidence) {
        use consort_consensus::codec::{full_write_set, inspect};
        let ledger = consort_ledger::testing::sample_ledger(1, 3);
        let store = consort_kv::Store::new();
        for e in ledger.entries() {
            let ws = full_write_set(
                &ledger.service.secret,
                &e.bytes,
                &inspect(&e.bytes, e.view, e.seqno).unwrap(),
            );
            store.apply(e.seqno, &ws.unwrap()).unwrap();
        }
        let at = ledger.entries().last().unwrap();
        let bundle = consort_consensus::snapshot::build(
            &store,
            &ledger.service.secret.clone().into(),
            &at.bytes,
            at.view,
            at.seqno,
            vec![],
        )
        .unwrap();
        let mut snap = consort_consensus::eraftpb::Snapshot::default();
        snap.mut_metadata().index = at.seqno;
        snap.mut_metadata().term = at.view;
        let digest = consort_crypto::sha256(&bundle);
        snap.data = bundle.into();
        write_committed(
            dir,
            at.seqno,
            at.seqno + 1,
            &consort_consensus::encode_snapshot(&snap),
            3,
        );
        let evidence = RecordedEvidence {
            seqno: at.seqno,
            digest,
        };
        (latest_committed(dir).unwrap(), evidence)
    }

    #[test]
    fn a_snapshot_file_is_handed_out_only_if_the_ledger_records_its_digest() {
        let dir = tempfile::tempdir().unwrap();
        let (file, evidence) = sample_snapshot(dir.path());
        let bytes = read_verified(&file, Some(evidence)).unwrap();
        assert_eq!(bytes, std::fs::read(&file.path).unwrap());
        let value = serde_json::json!({"hash": hex::encode(evidence.digest), "version": evidence.seqno});
        assert_eq!(RecordedEvidence::parse(value.to_string().as_bytes()), Some(evidence));

        // No evidence, or evidence of another snapshot: the file is not vouched for.
        let err = read_verified(&file, None).unwrap_err();
        assert!(
            matches!(err, UnusableSnapshot::NoEvidence { latest: None, .. }),
            "{err}"
        );
        let newer = RecordedEvidence {
            seqno: evidence.seqno + 10,
            ..evidence
        };
        assert!(matches!(
            read_verified(&file, Some(newer)),
            Err(UnusableSnapshot::NoEvidence { .. })
        ));

        // The host flips a byte near the end (inside the encrypted state): the digest no longer matches.
        let mut tampered = bytes.clone();
        let at = tampered.len() - 20;
        tampered[at] ^= 1;
        std::fs::write(&file.path, &tampered).unwrap();
        let err = read_verified(&file, Some(evidence)).unwrap_err();
        assert!(matches!(err, UnusableSnapshot::DigestMismatch { .. }), "{err}");
        assert!(err.to_string().contains(&hex::encode(evidence.digest)), "{err}");

        // Garbage, or a genuine file renamed to claim another seqno.
        std::fs::write(&file.path, b"not a snapshot").unwrap();
        assert!(matches!(
            read_verified(&file, Some(evidence)),
            Err(UnusableSnapshot::Malformed { .. })
        ));
        std::fs::write(&file.path, &bytes).unwrap();
        let renamed = SnapshotFile {
            seqno: file.seqno - 1,
            ..file.clone()
        };
        assert!(matches!(
            read_verified(&renamed, Some(evidence)),
            Err(UnusableSnapshot::Misnamed { .. })
        ));
        std::fs::remove_file(&file.path).unwrap();
        assert!(matches!(
            read_verified(&file, Some(evidence)),
            Err(UnusableSnapshot::Unreadable { .. })
        ));
    }

    #[test]
    fn writing_keeps_the_newest_files_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("unrelated.txt"), b"x").unwrap();
        for (s, e) in [(100, 101), (200, 201), (300, 301), (400, 401)] {
            write_committed(dir.path(), s, e, format!("snap {s}").as_bytes(), 2);
        }
        let kept: Vec<(u64, u64)> = list_committed(dir.path())
            .iter()
            .map(|f| (f.seqno, f.evidence))
            .collect();
        assert_eq!(kept, vec![(300, 301), (400, 401)]);
        let latest = latest_committed(dir.path()).unwrap();
        assert_eq!(std::fs::read(latest.path).unwrap(), b"snap 400");
        assert!(dir.path().join("unrelated.txt").exists());
    }
}
