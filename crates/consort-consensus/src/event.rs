//! The step function's interface: the [`Event`]s a node feeds a replica and the [`Action`]s it gets back.

use crate::error::{ConsensusError, ProposeError};
use crate::snapshot::{SnapshotBuild, SnapshotBuilt};
use crate::vocab::{RaftId, Role, Seqno, TxId, View};
use consort_kv::{Version, WriteSet};
use raft::eraftpb::{ConfChangeV2, ConfState, HardState, Snapshot};

/// An input to [`Replica::step`].
#[derive(Debug, Clone)]
pub enum Event {
    /// One unit of time passed.
    Tick,
    /// A Raft message from peer `from` (authenticated by the node-to-node channel).
    Receive {
        /// The sender's Raft id.
        from: RaftId,
        /// The encoded Raft message.
        message: Vec<u8>,
    },
    /// The primary executed a transaction and committed it locally to [`Replica::store`] at `version` (the
    /// store's current version, which must be [`Replica::last_seqno`] + 1). Answered by [`Action::Proposed`]
    /// or, after the replica rolled the store back to `version - 1`, [`Action::ProposalRejected`].
    Propose {
        /// The store version the transaction committed at.
        version: Version,
        /// Its write set.
        write_set: WriteSet,
        /// The application's claims digest for the transaction's receipt (`None`: no claims).
        claims_digest: Option<[u8; 32]>,
    },
    /// Change the membership (add a learner, promote it to voter, remove a node).
    ProposeConfChange {
        /// The change, as raft-rs takes it.
        change: ConfChangeV2,
    },
    /// The [`Action::Persist`] with this number (and every earlier one) is durable.
    Persisted {
        /// The number of the completed [`Action::Persist`].
        number: u64,
    },
    /// Start an election now.
    Campaign,
    /// On the primary: hand the primary role to voter `to` (Raft leadership transfer: `to` campaigns at once when
    /// its log is up to date). Used before the primary is removed from the membership.
    TransferLeadership {
        /// Raft id of the voter to hand the role to.
        to: RaftId,
    },
    /// A build handed out by [`Action::BuildSnapshot`] finished.
    SnapshotBuilt(SnapshotBuilt),
}

/// An output of [`Replica::step`], in the order the node must carry them out.
#[derive(Debug)]
pub enum Action {
    /// Send an encoded Raft message to a peer (best effort: Raft retries).
    Send {
        /// The receiver's Raft id.
        to: RaftId,
        /// The encoded Raft message.
        message: Vec<u8>,
    },
    /// Make the ledger durable ([`Replica::sync_ledger`]), then durably store `hard_state` (if any, replacing the
    /// previous one) and `snapshot` (if any: an installed snapshot, which the ledger now starts after), in that
    /// order, then report [`Event::Persisted`]. Persist in order; completing number n completes all before it.
    /// Messages that depend on this durability are held back until then.
    Persist {
        /// Reported back in [`Event::Persisted`].
        number: u64,
        /// Raft's hard state to store, if it changed.
        hard_state: Option<HardState>,
        /// An installed snapshot (encoded Raft `Snapshot`) to store, if any.
        snapshot: Option<Vec<u8>>,
    },
    /// The CCF commit point advanced: every transaction up to this signature transaction is Committed.
    Committed(TxId),
    /// Entries from the primary were appended and their write sets applied to the store (not yet committed).
    Applied {
        /// First seqno applied.
        first: Seqno,
        /// Last seqno applied.
        last: Seqno,
    },
    /// Uncommitted transactions after `to` were dropped from the ledger, the Merkle tree and the store; they will
    /// never be Committed in their view.
    RolledBack {
        /// The last seqno kept.
        to: Seqno,
    },
    /// A snapshot from the primary replaced this replica's state (store, ledger, tree).
    SnapshotInstalled(TxId),
    /// Build this periodic snapshot off the engine lock (on any thread: [`SnapshotBuild::run`]) and report the
    /// result as [`Event::SnapshotBuilt`]. Transactions go on meanwhile. Dropping the build abandons it.
    BuildSnapshot(Box<SnapshotBuild>),
    /// A periodic snapshot of the state at signature transaction `seqno` is final: its digest, recorded by the
    /// evidence transaction `evidence`, is covered by a committed signature. `snapshot` is the Raft `Snapshot` a
    /// joiner can start from; the node stores it ([`encode_snapshot`], off the engine lock: it is megabytes) as
    /// `snapshot_<seqno>_<evidence>.committed`.
    SnapshotCommitted {
        /// The signature transaction the snapshot was taken at.
        seqno: Seqno,
        /// The evidence transaction that records its digest.
        evidence: Seqno,
        /// The snapshot, for joiners.
        snapshot: Snapshot,
    },
    /// The client proposal is in the log at this transaction id.
    Proposed(TxId),
    /// The proposal of `version` was refused; for client proposals the store was rolled back to `version - 1`.
    ProposalRejected {
        /// The refused proposal's store version.
        version: Version,
        /// Why it was refused.
        error: ProposeError,
    },
    /// A membership change committed and took effect.
    ConfChanged {
        /// Seqno of the committed change.
        seqno: Seqno,
        /// The membership now in force.
        conf_state: ConfState,
    },
    /// This replica's role or the primary it knows of changed.
    RoleChanged {
        /// The new role.
        role: Role,
        /// The current view.
        view: View,
        /// The primary it knows of, if any.
        leader: Option<RaftId>,
    },
    /// An input was refused and ignored (malformed or invalid message from a peer, unknown persist number).
    Dropped {
        /// The peer the input came from, if it came from one.
        from: Option<RaftId>,
        /// Why it was refused.
        error: ConsensusError,
    },
    /// The replica found something it must not go past (a bad signature transaction, an entry that does not
    /// decrypt, a disk error) and stopped: it ignores every further event.
    Halted {
        /// What stopped it.
        error: ConsensusError,
    },
}
