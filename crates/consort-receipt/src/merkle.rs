//! Recomputing a Merkle root from a receipt: the leaf from its components, then the proof folded over it.

use crate::error::{FieldFault, ProofStepFault};
use crate::{limits, LeafComponents, ProofElement, Receipt, ReceiptError};
use consort_crypto::{sha256, Sha256Hasher};

/// Decodes a hex SHA-256 digest; `field` names it in the error.
fn digest_from_hex(field: &str, text: &str) -> Result<[u8; 32], ReceiptError> {
    let bytes = hex::decode(text).map_err(|e| ReceiptError::malformed(field, FieldFault::Hex(e.into())))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| ReceiptError::malformed(field, FieldFault::DigestLength(b.len())))
}

/// The leaf digest of a transaction: SHA-256(write_set_digest ‖ SHA-256(commit_evidence) ‖ claims_digest).
pub fn leaf_from_components(components: &LeafComponents) -> Result<[u8; 32], ReceiptError> {
    let write_set_digest = digest_from_hex("leaf_components.write_set_digest", &components.write_set_digest)?;
    let claims_digest = digest_from_hex("leaf_components.claims_digest", &components.claims_digest)?;
    let commit_evidence_digest = sha256(components.commit_evidence.as_bytes());
    let mut hasher = Sha256Hasher::new();
    hasher.update(&write_set_digest);
    hasher.update(&commit_evidence_digest);
    hasher.update(&claims_digest);
    Ok(hasher.finish())
}

/// The receipt's leaf digest: from `leaf_components` for ordinary transactions, or the `leaf` field of a
/// signature-transaction receipt. When both are present they must agree.
pub fn leaf(receipt: &Receipt) -> Result<[u8; 32], ReceiptError> {
    let given = receipt
        .leaf
        .as_deref()
        .map(|text| digest_from_hex("leaf", text))
        .transpose()?;
    match (&receipt.leaf_components, given) {
        (Some(components), given) => {
            let computed = leaf_from_components(components)?;
            match given {
                Some(given) if given != computed => Err(ReceiptError::malformed(
                    "leaf",
                    FieldFault::LeafMismatch {
                        given: hex::encode(given),
                        computed: hex::encode(computed),
                    },
                )),
                _ => Ok(computed),
            }
        }
        (None, Some(given)) => Ok(given),
        (None, None) => Err(ReceiptError::malformed("leaf_components", FieldFault::MissingLeaf)),
    }
}

/// Folds an inclusion proof over `leaf`, bottom up, and returns the root it leads to.
pub fn root(leaf: [u8; 32], proof: &[ProofElement]) -> Result<[u8; 32], ReceiptError> {
    if proof.len() > limits::MAX_PROOF_STEPS {
        return Err(ReceiptError::TooLarge {
            what: "proof steps",
            actual: proof.len(),
            limit: limits::MAX_PROOF_STEPS,
        });
    }
    let mut current = leaf;
    for (index, step) in proof.iter().enumerate() {
        let bad = |fault| ReceiptError::BadProofStep { index, fault };
        let (sibling_hex, sibling_is_left) = match (&step.left, &step.right) {
            (Some(left), None) => (left, true),
            (None, Some(right)) => (right, false),
            (Some(_), Some(_)) => return Err(bad(ProofStepFault::BothSides)),
            (None, None) => return Err(bad(ProofStepFault::NeitherSide)),
        };
        let sibling_bytes = hex::decode(sibling_hex).map_err(|e| bad(ProofStepFault::Hex(e.into())))?;
        let sibling: [u8; 32] = sibling_bytes
            .try_into()
            .map_err(|b: Vec<u8>| bad(ProofStepFault::DigestLength(b.len())))?;
        let mut hasher = Sha256Hasher::new();
        if sibling_is_left {
            hasher.update(&sibling);
            hasher.update(&current);
        } else {
            hasher.update(&current);
            hasher.update(&sibling);
        }
        current = hasher.finish();
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn components() -> LeafComponents {
        LeafComponents {
            write_set_digest: hex::encode([1u8; 32]),
            commit_evidence: "ce:2.5:abcd".into(),
            claims_digest: hex::encode([0u8; 32]),
        }
    }

    #[test]
    fn leaf_is_hash_of_components() {
        let mut concatenated = vec![1u8; 32];
        concatenated.extend_from_slice(&sha256(b"ce:2.5:abcd"));
        concatenated.extend_from_slice(&[0u8; 32]);
        assert_eq!(leaf_from_components(&components()).unwrap(), sha256(&concatenated));
    }

    #[test]
    fn leaf_component_errors_name_the_field() {
        let mut c = components();
        c.claims_digest = "00".into();
        let e = leaf_from_components(&c).unwrap_err();
        assert!(matches!(e, ReceiptError::Malformed { ref field, .. } if field == "leaf_components.claims_digest"));
        let mut c = components();
        c.write_set_digest = "zz".into();
        let e = leaf_from_components(&c).unwrap_err();
        assert!(matches!(e, ReceiptError::Malformed { ref field, .. } if field == "leaf_components.write_set_digest"));
    }

    #[test]
    fn root_folds_left_and_right() {
        let a = [1u8; 32];
        let b = [2u8; 32];
        let c = [3u8; 32];
        let ab = sha256(&[a, b].concat());
        let abc = sha256(&[ab, c].concat());
        assert_eq!(
            root(a, &[ProofElement::right(&b), ProofElement::right(&c)]).unwrap(),
            abc
        );
        assert_eq!(
            root(b, &[ProofElement::left(&a), ProofElement::right(&c)]).unwrap(),
            abc
        );
        assert_eq!(root(a, &[]).unwrap(), a);
    }

    #[test]
    fn bad_steps_are_named_by_index() {
        let ok = ProofElement::right(&[0u8; 32]);
        let both = ProofElement {
            left: ok.right.clone(),
            right: ok.right.clone(),
        };
        let neither = ProofElement {
            left: None,
            right: None,
        };
        let short = ProofElement {
            left: Some("abcd".into()),
            right: None,
        };
        let not_hex = ProofElement {
            left: None,
            right: Some("xy".repeat(32)),
        };
        for bad in [both, neither, short, not_hex] {
            let e = root([0u8; 32], &[ok.clone(), bad]).unwrap_err();
            assert!(matches!(e, ReceiptError::BadProofStep { index: 1, .. }), "{e:?}");
        }
    }

    #[test]
    fn field_and_step_faults_say_what_was_wrong_and_keep_the_hex_error() {
        let mut c = components();
        c.claims_digest = "00".into();
        let e = leaf_from_components(&c).unwrap_err();
        assert!(
            matches!(
                e,
                ReceiptError::Malformed {
                    fault: FieldFault::DigestLength(1),
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "malformed receipt field leaf_components.claims_digest: expected 32 bytes, got 1"
        );
        let not_hex = ProofElement {
            left: None,
            right: Some("xy".repeat(32)),
        };
        let e = root([0u8; 32], &[not_hex]).unwrap_err();
        let ReceiptError::BadProofStep {
            index: 0,
            fault: ProofStepFault::Hex(hex_error),
        } = &e
        else {
            panic!("not a hex fault: {e:?}");
        };
        let fault = std::error::Error::source(&e).expect("the fault is kept");
        let source = fault.source().expect("the hex error is kept");
        assert_eq!(source.to_string(), hex_error.get().to_string());
        assert_eq!(e.to_string(), format!("bad proof step 0: bad hex: {}", hex_error.get()));
    }

    #[test]
    fn overlong_proof_is_rejected() {
        let proof = vec![ProofElement::right(&[0u8; 32]); limits::MAX_PROOF_STEPS + 1];
        assert!(matches!(root([0u8; 32], &proof), Err(ReceiptError::TooLarge { .. })));
    }
}
