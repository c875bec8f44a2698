//! Standalone verification of CCF JSON receipts: a client checks a transaction was signed into the ledger.
//!
//! A receipt proves that one transaction's leaf is in a Merkle tree whose root a node signed, and that the node's
//! certificate is endorsed by the service. Verification needs only the receipt and the service certificate: this
//! crate depends on nothing but `consort-crypto`, so any client can build it alone.
//!
//! ```text
//! leaf  = SHA-256(write_set_digest ‖ SHA-256(commit_evidence) ‖ claims_digest)
//! root  = fold proof: {"left": s} → SHA-256(s ‖ cur), {"right": s} → SHA-256(cur ‖ s)
//! check = ECDSA(cert key, prehashed root, signature) ∧ node_id = key id(cert) ∧ cert ⇐ endorsements ⇐ service
//! ```
#![forbid(unsafe_code)]
#![warn(unreachable_pub, missing_docs)]

mod error;
pub mod limits;
mod merkle;
mod model;
mod verify;

pub use error::{EndorsementFault, FieldFault, ProofStepFault, ReceiptError};
pub use merkle::{leaf, leaf_from_components, root};
pub use model::{LeafComponents, ProofElement, Receipt};
pub use verify::{parse_json, verify, verify_json, Verified};

/// Result of this crate's operations.
pub type Result<T, E = ReceiptError> = std::result::Result<T, E>;
