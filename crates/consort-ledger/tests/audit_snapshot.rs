//! Auditing a ledger that starts after a snapshot: the snapshot's tables and signature entry are checked, the
//! chunks must continue at the next seqno, the tree goes on from the snapshot's, and a snapshot that was changed,
//! does not match its evidence, or belongs to another service is refused.

use consort_crypto::sha256;
use consort_kv::{SnapshotHeader, Store, WriteSet};
use consort_ledger::testing::{LedgerBuilder, TestService};
use consort_ledger::*;

/// Snapshot seqno of the ledger [`ledger`] builds.
const S: u64 = 7;

/// A snapshot taken apart as `split_snapshot_file` hands it over.
struct Snap {
    sig: Vec<u8>,
    entry: Vec<u8>,
    view: u64,
    digest: [u8; 32],
}

impl Snap {
    fn start(&self) -> SnapshotStart<'_> {
        SnapshotStart {
            file: "snapshot_7_12.committed",
            seqno: S,
            view: self.view,
            signature_entry: &self.sig,
            snapshot_entry: &self.entry,
            bundle_digest: Some(self.digest),
        }
    }
}

/// The state after `b`'s first `s` entries, with a change to it by `edit` (to forge a snapshot).
fn state_at(b: &LedgerBuilder, s: u64, edit: impl FnOnce(&mut WriteSet)) -> Store {
    let store = Store::new();
    let mut edit = Some(edit);
    for e in &b.entries()[..s as usize] {
        let (entry, _) = parse_entry(&e.bytes).unwrap();
        let (_, mut ws) = WriteSet::deserialise_public(entry.public_domain).unwrap();
        let private = entry.decrypt_private(&b.service.secret).unwrap();
        ws.merge(WriteSet::deserialise_private(&private).unwrap());
        if e.seqno == s {
            if let Some(edit) = edit.take() {
                edit(&mut ws);
            }
        }
        store.apply(e.seqno, &ws).unwrap();
    }
    store
}

/// The snapshot at signature `s` of `b` (its digest stands for the bundle's: any function of both entries).
fn snapshot_of(b: &LedgerBuilder, s: u64, edit: impl FnOnce(&mut WriteSet)) -> Snap {
    let sig = &b.entries()[s as usize - 1];
    assert!(sig.is_signature);
    let header = SnapshotHeader {
        version: s,
        hash_at_snapshot: sha256(&sig.bytes).to_vec(),
        view_history: vec![],
    };
    let (public, private) = state_at(b, s, edit).try_snapshot(&header).unwrap();
    let entry = try_encode_snapshot(&b.service.secret, sig.view, s, &public, &private).unwrap();
    Snap {
        digest: sha256(&[sig.bytes.as_slice(), &entry].concat()),
        sig: sig.bytes.clone(),
        entry,
        view: sig.view,
    }
}

/// Genesis, signature 2, Open at 3, logging 4-6, signature 7 (the snapshot), logging 8-10, signature 11.
fn ledger_to_11(service: TestService) -> LedgerBuilder {
    let mut b = LedgerBuilder::new(service);
    b.genesis("Opening");
    b.signature();
    b.set_service_status("Open");
    for id in 0..6 {
        if id == 3 {
            assert_eq!(b.signature(), S);
        }
        b.log_tx(id, "before");
    }
    assert_eq!(b.signature(), 11);
    b
}

/// A ledger with its snapshot at [`S`], the snapshot's evidence at 12, then a transaction and a signature; and
/// the committed chunks after the snapshot (every signature ends a chunk).
fn fixture() -> (LedgerBuilder, Snap, Vec<(String, Vec<u8>)>) {
    let mut b = ledger_to_11(TestService::generate());
    let snap = snapshot_of(&b, S, |_| {});
    let mut ws = WriteSet::default();
    let evidence = serde_json::json!({"hash": hex::encode(snap.digest), "version": S});
    ws.put(
        "public:ccf.internal.snapshot_evidence",
        &SINGLETON_KEY,
        evidence.to_string().as_bytes(),
    );
    assert_eq!(b.tx(&ws), 12);
    b.log_tx(10, "after");
    b.signature();
    let mut after: Vec<_> = b
        .committed_chunk_files(1)
        .into_iter()
        .filter(|(n, _)| parse_chunk_name(n).unwrap().start > S)
        .collect();
    after.sort_by_key(|(n, _)| parse_chunk_name(n).unwrap().start);
    (b, snap, after)
}

#[test]
fn a_ledger_starting_after_a_snapshot_verifies_from_it() {
    let (b, snap, after) = fixture();
    assert!(parse_chunk_name(&after[0].0).unwrap().start == S + 1, "{}", after[0].0);
    let r = audit_chunks_from_snapshot(&snap.start(), &after).unwrap();
    let last = b.last_signature_seqno();
    assert_eq!(r.transactions, last - S);
    assert_eq!((r.signatures, r.last_verified), (2, (2, last)));
    assert_eq!((r.trailing_unsigned, r.chunks, r.nodes), (0, after.len(), 1));
    assert_eq!(r.service_status.as_deref(), Some("Open"));
    let origin = r.snapshot.unwrap();
    assert_eq!((origin.view, origin.seqno, origin.evidence_seqno), (2, S, Some(12)));
    assert_eq!(origin.service_cert, b.service.service_cert_pem);
    // The whole ledger audits from seqno 1 to the same point, and reports no snapshot.
    let full = audit_chunks(&b.committed_chunk_files(1)).unwrap();
    assert_eq!((full.last_verified, full.snapshot), (r.last_verified, None));
    // Without a digest to compare, the evidence is not checked.
    let start = SnapshotStart {
        bundle_digest: None,
        ..snap.start()
    };
    let r = audit_chunks_from_snapshot(&start, &after).unwrap();
    assert_eq!(r.snapshot.unwrap().evidence_seqno, None);
}

#[test]
fn without_the_snapshot_the_chunks_do_not_audit() {
    let (_, _, after) = fixture();
    let err = audit_chunks(&after).unwrap_err();
    assert!(err.reason.contains("expected 1"), "{err}");
}

#[test]
fn chunks_must_start_right_after_the_snapshot() {
    let (b, snap, after) = fixture();
    let gap = audit_chunks_from_snapshot(&snap.start(), &after[1..]).unwrap_err();
    let second = parse_chunk_name(&after[1].0).unwrap().start;
    assert_eq!(gap.file.as_deref(), Some(after[1].0.as_str()));
    let named = format!("gap, seqnos {} to {} are missing", S + 1, second - 1);
    assert!(
        gap.reason.contains(&named) && gap.reason.contains("snapshot is at 7"),
        "{gap}"
    );
    // The chunk that ends at the snapshot overlaps it.
    let mut with_earlier: Vec<_> = b
        .committed_chunk_files(1)
        .into_iter()
        .filter(|(n, _)| parse_chunk_name(n).unwrap().end == Some(S))
        .collect();
    with_earlier.extend(after);
    let overlap = audit_chunks_from_snapshot(&snap.start(), &with_earlier).unwrap_err();
    assert!(overlap.reason.contains("overlap"), "{overlap}");
}

#[test]
fn any_flipped_byte_of_the_signature_entry_is_refused() {
    let (_, snap, after) = fixture();
    for i in 0..snap.sig.len() {
        let mut sig = snap.sig.clone();
        sig[i] ^= 0x01;
        let start = SnapshotStart {
            signature_entry: &sig,
            ..snap.start()
        };
        assert!(
            audit_chunks_from_snapshot(&start, &after).is_err(),
            "flip at byte {i} of the signature entry accepted"
        );
    }
}

#[test]
fn a_changed_snapshot_entry_is_refused_by_its_evidence() {
    let (_, snap, after) = fixture();
    let mut by_evidence = 0;
    for i in (0..snap.entry.len()).step_by(7) {
        let mut entry = snap.entry.clone();
        entry[i] ^= 0x01;
        let digest = sha256(&[snap.sig.as_slice(), &entry].concat());
        let start = SnapshotStart {
            snapshot_entry: &entry,
            bundle_digest: Some(digest),
            ..snap.start()
        };
        let err = audit_chunks_from_snapshot(&start, &after).expect_err(&format!("flip at byte {i} accepted"));
        // A change the snapshot's own checks cannot see (a value in a table) is caught by the evidence.
        if err.seqno == Some(12) {
            assert!(err.reason.contains("not the snapshot this ledger recorded"), "{err}");
            by_evidence += 1;
        } else {
            assert_eq!(err.seqno, Some(S), "{err}");
        }
    }
    assert!(by_evidence > 0, "no change was left for the evidence to find");
}

#[test]
fn a_snapshot_whose_tables_do_not_endorse_its_signer_is_refused() {
    let (b, _, after) = fixture();
    let other = TestService::generate();
    let forged = snapshot_of(&b, S, |ws| {
        let info = serde_json::json!({"cert": other.service_cert_pem, "status": "Open"});
        ws.put(SERVICE_INFO_TABLE, &SINGLETON_KEY, info.to_string().as_bytes());
    });
    let start = SnapshotStart {
        bundle_digest: None,
        ..forged.start()
    };
    let err = audit_chunks_from_snapshot(&start, &after).unwrap_err();
    assert_eq!(
        (err.seqno, err.file.as_deref()),
        (Some(S), Some("snapshot_7_12.committed"))
    );
    assert!(err.reason.contains("not endorsed by the service certificate"), "{err}");
}

#[test]
fn another_services_snapshot_is_refused() {
    let (_, _, after) = fixture();
    let other = snapshot_of(&ledger_to_11(TestService::generate()), S, |_| {});
    // It verifies on its own, but the first signature after it does not verify against its tables and tree.
    for digest in [Some(other.digest), None] {
        let start = SnapshotStart {
            bundle_digest: digest,
            ..other.start()
        };
        let err = audit_chunks_from_snapshot(&start, &after).unwrap_err();
        assert_eq!(err.seqno, Some(11), "{err}");
        assert!(err.reason.contains("does not continue the snapshot at 2.7"), "{err}");
    }
}
