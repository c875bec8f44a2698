//! Admission to the node-to-node channels: the set of node ids admitted now, and the TLS certificate verifiers
//! (either side of a handshake) that refuse a peer outside it after checking its service-endorsed chain.

use crate::engine::NodeId;
use crate::identity::cert_node_id;
use crate::metrics::PeerCounters;
use consort_crypto::ParsedCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Most nodes whose refused handshakes are throttled in the log separately; beyond it the record starts over. Only
/// holders of service-endorsed certificates get this far, so the bound is never reached in practice.
const MAX_THROTTLED_NODES: usize = 1024;

/// Lets a repeated event through to the log at most once per period, and counts the ones held back.
#[derive(Debug, Default)]
pub(super) struct Throttle {
    last: Option<Instant>,
    held_back: u64,
}

impl Throttle {
    /// `Some(n)` if the event is to be logged now, `n` being how many were held back since the last one logged;
    /// `None` if one was logged less than `every` ago.
    pub(super) fn allow(&mut self, every: Duration) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|last| now.duration_since(last) < every) {
            self.held_back += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held_back))
    }
}

/// The node ids admitted to the channels now, shared by the certificate verifiers (which read it during handshakes)
/// and the connection tasks (which watch it to drop a peer that leaves it).
#[derive(Debug)]
pub(super) struct Admission {
    pub(super) set: tokio::sync::watch::Sender<Arc<HashSet<NodeId>>>,
    /// Where refusals are counted, once the node attached its metrics.
    pub(super) counters: OnceLock<PeerCounters>,
    /// Refused handshakes are logged once per node per [`super::RECONNECT_MAX`] (the longest back-off period of a
    /// peer that retries), not once per attempt.
    refusal_logs: Mutex<HashMap<NodeId, Throttle>>,
}

impl Admission {
    pub(super) fn new() -> Self {
        Admission {
            set: tokio::sync::watch::Sender::new(Arc::new(HashSet::new())),
            counters: OnceLock::new(),
            refusal_logs: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn admits(&self, node_id: &NodeId) -> bool {
        self.set.borrow().contains(node_id)
    }

    pub(super) fn count(&self, which: fn(&PeerCounters) -> &prometheus_client::metrics::counter::Counter) {
        if let Some(c) = self.counters.get() {
            which(c).inc();
        }
    }

    /// Checks that the certificate (already verified to chain to the service) names an admitted node.
    pub(super) fn check(&self, end_entity: &CertificateDer<'_>, side: &'static str) -> Result<(), rustls::Error> {
        let node_id = ParsedCert::from_der(end_entity)
            .ok()
            .and_then(|c| cert_node_id(&c).ok())
            .ok_or(rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        if self.admits(&node_id) {
            return Ok(());
        }
        self.count(|c| &c.refused_handshakes);
        let mut logs = self.refusal_logs.lock().unwrap_or_else(|e| e.into_inner());
        if logs.len() >= MAX_THROTTLED_NODES && !logs.contains_key(&node_id) {
            logs.clear();
        }
        let not_logged = logs.entry(node_id.clone()).or_default().allow(super::RECONNECT_MAX);
        drop(logs);
        if let Some(not_logged) = not_logged {
            tracing::warn!(
                %node_id,
                side,
                not_logged,
                "node-to-node handshake refused: the node is not a current member"
            );
        }
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::ApplicationVerificationFailure,
        ))
    }

    /// Resolves once `node_id` is no longer admitted.
    pub(super) async fn evicted(&self, node_id: &NodeId) {
        let mut watch = self.set.subscribe();
        loop {
            if !watch.borrow_and_update().contains(node_id) {
                return;
            }
            if watch.changed().await.is_err() {
                return;
            }
        }
    }
}

/// The server's verifier of client (peer) certificates: the service chain (WebPKI), then admission.
#[derive(Debug)]
pub(super) struct AdmittingClientVerifier {
    pub(super) chain: Arc<dyn ClientCertVerifier>,
    pub(super) admission: Arc<Admission>,
}

impl ClientCertVerifier for AdmittingClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.chain.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.chain.verify_client_cert(end_entity, intermediates, now)?;
        self.admission.check(end_entity, "incoming")?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

/// The client's verifier of server (peer) certificates: the service chain and host name (WebPKI), then admission,
/// so that frames never go to a node outside the set even if the network redirects the connection.
#[derive(Debug)]
pub(super) struct AdmittingServerVerifier {
    pub(super) chain: Arc<dyn ServerCertVerifier>,
    pub(super) admission: Arc<Admission>,
}

impl ServerCertVerifier for AdmittingServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self
            .chain
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        self.admission.check(end_entity, "outgoing")?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_lets_one_event_through_per_period_and_counts_the_rest() {
        let mut t = Throttle::default();
        let hour = Duration::from_secs(3600);
        assert_eq!(t.allow(hour), Some(0));
        assert_eq!(t.allow(hour), None);
        assert_eq!(t.allow(hour), None);
        // Once the period has passed (here: a period of zero), the next is logged with the two held back.
        assert_eq!(t.allow(Duration::ZERO), Some(2));
        assert_eq!(t.allow(hour), None);
    }
}
