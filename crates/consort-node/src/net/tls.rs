//! TLS configuration for the node's HTTPS endpoint and for Consort's own clients (rustls with the ring provider).
//!
//! Users and members authenticate with self-signed certificates, so the server cannot check them against a CA:
//! it requests a client certificate, checks that the handshake was signed by its key, and leaves the decision of
//! who the holder is to the KV tables (`public:ccf.gov.users.certs`, ...), as CCF does.

use consort_crypto::{ParsedCert, SigningKey};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::sync::Arc;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts any well-formed client certificate whose holder proves possession of the key; identity is decided later.
#[derive(Debug)]
struct SelfSignedClientCerts {
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for SelfSignedClientCerts {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        ParsedCert::from_der(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate (PEM) cannot be parsed.
    #[error("TLS configuration: certificate: {0}")]
    Certificate(#[source] consort_crypto::CryptoError),
    /// The private key (PEM) cannot be parsed.
    #[error("TLS configuration: private key: {0}")]
    Key(#[source] consort_crypto::CryptoError),
    /// rustls refused the configuration (a certificate or key it cannot use).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Server configuration presenting `cert_chain_der` (node certificate first) with `key`.
pub fn server_config(cert_chain_der: Vec<Vec<u8>>, key: &SigningKey) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = provider();
    let verifier = Arc::new(SelfSignedClientCerts {
        provider: provider.clone(),
    });
    let chain = cert_chain_der.into_iter().map(CertificateDer::from).collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.to_pkcs8_der()));
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Client configuration trusting `ca_pem` (the service certificate), optionally authenticating with a client
/// certificate and key (PEM).
pub fn client_config(ca_pem: &str, identity: Option<(&str, &str)>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in ParsedCert::all_from_pem(ca_pem).map_err(TlsError::Certificate)? {
        roots.add(CertificateDer::from(cert.der))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut cfg = match identity {
        None => builder.with_no_client_auth(),
        Some((cert_pem, key_pem)) => {
            let chain = ParsedCert::all_from_pem(cert_pem)
                .map_err(TlsError::Certificate)?
                .into_iter()
                .map(|c| CertificateDer::from(c.der))
                .collect();
            let key = SigningKey::from_pem(key_pem).map_err(TlsError::Key)?;
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.to_pkcs8_der()));
            builder.with_client_auth_cert(chain, key)?
        }
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
