//! The primary's side of forwarding: a request a backup forwarded over the node-to-node channel is decoded, run
//! like a request from a client (off the async workers), and answered over the channel.

use crate::engine::NodeId;
use crate::net::channels::FrameKind;
use crate::net::forwarding::{ForwardedRequest, ForwardedResponse};
use crate::node::Node;
use bytes::Bytes;
use std::sync::Arc;

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
    let node2 = node.clone();
    let from2 = from.clone();
    let executed = tokio::task::spawn_blocking(move || super::app::execute_forwarded(&node2, &from2, &req)).await;
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
