//! The auditor refuses what CCF's `read_ledger.py` (ledger.py `LedgerValidator`) refuses. Each case was checked by
//! hand against read_ledger.py from ccf==6.0.28; set `CONSORT_DUMP_LEDGERS=DIR` to write the ledgers out and
//! repeat that check.

use consort_kv::WriteSet;
use consort_ledger::testing::{sample_ledger, LedgerBuilder};
use consort_ledger::*;

fn dump(name: &str, files: &[(String, Vec<u8>)]) {
    let Ok(root) = std::env::var("CONSORT_DUMP_LEDGERS") else {
        return;
    };
    let dir = std::path::Path::new(&root).join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for (n, b) in files {
        std::fs::write(dir.join(n), b).unwrap();
    }
}

/// Audits `b`'s committed chunks (what read_ledger.py reads) after dumping them as `name`.
fn audit(name: &str, b: &LedgerBuilder) -> Result<AuditReport, AuditError> {
    let files = b.committed_chunk_files(1);
    dump(name, &files);
    audit_chunks(&files)
}

#[test]
fn removing_a_node_that_was_never_added_is_refused() {
    // ledger.py pops the node from its trust and certificate maps: a KeyError for an unknown node.
    for table in [NODES_INFO_TABLE, ENDORSED_CERTS_TABLE] {
        let mut b = sample_ledger(1, 1);
        audit("baseline", &b).unwrap();
        let mut ws = WriteSet::default();
        ws.remove(table, b"a-node-that-never-was");
        let seqno = b.tx(&ws);
        b.signature();
        let err = audit(&format!("remove-unknown-{table}"), &b).unwrap_err();
        assert_eq!(err.seqno, Some(seqno), "{table}: {err}");
        assert!(err.reason.contains("a-node-that-never-was"), "{table}: {err}");
    }
}

#[test]
fn every_value_in_the_signatures_table_is_verified() {
    // ledger.py verifies each record of the signatures table, not only the well-known key.
    let mut b = sample_ledger(1, 1);
    let seqno = b.next_seqno();
    let s = &b.service;
    let good = PrimarySignature::new(
        &s.node_key,
        &s.node_id,
        &s.node_cert_pem,
        b.view,
        seqno,
        b.view,
        b.last_signature_seqno(),
        &b.tree().root(),
    );
    let mut ws = WriteSet::default();
    ws.put(SIGNATURES_TABLE, &SINGLETON_KEY, &good.to_json_bytes());
    // Well-formed, by the right node, for the right transaction and root, but a signature over another root.
    let mut bad = good.clone();
    bad.sig = PrimarySignature::new(&s.node_key, &s.node_id, &s.node_cert_pem, b.view, seqno, 0, 0, &[7; 32]).sig;
    ws.put(SIGNATURES_TABLE, b"another key", &bad.to_json_bytes());
    b.tx(&ws);
    b.signature();
    let err = audit("second-signature-record", &b).unwrap_err();
    assert_eq!(err.seqno, Some(seqno), "{err}");

    // A removal in the signatures table is no signature at all.
    let mut b = sample_ledger(1, 1);
    let mut ws = WriteSet::default();
    ws.remove(SIGNATURES_TABLE, &SINGLETON_KEY);
    let seqno = b.tx(&ws);
    b.signature();
    let err = audit("signature-removed", &b).unwrap_err();
    assert_eq!(err.seqno, Some(seqno), "{err}");
}

#[test]
fn service_info_without_its_singleton_value_is_refused() {
    // ledger.py reads service.info at the well-known key and parses it as JSON: a write under another key
    // only, or a removal, fails there.
    for (name, remove) in [("service-info-other-key", false), ("service-info-removed", true)] {
        let mut b = sample_ledger(1, 1);
        let mut ws = WriteSet::default();
        if remove {
            ws.remove(SERVICE_INFO_TABLE, &SINGLETON_KEY);
        } else {
            ws.put(SERVICE_INFO_TABLE, b"another key", b"{\"status\": \"Open\"}");
        }
        let seqno = b.tx(&ws);
        b.signature();
        let err = audit(name, &b).unwrap_err();
        assert_eq!(err.seqno, Some(seqno), "{name}: {err}");
    }
}
