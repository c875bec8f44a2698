//! Admission to the node-to-node channels: the set of node ids admitted now, and the TLS certificate verifiers
//! (either side of a handshake) that refuse a peer outside it after checking its service-endorsed chain.

use crate::metrics::PeerCounters;
use consort_crypto::ParsedCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

/// The node ids admitted to the channels now, shared by the certificate verifiers (which read it during handshakes)
/// and the connection tasks (which watch it to drop a peer that leaves it).
#[derive(Debug)]
pub(super) struct Admission {
    pub(super) set: tokio::sync::watch::Sender<Arc<HashSet<String>>>,
    /// Where refusals are counted, once the node attached its metrics.
    pub(super) counters: OnceLock<PeerCounters>,
}

impl Admission {
    pub(super) fn new() -> Self {
        Admission {
            set: tokio::sync::watch::Sender::new(Arc::new(HashSet::new())),
            counters: OnceLock::new(),
        }
    }

    pub(super) fn admits(&self, node_id: &str) -> bool {
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
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?
            .key_id();
        if self.admits(&node_id) {
            return Ok(());
        }
        self.count(|c| &c.refused_handshakes);
        tracing::warn!(%node_id, side, "node-to-node handshake refused: the node is not a current member");
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::ApplicationVerificationFailure,
        ))
    }

    /// Resolves once `node_id` is no longer admitted.
    pub(super) async fn evicted(&self, node_id: &str) {
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
