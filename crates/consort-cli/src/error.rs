//! The CLI's error type: every way a `consort` command fails, with its cause kept as the error's source; `main`
//! renders it once, on stderr, and exits with 1 (as every failure always has; clap's usage errors exit with 2).

use crate::bench::BenchError;
use crate::sandbox::{MAX_SANDBOX_NODES, MAX_SANDBOX_RECOVERY_MEMBERS, OPEN_TIMEOUT};
use std::path::PathBuf;
use std::process::ExitStatus;

/// Why a `consort` command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A file or directory the command reads or writes.
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An IO error with no single file to name (the program's own path, a signal handler).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Config(#[from] consort_node::config::ConfigError),
    /// A node could not start, or had to stop.
    #[error(transparent)]
    Node(#[from] consort_node::NodeError),
    #[error(transparent)]
    Identity(#[from] consort_node::identity::IdentityError),
    #[error(transparent)]
    Tls(#[from] consort_node::net::tls::TlsError),
    /// A request to a node failed (connection, TLS handshake, HTTP).
    #[error(transparent)]
    Client(#[from] consort_node::net::client::ClientError),
    /// A key or certificate could not be parsed or made.
    #[error(transparent)]
    Crypto(#[from] consort_crypto::CryptoError),
    #[error(transparent)]
    Bench(#[from] BenchError),
    #[error(transparent)]
    Bundle(#[from] consort_cli::js_bundle::BundleError),

    #[error("{} is not a ledger directory or chunk file", .0.display())]
    NotALedger(PathBuf),
    #[error("no ledger chunk files (ledger_<start>[-<end>][.committed]) found")]
    NoLedgerChunks,
    #[error("ledger INVALID: {0}")]
    LedgerInvalid(#[source] consort_ledger::AuditError),
    /// A file given to `ledger audit --snapshot` that is not a snapshot file.
    #[error("snapshot {} INVALID: {source}", .path.display())]
    SnapshotInvalid {
        path: PathBuf,
        /// Boxed: the consensus error is large.
        #[source]
        source: Box<consort_node::engine::snapshot_files::ConsensusError>,
    },
    #[error("receipt INVALID: {0}")]
    ReceiptInvalid(#[source] consort_receipt::ReceiptError),
    /// Attestation evidence that does not verify.
    #[error("attestation INVALID: {0}")]
    AttestationInvalid(#[source] consort_attest::AttestError),

    /// A step of `consort gov recovery-share` failed (the node's refusal, a key that does not decrypt, ...).
    #[error(transparent)]
    RecoveryShare(#[from] consort_cli::recovery_share::RecoveryShareError),
    #[error("no member encryption key: give --member-enc-privk (the certificate {} is not named <name>_cert.pem)", .0.display())]
    NoEncryptionKey(PathBuf),
    #[error("member key does not match member certificate")]
    MemberKeyMismatch,
    #[error("sandbox.json has no nodes")]
    NoSandboxNodes,
    #[error("give --accept, --reject or --ballot FILE")]
    NoBallot,
    /// A governance request was answered with a status other than 2xx (the body is printed before).
    #[error("HTTP {0}")]
    HttpStatus(u16),

    #[error("--nodes must be between 1 and {MAX_SANDBOX_NODES}")]
    SandboxSize,
    #[error(
        "--recovery-members {members} --recovery-threshold {threshold}: need 1 <= threshold <= members <= \
         {MAX_SANDBOX_RECOVERY_MEMBERS}"
    )]
    SandboxRecovery { members: usize, threshold: usize },
    #[error("clearing {path}: {source}")]
    ClearWorkspace {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("starting node {node}: {source}")]
    SpawnNode {
        node: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("node 0 did not start; see {}/err.log", .dir.display())]
    NodeDidNotStart { dir: PathBuf },
    #[error("node 0 exited with {status}:\n{log}")]
    NodeExited { status: ExitStatus, log: String },
    #[error("service did not open within {OPEN_TIMEOUT:?}; see {}/err.log", .dir.display())]
    ServiceNotOpen { dir: PathBuf },
    #[error("proposal refused: HTTP {status} {body}")]
    ProposalRefused { status: u16, body: serde_json::Value },
    #[error("no proposalId")]
    NoProposalId,
    #[error("proposal not accepted: {0}")]
    ProposalNotAccepted(serde_json::Value),
}

impl CliError {
    /// A [`CliError::File`] for `path`, for `map_err`.
    pub fn file(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> CliError {
        let path = path.into();
        move |source| CliError::File { path, source }
    }
}
