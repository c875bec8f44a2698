//! Typed errors of receipt verification: each variant names the part of the receipt that failed.

/// Why a receipt was rejected.
///
/// A receipt carries no copy of the signed root, so a tampered proof hash, a tampered leaf component and a
/// forged signature all surface the same way: the signature does not verify over the recomputed root
/// ([`ReceiptError::SignatureInvalid`]). Structural faults (bad hex, wrong digest length, a proof step naming both
/// or neither side) are caught before any cryptography and named precisely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// The receipt is not well-formed: bad JSON, a missing field, bad hex or base64, a digest of the wrong length.
    /// `field` names the JSON field (for example `leaf_components.write_set_digest`).
    #[error("malformed receipt field {field}: {reason}")]
    Malformed {
        /// The JSON field, dotted from the top.
        field: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Step `index` of the inclusion proof is unusable (both or neither of left/right, bad hex, not 32 bytes).
    #[error("bad proof step {index}: {reason}")]
    BadProofStep {
        /// Position of the step in `proof`, from 0.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },

    /// The input exceeds one of the limits in [`crate::limits`].
    #[error("receipt too large: {what} is {actual}, limit {limit}")]
    TooLarge {
        /// What was measured (the receipt, the proof, a certificate).
        what: &'static str,
        /// Its size or count.
        actual: usize,
        /// The limit it exceeds.
        limit: usize,
    },

    /// A certificate (`cert`, `service_endorsements[i]` or the service certificate) could not be parsed, or does
    /// not hold an ECDSA P-256/P-384 key.
    #[error("bad certificate {field}: {source}")]
    BadCertificate {
        /// Which certificate: the JSON field, or `service certificate`.
        field: String,
        /// Why it is unusable.
        #[source]
        source: consort_crypto::CryptoError,
    },

    /// The node's signature does not verify over the root recomputed from the leaf and the proof. Either the
    /// signature, the proof or the leaf (components) were altered, or the receipt is for another tree.
    #[error("signature does not verify over recomputed root {root}")]
    SignatureInvalid {
        /// The recomputed root, hex.
        root: String,
    },

    /// The chain from the node certificate through `service_endorsements` to the service certificate is broken:
    /// `endorsee` is not signed by `endorser`.
    #[error("{endorsee} is not endorsed by {endorser}: {reason}")]
    NotEndorsed {
        /// The certificate whose endorsement failed.
        endorsee: String,
        /// The certificate that should have signed it.
        endorser: String,
        /// Why the check failed.
        reason: String,
    },

    /// `node_id` is not the key id (hex SHA-256 of the SubjectPublicKeyInfo) of the receipt's certificate.
    #[error("node_id {claimed} does not match the certificate's key id {actual}")]
    NodeIdMismatch {
        /// The receipt's `node_id`.
        claimed: String,
        /// The key id of the receipt's certificate.
        actual: String,
    },
}

impl ReceiptError {
    pub(crate) fn malformed(field: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        ReceiptError::Malformed {
            field: field.into(),
            reason: reason.to_string(),
        }
    }
}
