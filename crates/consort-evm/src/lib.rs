//! Ethereum on Consort: an EVM (revm) over Consort KV maps behind Ethereum's JSON-RPC, with no IO.
//!
//! The node's EVM app (`consort-node`'s `apps/evm.rs`) hands a request body, the caller and the time to
//! [`rpc::handle`] inside the KV transaction it provides, and commits what it wrote with the claims digest of
//! [`rpc::Reply::claims_digest`].
//!
//! - [`rpc`]: JSON-RPC 2.0 requests and batches; [`methods`]: each method.
//! - [`exec`]: decoding and checking signed transactions, executing them with revm, `eth_call`/`eth_estimateGas`.
//! - [`state`]: the revm database over the private maps (accounts, code, storage) and the commit of changes.
//! - [`record`]: what is stored per transaction (signed bytes, Ethereum receipt, submitting user).
//! - [`views`]: transactions, receipts and logs as JSON, and the visibility policy.
//! - [`block`]: block numbers (seqnos) and hashes; [`query`]: scans over block ranges (`eth_getLogs`).
//! - [`config`]: the governed configuration; [`limits`]: the named limits; [`error`]: geth's error codes.
#![forbid(unsafe_code)]
#![warn(unreachable_pub, missing_docs)]

pub mod block;
pub mod config;
pub mod error;
pub mod exec;
pub mod hexfmt;
pub mod limits;
pub mod methods;
pub mod query;
pub mod record;
pub mod rpc;
pub mod state;
pub mod views;

pub use config::{ConfigCache, EvmConfig, Visibility};
pub use error::RpcError;
pub use rpc::{handle, needs_write, runs_long, Reply, Session};
pub use state::CodeCache;
