//! Reading a committed snapshot file without the ledger secret, for offline tools: the file is an encoded Raft
//! `Snapshot` whose data is the bundle of [`crate::snapshot`]; this splits it into the signature entry and the
//! snapshot entry, checking only their framing and that they agree on one (view, seqno). Whether the signature
//! verifies and the state matches it is the auditor's job (`consort_ledger::audit`).

use crate::limits::MAX_SNAPSHOT_SIZE;
use crate::snapshot::MAGIC;
use crate::vocab::{Seqno, TxId, View};
use crate::{ConsensusError, SnapshotFileError};
use consort_crypto::sha256;
use consort_ledger::parse_entry;
use protobuf::Message as _;
use raft::eraftpb::Snapshot;

/// Size of the bundle's fixed prefix: magic, then the u64 length of the signature entry.
const BUNDLE_PREFIX_SIZE: usize = 12;

/// A committed snapshot file taken apart (see [`split_snapshot_file`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFileParts {
    /// Seqno of the signature transaction the snapshot was taken at.
    pub seqno: u64,
    /// Its view.
    pub view: u64,
    /// The signature transaction's ledger entry, exactly as in the ledger.
    pub signature_entry: Vec<u8>,
    /// The snapshot entry (CCF's snapshot framing: public tables in clear, private ones encrypted).
    pub snapshot_entry: Vec<u8>,
    /// SHA-256 of the bundle: what the snapshot's evidence transaction records.
    pub bundle_digest: [u8; 32],
}

fn bad(e: SnapshotFileError) -> ConsensusError {
    ConsensusError::InvalidSnapshot(e)
}

/// Splits a committed snapshot file (`snapshot_<seqno>_<evidence>.committed`, or the snapshot a joiner keeps) into
/// its parts. Pure and secret-free: it checks the framing, that both entries parse whole, that the signature
/// entry is an ordinary entry and the snapshot entry a snapshot one at the same (view, seqno), and that Raft's
/// metadata names that transaction too.
pub fn split_snapshot_file(bytes: &[u8]) -> Result<SnapshotFileParts, ConsensusError> {
    if bytes.len() > MAX_SNAPSHOT_SIZE {
        return Err(ConsensusError::TooLarge {
            what: "snapshot file",
            size: bytes.len() as u64,
            limit: MAX_SNAPSHOT_SIZE as u64,
        });
    }
    let snap = Snapshot::parse_from_bytes(bytes).map_err(|e| bad(SnapshotFileError::NotARaftSnapshot(e.into())))?;
    let data: &[u8] = &snap.data;
    if data.len() < BUNDLE_PREFIX_SIZE || data[..4] != MAGIC {
        return Err(bad(SnapshotFileError::NotABundle));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&data[4..BUNDLE_PREFIX_SIZE]);
    let sig_len = u64::from_le_bytes(len);
    let rest = &data[BUNDLE_PREFIX_SIZE..];
    if sig_len > rest.len() as u64 {
        return Err(bad(SnapshotFileError::SignatureEntryLength));
    }
    let (sig_bytes, snap_bytes) = rest.split_at(sig_len as usize);
    let (sig, used) = parse_entry(sig_bytes).map_err(|e| bad(SnapshotFileError::SignatureEntry(e)))?;
    if used != sig_bytes.len() || sig.is_snapshot {
        return Err(bad(SnapshotFileError::SignatureEntryNotWhole));
    }
    let (entry, used) = parse_entry(snap_bytes).map_err(|e| bad(SnapshotFileError::SnapshotEntry(e)))?;
    if used != snap_bytes.len() || !entry.is_snapshot {
        return Err(bad(SnapshotFileError::SnapshotEntryNotWhole));
    }
    let txid = |view: u64, seqno: u64| TxId::new(View(view), Seqno(seqno));
    if (entry.view, entry.seqno) != (sig.view, sig.seqno) {
        return Err(bad(SnapshotFileError::EntryMismatch {
            snapshot: txid(entry.view, entry.seqno),
            signature: txid(sig.view, sig.seqno),
        }));
    }
    let meta = snap.get_metadata();
    if (meta.term, meta.index) != (sig.view, sig.seqno) {
        return Err(bad(SnapshotFileError::MetadataMismatch {
            metadata: txid(meta.term, meta.index),
            bundle: txid(sig.view, sig.seqno),
        }));
    }
    Ok(SnapshotFileParts {
        seqno: sig.seqno,
        view: sig.view,
        signature_entry: sig_bytes.to_vec(),
        snapshot_entry: snap_bytes.to_vec(),
        bundle_digest: sha256(data),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{full_write_set, inspect};
    use crate::persisted::encode_snapshot;
    use consort_kv::Store;
    use consort_ledger::testing::sample_ledger;
    use consort_ledger::EntryView;

    /// A snapshot file of a sample ledger's state at its last signature, as the node writes one.
    fn snapshot_file() -> (Vec<u8>, Vec<u8>, u64, u64) {
        let b = sample_ledger(1, 3);
        let secret = &b.service.secret;
        let store = Store::new();
        for e in b.entries() {
            let info = inspect(&e.bytes, e.view, e.seqno).unwrap();
            store
                .apply(e.seqno, &full_write_set(secret, &e.bytes, &info).unwrap())
                .unwrap();
        }
        let sig = b.entries().last().unwrap();
        assert!(sig.is_signature);
        let bundle = crate::snapshot::build(
            &store,
            &consort_ledger::LedgerSecrets::new(secret.clone()),
            &sig.bytes,
            sig.view,
            sig.seqno,
            vec![],
        )
        .unwrap();
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = sig.seqno;
        snap.mut_metadata().term = sig.view;
        snap.data = bundle.into();
        (encode_snapshot(&snap), sig.bytes.clone(), sig.view, sig.seqno)
    }

    #[test]
    fn a_snapshot_file_splits_into_its_entries() {
        let (file, sig_bytes, view, seqno) = snapshot_file();
        let parts = split_snapshot_file(&file).unwrap();
        assert_eq!((parts.view, parts.seqno), (view, seqno));
        assert_eq!(parts.signature_entry, sig_bytes);
        let (entry, _): (EntryView<'_>, usize) = parse_entry(&parts.snapshot_entry).unwrap();
        assert!(entry.is_snapshot);
        let snap = Snapshot::parse_from_bytes(&file).unwrap();
        assert_eq!(parts.bundle_digest, sha256(&snap.data));
    }

    #[test]
    fn damaged_or_foreign_files_are_refused() {
        let (file, _, view, seqno) = snapshot_file();
        assert!(split_snapshot_file(b"not a snapshot at all").is_err());
        let mut snap = Snapshot::parse_from_bytes(&file).unwrap();
        let data = snap.data.to_vec();
        // Wrong magic, a length past the end, a truncated snapshot entry, metadata naming another transaction.
        let mut cases = vec![];
        let mut wrong_magic = data.clone();
        wrong_magic[0] ^= 1;
        cases.push(("magic", wrong_magic, (view, seqno)));
        let mut long = data.clone();
        long[4..12].copy_from_slice(&u64::MAX.to_le_bytes());
        cases.push(("length", long, (view, seqno)));
        cases.push(("truncated", data[..data.len() - 1].to_vec(), (view, seqno)));
        cases.push(("metadata", data.clone(), (view, seqno + 1)));
        for (what, data, (term, index)) in cases {
            snap.data = data.into();
            snap.mut_metadata().term = term;
            snap.mut_metadata().index = index;
            let err = split_snapshot_file(&encode_snapshot(&snap)).unwrap_err();
            assert!(matches!(err, ConsensusError::InvalidSnapshot(_)), "{what}: {err}");
        }
    }
}
