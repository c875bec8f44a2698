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
//! - connections: `max_open_connections`, of which at most `max_anonymous_connections` without a known client
//!   certificate.
//!
//! Connection slots. A fixed number of slots alone lets silent or slow clients take every slot and lock everyone
//! else, members included, out until their timeouts fire. So a full server does not refuse the newcomer: it closes
//! the connection that has made the least recent progress among those that cost nothing to drop, that is, one
//! that is idle (handshaking, or between requests) or whose request is still waiting for its body. Progress is
//! the start of the connection, or of its latest request, or the end of its latest response; the oldest goes
//! first. A connection whose request is executing (its body read) is never evicted, because that work is bounded
//! and may already have changed the state; nor is one that made progress within `eviction_grace_ms`, which gives
//! every newcomer the time to finish its handshake and send a request (after which it is executing), however many
//! connections arrive behind it. A connection that keeps making progress (a cheap request every few hundred
//! milliseconds) is never stale, though; so when no connection is stale, the *anonymous* connection accepted first
//! goes, if it is older than `eviction_grace_ms` and executing nothing. Anonymous means that its client presented
//! no certificate of a known member, user or Trusted node (looked up in the store once, right after the
//! handshake); a known client is never displaced for its age. So an attacker holds slots only by keeping them
//! fresher (or younger) than legitimate clients, that is, by opening more than `max_open_connections` connections
//! every `eviction_grace_ms` (each with a full handshake) for as long as the attack lasts, not by opening them once
//! and staying silent or busy. Only when no slot is evictable is a new connection closed at accept. Connections
//! that are never evicted still close after `idle_timeout_ms` without a request.
//!
//! Beyond that, anonymous connections hold at most `max_anonymous_connections` slots: an anonymous client whose
//! handshake would exceed it displaces the oldest anonymous connection past the grace period, or else is closed.
//! The slots above the cap stay for handshakes and known clients, so a member presenting its certificate gets in
//! even while anonymous clients open connections faster than the grace period lets them age.
//!
//! Request bodies share `max_buffered_body_bytes` under the rules of [`bodies`]: a share per connection, a reserve
//! for small bodies, and the eviction of the stalest body reader when that reserve is reached.
//!
//! Every connection the server closes on its own is counted in `/node/metrics`, by reason: evicted
//! (`consort_http_connections_evicted_total{reason}`: displaced for a newcomer, the oldest anonymous one, over the
//! anonymous cap, closed for the body budget, or one of the timeouts above) or refused at accept
//! (`consort_http_connections_refused_total{reason}`: no evictable slot, or accept failed); so is every body
//! refused room (`consort_http_bodies_refused_total{reason}`).

mod bodies;
mod slots;

use crate::engine::Engine;
use crate::metrics::{EvictionReason, HttpCounters, RefusalReason};
use bodies::{BodyBudget, BodyLimits, BodyOf};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use slots::{Client, Conn, Registry};
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::OwnedSemaphorePermit;

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

/// Put by the server into every request's extensions: lets the endpoint layer reserve room for the body in the
/// server-wide budget and say when the body has been read (from then on the request is executing; see the module
/// doc).
#[derive(Clone)]
pub struct RequestContext {
    request: Arc<RequestState>,
    registry: Arc<Registry>,
    /// The length the request's `content-length` declares, if any.
    declared: Option<u64>,
    body_read_timeout: Duration,
    counters: HttpCounters,
}

impl RequestContext {
    /// Reserves `bytes` more of the request's body in the body budget (`limits.max_buffered_body_bytes`, with the
    /// rules of [`bodies`]) until the permit drops; `None` if there is no room for it right now.
    pub fn reserve_body(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let r = &self.request;
        let body = BodyOf {
            conn_id: r.conn_id,
            conn: &r.conn,
            request: r.number,
            declared: self.declared,
        };
        r.budget.reserve(&self.registry, &body, bytes)
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

    /// Marks the request as executing: its body is read, so its connection is no longer evicted for a newcomer,
    /// and what it held of the body budget is returned.
    pub fn body_read(&self) {
        let r = &self.request;
        r.budget.release(&r.conn, r.number);
        if !r.executing.swap(true, Ordering::AcqRel) {
            r.conn.activity().executing += 1;
        }
    }
}

/// One request on a connection, for as long as it is in flight.
struct RequestState {
    conn_id: u64,
    conn: Arc<Conn>,
    /// Its number on the connection (for the body budget).
    number: u64,
    executing: AtomicBool,
    budget: Arc<BodyBudget>,
}

/// Counts a request in flight on its connection for as long as it lives, and returns what its body held of the
/// budget when it ends.
struct InFlight(Arc<RequestState>);

impl InFlight {
    fn start(conn_id: u64, conn: Arc<Conn>, budget: Arc<BodyBudget>, number: u64) -> Self {
        {
            let mut a = conn.activity();
            a.in_flight += 1;
            a.since = Instant::now();
        }
        InFlight(Arc::new(RequestState {
            conn_id,
            conn,
            number,
            executing: AtomicBool::new(false),
            budget,
        }))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let r = &self.0;
        r.budget.release(&r.conn, r.number);
        let mut a = r.conn.activity();
        a.in_flight = a.in_flight.saturating_sub(1);
        if r.executing.load(Ordering::Acquire) {
            a.executing = a.executing.saturating_sub(1);
        }
        a.since = Instant::now();
    }
}

/// The length a request's `content-length` declares, if it declares one.
fn declared_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
}

/// Whether `cert` is that of a known member, user or Trusted node of the service (the tables the endpoints
/// authenticate against).
fn client_of(svc: &Engine, cert: Option<&ClientCert>) -> Client {
    let Some(cert) = cert else {
        return Client::Anonymous;
    };
    let store = svc.store();
    let tx = store.read_only();
    let id = cert.cert_id.as_bytes();
    let known = tx.has(consort_gov::tables::MEMBERS_CERTS, id)
        || tx.has(consort_gov::tables::USERS_CERTS, id)
        || cert
            .key_id
            .as_deref()
            .and_then(|k| k.parse::<crate::engine::NodeId>().ok())
            .is_some_and(|k| svc.is_trusted_node(&k));
    if known {
        Client::Known
    } else {
        Client::Anonymous
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
    let registry = Arc::new(Registry::new(
        Duration::from_millis(limits.eviction_grace_ms),
        svc.metrics().http.clone(),
    ));
    let budget = Arc::new(BodyBudget::new(BodyLimits::of(&limits), svc.metrics().http.clone()));
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
            id,
            conn,
            registry: registry.clone(),
            budget: budget.clone(),
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
    /// The connection's number in the registry.
    id: u64,
    conn: Arc<Conn>,
    registry: Arc<Registry>,
    budget: Arc<BodyBudget>,
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
        // The client certificate's ids, computed once per connection, not per request.
        let peer_cert: Option<Arc<ClientCert>> = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| Arc::new(ClientCert::of(c)));
        let client = client_of(&self.svc, peer_cert.as_deref());
        if !self
            .registry
            .identify(self.id, client, self.limits.max_anonymous_connections)
        {
            return;
        }
        let _counted = OpenConnection::count(self.svc.metrics().open_connections.clone());
        let (id, conn, registry, budget) = (self.id, self.conn.clone(), self.registry.clone(), self.budget.clone());
        let body_read_timeout = Duration::from_millis(self.limits.body_read_timeout_ms);
        let counters = self.svc.metrics().http.clone();
        let requests = AtomicU64::new(0);
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            let number = requests.fetch_add(1, Ordering::Relaxed);
            let guard = InFlight::start(id, conn.clone(), budget.clone(), number);
            let declared = declared_length(&req);
            req.extensions_mut().insert(RequestContext {
                request: guard.0.clone(),
                registry: registry.clone(),
                declared,
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
        Registry::new(Duration::from_millis(500), HttpCounters::default())
    }

    fn budget() -> Arc<BodyBudget> {
        let limits = BodyLimits::of(&crate::config::Limits::default());
        Arc::new(BodyBudget::new(limits, HttpCounters::default()))
    }

    /// A request in flight on connection `id`.
    fn request(id: u64, conn: &Arc<Conn>) -> InFlight {
        InFlight::start(id, conn.clone(), budget(), 0)
    }

    #[test]
    fn a_full_server_evicts_the_connection_with_the_least_recent_progress() {
        let r = registry();
        let (idle, idle_conn) = r.admit(2).unwrap();
        let (reading, reading_conn) = r.admit(2).unwrap();
        let _req = request(reading, &reading_conn);
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
        let (id, conn) = r.admit(1).unwrap();
        let req = request(id, &conn);
        conn.activity().since -= Duration::from_secs(10);
        let ctx = RequestContext {
            request: req.0.clone(),
            registry: Arc::new(registry()),
            declared: None,
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
        let (busy_id, busy) = r.admit(4).unwrap();
        let _req = request(busy_id, &busy);
        idle.activity().since -= Duration::from_secs(5);
        assert_eq!(r.reap_idle(Duration::from_secs(1)), 1);
        assert_eq!(r.lock().len(), 1);
    }

    #[test]
    fn a_request_returns_its_body_bytes_when_read_or_when_it_ends() {
        let r = Arc::new(registry());
        let (id, conn) = r.admit(4).unwrap();
        let budget = budget();
        let context = |req: &InFlight| RequestContext {
            request: req.0.clone(),
            registry: r.clone(),
            declared: None,
            body_read_timeout: Duration::from_secs(1),
            counters: HttpCounters::default(),
        };
        let read = InFlight::start(id, conn.clone(), budget.clone(), 0);
        let failed = InFlight::start(id, conn.clone(), budget.clone(), 1);
        let _permit = context(&read).reserve_body(1000).unwrap();
        let _other = context(&failed).reserve_body(500).unwrap();
        assert_eq!(conn.activity().body_bytes, 1500);
        context(&read).body_read();
        assert_eq!(conn.activity().body_bytes, 500);
        assert_eq!(conn.activity().executing, 1);
        drop(failed);
        assert_eq!(conn.activity().body_bytes, 0);
        assert!(conn.activity().readers.is_empty());
    }
}
