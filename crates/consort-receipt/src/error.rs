//! Typed errors of receipt verification: each variant names the part of the receipt that failed, and what was
//! wrong with it as a small enum that keeps the underlying error (hex, base64, JSON, crypto) as its source.

use consort_crypto::{CryptoError, SharedError};

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
    #[error("malformed receipt field {field}: {fault}")]
    Malformed {
        /// The JSON field, dotted from the top.
        field: String,
        /// What is wrong with it.
        #[source]
        fault: FieldFault,
    },

    /// Step `index` of the inclusion proof is unusable (both or neither of left/right, bad hex, not 32 bytes).
    #[error("bad proof step {index}: {fault}")]
    BadProofStep {
        /// Position of the step in `proof`, from 0.
        index: usize,
        /// What is wrong with it.
        #[source]
        fault: ProofStepFault,
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
    #[error("{endorsee} is not endorsed by {endorser}: {fault}")]
    NotEndorsed {
        /// The certificate whose endorsement failed.
        endorsee: String,
        /// The certificate that should have signed it.
        endorser: String,
        /// Why the check failed.
        #[source]
        fault: EndorsementFault,
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
    pub(crate) fn malformed(field: impl Into<String>, fault: FieldFault) -> Self {
        ReceiptError::Malformed {
            field: field.into(),
            fault,
        }
    }
}

/// What is wrong with a receipt field (see [`ReceiptError::Malformed`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldFault {
    /// The receipt is not the JSON a receipt is.
    #[error("bad JSON: {0}")]
    Json(#[source] SharedError<serde_json::Error>),
    /// The field is not hex.
    #[error("bad hex: {0}")]
    Hex(#[source] SharedError<hex::FromHexError>),
    /// The field is not base64.
    #[error("bad base64: {0}")]
    Base64(#[source] base64::DecodeError),
    /// A digest of another length than SHA-256's 32 bytes.
    #[error("expected 32 bytes, got {0}")]
    DigestLength(usize),
    /// `leaf` and the leaf recomputed from `leaf_components` differ.
    #[error("{given} differs from the leaf of leaf_components, {computed}")]
    LeafMismatch {
        /// The receipt's `leaf`, hex.
        given: String,
        /// The leaf of `leaf_components`, hex.
        computed: String,
    },
    /// Neither `leaf_components` nor `leaf` is present.
    #[error("missing (and no leaf either)")]
    MissingLeaf,
    /// The signature is not a well-formed ECDSA signature (a signature that does not verify is
    /// [`ReceiptError::SignatureInvalid`]).
    #[error("{0}")]
    Signature(#[source] CryptoError),
}

/// What is wrong with one step of the inclusion proof (see [`ReceiptError::BadProofStep`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofStepFault {
    /// The step names a sibling on both sides.
    #[error("has both left and right")]
    BothSides,
    /// The step names no sibling.
    #[error("has neither left nor right")]
    NeitherSide,
    /// The sibling is not hex.
    #[error("bad hex: {0}")]
    Hex(#[source] SharedError<hex::FromHexError>),
    /// The sibling is not a 32-byte digest.
    #[error("expected 32 bytes, got {0}")]
    DigestLength(usize),
}

/// Why an endorsement did not check (see [`ReceiptError::NotEndorsed`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndorsementFault {
    /// The endorser certificate holds no usable key.
    #[error("endorser key: {0}")]
    EndorserKey(#[source] CryptoError),
    /// The endorsee's signature does not verify under the endorser's key (or is malformed).
    #[error("{0}")]
    Signature(#[source] CryptoError),
}
