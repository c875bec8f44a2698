//! The node's TOML configuration: where it listens, where it keeps its files, its limits and its genesis set-up.
//!
//! Every field has a default so that a minimal file (`[network] rpc_address = "127.0.0.1:8000"`) is valid.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The whole configuration file.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    #[serde(default)]
    pub network: NetworkConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub ledger: LedgerConfig,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub consensus: ConsensusConfig,
    /// Joining an existing service (`consort node join`).
    #[serde(default)]
    pub join: JoinConfig,
    /// Genesis parameters, read only when the node starts a new service (its ledger directory is empty).
    #[serde(default)]
    pub start: StartConfig,
    /// How the node attests itself: its platform and, for SEV-SNP, the endorsements the host supplies.
    #[serde(default)]
    pub attestation: AttestationConfig,
    /// JSON Web Token issuers' key refresh.
    #[serde(default)]
    pub jwt: JwtConfig,
}

/// `[jwt]`: how often the primary refreshes the signing keys of issuers configured with `auto_refresh` (CCF's
/// `jwt.key_refresh_interval`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Seconds between refresh rounds (at least 1; default 1800).
    pub key_refresh_interval_s: u64,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            key_refresh_interval_s: 1800,
        }
    }
}

/// The attestation platform a node runs on (`[attestation] platform`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlatformChoice {
    /// CCF's `Insecure_Virtual`: no hardware, the measurement is the executable's SHA-256. It gives no hardware
    /// guarantee, and says so in the log and in `GET /node/quotes/self`.
    #[default]
    Virtual,
    /// AMD SEV-SNP (`AMD_SEV_SNP_v1`): reports from `/dev/sev-guest`; the node refuses to start without it.
    Snp,
}

/// `[attestation]`: which platform proves this node's code, and what the host provides for it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationConfig {
    /// `"virtual"` (the default) or `"snp"`.
    #[serde(default)]
    pub platform: PlatformChoice,
    /// For `"snp"`, required: the VCEK of this chip at its current TCB, optionally followed by the ASK and ARK,
    /// in PEM (or the VCEK alone in DER), as the host fetched them from AMD beforehand. The node sends them with
    /// its report; no node fetches endorsements when it verifies one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snp_endorsements_file: Option<PathBuf>,
}

impl AttestationConfig {
    fn validate(&self) -> Result<(), String> {
        match (self.platform, &self.snp_endorsements_file) {
            (PlatformChoice::Snp, None) => Err(
                "attestation.platform = \"snp\" needs attestation.snp_endorsements_file \
                 (the host's VCEK, ASK and ARK in PEM)"
                    .into(),
            ),
            (PlatformChoice::Virtual, Some(_)) => {
                Err("attestation.snp_endorsements_file is read only with attestation.platform = \"snp\"".into())
            }
            _ => Ok(()),
        }
    }
}

/// Addresses.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// Address of the HTTPS endpoint for users and members, e.g. "127.0.0.1:8000".
    pub rpc_address: String,
    /// Extra subject alternative names for the node certificate (the rpc_address host is always included).
    #[serde(default)]
    pub subject_alt_names: Vec<String>,
    /// Address of the node-to-node channel (Raft messages), e.g. "127.0.0.1:8100"; none = a node that never
    /// replicates (a one-node service).
    #[serde(default)]
    pub node_to_node_address: Option<String>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            rpc_address: "127.0.0.1:8000".into(),
            subject_alt_names: vec![],
            node_to_node_address: None,
        }
    }
}

/// Where a joining node asks to join.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct JoinConfig {
    /// RPC address ("host:port") of any node of the service; a backup forwards the request to the primary.
    #[serde(default)]
    pub target: Option<String>,
    /// The service certificate (PEM file) the target's TLS certificate must chain to.
    #[serde(default)]
    pub service_cert: Option<PathBuf>,
}

/// Most append messages in flight to one backup that `consensus.max_inflight_appends` may ask for (each holds up to
/// `max_append_bytes` of entries in the primary's memory until it is acknowledged).
pub const MAX_INFLIGHT_APPENDS: usize = 256;

/// Raft timing. The node's clock ticks every [`crate::service::TICK_MS`] milliseconds; these are rounded up to
/// whole ticks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsensusConfig {
    /// A backup that hears nothing from the primary for this long (randomised up to twice as long) starts an
    /// election.
    pub election_timeout_ms: u64,
    /// The primary sends heartbeats (empty appends) this often; must be well below the election timeout.
    pub heartbeat_ms: u64,
    /// Append messages the primary keeps in flight to one backup (raft-rs `max_inflight_msgs`); entries proposed
    /// meanwhile wait and go out together in the next message. See
    /// [`consort_consensus::limits::DEFAULT_MAX_INFLIGHT_APPENDS`]; raise it where the round trip is long.
    #[serde(default = "default_max_inflight_appends")]
    pub max_inflight_appends: usize,
}

fn default_max_inflight_appends() -> usize {
    consort_consensus::limits::DEFAULT_MAX_INFLIGHT_APPENDS
}

impl Default for ConsensusConfig {
    fn default() -> Self {
        Self {
            election_timeout_ms: 1_000,
            heartbeat_ms: 100,
            max_inflight_appends: default_max_inflight_appends(),
        }
    }
}

/// Directories. Relative paths are resolved against the directory holding the configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Ledger chunk files (`ledger_<start>-<end>[.committed]`).
    pub ledger_dir: PathBuf,
    /// Snapshot files (`snapshot_<seqno>_<evidence>.committed`).
    pub snapshots_dir: PathBuf,
    /// Node identity (`node_privk.pem`, `node_cert.pem`), `service_cert.pem`, and the sealed secrets
    /// (`service_privk.pem`, `ledger_secret`), readable only by the node's user: the virtual platform's stand-in
    /// for TEE sealing.
    pub secrets_dir: PathBuf,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            ledger_dir: "ledger".into(),
            snapshots_dir: "snapshots".into(),
            secrets_dir: ".".into(),
        }
    }
}

/// Ledger behaviour.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerConfig {
    /// Emit a signature transaction after this many transactions...
    pub signature_interval_tx: u64,
    /// ...or after this many milliseconds, whichever comes first (only if there is something to sign).
    pub signature_interval_ms: u64,
    /// Start a new chunk file after a signature once the current one holds this many bytes.
    pub chunk_threshold_bytes: u64,
    /// Snapshot the state at the first signature this many transactions after the previous snapshot (0: never).
    /// The primary builds it on a thread of its own while transactions go on, and writes it as
    /// `snapshot_<seqno>_<evidence seqno>.committed` in the snapshots directory once its evidence commits.
    pub snapshot_tx_interval: u64,
    /// Whether backups also build each periodic snapshot (and keep it once they have checked it against the
    /// primary's evidence). Off by default, as in CCF: only the primary spends the CPU.
    pub snapshots_on_backups: bool,
    /// Committed snapshot files kept in the snapshots directory (older ones are deleted).
    pub snapshots_to_keep: usize,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            signature_interval_tx: 5_000,
            signature_interval_ms: 100,
            chunk_threshold_bytes: 5 * 1024 * 1024,
            snapshot_tx_interval: 1_000_000,
            snapshots_on_backups: false,
            snapshots_to_keep: 3,
        }
    }
}

/// Named resource limits; each is enforced where the resource is used. A field missing from a configuration file
/// takes its default, so older files keep working.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest accepted request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// Largest accepted request head (request line plus headers); larger ones get 431.
    pub max_header_bytes: usize,
    /// Client connections served at once. When all are taken, a new connection replaces the one that has been
    /// idle (or stuck reading a request body) the longest, if that is longer than `eviction_grace_ms`; failing
    /// that, the anonymous connection accepted first, if it is older than `eviction_grace_ms`; otherwise the new
    /// one is closed at accept (see `net::http`).
    pub max_open_connections: usize,
    /// Connections open at once whose client presented no certificate of a known member, user or Trusted node
    /// (checked right after the handshake). An anonymous newcomer beyond it replaces the oldest anonymous
    /// connection (if older than `eviction_grace_ms`) or is closed, so that `max_open_connections` minus this many
    /// slots stay for handshakes and known clients. At or above `max_open_connections` it reserves nothing.
    pub max_anonymous_connections: usize,
    /// A connection is closed to make room for a newcomer only once it has made no progress (accepted, started or
    /// finished a request) for this many milliseconds: the time a new client has to finish its handshake and send
    /// a request before later arrivals can displace it.
    pub eviction_grace_ms: u64,
    /// Times a transaction is re-executed after an optimistic-concurrency conflict before the request fails.
    pub max_occ_attempts: usize,
    /// TLS handshake must finish within this many milliseconds.
    pub tls_handshake_timeout_ms: u64,
    /// An HTTP/1.1 request head must arrive within this many milliseconds of the server starting to wait for it;
    /// otherwise the connection is closed.
    pub header_read_timeout_ms: u64,
    /// A connection with no request in flight (including one that never sent a request after its handshake) is
    /// closed after this many milliseconds.
    pub idle_timeout_ms: u64,
    /// A request body must arrive in full within this many milliseconds of the handler asking for it; a slower
    /// upload is answered 408 `RequestTimeout` and its connection closed.
    pub body_read_timeout_ms: u64,
    /// Request body bytes buffered at once across all connections (a body is charged as its bytes arrive, until it
    /// has been read); a request that finds no room gets 503 `ServiceUnavailable`.
    pub max_buffered_body_bytes: usize,
    /// Of `max_buffered_body_bytes`, what the bodies being read on one connection (all its HTTP/2 streams) may
    /// hold at once; beyond it a request gets 503 `ServiceUnavailable`.
    pub max_buffered_body_bytes_per_connection: usize,
    /// The last part of `max_buffered_body_bytes`, kept for bodies of at most `small_body_max_bytes` (governance
    /// requests, most app calls): a larger body that would reach into it gets 503. Whenever a body reaches into
    /// it, the connection whose body read has made the least recent progress is closed to free room.
    pub small_body_reserve_bytes: usize,
    /// Largest body (declared, or received so far) that may use `small_body_reserve_bytes`.
    pub small_body_max_bytes: usize,
    /// HTTP/2 streams (requests) a client may have open on one connection.
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2 flow-control window of one stream: request bytes a client may send ahead of the handler reading
    /// them.
    pub h2_stream_window_bytes: u32,
    /// HTTP/2 flow-control window of a whole connection, across its streams.
    pub h2_connection_window_bytes: u32,
    /// Response bytes buffered per HTTP/2 stream while the client is not reading.
    pub h2_max_send_buf_bytes: usize,
    /// HTTP/2 streams a client opened and reset before the server accepted them, held at once (a bound against
    /// rapid-reset floods).
    pub h2_max_pending_accept_reset_streams: usize,
    /// The server pings an HTTP/2 client this often to detect a dead peer.
    pub h2_keep_alive_interval_ms: u64,
    /// An HTTP/2 client that does not answer a ping within this many milliseconds is disconnected.
    pub h2_keep_alive_timeout_ms: u64,
    /// Bytes the historical state cache may hold (states of past transactions fetched from the ledger for
    /// historical queries, counted as about twice their ledger entries); the least recently used are evicted
    /// beyond it, and a range query's page ends once its states reach half of it.
    pub historical_cache_size_bytes: usize,
    /// Historical fetches (reading and decrypting past ledger entries, on threads of their own) running at once;
    /// a historical request that would start another is answered `202` and asked to retry.
    pub max_historical_fetches: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_header_bytes: 16 * 1024,
            max_open_connections: 1024,
            max_anonymous_connections: 896,
            eviction_grace_ms: 1_000,
            max_occ_attempts: 16,
            tls_handshake_timeout_ms: 10_000,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 30_000,
            body_read_timeout_ms: 10_000,
            max_buffered_body_bytes: 64 * 1024 * 1024,
            max_buffered_body_bytes_per_connection: 8 * 1024 * 1024,
            small_body_reserve_bytes: 8 * 1024 * 1024,
            small_body_max_bytes: 256 * 1024,
            h2_max_concurrent_streams: 256,
            h2_stream_window_bytes: 256 * 1024,
            h2_connection_window_bytes: 1024 * 1024,
            h2_max_send_buf_bytes: 256 * 1024,
            h2_max_pending_accept_reset_streams: 32,
            h2_keep_alive_interval_ms: 20_000,
            h2_keep_alive_timeout_ms: 10_000,
            historical_cache_size_bytes: 64 * 1024 * 1024,
            max_historical_fetches: 2,
        }
    }
}

/// A member or user listed at genesis.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// Path to the PEM certificate.
    pub cert: PathBuf,
    /// Path to the member's PEM RSA public encryption key (members only; used for recovery shares).
    #[serde(default)]
    pub encryption_public_key: Option<PathBuf>,
    /// Free-form JSON data attached to the identity.
    #[serde(default)]
    pub data: Option<serde_json::Value>,
}

/// Genesis configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartConfig {
    #[serde(default)]
    pub members: Vec<IdentityConfig>,
    #[serde(default)]
    pub users: Vec<IdentityConfig>,
    /// Open the service at genesis, without a proposal (for tests; services are normally opened by a
    /// `transition_service_to_open` proposal).
    #[serde(default)]
    pub open_at_genesis: bool,
    /// Constitution source files (JavaScript, concatenated into one module exporting validate, resolve, apply);
    /// empty = Consort's default constitution (majority of active members).
    #[serde(default)]
    pub constitution_files: Vec<PathBuf>,
    /// Number of recovery members' shares needed to recover the service.
    #[serde(default = "default_recovery_threshold")]
    pub recovery_threshold: u32,
}

fn default_recovery_threshold() -> u32 {
    1
}

impl Default for StartConfig {
    fn default() -> Self {
        Self {
            members: vec![],
            users: vec![],
            open_at_genesis: false,
            constitution_files: vec![],
            recovery_threshold: default_recovery_threshold(),
        }
    }
}

/// A configuration error: the file, and what was wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("configuration {}: {source}", path.display())]
pub struct ConfigError {
    /// The configuration file.
    pub path: PathBuf,
    /// What was wrong.
    #[source]
    pub source: ConfigFault,
}

/// What was wrong with a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFault {
    /// The file could not be read.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The file is not valid TOML for a node configuration (boxed: TOML's error is large).
    #[error("{0}")]
    Toml(#[source] Box<toml::de::Error>),
    /// A value is out of range or inconsistent with another ([`NodeConfig::validate`]'s reason, naming the field).
    #[error("{0}")]
    Invalid(String),
}

impl NodeConfig {
    /// Reads and validates a TOML configuration file, resolving relative paths against its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let err = |fault: ConfigFault| ConfigError {
            path: path.to_path_buf(),
            source: fault,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.into()))?;
        let mut cfg: NodeConfig = toml::from_str(&text).map_err(|e| err(ConfigFault::Toml(Box::new(e))))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        cfg.resolve_paths(&base);
        cfg.validate().map_err(|reason| err(ConfigFault::Invalid(reason)))?;
        Ok(cfg)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.storage.ledger_dir);
        fix(&mut self.storage.snapshots_dir);
        fix(&mut self.storage.secrets_dir);
        if let Some(p) = self.join.service_cert.as_mut() {
            fix(p);
        }
        if let Some(p) = self.attestation.snp_endorsements_file.as_mut() {
            fix(p);
        }
        for f in self.start.constitution_files.iter_mut() {
            fix(f);
        }
        for id in self.start.members.iter_mut().chain(self.start.users.iter_mut()) {
            fix(&mut id.cert);
            if let Some(p) = id.encryption_public_key.as_mut() {
                fix(p);
            }
        }
    }

    /// Checks values that would otherwise fail later in confusing ways.
    pub fn validate(&self) -> Result<(), String> {
        self.network
            .rpc_address
            .parse::<std::net::SocketAddr>()
            .map_err(|e| format!("network.rpc_address {:?}: {e}", self.network.rpc_address))?;
        if self.limits.max_historical_fetches == 0 {
            return Err("limits.max_historical_fetches must be at least 1".into());
        }
        if self.ledger.signature_interval_tx == 0 {
            return Err("ledger.signature_interval_tx must be at least 1".into());
        }
        if self.ledger.signature_interval_ms == 0 {
            return Err("ledger.signature_interval_ms must be at least 1".into());
        }
        if let Some(a) = &self.network.node_to_node_address {
            a.parse::<std::net::SocketAddr>()
                .map_err(|e| format!("network.node_to_node_address {a:?}: {e}"))?;
        }
        if self.consensus.heartbeat_ms == 0 || self.consensus.election_timeout_ms < 2 * self.consensus.heartbeat_ms {
            return Err("consensus.heartbeat_ms must be at least 1 and at most half of election_timeout_ms".into());
        }
        if !(1..=MAX_INFLIGHT_APPENDS).contains(&self.consensus.max_inflight_appends) {
            return Err(format!(
                "consensus.max_inflight_appends must be between 1 and {MAX_INFLIGHT_APPENDS}"
            ));
        }
        if self.limits.max_header_bytes < 8192 {
            return Err("limits.max_header_bytes must be at least 8192".into());
        }
        if self.limits.max_open_connections == 0 || self.limits.max_occ_attempts == 0 {
            return Err("limits.max_open_connections and limits.max_occ_attempts must be at least 1".into());
        }
        self.limits.validate()?;
        if self.jwt.key_refresh_interval_s == 0 {
            return Err("jwt.key_refresh_interval_s must be at least 1".into());
        }
        self.attestation.validate()
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("configuration always serialises")
    }
}

impl Limits {
    /// Checks the HTTP limits: a zero timeout or window would refuse every client.
    fn validate(&self) -> Result<(), String> {
        let timeouts = [
            ("tls_handshake_timeout_ms", self.tls_handshake_timeout_ms),
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("body_read_timeout_ms", self.body_read_timeout_ms),
            ("h2_keep_alive_interval_ms", self.h2_keep_alive_interval_ms),
            ("h2_keep_alive_timeout_ms", self.h2_keep_alive_timeout_ms),
        ];
        if let Some((name, _)) = timeouts.iter().find(|(_, v)| *v == 0) {
            return Err(format!("limits.{name} must be at least 1"));
        }
        if self.max_buffered_body_bytes < self.max_body_bytes {
            return Err("limits.max_buffered_body_bytes must be at least limits.max_body_bytes".into());
        }
        if self.max_buffered_body_bytes_per_connection < self.max_body_bytes {
            return Err("limits.max_buffered_body_bytes_per_connection must be at least limits.max_body_bytes".into());
        }
        if self
            .max_buffered_body_bytes
            .saturating_sub(self.small_body_reserve_bytes)
            < self.max_body_bytes
        {
            return Err(
                "limits.max_buffered_body_bytes minus limits.small_body_reserve_bytes must be at least \
                 limits.max_body_bytes"
                    .into(),
            );
        }
        if self.small_body_max_bytes > self.small_body_reserve_bytes {
            return Err("limits.small_body_max_bytes must be at most limits.small_body_reserve_bytes".into());
        }
        if self.max_anonymous_connections == 0 {
            return Err("limits.max_anonymous_connections must be at least 1".into());
        }
        if self.h2_max_concurrent_streams == 0
            || self.h2_stream_window_bytes == 0
            || self.h2_connection_window_bytes == 0
        {
            return Err("limits.h2_max_concurrent_streams and the h2 windows must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_file_uses_defaults_and_resolves_paths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "[network]\nrpc_address = \"127.0.0.1:9000\"\n").unwrap();
        let cfg = NodeConfig::load(&path).unwrap();
        assert_eq!(cfg.storage.ledger_dir, dir.path().join("ledger"));
        assert_eq!(cfg.ledger.signature_interval_tx, 5_000);
        let back: NodeConfig = toml::from_str(&cfg.to_toml()).unwrap();
        assert_eq!(back.network.rpc_address, "127.0.0.1:9000");
    }

    #[test]
    fn invalid_values_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        for bad in [
            "[network]\nrpc_address = \"nowhere\"\n",
            "[ledger]\nsignature_interval_tx = 0\nsignature_interval_ms = 5\nchunk_threshold_bytes = 1\n",
            "unknown_field = 1\n",
            "not toml at all [",
            "[attestation]\nplatform = \"sgx\"\n",
            "[attestation]\nplatform = \"snp\"\n",
            "[attestation]\nsnp_endorsements_file = \"vcek.pem\"\n",
            "[limits]\nmax_anonymous_connections = 0\n",
            "[limits]\nmax_buffered_body_bytes_per_connection = 1000\n",
            "[limits]\nsmall_body_reserve_bytes = 67108864\n",
            "[limits]\nsmall_body_max_bytes = 9000000\n",
            "[consensus]\nelection_timeout_ms = 1000\nheartbeat_ms = 100\nmax_inflight_appends = 0\n",
            "[consensus]\nelection_timeout_ms = 1000\nheartbeat_ms = 100\nmax_inflight_appends = 257\n",
        ] {
            std::fs::write(&path, bad).unwrap();
            assert!(NodeConfig::load(&path).is_err(), "{bad}");
        }
    }

    #[test]
    fn appends_in_flight_default_to_one_and_reach_the_replica() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "[consensus]\nelection_timeout_ms = 1000\nheartbeat_ms = 100\n").unwrap();
        let cfg = NodeConfig::load(&path).unwrap();
        assert_eq!(cfg.consensus.max_inflight_appends, 1);
        std::fs::write(
            &path,
            "[consensus]\nelection_timeout_ms = 1000\nheartbeat_ms = 100\nmax_inflight_appends = 8\n",
        )
        .unwrap();
        let cfg = NodeConfig::load(&path).unwrap();
        let rc = crate::engine::Engine::replica_config(&cfg, consort_consensus::RaftId(1));
        assert_eq!(rc.max_inflight_appends, 8);
    }

    #[test]
    fn attestation_defaults_to_virtual_and_snp_takes_an_endorsements_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "").unwrap();
        let cfg = NodeConfig::load(&path).unwrap();
        assert_eq!(cfg.attestation.platform, PlatformChoice::Virtual);
        assert_eq!(cfg.attestation.snp_endorsements_file, None);

        std::fs::write(
            &path,
            "[attestation]\nplatform = \"snp\"\nsnp_endorsements_file = \"host/vcek.pem\"\n",
        )
        .unwrap();
        let cfg = NodeConfig::load(&path).unwrap();
        assert_eq!(cfg.attestation.platform, PlatformChoice::Snp);
        assert_eq!(
            cfg.attestation.snp_endorsements_file,
            Some(dir.path().join("host/vcek.pem"))
        );
        let back: NodeConfig = toml::from_str(&cfg.to_toml()).unwrap();
        assert_eq!(back.attestation.platform, PlatformChoice::Snp);
    }
}
