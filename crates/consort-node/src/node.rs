//! A running node as the endpoints see it: its engine, the application it serves, and the forwarding client that
//! sends writes it cannot execute to the primary. Each part owns one thing; the node only holds them together.

use crate::apps::App;
use crate::engine::{Engine, GenesisAttestation, NodeId, RaftTransport};
use crate::historical::HistoricalStates;
use crate::net::channels::{Channels, FrameKind};
use crate::net::forwarding::Forwarder;
use bytes::Bytes;
use consort_attest::{AttestError, Claims, Evidence, Platform, PlatformKind};
use std::sync::{Arc, OnceLock};

/// One node: engine, application, forwarding and (once attached) the node-to-node channels.
pub struct Node {
    engine: Arc<Engine>,
    app: Box<dyn App>,
    forwarder: Arc<Forwarder>,
    channels: OnceLock<Arc<Channels>>,
    attestation: OnceLock<SelfAttestation>,
    /// Receipts built at once (each may read and decode an old ledger chunk, off the engine lock).
    receipts: Arc<tokio::sync::Semaphore>,
    /// App requests that may compute for long (see [`App::runs_long`]) running at once.
    long_requests: Arc<tokio::sync::Semaphore>,
    /// Past states for historical queries, fetched from this node's ledger and cached.
    historical: Arc<HistoricalStates>,
}

/// Receipts a node builds at the same time; more wait (up to [`RECEIPT_QUEUE_WAIT`]), so that anonymous callers
/// asking for many old receipts share at most this many threads' worth of disk reads and decoding.
pub const MAX_CONCURRENT_RECEIPTS: usize = 2;
/// App requests that may compute for long ([`App::runs_long`]: `eth_call`, `eth_estimateGas`, log and block
/// scans) a node runs at once, each on a thread of its own rather than on the async workers; more wait their turn.
pub const MAX_CONCURRENT_LONG_REQUESTS: usize = 2;
/// How long a long app request waits for a turn before it is answered 503.
pub const LONG_REQUEST_QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// How long a receipt request waits for a turn before it is answered 503.
pub const RECEIPT_QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// This node's own attestation: what it shows at `/node/quotes/self` and sends when it joins.
#[derive(Debug, Clone)]
pub struct SelfAttestation {
    /// The evidence binding this node's key to its measurement.
    pub evidence: Evidence,
    /// What verifying that evidence gives.
    pub claims: Claims,
}

impl SelfAttestation {
    /// Produces and checks this node's evidence for its key on `platform`; logs the platform's warning, if any.
    pub fn produce(platform: &dyn Platform, public_key_der: &[u8]) -> Result<Self, AttestError> {
        let evidence = platform.evidence_for(public_key_der)?;
        let claims = consort_attest::verify(&evidence, public_key_der)?;
        if let Some(warning) = platform.security_warning() {
            tracing::warn!(measurement = %claims.measurement, "{warning}");
        }
        Ok(SelfAttestation { evidence, claims })
    }

    /// The genesis record of it: the quote for the nodes table, and the join policy entries that admit nodes
    /// like this one (as CCF 6 records at genesis: the code id; or the SNP measurement, host data, and the report's
    /// TCB as the minimum for its product).
    pub fn genesis(&self) -> GenesisAttestation {
        const ALLOWED: &[u8] = b"\"AllowedToJoin\"";
        let measurement = self.claims.measurement.to_lowercase();
        let join_policy = match (&self.claims.kind, &self.claims.snp) {
            (PlatformKind::Snp, Some(snp)) => {
                let no_security_policy = serde_json::Value::from("").to_string().into_bytes();
                let tcb = serde_json::to_vec(&snp.reported_tcb).unwrap_or_default();
                vec![
                    (
                        consort_gov::tables::NODES_SNP_MEASUREMENTS,
                        measurement,
                        ALLOWED.to_vec(),
                    ),
                    (
                        consort_gov::tables::NODES_SNP_HOST_DATA,
                        self.claims.host_data.to_lowercase(),
                        no_security_policy,
                    ),
                    (
                        consort_gov::tables::NODES_SNP_TCB_VERSIONS,
                        snp.product.cpuid().to_string(),
                        tcb,
                    ),
                ]
            }
            (PlatformKind::Snp, None) => vec![(
                consort_gov::tables::NODES_SNP_MEASUREMENTS,
                measurement,
                ALLOWED.to_vec(),
            )],
            (PlatformKind::Virtual, _) => vec![(consort_gov::tables::NODES_CODE_IDS, measurement, ALLOWED.to_vec())],
        };
        GenesisAttestation {
            quote_info: self.evidence.to_json_value(),
            join_policy,
        }
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

/// The channels carry the engine's Raft messages.
impl RaftTransport for Channels {
    fn send_raft(&self, node_id: &NodeId, message: Bytes) {
        self.send(node_id, FrameKind::Raft, message);
    }
}

impl Node {
    /// A node serving `app` on `engine`. Requests forwarded to a primary that lost its role are answered as soon as
    /// the engine learns of the new primary.
    pub fn new(engine: Arc<Engine>, app: Box<dyn App>) -> Arc<Self> {
        let forwarder = Arc::new(Forwarder::default());
        let f = forwarder.clone();
        engine.on_primary_change(Box::new(move |primary| f.abandon_all_but(Some(primary))));
        let historical = HistoricalStates::new(engine.clone());
        app.attach_history(historical.clone());
        Arc::new(Node {
            engine,
            app,
            forwarder,
            channels: OnceLock::new(),
            attestation: OnceLock::new(),
            receipts: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_RECEIPTS)),
            long_requests: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_LONG_REQUESTS)),
            historical,
        })
    }

    /// A turn to build a receipt (see [`MAX_CONCURRENT_RECEIPTS`]), or `None` if none came within
    /// [`RECEIPT_QUEUE_WAIT`].
    pub async fn receipt_turn(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        tokio::time::timeout(RECEIPT_QUEUE_WAIT, self.receipts.clone().acquire_owned())
            .await
            .ok()?
            .ok()
    }

    /// A turn to run a long app request (see [`MAX_CONCURRENT_LONG_REQUESTS`]), or `None` if none came within
    /// [`LONG_REQUEST_QUEUE_WAIT`].
    pub async fn long_request_turn(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        tokio::time::timeout(LONG_REQUEST_QUEUE_WAIT, self.long_requests.clone().acquire_owned())
            .await
            .ok()?
            .ok()
    }

    /// The transaction engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The historical state cache (see [`crate::historical`]).
    pub fn historical(&self) -> &Arc<HistoricalStates> {
        &self.historical
    }

    /// The application this node serves under `/app`.
    pub fn app(&self) -> &dyn App {
        self.app.as_ref()
    }

    /// Requests this node forwarded to the primary and waits on.
    pub fn forwarder(&self) -> &Forwarder {
        &self.forwarder
    }

    /// The node-to-node channels, once attached.
    pub fn channels(&self) -> Option<&Arc<Channels>> {
        self.channels.get()
    }

    /// This node's attestation, once attached.
    pub fn attestation(&self) -> Option<&SelfAttestation> {
        self.attestation.get()
    }

    /// Attaches this node's attestation (the first one stays).
    pub fn attach_attestation(&self, attestation: SelfAttestation) {
        let _ = self.attestation.set(attestation);
    }

    /// Attaches the node-to-node channels: Raft messages and forwarded requests go through them from now on.
    pub fn attach_channels(&self, channels: Arc<Channels>) {
        self.engine.set_transport(channels.clone());
        let _ = self.channels.set(channels);
    }
}

/// The JavaScript app reaches the store and consensus through the engine.
impl crate::apps::js::JsHost for Engine {
    fn store(&self) -> Arc<consort_kv::Store> {
        Engine::store(self)
    }
    fn last_committed(&self) -> (u64, u64) {
        let t = self.committed_txid();
        (t.view.get(), t.seqno.get())
    }
    fn status(&self, view: u64, seqno: u64) -> String {
        let id = crate::engine::TxId::new(consort_consensus::View(view), consort_consensus::Seqno(seqno));
        format!("{:?}", self.tx_status(id))
    }
    fn current_view(&self) -> u64 {
        Engine::current_view(self).get()
    }
}
