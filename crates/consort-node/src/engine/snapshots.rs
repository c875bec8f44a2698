//! Periodic snapshots on the engine's side: builds run on a thread of their own while transactions go on (the result
//! comes back to the replica as an event), and committed snapshots are encoded and written off the engine lock.

use super::Engine;
use consort_consensus::eraftpb::Snapshot;
use consort_consensus::snapshot::SnapshotBuild;
use consort_consensus::Event;
use std::time::Instant;

/// A snapshot build pauses this many times as long as each batch took (so it uses at most a quarter of a core).
const SNAPSHOT_BUILD_PAUSE_FACTOR: u32 = 3;

impl Engine {
    /// Writes the snapshot at `seqno` (whose evidence is committed at `evidence`) to the snapshots directory, on a
    /// thread of its own: a large file must not stall transactions.
    pub(super) fn write_committed_snapshot(&self, seqno: u64, evidence: u64, snapshot: Snapshot) {
        tracing::info!(seqno, evidence, bytes = snapshot.data.len(), "snapshot committed");
        self.metrics.snapshots.inc();
        let dir = self.cfg.storage.snapshots_dir.clone();
        let keep = self.cfg.ledger.snapshots_to_keep;
        let spawned = std::thread::Builder::new()
            .name("snapshot-writer".into())
            .spawn(move || {
                let bytes = consort_consensus::encode_snapshot(&snapshot);
                super::snapshot_files::write_committed(&dir, seqno, evidence, &bytes, keep)
            });
        if let Err(err) = spawned {
            tracing::warn!(%err, "could not start the snapshot writer");
        }
    }

    /// Builds a snapshot on a thread of its own and hands the result back to the replica.
    pub(super) fn build_snapshot(&self, build: Box<SnapshotBuild>) {
        let me = self.me.get().cloned();
        let seqno = build.seqno();
        let spawned = std::thread::Builder::new()
            .name("snapshot-builder".into())
            .spawn(move || {
                // Each batch holds the store's read lock briefly; pausing between batches makes it unlikely that the
                // builder is preempted while holding it (with more runnable threads than cores, writers would then
                // wait for it to be scheduled again), and keeps the build to a share of a core so that transactions
                // keep theirs.
                let mut build = build;
                loop {
                    let batch = Instant::now();
                    if build.step(consort_kv::SNAPSHOT_BATCH) {
                        break;
                    }
                    std::thread::sleep(batch.elapsed() * SNAPSHOT_BUILD_PAUSE_FACTOR);
                }
                let built = build.run();
                if let Some(engine) = me.and_then(|w| w.upgrade()) {
                    let mut e = engine.lock();
                    let actions = e.replica.step(Event::SnapshotBuilt(built));
                    engine.handle(&mut e, actions);
                }
            });
        if let Err(err) = spawned {
            tracing::warn!(%err, seqno, "could not start the snapshot builder");
        }
    }
}
