//! Receipt production: CCF's JSON receipt for a transaction, from the signature transaction that covers it and
//! the transaction's Merkle path. Verification lives in consort-receipt, which any client can build alone.

use crate::entry::{EntryView, LedgerSecret};
use crate::merkle::ProofStep;
use crate::signature::PrimarySignature;

/// What a transaction's leaf is hashed from: SHA-256(write_set_digest ‖ SHA-256(commit_evidence) ‖ claims).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafComponents {
    /// SHA-256 of the whole encoded entry.
    pub write_set_digest: [u8; 32],
    /// The commit evidence string (`ce:<view>.<seqno>:<hex>`), revealed only for committed transactions.
    pub commit_evidence: String,
    /// Digest of application claims (zeros: Consort records none).
    pub claims_digest: [u8; 32],
}

impl LeafComponents {
    /// The components of an entry, with its commit evidence derived from the ledger secret. Consort records no
    /// application claims, so the claims digest is zeros.
    pub fn of_entry(entry: &EntryView<'_>, secret: &LedgerSecret) -> Self {
        LeafComponents {
            write_set_digest: entry.write_set_digest(),
            commit_evidence: secret.commit_evidence(entry.view, entry.seqno),
            claims_digest: [0u8; 32],
        }
    }

    /// The Merkle leaf these components hash to.
    pub fn leaf(&self) -> [u8; 32] {
        crate::entry::leaf_digest(
            &self.write_set_digest,
            &consort_crypto::sha256(self.commit_evidence.as_bytes()),
            &self.claims_digest,
        )
    }
}

fn proof_json(proof: &[ProofStep]) -> serde_json::Value {
    serde_json::Value::Array(proof.iter().map(ProofStep::to_json).collect())
}

/// CCF's JSON receipt for an ordinary transaction. `proof` is the path of its leaf in the tree of
/// `signature.seqno` leaves (see [`crate::MerkleTree::path`]); `service_endorsements` links the node
/// certificate to the service certificate when it is not endorsed by it directly (nearest to the node first).
pub fn receipt_json(
    signature: &PrimarySignature,
    proof: &[ProofStep],
    leaf_components: &LeafComponents,
    service_endorsements: &[String],
) -> serde_json::Value {
    serde_json::json!({
        "cert": signature.cert,
        "node_id": signature.node,
        "signature": signature.sig,
        "proof": proof_json(proof),
        "leaf_components": {
            "write_set_digest": hex::encode(leaf_components.write_set_digest),
            "commit_evidence": leaf_components.commit_evidence,
            "claims_digest": hex::encode(leaf_components.claims_digest),
        },
        "service_endorsements": service_endorsements,
    })
}

/// CCF's JSON receipt for a signature transaction: it carries its leaf digest instead of leaf components.
pub fn signature_receipt_json(
    signature: &PrimarySignature,
    proof: &[ProofStep],
    leaf: &[u8; 32],
    service_endorsements: &[String],
) -> serde_json::Value {
    serde_json::json!({
        "cert": signature.cert,
        "node_id": signature.node,
        "signature": signature.sig,
        "proof": proof_json(proof),
        "leaf": hex::encode(leaf),
        "is_signature_transaction": true,
        "service_endorsements": service_endorsements,
    })
}
