//! The HTTPS server: accepts TLS connections (bounded in number, with a handshake timeout), identifies the client
//! certificate once per connection, and serves HTTP/1.1 and HTTP/2 with hyper, handing every request to the
//! endpoint layer's handler.

use crate::engine::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Header carrying the transaction id on every response (CCF's name).
pub const TXID_HEADER: &str = "x-ms-ccf-transaction-id";

/// The client certificate of a TLS connection, identified once per connection (the handshake proved that the
/// client holds its key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// Hex SHA-256 of the certificate's DER: how users and members are named.
    pub cert_id: String,
    /// Hex SHA-256 of its public key (SubjectPublicKeyInfo): how nodes are named.
    pub key_id: Option<String>,
}

impl ClientCert {
    /// Identifies a certificate presented in a handshake.
    pub fn of(der: &[u8]) -> Self {
        ClientCert {
            cert_id: consort_crypto::cert_id(der),
            key_id: consort_crypto::ParsedCert::from_der(der).ok().map(|c| c.key_id()),
        }
    }
}

/// Serves HTTPS on `listener` until `shutdown` fires.
/// `handler` answers one request, given the client's TLS certificate, if any.
pub async fn serve<H, F>(
    svc: Arc<Engine>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    handler: H,
) where
    H: Fn(Option<Arc<ClientCert>>, Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let limits = svc.config().limits.clone();
    let slots = Arc::new(Semaphore::new(limits.max_open_connections));
    loop {
        let (tcp, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => { tracing::warn!("accept: {e}"); tokio::time::sleep(Duration::from_millis(10)).await; continue; }
            },
            _ = shutdown.changed() => return,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            svc.metrics().rejected_connections.inc();
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let svc = svc.clone();
        let acceptor = acceptor.clone();
        let limits = limits.clone();
        let handler = handler.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let handshake = Duration::from_millis(limits.tls_handshake_timeout_ms);
            let tls = match tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!("TLS handshake failed: {e}");
                    return;
                }
                Err(_) => return,
            };
            svc.metrics().open_connections.inc();
            // The client certificate's ids, computed once per connection, not per request.
            let peer_cert: Option<Arc<ClientCert>> = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| Arc::new(ClientCert::of(c)));
            let service = hyper::service::service_fn(move |req| {
                let answer = handler(peer_cert.clone(), req);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .max_buf_size(limits.max_header_bytes)
                .timer(hyper_util::rt::TokioTimer::new());
            builder
                .http2()
                .max_header_list_size(limits.max_header_bytes as u32)
                .max_concurrent_streams(256);
            if let Err(e) = builder.serve_connection(TokioIo::new(tls), service).await {
                tracing::debug!("connection ended: {e}");
            }
            svc.metrics().open_connections.dec();
        });
    }
}
