//! The CCF JSON receipt as data: field names and shapes exactly as CCF's `GET /app/receipt` returns them.

use serde::{Deserialize, Serialize};

/// A CCF JSON receipt for one transaction.
///
/// A receipt for an ordinary transaction carries `leaf_components`; one for a signature transaction carries the
/// `leaf` digest directly instead.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Receipt {
    /// PEM certificate of the node that signed the Merkle root.
    pub cert: String,
    /// Id of that node: hex SHA-256 of its public key's DER SubjectPublicKeyInfo.
    pub node_id: String,
    /// Base64 DER ECDSA signature over the 32-byte Merkle root, prehashed as SHA-256 (the root is the digest).
    pub signature: String,
    /// Inclusion proof, from the leaf up to the root.
    #[serde(default)]
    pub proof: Vec<ProofElement>,
    /// The parts the leaf is hashed from (ordinary transactions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf_components: Option<LeafComponents>,
    /// PEM certificates linking the node certificate to the service certificate, nearest to the node first.
    #[serde(default)]
    pub service_endorsements: Vec<String>,
    /// Set by CCF on receipts for signature transactions; informational, the verifier does not rely on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_signature_transaction: Option<bool>,
    /// Hex leaf digest (signature-transaction receipts, which have no leaf components).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf: Option<String>,
}

/// One step of an inclusion proof: the hex digest of the sibling on the `left` or on the `right` of the path.
/// Exactly one of the two is set; [`crate::root`] rejects a step with both or neither.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ProofElement {
    /// Hex digest of a sibling on the left of the path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left: Option<String>,
    /// Hex digest of a sibling on the right of the path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub right: Option<String>,
}

impl ProofElement {
    /// A step whose sibling digest sits on the left: parent = SHA-256(sibling ‖ current).
    pub fn left(digest: &[u8; 32]) -> Self {
        ProofElement {
            left: Some(hex::encode(digest)),
            right: None,
        }
    }

    /// A step whose sibling digest sits on the right: parent = SHA-256(current ‖ sibling).
    pub fn right(digest: &[u8; 32]) -> Self {
        ProofElement {
            left: None,
            right: Some(hex::encode(digest)),
        }
    }
}

/// What a transaction's Merkle leaf is hashed from.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct LeafComponents {
    /// Hex SHA-256 of the whole ledger entry.
    pub write_set_digest: String,
    /// The commit evidence string, `ce:<view>.<seqno>:<hex>`; the leaf uses its SHA-256.
    pub commit_evidence: String,
    /// Hex digest of the application claims (zeros when there are none).
    pub claims_digest: String,
}
