//! The gate a peer's Raft message passes before raft-rs steps it: the sender must be who the channel authenticated
//! and a member or a node this replica trusts, and no field may hold a value raft-rs
//! 0.7 would turn into a panic (`commit_to` beyond the log, non-contiguous entries, an invalid membership in a
//! snapshot, ...). Pure: it reads the replica's state as [`Local`] and returns why a message is refused.
//!
//! Every rule holds for the messages raft-rs itself sends (see each check), so an honest peer is never refused;
//! dropping a message is always safe for Raft, which retransmits or times out.

use crate::vocab::RaftId;
use raft::eraftpb::{ConfChangeType, ConfState, Message, MessageType};
use raft::{Changer, ProgressTracker};
use std::collections::BTreeMap;

/// What the replica knows that the checks need.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Local<'a> {
    /// This replica's Raft id.
    pub(crate) id: u64,
    /// The current term, and whether this replica is the primary in it.
    pub(crate) term: u64,
    pub(crate) leader: bool,
    /// The primary this replica follows in that term (0 if none).
    pub(crate) leader_id: u64,
    /// Raft's last index (stable and unstable entries).
    pub(crate) last_index: u64,
    /// Raft's commit index and the term of the entry there.
    pub(crate) committed: u64,
    pub(crate) committed_term: u64,
    /// The membership in force.
    pub(crate) conf: &'a ConfState,
    /// The nodes whose signatures this replica accepts (Trusted when it last looked), by Raft id.
    pub(crate) trusted: &'a BTreeMap<RaftId, String>,
}

/// Why a peer's message was refused: the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The message names another sender than the peer the channel authenticated (or this replica itself).
    #[error("the message claims sender {claimed}, the channel authenticated {authenticated}")]
    ForgedSender {
        /// The sender the message names.
        claimed: u64,
        /// The peer the channel authenticated.
        authenticated: u64,
    },
    /// The message is for another replica.
    #[error("the message is addressed to {to}, not to this replica")]
    WrongReceiver {
        /// The Raft id it is addressed to.
        to: u64,
    },
    /// A message type that is local to raft-rs or unused between replicas.
    #[error("{0:?} is not a message peers send")]
    NotFromPeers(MessageType),
    /// A message without a term.
    #[error("a peer's message without a term")]
    NoTerm,
    /// A message type only members of the configuration send, from a node that is not one.
    #[error("sender {0} is not a member of the configuration for {1:?}")]
    NotMember(u64, MessageType),
    /// A `MsgTimeoutNow` (campaign at once, past the primary's lease) from another node than the primary this
    /// replica follows in the message's term: only that primary hands over its role.
    #[error("MsgTimeoutNow from {from} in term {term}, which is not the primary this replica follows")]
    NotFromPrimary {
        /// The sender.
        from: u64,
        /// The message's term.
        term: u64,
    },
    /// A field with a value raft-rs would turn into a panic, or that no honest peer sends.
    #[error("{0}")]
    Field(#[from] FieldRefusal),
}

/// Which field of a peer's message holds a value raft-rs would turn into a panic, or that no honest peer sends,
/// and the values that break the rule (see [`Refusal::Field`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldRefusal {
    /// A term beyond the largest a ledger entry can record, with the margin kept below it.
    #[error("term {term} beyond {max}")]
    TermTooLarge {
        /// The message's term.
        term: u64,
        /// The largest term accepted from a peer.
        max: u64,
    },
    /// Entries in a message type other than an append.
    #[error("{0:?} with entries")]
    EntriesOutsideAppend(MessageType),
    /// An append whose log term is beyond its own term.
    #[error("append log term {log_term} beyond its term {term}")]
    AppendLogTermBeyondTerm {
        /// The term of the entry the append follows.
        log_term: u64,
        /// The message's term.
        term: u64,
    },
    /// An append at or after this replica's commit point whose log term is below the committed entry's term.
    #[error("append after {index} with log term {log_term} below the committed term {committed_term}")]
    AppendLogTermBelowCommitted {
        /// The index the append follows.
        index: u64,
        /// The term of the entry it follows.
        log_term: u64,
        /// The term of this replica's committed entry.
        committed_term: u64,
    },
    /// An append after an index past this replica's log with a log term of 0, which raft-rs would take as a match.
    #[error("append after {index} (past the log) with log term 0")]
    AppendPastLogWithTermZero {
        /// The index the append follows.
        index: u64,
    },
    /// An append whose entries do not continue its index one by one.
    #[error("entry {position} has index {index}, expected {expected:?}")]
    EntryIndex {
        /// The entry's position in the message, from 0.
        position: usize,
        /// Its index.
        index: u64,
        /// The index it should have (`None` when that would overflow).
        expected: Option<u64>,
    },
    /// An appended entry whose term is below the one before it or beyond the message's term.
    #[error("entry {index} has term {term} out of order")]
    EntryTerm {
        /// The entry's index.
        index: u64,
        /// Its term.
        term: u64,
    },
    /// A heartbeat committing beyond this replica's log.
    #[error("heartbeat commit index {commit} beyond the last index {last_index}")]
    HeartbeatCommitBeyondLog {
        /// The heartbeat's commit index.
        commit: u64,
        /// This replica's last index.
        last_index: u64,
    },
    /// Snapshot metadata that names no real entry of the sender's log.
    #[error("snapshot metadata {term}.{index} in a message of term {message_term}")]
    SnapshotMetadata {
        /// The metadata's term.
        term: u64,
        /// The metadata's index.
        index: u64,
        /// The message's term.
        message_term: u64,
    },
    /// A snapshot membership raft-rs could not restore.
    #[error("snapshot membership {:?} is not valid", .0.get())]
    SnapshotMembership(Membership),
    /// A request for a snapshot, which this replica never asks of a peer.
    #[error("a peer's snapshot request")]
    SnapshotRequest,
    /// An acknowledgement naming an index or hint beyond the primary's log.
    #[error("append response index {index} hint {reject_hint} beyond the last index {last_index}")]
    AppendResponseBeyondLog {
        /// The acknowledged index.
        index: u64,
        /// The rejection hint.
        reject_hint: u64,
        /// This replica's last index.
        last_index: u64,
    },
}

/// A membership as a peer's message carries it. A newtype so that [`FieldRefusal`] stays `Eq`: protobuf messages
/// are only `PartialEq`, and a `ConfState` (integers and a bool) compares totally.
#[derive(Debug, Clone, PartialEq)]
pub struct Membership(ConfState);

impl Membership {
    /// The membership.
    pub fn get(&self) -> &ConfState {
        &self.0
    }
}

impl Eq for Membership {}

/// The largest term accepted from a peer. A view is a term, and a ledger entry's IV holds it in 31 bits: a replica
/// that adopted a larger term would halt at its next entry. The margin leaves a million elections' room above it,
/// which no service reaches, so a member cannot push the service there in one message.
const MAX_PEER_TERM: u64 = (1 << 31) - 1 - (1 << 20);

/// Message types one replica sends another. The rest are local to raft-rs, or unused here (read index, leadership
/// transfer requests from followers, proposals), and stepping them from a peer would let it act for this replica.
fn sent_by_peers(t: MessageType) -> bool {
    use MessageType::*;
    matches!(
        t,
        MsgAppend
            | MsgAppendResponse
            | MsgRequestVote
            | MsgRequestVoteResponse
            | MsgSnapshot
            | MsgHeartbeat
            | MsgHeartbeatResponse
            | MsgTimeoutNow
            | MsgRequestPreVote
            | MsgRequestPreVoteResponse
    )
}

fn voters(conf: &ConfState) -> impl Iterator<Item = &u64> {
    conf.voters.iter().chain(&conf.voters_outgoing)
}

/// Checks a message that arrived from the peer the channel authenticated as Raft id `from`.
pub(crate) fn check(from: u64, m: &Message, local: &Local<'_>) -> Result<(), Refusal> {
    if m.from != from || from == local.id {
        return Err(Refusal::ForgedSender {
            claimed: m.from,
            authenticated: from,
        });
    }
    if m.to != local.id {
        return Err(Refusal::WrongReceiver { to: m.to });
    }
    let t = m.get_msg_type();
    if !sent_by_peers(t) {
        return Err(Refusal::NotFromPeers(t));
    }
    // raft-rs takes a term of 0 for a local message and skips its term checks (a peer's append would make it the
    // primary); every message one replica sends another carries its term.
    if m.term == 0 {
        return Err(Refusal::NoTerm);
    }
    // No honest term comes near the ledger's limit on views.
    if m.term > MAX_PEER_TERM {
        return Err(FieldRefusal::TermTooLarge {
            term: m.term,
            max: MAX_PEER_TERM,
        }
        .into());
    }
    check_sender(from, t, local)?;
    if t != MessageType::MsgAppend && !m.entries.is_empty() {
        return Err(FieldRefusal::EntriesOutsideAppend(t).into());
    }
    match t {
        MessageType::MsgAppend => check_append(m, local),
        MessageType::MsgHeartbeat => check_heartbeat(m, local),
        MessageType::MsgSnapshot => check_snapshot(m),
        MessageType::MsgAppendResponse => check_append_response(m, local),
        MessageType::MsgTimeoutNow => check_timeout_now(from, m, local),
        _ => Ok(()),
    }
}

/// The sender must be in this replica's membership or be a node it trusts (Trusted when it last looked). Messages
/// from trusted nodes outside the membership are honest in two cases: a primary added by a change this replica has
/// in its log but not yet committed (only that primary's messages can tell it so), and late answers from a node
/// whose addition this replica lost in a crash; raft-rs ignores answers from nodes it tracks no progress for. Which
/// of those nodes may reach the replica at all (current members only, never a Retired one) is the node-to-node
/// channel's admission, which the node keeps in line with the nodes table.
fn check_sender(from: u64, t: MessageType, local: &Local<'_>) -> Result<(), Refusal> {
    let conf = local.conf;
    let member = voters(conf)
        .chain(&conf.learners)
        .chain(&conf.learners_next)
        .any(|&id| id == from);
    if member || local.trusted.contains_key(&RaftId(from)) {
        Ok(())
    } else {
        Err(Refusal::NotMember(from, t))
    }
}

/// raft-rs campaigns on a `MsgTimeoutNow` from anyone, skipping the pre-vote and the lease that otherwise keep a
/// node from deposing a primary its peers still hear from, so a learner or a trusted non-member could force
/// election after election. Honestly only the primary sends it, in its term, to a follower that has matched its
/// log (so that follower has taken its appends and follows it): anything else is refused. Vote requests need no
/// such rule: pre-vote and the lease (`check_quorum`) already make raft-rs ignore a candidate while the primary is
/// heard from, and a voter this replica does not know of yet may legitimately ask.
fn check_timeout_now(from: u64, m: &Message, local: &Local<'_>) -> Result<(), Refusal> {
    if local.leader_id != from || m.term != local.term {
        return Err(Refusal::NotFromPrimary { from, term: m.term });
    }
    Ok(())
}

/// raft-rs appends after `m.index` by slicing the entries at `conflict - (index + 1)` and commits up to
/// `min(commit, index + len)`: entries must continue `m.index` one by one, or the slice (or the commit) goes out
/// of range. A primary's entries carry non-decreasing terms between `log_term` and its own term. When the entries
/// do not match, raft-rs searches back from `min(index, last)` for a term at or below `log_term` and panics if it
/// runs off the start of the log; a primary's `log_term` is at least the term of this replica's committed entry
/// (its log holds every committed entry), which bounds that search.
fn check_append(m: &Message, local: &Local<'_>) -> Result<(), Refusal> {
    if m.log_term > m.term {
        return Err(FieldRefusal::AppendLogTermBeyondTerm {
            log_term: m.log_term,
            term: m.term,
        }
        .into());
    }
    if m.index >= local.committed && m.log_term < local.committed_term {
        return Err(FieldRefusal::AppendLogTermBelowCommitted {
            index: m.index,
            log_term: m.log_term,
            committed_term: local.committed_term,
        }
        .into());
    }
    // raft-rs reads the term of an index past its log as 0, so a log term of 0 would "match" there and commit
    // beyond the log. Every real entry has a term of at least 1.
    if m.index > local.last_index && m.log_term == 0 {
        return Err(FieldRefusal::AppendPastLogWithTermZero { index: m.index }.into());
    }
    let mut term = m.log_term;
    for (i, e) in m.entries.iter().enumerate() {
        let expected = m.index.checked_add(i as u64 + 1);
        if expected != Some(e.index) {
            return Err(FieldRefusal::EntryIndex {
                position: i,
                index: e.index,
                expected,
            }
            .into());
        }
        if e.term < term || e.term > m.term {
            return Err(FieldRefusal::EntryTerm {
                index: e.index,
                term: e.term,
            }
            .into());
        }
        term = e.term;
    }
    Ok(())
}

/// raft-rs commits to a heartbeat's commit index without checking it against the log (`commit_to` panics beyond
/// the last index). A primary sends `min(matched, committed)`, never past what this replica holds.
fn check_heartbeat(m: &Message, local: &Local<'_>) -> Result<(), Refusal> {
    if m.commit > local.last_index {
        return Err(FieldRefusal::HeartbeatCommitBeyondLog {
            commit: m.commit,
            last_index: local.last_index,
        }
        .into());
    }
    Ok(())
}

/// raft-rs restores a snapshot's membership and panics if it is not one raft-rs could have produced; the metadata
/// must name a real entry of the sender's log (index and term at least 1, term at most the sender's).
fn check_snapshot(m: &Message) -> Result<(), Refusal> {
    let meta = m.get_snapshot().get_metadata();
    if meta.index == 0 || meta.term == 0 || meta.term > m.term {
        return Err(FieldRefusal::SnapshotMetadata {
            term: meta.term,
            index: meta.index,
            message_term: m.term,
        }
        .into());
    }
    if !restorable(meta.get_conf_state()) {
        return Err(FieldRefusal::SnapshotMembership(Membership(meta.get_conf_state().clone())).into());
    }
    Ok(())
}

/// Replays `cs` the way raft-rs restores a snapshot's membership (voters, then the joint step) on an empty tracker,
/// and checks that it comes out as `cs` again: raft-rs panics on either failure.
fn restorable(cs: &ConfState) -> bool {
    let single = |id: u64, change_type: ConfChangeType| {
        let mut c = raft::eraftpb::ConfChangeSingle {
            node_id: id,
            ..Default::default()
        };
        c.set_change_type(change_type);
        c
    };
    let mut outgoing = vec![];
    let mut incoming = vec![];
    for &id in &cs.voters_outgoing {
        outgoing.push(single(id, ConfChangeType::AddNode));
        incoming.push(single(id, ConfChangeType::RemoveNode));
    }
    incoming.extend(cs.voters.iter().map(|&id| single(id, ConfChangeType::AddNode)));
    incoming.extend(cs.learners.iter().map(|&id| single(id, ConfChangeType::AddLearnerNode)));
    incoming.extend(
        cs.learners_next
            .iter()
            .map(|&id| single(id, ConfChangeType::AddLearnerNode)),
    );
    let mut tracker = ProgressTracker::new(1);
    let apply_simple = |changes: &[raft::eraftpb::ConfChangeSingle], tracker: &mut ProgressTracker| {
        changes
            .iter()
            .all(|c| match Changer::new(tracker).simple(std::slice::from_ref(c)) {
                Ok((cfg, changes)) => {
                    tracker.apply_conf(cfg, changes, 1);
                    true
                }
                Err(_) => false,
            })
    };
    let ok = if outgoing.is_empty() {
        apply_simple(&incoming, &mut tracker)
    } else {
        apply_simple(&outgoing, &mut tracker)
            && match Changer::new(&tracker).enter_joint(cs.auto_leave, &incoming) {
                Ok((cfg, changes)) => {
                    tracker.apply_conf(cfg, changes, 1);
                    true
                }
                Err(_) => false,
            }
    };
    ok && same_membership(&tracker.conf().to_conf_state(), cs)
}

fn same_membership(a: &ConfState, b: &ConfState) -> bool {
    let sorted = |v: &[u64]| {
        let mut v = v.to_vec();
        v.sort_unstable();
        v
    };
    sorted(&a.voters) == sorted(&b.voters)
        && sorted(&a.learners) == sorted(&b.learners)
        && sorted(&a.voters_outgoing) == sorted(&b.voters_outgoing)
        && sorted(&a.learners_next) == sorted(&b.learners_next)
        && a.auto_leave == b.auto_leave
}

/// A primary takes acknowledgements of the appends it sent in its term (raft-rs ignores them in any other role or
/// term, and stale ones may name entries a replica lost in a crash): their index and hint never pass its last index
/// (raft-rs would move the peer's progress past the log and, for a hint of `u64::MAX`, overflow). This replica
/// never asks for a snapshot, so a peer's request for one is not an acknowledgement it sent.
fn check_append_response(m: &Message, local: &Local<'_>) -> Result<(), Refusal> {
    if m.request_snapshot != 0 {
        return Err(FieldRefusal::SnapshotRequest.into());
    }
    if !local.leader || m.term != local.term {
        return Ok(());
    }
    if m.index > local.last_index || m.reject_hint > local.last_index {
        return Err(FieldRefusal::AppendResponseBeyondLog {
            index: m.index,
            reject_hint: m.reject_hint,
            last_index: local.last_index,
        }
        .into());
    }
    Ok(())
}
