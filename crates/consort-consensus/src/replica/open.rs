//! Opening a replica: loading the ledger, starting from the persisted snapshot if there is one, replaying every
//! entry after it, and building raft-rs's `RawNode` around the result.
//!
//! A crash while a snapshot from the primary was being installed can leave the new snapshot over chunks of the
//! ledger it replaced (the snapshot file is made durable first, the old chunks removed after; see
//! `Replica::install_snapshot` for every crash point). Such leftover chunks end at or before the snapshot, or
//! disagree with it at its seqno: they are removed here, and the ledger continues after the snapshot. A ledger
//! that starts after the snapshot's next seqno is still refused (entries are missing).
//!
//! The chunks a replica keeps from before its snapshot are not replayed, so a byte changed inside one of their
//! entries would go unnoticed (framing damage is found by the ledger's load): each such entry is checked here as
//! replay would check it, short of applying it (its header, its place, and its AES-GCM tag, which covers the IV,
//! the public domain and the private domain), so that the node refuses to start rather than keep a damaged
//! committed chunk it would later serve.

use super::Replica;
use crate::config::{NodeIdentity, ReplicaConfig};
use crate::error::{ConsensusError, EntryFault, Inconsistency, SnapshotError};
use crate::history::ViewHistory;
use crate::log::{Log, Terms};
use crate::periodic::Snapshots;
use crate::persisted::PersistedState;
use crate::recovery::{RecoveryBase, RecoveryFault, Trust};
use crate::replay::{Offload, PartialReplica};
use crate::snapshot;
use crate::vocab::{RaftId, Seqno, TxId, View};
use consort_kv::Store;
use consort_ledger::{
    parse_entry, Ledger, LedgerSecret, LedgerSecrets, LedgerStorage, MerkleTree, FLAG_FORCE_CHUNK_AFTER,
    FLAG_FORCE_CHUNK_BEFORE,
};
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Snapshot};
use raft::RawNode;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

impl<S: LedgerStorage> Replica<S> {
    /// Opens a replica over `storage` (its ledger chunks) and what the node persisted. A fresh member passes an
    /// empty storage and `voters`; a joiner passes an empty storage and a snapshot from a member; a restarting
    /// node passes what it kept. Every entry is replayed: write sets applied, signatures verified.
    pub fn open(
        cfg: ReplicaConfig,
        identity: NodeIdentity,
        trusted: BTreeMap<RaftId, String>,
        secrets: impl Into<LedgerSecrets>,
        storage: S,
        persisted: PersistedState,
    ) -> Result<Self, ConsensusError> {
        Self::open_with_offload(cfg, identity, trusted, secrets, storage, persisted, None)
    }

    /// [`Replica::open`], decoding (parse, decrypt, hash) the next ledger chunk on the core `offload` lends while
    /// this thread applies the current one. The result is the same; only the wall-clock time differs.
    pub fn open_with_offload(
        cfg: ReplicaConfig,
        identity: NodeIdentity,
        trusted: BTreeMap<RaftId, String>,
        secrets: impl Into<LedgerSecrets>,
        storage: S,
        persisted: PersistedState,
        offload: Option<&dyn Offload>,
    ) -> Result<Self, ConsensusError> {
        let secrets = secrets.into();
        let (ledger, opener) = (
            Ledger::load(storage, cfg.chunk_threshold_bytes)?,
            identity.secret_opener.clone(),
        );
        let (start, mut ledger, recovery_root) =
            Start::choose(ledger, &persisted, &secrets, &trusted, opener, offload)?;
        let Start {
            store,
            base,
            views,
            conf,
            bundle,
            tree,
            signatures,
        } = start;
        if persisted.snapshot.is_some() && left_over_from_install(&ledger, base)? {
            ledger.clear()?;
        }
        let base_seqno = base.seqno.get();
        let first = check_ledger_start(&ledger, &secrets, base_seqno)?;
        let log = Log {
            ledger,
            base_index: base_seqno,
            base_term: base.view.get(),
            base_bundle: bundle,
            terms: Terms::default(),
            conf_changes: BTreeMap::new(),
            hard_state: persisted.hard_state.clone().unwrap_or_default(),
            conf_history: vec![(base_seqno, conf)],
            store,
            secrets,
            secret_opener: identity.secret_opener.clone(),
            views,
            commit: base,
        };
        // RawNode reads the log at creation, so replay into a Log first, then build the node around it.
        let mut replica = PartialReplica {
            log,
            tree,
            signatures,
            trusted: Trust::Certs(&trusted),
        };
        let raft_commit = persisted.hard_state.as_ref().map_or(0, |hs| hs.commit);
        replica.replay(first.max(base_seqno + 1), u64::MAX, raft_commit, offload)?;
        let PartialReplica {
            mut log,
            tree,
            signatures,
            ..
        } = replica;
        set_commit_point(&mut log, &signatures, base)?;
        let raft_cfg = raft_config(&cfg, base_seqno);
        raft_cfg.validate()?;
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let node = RawNode::new(&raft_cfg, log, &logger)?;
        let random_state = cfg.random_seed;
        let snapshots_on_backups = cfg.snapshots_on_backups;
        let mut replica = Replica {
            cfg,
            identity,
            trusted,
            node,
            tree,
            signatures,
            txs_since_signature: 0,
            ticks_since_signature: 0,
            sign_asap: false,
            chunk_after_next_signature: false,
            outstanding: VecDeque::new(),
            held: VecDeque::new(),
            halted: None,
            installing: None,
            random_state,
            snapshots: Snapshots {
                last: base_seqno,
                on_backups: snapshots_on_backups,
                ..Default::default()
            },
            recovery_root,
        };
        let commit = replica.commit_point().seqno;
        replica.tree.flush_to(commit.get());
        replica.draw_election_timeout();
        Ok(replica)
    }

    /// raft-rs draws election timeouts from the thread's RNG, which a simulation cannot replay; whenever the
    /// election clock restarts, this replaces the draw with one from the injected seed.
    pub(super) fn draw_election_timeout(&mut self) {
        if self.node.raft.election_elapsed != 0 {
            return;
        }
        self.random_state = self.random_state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.random_state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let base = self.cfg.election_ticks;
        self.node
            .raft
            .set_randomized_election_timeout(base + (z % base as u64) as usize);
    }
}

/// The state a replica starts from before replaying its ledger: the persisted snapshot's, or an empty one.
struct Start {
    store: Arc<Store>,
    /// The snapshot's transaction id (0.0 without one): the ledger continues after it.
    base: TxId,
    views: ViewHistory,
    /// Membership at `base`.
    conf: ConfState,
    /// The snapshot bundle, handed to learners Raft brings up with a snapshot.
    bundle: Option<Vec<u8>>,
    tree: MerkleTree,
    signatures: BTreeSet<u64>,
}

impl Start {
    /// Opens and checks the persisted snapshot (signed by a `trusted` node) if there is one; otherwise an empty
    /// state with the first membership.
    fn from_persisted(
        persisted: &PersistedState,
        secrets: &LedgerSecrets,
        trusted: &BTreeMap<RaftId, String>,
    ) -> Result<Self, ConsensusError> {
        let Some(bytes) = &persisted.snapshot else {
            return Ok(Start {
                store: Arc::new(Store::new()),
                base: TxId::default(),
                views: ViewHistory::default(),
                conf: ConfState {
                    voters: persisted.voters.clone(),
                    ..Default::default()
                },
                bundle: None,
                tree: MerkleTree::new(),
                signatures: BTreeSet::new(),
            });
        };
        let snap = Snapshot::parse_from_bytes(bytes).map_err(|e| SnapshotError::Protobuf(e.into()))?;
        let v = snapshot::open(&snap.data, secrets, |pem: &str| trusted.values().any(|c| c == pem))?;
        let meta = snap.get_metadata();
        snapshot::check_metadata(meta, &v)?;
        Ok(Start {
            store: Arc::new(v.store),
            base: TxId::new(View(v.view), Seqno(v.seqno)),
            views: v.view_history,
            conf: meta.get_conf_state().clone(),
            bundle: Some(snap.data.to_vec()),
            tree: v.tree,
            signatures: [v.seqno].into(),
        })
    }
}

impl Start {
    /// Where a replica over `ledger` starts: the persisted snapshot, a recovered ledger's base (then also the Merkle
    /// root over its old part, which a private restore must read again), or nothing. Hands the ledger back.
    #[allow(clippy::type_complexity)] // reason: the three results of one choice, taken apart at once by the caller.
    fn choose<S: LedgerStorage>(
        ledger: Ledger<S>,
        persisted: &PersistedState,
        secrets: &LedgerSecrets,
        trusted: &BTreeMap<RaftId, String>,
        opener: Option<Arc<dyn crate::SecretOpener>>,
        offload: Option<&dyn Offload>,
    ) -> Result<(Self, Ledger<S>, Option<[u8; 32]>), ConsensusError> {
        match (&persisted.snapshot, persisted.recovery) {
            (None, Some(base)) => {
                let (start, ledger) =
                    Start::from_old_ledger(ledger, base, secrets, opener, &persisted.voters, offload)?;
                let root = start.tree.root();
                Ok((start, ledger, Some(root)))
            }
            _ => Ok((Start::from_persisted(persisted, secrets, trusted)?, ledger, None)),
        }
    }

    /// The state at a recovered ledger's base: the old part (seqnos 1 to `base`) replayed as the ledger holds it,
    /// signatures checked against the certificates its own tables endorse ([`Trust::LedgerTables`]), private
    /// domains read only if `secrets` covers them (after the old secrets were restored), everything committed.
    /// Raft then starts from the base as from a snapshot, with `voters` (the recovered service's first node) as
    /// its membership. Hands the ledger back.
    fn from_old_ledger<S: LedgerStorage>(
        ledger: Ledger<S>,
        base: RecoveryBase,
        secrets: &LedgerSecrets,
        secret_opener: Option<Arc<dyn crate::SecretOpener>>,
        voters: &[u64],
        offload: Option<&dyn Offload>,
    ) -> Result<(Self, Ledger<S>), ConsensusError> {
        let last = ledger.last_seqno();
        if last < base.seqno {
            return Err(RecoveryFault::LedgerTooShort { base: base.seqno, last }.into());
        }
        let log = Log {
            ledger,
            base_index: 0,
            base_term: 0,
            base_bundle: None,
            terms: Terms::default(),
            conf_changes: BTreeMap::new(),
            hard_state: raft::eraftpb::HardState::default(),
            conf_history: vec![(0, ConfState::default())],
            store: Arc::new(Store::new()),
            secrets: secrets.clone(),
            secret_opener,
            views: ViewHistory::default(),
            commit: TxId::default(),
        };
        let mut old = PartialReplica {
            log,
            tree: MerkleTree::new(),
            signatures: BTreeSet::new(),
            trusted: Trust::LedgerTables,
        };
        old.replay(1, base.seqno, base.seqno, offload)?;
        let PartialReplica {
            log, tree, signatures, ..
        } = old;
        let found = signatures.last().copied();
        if found != Some(base.seqno) {
            return Err(RecoveryFault::BaseNotASignature {
                base: base.seqno,
                found,
            }
            .into());
        }
        log.store.set_committed(base.seqno);
        let view = log.views.view_of(base.seqno).unwrap_or(0);
        let start = Start {
            store: log.store,
            base: TxId::new(View(view), Seqno(base.seqno)),
            views: log.views,
            conf: ConfState {
                voters: voters.to_vec(),
                ..Default::default()
            },
            bundle: None,
            tree,
            signatures,
        };
        Ok((start, log.ledger))
    }
}

/// Checks the entries the ledger keeps at or before the base and that it continues right after the base; returns
/// its first seqno (the base's next one for an empty ledger).
fn check_ledger_start<S: LedgerStorage>(
    ledger: &Ledger<S>,
    secrets: &LedgerSecrets,
    base_seqno: u64,
) -> Result<u64, ConsensusError> {
    check_kept_entries(ledger, secrets, base_seqno)?;
    let first = ledger.first_seqno().unwrap_or(base_seqno + 1);
    if first > base_seqno + 1 {
        return Err(Inconsistency::LedgerAfterSnapshot {
            first,
            snapshot: base_seqno,
        }
        .into());
    }
    Ok(first)
}

/// Whether `ledger` is what a snapshot install at `base` replaced and did not get to remove: it starts at or
/// before the snapshot and either ends at or before it, or holds a different transaction at its seqno (an
/// uncommitted suffix of another view that the snapshot overrides). A ledger that holds the snapshot's own
/// transaction and continues after it is kept and replayed from the snapshot on.
fn left_over_from_install<S: LedgerStorage>(ledger: &Ledger<S>, base: TxId) -> Result<bool, ConsensusError> {
    Ok(match ledger.first_seqno() {
        None => false,
        Some(first) if first > base.seqno => false,
        Some(_) if ledger.last_seqno() <= base.seqno => true,
        Some(_) => {
            let bytes = ledger.read_entry(base.seqno.get())?;
            crate::codec::inspect(&bytes, base.view.get(), base.seqno.get()).is_err()
        }
    })
}

/// Checks every entry of `ledger` at or before `through` (the snapshot's seqno: replay starts after it), one chunk
/// at a time: see the module documentation. Entries older than the oldest ledger secret held (a keyring restored
/// from a later point) are checked short of their tag.
fn check_kept_entries<S: LedgerStorage>(
    ledger: &Ledger<S>,
    secrets: &LedgerSecrets,
    through: u64,
) -> Result<(), ConsensusError> {
    let Some(mut seqno) = ledger.first_seqno() else {
        return Ok(());
    };
    let oldest_secret = secrets.iter().next().map_or(1, |(version, _)| version);
    while seqno <= through && seqno <= ledger.last_seqno() {
        let chunk = ledger.read_chunk_of(seqno)?;
        for (s, bytes) in chunk.iter().filter(|(s, _)| *s <= through) {
            check_kept_entry(bytes, s, (s >= oldest_secret).then(|| secrets.for_seqno(s)))?;
        }
        seqno = chunk.last_seqno() + 1;
    }
    Ok(())
}

/// One entry kept from before the snapshot: a transaction at `seqno`, with known header flags and, given its
/// ledger secret, an AES-GCM tag that checks out.
fn check_kept_entry(bytes: &[u8], seqno: u64, secret: Option<&LedgerSecret>) -> Result<(), ConsensusError> {
    let bad = |r: EntryFault| ConsensusError::entry(seqno, r);
    let (entry, used) = parse_entry(bytes).map_err(|e| bad(e.into()))?;
    if used != bytes.len() {
        return Err(bad(EntryFault::TrailingBytes(bytes.len() - used)));
    }
    if entry.is_snapshot || entry.seqno != seqno {
        return Err(bad(EntryFault::NotAtItsPlace {
            entry: TxId::new(View(entry.view), Seqno(entry.seqno)),
            is_snapshot: entry.is_snapshot,
            raft: TxId::new(View(entry.view), Seqno(seqno)),
        }));
    }
    if entry.flags & !(FLAG_FORCE_CHUNK_AFTER | FLAG_FORCE_CHUNK_BEFORE) != 0 {
        return Err(bad(EntryFault::UnknownFlags(entry.flags)));
    }
    if let Some(secret) = secret {
        entry.decrypt_private(secret).map_err(|e| bad(e.into()))?;
    }
    Ok(())
}

/// After replay: checks the persisted hard state against the ledger (raising its term to the ledger's last view)
/// and sets the CCF commit point to the last signature transaction at or below Raft's commit index (the snapshot's
/// base at least).
fn set_commit_point<S: LedgerStorage>(
    log: &mut Log<S>,
    signatures: &BTreeSet<u64>,
    base: TxId,
) -> Result<(), ConsensusError> {
    let last = log.last_index();
    let hs = &mut log.hard_state;
    if hs.commit > last {
        return Err(Inconsistency::CommitBeyondLedger {
            commit: hs.commit,
            last,
        }
        .into());
    }
    hs.commit = hs.commit.max(base.seqno.get());
    // A crash between the ledger's sync and the hard state's write leaves entries of a view the hard state has not
    // reached. The term is raised to the last entry's view (and the snapshot's), as Raft requires: a replica whose
    // term is below its log answers some messages with term 0, which raft-rs treats as fatal. No vote in that view
    // was sent (votes are sent only once persisted), so the old view's vote is dropped.
    let floor = log.terms.last().unwrap_or(0).max(base.view.get());
    if hs.term < floor {
        hs.term = floor;
        hs.vote = 0;
    }
    let commit_seqno = signatures
        .range(..=hs.commit)
        .next_back()
        .copied()
        .unwrap_or(0)
        .max(base.seqno.get());
    log.commit = TxId::new(View(log.views.view_of(commit_seqno).unwrap_or(0)), Seqno(commit_seqno));
    log.store.set_committed(commit_seqno);
    log.ledger.commit(commit_seqno)?;
    Ok(())
}

/// raft-rs's configuration for `cfg`, with entries up to `applied` already applied (the snapshot's).
fn raft_config(cfg: &ReplicaConfig, applied: u64) -> raft::Config {
    raft::Config {
        id: cfg.id.get(),
        election_tick: cfg.election_ticks,
        heartbeat_tick: cfg.heartbeat_ticks,
        applied,
        max_size_per_msg: cfg.max_append_bytes,
        max_inflight_msgs: cfg.max_inflight_appends,
        check_quorum: true,
        pre_vote: true,
        ..Default::default()
    }
}
