//! Consort's JavaScript application runtime: endpoints of a CCF-style app bundle run in QuickJS under the
//! governed heap, stack and time limits, with CCF's `ccf` global (`ccf.kv` over the request's KV transaction,
//! codecs, crypto, `ccf.rpc`, `ccf.consensus`, `ccf.historicalState`, `ccf.historical.getStateRange`).
//!
//! The crate does no IO: the node passes the transaction, the clock check for the time budget (an interrupt
//! callback) and what it knows of consensus ([`NodeView`]), and caches [`Interpreter`]s per thread itself.

#![forbid(unsafe_code)]
#![warn(unreachable_pub, missing_docs)]

mod crypto;
pub mod endpoints;
mod host;
mod interpreter;
pub mod options;

pub use endpoints::{Endpoint, EndpointMode, Endpoints, ENDPOINTS_TABLE, MODULES_TABLE};
pub use host::MAX_STATE_RANGE_SEQNOS;
pub use interpreter::{CallInput, CallOutput, Interpreter, JsError, KvAccess, NodeView, ResponseBody, StateRange};
pub use options::{RuntimeOptions, RUNTIME_OPTIONS_TABLE};
