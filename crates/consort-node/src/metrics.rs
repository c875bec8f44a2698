//! Prometheus metrics served at `/node/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub status: u16,
}

/// Refusals on the node-to-node channels (shared handles: the channels count into the node's registry).
#[derive(Clone, Debug, Default)]
pub struct PeerCounters {
    /// Handshakes (either way) with a node that holds a service-endorsed certificate but is not admitted.
    pub refused_handshakes: Counter,
    /// Connections closed because their node left the admitted set (retired or removed).
    pub evicted_peers: Counter,
}

/// The node's metrics; cheap to update from any thread.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub transactions: Counter,
    pub signatures: Counter,
    pub occ_conflicts: Counter,
    pub committed_seqno: Gauge,
    pub open_connections: Gauge,
    pub rejected_connections: Counter,
    pub rejected_requests: Counter,
    /// Inputs the replica refused to step (Raft messages from a forged sender or a non-member, or whose fields
    /// would make raft-rs panic; see `consort_consensus::guard`).
    pub dropped_inputs: Counter,
    pub snapshots: Counter,
    pub peers: PeerCounters,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("consort");
        let m = Metrics {
            requests: Family::default(),
            transactions: Counter::default(),
            signatures: Counter::default(),
            occ_conflicts: Counter::default(),
            committed_seqno: Gauge::default(),
            open_connections: Gauge::default(),
            rejected_connections: Counter::default(),
            rejected_requests: Counter::default(),
            dropped_inputs: Counter::default(),
            snapshots: Counter::default(),
            peers: PeerCounters::default(),
            registry: Registry::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests answered, by method and status",
            m.requests.clone(),
        );
        registry.register(
            "transactions",
            "Write transactions committed to the store",
            m.transactions.clone(),
        );
        registry.register("signatures", "Signature transactions emitted", m.signatures.clone());
        registry.register(
            "occ_conflicts",
            "Transactions re-executed after a conflict",
            m.occ_conflicts.clone(),
        );
        registry.register(
            "committed_seqno",
            "Seqno of the commit point",
            m.committed_seqno.clone(),
        );
        registry.register(
            "open_connections",
            "Client connections open now",
            m.open_connections.clone(),
        );
        registry.register(
            "rejected_connections",
            "Connections closed at accept because max_open_connections was reached",
            m.rejected_connections.clone(),
        );
        registry.register(
            "snapshots",
            "Periodic snapshots committed (and written to the snapshots directory)",
            m.snapshots.clone(),
        );
        registry.register(
            "rejected_requests",
            "Requests refused for exceeding a limit or being malformed",
            m.rejected_requests.clone(),
        );
        registry.register(
            "dropped_inputs",
            "Raft messages and other inputs the replica refused to step",
            m.dropped_inputs.clone(),
        );
        registry.register(
            "node_channel_refused_handshakes",
            "Node-to-node handshakes refused because the peer is not a current member",
            m.peers.refused_handshakes.clone(),
        );
        registry.register(
            "node_channel_evicted_peers",
            "Node-to-node connections closed because the peer stopped being a member",
            m.peers.evicted_peers.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
