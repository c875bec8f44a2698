//! Typed errors: what a peer, the disk or a caller can get wrong, and why a proposal was refused. An error that
//! comes from another crate (raft-rs, protobuf, the ledger, the store) keeps it as its source.

#[cfg(test)]
use crate::guard::FieldRefusal;
use crate::guard::Refusal;
use crate::vocab::TxId;
use consort_crypto::SharedError;
use consort_kv::KvError;
use consort_ledger::LedgerError;

/// A protobuf decoding error (Raft messages, hard states, snapshots), shared so that errors holding it stay `Clone`.
pub type ProtobufError = SharedError<protobuf::ProtobufError>;

/// A raft-rs error, shared so that errors holding it stay `Clone`.
pub type RaftError = SharedError<raft::Error>;

/// Errors of the replication core. Anything that comes from a peer or the disk maps to one of these; none of
/// them is a panic.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ConsensusError {
    /// A peer's message does not decode, or breaks the protocol (wrong sender, a proposal).
    #[error("malformed message: {0}")]
    MalformedMessage(#[source] MessageError),
    #[error("{what} of {size} bytes exceeds the limit of {limit}")]
    /// Something from a peer or the disk is over its named limit ([`crate::limits`]).
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit it exceeds.
        limit: u64,
    },
    #[error("invalid entry at seqno {seqno}: {reason}")]
    /// A ledger entry does not parse, decrypt or fit where it stands.
    InvalidEntry {
        /// The entry's seqno.
        seqno: u64,
        /// What is wrong with it.
        #[source]
        reason: EntryFault,
    },
    #[error("bad signature transaction at seqno {seqno}: {reason}")]
    /// A signature transaction does not verify: wrong root, untrusted signer, bad signature.
    BadSignature {
        /// The signature transaction's seqno.
        seqno: u64,
        /// Why it does not verify.
        #[source]
        reason: SignatureFault,
    },
    /// A snapshot (from a peer or the disk) does not verify or does not match its metadata.
    #[error("invalid snapshot: {0}")]
    Snapshot(#[from] SnapshotError),
    /// A snapshot file that does not split into its parts (offline tools' reading of committed snapshot files;
    /// the replica's own checks report [`ConsensusError::Snapshot`]).
    #[error("invalid snapshot: {0}")]
    InvalidSnapshot(#[source] SnapshotFileError),
    /// What the node persisted, or what it asks, contradicts the replica's state.
    #[error("inconsistent persisted state: {0}")]
    Inconsistent(#[from] Inconsistency),
    /// raft-rs refused an input or a configuration.
    #[error("raft: {0}")]
    Raft(#[source] RaftError),
    /// The primary role cannot go to this node: it is not a voter, it is this replica, or this replica is not the
    /// primary.
    #[error("raft: cannot transfer the primary role to {to}")]
    CannotTransfer {
        /// The Raft id asked to take over.
        to: u64,
    },
    /// The ledger (chunk files) failed.
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// The key-value store refused a write set or a rollback.
    #[error("kv: {0}")]
    Kv(#[from] KvError),
    /// A rekey transaction's new ledger secret could not be taken.
    #[error("rekey at seqno {seqno}: {source}")]
    Rekey {
        /// The rekey transaction.
        seqno: u64,
        /// What was wrong (boxed: rare, and it keeps this error small).
        #[source]
        source: Box<crate::rekey::RekeyFault>,
    },
    /// Recovering a service from an old ledger failed (boxed: rare).
    #[error("recovery: {0}")]
    Recovery(#[source] Box<crate::recovery::RecoveryFault>),
}

impl ConsensusError {
    pub(crate) fn entry(seqno: u64, reason: impl Into<EntryFault>) -> Self {
        ConsensusError::InvalidEntry {
            seqno,
            reason: reason.into(),
        }
    }
}

/// What is wrong with a ledger entry (see [`ConsensusError::InvalidEntry`]).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum EntryFault {
    /// The entry's framing does not parse, or its private domain does not decrypt.
    #[error("{0}")]
    Ledger(#[from] LedgerError),
    /// A domain of the entry is not a valid write set.
    #[error("{0}")]
    WriteSet(#[from] KvError),
    /// Bytes after the one entry expected.
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
    /// The entry names another transaction than the place Raft gives it.
    #[error("entry says {entry} (snapshot: {is_snapshot}), raft says {raft}")]
    NotAtItsPlace {
        /// The transaction the entry names.
        entry: TxId,
        /// Whether it is a snapshot entry.
        is_snapshot: bool,
        /// Raft's (term, index) as a transaction id.
        raft: TxId,
    },
    /// The public domain's version is not the entry's seqno.
    #[error("public domain version {0} is not the seqno")]
    VersionNotSeqno(u64),
    /// The entry header sets flag bits that no writer sets (the header is not covered by the AES-GCM tag).
    #[error("unknown header flags {0:#04x}")]
    UnknownFlags(u8),
    /// The membership change the entry records does not parse.
    #[error("{0}")]
    ConfChange(#[from] ConfChangeFault),
    /// A normal Raft entry whose ledger entry records a membership change.
    #[error("a normal entry may not change the membership")]
    NormalEntryChangesMembership,
    /// A Raft conf change entry whose protobuf does not decode.
    #[error("conf change protobuf: {0}")]
    ConfChangeProtobuf(#[source] ProtobufError),
    /// A Raft conf change entry whose protobuf is not the change its ledger entry records.
    #[error("conf change protobuf and ledger entry disagree")]
    ConfChangeDisagrees,
    /// A version 1 Raft conf change, which this replica never makes.
    #[error("v1 conf changes are not supported")]
    ConfChangeV1,
    /// An entry whose view is below the view of an entry before it.
    #[error("view {0} goes backwards")]
    ViewBackwards(u64),
    /// A signature transaction without one of the tables it writes.
    #[error("no {0} at the singleton key")]
    MissingSingleton(&'static str),
    /// The Merkle path from a transaction to the signature transaction is not there.
    #[error("Merkle path for {seqno}: {source}")]
    MerklePath {
        /// The transaction the path is for.
        seqno: u64,
        /// Why there is no path.
        source: LedgerError,
    },
    /// Entries handed over with a snapshot to install over a ledger that is not empty.
    #[error("entries in the same Ready as a snapshot over a non-empty ledger")]
    EntriesWithSnapshot,
}

/// What is wrong with the membership change an entry records (`public:ccf.internal.raft_conf_change`).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ConfChangeFault {
    /// The table is written without a value at the singleton key.
    #[error("conf change table without a value at the singleton key")]
    NoValue,
    /// The value is not the JSON of a change.
    #[error("conf change JSON: {0}")]
    Json(#[source] SharedError<serde_json::Error>),
    /// More changes than [`crate::limits::MAX_CONF_CHANGES`].
    #[error("{count} changes exceed the limit of {limit}")]
    TooMany {
        /// The changes recorded.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A transition other than `auto`, `implicit` or `explicit`.
    #[error("unknown transition {0:?}")]
    UnknownTransition(String),
    /// A change other than `add_node`, `remove_node` or `add_learner`.
    #[error("unknown change {0:?}")]
    UnknownChange(String),
}

/// Why a signature transaction does not verify (see [`ConsensusError::BadSignature`]).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SignatureFault {
    /// In a recovered ledger's old part, a signature transaction that also writes another table (it could change
    /// the service certificate or the nodes table that the next signatures are trusted by).
    #[error("a signature transaction of the old ledger also writes {table}")]
    WritesMore {
        /// The table it should not write.
        table: String,
    },
    /// The signatures table has no value at the singleton key.
    #[error("no signature at the singleton key")]
    NoSignature,
    /// The signature record (its JSON, root or signature encoding) does not parse.
    #[error("{0}")]
    Record(#[source] LedgerError),
    /// The record signs another transaction than the one holding it.
    #[error("signature claims {0}")]
    WrongTransaction(TxId),
    /// The Merkle tree has no root at the signature's seqno.
    #[error("{0}")]
    Root(#[source] LedgerError),
    /// The signed root is not the root of this replica's Merkle tree.
    #[error(
        "signed root {signed} is not the Merkle root {root}: an entry from seqno {first_covered} on differs from what \
         was signed"
    )]
    RootMismatch {
        /// The signed root, hex.
        signed: String,
        /// This replica's root, hex.
        root: String,
        /// The first seqno this signature covers that no earlier one did: the changed entry is in between.
        first_covered: u64,
    },
    /// The signer is not a node this replica trusts.
    #[error("signer {node} is not a trusted node")]
    UntrustedSigner {
        /// The signer's node id.
        node: String,
    },
    /// The signature over the root does not verify under the signer's certificate.
    #[error("{0}")]
    Verify(#[source] LedgerError),
}

/// Why a committed snapshot file does not split into its parts (see [`crate::split_snapshot_file`]).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SnapshotFileError {
    /// The file is not an encoded Raft snapshot.
    #[error("not an encoded Raft snapshot: {0}")]
    NotARaftSnapshot(#[source] ProtobufError),
    /// The snapshot's data does not start as a bundle does.
    #[error("not a Consort snapshot bundle")]
    NotABundle,
    /// The bundle's signature entry length points past its end.
    #[error("signature entry length exceeds the bundle")]
    SignatureEntryLength,
    /// The bundle's signature entry does not parse.
    #[error("signature entry: {0}")]
    SignatureEntry(#[source] LedgerError),
    /// The signature entry is a snapshot entry, or does not fill its part of the bundle.
    #[error("the signature entry is not one whole ledger entry")]
    SignatureEntryNotWhole,
    /// The bundle's snapshot entry does not parse.
    #[error("snapshot entry: {0}")]
    SnapshotEntry(#[source] LedgerError),
    /// The snapshot entry is not a snapshot entry, or does not fill the rest of the bundle.
    #[error("the snapshot entry is not one whole snapshot entry")]
    SnapshotEntryNotWhole,
    /// The two entries name different transactions.
    #[error("snapshot entry {snapshot} does not match signature entry {signature}")]
    EntryMismatch {
        /// The snapshot entry's transaction.
        snapshot: TxId,
        /// The signature entry's transaction.
        signature: TxId,
    },
    /// Raft's metadata names another transaction than the bundle.
    #[error("Raft metadata {metadata} does not match the bundle's {bundle}")]
    MetadataMismatch {
        /// Raft's (term, index) as a transaction id.
        metadata: TxId,
        /// The bundle's signature transaction.
        bundle: TxId,
    },
}

impl From<raft::Error> for ConsensusError {
    fn from(e: raft::Error) -> Self {
        ConsensusError::Raft(e.into())
    }
}

impl From<MessageError> for ConsensusError {
    fn from(e: MessageError) -> Self {
        ConsensusError::MalformedMessage(e)
    }
}

/// Why a peer's message was not stepped.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum MessageError {
    /// The bytes are not a Raft message.
    #[error(transparent)]
    Decode(ProtobufError),
    /// The message is one this replica refuses from that peer ([`Refusal`] says which rule it breaks).
    #[error(transparent)]
    Refused(#[from] Refusal),
}

/// Why a snapshot bundle (from a peer, the disk or the replica's own log) was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SnapshotError {
    /// The bytes do not start as a bundle does.
    #[error("not a Consort snapshot bundle")]
    NotABundle,
    /// The bundle's signature entry length points past its end.
    #[error("signature entry length exceeds the bundle")]
    SignatureEntryLength,
    /// The bundle's signature entry does not parse.
    #[error("signature entry: {0}")]
    SignatureEntry(#[source] LedgerError),
    /// The bundle's first entry is not a signature transaction.
    #[error("entry {at} is not a signature transaction")]
    NotASignature {
        /// The entry's transaction id.
        at: TxId,
    },
    /// The signature transaction lacks one of the tables a signature writes.
    #[error("signature transaction without {table}")]
    MissingTable {
        /// The table missing.
        table: &'static str,
    },
    /// The signature record (its JSON, root or signature encoding) does not parse.
    #[error("{0}")]
    SignatureRecord(#[source] LedgerError),
    /// The Merkle tree the signature transaction stores does not parse.
    #[error("tree: {0}")]
    Tree(#[source] LedgerError),
    /// The signature, its tree and the transaction holding them name different transactions.
    #[error("signature {signed} with a tree of {leaves} leaves at {at}")]
    TreeMismatch {
        /// The transaction the signature record claims.
        signed: TxId,
        /// Leaves of the stored tree.
        leaves: u64,
        /// The signature transaction's id.
        at: TxId,
    },
    /// The stored tree has no root at the signature's seqno.
    #[error("{0}")]
    Root(#[source] LedgerError),
    /// The signed root is not the root of the stored tree.
    #[error("signed root is not the root of the stored tree")]
    RootMismatch,
    /// The signature was made by a node this replica does not trust.
    #[error("signer {node} is not a trusted node")]
    UntrustedSigner {
        /// The signer's node id.
        node: String,
    },
    /// The signature over the root does not verify under the signer's certificate.
    #[error("{0}")]
    Verify(#[source] LedgerError),
    /// The bundle's snapshot entry does not parse.
    #[error("snapshot entry: {0}")]
    SnapshotEntry(#[source] LedgerError),
    /// The snapshot entry is not a whole snapshot entry at the signature transaction.
    #[error("snapshot entry does not match the signature transaction")]
    EntryMismatch,
    /// The snapshot entry's private domain does not decrypt.
    #[error("{0}")]
    Decrypt(#[source] LedgerError),
    /// The snapshot entry's state does not parse.
    #[error("{0}")]
    State(#[source] KvError),
    /// The snapshot header names another version or signature transaction.
    #[error("snapshot header does not match the signature transaction")]
    HeaderMismatch,
    /// The state does not hold the signature of the signature transaction it was taken at.
    #[error("snapshot state does not hold the signature transaction's signature")]
    SignatureNotInState,
    /// The view history does not place the snapshot's seqno in its view.
    #[error("view history does not place the snapshot in its view")]
    ViewHistory,
    /// The Raft snapshot around the bundle does not decode.
    #[error("protobuf: {0}")]
    Protobuf(#[source] ProtobufError),
    /// Raft's snapshot metadata names another transaction than the bundle.
    #[error("metadata {metadata} does not match the bundle's {bundle}")]
    MetadataMismatch {
        /// Raft's (term, index) as a transaction id.
        metadata: TxId,
        /// The bundle's signature transaction.
        bundle: TxId,
    },
    /// A snapshot was asked for before anything was committed past the log's base, which has no bundle.
    #[error("nothing committed to snapshot yet")]
    NothingCommitted,
}

/// What the node persisted, or asks, that contradicts the replica's state: each names what disagreed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Inconsistency {
    /// The persisted hard state does not decode.
    #[error("hard state: {0}")]
    HardState(#[source] ProtobufError),
    /// An entry that is not the next one for the log or the Merkle tree.
    #[error("entry {seqno} after {last} with {leaves} Merkle leaves")]
    EntryOutOfOrder {
        /// The entry's seqno.
        seqno: u64,
        /// The log's last seqno.
        last: u64,
        /// Leaves in the Merkle tree.
        leaves: u64,
    },
    /// An entry past the store's version was handed over without its private domain decrypted.
    #[error("entry {seqno} was not decrypted")]
    NotDecrypted {
        /// The entry's seqno.
        seqno: u64,
    },
    /// The ledger's first entry leaves a gap after the snapshot the replica starts from.
    #[error("the ledger starts at {first}, after the snapshot at {snapshot}")]
    LedgerAfterSnapshot {
        /// The ledger's first seqno.
        first: u64,
        /// The snapshot's seqno.
        snapshot: u64,
    },
    /// The hard state commits an entry the ledger does not hold.
    #[error("hard state commits {commit} but the ledger ends at {last}")]
    CommitBeyondLedger {
        /// Raft's commit index in the hard state.
        commit: u64,
        /// The ledger's last seqno.
        last: u64,
    },
    /// A receipt asked of a transaction that is not a signature transaction covering the one asked about.
    #[error("{signature} is not a signature transaction covering {seqno}")]
    NotCoveringSignature {
        /// The seqno given as the signature transaction.
        signature: u64,
        /// The seqno the receipt is for.
        seqno: u64,
    },
    /// The Merkle tree or the store is not where a signature at the next seqno needs it.
    #[error("signing at {seqno} with {leaves} leaves and store version {store_version}")]
    SigningState {
        /// The signature's seqno.
        seqno: u64,
        /// Leaves in the Merkle tree.
        leaves: u64,
        /// The store's version.
        store_version: u64,
    },
    /// A persist number the replica did not hand out, or that was reported durable already.
    #[error("persist number {number} is not outstanding")]
    UnknownPersist {
        /// The number reported.
        number: u64,
    },
    /// A rollback that would drop committed transactions.
    #[error("rollback to {to} below the commit point {commit}")]
    RollbackBelowCommit {
        /// The last seqno to keep.
        to: u64,
        /// The commit point's seqno.
        commit: u64,
    },
    /// The thread lent for replay did not decode the next chunk.
    #[error("the offloaded decoding did not run")]
    OffloadDidNotRun,
    /// A decoded entry is missing from the chunk it was decoded from.
    #[error("entry {seqno} is not in its chunk")]
    EntryNotInChunk {
        /// The entry's seqno.
        seqno: u64,
    },
}

/// Why a proposal was not added to the log. For client proposals the replica has rolled its store back to the
/// version before the proposal: the transaction did not happen.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ProposeError {
    #[error("not the primary (leader: {leader:?})")]
    /// This replica is not the primary.
    NotLeader {
        /// The primary this replica knows of, if any.
        leader: Option<u64>,
    },
    #[error("proposal for version {got}, the next seqno is {expected}")]
    /// The proposal's store version is not the next seqno.
    VersionMismatch {
        /// The next seqno.
        expected: u64,
        /// The proposal's version.
        got: u64,
    },
    /// raft-rs refused the proposal (e.g. a leadership transfer is under way).
    #[error("raft dropped the proposal: {0}")]
    Dropped(#[source] RaftError),
    /// raft-rs took the proposal but did not append it at the next seqno.
    #[error("raft dropped the proposal: raft did not append the entry")]
    NotAppended,
    /// raft-rs appended an empty entry instead of the membership change (another change is pending, or the change
    /// is not valid now).
    #[error("raft dropped the proposal: raft refused the membership change")]
    ConfChangeRefused,
    /// The write set could not be encoded as a ledger entry.
    #[error("could not encode the entry: {0}")]
    Encode(#[source] ConsensusError),
    /// The replica halted earlier and takes no more proposals; the error is what stopped it.
    #[error("replica halted: {0}")]
    Halted(#[source] ConsensusError),
}

impl From<raft::Error> for ProposeError {
    fn from(e: raft::Error) -> Self {
        ProposeError::Dropped(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protobuf::Message as _;
    use std::error::Error as _;

    #[test]
    fn a_raft_error_is_kept_as_the_source() {
        let err = ConsensusError::from(raft::Error::ProposalDropped);
        let source = err.source().expect("the raft error is kept");
        let raft = source.downcast_ref::<RaftError>().expect("a raft-rs error");
        assert_eq!(*raft.get(), raft::Error::ProposalDropped);
        assert_eq!(err.to_string(), format!("raft: {}", raft::Error::ProposalDropped));
    }

    #[test]
    fn a_hard_state_that_does_not_decode_keeps_the_protobuf_error() {
        let err = crate::decode_hard_state(&[0xff, 0xff, 0xff]).unwrap_err();
        let ConsensusError::Inconsistent(Inconsistency::HardState(protobuf)) = &err else {
            panic!("not a hard state error: {err:?}");
        };
        let source = err.source().expect("the inconsistency is kept");
        let decode = source.source().expect("the protobuf error is kept");
        assert!(decode.downcast_ref::<ProtobufError>().is_some(), "{decode:?}");
        assert_eq!(decode.to_string(), protobuf.to_string());
        assert!(
            err.to_string()
                .starts_with("inconsistent persisted state: hard state: "),
            "{err}"
        );
    }

    #[test]
    fn a_message_that_does_not_decode_names_the_protobuf_error() {
        let decode = raft::eraftpb::Message::parse_from_bytes(&[0xff]).unwrap_err();
        let text = decode.to_string();
        let err = ConsensusError::from(MessageError::Decode(decode.into()));
        let source = err.source().expect("the decoding error is kept");
        assert!(matches!(
            source.downcast_ref::<MessageError>(),
            Some(MessageError::Decode(_))
        ));
        assert_eq!(source.to_string(), text);
        assert_eq!(err.to_string(), format!("malformed message: {text}"));
    }

    #[test]
    fn an_entry_that_does_not_parse_keeps_the_ledger_error() {
        let err = crate::codec::inspect(&[0u8; 3], 1, 4).unwrap_err();
        let ConsensusError::InvalidEntry {
            seqno: 4,
            reason: EntryFault::Ledger(ledger),
        } = &err
        else {
            panic!("not a framing fault: {err:?}");
        };
        let fault = err.source().expect("the fault is kept");
        let source = fault.source().expect("the ledger error is kept");
        assert_eq!(source.downcast_ref::<LedgerError>(), Some(ledger));
        assert_eq!(err.to_string(), format!("invalid entry at seqno 4: {ledger}"));
    }

    #[test]
    fn a_refused_field_names_the_rule_and_the_values() {
        use crate::guard::{check, Local};
        use raft::eraftpb::{ConfState, Message, MessageType};
        let conf = ConfState {
            voters: vec![1, 2],
            ..Default::default()
        };
        let trusted = std::collections::BTreeMap::new();
        let local = Local {
            id: 2,
            term: 3,
            leader: false,
            leader_id: 0,
            last_index: 5,
            committed: 4,
            committed_term: 3,
            conf: &conf,
            trusted: &trusted,
        };
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgHeartbeat);
        (m.from, m.to, m.term, m.commit) = (1, 2, 3, 9);
        let refusal = check(1, &m, &local).unwrap_err();
        assert_eq!(
            refusal,
            Refusal::Field(FieldRefusal::HeartbeatCommitBeyondLog {
                commit: 9,
                last_index: 5
            })
        );
        assert_eq!(refusal.to_string(), "heartbeat commit index 9 beyond the last index 5");
    }

    #[test]
    fn a_halted_replica_names_what_stopped_it() {
        let cause = ConsensusError::from(Inconsistency::UnknownPersist { number: 7 });
        let err = ProposeError::Halted(cause.clone());
        let source = err.source().expect("the cause is kept");
        assert_eq!(source.downcast_ref::<ConsensusError>(), Some(&cause));
        assert_eq!(
            err.to_string(),
            "replica halted: inconsistent persisted state: persist number 7 is not outstanding"
        );
    }
}
