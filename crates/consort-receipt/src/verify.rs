//! Full receipt verification: recompute the root, check the node's signature over it, the node's identity, and
//! the chain of endorsements from the node certificate up to the service certificate.

use crate::error::{EndorsementFault, FieldFault};
use crate::{leaf, limits, root, Receipt, ReceiptError};
use base64::Engine as _;
use consort_crypto::{CryptoError, ParsedCert};

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The Merkle root the node signed, recomputed from the receipt's leaf and proof.
    pub root: [u8; 32],
    /// The id of the node that signed it (checked against its certificate).
    pub node_id: String,
}

fn parse_cert(field: &str, pem_text: &str) -> Result<ParsedCert, ReceiptError> {
    ParsedCert::from_pem(pem_text).map_err(|e| ReceiptError::BadCertificate {
        field: field.into(),
        source: e,
    })
}

/// Checks `endorsee` carries a signature made by the key of `endorser`, as CCF's `check_endorsement` does.
fn check_endorsement(
    endorsee: &ParsedCert,
    endorsee_name: &str,
    endorser: &ParsedCert,
    endorser_name: &str,
) -> Result<(), ReceiptError> {
    let not_endorsed = |fault| ReceiptError::NotEndorsed {
        endorsee: endorsee_name.into(),
        endorser: endorser_name.into(),
        fault,
    };
    let endorser_key = endorser
        .public_key()
        .map_err(|e| not_endorsed(EndorsementFault::EndorserKey(e)))?;
    endorsee
        .verify_signed_by(&endorser_key)
        .map_err(|e| not_endorsed(EndorsementFault::Signature(e)))
}

/// Verifies `receipt` against the service certificate (PEM).
///
/// Checks, in order: the leaf and the proof are well-formed and give a root; the signature and all certificates
/// parse; `node_id` is the key id of `cert`; the signature is `cert`'s key signing that root; and `cert` is endorsed
/// by the service certificate, directly or through `service_endorsements` (nearest to the node first).
///
/// What is deliberately not checked, as CCF's own verifier (`ccf.receipt.verify` and `check_endorsements`) does
/// not check it either, so that every receipt CCF accepts verifies here: certificate validity periods (a receipt
/// stays verifiable after its node certificate expires), the CA flag and key usage of endorsers (an endorsement
/// is a signature check), and low-S form of the ECDSA signature (OpenSSL, which CCF uses, accepts both). The
/// `node_id` check is Consort's own addition: CCF's Python verifier ignores the field.
pub fn verify(receipt: &Receipt, service_cert_pem: &str) -> Result<Verified, ReceiptError> {
    if receipt.service_endorsements.len() > limits::MAX_SERVICE_ENDORSEMENTS {
        return Err(ReceiptError::TooLarge {
            what: "service_endorsements",
            actual: receipt.service_endorsements.len(),
            limit: limits::MAX_SERVICE_ENDORSEMENTS,
        });
    }

    // Structure first: everything that needs no cryptography.
    let root = root(leaf(receipt)?, &receipt.proof)?;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(receipt.signature.as_bytes())
        .map_err(|e| ReceiptError::malformed("signature", FieldFault::Base64(e)))?;
    let node_cert = parse_cert("cert", &receipt.cert)?;
    let node_key = node_cert.public_key().map_err(|e| ReceiptError::BadCertificate {
        field: "cert".into(),
        source: e,
    })?;
    let endorsements = receipt
        .service_endorsements
        .iter()
        .enumerate()
        .map(|(i, pem_text)| parse_cert(&format!("service_endorsements[{i}]"), pem_text))
        .collect::<Result<Vec<_>, _>>()?;
    let service_cert = parse_cert("service certificate", service_cert_pem)?;

    // Identity: the node id is derived from the key, so it must match the certificate.
    let actual = node_cert.key_id();
    if receipt.node_id != actual {
        return Err(ReceiptError::NodeIdMismatch {
            claimed: receipt.node_id.clone(),
            actual,
        });
    }

    // The node signed the root: the root itself is the SHA-256 "prehash".
    match node_key.verify_prehash_der(&root, &signature) {
        Ok(()) => {}
        Err(CryptoError::BadSignature) => {
            return Err(ReceiptError::SignatureInvalid {
                root: hex::encode(root),
            })
        }
        Err(e) => return Err(ReceiptError::malformed("signature", FieldFault::Signature(e))),
    }

    // The node certificate chains to the service certificate.
    let mut endorsee = &node_cert;
    let mut endorsee_name = "cert".to_string();
    for (i, endorser) in endorsements.iter().enumerate() {
        let endorser_name = format!("service_endorsements[{i}]");
        check_endorsement(endorsee, &endorsee_name, endorser, &endorser_name)?;
        endorsee = endorser;
        endorsee_name = endorser_name;
    }
    check_endorsement(endorsee, &endorsee_name, &service_cert, "service certificate")?;

    Ok(Verified {
        root,
        node_id: receipt.node_id.clone(),
    })
}

/// Parses a JSON receipt and verifies it against the service certificate (PEM).
pub fn verify_json(bytes: &[u8], service_cert_pem: &str) -> Result<Verified, ReceiptError> {
    verify(&parse_json(bytes)?, service_cert_pem)
}

/// Parses a JSON receipt without verifying it.
pub fn parse_json(bytes: &[u8]) -> Result<Receipt, ReceiptError> {
    if bytes.len() > limits::MAX_RECEIPT_BYTES {
        return Err(ReceiptError::TooLarge {
            what: "receipt bytes",
            actual: bytes.len(),
            limit: limits::MAX_RECEIPT_BYTES,
        });
    }
    serde_json::from_slice(bytes).map_err(|e| ReceiptError::malformed("receipt", FieldFault::Json(e.into())))
}
