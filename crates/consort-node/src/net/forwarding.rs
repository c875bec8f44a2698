//! Forwarding over the node-to-node channel: a backup sends a write (or a governance request) it cannot execute to
//! the primary as a [`FrameKind::ForwardedRequest`] frame, and the primary answers with a
//! [`FrameKind::ForwardedResponse`] frame carrying its status, TxID and body.
//!
//! The channel is mutual TLS between nodes endorsed by the service certificate, so the primary knows which node
//! forwarded a request; it believes the caller named in the request only from a Trusted node, and only for a
//! registered user. Payloads are CBOR arrays (ciborium):
//! request `[id, method, target, caller|null, content_type, body]`, response
//! `[id, status, txid|null, content_type, body]`; `id` pairs answers with requests on the forwarding node.

use super::channels::{Channels, FrameKind};
use super::client::Reply;
use crate::engine::NodeId;
use bytes::Bytes;
use ciborium::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::oneshot;

/// A forwarded request that gets no answer within this time fails with 504.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// Forwarded requests a node waits on at once; more get 503 until some are answered.
pub const MAX_FORWARDED_IN_FLIGHT: usize = 16_384;
/// Longest method, target, caller or content type in a forwarded request.
pub const MAX_FORWARDED_FIELD_BYTES: usize = 8 * 1024;

/// A request a backup forwards to the primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardedRequest {
    pub id: u64,
    pub method: String,
    /// Path and query, e.g. `/app/log/private?x=1`.
    pub target: String,
    /// App requests: the id of the TLS client certificate the caller proved to the forwarding node (the primary
    /// authenticates it again against the endpoint's policies); joins: the joiner's node id; none for governance
    /// requests, which carry their signature.
    pub caller: Option<String>,
    pub content_type: String,
    pub body: Vec<u8>,
    /// Request headers the app may read or authenticate with (names in lower case), at most
    /// [`MAX_FORWARDED_HEADERS`].
    pub headers: Vec<(String, String)>,
}

/// The primary's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardedResponse {
    pub id: u64,
    pub status: u16,
    pub txid: Option<String>,
    pub content_type: String,
    pub body: Vec<u8>,
    /// Extra response headers the app set, at most [`MAX_FORWARDED_HEADERS`].
    pub headers: Vec<(String, String)>,
}

/// Most headers one forwarded request or response frame carries.
pub const MAX_FORWARDED_HEADERS: usize = 64;

fn encode_headers(headers: &[(String, String)]) -> Value {
    Value::Array(
        headers
            .iter()
            .map(|(n, v)| Value::Array(vec![Value::Text(n.clone()), Value::Text(v.clone())]))
            .collect(),
    )
}

fn as_headers(v: Value) -> Result<Vec<(String, String)>, FrameDecodeError> {
    let wrong = || FrameDecodeError::WrongType {
        field: "headers",
        expected: "an array of [name, value] text pairs",
    };
    let Value::Array(items) = v else {
        return Err(wrong());
    };
    if items.len() > MAX_FORWARDED_HEADERS {
        return Err(FrameDecodeError::TooLong("headers"));
    }
    items
        .into_iter()
        .map(|item| match item {
            Value::Array(pair) => {
                let [name, value]: [Value; 2] = pair.try_into().map_err(|_| wrong())?;
                Ok((as_text(name, "header name")?, as_text(value, "header value")?))
            }
            _ => Err(wrong()),
        })
        .collect()
}

fn encode(v: Value) -> Bytes {
    let mut out = Vec::new();
    ciborium::into_writer(&v, &mut out).expect("writing CBOR to a Vec cannot fail");
    Bytes::from(out)
}

fn opt_text(s: &Option<String>) -> Value {
    s.as_ref().map_or(Value::Null, |s| Value::Text(s.clone()))
}

/// Why a forwarded request or response frame could not be decoded (the frame is dropped).
#[derive(Debug, thiserror::Error)]
pub enum FrameDecodeError {
    /// The frame is not CBOR.
    #[error("malformed CBOR: {0}")]
    Cbor(#[from] ciborium::de::Error<std::io::Error>),
    /// The frame is not an array of the expected length.
    #[error("expected an array of {0} items")]
    NotAnArray(usize),
    /// A field has the wrong CBOR type.
    #[error("{field}: expected {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    /// A text field is longer than [`MAX_FORWARDED_FIELD_BYTES`].
    #[error("{0}: longer than {MAX_FORWARDED_FIELD_BYTES} bytes")]
    TooLong(&'static str),
    /// The status is not an HTTP status code.
    #[error("status {0} out of range")]
    Status(u64),
    /// Bytes follow the frame's CBOR array.
    #[error("{0} bytes after the frame")]
    TrailingBytes(usize),
}

/// Errors compare by what they say: the source of a CBOR error (an `io::Error`) has no equality of its own, and
/// the fuzz target compares decoding results.
impl PartialEq for FrameDecodeError {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

fn decode_array<const N: usize>(bytes: &[u8]) -> Result<[Value; N], FrameDecodeError> {
    let mut rest = bytes;
    let v: Value = ciborium::from_reader(&mut rest)?;
    if !rest.is_empty() {
        // One frame is one CBOR item: bytes after it would be ignored, so a frame with them is not well formed.
        return Err(FrameDecodeError::TrailingBytes(rest.len()));
    }
    match v {
        Value::Array(a) => a.try_into().map_err(|_| FrameDecodeError::NotAnArray(N)),
        _ => Err(FrameDecodeError::NotAnArray(N)),
    }
}

fn as_u64(v: &Value, field: &'static str) -> Result<u64, FrameDecodeError> {
    v.as_integer()
        .and_then(|i| u64::try_from(i).ok())
        .ok_or(FrameDecodeError::WrongType {
            field,
            expected: "an unsigned integer",
        })
}

fn as_text(v: Value, field: &'static str) -> Result<String, FrameDecodeError> {
    match v {
        Value::Text(t) if t.len() <= MAX_FORWARDED_FIELD_BYTES => Ok(t),
        Value::Text(_) => Err(FrameDecodeError::TooLong(field)),
        _ => Err(FrameDecodeError::WrongType {
            field,
            expected: "text",
        }),
    }
}

fn as_opt_text(v: Value, field: &'static str) -> Result<Option<String>, FrameDecodeError> {
    match v {
        Value::Null => Ok(None),
        v => as_text(v, field).map(Some),
    }
}

fn as_bytes(v: Value, field: &'static str) -> Result<Vec<u8>, FrameDecodeError> {
    match v {
        Value::Bytes(b) => Ok(b),
        _ => Err(FrameDecodeError::WrongType {
            field,
            expected: "bytes",
        }),
    }
}

impl ForwardedRequest {
    pub fn encode(&self) -> Bytes {
        encode(Value::Array(vec![
            Value::Integer(self.id.into()),
            Value::Text(self.method.clone()),
            Value::Text(self.target.clone()),
            opt_text(&self.caller),
            Value::Text(self.content_type.clone()),
            Value::Bytes(self.body.clone()),
            encode_headers(&self.headers),
        ]))
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, FrameDecodeError> {
        let [id, method, target, caller, content_type, body, headers] = decode_array(bytes)?;
        Ok(ForwardedRequest {
            id: as_u64(&id, "id")?,
            method: as_text(method, "method")?,
            target: as_text(target, "target")?,
            caller: as_opt_text(caller, "caller")?,
            content_type: as_text(content_type, "content type")?,
            body: as_bytes(body, "body")?,
            headers: as_headers(headers)?,
        })
    }
}

impl ForwardedResponse {
    pub fn encode(&self) -> Bytes {
        encode(Value::Array(vec![
            Value::Integer(self.id.into()),
            Value::Integer(self.status.into()),
            opt_text(&self.txid),
            Value::Text(self.content_type.clone()),
            Value::Bytes(self.body.clone()),
            encode_headers(&self.headers),
        ]))
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, FrameDecodeError> {
        let [id, status, txid, content_type, body, headers] = decode_array(bytes)?;
        let status = as_u64(&status, "status")?;
        Ok(ForwardedResponse {
            id: as_u64(&id, "id")?,
            status: u16::try_from(status).map_err(|_| FrameDecodeError::Status(status))?,
            txid: as_opt_text(txid, "txid")?,
            content_type: as_text(content_type, "content type")?,
            body: as_bytes(body, "body")?,
            headers: as_headers(headers)?,
        })
    }
}

/// A request to forward.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Path and query.
    pub target: &'a str,
    /// The user id of an app request's caller, or the node id whose key a joiner proved it holds; none for
    /// governance requests (signed by the member in the body).
    pub caller: Option<&'a str>,
    /// The body's content type.
    pub content_type: &'a str,
    /// The body.
    pub body: &'a [u8],
    /// Headers to pass on (app requests).
    pub headers: &'a [(String, String)],
}

/// Why a forwarded request got no answer from the primary.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ForwardError {
    /// No primary is known, or this node has no channels.
    #[error("{0}")]
    NoPrimary(&'static str),
    /// [`MAX_FORWARDED_IN_FLIGHT`] requests are already waiting.
    #[error("too many forwarded requests in flight; retry")]
    TooManyInFlight,
    /// The channel to the primary is down.
    #[error("the channel to the primary is not available; retry")]
    ChannelUnavailable,
    /// The waiting request was dropped before an answer came.
    #[error("the forwarded request was dropped")]
    Dropped,
    /// The primary did not answer within [`FORWARD_TIMEOUT`].
    #[error("the primary {primary} did not answer within {FORWARD_TIMEOUT:?}")]
    Timeout {
        /// Node id of the primary.
        primary: NodeId,
    },
}

/// A request waiting for its answer: where it went and who waits.
struct Waiting {
    to: NodeId,
    reply: oneshot::Sender<ForwardedResponse>,
}

/// The forwarding node's side: sends requests to the primary and pairs answers with them.
#[derive(Default)]
pub struct Forwarder {
    next_id: AtomicU64,
    waiting: Mutex<HashMap<u64, Waiting>>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder").finish_non_exhaustive()
    }
}

impl Forwarder {
    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Waiting>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `request` to the primary over the channel and waits for its answer (status, TxID, body).
    pub async fn forward(
        &self,
        channels: &Channels,
        primary: &NodeId,
        request: Outgoing<'_>,
    ) -> Result<Reply, ForwardError> {
        let Outgoing {
            method,
            target,
            caller,
            content_type,
            body,
            headers,
        } = request;
        let primary = primary.clone();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut waiting = self.waiting();
            if waiting.len() >= MAX_FORWARDED_IN_FLIGHT {
                return Err(ForwardError::TooManyInFlight);
            }
            waiting.insert(
                id,
                Waiting {
                    to: primary.clone(),
                    reply: tx,
                },
            );
        }
        let req = ForwardedRequest {
            id,
            method: method.to_string(),
            target: target.to_string(),
            caller: caller.map(str::to_string),
            content_type: content_type.to_string(),
            body: body.to_vec(),
            headers: headers.iter().take(MAX_FORWARDED_HEADERS).cloned().collect(),
        };
        if !channels.send(&primary, FrameKind::ForwardedRequest, req.encode()) {
            self.waiting().remove(&id);
            return Err(ForwardError::ChannelUnavailable);
        }
        match tokio::time::timeout(FORWARD_TIMEOUT, rx).await {
            Ok(Ok(r)) => Ok(Reply {
                status: r.status,
                txid: r.txid,
                body: Bytes::from(r.body),
                content_type: r.content_type,
                headers: r.headers,
            }),
            Ok(Err(_)) => Err(ForwardError::Dropped),
            Err(_) => {
                self.waiting().remove(&id);
                Err(ForwardError::Timeout { primary })
            }
        }
    }

    /// Another node became primary (`None`: forget every primary): every request still waiting on another node is
    /// answered at once with 503, instead of waiting out [`FORWARD_TIMEOUT`] on a primary that is gone. Such a request may or may not
    /// have executed; the caller can retry (or check the status of the transaction it would have been).
    pub fn abandon_all_but(&self, primary: Option<&NodeId>) {
        let mut waiting = self.waiting();
        let gone: Vec<u64> = waiting
            .iter()
            .filter(|(_, w)| Some(&w.to) != primary)
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            if let Some(w) = waiting.remove(&id) {
                let body = serde_json::json!({"error": {
                    "code": "PrimaryChanged",
                    "message": "the primary changed while the request was forwarded to it; it may or may not have executed: retry",
                }});
                let _ = w.reply.send(ForwardedResponse {
                    id,
                    status: 503,
                    txid: None,
                    content_type: "application/json".into(),
                    body: body.to_string().into_bytes(),
                    headers: vec![],
                });
            }
        }
    }

    /// An answer arrived from node `from`: hands it to the request waiting for it (if it went to that node).
    pub fn complete(&self, from: &NodeId, frame: &[u8]) {
        let resp = match ForwardedResponse::decode(frame) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(%from, "malformed forwarded response dropped: {e}");
                return;
            }
        };
        let mut waiting = self.waiting();
        if waiting.get(&resp.id).is_some_and(|w| w.to == *from) {
            if let Some(w) = waiting.remove(&resp.id) {
                let _ = w.reply.send(resp);
            }
        } else {
            tracing::debug!(%from, id = resp.id, "unexpected forwarded response dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytes_after_a_frame_are_refused() {
        let request = super::ForwardedRequest {
            id: 1,
            method: "POST".into(),
            target: "/app/log/private".into(),
            caller: None,
            content_type: "application/json".into(),
            body: b"{}".to_vec(),
            headers: vec![],
        };
        let mut bytes = request.encode().to_vec();
        assert_eq!(super::ForwardedRequest::decode(&bytes).unwrap().id, 1);
        bytes.push(0);
        assert!(matches!(
            super::ForwardedRequest::decode(&bytes),
            Err(super::FrameDecodeError::TrailingBytes(1))
        ));
    }

    use super::*;

    /// A node id standing for the node called `name` in a test.
    fn node(name: &str) -> NodeId {
        hex::encode(consort_crypto::sha256(name.as_bytes())).parse().unwrap()
    }

    #[test]
    fn requests_and_responses_round_trip_and_garbage_is_refused() {
        let req = ForwardedRequest {
            id: 7,
            method: "POST".into(),
            target: "/app/log/private?x=1".into(),
            caller: Some("abc".into()),
            content_type: "application/json".into(),
            body: b"{\"id\":1}".to_vec(),
            headers: vec![],
        };
        assert_eq!(ForwardedRequest::decode(&req.encode()).unwrap(), req);
        let anon = ForwardedRequest {
            caller: None,
            ..req.clone()
        };
        assert_eq!(ForwardedRequest::decode(&anon.encode()).unwrap(), anon);
        let resp = ForwardedResponse {
            id: 7,
            status: 200,
            txid: Some("2.10".into()),
            content_type: "application/json".into(),
            body: b"true".to_vec(),
            headers: vec![],
        };
        assert_eq!(ForwardedResponse::decode(&resp.encode()).unwrap(), resp);
        assert!(ForwardedRequest::decode(&resp.encode()).is_err());
        assert!(ForwardedResponse::decode(&req.encode()).is_err());
        for bad in [&b""[..], b"\xff\x00", b"\x85\x01\x02\x03\x04\x05", b"\x9f"] {
            assert!(ForwardedRequest::decode(bad).is_err());
            assert!(ForwardedResponse::decode(bad).is_err());
        }
        let long = ForwardedRequest {
            target: "x".repeat(MAX_FORWARDED_FIELD_BYTES + 1),
            ..req
        };
        assert!(ForwardedRequest::decode(&long.encode()).is_err());
        let status = encode(Value::Array(vec![
            Value::Integer(1.into()),
            Value::Integer(70_000.into()),
            Value::Null,
            Value::Text("t".into()),
            Value::Bytes(vec![]),
        ]));
        assert!(ForwardedResponse::decode(&status).is_err());
    }

    #[test]
    fn answers_reach_only_the_request_they_belong_to() {
        let f = Forwarder::default();
        let (tx, mut rx) = oneshot::channel();
        f.waiting().insert(
            3,
            Waiting {
                to: node("primary"),
                reply: tx,
            },
        );
        let resp = ForwardedResponse {
            id: 3,
            status: 200,
            txid: None,
            content_type: "application/json".into(),
            body: vec![],
            headers: vec![],
        };
        f.complete(&node("someone-else"), &resp.encode());
        assert!(rx.try_recv().is_err(), "an answer from another node is ignored");
        f.complete(&node("primary"), b"not cbor");
        f.complete(&node("primary"), &resp.encode());
        assert_eq!(rx.try_recv().unwrap(), resp);
        assert!(f.waiting().is_empty());
    }

    #[test]
    fn a_change_of_primary_answers_the_requests_waiting_on_the_old_one() {
        let f = Forwarder::default();
        let mut receivers = vec![];
        for (id, to) in [(1, "old"), (2, "new"), (3, "old")] {
            let (tx, rx) = oneshot::channel();
            f.waiting().insert(
                id,
                Waiting {
                    to: node(to),
                    reply: tx,
                },
            );
            receivers.push(rx);
        }
        f.abandon_all_but(Some(&node("new")));
        for (i, rx) in receivers.iter_mut().enumerate() {
            match rx.try_recv() {
                Ok(r) => {
                    assert_ne!(i, 1, "the request to the new primary keeps waiting");
                    assert_eq!(r.status, 503);
                    assert!(String::from_utf8_lossy(&r.body).contains("PrimaryChanged"));
                }
                Err(_) => assert_eq!(i, 1),
            }
        }
        assert_eq!(f.waiting().len(), 1);
        f.abandon_all_but(None);
        assert!(f.waiting().is_empty());
    }
}
