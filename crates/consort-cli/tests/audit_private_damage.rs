//! One flipped byte in the private domain (the encrypted part) of a committed ledger entry: `consort ledger audit`
//! has no ledger secret to decrypt it with, but the next signature's root no longer matches, and the tree that
//! signature recorded says which leaf changed, so the audit fails naming that transaction and its chunk file.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_a_private_domain_fails_the_audit_naming_the_transaction_and_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::configure(&dir.path().join("n0"), |cfg| cfg.ledger.chunk_threshold_bytes = 4096);
    node.start().await;
    let user = node.connect(true).await;
    let mut txids = Vec::new();
    for id in 0..40u64 {
        let body = serde_json::json!({"id": id, "msg": format!("private message {id}")});
        let r = user.post_json("/app/log/private", &body).await.unwrap();
        assert_eq!(r.status, 200, "{:?}", r.body);
        txids.push(r.txid.unwrap());
    }
    node.wait_committed(&user, txids.last().unwrap()).await;
    node.stop();

    // The ledger as it was audits clean.
    let ledger = node.ledger_dir();
    let (ok, out) = run_consort(&["ledger", "audit", ledger.to_str().unwrap()]);
    assert!(ok, "{out}");

    // A private write from the middle, committed (a signature covers it).
    let victim_txid = &txids[txids.len() / 2];
    let victim_seqno: u64 = victim_txid.split('.').nth(1).unwrap().parse().unwrap();
    let entries = ledger_entries(&ledger);
    let victim = entries
        .iter()
        .find(|e| e.seqno == victim_seqno)
        .expect("the entry is in the ledger");
    assert!(!victim.private.is_empty(), "a private write with no private domain");
    let mut bytes = std::fs::read(&victim.file).unwrap();
    let at = victim.private.start + victim.private.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&victim.file, &bytes).unwrap();

    let (ok, out) = run_consort(&["ledger", "audit", ledger.to_str().unwrap()]);
    assert!(!ok, "a changed private domain passed the audit: {out}");
    let name = victim.file.file_name().unwrap().to_str().unwrap();
    assert!(out.contains(&format!("transaction {victim_txid} in {name}")), "{out}");
    assert!(out.contains("INVALID"), "{out}");
}
