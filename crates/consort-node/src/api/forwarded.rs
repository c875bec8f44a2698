//! The primary's side of forwarding: a request a backup forwarded over the node-to-node channel is decoded, run
//! like a request from a client (off the async workers), and answered over the channel.

use crate::engine::NodeId;
use crate::net::channels::FrameKind;
use crate::net::forwarding::{ForwardedRequest, ForwardedResponse};
use crate::node::Node;
use bytes::Bytes;
use std::sync::Arc;

/// The 503 for a forwarded long request that found no turn.
fn busy_answer(node: &Node, req: &ForwardedRequest) -> ForwardedResponse {
    let resp = super::app::busy();
    ForwardedResponse {
        id: req.id,
        status: resp.status,
        txid: Some(node.engine().current_txid().to_string()),
        content_type: "application/json".into(),
        body: resp.body.to_string().into_bytes(),
        headers: vec![],
    }
}

/// On the primary: executes a request forwarded by node `from` and sends the answer back over the channel.
pub async fn serve(node: Arc<Node>, from: NodeId, frame: Bytes) {
    let req = match ForwardedRequest::decode(&frame) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(%from, "malformed forwarded request dropped: {e}");
            return;
        }
    };
    let id = req.id;
    // A long app request takes one of the node's turns for them, as it would arriving directly.
    let path = req.target.split_once('?').map_or(req.target.as_str(), |(p, _)| p);
    let long = path
        .strip_prefix("/app")
        .is_some_and(|sub| node.app().runs_long(&req.method, sub, &req.body));
    let turn = if long {
        Some(node.long_request_turn().await)
    } else {
        None
    };
    let node2 = node.clone();
    let from2 = from.clone();
    let executed = match turn {
        Some(None) => Ok(busy_answer(&node, &req)),
        _ => tokio::task::spawn_blocking(move || super::app::execute_forwarded(&node2, &from2, &req)).await,
    };
    drop(turn);
    let resp = match executed {
        Ok(mut r) => {
            r.id = id;
            r
        }
        Err(e) => ForwardedResponse {
            id,
            status: 500,
            txid: None,
            content_type: "application/json".into(),
            body: serde_json::json!({"error": {"code": "InternalError", "message": e.to_string()}})
                .to_string()
                .into_bytes(),
            headers: vec![],
        },
    };
    if let Some(ch) = node.channels() {
        if !ch.send(&from, FrameKind::ForwardedResponse, resp.encode()) {
            tracing::warn!(%from, id, "could not send the answer to a forwarded request");
        }
    }
}
