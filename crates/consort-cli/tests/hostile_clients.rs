//! Hostile clients against a real node over real sockets: a thousand silent TLS connections and a thousand
//! slow-body uploads do not keep a member from passing a proposal, nor do HTTP/2 uploads that stall just short of
//! the body budget, nor a full table of anonymous connections that each keep making progress; anonymous
//! connections beyond their cap are closed while known clients get in; ordinary uploads are untouched by the body
//! limits; a slow body is cut off with 408, an idle connection is closed after the idle timeout, and every
//! connection the server closes or refuses is counted in `/node/metrics` by reason.

mod common;

use common::*;
use consort_crypto::{ParsedCert, SigningKey};
use consort_gov::MsgType;
use consort_node::config::NodeConfig;
use consort_node::net::client::{connect_tls, Connection, Protocol, Reply, TlsConfig};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// CCF's governance API version.
const API: &str = "api-version=2024-07-01";
/// Longest any one test may run: its node is dropped (killed) when it expires.
const TEST_TIMEOUT: Duration = Duration::from_secs(240);
/// Silent connections and slow uploads each, as issue 12 asks.
const HOSTILE_CLIENTS: usize = 1_000;
/// File descriptors the test process needs besides the hostile connections.
const SPARE_FDS: usize = 200;

async fn bounded<F: std::future::Future<Output = ()>>(fut: F) {
    tokio::time::timeout(TEST_TIMEOUT, fut)
        .await
        .expect("test exceeded its time bound");
}

/// The soft limit on open files of this process (the node, its child, inherits it).
fn open_files_limit() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        .unwrap_or(1024)
}

fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A node with member0 and user0 whose HTTP limits are tuned by `tune`; started.
async fn start_node(dir: &std::path::Path, tune: impl FnOnce(&mut NodeConfig)) -> TestNode {
    let mut node = TestNode::configure(dir, tune);
    node.start().await;
    node
}

/// TLS client configuration trusting the node's service certificate, without a client certificate.
fn anonymous_tls(node: &TestNode) -> TlsConfig {
    consort_node::net::tls::client_config(&node.service_cert(), None).unwrap()
}

/// Reads from `stream` until it is closed, `needle` has arrived, or `limit` passes; returns what arrived and
/// whether the peer closed the connection.
async fn read_until<S: AsyncRead + Unpin>(stream: &mut S, needle: &str, limit: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(n)) => {
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).into_owned();
                if !needle.is_empty() && text.contains(needle) {
                    return (text, false);
                }
            }
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
        }
    }
}

/// The head of a `POST` whose body of `len` bytes the client will send slowly.
fn slow_post_head(path: &str, len: usize) -> String {
    format!(
        "POST {path}?{API} HTTP/1.1\r\nhost: node\r\ncontent-type: application/cose\r\ncontent-length: {len}\r\n\r\n"
    )
}

/// member0 of `node`, on a new connection, proposes adding a user and votes for it; returns the proposal's state.
/// The caller bounds the time this takes.
async fn member_passes_a_proposal(node: &TestNode, member_key: &SigningKey, member_id: &str) -> String {
    member_passes_a_proposal_with(node, anonymous_tls(node), member_key, member_id).await
}

/// [`member_passes_a_proposal`] over a connection made with `tls` (with or without a client certificate).
async fn member_passes_a_proposal_with(
    node: &TestNode,
    tls: TlsConfig,
    member_key: &SigningKey,
    member_id: &str,
) -> String {
    // Like any client refused at accept, the member retries; the caller's time bound includes the retries.
    let conn = loop {
        match Connection::connect(&node.address, tls.clone(), Protocol::Http1).await {
            Ok(c) => break c,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let (user_cert, _) = keygen(&node.dir, &format!("extra{}", now_seconds()));
    let proposal =
        json!({"actions": [{"name": "set_user", "args": {"cert": std::fs::read_to_string(user_cert).unwrap()}}]});
    let body = consort_gov::sign_gov_request(
        member_key,
        member_id,
        MsgType::Proposal,
        now_seconds(),
        None,
        proposal.to_string().as_bytes(),
    );
    let r = post_cose(&conn, "/gov/members/proposals:create", body).await;
    let v = ok_json(&r, "create proposal");
    let id = v["proposalId"].as_str().expect("proposalId").to_string();
    let ballot = json!({"ballot": "export function vote (proposal, proposerId) { return true }"}).to_string();
    let body = consort_gov::sign_gov_request(
        member_key,
        member_id,
        MsgType::Ballot,
        now_seconds(),
        Some(&id),
        ballot.as_bytes(),
    );
    let r = post_cose(
        &conn,
        &format!("/gov/members/proposals/{id}/ballots/{member_id}:submit"),
        body,
    )
    .await;
    ok_json(&r, "ballot")["proposalState"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn post_cose(conn: &Connection, path: &str, body: Vec<u8>) -> Reply {
    conn.request_typed("POST", &format!("{path}?{API}"), Some(("application/cose", body)))
        .await
        .unwrap()
}

fn ok_json(r: &Reply, what: &str) -> Value {
    assert_eq!(r.status, 200, "{what}: {}", String::from_utf8_lossy(&r.body));
    r.json().unwrap()
}

/// member0's key and id, as `TestNode::configure` wrote them.
fn member0(node: &TestNode) -> (SigningKey, String) {
    let key = SigningKey::from_pem(&std::fs::read_to_string(node.dir.join("member0_privk.pem")).unwrap()).unwrap();
    let cert = std::fs::read_to_string(node.dir.join("member0_cert.pem")).unwrap();
    (key, ParsedCert::from_pem(&cert).unwrap().cert_id())
}

/// What a hostile client does once its TLS handshake is done.
#[derive(Clone, Copy)]
enum Hostile {
    /// Sends nothing.
    Silent,
    /// Sends the head of a governance proposal, then its body a byte every `interval`.
    SlowBody { interval: Duration },
}

/// How the hostile clients fared.
#[derive(Default)]
struct Tally {
    established: AtomicUsize,
    closed_by_server: AtomicUsize,
}

/// Plays `behaviour` on `stream` until the server closes it (counted) or `stop` fires.
async fn play<S: AsyncRead + AsyncWrite + Unpin>(
    behaviour: Hostile,
    mut stream: S,
    tally: &Tally,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let closed = match behaviour {
        Hostile::Silent => tokio::select! {
            _ = read_until(&mut stream, "", TEST_TIMEOUT) => true,
            _ = stop.changed() => false,
        },
        Hostile::SlowBody { interval } => {
            let len = 100_000;
            if stream
                .write_all(slow_post_head("/gov/members/proposals:create", len).as_bytes())
                .await
                .is_err()
            {
                tally.closed_by_server.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let trickle = async {
                for _ in 0..len {
                    if stream.write_all(b"x").await.is_err() || stream.flush().await.is_err() {
                        return;
                    }
                    tokio::time::sleep(interval).await;
                }
            };
            tokio::select! {
                _ = trickle => true,
                _ = stop.changed() => false,
            }
        }
    };
    if closed {
        tally.closed_by_server.fetch_add(1, Ordering::Relaxed);
    }
}

/// Starts `n` hostile clients playing `behaviour`, at most 64 handshakes at a time, and waits until each has
/// finished its handshake or failed to.
async fn unleash(
    n: usize,
    node: &TestNode,
    behaviour: Hostile,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> (Vec<tokio::task::JoinHandle<()>>, Arc<Tally>) {
    let tally = Arc::new(Tally::default());
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    let attempted = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (addr, tls, stop) = (node.address.clone(), anonymous_tls(node), stop.clone());
        let (tally, gate, attempted) = (tally.clone(), gate.clone(), attempted.clone());
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.unwrap();
            let stream = connect_tls(&addr, tls, b"http/1.1").await;
            attempted.fetch_add(1, Ordering::Relaxed);
            drop(permit);
            let Ok(stream) = stream else { return };
            tally.established.fetch_add(1, Ordering::Relaxed);
            play(behaviour, stream, &tally, stop).await;
        }));
    }
    while attempted.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (tasks, tally)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_and_slow_uploads_do_not_lock_a_member_out() {
    bounded(async {
        let needed = 2 * HOSTILE_CLIENTS + SPARE_FDS;
        let limit = open_files_limit();
        // Each hostile client costs one descriptor here (and at most one in the node, which holds fewer).
        let per_kind = if limit >= needed {
            HOSTILE_CLIENTS
        } else {
            let n = limit.saturating_sub(SPARE_FDS) / 2;
            eprintln!(
                "open-file soft limit {limit} < {needed}: using {n} clients of each kind instead of {HOSTILE_CLIENTS}"
            );
            n
        };
        let tmp = tempfile::tempdir().unwrap();
        let node = start_node(&tmp.path().join("n0"), |cfg| {
            // Fewer slots than hostile clients, and timeouts longer than the test's attack, so that only the slot
            // policy (not a timeout) can let the member in: within `eviction_grace_ms` (1 s by default) of the
            // attack's last connection.
            cfg.limits.max_open_connections = 256;
            cfg.limits.idle_timeout_ms = 60_000;
            cfg.limits.header_read_timeout_ms = 60_000;
            cfg.limits.body_read_timeout_ms = 60_000;
        })
        .await;
        let (member_key, member_id) = member0(&node);
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let (silent, silent_tally) = unleash(per_kind, &node, Hostile::Silent, &stop).await;
        let slow_body = Hostile::SlowBody {
            interval: Duration::from_millis(500),
        };
        let (slow, slow_tally) = unleash(per_kind, &node, slow_body, &stop).await;
        let established = |t: &Tally| t.established.load(Ordering::Relaxed);
        // The rest were closed at accept while every slot was within its eviction grace period.
        eprintln!(
            "of {per_kind} attempts each, {} silent connections and {} slow uploads were established",
            established(&silent_tally),
            established(&slow_tally)
        );
        // How many get in beyond the slots depends on how fast the attack arrives compared with the eviction grace
        // period; what matters is that it took every slot, so that the member can only get in through the policy.
        assert!(
            established(&silent_tally) + established(&slow_tally) >= 256,
            "the attack did not even fill the slots, so it proves nothing"
        );

        let started = Instant::now();
        let passing = member_passes_a_proposal(&node, &member_key, &member_id);
        let state = tokio::time::timeout(Duration::from_secs(30), passing)
            .await
            .expect("the member got no answer within 30 s");
        let took = started.elapsed();
        eprintln!("the member passed a proposal in {took:?} under attack");
        assert_eq!(state, "Accepted");
        assert!(took < Duration::from_secs(5), "the member needed {took:?}");

        // The member got in through the slot policy: a hostile connection was displaced for it, and the attack's
        // connections that found every slot within its grace period were refused at accept (both counted).
        let metrics = metrics_text(&node).await;
        assert!(
            counter(&metrics, "consort_http_connections_evicted_total", "displaced") >= 1,
            "{metrics}"
        );
        if established(&silent_tally) + established(&slow_tally) < 2 * per_kind {
            assert!(
                counter(&metrics, "consort_http_connections_refused_total", "slots_busy") >= 1,
                "{metrics}"
            );
        }

        stop_tx.send(true).unwrap();
        for t in silent.into_iter().chain(slow) {
            let _ = t.await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_gets_408_and_loses_its_connection() {
    bounded(async {
        let tmp = tempfile::tempdir().unwrap();
        let node = start_node(&tmp.path().join("n0"), |cfg| {
            cfg.limits.body_read_timeout_ms = 1_000;
        })
        .await;
        let mut stream = connect_tls(&node.address, anonymous_tls(&node), b"http/1.1")
            .await
            .unwrap();
        stream
            .write_all(slow_post_head("/gov/members/proposals:create", 1000).as_bytes())
            .await
            .unwrap();
        stream.write_all(b"partial").await.unwrap();
        stream.flush().await.unwrap();
        let started = Instant::now();
        let (answer, _) = read_until(&mut stream, "RequestTimeout", Duration::from_secs(30)).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "answer: {answer}");
        assert!(answer.contains(r#""code":"RequestTimeout""#), "answer: {answer}");
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "cut off too early: {:?}",
            started.elapsed()
        );
        let (_, closed) = read_until(&mut stream, "", Duration::from_secs(30)).await;
        assert!(closed, "the connection of a timed-out upload is closed");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    bounded(async {
        let tmp = tempfile::tempdir().unwrap();
        let node = start_node(&tmp.path().join("n0"), |cfg| {
            // The header timeout is longer, so the idle timeout is what closes these connections.
            cfg.limits.idle_timeout_ms = 1_000;
            cfg.limits.header_read_timeout_ms = 30_000;
        })
        .await;
        let tls = anonymous_tls(&node);
        // One connection that never sends a request, one that is idle between two requests.
        let mut silent = connect_tls(&node.address, tls.clone(), b"http/1.1").await.unwrap();
        let mut kept_alive = connect_tls(&node.address, tls, b"http/1.1").await.unwrap();
        kept_alive
            .write_all(b"GET /node/commit HTTP/1.1\r\nhost: node\r\n\r\n")
            .await
            .unwrap();
        kept_alive.flush().await.unwrap();
        let (answer, closed) = read_until(&mut kept_alive, "transaction_id", Duration::from_secs(10)).await;
        assert!(answer.starts_with("HTTP/1.1 200") && !closed, "answer: {answer}");
        let started = Instant::now();
        for (what, stream) in [("silent", &mut silent), ("kept-alive", &mut kept_alive)] {
            let (_, closed) = read_until(stream, "", Duration::from_secs(10)).await;
            assert!(closed, "the {what} connection was not closed");
        }
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(800),
            "closed before the idle timeout: {took:?}"
        );
        // A new client is served as usual, and the closed connections no longer count as open.
        let conn = node.connect(true).await;
        assert_eq!(conn.get("/node/commit").await.unwrap().status, 200);
        let metrics = conn.get("/node/metrics").await.unwrap();
        let metrics = String::from_utf8_lossy(&metrics.body);
        assert!(metrics.contains("consort_open_connections 1\n"), "{metrics}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_requests_without_a_user_certificate_are_refused_before_their_body() {
    bounded(async {
        let tmp = tempfile::tempdir().unwrap();
        let node = start_node(&tmp.path().join("n0"), |cfg| {
            cfg.limits.body_read_timeout_ms = 30_000;
        })
        .await;
        // The body is declared but never sent: the refusal cannot wait for it.
        let mut stream = connect_tls(&node.address, anonymous_tls(&node), b"http/1.1").await.unwrap();
        let head = "POST /app/log/private HTTP/1.1\r\nhost: node\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n";
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.flush().await.unwrap();
        let (answer, _) = read_until(&mut stream, "client certificate", Duration::from_secs(10)).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "answer: {answer}");
        assert!(
            answer.contains("Missing client certificate: this endpoint requires a user TLS certificate"),
            "answer: {answer}"
        );
        // A registered user with the same request is served.
        let user = node.connect(true).await;
        let r = user.post_json("/app/log/private", &json!({"id": 1, "msg": "hello"})).await.unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    })
    .await;
}

/// The value of the counter `name` with the label `reason="{reason}"` in a Prometheus text exposition (0 if absent).
fn counter(metrics: &str, name: &str, reason: &str) -> u64 {
    let series = format!("{name}{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// `/node/metrics` of `node`, on a new connection (retried, like any client, while the node refuses it at accept).
async fn metrics_text(node: &TestNode) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(conn) = Connection::connect(&node.address, anonymous_tls(node), Protocol::Http1).await {
            if let Ok(r) = conn.get("/node/metrics").await {
                assert_eq!(r.status, 200);
                return String::from_utf8_lossy(&r.body).into_owned();
            }
        }
        assert!(Instant::now() < deadline, "no answer from /node/metrics within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (at most 10 s) until the server closes `stream`; panics if it does not.
async fn closed_by_server<S: AsyncRead + Unpin>(stream: &mut S, what: &str) {
    let (_, closed) = read_until(stream, "", Duration::from_secs(10)).await;
    assert!(closed, "the server did not close the {what} connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_timeout_that_closes_a_connection_is_counted_by_reason() {
    bounded(async {
        let tmp = tempfile::tempdir().unwrap();
        // The idle timeout is the longest, so that each other timeout is what closes its connection.
        let node = start_node(&tmp.path().join("n0"), |cfg| {
            cfg.limits.tls_handshake_timeout_ms = 500;
            cfg.limits.header_read_timeout_ms = 500;
            cfg.limits.body_read_timeout_ms = 500;
            cfg.limits.idle_timeout_ms = 2_000;
        })
        .await;
        let before = metrics_text(&node).await;
        for reason in [
            "tls_handshake_timeout",
            "header_read_timeout",
            "body_read_timeout",
            "idle_timeout",
        ] {
            assert_eq!(
                counter(&before, "consort_http_connections_evicted_total", reason),
                0,
                "{reason} before any hostile client: {before}"
            );
        }
        let tls = anonymous_tls(&node);

        // A TCP connection that never starts its TLS handshake.
        let mut no_handshake = tokio::net::TcpStream::connect(&node.address).await.unwrap();
        // A request head that never ends.
        let mut half_head = connect_tls(&node.address, tls.clone(), b"http/1.1").await.unwrap();
        half_head
            .write_all(b"GET /node/commit HTTP/1.1\r\nhost: no")
            .await
            .unwrap();
        half_head.flush().await.unwrap();
        // A body that never arrives.
        let mut no_body = connect_tls(&node.address, tls.clone(), b"http/1.1").await.unwrap();
        no_body
            .write_all(slow_post_head("/gov/members/proposals:create", 1000).as_bytes())
            .await
            .unwrap();
        no_body.flush().await.unwrap();
        // A connection that completes its handshake and says nothing.
        let mut silent = connect_tls(&node.address, tls, b"http/1.1").await.unwrap();

        closed_by_server(&mut no_handshake, "handshake-less").await;
        closed_by_server(&mut half_head, "half-head").await;
        let (answer, _) = read_until(&mut no_body, "RequestTimeout", Duration::from_secs(10)).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "answer: {answer}");
        closed_by_server(&mut no_body, "body-less").await;
        closed_by_server(&mut silent, "silent").await;

        let after = metrics_text(&node).await;
        for reason in [
            "tls_handshake_timeout",
            "header_read_timeout",
            "body_read_timeout",
            "idle_timeout",
        ] {
            assert!(
                counter(&after, "consort_http_connections_evicted_total", reason) >= 1,
                "{reason} was not counted: {after}"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn displaced_and_refused_connections_are_counted() {
    bounded(async {
        let tmp = tempfile::tempdir().unwrap();
        // Three slots, a grace period long enough for the test to fill them all within it, and timeouts that do not
        // interfere.
        let node = start_node(&tmp.path().join("n0"), |cfg| {
            cfg.limits.max_open_connections = 3;
            cfg.limits.eviction_grace_ms = 3_000;
            cfg.limits.idle_timeout_ms = 60_000;
            cfg.limits.header_read_timeout_ms = 60_000;
        })
        .await;
        // Let the connections the start-up checks used leave their slots.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let tls = anonymous_tls(&node);
        let mut silent = vec![];
        for _ in 0..3 {
            silent.push(connect_tls(&node.address, tls.clone(), b"http/1.1").await.unwrap());
        }
        // Every slot is taken and within its grace period: the newcomer is closed at accept.
        let refused = match connect_tls(&node.address, tls.clone(), b"http/1.1").await {
            Err(_) => true,
            Ok(mut s) => read_until(&mut s, "", Duration::from_secs(5)).await.1,
        };
        assert!(
            refused,
            "a connection beyond the slots within the grace period was served"
        );
        // Past the grace period, a newcomer displaces the silent connection that arrived first.
        tokio::time::sleep(Duration::from_millis(3_200)).await;
        let metrics = metrics_text(&node).await;
        assert!(
            counter(&metrics, "consort_http_connections_evicted_total", "displaced") >= 1,
            "{metrics}"
        );
        assert!(
            counter(&metrics, "consort_http_connections_refused_total", "slots_busy") >= 1,
            "{metrics}"
        );
        assert!(metrics.contains("consort_rejected_connections_total "), "{metrics}");
        closed_by_server(&mut silent[0], "displaced").await;
    })
    .await;
}

/// A request body fed by the test through a channel: it sends what the test pushes and ends only when the test
/// drops the sender, so it can declare a length, send part of it and then stall or trickle.
struct ChannelBody(tokio::sync::mpsc::Receiver<bytes::Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|c| c.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// Declared length of each stalled upload: the largest body the node accepts by default (`max_body_bytes`).
const STALLED_BODY_BYTES: usize = 1024 * 1024;

/// One stalled HTTP/2 upload after another on `sender`, until `stop` fires: each declares
/// [`STALLED_BODY_BYTES`], sends all but its last 4 bytes at once, then 3 of those a byte every 400 ms (so that 64
/// of them leave less of the 64 MiB budget than a governance request needs); once the server answers
/// (or resets the stream), the next one starts. Adds the body bytes the server took in to `delivered`.
async fn stall_uploads(
    mut sender: hyper::client::conn::http2::SendRequest<ChannelBody>,
    delivered: Arc<AtomicUsize>,
    answers: Arc<std::sync::Mutex<std::collections::BTreeMap<u16, usize>>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        if sender.ready().await.is_err() {
            return;
        }
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let req = hyper::Request::post(format!("/gov/members/proposals:create?{API}"))
            .header("content-type", "application/cose")
            .header("content-length", STALLED_BODY_BYTES.to_string())
            .body(ChannelBody(rx))
            .unwrap();
        let answer = sender.send_request(req);
        let feed = async {
            let chunk = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
            let mut sent = 0;
            while sent < STALLED_BODY_BYTES - 4 {
                let n = chunk.len().min(STALLED_BODY_BYTES - 4 - sent);
                if tx.send(chunk.slice(..n)).await.is_err() {
                    return;
                }
                sent += n;
                delivered.fetch_add(n, Ordering::Relaxed);
            }
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_millis(400)).await;
                if tx.send(bytes::Bytes::from_static(b"x")).await.is_err() {
                    return;
                }
            }
            std::future::pending::<()>().await
        };
        let status = tokio::select! {
            r = answer => r.map(|r| r.status().as_u16()).unwrap_or(0),
            _ = feed => 0,
            _ = stop.changed() => return,
        };
        *answers.lock().unwrap().entry(status).or_default() += 1;
        // Pace the retries, so that the refusals do not turn into a CPU flood on a shared test machine.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_http2_uploads_do_not_exhaust_the_body_budget_for_a_member() {
    bounded(async {
        let tmp = tempfile::tempdir().unwrap();
        // The default limits: a 64 MiB body budget, 1 MiB bodies, 10 s to send one.
        let node = start_node(&tmp.path().join("n0"), |_| {}).await;
        let (member_key, member_id) = member0(&node);
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let delivered = Arc::new(AtomicUsize::new(0));
        let answers = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
        // 8 connections of 16 streams: twice as many stalled bodies as the budget holds.
        let mut tasks = vec![];
        for _ in 0..8 {
            let stream = connect_tls(&node.address, anonymous_tls(&node), b"h2").await.unwrap();
            let (sender, conn) = hyper::client::conn::http2::handshake(
                hyper_util::rt::TokioExecutor::new(),
                hyper_util::rt::TokioIo::new(stream),
            )
            .await
            .unwrap();
            tasks.push(tokio::spawn(async move {
                let _ = conn.await;
            }));
            for _ in 0..16 {
                let (sender, delivered, answers, stop) =
                    (sender.clone(), delivered.clone(), answers.clone(), stop.clone());
                tasks.push(tokio::spawn(stall_uploads(sender, delivered, answers, stop)));
            }
        }
        // Let the uploads take the budget (or be refused their share of it).
        let budget = consort_node::config::Limits::default().max_buffered_body_bytes;
        let deadline = Instant::now() + Duration::from_secs(30);
        while delivered.load(Ordering::Relaxed) < budget && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        eprintln!(
            "stalled uploads delivered {} bytes; answers so far {:?}",
            delivered.load(Ordering::Relaxed),
            answers.lock().unwrap()
        );
        assert!(
            delivered.load(Ordering::Relaxed) >= budget,
            "the uploads did not even send as much as the budget, so the attack proves nothing"
        );

        let started = Instant::now();
        let passing = member_passes_a_proposal(&node, &member_key, &member_id);
        let state = tokio::time::timeout(Duration::from_secs(30), passing)
            .await
            .expect("the member got no answer within 30 s");
        let took = started.elapsed();
        eprintln!("the member passed a proposal in {took:?} under attack");
        assert_eq!(state, "Accepted");
        assert!(took < Duration::from_secs(5), "the member needed {took:?}");

        // The stalled uploads lost their share: refused beyond their connection's, and closed once they reached
        // into the small-body reserve (which the attack, still going on, does within a few rounds if it has not yet).
        let deadline = Instant::now() + Duration::from_secs(20);
        let metrics = loop {
            let metrics = metrics_text(&node).await;
            if counter(&metrics, "consort_http_connections_evicted_total", "body_budget") >= 1
                || Instant::now() > deadline
            {
                break metrics;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        eprintln!("answers to the attack: {:?}", answers.lock().unwrap());
        assert!(
            counter(&metrics, "consort_http_connections_evicted_total", "body_budget") >= 1,
            "{metrics}"
        );
        assert!(
            counter(&metrics, "consort_http_bodies_refused_total", "connection_share") >= 1,
            "{metrics}"
        );
        stop_tx.send(true).unwrap();
        for t in tasks {
            t.abort();
        }
    })
    .await;
}

/// Keeps a keep-alive HTTP/1.1 connection busy with `GET /node/commit` every 400 ms until `stop` fires, opening a
/// new one whenever the server closes it; counts the connections it opened and those the server closed.
async fn trickle_gets(
    node_address: String,
    tls: TlsConfig,
    tally: Arc<Tally>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        let Ok(mut stream) = connect_tls(&node_address, tls.clone(), b"http/1.1").await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        tally.established.fetch_add(1, Ordering::Relaxed);
        loop {
            let get = stream
                .write_all(b"GET /node/commit HTTP/1.1\r\nhost: node\r\n\r\n")
                .await;
            if get.is_err() || stream.flush().await.is_err() {
                break;
            }
            let (answer, closed) = read_until(&mut stream, "transaction_id", Duration::from_secs(5)).await;
            if closed || !answer.contains("transaction_id") {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(400)) => {}
                _ = stop.changed() => return,
            }
        }
        tally.closed_by_server.fetch_add(1, Ordering::Relaxed);
        // Reconnect at once, but not in a tight loop on a shared test machine.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// TLS client configuration presenting member0's certificate.
fn member_tls(node: &TestNode) -> TlsConfig {
    let cert = std::fs::read_to_string(node.dir.join("member0_cert.pem")).unwrap();
    let key = std::fs::read_to_string(node.dir.join("member0_privk.pem")).unwrap();
    consort_node::net::tls::client_config(&node.service_cert(), Some((&cert, &key))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_anonymous_connections_do_not_keep_a_member_with_a_certificate_out() {
    bounded(async {
        let limit = open_files_limit();
        let wanted = consort_node::config::Limits::default().max_open_connections;
        let attackers = if limit >= wanted + SPARE_FDS {
            wanted
        } else {
            let n = limit.saturating_sub(SPARE_FDS);
            eprintln!("open-file soft limit {limit}: using {n} connections instead of {wanted}");
            n
        };
        let tmp = tempfile::tempdir().unwrap();
        // As many slots as attackers, each of which makes progress every 400 ms: within the default 1 s grace.
        let node = start_node(&tmp.path().join("n0"), |cfg| {
            cfg.limits.max_open_connections = attackers
        })
        .await;
        let (member_key, member_id) = member0(&node);
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let tally = Arc::new(Tally::default());
        let mut tasks = vec![];
        for _ in 0..attackers {
            let (addr, tls, tally, stop) = (node.address.clone(), anonymous_tls(&node), tally.clone(), stop.clone());
            tasks.push(tokio::spawn(trickle_gets(addr, tls, tally, stop)));
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while tally.established.load(Ordering::Relaxed) < attackers && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Every attacking connection is past its grace period, and each has made progress within it.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        eprintln!(
            "{} anonymous connections established, {} closed by the server",
            tally.established.load(Ordering::Relaxed),
            tally.closed_by_server.load(Ordering::Relaxed)
        );
        assert!(
            tally.established.load(Ordering::Relaxed) >= attackers,
            "the attack did not even fill the slots, so it proves nothing"
        );

        let started = Instant::now();
        let passing = member_passes_a_proposal_with(&node, member_tls(&node), &member_key, &member_id);
        let state = tokio::time::timeout(Duration::from_secs(30), passing)
            .await
            .expect("the member got no answer within 30 s");
        let took = started.elapsed();
        eprintln!("the member with a certificate passed a proposal in {took:?} under attack");
        assert_eq!(state, "Accepted");
        assert!(took < Duration::from_secs(5), "the member needed {took:?}");

        let metrics = metrics_text(&node).await;
        assert!(
            counter(&metrics, "consort_http_connections_evicted_total", "oldest_anonymous") >= 1,
            "{metrics}"
        );
        stop_tx.send(true).unwrap();
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_connections_beyond_their_cap_are_closed_while_known_clients_get_in() {
    bounded(async {
        let tmp = tempfile::tempdir().unwrap();
        // Two anonymous slots of eight, and a grace period longer than the test, so that no anonymous connection
        // is old enough to make room.
        let node = start_node(&tmp.path().join("n0"), |cfg| {
            cfg.limits.max_open_connections = 8;
            cfg.limits.max_anonymous_connections = 2;
            cfg.limits.eviction_grace_ms = 60_000;
            cfg.limits.idle_timeout_ms = 60_000;
        })
        .await;
        // Let the connections the start-up checks used leave their slots.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let tls = anonymous_tls(&node);
        let mut anonymous = vec![];
        for _ in 0..2 {
            let mut s = connect_tls(&node.address, tls.clone(), b"http/1.1").await.unwrap();
            s.write_all(b"GET /node/commit HTTP/1.1\r\nhost: node\r\n\r\n")
                .await
                .unwrap();
            let (answer, _) = read_until(&mut s, "transaction_id", Duration::from_secs(10)).await;
            assert!(answer.starts_with("HTTP/1.1 200"), "answer: {answer}");
            anonymous.push(s);
        }
        // A third anonymous client completes its handshake and is closed before it is served.
        let mut third = connect_tls(&node.address, tls.clone(), b"http/1.1").await.unwrap();
        let _ = third
            .write_all(b"GET /node/commit HTTP/1.1\r\nhost: node\r\n\r\n")
            .await;
        let (answer, closed) = read_until(&mut third, "transaction_id", Duration::from_secs(10)).await;
        assert!(
            closed && answer.is_empty(),
            "an anonymous client beyond the cap was served: {answer}"
        );
        // A user and a member presenting their certificates are served, alongside the anonymous two.
        let user = node.connect(true).await;
        assert_eq!(user.get("/node/commit").await.unwrap().status, 200);
        let (member_key, member_id) = member0(&node);
        let state = tokio::time::timeout(
            Duration::from_secs(30),
            member_passes_a_proposal_with(&node, member_tls(&node), &member_key, &member_id),
        )
        .await
        .expect("the member got no answer within 30 s");
        assert_eq!(state, "Accepted");
        let metrics = String::from_utf8_lossy(&user.get("/node/metrics").await.unwrap().body).into_owned();
        assert!(
            counter(&metrics, "consort_http_connections_evicted_total", "anonymous_cap") >= 1,
            "{metrics}"
        );
        for s in &mut anonymous {
            s.write_all(b"GET /node/commit HTTP/1.1\r\nhost: node\r\n\r\n")
                .await
                .unwrap();
            let (answer, _) = read_until(s, "transaction_id", Duration::from_secs(10)).await;
            assert!(
                answer.starts_with("HTTP/1.1 200"),
                "the anonymous two were kept: {answer}"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordinary_uploads_are_served_within_the_body_share_and_reserve() {
    bounded(async {
        let tmp = tempfile::tempdir().unwrap();
        let node = start_node(&tmp.path().join("n0"), |_| {}).await;
        // One HTTP/2 connection of a user: 32 bodies of 60 KB at once (the logging app takes messages up to 64 KiB),
        // and one body just under max_body_bytes, which the server reads in full for the app to refuse.
        let user = Arc::new(node.connect_with(true, Protocol::Http2).await);
        let mut uploads = vec![];
        for id in 0..33u32 {
            let user = user.clone();
            let len = if id == 32 { 1_000_000 } else { 60_000 };
            uploads.push(tokio::spawn(async move {
                let body = json!({"id": id, "msg": "m".repeat(len)});
                user.post_json("/app/log/private", &body).await.unwrap()
            }));
        }
        for (id, u) in uploads.into_iter().enumerate() {
            let r = u.await.unwrap();
            let text = String::from_utf8_lossy(&r.body);
            if id == 32 {
                assert_eq!(r.status, 400, "{text}");
                assert!(text.contains("msg longer than 65536 bytes"), "{text}");
            } else {
                assert_eq!(r.status, 200, "{text}");
            }
        }
        let metrics = metrics_text(&node).await;
        for reason in ["connection_share", "budget"] {
            assert_eq!(
                counter(&metrics, "consort_http_bodies_refused_total", reason),
                0,
                "{metrics}"
            );
        }
        assert_eq!(
            counter(&metrics, "consort_http_connections_evicted_total", "body_budget"),
            0,
            "{metrics}"
        );
    })
    .await;
}
