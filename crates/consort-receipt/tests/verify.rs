//! End-to-end receipt verification against real keys and certificates, and one test per way a receipt can fail.

mod common;

use common::*;
use consort_crypto::{Curve, SigningKey};
use consort_receipt::{verify, verify_json, ProofElement, Receipt, ReceiptError};

#[test]
fn valid_receipt_verifies() {
    for index in [1, 2, 5, 7] {
        let f = fixture_at(index);
        let v = verify(&f.receipt, &f.service_cert_pem).unwrap();
        assert_eq!(v.root, f.root);
        assert_eq!(v.node_id, f.receipt.node_id);
    }
}

#[test]
fn valid_receipt_verifies_from_json() {
    let f = fixture();
    let json = serde_json::to_vec(&f.receipt).unwrap();
    let v = verify_json(&json, &f.service_cert_pem).unwrap();
    assert_eq!(v.root, f.root);
}

#[test]
fn json_shape_is_ccfs() {
    let f = fixture();
    let value = serde_json::to_value(&f.receipt).unwrap();
    let proof = value["proof"].as_array().unwrap();
    assert_eq!(proof.len(), 3);
    for step in proof {
        let keys: Vec<_> = step.as_object().unwrap().keys().cloned().collect();
        assert!(keys == ["left"] || keys == ["right"], "{keys:?}");
    }
    // Absent optional fields are left out, not written as null (CCF's tools test `"leaf" in receipt`).
    assert!(value.get("leaf").is_none());
    assert_eq!(value["is_signature_transaction"], false);
    for key in ["write_set_digest", "commit_evidence", "claims_digest"] {
        assert!(value["leaf_components"][key].is_string());
    }
    let back: Receipt = serde_json::from_value(value).unwrap();
    assert_eq!(back, f.receipt);
}

#[test]
fn receipt_as_ccf_writes_it_parses() {
    // Field order and the extra fields CCF may add do not matter; service_endorsements may be absent.
    let f = fixture();
    let mut value = serde_json::to_value(&f.receipt).unwrap();
    let object = value.as_object_mut().unwrap();
    object.remove("service_endorsements");
    object.remove("is_signature_transaction");
    object.insert("some_future_field".into(), serde_json::json!({"x": 1}));
    verify_json(&serde_json::to_vec(&value).unwrap(), &f.service_cert_pem).unwrap();
}

#[test]
fn signature_transaction_receipt_with_leaf() {
    let mut f = fixture();
    let leaf = consort_receipt::leaf(&f.receipt).unwrap();
    f.receipt.leaf_components = None;
    f.receipt.leaf = Some(hex::encode(leaf));
    f.receipt.is_signature_transaction = Some(true);
    assert_eq!(verify(&f.receipt, &f.service_cert_pem).unwrap().root, f.root);
    // A leaf that disagrees with the leaf components is malformed.
    let mut g = fixture();
    g.receipt.leaf = Some(hex::encode([7u8; 32]));
    assert!(
        matches!(verify(&g.receipt, &g.service_cert_pem), Err(ReceiptError::Malformed { field, .. }) if field == "leaf")
    );
}

#[test]
fn endorsement_chain_through_previous_service_identity() {
    // The node was certified by a previous service identity, which the current service has endorsed.
    let (old_key, old_cert) = service(Curve::P384);
    let (new_key, new_cert) = service(Curve::P384);
    let mut ca = consort_crypto::CertParams::new("CCF Service");
    ca.is_ca = true;
    let old_endorsed = consort_crypto::x509::issue(&old_key.verifying_key(), &ca, &new_key, &new_cert.der).unwrap();
    let mut f = fixture();
    f.receipt.cert = node_cert(&f.node_key, &old_key, &old_cert.der);
    f.receipt.service_endorsements = vec![old_endorsed.pem.clone()];
    verify(&f.receipt, &new_cert.pem).unwrap();

    // Without the endorsement the chain is broken at the node certificate.
    let mut g = f.receipt.clone();
    g.service_endorsements.clear();
    assert!(matches!(verify(&g, &new_cert.pem), Err(ReceiptError::NotEndorsed { endorsee, .. }) if endorsee == "cert"));
    // With the old service's self-signed certificate instead, the last link is broken.
    let mut g = f.receipt.clone();
    g.service_endorsements = vec![old_cert.pem.clone()];
    assert!(matches!(
        verify(&g, &new_cert.pem),
        Err(ReceiptError::NotEndorsed { endorsee, endorser, .. })
            if endorsee == "service_endorsements[0]" && endorser == "service certificate"
    ));
}

#[test]
fn endorsements_are_signature_checks_only_as_in_ccf() {
    // ccf.receipt.check_endorsements checks that each certificate is signed by the next one's key and nothing
    // else: no CA flag, no validity period, no key usage. Consort decides alike, so that every receipt CCF's
    // own verifier accepts verifies here too; a client wanting time checks uses ParsedCert::is_valid_at.
    let (service_key, service_cert) = service(Curve::P384);
    let middle_key = SigningKey::generate(Curve::P384);
    let not_a_ca = consort_crypto::CertParams::new("not a CA");
    let middle =
        consort_crypto::x509::issue(&middle_key.verifying_key(), &not_a_ca, &service_key, &service_cert.der).unwrap();
    assert!(!consort_crypto::ParsedCert::from_pem(&middle.pem).unwrap().is_ca);
    let mut f = fixture();
    f.receipt.cert = node_cert(&f.node_key, &middle_key, &middle.der);
    f.receipt.service_endorsements = vec![middle.pem];
    verify(&f.receipt, &service_cert.pem).unwrap();
}

#[test]
fn p256_node_and_service_keys() {
    let (service_key, service_cert) = service(Curve::P256);
    let node_key = SigningKey::generate(Curve::P256);
    let mut f = fixture();
    f.receipt.cert = node_cert(&node_key, &service_key, &service_cert.der);
    f.receipt.node_id = node_id(&f.receipt.cert);
    f.node_key = node_key;
    resign(&mut f);
    verify(&f.receipt, &service_cert.pem).unwrap();
}

// ---- each failure, with the error that names it ----

#[test]
fn tampered_proof_hash_fails_signature() {
    let mut f = fixture();
    let step = &mut f.receipt.proof[1];
    let digest = step.left.as_mut().or(step.right.as_mut()).unwrap();
    let flipped = if digest.starts_with('0') { "1" } else { "0" };
    digest.replace_range(0..1, flipped);
    assert!(matches!(
        verify(&f.receipt, &f.service_cert_pem),
        Err(ReceiptError::SignatureInvalid { .. })
    ));
}

#[test]
fn flipped_proof_side_fails_signature() {
    let mut f = fixture();
    let step = &mut f.receipt.proof[0];
    *step = match (step.left.take(), step.right.take()) {
        (Some(h), None) => ProofElement {
            left: None,
            right: Some(h),
        },
        (None, Some(h)) => ProofElement {
            left: Some(h),
            right: None,
        },
        _ => unreachable!(),
    };
    let err = verify(&f.receipt, &f.service_cert_pem).unwrap_err();
    assert!(
        matches!(err, ReceiptError::SignatureInvalid { ref root } if *root != hex::encode(f.root)),
        "{err:?}"
    );
}

#[test]
fn dropped_or_extra_proof_step_fails_signature() {
    let mut f = fixture();
    f.receipt.proof.pop();
    assert!(matches!(
        verify(&f.receipt, &f.service_cert_pem),
        Err(ReceiptError::SignatureInvalid { .. })
    ));
    let mut f = fixture();
    f.receipt.proof.push(ProofElement::right(&[0u8; 32]));
    assert!(matches!(
        verify(&f.receipt, &f.service_cert_pem),
        Err(ReceiptError::SignatureInvalid { .. })
    ));
}

#[test]
fn structurally_bad_proof_step_is_named() {
    let mut f = fixture();
    f.receipt.proof[2] = ProofElement {
        left: Some(hex::encode([1u8; 32])),
        right: Some(hex::encode([2u8; 32])),
    };
    assert!(matches!(
        verify(&f.receipt, &f.service_cert_pem),
        Err(ReceiptError::BadProofStep { index: 2, .. })
    ));
    let mut f = fixture();
    f.receipt.proof[0].left = f.receipt.proof[0].left.as_ref().map(|h| h[..62].to_string());
    f.receipt.proof[0].right = f.receipt.proof[0].right.as_ref().map(|h| h[..62].to_string());
    assert!(matches!(
        verify(&f.receipt, &f.service_cert_pem),
        Err(ReceiptError::BadProofStep { index: 0, .. })
    ));
    // {} as a step: neither side.
    let f = fixture();
    let mut value = serde_json::to_value(&f.receipt).unwrap();
    value["proof"][1] = serde_json::json!({});
    assert!(matches!(
        verify_json(&serde_json::to_vec(&value).unwrap(), &f.service_cert_pem),
        Err(ReceiptError::BadProofStep { index: 1, .. })
    ));
}

#[test]
fn tampered_leaf_components_fail_signature() {
    let f0 = fixture();
    let tamperings: [fn(&mut Receipt); 3] = [
        |r| r.leaf_components.as_mut().unwrap().commit_evidence.push('0'),
        |r| r.leaf_components.as_mut().unwrap().claims_digest = hex::encode([9u8; 32]),
        |r| r.leaf_components.as_mut().unwrap().write_set_digest = hex::encode([9u8; 32]),
    ];
    for tamper in tamperings {
        let mut r = f0.receipt.clone();
        tamper(&mut r);
        let err = verify(&r, &f0.service_cert_pem).unwrap_err();
        assert!(matches!(err, ReceiptError::SignatureInvalid { .. }), "{err:?}");
    }
}

#[test]
fn wrong_signature_fails() {
    let mut f = fixture();
    // Signed by another key.
    let other = SigningKey::generate(Curve::P384);
    f.receipt.signature = base64_encode(&other.sign_prehash_der(&f.root).unwrap());
    assert!(matches!(
        verify(&f.receipt, &f.service_cert_pem),
        Err(ReceiptError::SignatureInvalid { .. })
    ));
    // Signed by the node, over another root.
    f.receipt.signature = base64_encode(&f.node_key.sign_prehash_der(&[1u8; 32]).unwrap());
    assert!(matches!(
        verify(&f.receipt, &f.service_cert_pem),
        Err(ReceiptError::SignatureInvalid { .. })
    ));
    // Not DER at all.
    f.receipt.signature = base64_encode(b"not a signature");
    assert!(
        matches!(verify(&f.receipt, &f.service_cert_pem), Err(ReceiptError::Malformed { field, .. }) if field == "signature")
    );
}

#[test]
fn cert_not_endorsed_by_service_fails() {
    let f = fixture();
    let (_, other_service) = service(Curve::P384);
    let err = verify(&f.receipt, &other_service.pem).unwrap_err();
    assert!(
        matches!(err, ReceiptError::NotEndorsed { ref endorsee, ref endorser, .. } if endorsee == "cert" && endorser == "service certificate"),
        "{err:?}"
    );
    // A self-signed node certificate with a valid signature and node id is still not endorsed.
    let mut f = fixture();
    f.receipt.cert = consort_crypto::x509::self_signed(&f.node_key, &consort_crypto::CertParams::new("CCF Node"))
        .unwrap()
        .pem;
    assert!(matches!(
        verify(&f.receipt, &f.service_cert_pem),
        Err(ReceiptError::NotEndorsed { .. })
    ));
}

#[test]
fn node_id_mismatch_fails() {
    let mut f = fixture();
    f.receipt.node_id = hex::encode([0xabu8; 32]);
    let err = verify(&f.receipt, &f.service_cert_pem).unwrap_err();
    assert!(matches!(err, ReceiptError::NodeIdMismatch { ref claimed, .. } if *claimed == hex::encode([0xabu8; 32])));
    // The id of the certificate (DER hash) is not the node id (key hash).
    let mut f = fixture();
    f.receipt.node_id = consort_crypto::ParsedCert::from_pem(&f.receipt.cert).unwrap().cert_id();
    assert!(matches!(
        verify(&f.receipt, &f.service_cert_pem),
        Err(ReceiptError::NodeIdMismatch { .. })
    ));
}

#[test]
fn malformed_inputs_are_named() {
    let f = fixture();
    let json = serde_json::to_vec(&f.receipt).unwrap();
    let field_of = |bytes: &[u8]| match verify_json(bytes, &f.service_cert_pem) {
        Err(ReceiptError::Malformed { field, .. }) => field,
        other => panic!("expected Malformed, got {other:?}"),
    };
    // Not JSON, truncated JSON, JSON of the wrong shape.
    assert_eq!(field_of(b"not json"), "receipt");
    assert_eq!(field_of(&json[..json.len() / 2]), "receipt");
    assert_eq!(field_of(b"[1,2,3]"), "receipt");
    assert_eq!(field_of(br#"{"cert": 1}"#), "receipt");

    let with = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut v = serde_json::to_value(&f.receipt).unwrap();
        edit(&mut v);
        serde_json::to_vec(&v).unwrap()
    };
    assert_eq!(
        field_of(&with(&|v| v["signature"] = "!!not base64!!".into())),
        "signature"
    );
    assert_eq!(
        field_of(&with(&|v| v["leaf_components"]["write_set_digest"] = "xyz".into())),
        "leaf_components.write_set_digest"
    );
    assert_eq!(
        field_of(&with(&|v| v["leaf_components"]["claims_digest"] = "abcd".into())),
        "leaf_components.claims_digest"
    );
    assert_eq!(field_of(&with(&|v| v["leaf"] = "0g".into())), "leaf");
    assert_eq!(
        field_of(&with(&|v| {
            v.as_object_mut().unwrap().remove("leaf_components");
        })),
        "leaf_components"
    );
    assert!(matches!(
        verify_json(
            &with(&|v| v["proof"][0] = serde_json::json!({"left": "nothex"})),
            &f.service_cert_pem
        ),
        Err(ReceiptError::BadProofStep { index: 0, .. })
    ));
    assert!(matches!(
        verify_json(&with(&|v| v["cert"] = "garbage".into()), &f.service_cert_pem),
        Err(ReceiptError::BadCertificate { field, .. }) if field == "cert"
    ));
    assert!(matches!(
        verify_json(&with(&|v| v["service_endorsements"] = serde_json::json!(["garbage"])), &f.service_cert_pem),
        Err(ReceiptError::BadCertificate { field, .. }) if field == "service_endorsements[0]"
    ));
    assert!(matches!(
        verify_json(&json, "not a certificate"),
        Err(ReceiptError::BadCertificate { field, .. }) if field == "service certificate"
    ));
}

#[test]
fn limits_are_enforced() {
    let f = fixture();
    let big = vec![b' '; consort_receipt::limits::MAX_RECEIPT_BYTES + 1];
    assert!(matches!(
        verify_json(&big, &f.service_cert_pem),
        Err(ReceiptError::TooLarge { .. })
    ));
    let mut r = f.receipt.clone();
    r.service_endorsements = vec![String::new(); consort_receipt::limits::MAX_SERVICE_ENDORSEMENTS + 1];
    assert!(matches!(
        verify(&r, &f.service_cert_pem),
        Err(ReceiptError::TooLarge { .. })
    ));
}

#[test]
fn mutated_receipts_never_panic_and_never_verify() {
    // A cheap stand-in for the fuzz target that runs in every `cargo test`: change bytes throughout a valid
    // receipt, and truncate it everywhere; each result is either an error or (for changes that JSON ignores,
    // like whitespace) the same root.
    let f = fixture();
    let json = serde_json::to_vec_pretty(&f.receipt).unwrap();
    for len in 0..json.len() {
        assert!(verify_json(&json[..len], &f.service_cert_pem).is_err());
    }
    for position in (0..json.len()).step_by(5) {
        for replacement in [b'0', b'"', b'{', 0xff] {
            let mut mutated = json.clone();
            mutated[position] = replacement;
            if let Ok(v) = verify_json(&mutated, &f.service_cert_pem) {
                assert_eq!(v.root, f.root, "mutation at {position} verified with another root");
            }
        }
    }
}
