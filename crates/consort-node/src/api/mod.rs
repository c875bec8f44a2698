//! The endpoints: `/app` (the application, receipts, transaction status), `/node` (the node's own views and the
//! join protocol), `/gov` (governance). Every request is routed here by the HTTP server; every answer, success or
//! [`ApiError`], is built here, and this is the only layer that chooses HTTP status codes.

pub mod app;
pub mod error;
pub mod forwarded;
pub mod gov;
pub mod historical;
pub mod join;
pub mod join_policy;
pub mod node;
pub mod openapi;
mod recovery;

pub use error::ApiError;

use crate::apps::AuthPolicy;
use crate::engine::TxId;
use crate::metrics::RequestLabels;
use crate::net::http::{ClientCert, RequestContext};
use crate::node::Node;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use std::sync::Arc;

pub use crate::net::http::TXID_HEADER;

/// A finished HTTP response.
pub type Resp = Response<Full<Bytes>>;

/// A response with `body` as JSON, stamped with `txid` if given.
pub fn json_response(status: u16, body: &serde_json::Value, txid: Option<TxId>) -> Resp {
    raw_response(
        status,
        "application/json",
        Bytes::from(body.to_string()),
        txid.map(|t| t.to_string()),
    )
}

/// A response with the given bytes; a 204 carries an explicit zero length.
pub fn raw_response(status: u16, content_type: &str, body: Bytes, txid: Option<String>) -> Resp {
    let mut b = Response::builder().status(status).header("content-type", content_type);
    if let Some(t) = txid {
        b = b.header(TXID_HEADER, t);
    }
    if status == 204 {
        b = b.header("content-length", "0");
    }
    b.body(Full::new(body.clone())).unwrap_or_else(|_| {
        // Only an invalid status or header value fails here; answer plainly instead.
        let mut r = Response::new(Full::new(body));
        *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

/// The error answer for `e`, stamped with `txid` if given.
pub fn error_response(e: &ApiError, txid: Option<TxId>) -> Resp {
    json_response(e.status, &e.body(), txid)
}

/// Handles one request; never panics on client input. `client` is the client's TLS certificate, if any.
pub async fn handle(node: Arc<Node>, client: Option<Arc<ClientCert>>, req: Request<Incoming>) -> Resp {
    let method = req.method().as_str().to_string();
    let resp = route(&node, client.as_deref(), req).await;
    node.engine()
        .metrics()
        .requests
        .get_or_create(&RequestLabels {
            method,
            status: resp.status().as_u16(),
        })
        .inc();
    resp
}

/// Reads a request body up to the configured limit: 413 beyond it, 400 if the body cannot be read, 408 if it does
/// not arrive within `limits.body_read_timeout_ms`, 503 if the server-wide body budget is exhausted.
async fn read_body(node: &Node, req: Request<Incoming>) -> Result<Bytes, ApiError> {
    let engine = node.engine();
    let max = engine.config().limits.max_body_bytes;
    let too_large = || ApiError::new(413, "RequestBodyTooLarge", format!("body larger than {max} bytes"));
    if declares_more_than(&req, max) {
        engine.metrics().rejected_requests.inc();
        return Err(too_large());
    }
    // Requests built by the HTTP server carry its context; others (tests driving `handle` directly) are bounded
    // by size alone.
    let ctx = req.extensions().get::<RequestContext>().cloned();
    let collect = collect_body(Limited::new(req.into_body(), max), ctx.as_ref());
    let collected = match &ctx {
        Some(ctx) => tokio::time::timeout(ctx.body_read_timeout(), collect)
            .await
            .unwrap_or_else(|_| {
                ctx.body_timed_out();
                let ms = ctx.body_read_timeout().as_millis();
                Err(BodyError::Timeout(ms))
            }),
        None => collect.await,
    };
    match collected {
        Ok(bytes) => {
            if let Some(ctx) = &ctx {
                ctx.body_read();
            }
            Ok(bytes)
        }
        Err(e) => {
            engine.metrics().rejected_requests.inc();
            Err(match e {
                BodyError::Timeout(ms) => ApiError::new(
                    408,
                    "RequestTimeout",
                    format!("request body not received within {ms} ms"),
                ),
                BodyError::Busy => ApiError::new(
                    503,
                    "ServiceUnavailable",
                    "the node is receiving too many request bodies; retry",
                ),
                BodyError::Read(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => too_large(),
                BodyError::Read(e) => ApiError::new(400, "InvalidBody", format!("could not read body: {e}")),
            })
        }
    }
}

/// Whether the request's `content-length` announces more than `max` bytes.
fn declares_more_than(req: &Request<Incoming>, max: usize) -> bool {
    req.headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|n| n > max as u64)
}

/// Why a body could not be collected.
enum BodyError {
    /// It did not arrive within this many milliseconds.
    Timeout(u128),
    /// The server-wide budget of buffered body bytes is used up.
    Busy,
    /// The client's stream failed, or the body exceeded its limit.
    Read(Box<dyn std::error::Error + Send + Sync>),
}

/// Collects a body frame by frame, charging the bytes that actually arrived to the server-wide budget
/// (`limits.max_buffered_body_bytes`) until the body is complete. Charging what arrived rather than what was
/// declared means a slow client holds only the little it has sent, and cannot exhaust the budget by declaring
/// large bodies it never sends.
async fn collect_body(mut body: Limited<Incoming>, ctx: Option<&RequestContext>) -> Result<Bytes, BodyError> {
    // Most bodies arrive in one frame, which is then returned without a copy.
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut held: Option<tokio::sync::OwnedSemaphorePermit> = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(BodyError::Read)?.into_data() else {
            continue; // trailers carry nothing the endpoints use
        };
        if let Some(ctx) = ctx {
            let permit = ctx.reserve_body(data.len()).ok_or(BodyError::Busy)?;
            match &mut held {
                Some(h) => h.merge(permit),
                None => held = Some(permit),
            }
        }
        chunks.push(data);
    }
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.swap_remove(0),
        _ => Bytes::from(chunks.concat()),
    })
}

/// Refuses, before its body is read, an `/app` request to an endpoint that accepts only certificate policies
/// (`user_cert`, `member_cert`, `any_cert`) none of which the client's certificate satisfies: such a body could only
/// be thrown away, so it is not worth receiving. The answer is the one `app::route` would give after reading it
/// (same status, code and message).
fn preauthorize(node: &Node, client: Option<&ClientCert>, method: &str, path: &str) -> Option<Resp> {
    let sub = path.strip_prefix("/app").filter(|s| s.starts_with('/'))?;
    let info = node.app().endpoint(method, sub)?;
    let cert_only = info
        .auth
        .iter()
        .all(|p| matches!(p, AuthPolicy::UserCert | AuthPolicy::MemberCert | AuthPolicy::AnyCert));
    if !cert_only {
        return None;
    }
    let cred = crate::auth::Credentials {
        cert_id: client.map(|c| c.cert_id.as_str()),
        headers: &[],
        body: &[],
        now_unix: 0,
    };
    let why = crate::auth::authenticate(&node.engine().store(), info.auth, &cred).err()?;
    node.engine().metrics().rejected_requests.inc();
    let e = ApiError::new(401, "InvalidAuthenticationInfo", why.to_string());
    Some(error_response(&e, Some(node.engine().current_txid())))
}

/// How long a request refused before its body is read may go on sending that body before the refusal is sent
/// anyway: long enough for a client that sends its body right behind the head (curl, most libraries), short enough
/// that a client declaring a body it never sends gets its answer at once.
pub const REFUSED_BODY_DRAIN_MS: u64 = 300;

/// Reads and throws away what a refused request sends of its body right away (up to `limits.max_body_bytes`, for at
/// most [`REFUSED_BODY_DRAIN_MS`]), holding none of it. Without this the answer could be lost: a server that closes
/// a connection with unread request bytes makes its TCP stack send a reset, and the client then drops the answer it
/// had not read yet. A body declared larger than the limit is not waited for (the connection just closes).
async fn discard_body(node: &Node, req: Request<Incoming>) {
    let limits = &node.engine().config().limits;
    let max = limits.max_body_bytes;
    if declares_more_than(&req, max) {
        return;
    }
    let mut body = Limited::new(req.into_body(), max);
    let drain = async {
        while let Some(frame) = body.frame().await {
            if frame.is_err() {
                break;
            }
        }
    };
    let wait_ms = REFUSED_BODY_DRAIN_MS.min(limits.body_read_timeout_ms);
    let _ = tokio::time::timeout(std::time::Duration::from_millis(wait_ms), drain).await;
}

/// What routing needs of a request once its body is read.
struct Parts {
    method: String,
    path: String,
    query: String,
    content_type: String,
    headers: Vec<(String, String)>,
    body: Bytes,
}

/// Most request headers an app sees (the rest are dropped).
pub const MAX_APP_HEADERS: usize = crate::net::forwarding::MAX_FORWARDED_HEADERS;

/// The request's headers for the app, names in lower case (at most [`MAX_APP_HEADERS`]; values that are not
/// text are left out).
fn app_headers(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.headers()
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
        .take(MAX_APP_HEADERS)
        .collect()
}

async fn route(node: &Arc<Node>, client: Option<&ClientCert>, req: Request<Incoming>) -> Resp {
    let peer_cert = client.map(|c| c.cert_id.as_str());
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let headers = if path.starts_with("/app/") {
        app_headers(&req)
    } else {
        vec![]
    };
    if let Some(refused) = preauthorize(node, client, &method, &path) {
        discard_body(node, req).await;
        return refused;
    }
    let body = match read_body(node, req).await {
        Ok(b) => b,
        Err(e) => return error_response(&e, None),
    };
    let parts = Parts {
        method,
        path,
        query,
        content_type,
        headers,
        body,
    };
    let current = node.engine().current_txid();
    let p = parts.path.as_str();
    if let Some(resp) = node::route(node, client, &parts.method, p, &parts.query, &parts.body).await {
        return resp;
    }
    if let Some(sub) = p.strip_prefix("/app/").map(|_| &p[4..]) {
        let call = app::AppCall {
            method: &parts.method,
            sub,
            query: &parts.query,
            headers: &parts.headers,
            body: &parts.body,
        };
        return app::route(node, peer_cert, &call).await;
    }
    if p.starts_with("/gov/") {
        return gov::serve(node, &parts.method, p, &parts.query, &parts.content_type, &parts.body).await;
    }
    let e = ApiError::new(404, "ResourceNotFound", format!("Unknown path: {}.", parts.path));
    error_response(&e, Some(current))
}
