//! The bench's command-line arguments: what to drive (target, workload), how hard (connections, window, rate,
//! requests or duration), and where (address and TLS identity, defaulting to the sandbox workspace); their
//! validation before any load.

use super::{BenchError, ETCD_DEFAULT_ADDRESS, MAX_CONNECTIONS, MAX_WINDOW};
use consort_node::net::client::TlsConfig;
use std::path::PathBuf;

/// What the bench drives.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A Consort service: the sandbox's logging or SmallBank app.
    Consort,
    /// An etcd cluster (3.4 or later) through its JSON gateway: the private-write load as `POST /v3/kv/put`.
    Etcd,
}

impl Target {
    pub(super) fn name(self) -> &'static str {
        match self {
            Target::Consort => "consort",
            Target::Etcd => "etcd",
        }
    }

    /// When this target's writes count as committed (stated in every report).
    pub(super) fn commit_rule(self) -> &'static str {
        match self {
            Target::Consort => {
                "a write is committed once a committed signature transaction covers it (polled on /app/commit)"
            }
            Target::Etcd => {
                "etcd acknowledges a put only once a quorum has it in its fsynced log and it is applied: committed = acknowledged"
            }
        }
    }

    /// What the progress line calls the commit point it shows: Consort's commit seqno, or etcd's latest revision.
    pub(super) fn commit_label(self) -> &'static str {
        match self {
            Target::Consort => "commit seqno",
            Target::Etcd => "revision",
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
    /// The JavaScript logging app of examples/logging-js (deployed by governance first): private writes to
    /// `POST /app/js/log/private`, the same requests as `private`.
    Js,
    /// ERC-20 transfers through the EVM app's JSON-RPC (`POST /app/eth`): deploys examples/erc20's token, funds
    /// --accounts accounts (at least connections x window), then signed transfers between them.
    Erc20,
}

impl Workload {
    pub(super) fn name(self) -> &'static str {
        match self {
            Workload::Private => "private",
            Workload::Public => "public",
            Workload::Mixed => "mixed",
            Workload::Smallbank => "smallbank",
            Workload::Js => "js",
            Workload::Erc20 => "erc20",
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
    /// smallbank, erc20: number of accounts.
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

impl BenchArgs {
    /// Refuses arguments that make no sense together, before any connection is opened.
    pub(super) fn validate(&self) -> Result<(), BenchError> {
        let bad = |m: &str| Err(BenchError::Args(m.to_string()));
        if !(1..=MAX_CONNECTIONS).contains(&self.connections) {
            return bad(&format!("--connections must be in 1..={MAX_CONNECTIONS}"));
        }
        if !(1..=MAX_WINDOW).contains(&self.window) {
            return bad(&format!("--window must be in 1..={MAX_WINDOW}"));
        }
        if self.duration_s.is_some_and(|d| !(d.is_finite() && d > 0.0 && d < 1e9)) {
            return bad("--duration-s must be a positive number of seconds");
        }
        if self.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
            return bad("--rate must be a positive number of requests per second");
        }
        if self.timeout_ms == 0 {
            return bad("--timeout-ms must be positive");
        }
        if self.target == Target::Etcd {
            if self.workload != Workload::Private {
                return bad(&format!(
                    "--target etcd runs only the private-write workload (puts of the same size); --workload {} has no etcd equivalent",
                    self.workload.name()
                ));
            }
            if self.cacert.is_none() {
                return bad("--target etcd needs --cacert (the CA of etcd's client certificate)");
            }
        } else if self.key_prefix.is_some() {
            return bad("--key-prefix applies only to --target etcd");
        }
        if self.workload == Workload::Erc20 && self.accounts < (self.connections * self.window) as u64 {
            return bad("--workload erc20 needs --accounts >= connections x window (one sender per worker at least)");
        }
        if self.workload == Workload::Smallbank {
            if self.accounts < 2 {
                return bad("--accounts must be at least 2");
            }
            if !(0..=consort_node::apps::smallbank::MAX_AMOUNT).contains(&self.initial_balance) {
                return bad("--initial-balance out of range");
            }
        }
        Ok(())
    }

    /// The address and TLS client configuration: explicit options first, then the sandbox workspace (Consort) or
    /// etcd's defaults (no client certificate, 127.0.0.1:2379).
    pub(super) fn endpoint(&self) -> Result<(String, TlsConfig), BenchError> {
        let ws = &self.workspace;
        let ca = match (&self.cacert, self.target) {
            (Some(p), _) => read_file(p.clone())?,
            (None, Target::Consort) => read_file(ws.join("service_cert.pem"))?,
            (None, Target::Etcd) => return Err(BenchError::Args("--target etcd needs --cacert".into())),
        };
        let identity = match (&self.cert, &self.key, self.target) {
            (Some(c), Some(k), _) => Some((read_file(c.clone())?, read_file(k.clone())?)),
            (None, None, Target::Consort) => Some((
                read_file(ws.join("user0_cert.pem"))?,
                read_file(ws.join("user0_privk.pem"))?,
            )),
            (None, None, Target::Etcd) => None,
            _ => return Err(BenchError::Args("--cert and --key go together".into())),
        };
        let address = match (&self.address, self.target) {
            (Some(a), _) => a.clone(),
            (None, Target::Etcd) => ETCD_DEFAULT_ADDRESS.to_string(),
            (None, Target::Consort) => sandbox_address(ws.join("sandbox.json"))?,
        };
        let identity = identity.as_ref().map(|(c, k)| (c.as_str(), k.as_str()));
        let tls = consort_node::net::tls::client_config(&ca, identity).map_err(|source| BenchError::Tls {
            address: address.clone(),
            source,
        })?;
        Ok((address, tls))
    }
}

/// The first node's client address in a sandbox's `sandbox.json`.
fn sandbox_address(path: PathBuf) -> Result<String, BenchError> {
    let sandbox: serde_json::Value = match serde_json::from_str(&read_file(path.clone())?) {
        Ok(v) => v,
        Err(source) => return Err(BenchError::SandboxJson { path, source }),
    };
    match sandbox["nodes"][0]["rpc_address"].as_str() {
        Some(a) => Ok(a.to_string()),
        None => Err(BenchError::NoSandboxNode { path }),
    }
}

fn read_file(path: PathBuf) -> Result<String, BenchError> {
    std::fs::read_to_string(&path).map_err(|source| BenchError::File { path, source })
}
