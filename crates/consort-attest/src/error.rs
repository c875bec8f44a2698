//! The typed errors of evidence production, verification and sealing.
//!
//! Messages describe what failed and never carry secret material: they reach logs and HTTP answers.

/// Why evidence could not be produced or verified, or a secret could not be sealed or unsealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestError {
    /// The bytes do not parse as the format claims.
    #[error("malformed evidence: {0}")]
    Malformed(String),
    /// A field exceeds its named limit.
    #[error("{what} of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Which field.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The format name is none this crate knows.
    #[error("unknown attestation format {0:?}")]
    UnknownFormat(String),
    /// The report data is not SHA-256 of the presented public key.
    #[error("the evidence does not bind the presented public key (report data is not SHA-256 of its DER)")]
    KeyBindingMismatch,
    /// The endorsements are missing, malformed, or do not chain to a built-in AMD root.
    #[error("endorsements do not verify: {0}")]
    Endorsements(String),
    /// The report's signature does not verify under the endorsed key.
    #[error("report signature does not verify: {0}")]
    Signature(String),
    /// The report is well-formed but of a kind this crate does not accept.
    #[error("unsupported report: {0}")]
    Unsupported(String),
    /// Sealed data is malformed, was sealed by another platform, or was altered.
    #[error("cannot unseal: {0}")]
    Sealing(String),
    /// The platform's hardware or files are not available on this machine.
    #[error("attestation platform unavailable: {0}")]
    Unavailable(String),
}
