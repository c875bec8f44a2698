//! The `consort` command: sandbox networks, nodes, offline ledger audit and receipt verification, benchmarks.
#![forbid(unsafe_code)]

mod bench;
mod chaos;
mod error;
mod gov;
mod sandbox;

use clap::{Parser, Subcommand};
use error::CliError;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: the write path allocates many small buffers per transaction across threads,
/// and glibc's arena consolidation showed up at 10-15% of a node's CPU profile (README, Performance).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's option for how long freed memory stays mapped before it goes back to the OS (10 ms by default).
pub const ALLOCATOR_PURGE_DELAY_VAR: &str = "MIMALLOC_PURGE_DELAY";
/// A node keeps freed memory mapped for a second: it frees and reallocates megabyte buffers all the time (append
/// batches, chunk buffers, snapshot builds), and faulting their pages back in showed as commit-latency stalls
/// (README, Performance). Peak RSS barely moves.
pub const NODE_ALLOCATOR_PURGE_DELAY_MS: &str = "1000";

/// mimalloc reads its options once, when the process starts: a node started without the purge delay set runs
/// itself again with it (same arguments, same process id). If that fails the node runs with mimalloc's default.
fn ensure_node_allocator_options() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os(ALLOCATOR_PURGE_DELAY_VAR).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(ALLOCATOR_PURGE_DELAY_VAR, NODE_ALLOCATOR_PURGE_DELAY_MS)
        .exec();
    eprintln!("warning: could not restart with {ALLOCATOR_PURGE_DELAY_VAR} set ({err}); going on without it");
}

#[derive(Parser)]
#[command(
    name = "consort",
    version,
    about = "Consort: a confidential consortium framework compatible with CCF"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a local network on 127.0.0.1 with its members (recovery members, 1 by default) and one user, open
    /// it, and run until Ctrl-C.
    Sandbox(sandbox::SandboxArgs),
    /// Run a single node.
    Node {
        #[command(subcommand)]
        cmd: NodeCmd,
    },
    /// Offline ledger tools.
    Ledger {
        #[command(subcommand)]
        cmd: LedgerCmd,
    },
    /// Offline receipt tools.
    Receipt {
        #[command(subcommand)]
        cmd: ReceiptCmd,
    },
    /// Offline attestation tools.
    Attest {
        #[command(subcommand)]
        cmd: AttestCmd,
    },
    /// Member tooling: sign and submit proposals, ballots, withdrawals and acks; list and show proposals.
    Gov(gov::GovArgs),
    /// Load generator: pipelined HTTPS load on the logging or SmallBank app, or the same private writes as etcd
    /// puts (--target etcd); throughput, latency, commit.
    Bench(bench::BenchArgs),
    /// Fault campaign (root, Linux): nodes in network namespaces, kills, pauses, partitions, a full disk and a
    /// damaged chunk under a client workload; checks committed writes and linearizability.
    Chaos(chaos::ChaosArgs),
}

#[derive(Subcommand)]
enum NodeCmd {
    /// Start a node from its configuration: a new service if its ledger is empty, otherwise a restart.
    Start {
        #[arg(long)]
        config: PathBuf,
    },
    /// Join an existing service through `[join] target` (or restart a node that joined before).
    Join {
        #[arg(long)]
        config: PathBuf,
    },
    /// Recover a service whose nodes are all lost: start a new service on a copy of an old ledger directory (the
    /// configuration's ledger directory, from seqno 1) and wait in `Recovering` for the members (or restart a node
    /// that recovered before).
    Recover {
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum LedgerCmd {
    /// Verify ledger chunks: Merkle roots, signatures, node trust, service status transitions.
    ///
    /// Every chunk found is read, committed (`ledger_a-b.committed`) or not (`ledger_a-b`, and the open
    /// `ledger_a` of a running node), as `read_ledger.py --uncommitted` does; the report says how far signatures
    /// cover the ledger and how many transactions after the last one no signature covers yet.
    /// A ledger that starts at seqno 1 needs nothing else. One that starts after a snapshot (a node that joined
    /// from one) is audited from that snapshot: give it with --snapshot.
    Audit {
        /// A committed snapshot file (`snapshots/snapshot_<s>_<evidence>.committed`, or the `raft_snapshot` a
        /// joined node keeps in its secrets directory). Its signature transaction is verified against the nodes,
        /// certificates and Merkle tree in its public tables, and the chunks must continue at seqno s+1.
        #[arg(long, value_name = "FILE")]
        snapshot: Option<PathBuf>,
        /// Ledger directories or chunk files.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ReceiptCmd {
    /// Verify a CCF JSON receipt against the service certificate.
    Verify {
        file: PathBuf,
        #[arg(long)]
        service_cert: PathBuf,
    },
}

#[derive(Subcommand)]
enum AttestCmd {
    /// Verify a node's attestation evidence (a `/node/quotes/self` answer or CCF's QuoteInfo JSON) against the
    /// node's certificate (its key must be the one the evidence binds); prints the measured claims as JSON.
    Verify {
        file: PathBuf,
        /// PEM certificate of the node (for example its entry in `/gov/service/nodes`).
        #[arg(long)]
        node_cert: PathBuf,
    },
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CONSORT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cmd = match cli.cmd {
        Command::Chaos(args) => {
            // Its own exit statuses: tests skip when namespaces are unavailable (chaos::EXIT_UNAVAILABLE).
            init_tracing();
            return chaos::main(args);
        }
        cmd => cmd,
    };
    if matches!(cmd, Command::Node { .. }) {
        ensure_node_allocator_options();
    }
    init_tracing();
    match run(cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            // Every failure exits with 1, as it always has: scripts and tests check for a non-zero status.
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: Command) -> Result<(), CliError> {
    match cmd {
        Command::Sandbox(args) => runtime().block_on(sandbox::run(args)),
        Command::Node {
            cmd: NodeCmd::Start { config },
        } => node_start(&config),
        Command::Node {
            cmd: NodeCmd::Join { config },
        } => node_join(&config),
        Command::Node {
            cmd: NodeCmd::Recover { config },
        } => {
            let cfg = consort_node::config::NodeConfig::load(&config)?;
            Ok(runtime().block_on(consort_node::launch::recover(cfg))?)
        }
        Command::Ledger {
            cmd: LedgerCmd::Audit { snapshot, paths },
        } => ledger_audit(&paths, snapshot.as_deref()),
        Command::Receipt {
            cmd: ReceiptCmd::Verify { file, service_cert },
        } => receipt_verify(&file, &service_cert),
        Command::Attest {
            cmd: AttestCmd::Verify { file, node_cert },
        } => attest_verify(&file, &node_cert),
        Command::Bench(args) => Ok(runtime().block_on(bench::run(args))?),
        Command::Gov(args) => runtime().block_on(gov::run(args)),
        Command::Chaos(_) => unreachable!("main() runs the chaos campaign itself, for its exit statuses"),
    }
}

fn node_start(config: &Path) -> Result<(), CliError> {
    let cfg = consort_node::config::NodeConfig::load(config)?;
    Ok(runtime().block_on(consort_node::run(cfg))?)
}

fn node_join(config: &Path) -> Result<(), CliError> {
    let cfg = consort_node::config::NodeConfig::load(config)?;
    Ok(runtime().block_on(consort_node::join(cfg))?)
}

/// Collects chunk files (committed or not) from directories and explicit paths, sorted by start seqno.
fn chunk_files(paths: &[PathBuf]) -> Result<Vec<(String, Vec<u8>)>, CliError> {
    let mut files = vec![];
    for p in paths {
        if p.is_dir() {
            for e in std::fs::read_dir(p).map_err(CliError::file(p))? {
                let e = e.map_err(CliError::file(p))?;
                let name = e.file_name().to_string_lossy().to_string();
                if consort_ledger::parse_chunk_name(&name).is_some() {
                    files.push(e.path());
                }
            }
        } else if p.is_file() {
            files.push(p.clone());
        } else {
            return Err(CliError::NotALedger(p.clone()));
        }
    }
    let file_name = |p: &PathBuf| {
        p.file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default()
    };
    let start_of = |p: &PathBuf| -> u64 {
        file_name(p)
            .trim_start_matches("ledger_")
            .split(['-', '.'])
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(u64::MAX)
    };
    files.sort_by_key(start_of);
    files.dedup_by_key(|p| p.file_name().map(|n| n.to_owned()));
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).map_err(CliError::file(&p))?;
            Ok((file_name(&p), bytes))
        })
        .collect()
}

fn ledger_audit(paths: &[PathBuf], snapshot: Option<&Path>) -> Result<(), CliError> {
    let chunks = chunk_files(paths)?;
    if chunks.is_empty() {
        return Err(CliError::NoLedgerChunks);
    }
    let committed = chunks.iter().filter(|(name, _)| name.ends_with(".committed")).count();
    let r = match snapshot {
        None => consort_ledger::audit_chunks(&chunks).map_err(CliError::LedgerInvalid)?,
        Some(path) => audit_from_snapshot(path, &chunks)?,
    };
    println!(
        "ledger OK: {} chunks, {} transactions, {} signatures, verified up to {}.{}, service status {}, {} nodes",
        chunks.len(),
        r.transactions,
        r.signatures,
        r.last_verified.0,
        r.last_verified.1,
        r.service_status.as_deref().unwrap_or("unknown"),
        r.nodes
    );
    println!("chunks: {committed} committed, {} not yet", chunks.len() - committed);
    if r.trailing_unsigned > 0 {
        println!(
            "covered by signatures up to seqno {}; the {} transactions after it are framed and chain correctly but \
             no signature covers them yet (they may never commit)",
            r.last_verified.1, r.trailing_unsigned
        );
    } else {
        println!("every transaction read is covered by a signature");
    }
    if let Some(origin) = &r.snapshot {
        let evidence = match origin.evidence_seqno {
            Some(e) => format!("its digest matches the evidence transaction at seqno {e}"),
            None => "no evidence transaction for it in these chunks".to_string(),
        };
        println!(
            "started from the snapshot at {}.{} ({evidence}); service certificate in the snapshot, compare it with \
             the one you trust:\n{}",
            origin.view,
            origin.seqno,
            origin.service_cert.trim_end()
        );
    }
    Ok(())
}

/// Audits `chunks` from the snapshot file at `path`: the chunks must start right after it.
fn audit_from_snapshot(path: &Path, chunks: &[(String, Vec<u8>)]) -> Result<consort_ledger::AuditReport, CliError> {
    use consort_node::engine::snapshot_files::split_snapshot_file;
    let bytes = std::fs::read(path).map_err(CliError::file(path))?;
    let parts = split_snapshot_file(&bytes).map_err(|source| CliError::SnapshotInvalid {
        path: path.to_path_buf(),
        source: Box::new(source),
    })?;
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let start = consort_ledger::SnapshotStart {
        file: &file,
        seqno: parts.seqno,
        view: parts.view,
        signature_entry: &parts.signature_entry,
        snapshot_entry: &parts.snapshot_entry,
        bundle_digest: Some(parts.bundle_digest),
    };
    consort_ledger::audit_chunks_from_snapshot(&start, chunks).map_err(CliError::LedgerInvalid)
}

fn attest_verify(file: &Path, node_cert: &Path) -> Result<(), CliError> {
    let bytes = std::fs::read(file).map_err(CliError::file(file))?;
    let cert = std::fs::read_to_string(node_cert).map_err(CliError::file(node_cert))?;
    let key = consort_crypto::ParsedCert::from_pem(&cert)?.public_key()?;
    let evidence = consort_attest::Evidence::from_any_json(&bytes).map_err(CliError::AttestationInvalid)?;
    let claims = consort_attest::verify(&evidence, &key.to_spki_der()).map_err(CliError::AttestationInvalid)?;
    let out = serde_json::json!({
        "format": claims.kind.ccf_name(),
        "measurement": claims.measurement,
        "host_data": claims.host_data,
        "node_id": consort_crypto::key_id(&key.to_spki_der()),
        "security_warning": claims.security_warning,
    });
    println!("{out}");
    Ok(())
}

fn receipt_verify(file: &Path, service_cert: &Path) -> Result<(), CliError> {
    let receipt = std::fs::read(file).map_err(CliError::file(file))?;
    let cert = std::fs::read_to_string(service_cert).map_err(CliError::file(service_cert))?;
    let v = consort_receipt::verify_json(&receipt, &cert).map_err(CliError::ReceiptInvalid)?;
    println!("receipt OK: root {} signed by node {}", hex::encode(v.root), v.node_id);
    Ok(())
}
