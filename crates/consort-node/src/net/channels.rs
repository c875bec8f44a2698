//! Node-to-node channels: mutually authenticated TLS (both ends present node certificates endorsed by the service
//! certificate), length-prefixed frames with a size limit, bounded per-peer queues with write batching, and
//! reconnection with a capped, jittered exponential back-off that only a connection that stayed up resets (see
//! `outgoing`: a peer that refuses this node after the handshake must not make it reconnect in a tight loop).
//!
//! Admission: an endorsed certificate is not enough, because a Retired node keeps its certificate (and its validity
//! outlives the retirement). The channels keep the set of node ids admitted now ([`Channels::set_admitted`], which
//! the node's reconcile loop derives from the nodes table and the Raft membership). A handshake from a node outside
//! the set fails in the certificate verifier, before any frame is read; an outgoing connection completes only to a
//! server inside the set; a peer that leaves the set loses its connections at once, both ways.
//!
//! Wire frame: `u32 LE length ‖ u8 kind ‖ payload`, the length counting kind and payload. The kind says which
//! layer the payload is for (Raft messages, forwarded requests and their responses); payloads are opaque here. A
//! frame that cannot be delivered (queue full, connection lost, or queued while the channel was down and waiting
//! to reconnect) is dropped: Raft retransmits and forwarded requests time out, so the channel never blocks the
//! caller.

mod admission;
mod outgoing;

use crate::engine::NodeId;
use crate::identity::cert_node_id;
use crate::metrics::PeerCounters;
use admission::{Admission, AdmittingClientVerifier, AdmittingServerVerifier};
use bytes::Bytes;
use consort_crypto::{ParsedCert, SigningKey};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

pub use outgoing::CONNECTION_STABLE_AFTER;
use tokio::sync::mpsc;

/// Largest frame accepted or sent; a peer announcing more is disconnected.
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;
/// Frames queued per peer before new ones are dropped.
pub const OUTGOING_QUEUE_FRAMES: usize = 8192;
/// Frames received from all peers and not yet consumed before readers wait (back-pressure).
pub const INCOMING_QUEUE_FRAMES: usize = 8192;
/// Most frames written before one flush (batching).
pub const MAX_FRAMES_PER_FLUSH: usize = 256;
/// The first reconnection waits at most this long (and at least half of it).
pub const RECONNECT_MIN: Duration = Duration::from_millis(20);
/// The cap of the reconnection back-off: a peer that keeps failing or refusing is retried about once per this
/// period (between half of it and all of it), and a refusal is logged at most once per this period.
pub const RECONNECT_MAX: Duration = Duration::from_secs(2);
/// Connecting (TCP and TLS) must finish within this time.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// An encoded Raft message.
    Raft,
    /// A request a backup forwards to the primary.
    ForwardedRequest,
    /// The primary's answer to a forwarded request.
    ForwardedResponse,
}

impl FrameKind {
    fn byte(self) -> u8 {
        match self {
            FrameKind::Raft => 0,
            FrameKind::ForwardedRequest => 1,
            FrameKind::ForwardedResponse => 2,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(FrameKind::Raft),
            1 => Some(FrameKind::ForwardedRequest),
            2 => Some(FrameKind::ForwardedResponse),
            _ => None,
        }
    }
}

/// A received frame and the node id (hex SHA-256 of its public key) of the sender, taken from its certificate.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub from: NodeId,
    pub kind: FrameKind,
    pub frame: Bytes,
}

/// Why the channels could not be set up (fatal for the node: it cannot reach its peers).
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// This node's certificate cannot be parsed.
    #[error("node channels: this node's certificate: {0}")]
    NodeCertificate(#[source] consort_crypto::CryptoError),
    /// This node's certificate does not name a node id.
    #[error("node channels: this node's certificate: {0}")]
    NodeId(#[source] crate::identity::NotANodeId),
    /// The service certificate (PEM) cannot be parsed.
    #[error("node channels: the service certificate: {0}")]
    ServiceCertificate(#[source] consort_crypto::CryptoError),
    /// The service certificate cannot serve as the root that verifies peers.
    #[error("node channels: the service certificate cannot verify peers: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// rustls refused the configuration (a certificate or key it cannot use).
    #[error("node channels: TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

struct Peer {
    address: String,
    queue: mpsc::Sender<(FrameKind, Bytes)>,
}

/// The node's channels to and from its peers.
pub struct Channels {
    node_id: NodeId,
    client_tls: Arc<rustls::ClientConfig>,
    server_tls: Arc<rustls::ServerConfig>,
    peers: Mutex<HashMap<NodeId, Peer>>,
    incoming: mpsc::Sender<Incoming>,
    admission: Arc<Admission>,
    /// The runtime the connection tasks run on (the one current when the channels were made).
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channels")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Channels {
    /// Channels for the node holding `key` and `cert_der` in the service whose certificate is `service_cert_pem`.
    /// Returns the channels and the stream of frames received from peers. Must be called within a tokio runtime:
    /// the per-peer connection tasks run on it (a node gives them a runtime of their own, see [`crate::run`]).
    pub fn new(
        key: &SigningKey,
        cert_der: &[u8],
        service_cert_pem: &str,
    ) -> Result<(Arc<Self>, mpsc::Receiver<Incoming>), ChannelError> {
        let cert = ParsedCert::from_der(cert_der).map_err(ChannelError::NodeCertificate)?;
        let node_id = cert_node_id(&cert).map_err(ChannelError::NodeId)?;
        let mut roots = rustls::RootCertStore::empty();
        for c in ParsedCert::all_from_pem(service_cert_pem).map_err(ChannelError::ServiceCertificate)? {
            roots.add(CertificateDer::from(c.der))?;
        }
        let roots = Arc::new(roots);
        let admission = Arc::new(Admission::new());
        let chain = vec![CertificateDer::from(cert_der.to_vec())];
        let private = || PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.to_pkcs8_der()));
        let server_chain =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots.clone(), provider()).build()?;
        let client_tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AdmittingServerVerifier {
                chain: server_chain,
                admission: admission.clone(),
            }))
            .with_client_auth_cert(chain.clone(), private())?;
        let client_chain = rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider()).build()?;
        let server_tls = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(Arc::new(AdmittingClientVerifier {
                chain: client_chain,
                admission: admission.clone(),
            }))
            .with_single_cert(chain, private())?;
        let (tx, rx) = mpsc::channel(INCOMING_QUEUE_FRAMES);
        let channels = Channels {
            node_id,
            client_tls: Arc::new(client_tls),
            server_tls: Arc::new(server_tls),
            peers: Mutex::new(HashMap::new()),
            incoming: tx,
            admission,
            runtime: tokio::runtime::Handle::current(),
        };
        Ok((Arc::new(channels), rx))
    }

    /// This node's id.
    pub fn node_id(&self) -> &NodeId {
        &self.node_id
    }

    /// Counts refused handshakes and evicted peers in the node's metrics from now on (the first call wins).
    pub fn attach_metrics(&self, counters: PeerCounters) {
        let _ = self.admission.counters.set(counters);
    }

    /// Replaces the set of node ids admitted to the channels. Peers outside it are forgotten and their connections
    /// closed (outgoing ones when their queue closes, incoming ones at once).
    pub fn set_admitted(&self, admitted: HashSet<NodeId>) {
        self.peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|id, _| admitted.contains(id));
        self.admission.set.send_if_modified(|set| {
            if **set == admitted {
                return false;
            }
            *set = Arc::new(admitted);
            true
        });
    }

    /// Whether `node_id` is admitted to the channels now.
    pub fn is_admitted(&self, node_id: &NodeId) -> bool {
        self.admission.admits(node_id)
    }

    /// Registers (or re-addresses) a peer; a task keeps a connection to it and writes its queued frames. A node
    /// outside the admitted set is not registered.
    pub fn set_peer(self: &Arc<Self>, node_id: &NodeId, address: &str) {
        if !self.admission.admits(node_id) {
            tracing::debug!(%node_id, "not connecting to a node that is not admitted");
            return;
        }
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if peers.get(node_id).is_some_and(|p| p.address == address) {
            return;
        }
        let (tx, rx) = mpsc::channel(OUTGOING_QUEUE_FRAMES);
        peers.insert(
            node_id.clone(),
            Peer {
                address: address.to_string(),
                queue: tx,
            },
        );
        let link = outgoing::Link {
            peer: node_id.clone(),
            address: address.to_string(),
            tls: self.client_tls.clone(),
            admission: self.admission.clone(),
        };
        self.runtime.spawn(outgoing::send_loop(link, rx));
    }

    /// Forgets a peer; its connection task ends.
    pub fn remove_peer(&self, node_id: &NodeId) {
        self.peers.lock().unwrap_or_else(|e| e.into_inner()).remove(node_id);
    }

    /// Queues a frame for `to`. Returns false (frame dropped) if the peer is unknown, its queue is full, or the
    /// frame exceeds [`MAX_FRAME_BYTES`].
    pub fn send(&self, to: &NodeId, kind: FrameKind, frame: Bytes) -> bool {
        if frame.len() + 1 > MAX_FRAME_BYTES {
            return false;
        }
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers.get(to).is_some_and(|p| p.queue.try_send((kind, frame)).is_ok())
    }

    /// Accepts peer connections on `listener` until `shutdown` fires.
    pub async fn listen(self: Arc<Self>, listener: TcpListener, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.server_tls.clone());
        loop {
            let tcp = tokio::select! {
                r = listener.accept() => match r { Ok((t, _)) => t, Err(_) => continue },
                _ = shutdown.changed() => return,
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let incoming = self.incoming.clone();
            let admission = self.admission.clone();
            tokio::spawn(async move {
                // The verifier refused nodes outside the admitted set during the handshake.
                let Ok(Ok(mut tls)) = tokio::time::timeout(CONNECT_TIMEOUT, acceptor.accept(tcp)).await else {
                    return;
                };
                let Some(from) = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| ParsedCert::from_der(c).ok())
                    .and_then(|c| cert_node_id(&c).ok())
                else {
                    return;
                };
                tokio::select! {
                    () = read_frames(&mut tls, &from, &incoming) => {}
                    () = admission.evicted(&from) => {
                        admission.count(|c| &c.evicted_peers);
                        tracing::warn!(%from, "peer no longer admitted (retired or removed); disconnecting");
                    }
                }
            });
        }
    }
}

/// Reads frames from an authenticated peer and passes them on, until the connection ends or the peer breaks the
/// framing. Never cancelled in the middle of a frame except to close the connection.
async fn read_frames(
    tls: &mut tokio_rustls::server::TlsStream<TcpStream>,
    from: &NodeId,
    incoming: &mpsc::Sender<Incoming>,
) {
    loop {
        let mut len = [0u8; 4];
        if tls.read_exact(&mut len).await.is_err() {
            return;
        }
        let len = u32::from_le_bytes(len) as usize;
        if len == 0 || len > MAX_FRAME_BYTES {
            tracing::warn!(%from, len, "peer sent a frame of an invalid size; disconnecting");
            return;
        }
        let mut kind = [0u8; 1];
        let mut frame = vec![0u8; len - 1];
        if tls.read_exact(&mut kind).await.is_err() || tls.read_exact(&mut frame).await.is_err() {
            return;
        }
        let Some(kind) = FrameKind::from_byte(kind[0]) else {
            tracing::warn!(%from, kind = kind[0], "frame of an unknown kind dropped");
            continue;
        };
        let frame = Incoming {
            from: from.clone(),
            kind,
            frame: Bytes::from(frame),
        };
        if incoming.send(frame).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use consort_crypto::x509::{self, CertParams};
    use consort_crypto::Curve;

    fn service() -> (SigningKey, String, Vec<u8>) {
        let key = SigningKey::generate(Curve::P384);
        let mut p = CertParams::new("CCF Service");
        p.is_ca = true;
        let c = x509::self_signed(&key, &p).unwrap();
        (key, c.pem, c.der)
    }

    fn node(service_key: &SigningKey, service_der: &[u8]) -> (SigningKey, Vec<u8>) {
        let key = SigningKey::generate(Curve::P384);
        let mut p = CertParams::new("CCF Node");
        p.subject_alt_names = vec!["127.0.0.1".into()];
        let c = x509::issue(&key.verifying_key(), &p, service_key, service_der).unwrap();
        (key, c.der)
    }

    async fn listening(ch: &Arc<Channels>) -> (String, tokio::sync::watch::Sender<bool>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(ch.clone().listen(l, rx));
        (addr, tx)
    }

    fn admit_each_other(a: &Channels, b: &Channels) {
        a.set_admitted(HashSet::from([b.node_id().clone()]));
        b.set_admitted(HashSet::from([a.node_id().clone()]));
    }

    #[tokio::test]
    async fn a_node_outside_the_admitted_set_is_refused_and_a_removed_peer_is_disconnected() {
        let (skey, spem, sder) = service();
        let (ka, ca) = node(&skey, &sder);
        let (kb, cb) = node(&skey, &sder);
        let (a, mut a_in) = Channels::new(&ka, &ca, &spem).unwrap();
        let (b, _b_in) = Channels::new(&kb, &cb, &spem).unwrap();
        let counters = PeerCounters::default();
        a.attach_metrics(counters.clone());
        let (addr_a, _stop) = listening(&a).await;

        // b holds a certificate endorsed by the service, but a has not admitted it: nothing is delivered.
        b.set_admitted(HashSet::from([a.node_id().clone()]));
        b.set_peer(a.node_id(), &addr_a);
        for _ in 0..5 {
            b.send(a.node_id(), FrameKind::Raft, Bytes::from_static(b"not a member"));
            let r = tokio::time::timeout(Duration::from_millis(200), a_in.recv()).await;
            assert!(r.is_err(), "a frame from a node outside the set was delivered: {r:?}");
        }
        assert!(counters.refused_handshakes.get() > 0);

        // Once admitted, b's frames flow.
        a.set_admitted(HashSet::from([b.node_id().clone()]));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            b.send(a.node_id(), FrameKind::Raft, Bytes::from_static(b"member"));
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(100), a_in.recv()).await {
                assert_eq!(m.frame.as_ref(), b"member");
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "an admitted peer could not deliver"
            );
        }

        // b leaves the set (retired): its open connection is closed and later frames go nowhere.
        a.set_admitted(HashSet::new());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(counters.evicted_peers.get(), 1);
        while a_in.try_recv().is_ok() {}
        for _ in 0..5 {
            b.send(a.node_id(), FrameKind::Raft, Bytes::from_static(b"retired"));
            let r = tokio::time::timeout(Duration::from_millis(200), a_in.recv()).await;
            assert!(r.is_err(), "a frame from a removed peer was delivered: {r:?}");
        }

        // And a node never connects out to a peer outside its set.
        assert!(!a.is_admitted(b.node_id()));
        a.set_peer(b.node_id(), &addr_a);
        assert!(!a.send(b.node_id(), FrameKind::Raft, Bytes::from_static(b"x")));

        // Nor do frames for an admitted peer go to another endorsed node that answers at its address: the server's
        // certificate must name an admitted node. (c admits b, so only b's check can stop them.)
        let (kc, cc) = node(&skey, &sder);
        let (c, mut c_in) = Channels::new(&kc, &cc, &spem).unwrap();
        c.set_admitted(HashSet::from([b.node_id().clone()]));
        let (addr_c, _stop_c) = listening(&c).await;
        b.set_admitted(HashSet::from([a.node_id().clone()]));
        b.set_peer(a.node_id(), &addr_c);
        for _ in 0..5 {
            b.send(a.node_id(), FrameKind::Raft, Bytes::from_static(b"misdirected"));
            let r = tokio::time::timeout(Duration::from_millis(200), c_in.recv()).await;
            assert!(r.is_err(), "a frame went to a node outside the set: {r:?}");
        }
    }

    #[tokio::test]
    async fn a_refused_peer_reconnects_with_a_growing_back_off_not_in_a_loop() {
        let (skey, spem, sder) = service();
        let (ka, ca) = node(&skey, &sder);
        let (kb, cb) = node(&skey, &sder);
        let (a, _a_in) = Channels::new(&ka, &ca, &spem).unwrap();
        let (b, _b_in) = Channels::new(&kb, &cb, &spem).unwrap();
        let (a_counters, b_counters) = (PeerCounters::default(), PeerCounters::default());
        a.attach_metrics(a_counters.clone());
        b.attach_metrics(b_counters.clone());
        let (addr_a, _stop) = listening(&a).await;
        // a does not admit b (it retired b); b still counts a as its peer and always has a frame for it. b's TLS 1.3
        // handshakes complete before a refuses b's certificate.
        b.set_admitted(HashSet::from([a.node_id().clone()]));
        b.set_peer(a.node_id(), &addr_a);
        let window = Duration::from_secs(3);
        let started = tokio::time::Instant::now();
        while started.elapsed() < window {
            b.send(a.node_id(), FrameKind::Raft, Bytes::from_static(b"vote for me"));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let attempts = b_counters.connect_attempts.get();
        let refused = a_counters.refused_handshakes.get();
        // Each wait is at least half its period, and the periods double from 20 ms up to 2 s: at most 10 attempts
        // fit in 3 s. Resetting the back-off on every completed handshake made one attempt per frame or two.
        assert!(attempts <= 12, "{attempts} connection attempts in {window:?}");
        assert!(attempts >= 2, "the refused peer did not retry");
        assert!(
            refused >= 2 && refused <= attempts,
            "{refused} refusals for {attempts} attempts"
        );
    }

    #[tokio::test]
    async fn frames_flow_between_endorsed_nodes_in_order_and_strangers_are_refused() {
        let (skey, spem, sder) = service();
        let (ka, ca) = node(&skey, &sder);
        let (kb, cb) = node(&skey, &sder);
        let (a, mut a_in) = Channels::new(&ka, &ca, &spem).unwrap();
        let (b, _b_in) = Channels::new(&kb, &cb, &spem).unwrap();
        admit_each_other(&a, &b);
        let (addr_a, _stop) = listening(&a).await;
        b.set_peer(a.node_id(), &addr_a);
        for i in 0..500u32 {
            let kind = if i % 2 == 0 {
                FrameKind::Raft
            } else {
                FrameKind::ForwardedRequest
            };
            assert!(b.send(a.node_id(), kind, Bytes::from(i.to_le_bytes().to_vec())));
        }
        for i in 0..500u32 {
            let got = tokio::time::timeout(Duration::from_secs(10), a_in.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(&got.from, b.node_id());
            assert_eq!(got.frame.as_ref(), i.to_le_bytes());
            assert_eq!(got.kind == FrameKind::Raft, i % 2 == 0);
        }
        let unknown_peer: NodeId = "ee".repeat(32).parse().unwrap();
        assert!(!b.send(&unknown_peer, FrameKind::Raft, Bytes::from_static(b"x")));

        // A node endorsed by another service cannot deliver frames.
        let (okey, opem, oder) = service();
        let (kc, cc) = node(&okey, &oder);
        let (c, _c_in) = Channels::new(&kc, &cc, &opem).unwrap();
        c.set_admitted(HashSet::from([a.node_id().clone()]));
        c.set_peer(a.node_id(), &addr_a);
        assert!(c.send(a.node_id(), FrameKind::Raft, Bytes::from_static(b"intruder")));
        let r = tokio::time::timeout(Duration::from_millis(500), a_in.recv()).await;
        assert!(r.is_err(), "a frame from a stranger was delivered: {r:?}");
    }

    #[tokio::test]
    async fn reconnects_after_the_listener_restarts_and_drops_oversized_frames() {
        let (skey, spem, sder) = service();
        let (ka, ca) = node(&skey, &sder);
        let (kb, cb) = node(&skey, &sder);
        let (a, mut a_in) = Channels::new(&ka, &ca, &spem).unwrap();
        let (b, _b_in) = Channels::new(&kb, &cb, &spem).unwrap();
        admit_each_other(&a, &b);
        // b starts sending before a listens: the sender retries with back-off.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        b.set_peer(a.node_id(), &addr);
        assert!(!b.send(a.node_id(), FrameKind::Raft, Bytes::from(vec![0u8; MAX_FRAME_BYTES])));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let listener = TcpListener::bind(&addr).await.unwrap();
        let (_tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(a.clone().listen(listener, rx));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            b.send(a.node_id(), FrameKind::ForwardedResponse, Bytes::from_static(b"hello"));
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(100), a_in.recv()).await {
                assert_eq!(m.frame.as_ref(), b"hello");
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "no reconnection");
        }
    }
}
