//! Consort's replication core: tikv's raft-rs driven as a pure step function, with the CCF ledger as the Raft log.
//!
//! This crate is sans-IO: no files, sockets, clocks or threads. Time comes in as [`Event::Tick`], peer messages
//! come in and go out as bytes, and the disk is reached only through [`consort_ledger::LedgerStorage`] (ledger
//! chunks) and [`Action::Persist`] (hard state and installed snapshots, which the node stores). CPU-heavy work that
//! must not hold up the step function (building a periodic snapshot) is handed out as [`Action::BuildSnapshot`],
//! to run on any thread, and comes back as [`Event::SnapshotBuilt`].
//!
//! ```text
//!             Event::{Tick, Receive, Propose, ProposeConfChange, Persisted, SnapshotBuilt}
//!   node ─────────────────────────────────────────────────────────────▶ Replica::step ──▶ Vec<Action>
//!          Action::{Send, Persist, Committed, RolledBack, Proposed, ...} ◀──────────────────┘
//! ```
//!
//! Mapping between Raft and CCF (see ARCHITECTURE.md and docs/formats.md):
//! - view = Raft term, seqno = Raft index; every Raft entry is exactly one CCF ledger entry (one copy, in the
//!   chunk files of [`consort_ledger::Ledger`]); [`raft::Storage`] is implemented over that ledger.
//! - A normal entry's Raft data is the encoded CCF entry. An entry Raft creates itself with empty data (a new
//!   leader's empty entry, or a refused conf change) is the canonical empty write set entry for its view and
//!   seqno, which every replica derives identically from the ledger secret ([`codec::empty_entry`]).
//! - A membership change is a write to [`CONF_CHANGE_TABLE`]; its Raft entry has type `EntryConfChangeV2`, data =
//!   the `ConfChangeV2` protobuf and context = the CCF entry.
//! - The primary executes; backups deserialise, decrypt and [`consort_kv::Store::apply`] the write sets as
//!   entries arrive, and verify every signature transaction before going past it.
//! - A transaction is Committed once a signature transaction at or below Raft's commit index covers it (CCF's
//!   commit rule on top of Raft's).
#![forbid(unsafe_code)]
#![warn(unreachable_pub, missing_docs)]

mod accept;
pub mod codec;
mod config;
mod error;
mod event;
mod guard;
mod history;
pub mod limits;
mod log;
mod periodic;
mod persisted;
mod receipt;
mod recovery;
mod rekey;
mod replay;
mod replica;
pub mod snapshot;
pub mod snapshot_file;
pub mod testing;
mod vocab;

pub use codec::CONF_CHANGE_TABLE;
pub use config::{NodeIdentity, ReplicaConfig};
pub use error::{
    ConfChangeFault, ConsensusError, EntryFault, Inconsistency, MessageError, ProposeError, ProtobufError, RaftError,
    SignatureFault, SnapshotError, SnapshotFileError,
};
pub use event::{Action, Event};
pub use guard::{FieldRefusal, Membership, Refusal};
pub use history::ViewHistory;
pub use persisted::{decode_hard_state, encode_hard_state, encode_snapshot, PersistedState};
pub use receipt::ReceiptSources;
pub use recovery::{PrivateRestore, RecoveryBase, RecoveryFault};
pub use rekey::{RekeyFault, SecretOpener};
pub use replay::Offload;
pub use replica::Replica;
pub use vocab::{NodeId, RaftId, Role, Seqno, TxId, TxStatus, View};

/// Raft's protobuf types the node needs (hard state, conf state, conf changes, snapshots).
pub use raft::eraftpb;
