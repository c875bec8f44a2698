//! Named bounds on what a receipt may contain; anything beyond them is rejected before any work is done on it.

/// Largest receipt JSON accepted by [`crate::verify_json`]. A receipt is a few certificates and a proof of at most
/// [`MAX_PROOF_STEPS`] digests, so a few kilobytes in practice; this leaves room for long endorsement chains.
pub const MAX_RECEIPT_BYTES: usize = 1024 * 1024;

/// Longest inclusion proof: one step per tree level, and a tree of transactions indexed by a 64-bit seqno has at
/// most 64 levels.
pub const MAX_PROOF_STEPS: usize = 64;

/// Most certificates in `service_endorsements`. CCF adds one per service identity the node certificate has to be
/// linked through (one per disaster recovery); each costs one ECDSA verification.
pub const MAX_SERVICE_ENDORSEMENTS: usize = 256;
