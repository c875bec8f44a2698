//! The sending side of a channel: one task per peer keeps a connection to it, writes the peer's queued frames in
//! batches, and reconnects with a capped, jittered exponential back-off that only a connection that stayed up
//! resets.
//!
//! Why "stayed up" and not "the handshake succeeded": in TLS 1.3 the client's handshake is over before the server
//! has judged the client's certificate, so a peer that does not admit this node (it retired us, or we it) completes
//! every handshake and then closes the session with an alert. Resetting the back-off on a completed handshake made
//! such a node reconnect as fast as it had frames to send. Nor is "a frame was written" evidence: the write lands in
//! socket buffers before the alert arrives. So the task also reads from the connection (a peer never sends
//! application data this way), which sees the alert or the close at once, and resets the back-off only after
//! [`CONNECTION_STABLE_AFTER`] without either.

use super::admission::{Admission, Throttle};
use super::{FrameKind, CONNECT_TIMEOUT, MAX_FRAMES_PER_FLUSH, RECONNECT_MAX, RECONNECT_MIN};
use bytes::Bytes;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// A connection that stays up this long resets the back-off; one that ends sooner does not.
pub const CONNECTION_STABLE_AFTER: Duration = Duration::from_secs(1);

/// Why a connection to a peer could not be made or was lost (logged, then retried after the back-off).
#[derive(Debug, thiserror::Error)]
pub(super) enum LinkError {
    /// The peer's address has no valid host name or IP address for TLS.
    #[error("{address} is not a valid peer address: {source}")]
    Address {
        address: String,
        #[source]
        source: rustls::pki_types::InvalidDnsNameError,
    },
    /// The TCP connection could not be opened.
    #[error("TCP connect: {0}")]
    Tcp(#[source] std::io::Error),
    /// The TLS handshake failed (including this node refusing the peer's certificate).
    #[error("TLS handshake: {0}")]
    Handshake(#[source] std::io::Error),
    /// TCP and TLS took longer than [`CONNECT_TIMEOUT`].
    #[error("connecting took longer than {CONNECT_TIMEOUT:?}")]
    Timeout,
    /// The peer ended the session with a TLS alert: it does not admit this node, or could not verify it.
    #[error("the peer refused the session with TLS alert {alert:?} (it does not admit this node)")]
    Refused {
        alert: rustls::AlertDescription,
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing the connection failed.
    #[error("connection lost: {0}")]
    Lost(#[source] std::io::Error),
    /// The peer closed the connection (or sent bytes, which it never does on this direction).
    #[error("the peer closed the connection")]
    Closed,
}

impl LinkError {
    /// `otherwise(e)`, unless `e` carries a TLS alert from the peer, which is a refusal.
    fn classify(e: std::io::Error, otherwise: fn(std::io::Error) -> LinkError) -> LinkError {
        let alert = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .and_then(|tls| match tls {
                rustls::Error::AlertReceived(alert) => Some(*alert),
                _ => None,
            });
        match alert {
            Some(alert) => LinkError::Refused { alert, source: e },
            None => otherwise(e),
        }
    }
}

/// Capped exponential back-off with jitter.
#[derive(Debug)]
pub(super) struct Backoff {
    /// The longest the next wait may be: [`RECONNECT_MIN`] after a reset, doubled by each wait, at most
    /// [`RECONNECT_MAX`].
    period: Duration,
}

impl Backoff {
    pub(super) fn new() -> Self {
        Backoff { period: RECONNECT_MIN }
    }

    /// The wait before the next attempt, drawn at random from the upper half of the period (so that nodes refused
    /// together do not retry in step); then the period doubles, up to the cap.
    pub(super) fn next_wait(&mut self) -> Duration {
        let half = self.period / 2;
        let spread = u64::try_from(half.as_micros()).unwrap_or(u64::MAX).saturating_add(1);
        let draw = u64::from_le_bytes(consort_crypto::random_array::<8>()) % spread;
        self.period = (self.period * 2).min(RECONNECT_MAX);
        half + Duration::from_micros(draw)
    }

    /// Back to the shortest period, after a connection proved itself.
    pub(super) fn reset(&mut self) {
        self.period = RECONNECT_MIN;
    }
}

/// What the sending task of one peer needs; it holds no reference to the [`super::Channels`], so that dropping
/// them (or forgetting the peer) closes its queue and ends the task.
pub(super) struct Link {
    pub(super) peer: crate::engine::NodeId,
    pub(super) address: String,
    pub(super) tls: Arc<rustls::ClientConfig>,
    pub(super) admission: Arc<Admission>,
}

impl Link {
    /// Opens TCP and completes the TLS handshake, within [`CONNECT_TIMEOUT`].
    async fn connect(&self) -> Result<tokio_rustls::client::TlsStream<TcpStream>, LinkError> {
        let host = self
            .address
            .rsplit_once(':')
            .map_or(&*self.address, |(h, _)| h)
            .to_string();
        let name = ServerName::try_from(host).map_err(|source| LinkError::Address {
            address: self.address.clone(),
            source,
        })?;
        let fut = async {
            let tcp = TcpStream::connect(&self.address).await.map_err(LinkError::Tcp)?;
            let _ = tcp.set_nodelay(true);
            tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| LinkError::classify(e, LinkError::Handshake))
        };
        tokio::time::timeout(CONNECT_TIMEOUT, fut)
            .await
            .map_err(|_| LinkError::Timeout)?
    }

    /// Logs a failed or lost connection: a refusal at warn, at most once per [`RECONNECT_MAX`] (the longest
    /// back-off period) with how many were not logged; anything else at debug.
    fn log(&self, e: &LinkError, refusals: &mut Throttle) {
        let (peer, address) = (&self.peer, &self.address);
        match e {
            LinkError::Refused { .. } => {
                if let Some(not_logged) = refusals.allow(RECONNECT_MAX) {
                    tracing::warn!(%peer, %address, not_logged, "node-to-node channel refused by the peer: {e}");
                }
            }
            _ => tracing::debug!(%peer, %address, "node-to-node channel: {e}"),
        }
    }
}

/// Keeps a connection to the link's peer and writes the frames queued in `rx` until the queue closes (the peer
/// was forgotten or the channels dropped).
pub(super) async fn send_loop(link: Link, mut rx: mpsc::Receiver<(FrameKind, Bytes)>) {
    let mut backoff = Backoff::new();
    let mut refusals = Throttle::default();
    while !rx.is_closed() {
        link.admission.count(|c| &c.connect_attempts);
        let ended = match link.connect().await {
            Ok(stream) => {
                let up = Instant::now();
                let ended = carry(stream, &mut rx).await;
                if up.elapsed() >= CONNECTION_STABLE_AFTER {
                    backoff.reset();
                }
                ended
            }
            Err(e) => Err(e),
        };
        match ended {
            Ok(()) => return,
            Err(e) => link.log(&e, &mut refusals),
        }
        tokio::time::sleep(backoff.next_wait()).await;
        // What was queued while the channel was down is stale by now (and, for a peer that refused this node, was
        // never for it to read): Raft retransmits what still matters and a forwarded request times out.
        let mut dropped = 0usize;
        while rx.try_recv().is_ok() {
            dropped += 1;
        }
        if dropped > 0 {
            tracing::debug!(peer = %link.peer, dropped, "frames queued while the channel was down dropped");
        }
    }
}

/// Writes the frames queued in `rx` to `stream` in batches, until the queue closes (`Ok`) or the connection ends
/// (`Err`: the peer closed it, refused it, or writing failed).
async fn carry(
    stream: tokio_rustls::client::TlsStream<TcpStream>,
    rx: &mut mpsc::Receiver<(FrameKind, Bytes)>,
) -> Result<(), LinkError> {
    let (mut reader, writer) = tokio::io::split(stream);
    let mut w = BufWriter::new(writer);
    let mut probe = [0u8; 1];
    loop {
        // Reading is cancel-safe, so the probe can wait alongside the queue; the writes below are not raced.
        let first = tokio::select! {
            f = rx.recv() => match f {
                Some(f) => f,
                None => return Ok(()),
            },
            r = reader.read(&mut probe) => return Err(match r {
                Ok(_) => LinkError::Closed,
                Err(e) => LinkError::classify(e, LinkError::Lost),
            }),
        };
        let mut batch = vec![first];
        while batch.len() < MAX_FRAMES_PER_FLUSH {
            match rx.try_recv() {
                Ok(f) => batch.push(f),
                Err(_) => break,
            }
        }
        write_batch(&mut w, &batch)
            .await
            .map_err(|e| LinkError::classify(e, LinkError::Lost))?;
    }
}

/// Writes `batch` in the wire format (see [`super`]) and flushes once.
async fn write_batch<W: AsyncWrite + Unpin>(w: &mut W, batch: &[(FrameKind, Bytes)]) -> std::io::Result<()> {
    for (kind, frame) in batch {
        // `Channels::send` refuses frames over MAX_FRAME_BYTES, so the length fits in a u32.
        let len = u32::try_from(frame.len() + 1).map_err(std::io::Error::other)?;
        w.write_all(&len.to_le_bytes()).await?;
        w.write_all(&[kind.byte()]).await?;
        w.write_all(frame).await?;
    }
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_back_off_doubles_with_jitter_up_to_its_cap_and_resets() {
        let mut b = Backoff::new();
        let mut period = RECONNECT_MIN;
        for _ in 0..12 {
            let wait = b.next_wait();
            assert!(
                wait >= period / 2 && wait <= period,
                "{wait:?} outside the upper half of {period:?}"
            );
            period = (period * 2).min(RECONNECT_MAX);
        }
        assert_eq!(b.period, RECONNECT_MAX);
        b.reset();
        assert!(b.next_wait() <= RECONNECT_MIN);
    }
}
