//! Endpoints in historical mode: the request names a past transaction in its `x-ms-ccf-transaction-id` header; the
//! app runs on the receiving node (never forwarded) over the store of what that transaction wrote, with its receipt,
//! once the node has fetched it. Until then the answer is `202 Accepted` with `Retry-After`, as CCF's historical
//! adapter answers; a TxID that is not committed gets CCF's `404` codes.

use super::app::AppCall;
use super::ApiError;
use crate::apps::{AppRequest, AppResponse, Caller, HistoricalContext, HISTORICAL_RETRY_AFTER_S};
use crate::engine::{TxId, TxStatus};
use crate::historical::cache::Lookup;
use crate::node::Node;
use consort_kv::Tx;

/// The request header naming the transaction whose state a historical request reads.
pub const HISTORICAL_TXID_HEADER: &str = crate::net::http::TXID_HEADER;

/// Runs a historical endpoint for `caller` (its policies passed): the app's answer, or CCF's error or `202`.
pub(super) fn run(node: &Node, call: &AppCall<'_>, caller: &Caller) -> (AppResponse, TxId) {
    let engine = node.engine();
    let current = engine.current_txid();
    let id = match requested_txid(call) {
        Ok(id) => id,
        Err(e) => return (error(&e), current),
    };
    match engine.tx_status(id) {
        TxStatus::Committed => {}
        status @ (TxStatus::Pending | TxStatus::Unknown) => {
            let msg = format!(
                "Only committed transactions can be queried. Transaction {id} is {}",
                status.as_str()
            );
            let mut resp = error(&ApiError::new(404, "TransactionPendingOrUnknown", msg));
            resp.headers.push(("cache-control".into(), "no-cache".into()));
            return (resp, current);
        }
        TxStatus::Invalid => {
            let msg = format!("Only committed transactions can be queried. Transaction {id} is Invalid");
            return (error(&ApiError::new(404, "TransactionInvalid", msg)), current);
        }
    }
    let state = match node.historical().state_at(id) {
        Lookup::Ready(state) => state,
        Lookup::Pending | Lookup::Busy => return (accepted(id), current),
        Lookup::Failed(e) => {
            let msg = format!("Historical transaction {id} failed with error: {e}");
            return (error(&ApiError::internal(msg)), current);
        }
    };
    let receipt = match &state.receipt {
        Some(parts) => super::node::receipt_json(parts, &super::node::endorsements(engine, id)),
        None => serde_json::Value::Null,
    };
    let context = HistoricalContext {
        transaction_id: id.to_string(),
        receipt,
    };
    let req = AppRequest {
        method: call.method,
        path: call.sub,
        query: call.query,
        headers: call.headers,
        body: call.body,
        caller,
        historical: Some(&context),
    };
    let mut tx = Tx::shared(state.store.clone());
    let resp = node.app().handle(&req, &mut tx);
    if tx.has_writes() {
        // The historical store is a copy of the past: nothing written to it would reach the ledger.
        let e = ApiError::internal("a historical endpoint attempted to write; nothing was written");
        return (error(&e), current);
    }
    (resp, current)
}

/// The TxID in the request's header. CCF's adapter answers a missing or malformed one as `TransactionInvalid`.
fn requested_txid(call: &AppCall<'_>) -> Result<TxId, ApiError> {
    let Some(raw) = crate::auth::header(call.headers, HISTORICAL_TXID_HEADER) else {
        let msg = format!("Historical query is missing '{HISTORICAL_TXID_HEADER}' header.");
        return Err(ApiError::new(404, "TransactionInvalid", msg));
    };
    raw.trim().parse::<TxId>().map_err(|_| {
        let msg =
            format!("The value '{raw}' in header '{HISTORICAL_TXID_HEADER}' could not be converted to a valid Tx ID.");
        ApiError::new(404, "TransactionInvalid", msg)
    })
}

fn error(e: &ApiError) -> AppResponse {
    AppResponse::error(e.status, e.code, e.message.clone())
}

/// `202 Accepted`, `Retry-After`, and CCF's sentence in plain text.
fn accepted(id: TxId) -> AppResponse {
    let mut resp = AppResponse::json(202, serde_json::Value::Null);
    resp.raw = Some(Box::new(crate::apps::RawBody {
        content_type: "text/plain".into(),
        bytes: format!("Historical transaction {id} is not currently available.").into_bytes(),
    }));
    resp.headers = vec![("retry-after".into(), HISTORICAL_RETRY_AFTER_S.to_string())];
    resp
}
