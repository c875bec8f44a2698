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
