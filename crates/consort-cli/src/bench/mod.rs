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
//!
//! The erc20 workload ([`erc20`]) drives the EVM app's JSON-RPC: its setup deploys a token and funds accounts, and
//! its load sends pre-signed transfers, each worker from accounts of its own so that nonces arrive in order.
//!
//! The parts: [`args`] (what to run and where), [`workload`] (the requests), [`connection`] (shared TLS
//! connections and one request's outcome), [`phase`] (the workers of a phase), [`commit`] (the commit poller) and
//! [`report`]; this file holds the limits and runs the phases in order.

mod args;
mod commit;
mod connection;
mod erc20;
mod phase;
mod report;
mod workload;

pub use args::{BenchArgs, Target, Workload};

use commit::{commit_poller, CommitReport};
use connection::{connect, open_slots, Slot};
use consort_node::engine::TxId;
use consort_node::net::client::{ClientError, TlsConfig};
use consort_node::net::tls::TlsError;
use phase::{spawn_progress, sum_balances, Live, Phase, Plan, Sampler, Stats};
use report::{Findings, Invariant};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use workload::Rng;

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

/// Why a bench could not run, or what it found wrong.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    SandboxJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: no nodes[0].rpc_address")]
    NoSandboxNode { path: PathBuf },
    #[error("invalid arguments: {0}")]
    Args(String),
    #[error("connecting to {address}: {source}")]
    Connect {
        address: String,
        #[source]
        source: ClientError,
    },
    #[error("connecting to {address}: no connection within {CONNECT_TIMEOUT:?}")]
    ConnectTimeout { address: String },
    #[error("connecting to {address}: {source}")]
    Tls {
        address: String,
        #[source]
        source: TlsError,
    },
    #[error("setup ({what}) failed: {errors} requests failed ({kinds})")]
    Setup {
        what: &'static str,
        errors: u64,
        kinds: String,
    },
    #[error("verification: balance of {id}: {source}")]
    BalanceReply {
        id: u64,
        #[source]
        source: ClientError,
    },
    #[error("verification: balance of {id}: no integer total")]
    BalanceTotal { id: u64 },
    #[error("verification: could not read account {id} in {VERIFY_ATTEMPTS} attempts")]
    BalanceUnreadable { id: u64 },
    #[error("money not conserved: expected a total of {expected}, the accounts hold {actual}")]
    Invariant { expected: i128, actual: i128 },
    #[error("erc20 workload: {0}")]
    Erc20(String),
    #[error("transaction {0} became Invalid")]
    Invalid(TxId),
    #[error("a worker task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Runs a bench: setup, load, verification, report. Fails on bad arguments, a failed setup, a write that became
/// Invalid, or money not conserved.
pub async fn run(args: BenchArgs) -> Result<(), BenchError> {
    args.validate()?;
    let (address, tls) = args.endpoint()?;
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
    let bench = Bench {
        args: &args,
        address,
        tls,
        slots,
        timeout: Duration::from_millis(args.timeout_ms),
        seed,
        account_base,
    };
    bench.setup().await?;
    let load_seed = rng.next_u64();
    let erc20 = bench.erc20_setup(load_seed).await?;
    let (stats, started, commits) = bench.load(load_seed, erc20.as_ref().map(|e| e.0.clone())).await?;
    let invariant = match &erc20 {
        Some((_, (token, owners))) => {
            let (expected, actual) =
                erc20::balances(&connect(&bench.address, &bench.tls).await?, *token, owners).await?;
            Some(Invariant {
                expected,
                actual,
                unknown_outcomes: 0,
            })
        }
        None => bench.verify(&stats).await?,
    };
    let invalid = commits.invalid;
    let report = report::to_json(
        &args,
        Findings {
            address: bench.address,
            seed,
            stats,
            started,
            commits,
            invariant,
        },
    );
    if args.json {
        println!("{report}");
    } else {
        report::print_text(&report);
    }
    if let Some(t) = invalid {
        return Err(BenchError::Invalid(t));
    }
    match invariant {
        Some(inv) if inv.passed() == Some(false) => Err(BenchError::Invariant {
            expected: inv.expected,
            actual: inv.actual,
        }),
        _ => Ok(()),
    }
}

/// The erc20 workload's load generator, and its token with the funded accounts (for the balance check).
type Erc20Load = (
    Arc<workload::Generator>,
    (alloy_primitives::Address, Vec<alloy_primitives::Address>),
);

/// One run's settings and connections, shared by its phases.
struct Bench<'a> {
    args: &'a BenchArgs,
    address: String,
    tls: TlsConfig,
    slots: Vec<Arc<Slot>>,
    timeout: Duration,
    seed: u64,
    /// The first SmallBank account id of this run.
    account_base: u64,
}

impl Bench<'_> {
    fn progress(&self, phase: &'static str, live: &Arc<Live>) -> Option<tokio::task::JoinHandle<()>> {
        (!self.args.quiet).then(|| spawn_progress(phase, self.args.target.commit_label(), live.clone()))
    }

    /// The unmeasured setup phase, if the workload has one; any failed or refused request fails the run.
    async fn setup(&self) -> Result<(), BenchError> {
        let Some((what, n, generator)) = workload::setup_generator(self.args, self.account_base) else {
            return Ok(());
        };
        let live = Arc::new(Live::default());
        let progress = self.progress("setup", &live);
        let phase = Phase {
            slots: &self.slots,
            window: self.args.window,
            generator,
            plan: Plan {
                total: Some(n),
                until: None,
                rate: None,
            },
            timeout: self.timeout,
            seed: self.seed,
            live,
            sampler: None,
        };
        let result = phase.run().await;
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
        Ok(())
    }

    /// The erc20 workload's unmeasured setup (deploy, fund, pre-sign): its load generator, the token and the funded
    /// accounts; None for the other workloads.
    async fn erc20_setup(&self, seed: u64) -> Result<Option<Erc20Load>, BenchError> {
        if self.args.workload != Workload::Erc20 {
            return Ok(None);
        }
        let conn = connect(&self.address, &self.tls).await?;
        let token = erc20::setup(&conn, self.args, seed).await?;
        let book = token.book();
        let workers = self.slots.len() * self.args.window;
        let total = erc20::presign_count(self.args, DEFAULT_REQUESTS);
        let generator = tokio::task::spawn_blocking(move || token.load_generator(workers, total, seed)).await??;
        Ok(Some((generator, book)))
    }

    /// The measured load phase, with the commit poller on its own connection (Consort; etcd acknowledges only
    /// committed puts, so it needs none); `generator` replaces the workload's own (erc20). Returns the stats, the
    /// start time and the commits found.
    async fn load(
        &self,
        seed: u64,
        generator: Option<Arc<workload::Generator>>,
    ) -> Result<(Stats, Instant, CommitReport), BenchError> {
        let args = self.args;
        let live = Arc::new(Live::default());
        let (sample_tx, sample_rx) = mpsc::unbounded_channel();
        let (target_tx, target_rx) = oneshot::channel();
        let poller = match args.target {
            Target::Consort => Some(tokio::spawn(commit_poller(
                connect(&self.address, &self.tls).await?,
                sample_rx,
                target_rx,
                live.clone(),
            ))),
            Target::Etcd => None,
        };
        let generator = match (args.target, generator) {
            (Target::Consort, Some(g)) => g,
            (Target::Consort, None) => workload::load_generator(args, self.account_base),
            (Target::Etcd, _) => {
                let seed = self.seed;
                let prefix = args
                    .key_prefix
                    .clone()
                    .unwrap_or_else(|| format!("consort-bench/{seed:016x}/"));
                workload::etcd_generator(&self.address, prefix)
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
        let progress = self.progress("load", &live);
        let phase = Phase {
            slots: &self.slots,
            window: args.window,
            generator,
            plan,
            timeout: self.timeout,
            seed,
            live,
            sampler: Some(Sampler {
                every: args.commit_sample,
                samples: sample_tx,
            }),
        };
        let (stats, started) = phase.run().await?;
        let _ = target_tx.send(stats.last_write);
        let commits = match poller {
            Some(p) => p.await?,
            // Every acknowledged put was committed when acknowledged: the commit latencies are the
            // acknowledgement latencies (all of them, not a sample) and the last put was committed when its
            // answer arrived.
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
        Ok((stats, started, commits))
    }

    /// SmallBank: reads back every account's balance and compares the total with what the load should have left.
    async fn verify(&self, stats: &Stats) -> Result<Option<Invariant>, BenchError> {
        let args = self.args;
        if args.workload != Workload::Smallbank {
            return Ok(None);
        }
        let actual = sum_balances(&self.slots, args.window, self.account_base, args.accounts, self.timeout).await?;
        let initial = i128::from(args.initial_balance) * 2 * i128::from(args.accounts);
        Ok(Some(Invariant {
            expected: initial + stats.flow,
            actual,
            unknown_outcomes: stats.unknown_flows,
        }))
    }
}
