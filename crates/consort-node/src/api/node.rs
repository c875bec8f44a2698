//! `/node/*` endpoints and the service-wide views also served under `/app` (commit, transaction status, receipts,
//! OpenAPI): read-only views of the engine, plus the join protocol.

use super::{error_response, json_response, raw_response, ApiError, Resp};
use crate::engine::{node_records, Engine, ReceiptParts, TxId};
use crate::net::http::ClientCert;
use crate::node::Node;
use bytes::Bytes;
use consort_attest::{Evidence, NodeQuote};
use consort_consensus::NodeId;
use consort_ledger::ProofStep;
use consort_ledger::NODES_INFO_TABLE;
use std::sync::Arc;

/// Routes the fixed `/node` and `/app` views; `None` if `method path` is not one of them.
pub(super) async fn route(
    node: &Arc<Node>,
    client: Option<&ClientCert>,
    method: &str,
    path: &str,
    query: &str,
    body: &Bytes,
) -> Option<Resp> {
    let engine = node.engine();
    let current = Some(engine.current_txid());
    let resp = match (method, path) {
        ("GET", "/node/commit") | ("GET", "/app/commit") => json_response(
            200,
            &serde_json::json!({"transaction_id": engine.committed_txid().to_string()}),
            current,
        ),
        ("GET", "/node/tx") | ("GET", "/app/tx") => match txid_param(node, query) {
            Ok(id) => json_response(
                200,
                &serde_json::json!({"status": engine.tx_status(id).as_str(), "transaction_id": id.to_string()}),
                current,
            ),
            Err(e) => error_response(&e, None),
        },
        ("GET", "/app/receipt") | ("GET", "/node/receipt") => match txid_param(node, query) {
            Ok(id) => match receipt(node, id).await {
                Ok(parts) => json_response(200, &receipt_json(&parts, &endorsements(engine, id)), Some(id)),
                Err(e) => error_response(&e, current),
            },
            Err(e) => error_response(&e, None),
        },
        ("GET", "/node/network") => json_response(200, &network_info(node), current),
        ("POST", "/node/join") => {
            // The key id of the client's certificate, if it is a node id (the joiner's own).
            let key_id: Option<NodeId> = client.and_then(|c| c.key_id.as_deref()).and_then(|k| k.parse().ok());
            match super::join::handle_join(node.clone(), key_id.as_ref(), body.to_vec()).await {
                Ok(v) => json_response(200, &v, current),
                Err(e) => error_response(&e, current),
            }
        }
        ("GET", "/node/consensus") => match serde_json::to_value(engine.consensus_state()) {
            Ok(v) => json_response(200, &v, current),
            Err(e) => error_response(&ApiError::internal(e.to_string()), current),
        },
        ("GET", "/node/network/nodes") => json_response(200, &nodes_info(node), current),
        ("GET", "/node/state") => json_response(
            200,
            &serde_json::json!({
                "node_id": engine.identities().node_id,
                // CCF's names: a recovered node serves the public part only until the members' shares are in.
                "state": if engine.private_pending() { "PartOfPublicNetwork" } else { "PartOfNetwork" },
                "last_signed_seqno": engine.last_signature_seqno(),
                "startup_seqno": 0,
                "recovery": engine.recovery_state(),
            }),
            current,
        ),
        ("GET", "/node/metrics") => raw_response(
            200,
            "text/plain; version=0.0.4",
            Bytes::from(engine.metrics().render()),
            current.map(|t| t.to_string()),
        ),
        ("GET", "/node/quotes/self") => match node.attestation() {
            Some(a) => {
                let quote = NodeQuote::new(engine.identities().node_id.as_str(), &a.evidence, Some(&a.claims));
                match serde_json::to_value(quote) {
                    Ok(v) => json_response(200, &v, current),
                    Err(e) => error_response(&ApiError::internal(e.to_string()), current),
                }
            }
            None => error_response(
                &ApiError::new(404, "ResourceNotFound", "this node has no attestation"),
                current,
            ),
        },
        ("GET", "/node/quotes") => json_response(200, &serde_json::json!({"quotes": recorded_quotes(engine)}), current),
        ("GET", "/node/api") => json_response(200, &super::openapi::node_api(), current),
        ("GET", "/app/api") => json_response(200, &super::openapi::app_api(node.app()), current),
        _ => return None,
    };
    Some(resp)
}

/// The `transaction_id` query parameter: 400 if missing or malformed.
pub(super) fn txid_param(node: &Node, query: &str) -> Result<TxId, ApiError> {
    let raw = crate::apps::query_param(query, "transaction_id").ok_or_else(|| {
        ApiError::new(
            400,
            "InvalidQueryParameterValue",
            "missing query parameter transaction_id",
        )
    })?;
    raw.parse::<TxId>().map_err(|e| {
        node.engine().metrics().rejected_requests.inc();
        ApiError::new(400, "InvalidQueryParameterValue", e)
    })
}

/// Builds the receipt for `id` on a blocking thread, when the node gives this request a turn (503 otherwise).
async fn receipt(node: &Arc<Node>, id: TxId) -> Result<ReceiptParts, ApiError> {
    let Some(turn) = node.receipt_turn().await else {
        return Err(ApiError::new(
            503,
            "TooManyRequests",
            "the node is busy building other receipts; retry shortly",
        ));
    };
    let engine = node.engine().clone();
    if !engine.ledger_secrets().covers(id.seqno.get()) {
        return Err(ApiError::new(
            503,
            "ServiceRecovering",
            "the service is recovering: receipts of the old ledger's transactions are available once it opens",
        ));
    }
    let built = tokio::task::spawn_blocking(move || {
        let parts = engine.receipt(id);
        drop(turn);
        parts
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    built.map_err(ApiError::from)
}

/// The certificates that chain the service identity a transaction was signed under to the current one (empty for a
/// transaction of the current service; see `engine::recovery::PreviousIdentity`).
pub(super) fn endorsements(engine: &Engine, id: TxId) -> Vec<String> {
    let store = engine.store();
    let previous = crate::engine::recovery::previous_identities(&store.read_only());
    crate::engine::recovery::endorsements_for(&previous, id.seqno.get())
}

/// CCF's JSON receipt for a transaction that is not a signature transaction.
pub(super) fn receipt_json(parts: &ReceiptParts, service_endorsements: &[String]) -> serde_json::Value {
    let proof: Vec<serde_json::Value> = parts
        .proof
        .iter()
        .map(|s| match s {
            ProofStep::Left(h) => serde_json::json!({"left": hex::encode(h)}),
            ProofStep::Right(h) => serde_json::json!({"right": hex::encode(h)}),
        })
        .collect();
    serde_json::json!({
        "cert": parts.signature.cert,
        "node_id": parts.signature.node,
        "signature": parts.signature.sig,
        "is_signature_transaction": false,
        "leaf_components": {
            "write_set_digest": hex::encode(parts.write_set_digest),
            "commit_evidence": parts.commit_evidence,
            "claims_digest": hex::encode(parts.claims_digest),
        },
        "proof": proof,
        "service_endorsements": service_endorsements,
    })
}

/// The quotes the nodes table records for Trusted nodes (what each presented when it joined, or at genesis).
fn recorded_quotes(engine: &Engine) -> Vec<serde_json::Value> {
    let store = engine.store();
    let tx = store.read_only();
    let mut quotes = vec![];
    tx.foreach(NODES_INFO_TABLE, |k, v| {
        let info: serde_json::Value = serde_json::from_slice(v).unwrap_or_default();
        if info["status"] == "Trusted" {
            if let Ok(evidence) = Evidence::from_json_value(&info["quote_info"]) {
                let id = String::from_utf8_lossy(k);
                if let Ok(q) = serde_json::to_value(NodeQuote::new(&id, &evidence, None)) {
                    quotes.push(q);
                }
            }
        }
        true
    });
    quotes
}

fn network_info(node: &Node) -> serde_json::Value {
    let engine = node.engine();
    serde_json::json!({
        "service_status": engine.service_status(),
        "service_certificate": engine.current_service_cert_pem(),
        "current_view": engine.current_view(),
        "primary_id": engine.leader().and_then(|l| engine.node_id_of(l)),
        "current_service_create_txid": engine.service_info().map(|i| i["current_service_create_txid"].clone()),
    })
}

fn nodes_info(node: &Node) -> serde_json::Value {
    let engine = node.engine();
    let primary = engine.leader().and_then(|l| engine.node_id_of(l));
    let nodes: Vec<serde_json::Value> = node_records(engine)
        .into_iter()
        .map(|r| {
            serde_json::json!({
                "node_id": r.node_id,
                "status": r.status,
                "primary": primary.as_ref() == Some(&r.node_id),
                "rpc_interfaces": {"primary_rpc_interface": {"bind_address": r.rpc_address}},
                "node_to_node_address": r.node_to_node_address,
            })
        })
        .collect();
    serde_json::json!({ "nodes": nodes })
}
