//! Prometheus metrics served at `/node/metrics`.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
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

/// Refusals and connection attempts on the node-to-node channels (shared handles: the channels count into the
/// node's registry).
#[derive(Clone, Debug, Default)]
pub struct PeerCounters {
    /// Handshakes (either way) with a node that holds a service-endorsed certificate but is not admitted.
    pub refused_handshakes: Counter,
    /// Connections closed because their node left the admitted set (retired or removed).
    pub evicted_peers: Counter,
    /// Outgoing connections this node started to its peers (TCP and TLS), successful or not: with the back-off in
    /// `net::channels`, a peer that keeps refusing adds at most one every `RECONNECT_MAX`.
    pub connect_attempts: Counter,
}

/// Why the HTTP server closed a client connection it had accepted.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum EvictionReason {
    /// Closed for a newcomer while every slot was taken (the slot policy in `net::http`).
    Displaced,
    /// No request in flight for `idle_timeout_ms`.
    IdleTimeout,
    /// The TLS handshake did not finish within `tls_handshake_timeout_ms`.
    TlsHandshakeTimeout,
    /// An HTTP/1.1 request head did not arrive within `header_read_timeout_ms`.
    HeaderReadTimeout,
    /// A request body did not arrive within `body_read_timeout_ms` (answered 408, then closed).
    BodyReadTimeout,
    /// An HTTP/2 client did not answer a keep-alive ping within `h2_keep_alive_timeout_ms`.
    H2KeepAliveTimeout,
    /// Closed because the request bodies being read had reached the part of `max_buffered_body_bytes` kept for
    /// small bodies (`small_body_reserve_bytes`), and this connection's body read had made the least recent
    /// progress.
    BodyBudget,
    /// Closed for a newcomer while every slot was taken and none had been idle for `eviction_grace_ms`, or for an
    /// anonymous newcomer beyond `max_anonymous_connections`: the anonymous connection accepted first.
    OldestAnonymous,
    /// An anonymous connection closed right after its handshake: `max_anonymous_connections` were open, none of
    /// them old enough to make room.
    AnonymousCap,
}

impl EvictionReason {
    /// Every reason, so that each appears (at 0) in `/node/metrics` from the start.
    pub const ALL: [EvictionReason; 9] = [
        EvictionReason::Displaced,
        EvictionReason::IdleTimeout,
        EvictionReason::TlsHandshakeTimeout,
        EvictionReason::HeaderReadTimeout,
        EvictionReason::BodyReadTimeout,
        EvictionReason::H2KeepAliveTimeout,
        EvictionReason::BodyBudget,
        EvictionReason::OldestAnonymous,
        EvictionReason::AnonymousCap,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            EvictionReason::Displaced => "displaced",
            EvictionReason::IdleTimeout => "idle_timeout",
            EvictionReason::TlsHandshakeTimeout => "tls_handshake_timeout",
            EvictionReason::HeaderReadTimeout => "header_read_timeout",
            EvictionReason::BodyReadTimeout => "body_read_timeout",
            EvictionReason::H2KeepAliveTimeout => "h2_keep_alive_timeout",
            EvictionReason::BodyBudget => "body_budget",
            EvictionReason::OldestAnonymous => "oldest_anonymous",
            EvictionReason::AnonymousCap => "anonymous_cap",
        }
    }
}

impl EncodeLabelValue for EvictionReason {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

/// Why the HTTP server closed a connection at accept, before any byte of it was read.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum RefusalReason {
    /// All `max_open_connections` slots were taken and none could be evicted (each was executing a request or
    /// within `eviction_grace_ms` of its last progress, and none was an anonymous connection older than that).
    SlotsBusy,
    /// Accepting failed (for instance the process ran out of file descriptors).
    AcceptFailed,
}

impl RefusalReason {
    /// Every reason, so that each appears (at 0) in `/node/metrics` from the start.
    pub const ALL: [RefusalReason; 2] = [RefusalReason::SlotsBusy, RefusalReason::AcceptFailed];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::SlotsBusy => "slots_busy",
            RefusalReason::AcceptFailed => "accept_failed",
        }
    }
}

impl EncodeLabelValue for RefusalReason {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

/// Why the HTTP server refused room for a request body (the request is answered 503 `ServiceUnavailable`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum BodyRefusalReason {
    /// The bodies being read on the request's connection already held `max_buffered_body_bytes_per_connection`.
    ConnectionShare,
    /// The server-wide `max_buffered_body_bytes` had no room for it: the budget was used up, or only its part kept
    /// for small bodies (`small_body_reserve_bytes`) was left and this body is larger than `small_body_max_bytes`.
    Budget,
}

impl BodyRefusalReason {
    /// Every reason, so that each appears (at 0) in `/node/metrics` from the start.
    pub const ALL: [BodyRefusalReason; 2] = [BodyRefusalReason::ConnectionShare, BodyRefusalReason::Budget];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            BodyRefusalReason::ConnectionShare => "connection_share",
            BodyRefusalReason::Budget => "budget",
        }
    }
}

impl EncodeLabelValue for BodyRefusalReason {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

/// Labels of the body refusal counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BodyRefusalLabels {
    pub reason: BodyRefusalReason,
}

/// Labels of the eviction counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EvictionLabels {
    pub reason: EvictionReason,
}

/// Labels of the refusal counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    pub reason: RefusalReason,
}

/// Connections the HTTP server closed or refused (shared handles: the server counts into the node's registry).
#[derive(Clone, Debug, Default)]
pub struct HttpCounters {
    evicted: Family<EvictionLabels, Counter>,
    refused: Family<RefusalLabels, Counter>,
    bodies_refused: Family<BodyRefusalLabels, Counter>,
    /// The older name of the `slots_busy` refusals, kept for dashboards that read it.
    rejected_connections: Counter,
}

impl HttpCounters {
    /// Counts a connection closed for `reason`.
    pub fn evicted(&self, reason: EvictionReason) {
        self.evicted.get_or_create(&EvictionLabels { reason }).inc();
    }

    /// Counts a connection refused at accept for `reason`.
    pub fn refused(&self, reason: RefusalReason) {
        self.refused.get_or_create(&RefusalLabels { reason }).inc();
        if reason == RefusalReason::SlotsBusy {
            self.rejected_connections.inc();
        }
    }

    /// Counts a request body refused room for `reason`.
    pub fn body_refused(&self, reason: BodyRefusalReason) {
        self.bodies_refused.get_or_create(&BodyRefusalLabels { reason }).inc();
    }

    /// How many request bodies were refused room for `reason` so far.
    pub fn body_refused_count(&self, reason: BodyRefusalReason) -> u64 {
        self.bodies_refused.get_or_create(&BodyRefusalLabels { reason }).get()
    }

    /// Creates the series of every reason, so that each appears (at 0) in `/node/metrics` before its first event.
    fn create_every_series(&self) {
        for reason in BodyRefusalReason::ALL {
            let _zero = self.body_refused_count(reason);
        }
        for reason in EvictionReason::ALL {
            let _zero = self.evicted_count(reason);
        }
        for reason in RefusalReason::ALL {
            let _zero = self.refused_count(reason);
        }
    }

    /// How many connections were closed for `reason` so far.
    pub fn evicted_count(&self, reason: EvictionReason) -> u64 {
        self.evicted.get_or_create(&EvictionLabels { reason }).get()
    }

    /// How many connections were refused for `reason` so far.
    pub fn refused_count(&self, reason: RefusalReason) -> u64 {
        self.refused.get_or_create(&RefusalLabels { reason }).get()
    }
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
    /// Connections the HTTP server evicted or refused, by reason.
    pub http: HttpCounters,
    pub rejected_requests: Counter,
    /// Inputs the replica refused to step (Raft messages from a forged sender or a non-member, or whose fields
    /// would make raft-rs panic; see `consort_consensus::guard`).
    pub dropped_inputs: Counter,
    pub snapshots: Counter,
    pub peers: PeerCounters,
    /// JWT issuers whose signing keys a refresh round fetched (and wrote, when they changed).
    pub jwt_key_refreshes: Counter,
    /// JWT issuers whose key refresh failed (nothing written; see the node's log for why).
    pub jwt_key_refresh_failures: Counter,
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
    /// The JWT key refresh counters (see `auth::refresh`).
    fn register_jwt(&self, registry: &mut Registry) {
        registry.register(
            "jwt_key_refreshes",
            "JWT issuers whose signing keys a refresh fetched",
            self.jwt_key_refreshes.clone(),
        );
        registry.register(
            "jwt_key_refresh_failures",
            "JWT issuers whose signing-key refresh failed (nothing written)",
            self.jwt_key_refresh_failures.clone(),
        );
    }

    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("consort");
        let m = Metrics {
            requests: Family::default(),
            transactions: Counter::default(),
            signatures: Counter::default(),
            occ_conflicts: Counter::default(),
            committed_seqno: Gauge::default(),
            open_connections: Gauge::default(),
            http: HttpCounters::default(),
            rejected_requests: Counter::default(),
            dropped_inputs: Counter::default(),
            snapshots: Counter::default(),
            peers: PeerCounters::default(),
            jwt_key_refreshes: Counter::default(),
            jwt_key_refresh_failures: Counter::default(),
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
            "Connections closed at accept because max_open_connections was reached \
             (http_connections_refused{reason=\"slots_busy\"} under its older name)",
            m.http.rejected_connections.clone(),
        );
        m.http.create_every_series();
        registry.register(
            "http_connections_evicted",
            "Client connections the HTTP server closed, by reason (displaced for a newcomer, the oldest anonymous \
             one, over the anonymous cap, for the body budget, or a timeout)",
            m.http.evicted.clone(),
        );
        registry.register(
            "http_connections_refused",
            "Client connections the HTTP server closed at accept, by reason",
            m.http.refused.clone(),
        );
        registry.register(
            "http_bodies_refused",
            "Request bodies refused room in the buffered-body budget (answered 503), by reason",
            m.http.bodies_refused.clone(),
        );
        m.register_jwt(&mut registry);
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
        registry.register(
            "node_channel_connect_attempts",
            "Outgoing node-to-node connections started (TCP and TLS), successful or not",
            m.peers.connect_attempts.clone(),
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
