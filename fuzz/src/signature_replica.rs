//! The `signature_record` target's replica-side check: the record as a replica (a joiner installing a snapshot, or
//! a backup given one by Raft) parses and verifies it, through `consort_consensus::snapshot::open` over a bundle
//! whose signature transaction carries the record in the fixed ledger of `signature_record.rs`.

use consort_consensus::snapshot::{self, VerifiedSnapshot};
use consort_consensus::ConsensusError;
use consort_kv::{CommitOutcome, Store};
use consort_ledger::{SIGNATURES_TABLE, SINGLETON_KEY, TREE_TABLE};

use crate::signature_record::{assert_genuine, Fixture, NODE_CERT_PEM};

/// The bundle a primary would send with `record` as the signature transaction at the fixture's seqno: that
/// entry, and the state at it (two earlier writes, then the record and tree tables).
pub fn bundle(fx: &Fixture, record: &[u8]) -> Result<Vec<u8>, ConsensusError> {
    let ledger = fx.ledger_with(record);
    let entry = ledger.entries().last().map(|e| e.bytes.clone()).unwrap_or_default();
    let store = Store::new();
    for seqno in 1..=fx.seqno {
        let mut tx = store.begin();
        if seqno == fx.seqno {
            tx.put(SIGNATURES_TABLE, &SINGLETON_KEY, record);
            tx.put(TREE_TABLE, &SINGLETON_KEY, &fx.tree);
        } else {
            tx.put("public:records", &seqno.to_le_bytes(), b"earlier");
        }
        // Only fixture writes reach this store; a refusal is a bug in the fixture.
        assert!(matches!(
            store.commit(tx, |_, _| ()),
            Ok(CommitOutcome::Committed { .. })
        ));
    }
    // View 2 starts at seqno 1 (view 1 had no entries).
    snapshot::build(
        &store,
        &fx.builder.service.secret,
        &entry,
        fx.view,
        fx.seqno,
        vec![1, 1],
    )
}

/// Opens the bundle of `record` trusting only the fixed node's certificate. When it accepts, the record is the
/// one it returns, at the fixture's place, and genuine; the tree it returns covers the signature transaction.
pub fn open(fx: &Fixture, record: &[u8]) -> Result<VerifiedSnapshot, ConsensusError> {
    let bundle = bundle(fx, record)?;
    let v = snapshot::open(&bundle, &fx.builder.service.secret, |cert| cert == NODE_CERT_PEM)?;
    assert_eq!((v.view, v.seqno), (fx.view, fx.seqno), "accepted at another place");
    assert_eq!(v.signature.cert, NODE_CERT_PEM, "accepted an untrusted signer");
    assert_genuine(fx, &v.signature.root, &v.signature.sig);
    assert_eq!(
        v.tree.len(),
        fx.seqno + 1,
        "the tree does not cover the signature transaction"
    );
    assert_eq!(v.tree.try_root_at(fx.seqno).ok(), Some(fx.root));
    assert_eq!(
        v.store.read_only().get(SIGNATURES_TABLE, &SINGLETON_KEY),
        Some(record.to_vec()),
        "the state holds another record"
    );
    Ok(v)
}
