//! The Raft clock: the ticker thread's loop, the tick length, and the replica configuration in ticks.

use super::Engine;
use crate::config::NodeConfig;
use consort_consensus::{Event, ReplicaConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Length of one replica tick: the unit of Raft time (election timeout, heartbeat, signature interval).
pub const TICK_MS: u64 = 10;
/// Most ticks the ticker replays at once after it was held up; longer stalls are not made up (a burst of election
/// ticks after a long stall would only start a pre-vote).
const MAX_CATCH_UP_TICKS: u32 = 10;

/// A random seed for election timeouts (std's randomly keyed hasher; no extra dependency).
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

fn ticks(ms: u64) -> usize {
    ms.div_ceil(TICK_MS).max(1) as usize
}

impl Engine {
    /// The replica configuration this node runs with.
    pub fn replica_config(cfg: &NodeConfig, raft_id: consort_consensus::RaftId) -> ReplicaConfig {
        let mut rc = ReplicaConfig::new(raft_id);
        rc.election_ticks = ticks(cfg.consensus.election_timeout_ms);
        rc.heartbeat_ticks = ticks(cfg.consensus.heartbeat_ms);
        rc.max_inflight_appends = cfg.consensus.max_inflight_appends;
        rc.signature_interval_tx = cfg.ledger.signature_interval_tx;
        rc.signature_interval_ticks = ticks(cfg.ledger.signature_interval_ms) as u64;
        rc.chunk_threshold_bytes = cfg.ledger.chunk_threshold_bytes;
        rc.snapshot_interval_tx = cfg.ledger.snapshot_tx_interval;
        rc.snapshots_on_backups = cfg.ledger.snapshots_on_backups;
        rc.random_seed = random_seed();
        rc
    }

    /// The ticker loop: ticks the replica every [`TICK_MS`] until `stopping` is set. Runs on its own thread, apart
    /// from the persister ([`Engine::persist_loop`]), so that an fsync never delays the Raft clock or the
    /// signature interval.
    pub fn drive(&self, stopping: &AtomicBool) {
        let tick = Duration::from_millis(TICK_MS);
        let mut next_tick = Instant::now() + tick;
        while !stopping.load(Ordering::Acquire) {
            let now = Instant::now();
            if now < next_tick {
                std::thread::sleep(next_tick - now);
                continue;
            }
            let mut e = self.lock();
            // Ticks missed while the engine lock was held elsewhere are caught up (up to MAX_CATCH_UP_TICKS), so
            // the signature interval and heartbeats keep to wall-clock time under load.
            let mut caught_up = 0;
            while Instant::now() >= next_tick && caught_up < MAX_CATCH_UP_TICKS {
                let actions = e.replica.step(Event::Tick);
                self.handle(&mut e, actions);
                next_tick += tick;
                caught_up += 1;
            }
            next_tick = next_tick.max(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_round_up() {
        assert_eq!(ticks(1), 1);
        assert_eq!(ticks(TICK_MS), 1);
        assert_eq!(ticks(TICK_MS + 1), 2);
        assert_eq!(ticks(1_000), (1_000 / TICK_MS) as usize);
    }
}
