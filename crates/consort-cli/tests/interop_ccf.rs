//! Interop with CCF's own tools (`ccf==6.0.28`): read_ledger.py verifies our ledger, ccf.receipt verifies our
//! receipts, and curl talks to the node with client certificates.

mod common;

use common::*;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_ledger_py_and_ccf_receipt_accept_our_output_and_reject_tampering() {
    let Some(venv) = ccf_venv() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut node = TestNode::configure(&tmp.path().join("n0"), |c| {
        c.ledger.signature_interval_tx = 50;
        c.ledger.chunk_threshold_bytes = 16 * 1024;
        // Periodic snapshots too: their marker and evidence transactions are in the ledger read_ledger.py checks.
        c.ledger.snapshot_tx_interval = 100;
    });
    node.start().await;
    let user = node.connect(true).await;
    let mut txids = vec![];
    for i in 0..300u64 {
        let path = if i % 3 == 0 {
            "/app/log/public"
        } else {
            "/app/log/private"
        };
        let r = user
            .post_json(
                path,
                &serde_json::json!({"id": i, "msg": format!("entry {i} {}", "z".repeat((i % 17) as usize))}),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        txids.push(r.txid.unwrap());
    }
    let last = txids.last().unwrap().clone();
    node.wait_committed(&user, &last).await;

    // A receipt checked by CCF's Python: root from leaf and proof, signature, endorsement by the service cert.
    let mid = &txids[123];
    let r = user.get(&format!("/app/receipt?transaction_id={mid}")).await.unwrap();
    assert_eq!(r.status, 200);
    let receipt_path = tmp.path().join("receipt.json");
    std::fs::write(&receipt_path, &r.body).unwrap();
    let cert_path = node.dir.join("service_cert.pem");
    let receipt: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    ccf_verifies_receipt(&venv, tmp.path(), &receipt, &cert_path);
    let (ok, msg) = run_consort(&[
        "receipt",
        "verify",
        receipt_path.to_str().unwrap(),
        "--service-cert",
        cert_path.to_str().unwrap(),
    ]);
    assert!(ok, "{msg}");

    drop(user);
    node.stop();
    let snapshots = std::fs::read_dir(node.dir.join("snapshots"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().to_string_lossy().ends_with(".committed"))
        .count();
    assert!(snapshots > 0, "no periodic snapshot was committed");
    let ledger = node.ledger_dir();
    let committed: Vec<_> = std::fs::read_dir(&ledger)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".committed"))
        .collect();
    assert!(
        committed.len() >= 2,
        "expected several committed chunks, got {committed:?}"
    );

    let (ok, out) = read_ledger_py(&venv, &ledger);
    assert!(
        ok && out.contains("Ledger verification complete"),
        "read_ledger.py failed:\n{out}"
    );
    let (ok, out) = run_consort(&["ledger", "audit", ledger.to_str().unwrap()]);
    assert!(ok, "consort ledger audit failed: {out}");

    // Flip one byte in the middle of a committed chunk: both auditors must fail.
    let mut victim = committed.clone();
    victim.sort();
    let victim = &victim[victim.len() / 2];
    let mut bytes = std::fs::read(victim).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(victim, &bytes).unwrap();
    let (ok, out) = read_ledger_py(&venv, &ledger);
    assert!(
        !ok || !out.contains("Ledger verification complete"),
        "read_ledger.py accepted a tampered ledger:\n{out}"
    );
    let (ok, out) = run_consort(&["ledger", "audit", ledger.to_str().unwrap()]);
    assert!(!ok, "consort ledger audit accepted a tampered ledger: {out}");
    assert!(out.contains("INVALID"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_with_client_certificate_writes_and_reads_and_without_it_gets_401() {
    if Command::new("curl").arg("--version").output().is_err() {
        assert!(std::env::var("CI").is_err(), "curl is required under CI");
        eprintln!("skipping: curl not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut node = TestNode::configure(&tmp.path().join("n0"), |_| {});
    node.start().await;
    let ca = node.dir.join("service_cert.pem");
    let url = format!("https://{}/app/log/private", node.address);
    let curl = |extra: &[&str]| {
        let out = Command::new("curl")
            .args([
                "-s",
                "-w",
                "\n%{http_code}",
                "--max-time",
                "20",
                "--cacert",
                ca.to_str().unwrap(),
            ])
            .args(extra)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().to_string(), body.to_string())
    };
    let (cert, key) = (
        node.user_cert.to_str().unwrap().to_string(),
        node.user_key.to_str().unwrap().to_string(),
    );
    let post = [
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"id": 42, "msg": "hello from curl"}"#,
    ];
    let (code, body) = curl(&[&["--cert", &cert, "--key", &key], &post[..], &[&url]].concat());
    assert_eq!(code, "200", "{body}");
    let (code, body) = curl(&["--cert", &cert, "--key", &key, &format!("{url}?id=42")]);
    assert_eq!(code, "200");
    assert!(body.contains("hello from curl"), "{body}");
    let (code, body) = curl(&[&post[..], &[&url]].concat());
    assert_eq!(code, "401", "{body}");
    assert!(body.contains("InvalidAuthenticationInfo"));
    node.stop();
}
