//! The replica: raft-rs's `RawNode` over the ledger, driven as a step function from [`Event`]s to [`Action`]s,
//! with CCF's execution model (primary executes, backups apply), signature transactions and commit rule.

mod open;
mod queries;
mod restore;

use crate::accept::PartialReplicaRef;
use crate::codec::{conf_change_entry, encode_write_set_entry, normalise};
use crate::config::{NodeIdentity, ReplicaConfig};
use crate::error::{ConsensusError, EntryFault, Inconsistency, MessageError, ProposeError};
use crate::event::{Action, Event};
use crate::guard;
use crate::limits::{MAX_ENTRIES_PER_MESSAGE, MAX_MESSAGE_SIZE};
use crate::log::Log;
use crate::periodic::{PendingSnapshot, Snapshots};
use crate::snapshot::{self, SnapshotBuilt};
use crate::vocab::{RaftId, Role, Seqno, TxId, View};
use consort_kv::{Version, WriteSet};
use consort_ledger::{LedgerStorage, MerkleTree, PrimarySignature, SIGNATURES_TABLE, SINGLETON_KEY, TREE_TABLE};
use protobuf::Message as _;
use raft::eraftpb::{ConfChangeV2, EntryType, Message, MessageType, Snapshot};
use raft::RawNode;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

/// One replica of the service. See the crate documentation for the model.
pub struct Replica<S: LedgerStorage> {
    cfg: ReplicaConfig,
    identity: NodeIdentity,
    /// Certificates of the nodes whose signature transactions this replica accepts, by Raft id.
    trusted: BTreeMap<RaftId, String>,
    node: RawNode<Log<S>>,
    /// Leaves 0..=last seqno.
    tree: MerkleTree,
    /// Seqnos of the signature transactions in the log (and the snapshot base).
    signatures: BTreeSet<u64>,
    txs_since_signature: u64,
    ticks_since_signature: u64,
    sign_asap: bool,
    /// The next signature ends the current ledger chunk (governance's `trigger_ledger_chunk`).
    chunk_after_next_signature: bool,
    /// Persist numbers handed out and not yet reported durable.
    outstanding: VecDeque<u64>,
    /// Messages waiting for a persist number to become durable.
    held: VecDeque<(u64, Vec<Message>)>,
    halted: Option<ConsensusError>,
    /// The persist number of an installed snapshot not yet reported durable: until it is, the old ledger chunks
    /// stay on disk and no further Ready is taken (see [`Replica::install_snapshot`]).
    installing: Option<u64>,
    /// State of the election-timeout generator (splitmix64).
    random_state: u64,
    snapshots: Snapshots,
    /// For a recovered ledger: the Merkle root over the old part (seqnos 1 to the base) as replay verified it, which
    /// a private restore must read again exactly.
    recovery_root: Option<[u8; 32]>,
}

impl<S: LedgerStorage> std::fmt::Debug for Replica<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("id", &self.cfg.id)
            .field("role", &self.role())
            .field("view", &self.view())
            .field("last_seqno", &self.last_seqno())
            .field("commit", &self.commit_point())
            .finish_non_exhaustive()
    }
}

fn send(msgs: Vec<Message>, out: &mut Vec<Action>) {
    for m in msgs {
        let message = crate::persisted::encode_protobuf(&m);
        out.push(Action::Send {
            to: RaftId(m.to),
            message,
        });
    }
}

impl<S: LedgerStorage> Replica<S> {
    // ----- the step function -----

    /// Feeds one event and returns what the node must do, in order.
    pub fn step(&mut self, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(error) = &self.halted {
            if let Event::Propose { version, .. } = event {
                let error = ProposeError::Halted(error.clone());
                self.reject_client_proposal(version, error, &mut out);
            }
            return out;
        }
        match event {
            Event::Tick => {
                self.node.tick();
                self.ticks_since_signature += 1;
            }
            Event::Receive { from, message } => {
                if let Err(error) = self.receive(from.get(), &message) {
                    out.push(Action::Dropped {
                        from: Some(from),
                        error,
                    });
                }
            }
            Event::Propose {
                version,
                write_set,
                claims_digest,
            } => match self.propose(version, &write_set, claims_digest) {
                Ok(tx) => {
                    self.txs_since_signature += 1;
                    out.push(Action::Proposed(tx));
                    // The next transaction is written under a secret this one introduces. The entry is in the log
                    // already: a secret the primary cannot take back from its own rekey stops it.
                    let log = self.node.mut_store();
                    let opener = log.secret_opener.clone();
                    if let Err(e) = crate::rekey::learn(&mut log.secrets, opener.as_deref(), version, &write_set) {
                        self.halt(e, &mut out);
                    }
                }
                Err(error) => self.reject_client_proposal(version, error, &mut out),
            },
            Event::ProposeConfChange { change } => {
                let version = self.last_seqno().next().get();
                match self.propose_conf_change(change) {
                    Ok(tx) => out.push(Action::Proposed(tx)),
                    Err(error) => out.push(Action::ProposalRejected { version, error }),
                }
            }
            Event::Persisted { number } => self.persisted(number, &mut out),
            Event::TransferLeadership { to } => {
                let voters = self.conf_state().voters;
                if self.is_leader() && to != self.cfg.id && voters.contains(&to.get()) {
                    self.node.transfer_leader(to.get());
                } else {
                    let error = ConsensusError::CannotTransfer { to: to.get() };
                    out.push(Action::Dropped { from: None, error });
                }
            }
            Event::SnapshotBuilt(built) => {
                if let Err(error) = self.snapshot_built(built) {
                    out.push(Action::Dropped { from: None, error });
                }
            }
            Event::Campaign => {
                if let Err(e) = self.node.campaign() {
                    out.push(Action::Dropped {
                        from: None,
                        error: e.into(),
                    });
                }
            }
        }
        self.drain(&mut out);
        if self.halted.is_none() && self.is_leader() && self.node.raft.lead_transferee.is_none() {
            let unsigned = self.signatures.range(..).next_back().copied().unwrap_or(0) < self.last_seqno().get();
            let due = self.sign_asap
                || self.txs_since_signature >= self.cfg.signature_interval_tx
                || (unsigned && self.ticks_since_signature >= self.cfg.signature_interval_ticks);
            if due {
                if let Err(error) = self.emit_signature() {
                    self.halt(error, &mut out);
                }
                self.drain(&mut out);
            }
        }
        for build in self.snapshots.to_start.drain(..) {
            out.push(Action::BuildSnapshot(Box::new(build)));
        }
        self.draw_election_timeout();
        out
    }

    fn halt(&mut self, error: ConsensusError, out: &mut Vec<Action>) {
        if self.halted.is_none() {
            self.halted = Some(error.clone());
            out.push(Action::Halted { error });
        }
    }

    fn reject_client_proposal(&mut self, version: Version, error: ProposeError, out: &mut Vec<Action>) {
        let store = self.store().clone();
        if store.current_version() == version {
            if let Err(e) = store.rollback(version.saturating_sub(1)) {
                self.halt(ConsensusError::Kv(e), out);
            }
        }
        out.push(Action::ProposalRejected { version, error });
    }

    fn receive(&mut self, from: u64, bytes: &[u8]) -> Result<(), ConsensusError> {
        if bytes.len() > MAX_MESSAGE_SIZE {
            return Err(ConsensusError::TooLarge {
                what: "message",
                size: bytes.len() as u64,
                limit: MAX_MESSAGE_SIZE as u64,
            });
        }
        let mut m = Message::parse_from_bytes(bytes).map_err(|e| MessageError::Decode(e.into()))?;
        if m.entries.len() > MAX_ENTRIES_PER_MESSAGE {
            return Err(ConsensusError::TooLarge {
                what: "entries in a message",
                size: m.entries.len() as u64,
                limit: MAX_ENTRIES_PER_MESSAGE as u64,
            });
        }
        for e in m.mut_entries().iter_mut() {
            normalise(e)?;
        }
        let log = &self.node.raft.raft_log;
        let conf = self.conf_state();
        let local = guard::Local {
            id: self.cfg.id.get(),
            term: self.node.raft.term,
            leader: self.is_leader(),
            leader_id: self.node.raft.leader_id,
            last_index: log.last_index(),
            committed: log.committed,
            // The committed entry is in the log or is its snapshot base, so its term is known.
            committed_term: log.term(log.committed).unwrap_or(0),
            conf: &conf,
            trusted: &self.trusted,
        };
        guard::check(from, &m, &local).map_err(MessageError::from)?;
        if m.get_msg_type() == MessageType::MsgSnapshot {
            self.check_snapshot_bundle(m.get_snapshot())?;
        }
        Ok(self.node.step(m)?)
    }

    /// A snapshot Raft would install must open and match its metadata before Raft takes it: once taken, a bundle that
    /// fails to install halts the replica. One Raft ignores (at or below the commit index) is not opened.
    fn check_snapshot_bundle(&self, snap: &Snapshot) -> Result<(), ConsensusError> {
        let meta = snap.get_metadata();
        if meta.index <= self.node.raft.raft_log.committed {
            return Ok(());
        }
        let trusted = &self.trusted;
        let v = snapshot::open(&snap.data, &self.node.store().secrets, |pem| {
            trusted.values().any(|c| c == pem)
        })?;
        Ok(snapshot::check_metadata(meta, &v)?)
    }

    fn check_can_propose(&self, version: Version) -> Result<(), ProposeError> {
        if !self.is_leader() {
            return Err(ProposeError::NotLeader {
                leader: self.leader().map(RaftId::get),
            });
        }
        let expected = self.last_seqno().next().get();
        if version != expected {
            return Err(ProposeError::VersionMismatch { expected, got: version });
        }
        Ok(())
    }

    fn propose(&mut self, version: Version, ws: &WriteSet, claims: Option<[u8; 32]>) -> Result<TxId, ProposeError> {
        self.check_can_propose(version)?;
        let current = self.store().current_version();
        if current != version {
            return Err(ProposeError::VersionMismatch {
                expected: current,
                got: version,
            });
        }
        let view = self.view();
        let secret = self.node.store().secrets.for_seqno(version);
        let bytes =
            crate::codec::encode_claimed_entry(secret, (view.get(), version), 0, ws, claims.unwrap_or_default())
                .map_err(ProposeError::Encode)?;
        self.node.propose(Vec::new(), bytes)?;
        if self.node.raft.raft_log.last_index() != version {
            return Err(ProposeError::NotAppended);
        }
        Ok(TxId::new(view, Seqno(version)))
    }

    fn propose_conf_change(&mut self, cc: ConfChangeV2) -> Result<TxId, ProposeError> {
        let version = self.last_seqno().next().get();
        self.check_can_propose(version)?;
        let view = self.view();
        let bytes = conf_change_entry(self.node.store().secrets.for_seqno(version), view.get(), version, &cc)
            .map_err(ProposeError::Encode)?;
        self.node.propose_conf_change(bytes, cc)?;
        if self.node.raft.raft_log.last_index() != version || self.node.raft.pending_conf_index != version {
            // Raft appended an empty entry instead (another change is pending or the change is invalid now).
            return Err(ProposeError::ConfChangeRefused);
        }
        Ok(TxId::new(view, Seqno(version)))
    }

    /// Appends a signature transaction over the Merkle root of every entry so far (leaves 0..s-1).
    fn emit_signature(&mut self) -> Result<(), ConsensusError> {
        self.sign_asap = false;
        self.txs_since_signature = 0;
        self.ticks_since_signature = 0;
        let seqno = self.last_seqno().next().get();
        if self.tree.len() != seqno || self.store().current_version() != seqno - 1 {
            return Err(Inconsistency::SigningState {
                seqno,
                leaves: self.tree.len(),
                store_version: self.store().current_version(),
            }
            .into());
        }
        let view = self.view().get();
        let commit = self.commit_point();
        let root = self.tree.root();
        let id = &self.identity;
        let sig = PrimarySignature::new(
            &id.key,
            &id.node_id,
            &id.cert_pem,
            view,
            seqno,
            commit.view.get(),
            commit.seqno.get(),
            &root,
        );
        // The stored tree keeps only what roots after the commit point need, so it stays small.
        let mut ws = WriteSet::default();
        ws.put(SIGNATURES_TABLE, &SINGLETON_KEY, &sig.to_json_bytes());
        ws.put(
            TREE_TABLE,
            &SINGLETON_KEY,
            &self.tree.serialise_flushed_to(commit.seqno.get()),
        );
        let interval = self.cfg.snapshot_interval_tx;
        // No snapshot while a recovered service's old private state is unread: it would lack it.
        let snapshot_due = (self.snapshots.asap
            || (interval > 0 && seqno >= self.snapshots.last.saturating_add(interval)))
            && self.private_pending_through().is_none();
        if snapshot_due {
            snapshot::mark_for_snapshot(&mut ws, seqno);
        }
        let flags = if self.chunk_after_next_signature {
            consort_ledger::entry::FLAG_FORCE_CHUNK_AFTER
        } else {
            0
        };
        let bytes = crate::codec::encode_write_set_entry_with_flags(
            self.node.store().secrets.for_seqno(seqno),
            view,
            seqno,
            flags,
            &ws,
        )?;
        let sig_entry = if snapshot_due { Some(bytes.clone()) } else { None };
        if !self.append_own(seqno, &ws, bytes)? {
            return Ok(());
        }
        self.chunk_after_next_signature = false;
        if let Some(sig_entry) = sig_entry {
            let store = self.store().clone();
            self.snapshots
                .start(&store, self.node.store(), sig_entry, view, seqno)?;
        }
        Ok(())
    }

    /// Appends a transaction the replica itself writes (signature, snapshot evidence) as `seqno`, the next one:
    /// applies `ws` to the store and proposes its encoded entry `bytes`. False, with the store rolled back, if Raft
    /// did not take it (the replica is no longer primary, or is handing the role over).
    fn append_own(&mut self, seqno: u64, ws: &WriteSet, bytes: Vec<u8>) -> Result<bool, ConsensusError> {
        let store = self.store().clone();
        store.apply(seqno, ws)?;
        let appended = self.node.propose(Vec::new(), bytes).is_ok() && self.node.raft.raft_log.last_index() == seqno;
        if !appended {
            store.rollback(seqno - 1)?;
        }
        Ok(appended)
    }

    /// A snapshot build finished. The primary records a digest nobody has claimed yet in an evidence transaction
    /// (its signature must still be in the log: the build is not stale); a backup keeps it for the evidence to come.
    fn snapshot_built(&mut self, built: SnapshotBuilt) -> Result<(), ConsensusError> {
        let seqno = built.seqno;
        let Some((data, digest)) = self.snapshots.finished(built)? else {
            return Ok(());
        };
        if !self.is_leader() || !self.signatures.contains(&seqno) {
            self.snapshots.keep_built(seqno, data, digest);
            return Ok(());
        }
        // The store refuses the evidence if it is not at the log's end (`append_own` applies it as the next version).
        let evidence = self.last_seqno().next().get();
        let ws = snapshot::evidence_write_set(&digest, seqno);
        let bytes = encode_write_set_entry(
            self.node.store().secrets.for_seqno(evidence),
            self.view().get(),
            evidence,
            &ws,
        )?;
        if !self.append_own(evidence, &ws, bytes)? {
            self.snapshots.keep_built(seqno, data, digest);
            return Ok(());
        }
        self.txs_since_signature += 1;
        self.snapshots.push(PendingSnapshot { seqno, evidence, data });
        Ok(())
    }

    fn persisted(&mut self, number: u64, out: &mut Vec<Action>) {
        if !self.outstanding.contains(&number) {
            let error = Inconsistency::UnknownPersist { number }.into();
            out.push(Action::Dropped { from: None, error });
            return;
        }
        self.outstanding.retain(|&n| n > number);
        self.node.on_persist_ready(number);
        self.finish_install(number, out);
        while self.held.front().is_some_and(|(n, _)| *n <= number) {
            if let Some((_, msgs)) = self.held.pop_front() {
                send(msgs, out);
            }
        }
    }

    /// Handles every pending Ready: send, install, commit, append, persist.
    fn drain(&mut self, out: &mut Vec<Action>) {
        while self.halted.is_none() && self.installing.is_none() && self.node.has_ready() {
            let mut rd = self.node.ready();
            // The leader sends appends before its own disk write (Raft thesis 10.2.1). Snapshots are sent best
            // effort like any message: report them finished so Raft goes back to probing (and resends if lost).
            let messages = rd.take_messages();
            let snapshots_to: Vec<u64> = messages
                .iter()
                .filter(|m| m.get_msg_type() == MessageType::MsgSnapshot)
                .map(|m| m.to)
                .collect();
            send(messages, out);
            if let Some(ss) = rd.ss() {
                let role = Role::from(ss.raft_state);
                if role == Role::Leader {
                    self.sign_asap = self.cfg.sign_on_election;
                    self.txs_since_signature = 0;
                    self.ticks_since_signature = 0;
                }
                let leader = Some(ss.leader_id).filter(|&l| l != raft::INVALID_ID).map(RaftId);
                out.push(Action::RoleChanged {
                    role,
                    view: View(self.node.raft.term),
                    leader,
                });
            }
            let mut snapshot = None;
            if !rd.snapshot().is_empty() {
                let snap = rd.snapshot().clone();
                if let Err(e) = self.install_snapshot(&snap, !rd.entries().is_empty(), out) {
                    return self.halt(e, out);
                }
                snapshot = Some(crate::persisted::encode_protobuf(&snap));
            }
            let committed = rd.take_committed_entries();
            if let Err(e) = self.handle_committed(&committed, out) {
                return self.halt(e, out);
            }
            let entries = rd.take_entries();
            if let Err(e) = self.append(&entries, out) {
                return self.halt(e, out);
            }
            let hard_state = rd.hs().cloned();
            if let Some(hs) = &hard_state {
                self.node.mut_store().hard_state = hs.clone();
            }
            let held = rd.take_persisted_messages();
            let number = rd.number();
            let must_persist = rd.must_sync() || !entries.is_empty() || hard_state.is_some() || snapshot.is_some();
            self.node.advance_append_async(rd);
            if let Some(last) = committed.last() {
                self.node.advance_apply_to(last.index);
            }
            for to in snapshots_to {
                self.node.report_snapshot(to, raft::SnapshotStatus::Finish);
            }
            if snapshot.is_some() {
                self.installing = Some(number);
            }
            if must_persist {
                self.outstanding.push_back(number);
                out.push(Action::Persist {
                    number,
                    hard_state,
                    snapshot,
                });
                if !held.is_empty() {
                    self.held.push_back((number, held));
                }
            } else if let Some(&pending) = self.outstanding.back() {
                if !held.is_empty() {
                    self.held.push_back((pending, held));
                }
            } else {
                send(held, out);
            }
        }
    }

    fn handle_committed(
        &mut self,
        entries: &[raft::eraftpb::Entry],
        out: &mut Vec<Action>,
    ) -> Result<(), ConsensusError> {
        let mut new_commit = None;
        for e in entries {
            if e.get_entry_type() == EntryType::EntryConfChangeV2 {
                let cc = ConfChangeV2::parse_from_bytes(&e.data)
                    .map_err(|err| ConsensusError::entry(e.index, EntryFault::ConfChangeProtobuf(err.into())))?;
                // Raft refuses changes that became invalid (e.g. removing the last voter): the entry stays in the
                // ledger, the membership does not change.
                if let Ok(cs) = self.node.apply_conf_change(&cc) {
                    // Sign soon, so that the commit point (and snapshots for joiners) move past the change.
                    self.sign_asap = true;
                    self.node.mut_store().conf_history.push((e.index, cs.clone()));
                    out.push(Action::ConfChanged {
                        seqno: Seqno(e.index),
                        conf_state: cs,
                    });
                }
            }
            if self.signatures.contains(&e.index) {
                new_commit = Some(TxId::new(View(e.term), Seqno(e.index)));
            }
        }
        if let Some(c) = new_commit.filter(|c| c.seqno > self.commit_point().seqno) {
            // Paths below the commit point are served from the trees signature transactions store: memory stays
            // proportional to the uncommitted suffix, not to the ledger.
            self.tree.flush_to(c.seqno.get());
            let log = self.node.mut_store();
            log.commit = c;
            log.store.set_committed(c.seqno.get());
            log.ledger.commit(c.seqno.get())?;
            out.push(Action::Committed(c));
            while self
                .snapshots
                .pending
                .front()
                .is_some_and(|p| p.evidence <= c.seqno.get())
            {
                let Some(p) = self.snapshots.pending.pop_front() else {
                    break;
                };
                let log = self.node.store();
                let view = log.views.view_of(p.seqno).unwrap_or_default();
                let snap = log.raft_snapshot(p.data, p.seqno, view);
                out.push(Action::SnapshotCommitted {
                    seqno: Seqno(p.seqno),
                    evidence: Seqno(p.evidence),
                    snapshot: snap,
                });
            }
        }
        Ok(())
    }

    fn append(&mut self, entries: &[raft::eraftpb::Entry], out: &mut Vec<Action>) -> Result<(), ConsensusError> {
        let Some(first) = entries.first().map(|e| e.index) else {
            return Ok(());
        };
        if first <= self.last_seqno().get() {
            self.truncate(first - 1, out)?;
        }
        let before = self.store().current_version();
        for e in entries {
            // Entries from peers were checked by `normalise` when received, and this replica's own proposals are
            // well formed; `accept` parses each one again in any case. Only Raft's empty entries need bytes here.
            let mut e = e.clone();
            // Filled here, in order, not when received: a rekey just before it may have changed its secret.
            crate::codec::fill_empty(self.node.store().secrets.for_seqno(e.index), &mut e)?;
            let bytes = crate::codec::ledger_bytes(&e).to_vec();
            self.with_partial(|p| p.accept(e.term, e.index, bytes))?;
        }
        let now = self.store().current_version();
        if now > before {
            out.push(Action::Applied {
                first: Seqno(before + 1),
                last: Seqno(now),
            });
        }
        Ok(())
    }

    /// Drops every entry after `to` (a new primary's log replaces an uncommitted suffix).
    fn truncate(&mut self, to: u64, out: &mut Vec<Action>) -> Result<(), ConsensusError> {
        let commit = self.commit_point().seqno.get();
        if to < commit {
            return Err(Inconsistency::RollbackBelowCommit { to, commit }.into());
        }
        let log = self.node.mut_store();
        log.ledger.truncate(to)?;
        log.store.rollback(to)?;
        log.secrets.truncate(to);
        log.terms.truncate((to - log.base_index) as usize);
        log.views.truncate(to);
        log.conf_changes.split_off(&(to + 1));
        self.tree.truncate(to + 1);
        self.signatures.split_off(&(to + 1));
        self.snapshots.truncate(to);
        out.push(Action::RolledBack { to: Seqno(to) });
        Ok(())
    }

    /// Installs a snapshot Raft took from the primary, in memory: the store, tree, views and membership become the
    /// snapshot's, and the log continues after it. The old ledger chunks are *not* removed here: the node writes
    /// the snapshot file with this Ready's persist, and only once that is reported durable does
    /// [`Self::finish_install`] remove them. Until then no further Ready is taken, so nothing is appended to the
    /// old ledger. Crash points, and what a restart ([`Replica::open`]) finds:
    ///
    /// 1. before the snapshot file is durable: the old snapshot, the whole old ledger and the old hard state (the
    ///    persist that carries the new snapshot writes the file before the hard state whose commit index is the
    ///    snapshot's): the node restarts where it was, and Raft sends the snapshot again;
    /// 2. the snapshot file is durable, the hard state is not: the new snapshot over the old ledger and the old
    ///    hard state (its commit index is at most the old ledger's, which is at most the snapshot's);
    /// 3. both durable, the old chunks not (or not all) removed: the new snapshot over the old ledger or a prefix
    ///    of it (chunks are removed last one first);
    /// 4. the chunks removed, entries after the snapshot appended: the new snapshot and the ledger after it.
    ///
    /// In 2 and 3 the ledger ends at or before the snapshot (or disagrees with it at its seqno): `open` removes
    /// those leftover chunks, now that the snapshot stands for them, and the ledger continues after the snapshot.
    fn install_snapshot(
        &mut self,
        snap: &Snapshot,
        entries: bool,
        out: &mut Vec<Action>,
    ) -> Result<(), ConsensusError> {
        let trusted = &self.trusted;
        let secrets = self.node.store().secrets.clone();
        let v = snapshot::open(&snap.data, &secrets, |pem| trusted.values().any(|c| c == pem))?;
        let meta = snap.get_metadata();
        snapshot::check_metadata(meta, &v)?;
        let base = TxId::new(View(v.view), Seqno(v.seqno));
        let log = self.node.mut_store();
        if log.ledger.first_seqno().is_none() {
            // No chunk on disk: nothing durable to lose, and entries in this Ready may follow at once.
            log.ledger.clear()?;
        } else if entries {
            // Raft restores a snapshot with no entries after it, and a Ready is taken after every step, so the
            // entries that follow come in a later Ready (after the old chunks are gone). Never append them to the
            // old ledger.
            return Err(ConsensusError::entry(v.seqno + 1, EntryFault::EntriesWithSnapshot));
        }
        log.store = Arc::new(v.store);
        log.base_index = v.seqno;
        log.base_term = v.view;
        log.base_bundle = Some(snap.data.to_vec());
        log.terms.clear();
        log.conf_changes.clear();
        log.conf_history = vec![(v.seqno, meta.get_conf_state().clone())];
        log.views = v.view_history;
        log.commit = base;
        self.tree = v.tree;
        self.signatures = [v.seqno].into();
        self.snapshots.reset(v.seqno);
        out.push(Action::SnapshotInstalled(base));
        out.push(Action::Committed(base));
        Ok(())
    }

    /// The persist that carried an installed snapshot is durable: the old ledger chunks go (last one first), and
    /// the ledger continues after the snapshot. A crash midway leaves a prefix of them, which `open` removes.
    fn finish_install(&mut self, number: u64, out: &mut Vec<Action>) {
        if self.installing.is_none_or(|n| n > number) {
            return;
        }
        self.installing = None;
        if let Err(e) = self.node.mut_store().ledger.clear() {
            self.halt(e.into(), out);
        }
    }

    fn with_partial<R>(&mut self, f: impl FnOnce(&mut PartialReplicaRef<'_, S>) -> R) -> R {
        let mut p = PartialReplicaRef {
            log: self.node.mut_store(),
            tree: &mut self.tree,
            signatures: &mut self.signatures,
            trusted: crate::recovery::Trust::Certs(&self.trusted),
            snapshots: Some(&mut self.snapshots),
        };
        f(&mut p)
    }
}
