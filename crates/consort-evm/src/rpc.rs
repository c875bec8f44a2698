//! JSON-RPC 2.0 over one KV transaction: single requests and batches (at most [`MAX_BATCH_REQUESTS`]), the
//! claims digest of the EVM transactions a request included, and whether a body can need a write.

use crate::config::EvmConfig;
use crate::error::{RpcError, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR, RESPONSE_TOO_LARGE};
use crate::exec::Included;
use crate::limits::{MAX_BATCH_REQUESTS, MAX_RESPONSE_BYTES};
use crate::state::CodeCache;
use consort_kv::Tx;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The one method that writes.
pub const SEND_RAW_TRANSACTION: &str = "eth_sendRawTransaction";

/// Who calls, when, under which configuration.
#[derive(Debug, Clone, Copy)]
pub struct Session<'a> {
    /// The authenticated Consort user.
    pub user: &'a str,
    /// Seconds since the Unix epoch (block timestamps).
    pub now_s: u64,
    /// The configuration in force.
    pub config: &'a EvmConfig,
    /// Analysed bytecode.
    pub codes: &'a CodeCache,
    /// The host's committed seqno, when it has one: transactions stored above it are not shown as mined yet (no
    /// receipt, no logs, not in a block, and `eth_blockNumber` is at most it). None: all stored ones are.
    pub committed: Option<u64>,
}

/// The answer to a request body, and the EVM transactions it included, in order.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The JSON-RPC response (a batch answers an array; a batch of notifications only, nothing).
    pub body: Vec<u8>,
    /// Transactions included (empty when nothing was written).
    pub included: Vec<Included>,
}

impl Reply {
    /// The claims digest binding the included transactions into the Consort receipt: SHA-256 over, for each
    /// included transaction in order, its hash (32 bytes) ‖ Keccak-256 of its receipt's EIP-2718 encoding (32
    /// bytes). None when nothing was included. For one transaction: SHA-256(tx hash ‖ keccak(receipt)).
    pub fn claims_digest(&self) -> Option<[u8; 32]> {
        if self.included.is_empty() {
            return None;
        }
        let mut h = Sha256::new();
        for i in &self.included {
            h.update(i.hash.as_slice());
            h.update(i.receipt_hash.as_slice());
        }
        Some(h.finalize().into())
    }
}

/// Whether `body` may ask for a write: it names [`SEND_RAW_TRANSACTION`] literally. A body that does not is
/// served read-only; one that names the method only through JSON escapes is refused (-32600) rather than
/// written without consensus.
pub fn needs_write(body: &[u8]) -> bool {
    names(body, SEND_RAW_TRANSACTION.as_bytes())
}

/// Whether `body` holds `needle` literally.
fn names(body: &[u8], needle: &[u8]) -> bool {
    body.windows(needle.len()).any(|w| w == needle)
}

/// Methods that may compute for long: calls and estimates at their gas budget
/// ([`crate::limits::MAX_CALL_GAS_PER_REQUEST`]), and queries that scan stored transactions
/// ([`crate::limits::MAX_SCANNED_TRANSACTIONS`]).
const LONG_METHODS: [&str; 5] = [
    "eth_call",
    "eth_estimateGas",
    "eth_getLogs",
    "eth_getBlockByNumber",
    "eth_getBlockByHash",
];

/// Whether `body` may compute for long: it names one of the calls, estimates or scans, or it holds a `\u` escape
/// (which could spell one) (a host runs those off its request workers).
pub fn runs_long(body: &[u8]) -> bool {
    names(body, br"\u") || LONG_METHODS.iter().any(|m| names(body, m.as_bytes()))
}

/// Serves a JSON-RPC body in `tx`.
pub fn handle(tx: &mut Tx<'_>, body: &[u8], s: &Session<'_>) -> Reply {
    let mut batch = crate::methods::Batch::new(needs_write(body));
    let parsed: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return single(error_response(
                Value::Null,
                &RpcError::new(PARSE_ERROR, format!("parse error: {e}")),
            ))
        }
    };
    let body = match parsed {
        Value::Array(requests) => {
            if requests.is_empty() {
                return single(error_response(
                    Value::Null,
                    &RpcError::new(INVALID_REQUEST, "empty batch"),
                ));
            }
            if requests.len() > MAX_BATCH_REQUESTS {
                let e = RpcError::new(
                    INVALID_REQUEST,
                    format!("batch of more than {MAX_BATCH_REQUESTS} requests"),
                );
                return single(error_response(Value::Null, &e));
            }
            let mut left = MAX_RESPONSE_BYTES;
            let mut out = vec![b'['];
            for r in &requests {
                let answer = if left == 0 {
                    // Over the budget already: the request is not run.
                    r.get("id").map(|id| too_large(id.clone()))
                } else {
                    one(tx, r, s, &mut batch)
                };
                let Some(answer) = answer else { continue };
                if out.len() > 1 {
                    out.push(b',');
                }
                out.extend(within_budget(answer, &mut left));
            }
            if out.len() == 1 {
                vec![]
            } else {
                out.push(b']');
                out
            }
        }
        other => one(tx, &other, s, &mut batch)
            .map(|v| within_budget(v, &mut { MAX_RESPONSE_BYTES }))
            .unwrap_or_default(),
    };
    Reply {
        body,
        included: batch.included,
    }
}

/// `answer` serialised, or the "response too large" error in its place when it does not fit in what is `left`
/// of the response budget (which it then uses up).
fn within_budget(answer: Value, left: &mut usize) -> Vec<u8> {
    let bytes = answer.to_string().into_bytes();
    if bytes.len() <= *left {
        *left -= bytes.len();
        return bytes;
    }
    *left = 0;
    let id = answer.get("id").cloned().unwrap_or(Value::Null);
    too_large(id).to_string().into_bytes()
}

fn too_large(id: Value) -> Value {
    error_response(id, &RpcError::new(RESPONSE_TOO_LARGE, "response too large"))
}

fn single(v: Value) -> Reply {
    Reply {
        body: v.to_string().into_bytes(),
        included: vec![],
    }
}

fn error_response(id: Value, e: &RpcError) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": e.to_json()})
}

/// One request object; None for a notification (no `id`).
fn one(tx: &mut Tx<'_>, req: &Value, s: &Session<'_>, batch: &mut crate::methods::Batch) -> Option<Value> {
    let Some(obj) = req.as_object() else {
        return Some(error_response(
            Value::Null,
            &RpcError::new(INVALID_REQUEST, "invalid request"),
        ));
    };
    let id = obj.get("id").cloned();
    let reply_id = id.clone().unwrap_or(Value::Null);
    let (Some("2.0"), Some(method)) = (
        obj.get("jsonrpc").and_then(Value::as_str),
        obj.get("method").and_then(Value::as_str),
    ) else {
        return Some(error_response(
            reply_id,
            &RpcError::new(INVALID_REQUEST, "invalid request"),
        ));
    };
    let params = match obj.get("params") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Some(error_response(reply_id, &RpcError::params("params must be an array"))),
    };
    let result = crate::methods::call(tx, method, &params, s, batch);
    id.as_ref()?;
    Some(match result {
        Ok(v) => json!({"jsonrpc": "2.0", "id": reply_id, "result": v}),
        Err(e) => error_response(reply_id, &e),
    })
}

/// The error for a method this app does not have.
pub(crate) fn not_found(method: &str) -> RpcError {
    RpcError::new(
        METHOD_NOT_FOUND,
        format!("the method {method} does not exist/is not available"),
    )
}
