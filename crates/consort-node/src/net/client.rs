//! A small HTTPS client for Consort's own tools and tests (sandbox, bench, CLI): hyper over tokio-rustls,
//! HTTP/1.1 or HTTP/2 (for many requests in flight on one connection).

use super::http::TXID_HEADER;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::Arc;

/// The TLS client configuration [`Connection::connect`] takes (see [`crate::tls::client_config`]).
pub type TlsConfig = Arc<rustls::ClientConfig>;

/// Which HTTP version to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

/// Why a request of Consort's client failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address has no host that TLS can name.
    #[error("{address} is not a valid server name: {source}")]
    ServerName {
        address: String,
        #[source]
        source: rustls::pki_types::InvalidDnsNameError,
    },
    /// The TCP connection could not be opened.
    #[error("connect to {address}: {source}")]
    Connect {
        address: String,
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed (for instance the server's certificate does not chain to the service).
    #[error("TLS handshake with {address}: {source}")]
    Handshake {
        address: String,
        #[source]
        source: std::io::Error,
    },
    /// The request could not be built (an invalid method, path or header).
    #[error("invalid request: {0}")]
    Request(#[from] hyper::http::Error),
    /// HTTP failed on the connection (closed, reset, or a protocol error).
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    /// The response body is not the JSON expected.
    #[error("the response is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
}

#[derive(Clone)]
enum Sender {
    H1(Arc<tokio::sync::Mutex<http1::SendRequest<Full<Bytes>>>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// One TLS connection to a node. Cloning shares the connection (HTTP/2 multiplexes the clones' requests).
#[derive(Clone)]
pub struct Connection {
    sender: Sender,
    authority: String,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("authority", &self.authority)
            .finish()
    }
}

/// A response: status, transaction id header (if any) and body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub txid: Option<String>,
    pub body: Bytes,
    /// The body's content type (`application/json` when the response named none).
    pub content_type: String,
    /// Other headers worth passing on (an app's own response headers, for forwarded requests; every other
    /// response header, for the client).
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn json(&self) -> Result<serde_json::Value, ClientError> {
        Ok(serde_json::from_slice(&self.body)?)
    }
}

/// Opens a TLS connection to `addr` ("127.0.0.1:8000") offering the ALPN protocol `alpn`, without speaking HTTP
/// on it: [`Connection::connect`] builds on it, and tests use it to play clients that misbehave byte by byte.
pub async fn connect_tls(
    addr: &str,
    tls: TlsConfig,
    alpn: &[u8],
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, ClientError> {
    let mut tls = (*tls).clone();
    tls.alpn_protocols = vec![alpn.to_vec()];
    let address = || addr.to_string();
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|source| ClientError::Connect {
            address: address(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr).to_string();
    let server_name = rustls::pki_types::ServerName::try_from(host).map_err(|source| ClientError::ServerName {
        address: address(),
        source,
    })?;
    tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(server_name, tcp)
        .await
        .map_err(|source| ClientError::Handshake {
            address: address(),
            source,
        })
}

impl Connection {
    /// Connects to `addr` ("127.0.0.1:8000") with `tls`.
    pub async fn connect(addr: &str, tls: TlsConfig, protocol: Protocol) -> Result<Self, ClientError> {
        let alpn: &[u8] = match protocol {
            Protocol::Http1 => b"http/1.1",
            Protocol::Http2 => b"h2",
        };
        let io = TokioIo::new(connect_tls(addr, tls, alpn).await?);
        let sender = match protocol {
            Protocol::Http1 => {
                let (s, conn) = http1::handshake(io).await?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Sender::H1(Arc::new(tokio::sync::Mutex::new(s)))
            }
            Protocol::Http2 => {
                let (s, conn) = http2::handshake(TokioExecutor::new(), io).await?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Sender::H2(s)
            }
        };
        Ok(Connection {
            sender,
            authority: addr.to_string(),
        })
    }

    /// Sends one request (a body is sent as JSON) and reads the whole response.
    pub async fn request(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Result<Reply, ClientError> {
        self.request_typed(method, path, body.map(|b| ("application/json", b)))
            .await
    }

    /// Sends one request with a body of the given content type and reads the whole response.
    pub async fn request_typed(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<Reply, ClientError> {
        self.request_with_headers(method, path, &[], body).await
    }

    /// [`Connection::request_typed`] with extra request headers.
    pub async fn request_with_headers(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<Reply, ClientError> {
        let mut b = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.authority);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let body = match body {
            Some((content_type, bytes)) => {
                b = b.header("content-type", content_type);
                Some(bytes)
            }
            None => None,
        };
        let req = b.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let resp = match &self.sender {
            Sender::H1(s) => {
                let mut s = s.lock().await;
                s.ready().await?;
                s.send_request(req).await?
            }
            Sender::H2(s) => {
                let mut s = s.clone();
                s.ready().await?;
                s.send_request(req).await?
            }
        };
        let status = resp.status().as_u16();
        let txid = resp
            .headers()
            .get(TXID_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let content_type = resp
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
            .to_string();
        let headers = resp
            .headers()
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), "content-type" | "content-length" | "date" | TXID_HEADER))
            .filter_map(|(name, v)| Some((name.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Reply {
            status,
            txid,
            body,
            content_type,
            headers,
        })
    }

    pub async fn get(&self, path: &str) -> Result<Reply, ClientError> {
        self.request("GET", path, None).await
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> Result<Reply, ClientError> {
        self.request("POST", path, Some(body.to_string().into_bytes())).await
    }
}
