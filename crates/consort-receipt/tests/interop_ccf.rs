//! Interop: receipts this crate accepts are accepted by CCF's own `ccf.receipt` module, and tampered ones are not.
//!
//! Runs `$CCF_VENV/bin/python` (default `/opt/ccfvenv`); skips with a message when that interpreter is missing.

mod common;

use common::*;
use consort_crypto::Curve;
use consort_receipt::{verify, Receipt};
use std::path::PathBuf;
use std::process::Command;

/// Verifies a receipt file the way CCF's end-to-end tests do, with `ccf.receipt`'s functions.
const CCF_CHECK: &str = r#"
import json, sys
from hashlib import sha256
from cryptography.x509 import load_pem_x509_certificate
from cryptography.hazmat.primitives import serialization
import ccf.receipt

receipt = json.load(open(sys.argv[1]))
service_cert = load_pem_x509_certificate(open(sys.argv[2], "rb").read())
node_cert = load_pem_x509_certificate(receipt["cert"].encode())
endorsements = [load_pem_x509_certificate(e.encode()) for e in receipt.get("service_endorsements", [])]
ccf.receipt.check_endorsements(node_cert, service_cert, endorsements)
if "leaf" in receipt:
    leaf = receipt["leaf"]
else:
    c = receipt["leaf_components"]
    leaf = sha256(
        bytes.fromhex(c["write_set_digest"])
        + sha256(c["commit_evidence"].encode()).digest()
        + bytes.fromhex(c["claims_digest"])
    ).hexdigest()
root = ccf.receipt.root(leaf, receipt["proof"])
ccf.receipt.verify(root, receipt["signature"], node_cert)
spki = node_cert.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
)
assert receipt["node_id"] == sha256(spki).hexdigest(), "node_id"
print(root)
"#;

fn python() -> Option<PathBuf> {
    let venv = std::env::var("CCF_VENV").unwrap_or_else(|_| "/opt/ccfvenv".into());
    let python = PathBuf::from(venv).join("bin/python");
    if python.exists() {
        Some(python)
    } else {
        eprintln!(
            "SKIP: {} not found; set CCF_VENV to a virtualenv with ccf==6.0.28",
            python.display()
        );
        None
    }
}

/// Runs the CCF check on `receipt`; returns the root it computed, or its error output.
fn ccf_check(python: &PathBuf, name: &str, receipt: &Receipt, service_cert_pem: &str) -> Result<String, String> {
    let dir = std::env::temp_dir().join(format!("consort-receipt-interop-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let receipt_path = dir.join("receipt.json");
    let cert_path = dir.join("service_cert.pem");
    std::fs::write(&receipt_path, serde_json::to_vec_pretty(receipt).unwrap()).unwrap();
    std::fs::write(&cert_path, service_cert_pem).unwrap();
    let out = Command::new(python)
        .arg("-c")
        .arg(CCF_CHECK)
        .arg(&receipt_path)
        .arg(&cert_path)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn ccf_accepts_our_receipts() {
    let Some(python) = python() else { return };
    for index in [1, 6] {
        let f = fixture_at(index);
        let ours = verify(&f.receipt, &f.service_cert_pem).unwrap();
        let theirs = ccf_check(&python, &format!("direct{index}"), &f.receipt, &f.service_cert_pem).unwrap();
        assert_eq!(theirs, hex::encode(ours.root));
    }
}

#[test]
fn ccf_accepts_endorsement_chain_and_signature_receipts() {
    let Some(python) = python() else { return };
    let (old_key, old_cert) = service(Curve::P384);
    let (new_key, new_cert) = service(Curve::P384);
    let mut ca = consort_crypto::CertParams::new("CCF Service");
    ca.is_ca = true;
    let old_endorsed = consort_crypto::x509::issue(&old_key.verifying_key(), &ca, &new_key, &new_cert.der).unwrap();
    let mut f = fixture();
    f.receipt.cert = node_cert(&f.node_key, &old_key, &old_cert.der);
    f.receipt.service_endorsements = vec![old_endorsed.pem];
    verify(&f.receipt, &new_cert.pem).unwrap();
    ccf_check(&python, "chain", &f.receipt, &new_cert.pem).unwrap();

    let mut f = fixture();
    f.receipt.leaf = Some(hex::encode(consort_receipt::leaf(&f.receipt).unwrap()));
    f.receipt.leaf_components = None;
    f.receipt.is_signature_transaction = Some(true);
    verify(&f.receipt, &f.service_cert_pem).unwrap();
    ccf_check(&python, "sigtx", &f.receipt, &f.service_cert_pem).unwrap();
}

#[test]
fn ccf_and_we_reject_the_same_tamperings() {
    let Some(python) = python() else { return };
    let f = fixture();
    let (_, other_service) = service(Curve::P384);
    let mut flipped = f.receipt.clone();
    let step = &mut flipped.proof[0];
    std::mem::swap(&mut step.left, &mut step.right);
    let mut tampered_leaf = f.receipt.clone();
    tampered_leaf
        .leaf_components
        .as_mut()
        .unwrap()
        .commit_evidence
        .push('x');
    let mut wrong_node = f.receipt.clone();
    wrong_node.node_id = hex::encode([1u8; 32]);
    let cases = [
        ("flipped", flipped, f.service_cert_pem.clone()),
        ("leaf", tampered_leaf, f.service_cert_pem.clone()),
        ("node", wrong_node, f.service_cert_pem.clone()),
        ("service", f.receipt.clone(), other_service.pem),
    ];
    for (name, receipt, service_cert) in cases {
        assert!(verify(&receipt, &service_cert).is_err(), "{name}: we accepted");
        assert!(
            ccf_check(&python, name, &receipt, &service_cert).is_err(),
            "{name}: CCF accepted"
        );
    }
}
