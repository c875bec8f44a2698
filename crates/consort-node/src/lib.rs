//! A Consort node: the only crate with server IO (tokio, TLS, HTTP, files, timers); it drives the sans-IO cores.
//!
//! The folders are the architecture: [`engine`] (the replica behind its lock, persistence, ticker and snapshot
//! threads), [`net`] (TLS, the HTTP server, node-to-node channels, forwarding, the client), [`api`] (the `/app`,
//! `/node` and `/gov` endpoints, join, OpenAPI, error JSON), [`apps`] (the built-in applications), and identity and
//! configuration ([`identity`], [`config`]). [`node::Node`] holds one node's parts together; [`launch`] runs it.
#![forbid(unsafe_code)]

pub mod api;
pub mod apps;
pub mod auth;
pub mod config;
pub mod engine;
pub mod historical;
pub mod identity;
pub mod joiner;
pub mod launch;
pub mod metrics;
pub mod net;
pub mod node;
pub mod platform;

pub use launch::{join, open_node, run};

/// Why a node could not start or had to stop. Every variant is fatal for the process; errors of single requests
/// are [`api::ApiError`]s and never reach here.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration file is missing or invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The node's identity files could not be read or written.
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    /// The engine could not open or replay its state.
    #[error(transparent)]
    Engine(#[from] engine::EngineError),
    /// The TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] net::tls::TlsError),
    /// The node refuses to start in this state (the reason says why and what to change).
    #[error(transparent)]
    Refused(#[from] engine::StartRefusal),
    /// A listening socket could not be bound.
    #[error("bind {address}: {source}")]
    Bind {
        /// The address from the configuration.
        address: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A thread or runtime of the node could not be started.
    #[error("start {what}: {source}")]
    Start {
        /// Which thread or runtime.
        what: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The node-to-node channels could not be set up.
    #[error(transparent)]
    Channels(#[from] net::channels::ChannelError),
    /// A key or certificate operation failed.
    #[error(transparent)]
    Crypto(#[from] consort_crypto::CryptoError),
    /// This node could not attest itself.
    #[error("attestation: {0}")]
    Attest(#[from] consort_attest::AttestError),
    /// Joining the service failed.
    #[error("join: {0}")]
    Join(#[from] joiner::JoinError),
}
