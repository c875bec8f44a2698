//! Test fixtures: a real service, a real node, a small Merkle tree and a receipt for one of its leaves.
#![allow(dead_code)]

use consort_crypto::x509::{issue, self_signed};
use consort_crypto::{sha256, CertParams, Curve, ParsedCert, SigningKey};
use consort_receipt::{leaf_from_components, LeafComponents, ProofElement, Receipt};

pub struct Fixture {
    pub service_key: SigningKey,
    pub service_cert_pem: String,
    pub node_key: SigningKey,
    pub receipt: Receipt,
    /// The root of the whole tree, computed independently of the receipt.
    pub root: [u8; 32],
}

pub fn service(curve: Curve) -> (SigningKey, consort_crypto::x509::GeneratedCert) {
    let key = SigningKey::generate(curve);
    let mut params = CertParams::new("CCF Service");
    params.is_ca = true;
    let cert = self_signed(&key, &params).unwrap();
    (key, cert)
}

pub fn node_cert(node_key: &SigningKey, issuer_key: &SigningKey, issuer_der: &[u8]) -> String {
    issue(
        &node_key.verifying_key(),
        &CertParams::new("CCF Node"),
        issuer_key,
        issuer_der,
    )
    .unwrap()
    .pem
}

pub fn node_id(cert_pem: &str) -> String {
    ParsedCert::from_pem(cert_pem).unwrap().key_id()
}

/// Leaves of a CCF-shaped tree: leaf 0 is 32 zero bytes, the others are hashed from components.
pub fn components(seqno: u64) -> LeafComponents {
    LeafComponents {
        write_set_digest: hex::encode(sha256(format!("entry {seqno}").as_bytes())),
        commit_evidence: format!("ce:2.{seqno}:{}", hex::encode(sha256(&seqno.to_le_bytes()))),
        claims_digest: hex::encode([0u8; 32]),
    }
}

/// A perfect binary tree over `leaves` (a power of two): the root and the proof for leaf `index`.
pub fn tree_proof(leaves: &[[u8; 32]], index: usize) -> ([u8; 32], Vec<ProofElement>) {
    assert!(leaves.len().is_power_of_two());
    let mut level = leaves.to_vec();
    let mut i = index;
    let mut proof = vec![];
    while level.len() > 1 {
        let sibling = i ^ 1;
        proof.push(if sibling < i {
            ProofElement::left(&level[sibling])
        } else {
            ProofElement::right(&level[sibling])
        });
        level = level
            .chunks(2)
            .map(|pair| sha256(&[pair[0], pair[1]].concat()))
            .collect();
        i /= 2;
    }
    (level[0], proof)
}

/// A receipt for transaction `index` of an 8-leaf tree, signed by a node certified directly by the service.
pub fn fixture_at(index: usize) -> Fixture {
    let (service_key, service_cert) = service(Curve::P384);
    let node_key = SigningKey::generate(Curve::P384);
    let cert = node_cert(&node_key, &service_key, &service_cert.der);
    let mut leaves = vec![[0u8; 32]];
    leaves.extend((1..8).map(|s| leaf_from_components(&components(s)).unwrap()));
    let (root, proof) = tree_proof(&leaves, index);
    let signature = base64_encode(&node_key.sign_prehash_der(&root).unwrap());
    let receipt = Receipt {
        node_id: node_id(&cert),
        cert,
        signature,
        proof,
        leaf_components: Some(components(index as u64)),
        service_endorsements: vec![],
        is_signature_transaction: Some(false),
        leaf: None,
    };
    Fixture {
        service_key,
        service_cert_pem: service_cert.pem,
        node_key,
        receipt,
        root,
    }
}

pub fn fixture() -> Fixture {
    fixture_at(5)
}

pub fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Re-signs the receipt's current root with the node key (after a deliberate change elsewhere).
pub fn resign(f: &mut Fixture) {
    let root = consort_receipt::root(consort_receipt::leaf(&f.receipt).unwrap(), &f.receipt.proof).unwrap();
    f.receipt.signature = base64_encode(&f.node_key.sign_prehash_der(&root).unwrap());
}
