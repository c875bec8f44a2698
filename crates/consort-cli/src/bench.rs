//! `consort bench`: a load generator over pipelined HTTPS (HTTP/2 streams as each connection's window) for the
//! logging and SmallBank apps, reporting acknowledged and committed throughput and latency percentiles. With
//! `--target etcd` the same client sends the private-write load as puts to etcd's JSON gateway, for a comparison
//! in which only the server differs.
//!
//! A run has up to three phases: setup (unmeasured: preload the keys a mixed workload reads, or create the SmallBank
//! accounts), load (measured), and for SmallBank a verification that the total money equals the initial total plus
//! the acknowledged deposits, savings transactions and checks. Commit latency is measured on a sample of the writes
//! by a background task that polls the commit point on its own connection.
//!
//! etcd answers a put only once the put is committed (a quorum has it in its fsynced write-ahead log) and applied,
//! so against etcd committed = acknowledged: commit latency is the acknowledgement latency of every put, and
//! committed tx/s is acknowledged tx/s. etcd's gateway (3.4) serves JSON over HTTP/2 on its TLS client port (it
//! routes by content type: only `application/grpc` goes to gRPC), so the window means the same thing for both
//! targets: HTTP/2 streams in flight on each TLS connection.

use consort_node::client::{Connection, Protocol, Reply, TlsConfig};
use consort_node::service::TxId;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, RwLock};

/// How long the bench waits, after the load, for its last acknowledged write to be committed.
pub const COMMIT_WAIT: Duration = Duration::from_secs(60);
/// How often the commit poller reads the commit point (the resolution of commit latencies).
pub const COMMIT_POLL: Duration = Duration::from_millis(5);
/// How often the progress line is printed.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Longest a (re)connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed reconnection, so a dead node does not make the workers spin.
pub const RECONNECT_BACKOFF: Duration = Duration::from_millis(50);
/// Most TLS connections one bench opens (the node closes connections beyond its own limit).
pub const MAX_CONNECTIONS: usize = 512;
/// Most requests in flight per connection (the node allows 256 concurrent HTTP/2 streams).
pub const MAX_WINDOW: usize = 256;
/// Attempts per balance read during the SmallBank verification.
pub const VERIFY_ATTEMPTS: usize = 3;
/// Largest amount of one SmallBank operation in the generated mix (amounts are drawn from 1..=this).
pub const MAX_OP_AMOUNT: u64 = 100;
/// Total requests when neither --requests nor --duration-s is given.
pub const DEFAULT_REQUESTS: u64 = 50_000;
/// etcd's client address when `--target etcd` is given without `--address` (etcd's default client port).
pub const ETCD_DEFAULT_ADDRESS: &str = "127.0.0.1:2379";
/// etcd's JSON gateway endpoint for puts (etcd 3.4 and later).
pub const ETCD_PUT_PATH: &str = "/v3/kv/put";

/// What the bench drives.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A Consort service: the sandbox's logging or SmallBank app.
    Consort,
    /// An etcd cluster (3.4 or later) through its JSON gateway: the private-write load as `POST /v3/kv/put`.
    Etcd,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Consort => "consort",
            Target::Etcd => "etcd",
        }
    }

    /// When this target's writes count as committed (stated in every report).
    fn commit_rule(self) -> &'static str {
        match self {
            Target::Consort => {
                "a write is committed once a committed signature transaction covers it (polled on /app/commit)"
            }
            Target::Etcd => {
                "etcd acknowledges a put only once a quorum has it in its fsynced log and it is applied: committed = acknowledged"
            }
        }
    }
}

/// What the load consists of.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Logging app: private (encrypted) writes.
    Private,
    /// Logging app: public writes.
    Public,
    /// Logging app: reads and private writes over a preloaded key space (see --read-percent, --keys).
    Mixed,
    /// SmallBank: creates --accounts accounts, then the standard transaction mix; checks money is conserved.
    Smallbank,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Private => "private",
            Workload::Public => "public",
            Workload::Mixed => "mixed",
            Workload::Smallbank => "smallbank",
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// What to drive: a Consort service, or etcd's JSON gateway (private-write workload only; needs --cacert).
    #[arg(long, value_enum, default_value = "consort")]
    pub target: Target,
    /// Sandbox workspace to take the address, CA and user identity from (Consort target).
    #[arg(long, default_value = "workspace/sandbox")]
    pub workspace: PathBuf,
    /// Server address host:port; defaults to the first node of the sandbox, or 127.0.0.1:2379 for etcd.
    #[arg(long)]
    pub address: Option<String>,
    /// PEM CA certificate(s) the server certificate must chain to; defaults to the workspace's service_cert.pem
    /// (required for etcd).
    #[arg(long)]
    pub cacert: Option<PathBuf>,
    /// PEM client certificate (with --key, an EC P-256/P-384 key) for TLS client authentication; defaults to the
    /// workspace's user0 for Consort, none for etcd.
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// PEM private key of --cert.
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// etcd: prefix of the keys put (key = prefix + request number); a fresh one per run by default.
    #[arg(long)]
    pub key_prefix: Option<String>,
    /// TLS connections.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Requests in flight per connection (HTTP/2 streams).
    #[arg(long, default_value_t = 64)]
    pub window: usize,
    /// Total requests of the load phase [default: 50000 unless --duration-s].
    #[arg(long, conflicts_with = "duration_s")]
    pub requests: Option<u64>,
    /// Run the load phase for this many seconds instead of a fixed number of requests.
    #[arg(long)]
    pub duration_s: Option<f64>,
    /// Target rate in requests per second over all connections, paced; latencies then count from each
    /// request's scheduled time, so a node that falls behind shows it. Unlimited by default.
    #[arg(long)]
    pub rate: Option<f64>,
    /// The workload.
    #[arg(long, value_enum, default_value = "private")]
    pub workload: Workload,
    /// mixed: percentage of reads.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub read_percent: u8,
    /// mixed: size of the key space (written once during setup, then read and overwritten).
    #[arg(long, default_value_t = 1000)]
    pub keys: u64,
    /// smallbank: number of accounts.
    #[arg(long, default_value_t = 1000)]
    pub accounts: u64,
    /// smallbank: initial checking and (each) savings balance of every account.
    #[arg(long, default_value_t = 10_000)]
    pub initial_balance: i64,
    /// Measure commit latency on every Nth acknowledged write (0: none). Consort only: against etcd every put's
    /// acknowledgement is its commit.
    #[arg(long, default_value_t = 100)]
    pub commit_sample: u64,
    /// Per-request timeout in milliseconds (a timed-out request counts as an error of kind `timeout`).
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// Seed of the random choices (keys, operations, amounts, accounts relative to this run's fresh account
    /// ids); random by default.
    #[arg(long)]
    pub seed: Option<u64>,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Why a bench could not run, or what it found wrong.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("invalid arguments: {0}")]
    Args(String),
    #[error("connecting to {address}: {reason}")]
    Connect { address: String, reason: String },
    #[error("setup ({what}) failed: {errors} requests failed ({kinds})")]
    Setup {
        what: &'static str,
        errors: u64,
        kinds: String,
    },
    #[error("verification: {0}")]
    Verify(String),
    #[error("money not conserved: expected a total of {expected}, the accounts hold {actual}")]
    Invariant { expected: i128, actual: i128 },
    #[error("transaction {0} became Invalid")]
    Invalid(TxId),
    #[error("a worker task failed: {0}")]
    Task(String),
}

/// Entry point for `main`: errors become their message.
pub async fn run(args: BenchArgs) -> Result<(), String> {
    run_bench(args).await.map_err(|e| e.to_string())
}

/// A small, fast, seedable generator (SplitMix64) for the workload's random choices; not for cryptography.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-enough in 0..n (n > 0); the modulo bias is negligible for the small n used here.
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// The kinds of request, for per-operation counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    LogWrite,
    LogRead,
    Create,
    Balance,
    DepositChecking,
    TransactSavings,
    Amalgamate,
    WriteCheck,
    SendPayment,
    EtcdPut,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::LogWrite => "log_write",
            Op::LogRead => "log_read",
            Op::Create => "create_account",
            Op::Balance => "balance",
            Op::DepositChecking => "deposit_checking",
            Op::TransactSavings => "transact_savings",
            Op::Amalgamate => "amalgamate",
            Op::WriteCheck => "write_check",
            Op::SendPayment => "send_payment",
            Op::EtcdPut => "etcd_put",
        }
    }
}

/// One request to send.
#[derive(Debug)]
struct Call {
    op: Op,
    method: &'static str,
    path: String,
    body: Option<Vec<u8>>,
    /// Whether a success commits a transaction (so its TxID can be waited for).
    write: bool,
    /// Whether the acknowledgement of this write already means committed (etcd puts).
    committed_on_ack: bool,
    /// SmallBank: money this request adds to (or, negative, removes from) all accounts together if it succeeds.
    flow: i64,
}

impl Call {
    fn post(op: Op, path: &str, body: serde_json::Value, flow: i64) -> Call {
        Call {
            op,
            method: "POST",
            path: path.to_string(),
            body: Some(body.to_string().into_bytes()),
            write: op != Op::Balance,
            committed_on_ack: false,
            flow,
        }
    }

    /// An etcd put through the JSON gateway (keys and values are base64 in its JSON) at `uri`, an absolute URI:
    /// over HTTP/2 that sends the `:scheme` and `:authority` pseudo-headers, which etcd's Go server requires.
    fn etcd_put(uri: &str, key: &str, value: &str) -> Call {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        Call {
            op: Op::EtcdPut,
            method: "POST",
            path: uri.to_string(),
            body: Some(
                serde_json::json!({"key": b64(key), "value": b64(value)})
                    .to_string()
                    .into_bytes(),
            ),
            write: true,
            committed_on_ack: true,
            flow: 0,
        }
    }

    fn get(op: Op, path: String) -> Call {
        Call {
            op,
            method: "GET",
            path,
            body: None,
            write: false,
            committed_on_ack: false,
            flow: 0,
        }
    }
}

/// Builds the `i`th request of a phase.
type Generator = dyn Fn(u64, &mut Rng) -> Call + Send + Sync;

/// A connection that workers share and re-establish after a failure.
struct Slot {
    address: String,
    tls: TlsConfig,
    /// (generation, connection): a reconnection bumps the generation, so concurrent failures reconnect once.
    conn: RwLock<(u64, Connection)>,
}

async fn connect(address: &str, tls: &TlsConfig) -> Result<Connection, BenchError> {
    let err = |reason: String| BenchError::Connect {
        address: address.to_string(),
        reason,
    };
    match tokio::time::timeout(
        CONNECT_TIMEOUT,
        Connection::connect(address, tls.clone(), Protocol::Http2),
    )
    .await
    {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(err(e.to_string())),
        Err(_) => Err(err(format!("no connection within {CONNECT_TIMEOUT:?}"))),
    }
}

impl Slot {
    async fn open(address: &str, tls: &TlsConfig) -> Result<Slot, BenchError> {
        let conn = connect(address, tls).await?;
        Ok(Slot {
            address: address.to_string(),
            tls: tls.clone(),
            conn: RwLock::new((0, conn)),
        })
    }

    async fn current(&self) -> (u64, Connection) {
        self.conn.read().await.clone()
    }

    /// Replaces the connection of generation `generation` (unless another worker already did).
    async fn reconnect(&self, generation: u64) {
        let mut guard = self.conn.write().await;
        if guard.0 != generation {
            return;
        }
        match connect(&self.address, &self.tls).await {
            Ok(c) => *guard = (generation + 1, c),
            Err(e) => {
                tracing::warn!("{e}");
                tokio::time::sleep(RECONNECT_BACKOFF).await;
            }
        }
    }
}

/// How one request ended.
#[derive(Debug)]
enum Outcome {
    /// 2xx; the TxID header if it parsed; the reply.
    Ok(Option<TxId>, Reply),
    /// Refused by a business rule (SmallBank `InsufficientFunds`): a definite answer that wrote nothing.
    Rejected,
    /// A failure: its kind, and whether the request certainly wrote nothing (4xx) or its effect is unknown.
    Error { kind: String, definitely_not_applied: bool },
}

async fn send(slot: &Slot, call: &Call, timeout: Duration) -> Outcome {
    let (generation, conn) = slot.current().await;
    let request = conn.request(call.method, &call.path, call.body.clone());
    match tokio::time::timeout(timeout, request).await {
        Ok(Ok(reply)) if (200..300).contains(&reply.status) => {
            Outcome::Ok(reply.txid.as_deref().and_then(|t| t.parse().ok()), reply)
        }
        Ok(Ok(reply)) => {
            let code = reply
                .json()
                .ok()
                .and_then(|j| j["error"]["code"].as_str().map(str::to_string));
            if reply.status == 400 && code.as_deref() == Some(consort_node::apps::smallbank::INSUFFICIENT_FUNDS) {
                Outcome::Rejected
            } else {
                Outcome::Error {
                    kind: format!("http_{}", reply.status),
                    definitely_not_applied: reply.status < 500,
                }
            }
        }
        Ok(Err(e)) => {
            tracing::debug!("request failed: {e}");
            slot.reconnect(generation).await;
            Outcome::Error {
                kind: "connection".into(),
                definitely_not_applied: false,
            }
        }
        Err(_) => Outcome::Error {
            kind: "timeout".into(),
            definitely_not_applied: false,
        },
    }
}

/// Counters the progress line reads while a phase runs.
#[derive(Debug, Default)]
struct Live {
    sent: AtomicU64,
    acked: AtomicU64,
    errors: AtomicU64,
    /// Commit point seqno as last seen by the commit poller.
    commit_seqno: AtomicU64,
}

/// What a phase's workers observed.
#[derive(Debug, Default)]
struct Stats {
    sent: u64,
    ok: u64,
    ok_writes: u64,
    rejected: u64,
    ack_latency: Vec<Duration>,
    errors: BTreeMap<String, u64>,
    ops: BTreeMap<&'static str, u64>,
    /// Sum of the flows of the successful requests.
    flow: i128,
    /// Requests with a non-zero flow whose outcome is unknown (timeouts, connection errors, 5xx).
    unknown_flows: u64,
    /// The highest TxID of an acknowledged write.
    last_write: Option<TxId>,
    /// etcd: the highest revision an acknowledged put reported.
    last_revision: Option<u64>,
    /// When the last response arrived.
    last_ack: Option<Instant>,
}

impl Stats {
    fn merge(&mut self, o: Stats) {
        self.sent += o.sent;
        self.ok += o.ok;
        self.ok_writes += o.ok_writes;
        self.rejected += o.rejected;
        self.ack_latency.extend(o.ack_latency);
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for (k, v) in o.ops {
            *self.ops.entry(k).or_default() += v;
        }
        self.flow += o.flow;
        self.unknown_flows += o.unknown_flows;
        self.last_write = self.last_write.max(o.last_write);
        self.last_revision = self.last_revision.max(o.last_revision);
        self.last_ack = self.last_ack.max(o.last_ack);
    }

    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    fn error_kinds(&self) -> String {
        self.errors
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// When a phase stops and how fast it sends.
#[derive(Debug, Clone, Copy)]
struct Plan {
    total: Option<u64>,
    until: Option<Duration>,
    rate: Option<f64>,
}

/// A commit-latency sample: when the write was sent and the TxID it got.
#[derive(Debug)]
struct Sample {
    sent: Instant,
    txid: TxId,
}

/// Runs `connections × window` workers until the plan says stop; returns the merged stats and the start time.
#[allow(clippy::too_many_arguments)]
async fn run_phase(
    slots: &[Arc<Slot>],
    window: usize,
    generator: Arc<Generator>,
    plan: Plan,
    timeout: Duration,
    seed: u64,
    live: Arc<Live>,
    sampler: Option<(u64, mpsc::UnboundedSender<Sample>)>,
) -> Result<(Stats, Instant), BenchError> {
    let next = Arc::new(AtomicU64::new(0));
    let writes = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (c, slot) in slots.iter().enumerate() {
        for w in 0..window {
            let (slot, next, writes, live, generator) = (
                slot.clone(),
                next.clone(),
                writes.clone(),
                live.clone(),
                generator.clone(),
            );
            let sampler = sampler.clone();
            let mut rng = Rng(seed ^ ((c * window + w) as u64).wrapping_mul(0xa076_1d64_78bd_642f));
            tasks.spawn(async move {
                let mut st = Stats::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if plan.total.is_some_and(|n| i >= n) {
                        break;
                    }
                    let due = plan.rate.map(|r| started + Duration::from_secs_f64(i as f64 / r));
                    if let Some(due) = due {
                        if plan.until.is_some_and(|u| due >= started + u) {
                            break;
                        }
                        tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
                    }
                    if plan.until.is_some_and(|u| started.elapsed() >= u) {
                        break;
                    }
                    let call = generator(i, &mut rng);
                    // Paced: latency counts from the scheduled time, so waiting for the window is not hidden.
                    let t0 = due.unwrap_or_else(Instant::now);
                    st.sent += 1;
                    live.sent.fetch_add(1, Ordering::Relaxed);
                    let outcome = send(&slot, &call, timeout).await;
                    let now = Instant::now();
                    match outcome {
                        Outcome::Ok(txid, reply) => {
                            live.acked.fetch_add(1, Ordering::Relaxed);
                            st.ok += 1;
                            st.ack_latency.push(now.saturating_duration_since(t0));
                            st.last_ack = st.last_ack.max(Some(now));
                            *st.ops.entry(call.op.name()).or_default() += 1;
                            st.flow += i128::from(call.flow);
                            if call.write && call.committed_on_ack {
                                st.ok_writes += 1;
                                let revision = etcd_revision(&reply);
                                st.last_revision = st.last_revision.max(revision);
                                if let Some(r) = revision {
                                    live.commit_seqno.fetch_max(r, Ordering::Relaxed);
                                }
                            } else if let (true, Some(txid)) = (call.write, txid) {
                                st.ok_writes += 1;
                                st.last_write = st.last_write.max(Some(txid));
                                let n = writes.fetch_add(1, Ordering::Relaxed);
                                if let Some((every, tx)) = &sampler {
                                    if *every > 0 && n % every == 0 {
                                        let _ = tx.send(Sample { sent: t0, txid });
                                    }
                                }
                            }
                        }
                        Outcome::Rejected => {
                            live.acked.fetch_add(1, Ordering::Relaxed);
                            st.rejected += 1;
                            st.ack_latency.push(now.saturating_duration_since(t0));
                            st.last_ack = st.last_ack.max(Some(now));
                            *st.ops.entry(call.op.name()).or_default() += 1;
                        }
                        Outcome::Error {
                            kind,
                            definitely_not_applied,
                        } => {
                            live.errors.fetch_add(1, Ordering::Relaxed);
                            *st.errors.entry(kind).or_default() += 1;
                            if call.flow != 0 && !definitely_not_applied {
                                st.unknown_flows += 1;
                            }
                        }
                    }
                }
                st
            });
        }
    }
    drop(sampler);
    let mut stats = Stats::default();
    while let Some(r) = tasks.join_next().await {
        stats.merge(r.map_err(|e| BenchError::Task(e.to_string()))?);
    }
    Ok((stats, started))
}

/// The revision in an etcd gateway reply (`{"header": {"revision": "123", ...}}`; int64s are JSON strings).
fn etcd_revision(reply: &Reply) -> Option<u64> {
    let v = reply.json().ok()?;
    let r = &v["header"]["revision"];
    r.as_str().and_then(|s| s.parse().ok()).or_else(|| r.as_u64())
}

/// Prints a progress line to stderr every [`PROGRESS_EVERY`] until aborted; `commit_label` names what
/// `live.commit_seqno` holds (Consort's commit seqno, or etcd's latest revision).
fn spawn_progress(phase: &'static str, commit_label: &'static str, live: Arc<Live>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let started = Instant::now();
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        tick.tick().await;
        let mut last_acked = 0;
        loop {
            tick.tick().await;
            let acked = live.acked.load(Ordering::Relaxed);
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "bench {phase} {secs:6.1}s  sent {}  acked {acked}  errors {}  {:.0} tx/s (last {:.0}s)  {:.0} tx/s (avg)  {commit_label} {}",
                live.sent.load(Ordering::Relaxed),
                live.errors.load(Ordering::Relaxed),
                (acked - last_acked) as f64 / PROGRESS_EVERY.as_secs_f64(),
                PROGRESS_EVERY.as_secs_f64(),
                acked as f64 / secs,
                live.commit_seqno.load(Ordering::Relaxed),
            );
            last_acked = acked;
        }
    })
}

/// What the commit poller found.
#[derive(Debug, Default)]
struct CommitReport {
    latencies: Vec<Duration>,
    /// When the target (the last acknowledged write) was first seen Committed.
    target_committed_at: Option<Instant>,
    invalid: Option<TxId>,
    unresolved: usize,
}

async fn commit_point(conn: &Connection) -> Option<TxId> {
    let r = tokio::time::timeout(CONNECT_TIMEOUT, conn.get("/app/commit"))
        .await
        .ok()?
        .ok()?;
    r.json().ok()?["transaction_id"].as_str()?.parse().ok()
}

async fn tx_status(conn: &Connection, txid: TxId) -> Option<String> {
    let path = format!("/app/tx?transaction_id={txid}");
    let r = tokio::time::timeout(CONNECT_TIMEOUT, conn.get(&path))
        .await
        .ok()?
        .ok()?;
    r.json().ok()?["status"].as_str().map(str::to_string)
}

/// Whether `txid` is committed given the commit point `commit`: certainly when it is in the commit point's view
/// and at or below it; across views, asks `/app/tx`. Some(false) means Invalid.
async fn resolve(conn: &Connection, txid: TxId, commit: TxId) -> Option<bool> {
    if txid.seqno > commit.seqno {
        return None;
    }
    if txid.view == commit.view {
        return Some(true);
    }
    match tx_status(conn, txid).await.as_deref() {
        Some("Committed") => Some(true),
        Some("Invalid") => Some(false),
        _ => None,
    }
}

/// Polls the commit point, resolving samples as they become committed, until it has been given its target
/// (the last acknowledged write, or None) and has resolved it and every sample, or [`COMMIT_WAIT`] has passed.
async fn commit_poller(
    conn: Connection,
    mut samples: mpsc::UnboundedReceiver<Sample>,
    mut target_rx: oneshot::Receiver<Option<TxId>>,
    live: Arc<Live>,
) -> CommitReport {
    let mut report = CommitReport::default();
    let mut pending: Vec<Sample> = vec![];
    let mut target: Option<Option<TxId>> = None;
    let mut deadline: Option<Instant> = None;
    let mut tick = tokio::time::interval(COMMIT_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        while let Ok(s) = samples.try_recv() {
            pending.push(s);
        }
        if target.is_none() {
            match target_rx.try_recv() {
                Ok(t) => {
                    target = Some(t);
                    deadline = Some(Instant::now() + COMMIT_WAIT);
                }
                Err(oneshot::error::TryRecvError::Closed) => {
                    target = Some(None);
                    deadline = Some(Instant::now() + COMMIT_WAIT);
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
        }
        if let Some(commit) = commit_point(&conn).await {
            let now = Instant::now();
            live.commit_seqno.store(commit.seqno, Ordering::Relaxed);
            let mut still = Vec::with_capacity(pending.len());
            for s in pending.drain(..) {
                match resolve(&conn, s.txid, commit).await {
                    Some(true) => report.latencies.push(now.saturating_duration_since(s.sent)),
                    Some(false) => report.invalid = report.invalid.or(Some(s.txid)),
                    None => still.push(s),
                }
            }
            pending = still;
            if let Some(Some(t)) = target {
                match resolve(&conn, t, commit).await {
                    Some(true) => {
                        report.target_committed_at = Some(now);
                        target = Some(None);
                    }
                    Some(false) => {
                        report.invalid = report.invalid.or(Some(t));
                        target = Some(None);
                    }
                    None => {}
                }
            }
        }
        let target_done = target == Some(None);
        if target_done && pending.is_empty() && samples.is_closed() && samples.is_empty() {
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            report.unresolved = pending.len();
            break;
        }
    }
    report
}

/// A JSON number when it fits in i64 (always, for sane account counts), else a decimal string.
fn big(v: i128) -> serde_json::Value {
    i64::try_from(v).map_or_else(|_| serde_json::Value::String(v.to_string()), serde_json::Value::from)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn latency_json(mut v: Vec<Duration>) -> serde_json::Value {
    v.sort_unstable();
    serde_json::json!({
        "samples": v.len(),
        "p50": ms(percentile(&v, 0.50)),
        "p90": ms(percentile(&v, 0.90)),
        "p99": ms(percentile(&v, 0.99)),
        "max": ms(v.last().copied().unwrap_or_default()),
    })
}

/// The load phase's request generator for `args.workload`; `account_base` is the first SmallBank account id.
fn load_generator(args: &BenchArgs, account_base: u64) -> Arc<Generator> {
    let (keys, reads, accounts) = (args.keys.max(1), u64::from(args.read_percent), args.accounts);
    match args.workload {
        Workload::Private | Workload::Public => {
            let path = if args.workload == Workload::Private {
                "/app/log/private"
            } else {
                "/app/log/public"
            };
            Arc::new(move |i, _| {
                let body = serde_json::json!({"id": i, "msg": format!("bench message {i}")});
                Call::post(Op::LogWrite, path, body, 0)
            })
        }
        Workload::Mixed => Arc::new(move |i, rng| {
            let id = rng.below(keys);
            if rng.below(100) < reads {
                Call::get(Op::LogRead, format!("/app/log/private?id={id}"))
            } else {
                let body = serde_json::json!({"id": id, "msg": format!("bench message {i}")});
                Call::post(Op::LogWrite, "/app/log/private", body, 0)
            }
        }),
        Workload::Smallbank => Arc::new(move |_, rng| smallbank_call(rng, account_base, accounts)),
    }
}

/// One request of the standard SmallBank mix: amalgamate 15%, balance 15%, deposit checking 15%, send payment
/// 25%, transact savings 15%, write check 15%.
fn smallbank_call(rng: &mut Rng, base: u64, accounts: u64) -> Call {
    let a = rng.below(accounts);
    // A second, different account (accounts >= 2 is checked up front).
    let b = (a + 1 + rng.below(accounts.saturating_sub(1).max(1))) % accounts.max(1);
    let (a, b) = (base + a, base + b);
    // Both at most MAX_OP_AMOUNT, so the conversions are lossless.
    let amount = (rng.below(MAX_OP_AMOUNT) + 1) as i64;
    let p = "/app/smallbank/";
    match rng.below(100) {
        0..=14 => Call::post(
            Op::Amalgamate,
            &format!("{p}amalgamate"),
            serde_json::json!({"from": a, "to": b}),
            0,
        ),
        15..=29 => Call::post(Op::Balance, &format!("{p}balance"), serde_json::json!({"id": a}), 0),
        30..=44 => Call::post(
            Op::DepositChecking,
            &format!("{p}deposit_checking"),
            serde_json::json!({"id": a, "amount": amount}),
            amount,
        ),
        45..=69 => Call::post(
            Op::SendPayment,
            &format!("{p}send_payment"),
            serde_json::json!({"from": a, "to": b, "amount": amount}),
            0,
        ),
        70..=84 => {
            let amount = if rng.below(2) == 0 { amount } else { -amount };
            Call::post(
                Op::TransactSavings,
                &format!("{p}transact_savings"),
                serde_json::json!({"id": a, "amount": amount}),
                amount,
            )
        }
        _ => Call::post(
            Op::WriteCheck,
            &format!("{p}write_check"),
            serde_json::json!({"id": a, "amount": amount}),
            -amount,
        ),
    }
}

/// Sums the balances of accounts `base..base + n` (after the load, so nothing changes meanwhile).
async fn sum_balances(
    slots: &[Arc<Slot>],
    window: usize,
    base: u64,
    n: u64,
    timeout: Duration,
) -> Result<i128, BenchError> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for slot in slots {
        for _ in 0..window {
            let (slot, next) = (slot.clone(), next.clone());
            tasks.spawn(async move {
                let mut sum: i128 = 0;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let id = base + i;
                    let call = Call::get(Op::Balance, format!("/app/smallbank/balance?id={id}"));
                    let mut found = None;
                    for _ in 0..VERIFY_ATTEMPTS {
                        if let Outcome::Ok(_, reply) = send(&slot, &call, timeout).await {
                            let v = reply
                                .json()
                                .map_err(|e| BenchError::Verify(format!("balance of {id}: {e}")))?;
                            let t = v["total"]
                                .as_i64()
                                .ok_or_else(|| BenchError::Verify(format!("balance of {id}: no integer total")))?;
                            found = Some(t);
                            break;
                        }
                    }
                    let t = found.ok_or_else(|| {
                        BenchError::Verify(format!("could not read account {id} in {VERIFY_ATTEMPTS} attempts"))
                    })?;
                    sum += i128::from(t);
                }
                Ok::<i128, BenchError>(sum)
            });
        }
    }
    let mut sum: i128 = 0;
    while let Some(r) = tasks.join_next().await {
        sum += r.map_err(|e| BenchError::Task(e.to_string()))??;
    }
    Ok(sum)
}

fn read_file(path: PathBuf) -> Result<String, BenchError> {
    std::fs::read_to_string(&path).map_err(|e| BenchError::File {
        path,
        reason: e.to_string(),
    })
}

/// Opens `n` connections concurrently.
async fn open_slots(address: &str, tls: &TlsConfig, n: usize) -> Result<Vec<Arc<Slot>>, BenchError> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (address, tls) = (address.to_string(), tls.clone());
        tasks.spawn(async move { Slot::open(&address, &tls).await });
    }
    let mut slots = vec![];
    while let Some(r) = tasks.join_next().await {
        slots.push(Arc::new(r.map_err(|e| BenchError::Task(e.to_string()))??));
    }
    Ok(slots)
}

fn validate(args: &BenchArgs) -> Result<(), BenchError> {
    let bad = |m: &str| Err(BenchError::Args(m.to_string()));
    if !(1..=MAX_CONNECTIONS).contains(&args.connections) {
        return bad(&format!("--connections must be in 1..={MAX_CONNECTIONS}"));
    }
    if !(1..=MAX_WINDOW).contains(&args.window) {
        return bad(&format!("--window must be in 1..={MAX_WINDOW}"));
    }
    if args.duration_s.is_some_and(|d| !(d.is_finite() && d > 0.0 && d < 1e9)) {
        return bad("--duration-s must be a positive number of seconds");
    }
    if args.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return bad("--rate must be a positive number of requests per second");
    }
    if args.timeout_ms == 0 {
        return bad("--timeout-ms must be positive");
    }
    if args.target == Target::Etcd {
        if args.workload != Workload::Private {
            return bad(&format!(
                "--target etcd runs only the private-write workload (puts of the same size); --workload {} has no etcd equivalent",
                args.workload.name()
            ));
        }
        if args.cacert.is_none() {
            return bad("--target etcd needs --cacert (the CA of etcd's client certificate)");
        }
    } else if args.key_prefix.is_some() {
        return bad("--key-prefix applies only to --target etcd");
    }
    if args.workload == Workload::Smallbank {
        if args.accounts < 2 {
            return bad("--accounts must be at least 2");
        }
        if !(0..=consort_node::apps::smallbank::MAX_AMOUNT).contains(&args.initial_balance) {
            return bad("--initial-balance out of range");
        }
    }
    Ok(())
}

/// The address and TLS client configuration: explicit options first, then the sandbox workspace (Consort) or
/// etcd's defaults (no client certificate, 127.0.0.1:2379).
fn endpoint(args: &BenchArgs) -> Result<(String, TlsConfig), BenchError> {
    let ws = &args.workspace;
    let ca = match (&args.cacert, args.target) {
        (Some(p), _) => read_file(p.clone())?,
        (None, Target::Consort) => read_file(ws.join("service_cert.pem"))?,
        (None, Target::Etcd) => return Err(BenchError::Args("--target etcd needs --cacert".into())),
    };
    let identity = match (&args.cert, &args.key, args.target) {
        (Some(c), Some(k), _) => Some((read_file(c.clone())?, read_file(k.clone())?)),
        (None, None, Target::Consort) => Some((
            read_file(ws.join("user0_cert.pem"))?,
            read_file(ws.join("user0_privk.pem"))?,
        )),
        (None, None, Target::Etcd) => None,
        _ => return Err(BenchError::Args("--cert and --key go together".into())),
    };
    let address = match (&args.address, args.target) {
        (Some(a), _) => a.clone(),
        (None, Target::Etcd) => ETCD_DEFAULT_ADDRESS.to_string(),
        (None, Target::Consort) => {
            let path = ws.join("sandbox.json");
            let sb: serde_json::Value =
                serde_json::from_str(&read_file(path.clone())?).map_err(|e| BenchError::File {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            sb["nodes"][0]["rpc_address"]
                .as_str()
                .ok_or_else(|| BenchError::File {
                    path,
                    reason: "no nodes[0].rpc_address".into(),
                })?
                .to_string()
        }
    };
    let identity = identity.as_ref().map(|(c, k)| (c.as_str(), k.as_str()));
    let tls = consort_node::tls::client_config(&ca, identity).map_err(|e| BenchError::Connect {
        address: address.clone(),
        reason: e.to_string(),
    })?;
    Ok((address, tls))
}

async fn run_bench(args: BenchArgs) -> Result<(), BenchError> {
    validate(&args)?;
    let (address, tls) = endpoint(&args)?;
    let commit_label = match args.target {
        Target::Consort => "commit seqno",
        Target::Etcd => "revision",
    };
    let timeout = Duration::from_millis(args.timeout_ms);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut clock_rng = Rng(now.as_nanos() as u64 ^ u64::from(std::process::id()));
    let seed = args.seed.unwrap_or_else(|| clock_rng.next_u64());
    let mut rng = Rng(seed);
    // Fresh account ids on every run (also with a fixed seed, which fixes the mix relative to the first id), so
    // repeated runs against one service do not collide.
    let account_base = (clock_rng.next_u64() >> 24) << 20;
    let slots = open_slots(&address, &tls, args.connections).await?;
    let live = Arc::new(Live::default());

    // Setup (unmeasured).
    let setup: Option<(&'static str, u64, Arc<Generator>)> = match args.workload {
        Workload::Mixed => Some((
            "preload keys",
            args.keys.max(1),
            Arc::new(|i, _| {
                let body = serde_json::json!({"id": i, "msg": format!("bench message {i}")});
                Call::post(Op::LogWrite, "/app/log/private", body, 0)
            }),
        )),
        Workload::Smallbank => {
            let balance = args.initial_balance;
            Some((
                "create accounts",
                args.accounts,
                Arc::new(move |i, _| {
                    let id = account_base + i;
                    let body = serde_json::json!({"id": id, "name": format!("bench{id}"), "checking": balance, "savings": balance});
                    Call::post(Op::Create, "/app/smallbank/account", body, 0)
                }),
            ))
        }
        Workload::Private | Workload::Public => None,
    };
    if let Some((what, n, generator)) = setup {
        let progress = (!args.quiet).then(|| spawn_progress("setup", commit_label, live.clone()));
        let plan = Plan {
            total: Some(n),
            until: None,
            rate: None,
        };
        let result = run_phase(&slots, args.window, generator, plan, timeout, seed, live.clone(), None).await;
        if let Some(p) = progress {
            p.abort();
        }
        let (stats, _) = result?;
        if stats.error_count() > 0 || stats.rejected > 0 {
            return Err(BenchError::Setup {
                what,
                errors: stats.error_count() + stats.rejected,
                kinds: stats.error_kinds(),
            });
        }
    }

    // Load (measured), with the commit poller on its own connection (Consort; etcd acknowledges only committed
    // puts, so it needs none).
    let live = Arc::new(Live::default());
    let (sample_tx, sample_rx) = mpsc::unbounded_channel();
    let (target_tx, target_rx) = oneshot::channel();
    let poller = match args.target {
        Target::Consort => Some(tokio::spawn(commit_poller(
            connect(&address, &tls).await?,
            sample_rx,
            target_rx,
            live.clone(),
        ))),
        Target::Etcd => None,
    };
    let generator = match args.target {
        Target::Consort => load_generator(&args, account_base),
        Target::Etcd => {
            let prefix = args
                .key_prefix
                .clone()
                .unwrap_or_else(|| format!("consort-bench/{seed:016x}/"));
            let uri = format!("https://{address}{ETCD_PUT_PATH}");
            Arc::new(move |i, _: &mut Rng| Call::etcd_put(&uri, &format!("{prefix}{i}"), &format!("bench message {i}")))
                as Arc<Generator>
        }
    };
    let plan = Plan {
        total: match (args.requests, args.duration_s) {
            (Some(n), _) => Some(n),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_REQUESTS),
        },
        until: args.duration_s.map(Duration::from_secs_f64),
        rate: args.rate,
    };
    let progress = (!args.quiet).then(|| spawn_progress("load", commit_label, live.clone()));
    let result = run_phase(
        &slots,
        args.window,
        generator,
        plan,
        timeout,
        rng.next_u64(),
        live.clone(),
        Some((args.commit_sample, sample_tx)),
    )
    .await;
    let (stats, started) = result?;
    let _ = target_tx.send(stats.last_write);
    let commits = match poller {
        Some(p) => p.await.map_err(|e| BenchError::Task(e.to_string()))?,
        // Every acknowledged put was committed when acknowledged: the commit latencies are the acknowledgement
        // latencies (all of them, not a sample) and the last put was committed when its answer arrived.
        None => CommitReport {
            latencies: stats.ack_latency.clone(),
            target_committed_at: stats.last_ack,
            invalid: None,
            unresolved: 0,
        },
    };
    if let Some(p) = progress {
        p.abort();
    }

    // Verification (SmallBank).
    let invariant = if args.workload == Workload::Smallbank {
        let actual = sum_balances(&slots, args.window, account_base, args.accounts, timeout).await?;
        let initial = i128::from(args.initial_balance) * 2 * i128::from(args.accounts);
        let expected = initial + stats.flow;
        Some((expected, actual, stats.unknown_flows))
    } else {
        None
    };

    // Report.
    let acknowledged = stats.ok + stats.rejected;
    let acked_elapsed = stats
        .last_ack
        .map_or(Duration::ZERO, |t| t.saturating_duration_since(started));
    let rate = |n: u64, d: Duration| (d > Duration::ZERO).then(|| n as f64 / d.as_secs_f64());
    let acked_tps = rate(acknowledged, acked_elapsed);
    let committed_elapsed = commits
        .target_committed_at
        .map(|t| t.saturating_duration_since(started));
    let committed_tps = committed_elapsed.and_then(|d| rate(acknowledged, d));
    let invariant_json = invariant.map(|(expected, actual, unknown)| {
        let passed = (unknown == 0).then_some(expected == actual);
        serde_json::json!({
            "checked": true,
            "passed": passed,
            "initial_total": big(i128::from(args.initial_balance) * 2 * i128::from(args.accounts)),
            "expected_total": big(expected),
            "actual_total": big(actual),
            "unknown_outcomes": unknown,
        })
    });
    let last_write = match args.target {
        Target::Consort => stats.last_write.map(|t| t.to_string()),
        Target::Etcd => stats.last_revision.map(|r| format!("revision {r}")),
    };
    let report = serde_json::json!({
        "target": args.target.name(),
        "commit_rule": args.target.commit_rule(),
        "protocol": "h2",
        "workload": args.workload.name(),
        "address": address,
        "connections": args.connections,
        "window": args.window,
        "target_rate": args.rate,
        "duration_target_s": args.duration_s,
        "seed": seed,
        "requests": stats.sent,
        "acknowledged": acknowledged,
        "ok": stats.ok,
        "rejected": stats.rejected,
        "writes": stats.ok_writes,
        "errors": stats.error_count(),
        "errors_by_kind": stats.errors,
        "ops": stats.ops,
        "duration_s": acked_elapsed.as_secs_f64(),
        "acked_tx_per_s": acked_tps,
        "committed_tx_per_s": committed_tps,
        "commit_duration_s": committed_elapsed.map(|d| d.as_secs_f64()),
        "last_write": last_write,
        "ack_latency_ms": latency_json(stats.ack_latency),
        "commit_latency_ms": latency_json(commits.latencies),
        "commit_samples_unresolved": commits.unresolved,
        "invariant": invariant_json,
    });
    if args.json {
        println!("{report}");
    } else {
        print_text(&report);
    }
    if let Some(t) = commits.invalid {
        return Err(BenchError::Invalid(t));
    }
    if let Some((expected, actual, 0)) = invariant {
        if expected != actual {
            return Err(BenchError::Invariant { expected, actual });
        }
    }
    Ok(())
}

fn print_text(r: &serde_json::Value) {
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
    println!(
        "{} target, {} workload: {} requests over {} connections x {} window in {:.2} s (rate {})",
        r["target"].as_str().unwrap_or(""),
        r["workload"].as_str().unwrap_or(""),
        r["requests"],
        r["connections"],
        r["window"],
        f(&r["duration_s"]),
        r["target_rate"]
            .as_f64()
            .map_or("unlimited".to_string(), |x| format!("{x:.0}/s")),
    );
    println!(
        "acknowledged: {:.0} tx/s ({} acknowledged, {} refused for insufficient funds, {} writes)",
        f(&r["acked_tx_per_s"]),
        r["acknowledged"],
        r["rejected"],
        r["writes"]
    );
    match r["committed_tx_per_s"].as_f64() {
        Some(c) if r["target"] == "etcd" => println!(
            "committed:    {c:.0} tx/s (= acknowledged: etcd answers a put only once it is committed; last {})",
            r["last_write"].as_str().unwrap_or("-"),
        ),
        Some(c) => println!(
            "committed:    {c:.0} tx/s (last acknowledged write {} committed at {:.3} s)",
            r["last_write"].as_str().unwrap_or("-"),
            f(&r["commit_duration_s"])
        ),
        None if r["last_write"].is_null() => println!("committed:    (no writes)"),
        None => println!("committed:    (last write not committed within {COMMIT_WAIT:?})"),
    }
    for (label, key) in [
        ("ack latency ms:   ", "ack_latency_ms"),
        ("commit latency ms:", "commit_latency_ms"),
    ] {
        let l = &r[key];
        println!(
            "{label} p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  ({} samples)",
            f(&l["p50"]),
            f(&l["p90"]),
            f(&l["p99"]),
            f(&l["max"]),
            l["samples"]
        );
    }
    match r["errors_by_kind"].as_object() {
        Some(m) if !m.is_empty() => {
            let kinds: Vec<String> = m.iter().map(|(k, v)| format!("{k} {v}")).collect();
            println!("errors:       {} ({})", r["errors"], kinds.join(", "));
        }
        _ => println!("errors:       none"),
    }
    if let Some(inv) = r["invariant"].as_object() {
        let (e, a) = (&inv["expected_total"], &inv["actual_total"]);
        match inv["passed"].as_bool() {
            Some(true) => println!("invariant:    PASS total money conserved (expected {e}, found {a})"),
            Some(false) => println!("invariant:    FAIL total money not conserved (expected {e}, found {a})"),
            None => println!(
                "invariant:    UNKNOWN {} money-changing requests have unknown outcomes (expected {e} without them, found {a})",
                inv["unknown_outcomes"]
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smallbank_mix_uses_two_distinct_accounts_and_signed_flows() {
        let mut rng = Rng(1);
        let mut seen = BTreeMap::new();
        for _ in 0..10_000 {
            let call = smallbank_call(&mut rng, 1000, 2);
            *seen.entry(call.op).or_insert(0u32) += 1;
            let body: serde_json::Value = serde_json::from_slice(call.body.as_deref().unwrap_or_default()).unwrap();
            if let (Some(from), Some(to)) = (body["from"].as_u64(), body["to"].as_u64()) {
                assert_ne!(from, to);
                assert!((1000..1002).contains(&from) && (1000..1002).contains(&to));
            }
            let amount = body["amount"].as_i64().unwrap_or(0);
            match call.op {
                Op::DepositChecking | Op::TransactSavings => assert_eq!(call.flow, amount),
                Op::WriteCheck => assert_eq!(call.flow, -amount),
                _ => assert_eq!(call.flow, 0),
            }
            assert!(amount.unsigned_abs() <= MAX_OP_AMOUNT);
            assert_eq!(call.write, call.op != Op::Balance);
        }
        assert_eq!(seen.len(), 6, "every operation of the mix occurs: {seen:?}");
        assert!(
            seen[&Op::SendPayment] > seen[&Op::Balance],
            "send payment is 25%, balance 15%"
        );
    }

    #[test]
    fn percentiles_of_sorted_latencies() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 0.5), Duration::from_millis(51));
        assert_eq!(percentile(&v, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
        assert_eq!(big(5), serde_json::json!(5));
        assert_eq!(big(i128::MAX), serde_json::json!(i128::MAX.to_string()));
    }
}
