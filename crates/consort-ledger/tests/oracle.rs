//! Byte-level checks against the `ccf` Python package (the oracle): Merkle roots and receipt paths, and whole
//! ledger directories read by `read_ledger.py`. Each check is skipped, with a message, if the venv is missing.

use consort_kv::WriteSet;
use consort_ledger::testing::{sample_ledger, LedgerBuilder, TestService};
use consort_ledger::*;
use std::path::PathBuf;
use std::process::Command;

fn ccf_python() -> Option<PathBuf> {
    let venv = std::env::var("CCF_VENV").unwrap_or_else(|_| "/opt/ccfvenv".to_string());
    let python = PathBuf::from(&venv).join("bin/python");
    if python.exists() {
        Some(python)
    } else {
        eprintln!("SKIPPED: no CCF python venv at {venv} (set CCF_VENV); oracle check not run");
        None
    }
}

fn run_python(python: &PathBuf, script: &str, input: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(python)
        .arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const MERKLE_SCRIPT: &str = r#"
import json, sys
from ccf.merkletree import MerkleTree
import ccf.receipt
req = json.load(sys.stdin)
leaves = [bytes.fromhex(l) for l in req["leaves"]]
roots = []
for m in range(1, len(leaves) + 1):
    t = MerkleTree()
    for l in leaves[:m]:
        t.add_leaf(l, do_hash=False)
    roots.append(t.get_merkle_root().hex())
folded = [ccf.receipt.root(req["leaves"][p["i"]], p["proof"]) for p in req["paths"]]
print(json.dumps({"roots": roots, "folded": folded}))
"#;

#[test]
fn merkle_roots_and_paths_match_python() {
    let Some(python) = ccf_python() else { return };
    let mut tree = MerkleTree::new();
    for i in 1..70u64 {
        tree.append(consort_crypto::sha256(&i.to_be_bytes()));
    }
    let leaves: Vec<String> = (0..70).map(|i| hex::encode(tree.leaf(i).unwrap())).collect();
    let mut paths = Vec::new();
    let mut expected_roots = Vec::new();
    for m in 1..=70u64 {
        for i in 0..m {
            let proof: Vec<_> = tree.path(i, m).unwrap().iter().map(ProofStep::to_json).collect();
            paths.push(serde_json::json!({ "i": i, "proof": proof }));
            expected_roots.push(hex::encode(tree.root_at(m)));
        }
    }
    let req = serde_json::json!({ "leaves": leaves, "paths": paths });
    let out: serde_json::Value = serde_json::from_str(&run_python(&python, MERKLE_SCRIPT, &req.to_string())).unwrap();
    let roots = out["roots"].as_array().unwrap();
    assert_eq!(roots.len(), 70);
    for (m, root) in roots.iter().enumerate() {
        assert_eq!(
            root.as_str().unwrap(),
            hex::encode(tree.root_at(m as u64 + 1)),
            "root of {} leaves",
            m + 1
        );
    }
    let folded = out["folded"].as_array().unwrap();
    assert_eq!(folded.len(), expected_roots.len());
    for (got, want) in folded.iter().zip(&expected_roots) {
        assert_eq!(got.as_str().unwrap(), want);
    }
}

fn write_dir(files: &[(String, Vec<u8>)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    dir
}

fn read_ledger(python: &PathBuf, dir: &std::path::Path) -> (bool, String) {
    let script = python.parent().unwrap().join("read_ledger.py");
    let out = Command::new(python).arg(script).arg(dir).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn ledger_directory_passes_read_ledger_py_and_audit() {
    let mut b = sample_ledger(4, 3);
    // A transaction removing a key, one with only private writes, and an empty one.
    let mut ws = WriteSet::default();
    ws.remove("public:records", &1u64.to_le_bytes());
    b.tx(&ws);
    let mut ws = WriteSet::default();
    ws.put("records", b"k", b"v");
    b.tx(&ws);
    b.tx(&WriteSet::default());
    b.signature();
    b.log_tx(99, "after the last signature");
    let files = b.chunk_files(2000);
    assert!(
        files.iter().filter(|(n, _)| n.ends_with(".committed")).count() >= 2,
        "{:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    assert!(
        files.iter().any(|(n, _)| !n.ends_with(".committed")),
        "an open chunk remains"
    );

    let committed: Vec<_> = files
        .iter()
        .filter(|(n, _)| n.ends_with(".committed"))
        .cloned()
        .collect();
    let report = audit_chunks(&committed).unwrap();
    assert_eq!(report.transactions, b.last_signature_seqno());
    assert_eq!(report.last_verified, (2, b.last_signature_seqno()));
    assert_eq!(report.signatures, 6);
    assert_eq!(report.service_status.as_deref(), Some("Open"));
    assert_eq!(report.nodes, 1);
    assert_eq!(report.trailing_unsigned, 0);
    // With the open chunk, the trailing unsigned transaction is reported.
    let all = audit_chunks(&files).unwrap();
    assert_eq!(all.trailing_unsigned, 1);

    if let Some(python) = ccf_python() {
        let dir = write_dir(&files);
        let (ok, text) = read_ledger(&python, dir.path());
        assert!(ok, "read_ledger.py failed:\n{text}");
        assert!(text.contains("Ledger verification complete"), "{text}");
        assert!(
            text.contains(&format!("verified until 2.{}", b.last_signature_seqno())),
            "{text}"
        );
    }
}

#[test]
fn tampering_is_detected_and_named() {
    let b = sample_ledger(2, 2);
    let files = b.committed_chunk_files(1500);
    audit_chunks(&files).unwrap();
    let last_sig = b.entries().last().unwrap();
    let mut checked = 0;
    for (fi, (name, bytes)) in files.iter().enumerate() {
        let c = parse_chunk_name(name).unwrap();
        for pos in (0..bytes.len()).step_by(3) {
            // The final signature transaction is covered by no later root (as in CCF): skip its bytes.
            if c.end == Some(last_sig.seqno) {
                let table_at = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
                let sig_at = table_at - last_sig.bytes.len();
                if (sig_at..table_at).contains(&pos) {
                    continue;
                }
            }
            let mut bad = files.clone();
            bad[fi].1[pos] ^= 0x20;
            let err = audit_chunks(&bad).expect_err(&format!("flip at {name}:{pos} undetected"));
            let text = err.to_string();
            if let (Some(v), Some(s)) = (err.view, err.seqno) {
                assert!(text.contains(&format!("transaction {v}.{s}")), "{text}");
            } else {
                assert!(err.file.is_some(), "{text}");
            }
            checked += 1;
        }
    }
    assert!(checked > 500);
    // A flip in a private domain is caught by the next signature, whose signed tree names the altered entry.
    let (fi, entry_pos) = locate(&files, 5);
    let mut bad = files.clone();
    let last = entry_pos + b.entries()[4].bytes.len() - 1;
    bad[fi].1[last] ^= 1;
    let err = audit_chunks(&bad).unwrap_err();
    assert_eq!((err.view, err.seqno), (Some(2), Some(5)), "{err}");
    assert_eq!(err.file.as_deref(), Some(files[fi].0.as_str()), "{err}");
    assert!(err.to_string().starts_with("transaction 2.5 in "), "{err}");
    assert!(err.reason.contains("merkle root mismatch at signature 2.6"), "{err}");
}

/// (file index, offset) of the entry at `seqno`.
fn locate(files: &[(String, Vec<u8>)], seqno: u64) -> (usize, usize) {
    for (i, (name, bytes)) in files.iter().enumerate() {
        let c = parse_chunk_name(name).unwrap();
        if c.start <= seqno && seqno <= c.end.unwrap() {
            let table_at = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
            let k = (seqno - c.start) as usize;
            let off = u32::from_le_bytes(bytes[table_at + 4 * k..table_at + 4 * k + 4].try_into().unwrap());
            return (i, off as usize);
        }
    }
    panic!("seqno {seqno} not found");
}

#[test]
fn audit_rejects_bad_histories() {
    // A signature by a node that is only Pending.
    let mut b = LedgerBuilder::new(TestService::generate());
    b.genesis("Open");
    let pending = serde_json::json!({ "status": "Pending" }).to_string();
    let id = b.service.node_id.clone();
    let mut ws = WriteSet::default();
    ws.put(NODES_INFO_TABLE, id.as_bytes(), pending.as_bytes());
    b.tx(&ws);
    b.signature();
    let err = audit_chunks(&b.committed_chunk_files(1)).unwrap_err();
    assert_eq!(err.seqno, Some(3));
    assert!(err.reason.contains("Pending"), "{err}");

    // An invalid service status transition (Open -> Opening is allowed, Open -> WaitingForRecoveryShares not).
    let mut b = LedgerBuilder::new(TestService::generate());
    b.genesis("Open");
    b.set_service_status("WaitingForRecoveryShares");
    b.signature();
    let err = audit_chunks(&b.committed_chunk_files(1)).unwrap_err();
    assert_eq!(err.seqno, Some(2));
    assert!(err.reason.contains("transition"), "{err}");

    // A node certificate not endorsed by the service certificate.
    let mut b = LedgerBuilder::new(TestService::generate());
    let other = TestService::generate();
    b.service.service_cert_pem = other.service_cert_pem;
    b.genesis("Open");
    b.signature();
    let err = audit_chunks(&b.committed_chunk_files(1)).unwrap_err();
    assert!(err.reason.contains("endorsed"), "{err}");

    // Missing first chunk, and a name that is not a chunk.
    let files = sample_ledger(2, 1).committed_chunk_files(1);
    let without_first: Vec<_> = files
        .iter()
        .filter(|(n, _)| !n.starts_with("ledger_1-"))
        .cloned()
        .collect();
    assert!(audit_chunks(&without_first).unwrap_err().reason.contains("expected 1"));
    let mut renamed = files.clone();
    renamed[0].0 = "ledger_x".into();
    assert!(audit_chunks(&renamed).is_err());
}

#[test]
fn read_ledger_py_rejects_tampered_ledger_like_audit() {
    let Some(python) = ccf_python() else { return };
    let b = sample_ledger(2, 2);
    let mut files = b.committed_chunk_files(1);
    let (fi, off) = locate(&files, 4);
    files[fi].1[off + b.entries()[3].bytes.len() - 1] ^= 1;
    assert!(audit_chunks(&files).is_err());
    let dir = write_dir(&files);
    let (ok, text) = read_ledger(&python, dir.path());
    assert!(!ok && !text.contains("Ledger verification complete"), "{text}");
}

const RECEIPT_SCRIPT: &str = r#"
import json, sys
import ccf.receipt
from hashlib import sha256
from cryptography.x509 import load_pem_x509_certificate
req = json.load(sys.stdin)
service = load_pem_x509_certificate(req["service_cert"].encode())
for r in req["receipts"]:
    if "leaf_components" in r:
        lc = r["leaf_components"]
        leaf = sha256(bytes.fromhex(lc["write_set_digest"]) + sha256(lc["commit_evidence"].encode()).digest()
                      + bytes.fromhex(lc["claims_digest"])).hexdigest()
    else:
        leaf = r["leaf"]
    root = ccf.receipt.root(leaf, r["proof"])
    node_cert = load_pem_x509_certificate(r["cert"].encode())
    ccf.receipt.verify(root, r["signature"], node_cert)
    ccf.receipt.check_endorsements(node_cert, service, [])
print("ok", len(req["receipts"]))
"#;

#[test]
fn receipts_verify_with_consort_receipt_and_python() {
    let b = sample_ledger(3, 4);
    let s = b.last_signature_seqno();
    let sig_entry = &b.entries()[s as usize - 1];
    let (sig_view, _) = parse_entry(&sig_entry.bytes).unwrap();
    let signature = PrimarySignature::from_entry(&sig_view).unwrap().unwrap();
    assert_eq!(signature.seqno, s);
    let mut receipts = Vec::new();
    // Leaves 0..s-1 are under the root signed at s (a signature transaction's own leaf is under later roots).
    for e in &b.entries()[..s as usize - 1] {
        let (view, _) = parse_entry(&e.bytes).unwrap();
        let proof = b.tree().path(e.seqno, s).unwrap();
        let receipt = if e.is_signature {
            signature_receipt_json(&signature, &proof, &b.tree().leaf(e.seqno).unwrap(), &[])
        } else {
            let components = LeafComponents::of_entry(&view, &b.service.secret);
            assert_eq!(components.leaf(), b.tree().leaf(e.seqno).unwrap());
            receipt_json(&signature, &proof, &components, &[])
        };
        let verified =
            consort_receipt::verify_json(receipt.to_string().as_bytes(), &b.service.service_cert_pem).unwrap();
        assert_eq!(verified.node_id, b.service.node_id);
        receipts.push(receipt);
    }
    // A tampered proof fails.
    let mut bad = receipts[3].clone();
    bad["proof"][0] = serde_json::json!({ "left": hex::encode([1u8; 32]) });
    assert!(consort_receipt::verify_json(bad.to_string().as_bytes(), &b.service.service_cert_pem).is_err());
    if let Some(python) = ccf_python() {
        let req = serde_json::json!({ "service_cert": b.service.service_cert_pem, "receipts": receipts });
        let out = run_python(&python, RECEIPT_SCRIPT, &req.to_string());
        assert_eq!(out.trim(), format!("ok {}", receipts.len()));
    }
}
