//! Periodic snapshot bookkeeping: which signature transactions are marked, which builds are running, which
//! bundles wait for their evidence transaction, and which are final once that evidence commits.

use crate::error::ConsensusError;
use crate::limits::MAX_PENDING_SNAPSHOTS;
use crate::log::Log;
use crate::snapshot::{SnapshotBuild, SnapshotBuilt};
use consort_kv::Store;
use consort_ledger::LedgerStorage;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// A periodic snapshot built at a signature transaction, waiting for its evidence transaction to commit.
#[derive(Debug)]
pub(crate) struct PendingSnapshot {
    pub(crate) seqno: u64,
    pub(crate) evidence: u64,
    /// The snapshot bundle ([`snapshot::build`]) whose SHA-256 the evidence records.
    pub(crate) data: Vec<u8>,
}

/// A snapshot bundle and its SHA-256.
pub(crate) type Bundle = (Vec<u8>, [u8; 32]);

/// Periodic snapshot bookkeeping. The primary marks a signature transaction for a snapshot; every replica that
/// takes that entry builds the snapshot of its state there off the engine lock ([`Action::BuildSnapshot`]). When
/// the primary's build finishes it records the digest in an evidence transaction; a backup keeps its own build
/// only if the digests agree. A snapshot is handed out once its evidence is committed.
#[derive(Debug, Default)]
pub(crate) struct Snapshots {
    /// Seqno of the latest snapshot started, installed or (by a backup that does not build) marked.
    pub(crate) last: u64,
    /// Whether this replica builds the snapshots a primary marks while it is a backup.
    pub(crate) on_backups: bool,
    /// Snapshot at the next signature whatever the interval (governance's `trigger_snapshot`).
    pub(crate) asap: bool,
    /// Builds handed out and not yet reported, by seqno, with the generation each was started as (a build of an
    /// entry that was since rolled back is stale even if the seqno is marked again).
    pub(crate) building: BTreeMap<u64, u64>,
    pub(crate) generation: u64,
    /// Builds to hand to the node with the actions of the current step.
    pub(crate) to_start: Vec<SnapshotBuild>,
    /// Bundles this replica built whose evidence it has not seen, by seqno.
    pub(crate) built: BTreeMap<u64, Bundle>,
    /// Evidence seen before this replica's build finished: seqno -> (evidence seqno, claimed digest).
    pub(crate) claimed: BTreeMap<u64, (u64, [u8; 32])>,
    pub(crate) pending: VecDeque<PendingSnapshot>,
    /// Evidence whose snapshot this replica built with a different digest.
    pub(crate) mismatches: u64,
}

impl Snapshots {
    pub(crate) fn push(&mut self, p: PendingSnapshot) {
        self.pending.push_back(p);
        while self.pending.len() > MAX_PENDING_SNAPSHOTS {
            self.pending.pop_front();
        }
    }

    /// Starts building the snapshot at signature transaction `seqno`, just applied to `store`.
    pub(crate) fn start(
        &mut self,
        store: &Arc<Store>,
        log: &Log<impl LedgerStorage>,
        sig_entry: Vec<u8>,
        view: u64,
        seqno: u64,
    ) -> Result<(), ConsensusError> {
        self.generation += 1;
        let history = log.view_history_at(view, seqno);
        let build = SnapshotBuild::start(store, &log.secrets, sig_entry, view, seqno, history, self.generation)?;
        self.building.insert(seqno, self.generation);
        // A build the node never reports back (it could not start a thread) must not be waited for forever.
        while self.building.len() > MAX_PENDING_SNAPSHOTS {
            if let Some((old, _)) = self.building.pop_first() {
                self.claimed.remove(&old);
            }
        }
        self.to_start.push(build);
        self.last = self.last.max(seqno);
        self.asap = false;
        Ok(())
    }

    /// A backup took signature transaction `seqno`, which the primary marked for a snapshot: builds it too if
    /// configured to; otherwise only notes it, so that the interval counts from there should this replica become
    /// primary.
    pub(crate) fn marked(
        &mut self,
        store: &Arc<Store>,
        log: &Log<impl LedgerStorage>,
        sig_entry: &[u8],
        view: u64,
        seqno: u64,
    ) -> Result<(), ConsensusError> {
        if self.on_backups {
            return self.start(store, log, sig_entry.to_vec(), view, seqno);
        }
        self.last = self.last.max(seqno);
        Ok(())
    }

    /// Compares this replica's bundle at `seqno` with the digest evidence transaction `evidence` claims.
    pub(crate) fn compare(&mut self, seqno: u64, evidence: u64, claimed: [u8; 32], data: Vec<u8>, digest: [u8; 32]) {
        if digest == claimed {
            self.push(PendingSnapshot { seqno, evidence, data });
        } else {
            self.mismatches += 1;
        }
    }

    /// Evidence transaction `evidence` claims digest `hash` for the snapshot at `seqno`.
    pub(crate) fn claim(&mut self, evidence: u64, seqno: u64, hash: [u8; 32]) {
        if let Some((data, digest)) = self.built.remove(&seqno) {
            self.compare(seqno, evidence, hash, data, digest);
        } else if self.building.contains_key(&seqno) {
            self.claimed.insert(seqno, (evidence, hash));
        }
        // Otherwise this replica never took the marked entry (it started from a later snapshot): nothing to keep.
    }

    /// A build finished: returns its bundle and digest if nothing claims it yet (a primary then records it).
    pub(crate) fn finished(&mut self, built: SnapshotBuilt) -> Result<Option<Bundle>, ConsensusError> {
        let seqno = built.seqno;
        if self.building.get(&seqno) != Some(&built.generation) {
            return Ok(None); // stale: the entry was rolled back, or a snapshot was installed since
        }
        self.building.remove(&seqno);
        let (data, digest) = built.result?;
        match self.claimed.remove(&seqno) {
            Some((evidence, hash)) => {
                self.compare(seqno, evidence, hash, data, digest);
                Ok(None)
            }
            None => Ok(Some((data, digest))),
        }
    }

    /// Keeps a bundle for the evidence to come (only the newest few).
    pub(crate) fn keep_built(&mut self, seqno: u64, data: Vec<u8>, digest: [u8; 32]) {
        self.built.insert(seqno, (data, digest));
        while self.built.len() > MAX_PENDING_SNAPSHOTS {
            self.built.pop_first();
        }
    }

    /// Forgets everything about entries after `to` (rolled back).
    pub(crate) fn truncate(&mut self, to: u64) {
        self.building.retain(|&s, _| s <= to);
        self.to_start.retain(|b| b.seqno <= to);
        self.built.retain(|&s, _| s <= to);
        self.claimed.retain(|_, (e, _)| *e <= to);
        self.pending.retain(|p| p.evidence <= to);
    }

    /// A snapshot at `base` replaced the state: nothing built or claimed before applies any more.
    pub(crate) fn reset(&mut self, base: u64) {
        self.building.clear();
        self.to_start.clear();
        self.built.clear();
        self.claimed.clear();
        self.pending.clear();
        self.last = base;
    }
}
