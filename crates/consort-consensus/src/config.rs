//! Configuration of one replica: its tunables ([`ReplicaConfig`]) and its signing identity ([`NodeIdentity`]).

use crate::limits::{DEFAULT_MAX_APPEND_BYTES, DEFAULT_MAX_INFLIGHT_APPENDS};
use crate::rekey::SecretOpener;
use crate::vocab::RaftId;
use consort_crypto::SigningKey;
use std::sync::Arc;

/// This node's signing identity: signature transactions carry its certificate and node id; its secret opener
/// takes the new ledger secrets that rekeys encrypt to it.
#[derive(Clone)]
pub struct NodeIdentity {
    /// Key the node signs signature transactions with.
    pub key: SigningKey,
    /// The node's certificate (PEM), recorded with each of its signatures.
    pub cert_pem: String,
    /// CCF node id (hex SHA-256 of the public key DER).
    pub node_id: String,
    /// Opens this node's copy of a rekey's new secret; `None` (tests, tools) does not follow rekeys.
    pub secret_opener: Option<Arc<dyn SecretOpener>>,
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("node_id", &self.node_id)
            .field("follows_rekeys", &self.secret_opener.is_some())
            .finish_non_exhaustive()
    }
}

/// Tunables of one replica. Time is in ticks: the node decides how long a tick is.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// Raft id of this replica (non-zero).
    pub id: RaftId,
    /// Ticks without a heartbeat before a backup starts an election (the timeout is drawn from [n, 2n)).
    pub election_ticks: usize,
    /// Ticks between the primary's heartbeats.
    pub heartbeat_ticks: usize,
    /// The primary signs after this many transactions...
    pub signature_interval_tx: u64,
    /// ...or this many ticks after the first unsigned one, whichever comes first.
    pub signature_interval_ticks: u64,
    /// Upper bound on the bytes of entries in one append message (raft-rs `max_size_per_msg`).
    pub max_append_bytes: u64,
    /// Append messages in flight to one peer (raft-rs `max_inflight_msgs`).
    pub max_inflight_appends: usize,
    /// Ledger chunks are closed at the first signature after they reach this size.
    pub chunk_threshold_bytes: u64,
    /// Seed of the generator that draws election timeouts in [election_ticks, 2 * election_ticks) (randomness is
    /// injected: pass a random seed in production, a fixed one in simulation).
    pub random_seed: u64,
    /// Whether a replica that becomes primary signs at once (so that the commit point moves into its view
    /// quickly). A genesis node turns this off until its genesis transaction is in the log: auditors need the
    /// signing node's certificate recorded before the first signature.
    pub sign_on_election: bool,
    /// The primary snapshots the state at the first signature transaction this many transactions after the last
    /// snapshot (0: never). The primary builds it and hands it out once its evidence commits.
    pub snapshot_interval_tx: u64,
    /// Whether backups build the primary's periodic snapshots too (each checks its own against the evidence and
    /// hands it out once that commits). Off by default, as in CCF: a build costs every replica a snapshot's worth
    /// of CPU at once, on machines the replicas may share, and a backup restarts from its ledger quickly.
    pub snapshots_on_backups: bool,
}

impl ReplicaConfig {
    /// Defaults for replica `id`: Raft's usual timing in ticks, a signature every 100 transactions or 5 ticks, 5 MiB chunks, no periodic snapshots.
    pub fn new(id: RaftId) -> Self {
        ReplicaConfig {
            id,
            election_ticks: 10,
            heartbeat_ticks: 2,
            signature_interval_tx: 100,
            signature_interval_ticks: 5,
            max_append_bytes: DEFAULT_MAX_APPEND_BYTES,
            max_inflight_appends: DEFAULT_MAX_INFLIGHT_APPENDS,
            chunk_threshold_bytes: 5 * 1024 * 1024,
            random_seed: id.get(),
            sign_on_election: true,
            snapshot_interval_tx: 0,
            snapshots_on_backups: false,
        }
    }
}
