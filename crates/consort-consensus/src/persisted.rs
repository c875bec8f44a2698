//! What a node keeps on disk besides the ledger chunks (Raft hard state, the installed snapshot, the first
//! membership), and the byte encodings it stores them in.

use crate::error::{ConsensusError, Inconsistency};
use protobuf::Message as _;
use raft::eraftpb::{HardState, Snapshot};

/// What the node kept on disk besides the ledger chunks, handed back at start-up.
#[derive(Debug, Clone, Default)]
pub struct PersistedState {
    /// The last hard state from an [`Action::Persist`] that completed.
    pub hard_state: Option<HardState>,
    /// The last snapshot from an [`Action::Persist`] that completed, or the snapshot a joiner was given
    /// ([`Replica::snapshot`] on a member), as an encoded Raft `Snapshot`.
    pub snapshot: Option<Vec<u8>>,
    /// The first membership of the service (used only when there is no snapshot).
    pub voters: Vec<u64>,
    /// For a service recovered from an old ledger: where its ledger continues the old one (used only when there
    /// is no snapshot; see [`crate::RecoveryBase`]).
    pub recovery: Option<crate::RecoveryBase>,
}

/// Encodes a hard state for the node's disk.
pub fn encode_hard_state(hs: &HardState) -> Vec<u8> {
    encode_protobuf(hs)
}

/// Encodes a Raft snapshot (as [`Action::SnapshotCommitted`] hands it out) for the node's disk or a joiner.
pub fn encode_snapshot(snapshot: &Snapshot) -> Vec<u8> {
    encode_protobuf(snapshot)
}

/// Decodes what [`encode_hard_state`] wrote.
pub fn decode_hard_state(bytes: &[u8]) -> Result<HardState, ConsensusError> {
    HardState::parse_from_bytes(bytes).map_err(|e| Inconsistency::HardState(e.into()).into())
}

/// Encodes any protobuf message (Raft messages, hard states, snapshots) into bytes.
pub(crate) fn encode_protobuf(message: &impl protobuf::Message) -> Vec<u8> {
    // invariant: encoding into a Vec fails only for a message missing required fields, which proto3 messages
    // (all of raft-rs's) do not have; the Vec grows as needed.
    message
        .write_to_bytes()
        .expect("encoding a proto3 message into a Vec cannot fail")
}
