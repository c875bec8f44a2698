//! Snapshots for Raft and for joiners: the state at a committed signature transaction, in CCF's snapshot format,
//! bundled with that signature transaction so the receiver can check it before trusting it.
//!
//! Bundle (the `data` of a Raft `Snapshot`): `"CSB1" ‖ u64 length ‖ signature entry ‖ snapshot entry`, where
//! the signature entry is the ledger entry at the snapshot's seqno s (a signature transaction) and the snapshot
//! entry is CCF's snapshot framing (IV snapshot bit set) of [`consort_kv::Store::snapshot`] at s, whose header's
//! `hash_at_snapshot` is SHA-256 of the signature entry. The receiver checks the signature over the Merkle root
//! stored with it (`public:ccf.internal.tree`, leaves 0..s-1), the hash, and that the state's signature matches.

use crate::codec::{full_write_set, inspect};
use crate::history::ViewHistory;
use crate::limits::MAX_SNAPSHOT_SIZE;
use crate::vocab::{Seqno, TxId, View};
use crate::{ConsensusError, SnapshotError};
use consort_crypto::sha256;
use consort_kv::{SnapshotHeader, Store};
use consort_ledger::{
    parse_entry, try_encode_snapshot, verify_root, LedgerSecrets, MerkleTree, PrimarySignature, SIGNATURES_TABLE,
    SINGLETON_KEY, TREE_TABLE,
};
use raft::eraftpb::SnapshotMetadata;

pub(crate) const MAGIC: [u8; 4] = *b"CSB1";

/// Table of the evidence transaction that records a periodic snapshot's digest in the ledger (CCF's name). Its
/// singleton value is JSON `{"hash": "<hex SHA-256 of the snapshot bundle>", "version": <snapshot seqno>}`.
pub const SNAPSHOT_EVIDENCE_TABLE: &str = "public:ccf.internal.snapshot_evidence";

/// What an evidence transaction claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evidence {
    /// Seqno of the signature transaction the snapshot was taken at.
    pub seqno: u64,
    /// SHA-256 of the snapshot bundle.
    pub hash: [u8; 32],
}

/// The write set of the evidence transaction for the snapshot bundle at `seqno` whose SHA-256 is `digest`.
pub fn evidence_write_set(digest: &[u8; 32], seqno: u64) -> consort_kv::WriteSet {
    let value = serde_json::json!({"hash": hex::encode(digest), "version": seqno});
    let mut ws = consort_kv::WriteSet::default();
    ws.put(SNAPSHOT_EVIDENCE_TABLE, &SINGLETON_KEY, value.to_string().as_bytes());
    ws
}

/// The evidence a write set carries, if it writes a well-formed one.
pub fn evidence_in(ws: &consort_kv::WriteSet) -> Option<Evidence> {
    let raw = ws
        .maps
        .get(SNAPSHOT_EVIDENCE_TABLE)?
        .writes
        .get(&SINGLETON_KEY[..])?
        .as_ref()?;
    let v: serde_json::Value = serde_json::from_slice(raw).ok()?;
    let hash: [u8; 32] = hex::decode(v["hash"].as_str()?).ok()?.try_into().ok()?;
    Some(Evidence {
        seqno: v["version"].as_u64()?,
        hash,
    })
}

/// A snapshot that passed every check, ready to become a replica's state.
#[derive(Debug)]
pub struct VerifiedSnapshot {
    /// View of the signature transaction the snapshot was taken at.
    pub view: u64,
    /// Seqno of that signature transaction.
    pub seqno: u64,
    /// The key-value state at that seqno.
    pub store: Store,
    /// First seqno of each view up to that seqno.
    pub view_history: ViewHistory,
    /// The Merkle tree over leaves 0..=seqno (the signature transaction's own leaf included).
    pub tree: MerkleTree,
    /// The signature transaction's signed record, checked against the tree's root.
    pub signature: PrimarySignature,
}

/// Builds the bundle at `seqno`, which must be a signature transaction at or above the store's committed version.
pub fn build(
    store: &Store,
    secrets: &LedgerSecrets,
    signature_entry: &[u8],
    view: u64,
    seqno: u64,
    view_history: Vec<u64>,
) -> Result<Vec<u8>, ConsensusError> {
    let (public, private) = store.try_snapshot(&header(signature_entry, seqno, view_history))?;
    bundle(secrets, signature_entry, view, seqno, &public, &private)
}

fn header(signature_entry: &[u8], seqno: u64, view_history: Vec<u64>) -> SnapshotHeader {
    SnapshotHeader {
        version: seqno,
        hash_at_snapshot: sha256(signature_entry).to_vec(),
        view_history,
    }
}

/// The bundle of a signature entry and the store's snapshot domains at its seqno.
fn bundle(
    secrets: &LedgerSecrets,
    signature_entry: &[u8],
    view: u64,
    seqno: u64,
    public: &[u8],
    private: &[u8],
) -> Result<Vec<u8>, ConsensusError> {
    let snapshot_entry = try_encode_snapshot(secrets.for_seqno(seqno), view, seqno, public, private)?;
    let mut out = Vec::with_capacity(12 + signature_entry.len() + snapshot_entry.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(signature_entry.len() as u64).to_le_bytes());
    out.extend_from_slice(signature_entry);
    out.extend_from_slice(&snapshot_entry);
    Ok(out)
}

/// Table the primary writes in a signature transaction to have every replica snapshot the state there (Consort's
/// own; its singleton value is JSON `{"version": <seqno>}`). Each replica builds that snapshot off its engine
/// lock ([`SnapshotBuild`]); the primary then records the digest in an evidence transaction.
pub const SNAPSHOT_MARKER_TABLE: &str = "public:consort.internal.snapshot_at";

/// Adds the snapshot marker for `seqno` to a signature transaction's write set.
pub fn mark_for_snapshot(ws: &mut consort_kv::WriteSet, seqno: u64) {
    let value = serde_json::json!({ "version": seqno });
    ws.put(SNAPSHOT_MARKER_TABLE, &SINGLETON_KEY, value.to_string().as_bytes());
}

/// Whether a (signature transaction's) write set marks its seqno for a snapshot.
pub fn is_marked_for_snapshot(ws: &consort_kv::WriteSet, seqno: u64) -> bool {
    let Some(Some(raw)) = ws
        .maps
        .get(SNAPSHOT_MARKER_TABLE)
        .and_then(|m| m.writes.get(&SINGLETON_KEY[..]))
    else {
        return false;
    };
    serde_json::from_slice::<serde_json::Value>(raw)
        .ok()
        .and_then(|v| v["version"].as_u64())
        == Some(seqno)
}

/// A snapshot of the state at a marked signature transaction, to be built off the engine lock: the store is
/// captured in batches by a [`consort_kv::SnapshotJob`] while transactions go on, then encrypted, bundled and
/// hashed. Pure CPU work: run it on any thread ([`SnapshotBuild::run`]) and hand the result back to the replica
/// as [`crate::Event::SnapshotBuilt`].
pub struct SnapshotBuild {
    pub(crate) seqno: u64,
    pub(crate) view: u64,
    pub(crate) generation: u64,
    job: consort_kv::SnapshotJob,
    secrets: LedgerSecrets,
    signature_entry: Vec<u8>,
    error: Option<ConsensusError>,
}

impl std::fmt::Debug for SnapshotBuild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotBuild")
            .field("view", &self.view)
            .field("seqno", &self.seqno)
            .finish_non_exhaustive()
    }
}

/// The outcome of a [`SnapshotBuild`].
#[derive(Debug, Clone)]
pub struct SnapshotBuilt {
    pub(crate) seqno: u64,
    pub(crate) generation: u64,
    /// The bundle and its SHA-256.
    pub(crate) result: Result<(Vec<u8>, [u8; 32]), ConsensusError>,
}

impl SnapshotBuilt {
    /// Seqno of the signature transaction this build snapshots.
    pub fn seqno(&self) -> u64 {
        self.seqno
    }
}

impl SnapshotBuild {
    /// Pins the store at `seqno` (its current version: the signature transaction `signature_entry` was just
    /// applied) for a build.
    pub(crate) fn start(
        store: &std::sync::Arc<Store>,
        secrets: &LedgerSecrets,
        signature_entry: Vec<u8>,
        view: u64,
        seqno: u64,
        view_history: Vec<u64>,
        generation: u64,
    ) -> Result<Self, ConsensusError> {
        let job = store.snapshot_job(header(&signature_entry, seqno, view_history))?;
        Ok(SnapshotBuild {
            seqno,
            view,
            generation,
            job,
            secrets: secrets.clone(),
            signature_entry,
            error: None,
        })
    }

    /// Seqno of the signature transaction the build snapshots.
    pub fn seqno(&self) -> u64 {
        self.seqno
    }

    /// Captures up to `entries` more store entries; true once the store is captured (or the build failed).
    /// Optional: [`SnapshotBuild::run`] does the rest.
    pub fn step(&mut self, entries: usize) -> bool {
        if self.error.is_some() {
            return true;
        }
        match self.job.step(entries) {
            Ok(done) => done,
            Err(e) => {
                self.error = Some(e.into());
                true
            }
        }
    }

    /// Finishes the build: the rest of the store, then encryption, the bundle and its digest.
    pub fn run(self) -> SnapshotBuilt {
        let SnapshotBuild {
            seqno,
            view,
            generation,
            job,
            secrets,
            signature_entry,
            error,
        } = self;
        let result = match error {
            Some(e) => Err(e),
            None => job
                .run()
                .map_err(ConsensusError::from)
                .and_then(|(public, private)| bundle(&secrets, &signature_entry, view, seqno, &public, &private))
                .map(|data| {
                    let digest = sha256(&data);
                    (data, digest)
                }),
        };
        SnapshotBuilt {
            seqno,
            generation,
            result,
        }
    }
}

/// Raft's metadata around a bundle must name the bundle's signature transaction.
pub(crate) fn check_metadata(meta: &SnapshotMetadata, v: &VerifiedSnapshot) -> Result<(), SnapshotError> {
    if (meta.index, meta.term) != (v.seqno, v.view) {
        return Err(SnapshotError::MetadataMismatch {
            metadata: TxId::new(View(meta.term), Seqno(meta.index)),
            bundle: TxId::new(View(v.view), Seqno(v.seqno)),
        });
    }
    Ok(())
}

/// Checks a bundle and rebuilds the state it carries. `trusted` says whether a node certificate (PEM) may sign.
pub fn open(
    data: &[u8],
    secrets: &LedgerSecrets,
    trusted: impl Fn(&str) -> bool,
) -> Result<VerifiedSnapshot, ConsensusError> {
    if data.len() > MAX_SNAPSHOT_SIZE {
        return Err(ConsensusError::TooLarge {
            what: "snapshot",
            size: data.len() as u64,
            limit: MAX_SNAPSHOT_SIZE as u64,
        });
    }
    if data.len() < 12 || data[..4] != MAGIC {
        return Err(SnapshotError::NotABundle.into());
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&data[4..12]);
    let sig_len = u64::from_le_bytes(len);
    if sig_len > (data.len() - 12) as u64 {
        return Err(SnapshotError::SignatureEntryLength.into());
    }
    let (sig_bytes, snap_bytes) = data[12..].split_at(sig_len as usize);

    // The signature transaction at s, and the tree it signs.
    let (sig_entry, _) = parse_entry(sig_bytes).map_err(SnapshotError::SignatureEntry)?;
    let (view, seqno) = (sig_entry.view, sig_entry.seqno);
    let info = inspect(sig_bytes, view, seqno)?;
    if !info.is_signature {
        return Err(SnapshotError::NotASignature {
            at: TxId::new(View(view), Seqno(seqno)),
        }
        .into());
    }
    let ws = full_write_set(secrets.for_seqno(seqno), sig_bytes, &info)?;
    let value = |table: &'static str| match ws.maps.get(table).and_then(|m| m.writes.get(&SINGLETON_KEY[..])) {
        Some(Some(v)) => Ok(v.clone()),
        _ => Err(SnapshotError::MissingTable { table }),
    };
    let sig_json = value(SIGNATURES_TABLE)?;
    let signature = PrimarySignature::from_json_bytes(&sig_json).map_err(SnapshotError::SignatureRecord)?;
    let mut tree = MerkleTree::deserialise(&value(TREE_TABLE)?).map_err(SnapshotError::Tree)?;
    if tree.len() != seqno || signature.seqno != seqno || signature.view != view {
        return Err(SnapshotError::TreeMismatch {
            signed: TxId::new(View(signature.view), Seqno(signature.seqno)),
            leaves: tree.len(),
            at: TxId::new(View(view), Seqno(seqno)),
        }
        .into());
    }
    let root = tree.try_root_at(seqno).map_err(SnapshotError::Root)?;
    if signature.root_bytes().map_err(SnapshotError::SignatureRecord)? != root {
        return Err(SnapshotError::RootMismatch.into());
    }
    if !trusted(&signature.cert) {
        return Err(SnapshotError::UntrustedSigner {
            node: signature.node.clone(),
        }
        .into());
    }
    let sig_der = signature.sig_bytes().map_err(SnapshotError::SignatureRecord)?;
    verify_root(&signature.cert, &root, &sig_der).map_err(SnapshotError::Verify)?;
    tree.append(info.leaf);

    // The state at s.
    let (snap, used) = parse_entry(snap_bytes).map_err(SnapshotError::SnapshotEntry)?;
    if used != snap_bytes.len() || !snap.is_snapshot || snap.seqno != seqno || snap.view != view {
        return Err(SnapshotError::EntryMismatch.into());
    }
    let private = snap
        .decrypt_private(secrets.for_seqno(seqno))
        .map_err(SnapshotError::Decrypt)?;
    let (store, header) = Store::from_snapshot(snap.public_domain, &private).map_err(SnapshotError::State)?;
    if header.version != seqno || header.hash_at_snapshot != sha256(sig_bytes) {
        return Err(SnapshotError::HeaderMismatch.into());
    }
    if store.read_only().get(SIGNATURES_TABLE, &SINGLETON_KEY) != Some(sig_json) {
        return Err(SnapshotError::SignatureNotInState.into());
    }
    let view_history = ViewHistory::from_starts(header.view_history);
    if view_history.view_of(seqno) != Some(view) {
        return Err(SnapshotError::ViewHistory.into());
    }
    Ok(VerifiedSnapshot {
        view,
        seqno,
        store,
        view_history,
        tree,
        signature,
    })
}
