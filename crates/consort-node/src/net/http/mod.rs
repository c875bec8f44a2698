//! The HTTPS server: accepts TLS connections, identifies the client certificate once per connection, and serves
//! HTTP/1.1 and HTTP/2 with hyper, handing every request to the endpoint layer's handler.
//!
//! Every way a client can hold a resource is bounded by a named field of [`crate::config::Limits`]:
//! - time: the TLS handshake (`tls_handshake_timeout_ms`), an HTTP/1.1 request head (`header_read_timeout_ms`),
//!   a request body (`body_read_timeout_ms`, enforced by the endpoint layer through [`RequestContext`]), a
//!   connection with no request in flight (`idle_timeout_ms`, which also covers a client that completes the
//!   handshake and then stays silent), an HTTP/2 peer that stops answering pings (`h2_keep_alive_*`);
//! - bytes: the request head (`max_header_bytes`), one body (`max_body_bytes`), all bodies being read at once
//!   (`max_buffered_body_bytes`), and per HTTP/2 connection its streams and flow-control windows;
//! - connections: `max_open_connections`.
//!
//! Connection slots. A fixed number of slots alone lets silent or slow clients take every slot and lock everyone
//! else, members included, out until their timeouts fire. So a full server does not refuse the newcomer: it closes
//! the connection that has made the least recent progress among those that cost nothing to drop, that is, one
//! that is idle (handshaking, or between requests) or whose request is still waiting for its body. Progress is
//! the start of the connection, or of its latest request, or the end of its latest response; the oldest goes
//! first. A connection whose request is executing (its body read) is never evicted, because that work is bounded
//! and may already have changed the state; nor is one that made progress within `eviction_grace_ms`, which gives
//! every newcomer the time to finish its handshake and send a request (after which it is executing), however many
//! connections arrive behind it. So an attacker holds slots only by keeping them fresher than legitimate clients,
//! that is, by opening more than `max_open_connections` connections every `eviction_grace_ms` (each with a full
//! handshake) for as long as the attack lasts, not by opening them once and staying silent. Only when no slot is
//! evictable is a new connection closed at accept. Connections that are never evicted still close after
//! `idle_timeout_ms` without a request.
//!
//! Every connection the server closes on its own is counted in `/node/metrics`, by reason: evicted
//! (`consort_http_connections_evicted_total{reason}`: displaced for a newcomer, or one of the timeouts above) or
//! refused at accept (`consort_http_connections_refused_total{reason}`: no evictable slot, or accept failed).

use crate::engine::Engine;
use crate::metrics::{EvictionReason, HttpCounters, RefusalReason};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Header carrying the transaction id on every response (CCF's name).
pub const TXID_HEADER: &str = "x-ms-ccf-transaction-id";

/// How often the reaper looks for idle connections, at most (it also looks four times per idle timeout).
const REAP_INTERVAL_MAX: Duration = Duration::from_millis(500);

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

/// What one connection is doing, for the slot policy and the idle reaper.
#[derive(Debug)]
struct Activity {
    /// Requests whose handler has not finished.
    in_flight: u32,
    /// Of those, requests whose body has been read: their handler does bounded work and is not to be interrupted.
    executing: u32,
    /// When the connection last started or finished a request (or was accepted).
    since: Instant,
}

/// One open connection: its activity and the signal that closes it.
#[derive(Debug)]
struct Conn {
    activity: Mutex<Activity>,
    close: Notify,
}

impl Conn {
    fn activity(&self) -> MutexGuard<'_, Activity> {
        // A poisoned lock only means a panic elsewhere while holding it; the counters stay usable.
        self.activity.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The eviction rank: least recent progress first; `None` while a request executes or within `grace` of the
    /// last progress.
    fn eviction_rank(&self, grace: Duration) -> Option<Instant> {
        let a = self.activity();
        (a.executing == 0 && a.since.elapsed() >= grace).then_some(a.since)
    }
}

/// The server's open connections.
struct Registry {
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: std::sync::atomic::AtomicU64,
    /// `limits.eviction_grace_ms`.
    grace: Duration,
    /// Where evictions are counted.
    counters: HttpCounters,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot for a new connection, evicting per the module's slot policy when all `max` are taken;
    /// `None` if every connection is executing a request.
    fn admit(&self, max: usize) -> Option<(u64, Arc<Conn>)> {
        let mut conns = self.lock();
        if conns.len() >= max {
            let victim = conns
                .iter()
                .filter_map(|(id, c)| c.eviction_rank(self.grace).map(|r| (r, *id)))
                .min()
                .map(|(_, id)| id)?;
            if let Some(c) = conns.remove(&victim) {
                self.counters.evicted(EvictionReason::Displaced);
                c.close.notify_one();
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            activity: Mutex::new(Activity {
                in_flight: 0,
                executing: 0,
                since: Instant::now(),
            }),
            close: Notify::new(),
        });
        conns.insert(id, conn.clone());
        Some((id, conn))
    }

    /// Closes every connection that has had no request in flight for `idle`; returns how many.
    fn reap_idle(&self, idle: Duration) -> usize {
        let mut conns = self.lock();
        let stale: Vec<u64> = conns
            .iter()
            .filter(|(_, c)| {
                let a = c.activity();
                a.in_flight == 0 && a.since.elapsed() >= idle
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &stale {
            if let Some(c) = conns.remove(id) {
                self.counters.evicted(EvictionReason::IdleTimeout);
                c.close.notify_one();
            }
        }
        stale.len()
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }
}

/// Put by the server into every request's extensions: lets the endpoint layer reserve room for the body in the
/// server-wide budget and say when the body has been read (from then on the request is executing; see the module
/// doc).
#[derive(Clone)]
pub struct RequestContext {
    conn: Arc<Conn>,
    executing: Arc<AtomicBool>,
    bodies: Arc<Semaphore>,
    body_read_timeout: Duration,
    counters: HttpCounters,
}

impl RequestContext {
    /// Reserves `bytes` of the server-wide body budget (`limits.max_buffered_body_bytes`) until the permit drops;
    /// `None` if it is exhausted right now.
    pub fn reserve_body(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let n = u32::try_from(bytes).ok()?;
        self.bodies.clone().try_acquire_many_owned(n).ok()
    }

    /// How long the body may take to arrive (`limits.body_read_timeout_ms`).
    pub fn body_read_timeout(&self) -> Duration {
        self.body_read_timeout
    }

    /// Counts the connection as evicted for a body that did not arrive within the body-read timeout (the endpoint
    /// layer answers 408 and the connection closes, its request body unread).
    pub fn body_timed_out(&self) {
        self.counters.evicted(EvictionReason::BodyReadTimeout);
    }

    /// Marks the request as executing: its body is read, so its connection is no longer evicted for a newcomer.
    pub fn body_read(&self) {
        if !self.executing.swap(true, Ordering::AcqRel) {
            self.conn.activity().executing += 1;
        }
    }
}

/// Counts a request in flight on its connection for as long as it lives.
struct InFlight {
    conn: Arc<Conn>,
    executing: Arc<AtomicBool>,
}

impl InFlight {
    fn start(conn: Arc<Conn>) -> Self {
        {
            let mut a = conn.activity();
            a.in_flight += 1;
            a.since = Instant::now();
        }
        InFlight {
            conn,
            executing: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut a = self.conn.activity();
        a.in_flight = a.in_flight.saturating_sub(1);
        if self.executing.load(Ordering::Acquire) {
            a.executing = a.executing.saturating_sub(1);
        }
        a.since = Instant::now();
    }
}

/// The hyper connection builder with every HTTP limit of `limits` applied.
fn connection_builder(limits: &crate::config::Limits) -> hyper_util::server::conn::auto::Builder<TokioExecutor> {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(limits.max_header_bytes)
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .initial_stream_window_size(limits.h2_stream_window_bytes)
        .initial_connection_window_size(limits.h2_connection_window_bytes)
        .max_send_buf_size(limits.h2_max_send_buf_bytes)
        .max_pending_accept_reset_streams(limits.h2_max_pending_accept_reset_streams)
        .keep_alive_interval(Duration::from_millis(limits.h2_keep_alive_interval_ms))
        .keep_alive_timeout(Duration::from_millis(limits.h2_keep_alive_timeout_ms));
    builder
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
    let registry = Arc::new(Registry {
        conns: Mutex::new(HashMap::new()),
        next_id: std::sync::atomic::AtomicU64::new(0),
        grace: Duration::from_millis(limits.eviction_grace_ms),
        counters: svc.metrics().http.clone(),
    });
    let bodies = Arc::new(Semaphore::new(
        limits.max_buffered_body_bytes.min(Semaphore::MAX_PERMITS),
    ));
    let reaper = tokio::spawn(reap(registry.clone(), Duration::from_millis(limits.idle_timeout_ms)));
    loop {
        let (tcp, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    svc.metrics().http.refused(RefusalReason::AcceptFailed);
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let Some((id, conn)) = registry.admit(limits.max_open_connections) else {
            svc.metrics().http.refused(RefusalReason::SlotsBusy);
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let task = ConnTask {
            svc: svc.clone(),
            acceptor: acceptor.clone(),
            limits: limits.clone(),
            conn,
            bodies: bodies.clone(),
        };
        let registry = registry.clone();
        let handler = handler.clone();
        tokio::spawn(async move {
            let close = task.conn.clone();
            tokio::select! {
                _ = task.run(tcp, handler) => {}
                // Evicted or idle too long: dropping the connection's future closes the socket.
                _ = close.close.notified() => {}
            }
            registry.remove(id);
        });
    }
    reaper.abort();
}

/// Closes idle connections every quarter of the idle timeout.
async fn reap(registry: Arc<Registry>, idle: Duration) {
    let mut tick = tokio::time::interval((idle / 4).clamp(Duration::from_millis(10), REAP_INTERVAL_MAX));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let n = registry.reap_idle(idle);
        if n > 0 {
            tracing::debug!("closed {n} idle connections");
        }
    }
}

/// What one connection's task needs.
struct ConnTask {
    svc: Arc<Engine>,
    acceptor: tokio_rustls::TlsAcceptor,
    limits: crate::config::Limits,
    conn: Arc<Conn>,
    bodies: Arc<Semaphore>,
}

impl ConnTask {
    /// Completes the TLS handshake and serves HTTP on the connection until it ends.
    async fn run<H, F>(self, tcp: tokio::net::TcpStream, handler: H)
    where
        H: Fn(Option<Arc<ClientCert>>, Request<Incoming>) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
    {
        let handshake = Duration::from_millis(self.limits.tls_handshake_timeout_ms);
        let tls = match tokio::time::timeout(handshake, self.acceptor.accept(tcp)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!("TLS handshake failed: {e}");
                return;
            }
            Err(_) => {
                self.svc.metrics().http.evicted(EvictionReason::TlsHandshakeTimeout);
                return;
            }
        };
        let _counted = OpenConnection::count(self.svc.metrics().open_connections.clone());
        // The client certificate's ids, computed once per connection, not per request.
        let peer_cert: Option<Arc<ClientCert>> = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| Arc::new(ClientCert::of(c)));
        let conn = self.conn.clone();
        let bodies = self.bodies.clone();
        let body_read_timeout = Duration::from_millis(self.limits.body_read_timeout_ms);
        let counters = self.svc.metrics().http.clone();
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            let guard = InFlight::start(conn.clone());
            req.extensions_mut().insert(RequestContext {
                conn: conn.clone(),
                executing: guard.executing.clone(),
                bodies: bodies.clone(),
                body_read_timeout,
                counters: counters.clone(),
            });
            let answer = handler(peer_cert.clone(), req);
            async move {
                let resp = answer.await;
                drop(guard);
                Ok::<_, Infallible>(resp)
            }
        });
        let builder = connection_builder(&self.limits);
        if let Err(e) = builder.serve_connection(TokioIo::new(tls), service).await {
            if let Some(reason) = timeout_reason(&*e) {
                self.svc.metrics().http.evicted(reason);
            }
            tracing::debug!("connection ended: {e}");
        }
    }
}

/// Which of hyper's timeouts ended a connection, if one did: an HTTP/1.1 head not read in time is a timeout
/// error of its own, an HTTP/2 keep-alive ping not answered in time is one caused by the missed ping.
fn timeout_reason(e: &(dyn std::error::Error + 'static)) -> Option<EvictionReason> {
    let e = e.downcast_ref::<hyper::Error>()?;
    if !e.is_timeout() {
        return None;
    }
    Some(match std::error::Error::source(e) {
        None => EvictionReason::HeaderReadTimeout,
        Some(_) => EvictionReason::H2KeepAliveTimeout,
    })
}

/// Counts an established connection in the `open_connections` gauge until dropped, which also happens when the
/// connection's task is cancelled (evicted or idle).
struct OpenConnection(prometheus_client::metrics::gauge::Gauge);

impl OpenConnection {
    fn count(gauge: prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        OpenConnection(gauge)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        Registry {
            conns: Mutex::new(HashMap::new()),
            next_id: std::sync::atomic::AtomicU64::new(0),
            grace: Duration::from_millis(500),
            counters: HttpCounters::default(),
        }
    }

    #[test]
    fn a_full_server_evicts_the_connection_with_the_least_recent_progress() {
        let r = registry();
        let (idle, idle_conn) = r.admit(2).unwrap();
        let (reading, reading_conn) = r.admit(2).unwrap();
        let _req = InFlight::start(reading_conn.clone());
        // The body reader started its request long ago, the idle connection arrived a little while ago.
        reading_conn.activity().since -= Duration::from_secs(10);
        idle_conn.activity().since -= Duration::from_secs(1);
        let (new, new_conn) = r.admit(2).unwrap();
        let ids: Vec<u64> = r.lock().keys().copied().collect();
        assert!(!ids.contains(&reading), "the stalled body reader goes first");
        assert!(ids.contains(&idle) && ids.contains(&new));
        let (newer, _) = r.admit(2).unwrap();
        let ids: Vec<u64> = r.lock().keys().copied().collect();
        assert!(!ids.contains(&idle), "then the connection idle the longest");
        assert!(ids.contains(&new) && ids.contains(&newer));
        // Both remaining connections are within their grace period: a newcomer is refused.
        assert!(r.admit(2).is_none());
        new_conn.activity().since -= Duration::from_secs(1);
        assert!(r.admit(2).is_some(), "a connection past its grace period makes room");
    }

    #[test]
    fn a_connection_executing_a_request_is_never_evicted() {
        let r = registry();
        let (_, conn) = r.admit(1).unwrap();
        let req = InFlight::start(conn.clone());
        conn.activity().since -= Duration::from_secs(10);
        let ctx = RequestContext {
            conn,
            executing: req.executing.clone(),
            bodies: Arc::new(Semaphore::new(10)),
            body_read_timeout: Duration::from_secs(1),
            counters: HttpCounters::default(),
        };
        ctx.body_read();
        assert!(r.admit(1).is_none(), "the only slot executes a request");
        drop(req);
        conn_since_back(&r);
        assert!(
            r.admit(1).is_some(),
            "once the request finished its connection is idle again"
        );
    }

    /// Moves every connection's last progress 10 s into the past, beyond the grace period.
    fn conn_since_back(r: &Registry) {
        for c in r.lock().values() {
            c.activity().since -= Duration::from_secs(10);
        }
    }

    #[test]
    fn displaced_and_idle_connections_are_counted_by_reason() {
        let r = registry();
        let (_, first) = r.admit(1).unwrap();
        first.activity().since -= Duration::from_secs(1);
        let (_, second) = r.admit(1).unwrap();
        assert_eq!(r.counters.evicted_count(EvictionReason::Displaced), 1);
        second.activity().since -= Duration::from_secs(5);
        assert_eq!(r.reap_idle(Duration::from_secs(1)), 1);
        assert_eq!(r.counters.evicted_count(EvictionReason::IdleTimeout), 1);
        assert_eq!(r.counters.evicted_count(EvictionReason::Displaced), 1);
    }

    #[test]
    fn only_connections_without_a_request_in_flight_are_reaped() {
        let r = registry();
        let (_, idle) = r.admit(4).unwrap();
        let (_, busy) = r.admit(4).unwrap();
        let _req = InFlight::start(busy);
        idle.activity().since -= Duration::from_secs(5);
        assert_eq!(r.reap_idle(Duration::from_secs(1)), 1);
        assert_eq!(r.lock().len(), 1);
    }
}
