//! `/app/*` requests: authentication by the endpoint's policies, then the application runs in a KV transaction on
//! this node (reads, and writes on the primary) or the write is forwarded to the primary; and, on the primary,
//! requests that backups forwarded.

use super::{error_response, raw_response, ApiError, Resp};
use crate::apps::{AppRequest, AppResponse, Caller, EndpointInfo, Mode};
use crate::auth::{authenticate, Credentials};
use crate::engine::{Engine, NodeId, TxId, WriteError};
use crate::net::client::Reply;
use crate::net::forwarding::{ForwardError, ForwardedRequest, ForwardedResponse, Outgoing};
use crate::node::Node;
use bytes::Bytes;
use consort_kv::Tx;

/// Users' certificates (user id -> PEM).
pub const USERS_CERTS_TABLE: &str = consort_gov::tables::USERS_CERTS;
/// Prefix of the maps only the node itself and governance may write.
pub const RESERVED_MAP_PREFIX: &str = "public:ccf.";

impl Node {
    /// Runs a user request against the app. Write transactions are re-executed on conflict, up to the limit.
    pub fn execute_app(&self, req: &AppRequest<'_>, read_only: bool) -> (AppResponse, TxId) {
        let engine = self.engine();
        if read_only {
            return self.execute_read(req);
        }
        let outcome = engine.execute_claimed_write(|tx, _| {
            let resp = self.app().handle(req, tx);
            if !resp.keeps_writes() {
                return Err(resp);
            }
            if let Some(bad) = tx.write_set().maps.keys().find(|m| m.starts_with(RESERVED_MAP_PREFIX)) {
                return Err(AppResponse::error(
                    403,
                    "ReservedMap",
                    format!("applications may not write the reserved map {bad}"),
                ));
            }
            let claims = resp.claims_digest.as_deref().copied();
            Ok((resp, claims))
        });
        match outcome {
            Ok((resp, txid)) => (resp, txid),
            Err(WriteError::Body(resp)) => (resp, engine.current_txid()),
            Err(other) => {
                let e = ApiError::from_write(&other).unwrap_or_else(|| ApiError::internal("write failed"));
                (AppResponse::error(e.status, e.code, e.message), engine.current_txid())
            }
        }
    }

    /// Runs a read-only request. Reads are validated like writes: a transaction whose reads changed underneath it
    /// (a torn view across several keys) is run again, so every answer reflects one consistent state.
    fn execute_read(&self, req: &AppRequest<'_>) -> (AppResponse, TxId) {
        let engine = self.engine();
        for _ in 0..engine.config().limits.max_occ_attempts {
            let store = engine.store();
            let mut tx = Tx::shared(store.clone());
            let resp = self.app().handle(req, &mut tx);
            if tx.has_writes() {
                // A read-only endpoint must not write: its writes would bypass consensus.
                let msg = "a read-only endpoint attempted to write; nothing was written";
                return (AppResponse::error(500, "InternalError", msg), engine.current_txid());
            }
            match store.commit(tx, |_, _| ()) {
                Ok(_) => return (resp, engine.current_txid()),
                Err(_) => {
                    engine.metrics().occ_conflicts.inc();
                }
            }
        }
        let msg = "reads kept conflicting with concurrent writes; retry";
        (
            AppResponse::error(409, "TransactionConflict", msg),
            engine.current_txid(),
        )
    }

    /// Whether `user_id` is a registered user.
    pub fn is_user(&self, user_id: &str) -> bool {
        self.engine()
            .store()
            .read_only()
            .has(USERS_CERTS_TABLE, user_id.as_bytes())
    }
}

/// Seconds since the Unix epoch (token expiry is checked against the node's clock).
fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The app endpoint `method` `/app{sub}` and its caller: 404 for an unknown endpoint, 401 when none of its
/// policies authenticates the request.
pub(super) fn app_endpoint(
    node: &Node,
    call: &AppCall<'_>,
    cert_id: Option<&str>,
) -> Result<(EndpointInfo, Caller), ApiError> {
    let Some(info) = node.app().endpoint(call.method, call.sub) else {
        return Err(ApiError::new(
            404,
            "ResourceNotFound",
            format!("Unknown path: /app{} for {}.", call.sub, call.method),
        ));
    };
    let cred = Credentials {
        cert_id,
        headers: call.headers,
        body: call.body,
        now_unix: now_unix(),
    };
    match authenticate(&node.engine().store(), info.auth, &cred) {
        Ok(caller) => {
            let mode = node.app().request_mode(call.method, call.sub, call.body, info.mode);
            // An app may lower a write to a read, never raise a read to a write.
            let mode = if info.mode == Mode::ReadWrite { mode } else { info.mode };
            Ok((EndpointInfo { mode, ..info }, caller))
        }
        Err(why) => Err(ApiError::new(401, "InvalidAuthenticationInfo", why.to_string())),
    }
}

/// What a request to the app asks for.
pub(super) struct AppCall<'a> {
    pub(super) method: &'a str,
    pub(super) sub: &'a str,
    pub(super) query: &'a str,
    pub(super) headers: &'a [(String, String)],
    pub(super) body: &'a [u8],
}

/// Runs an app request for `caller` on this node (the checks of [`app_endpoint`] passed). Historical endpoints
/// run over the state of the transaction the request names (`api::historical`).
fn run_app(node: &Node, info: &EndpointInfo, call: &AppCall<'_>, caller: &Caller) -> (AppResponse, TxId) {
    if info.mode == Mode::Historical {
        return super::historical::run(node, call, caller);
    }
    let req = AppRequest {
        method: call.method,
        path: call.sub,
        query: call.query,
        headers: call.headers,
        body: call.body,
        caller,
        historical: None,
    };
    node.execute_app(&req, info.read_only())
}

/// The answer to a long request that found no turn.
pub(super) fn busy() -> AppResponse {
    AppResponse::error(
        503,
        "TooManyLongRequests",
        "the node is running as many long requests as it allows; retry",
    )
}

/// The HTTP response for what the app answered.
pub(super) fn app_response(resp: &AppResponse, txid: Option<TxId>) -> Resp {
    let (content_type, body) = match &resp.raw {
        Some(raw) => (raw.content_type.as_str(), Bytes::from(raw.bytes.clone())),
        None => ("application/json", Bytes::from(resp.body.to_string())),
    };
    with_headers(
        raw_response(resp.status, content_type, body, txid.map(|t| t.to_string())),
        &resp.headers,
    )
}

/// `resp` with the app's own headers added (names or values HTTP does not allow are left out).
fn with_headers(mut resp: Resp, headers: &[(String, String)]) -> Resp {
    for (name, value) in headers {
        let (Ok(n), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            hyper::header::HeaderValue::from_str(value),
        ) else {
            continue;
        };
        if n == hyper::header::CONTENT_TYPE || n == hyper::header::CONTENT_LENGTH {
            continue;
        }
        resp.headers_mut().append(n, v);
    }
    resp
}

/// Serves `call` for the client whose TLS certificate has id `cert_id`.
pub(super) async fn route(node: &Node, cert_id: Option<&str>, call: &AppCall<'_>) -> Resp {
    let engine = node.engine();
    let (info, caller) = match app_endpoint(node, call, cert_id) {
        Ok(found) => found,
        Err(e) => {
            if e.status == 401 {
                engine.metrics().rejected_requests.inc();
            }
            let txid = (e.status != 404).then(|| engine.current_txid());
            return error_response(&e, txid);
        }
    };
    if engine.private_pending() {
        // The old private state is not back yet: answers would be wrong and writes could be lost under it.
        let e = ApiError::new(
            503,
            "ServiceRecovering",
            "the service is recovering; retry once it is open",
        );
        return error_response(&e, Some(engine.current_txid()));
    }
    if info.mode == Mode::ReadWrite && !engine.is_primary() {
        let target = if call.query.is_empty() {
            format!("/app{}", call.sub)
        } else {
            format!("/app{}?{}", call.sub, call.query)
        };
        let content_type = crate::auth::header(call.headers, "content-type").unwrap_or("application/json");
        let request = Outgoing {
            method: call.method,
            target: &target,
            caller: cert_id,
            content_type,
            body: call.body,
            headers: call.headers,
        };
        let reply = forward(node, request).await;
        return forwarded_response(node, reply);
    }
    let (resp, txid) = if node.app().runs_long(call.method, call.sub, call.body) {
        run_long(node, &info, call, &caller).await
    } else {
        run_app(node, &info, call, &caller)
    };
    app_response(&resp, Some(txid))
}

/// Runs an app request that may compute for long on a thread of its own (the async worker hands its other tasks
/// on), once one of the node's [`crate::node::MAX_CONCURRENT_LONG_REQUESTS`] turns is free; 503 when none came
/// within [`crate::node::LONG_REQUEST_QUEUE_WAIT`].
async fn run_long(node: &Node, info: &EndpointInfo, call: &AppCall<'_>, caller: &Caller) -> (AppResponse, TxId) {
    let Some(_turn) = node.long_request_turn().await else {
        return (busy(), node.engine().current_txid());
    };
    match tokio::runtime::Handle::current().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(|| run_app(node, info, call, caller)),
        _ => run_app(node, info, call, caller),
    }
}

/// Forwards a request this node cannot execute to the primary over the node-to-node channel.
pub(super) async fn forward(node: &Node, request: Outgoing<'_>) -> Result<Reply, ForwardError> {
    let engine = node.engine();
    let primary = engine
        .leader()
        .filter(|&l| l != engine.raft_id())
        .and_then(|l| engine.node_id_of(l))
        .ok_or(ForwardError::NoPrimary("no primary known; retry"))?;
    let channels = node
        .channels()
        .ok_or(ForwardError::NoPrimary("this node has no channel to other nodes"))?;
    node.forwarder().forward(channels, &primary, request).await
}

/// The primary's answer to a forwarded request, passed back to the caller (or the forwarding error).
pub(super) fn forwarded_response(node: &Node, reply: Result<Reply, ForwardError>) -> Resp {
    match reply {
        Ok(r) => with_headers(raw_response(r.status, &r.content_type, r.body, r.txid), &r.headers),
        Err(e) => error_response(&ApiError::from(e), Some(node.engine().current_txid())),
    }
}

/// On the primary: runs a request that node `from` forwarded over the channel (see [`crate::net::forwarding`]).
/// The client certificate it names is believed only from a Trusted node (which checked the TLS handshake); the
/// endpoint's policies then authenticate the request here again. A node that is not the primary (any more)
/// answers 503 rather than forwarding again.
pub fn execute_forwarded(node: &Node, from: &NodeId, req: &ForwardedRequest) -> ForwardedResponse {
    let engine = node.engine();
    let answer = |status: u16, txid: Option<TxId>, content_type: &str, body: Vec<u8>| ForwardedResponse {
        id: req.id,
        status,
        txid: txid.map(|t| t.to_string()),
        content_type: content_type.to_string(),
        body,
        headers: vec![],
    };
    let error = |e: ApiError| {
        let body = e.body().to_string().into_bytes();
        answer(e.status, Some(engine.current_txid()), "application/json", body)
    };
    let (path, query) = req.target.split_once('?').unwrap_or((req.target.as_str(), ""));
    if !engine.is_primary() {
        return error(ApiError::new(
            503,
            "NotPrimary",
            "this node is no longer the primary; retry",
        ));
    }
    if let Some(sub) = path.strip_prefix("/app") {
        let cert_id = req.caller.as_deref().filter(|_| engine.is_trusted_node(from));
        let call = AppCall {
            method: &req.method,
            sub,
            query,
            headers: &req.headers,
            body: &req.body,
        };
        let (info, caller) = match app_endpoint(node, &call, cert_id) {
            Ok(found) => found,
            Err(e) => return error(e),
        };
        let (resp, txid) = run_app(node, &info, &call, &caller);
        let (content_type, body) = match resp.raw {
            Some(raw) => (raw.content_type, raw.bytes),
            None => ("application/json".to_string(), resp.body.to_string().into_bytes()),
        };
        let mut out = answer(resp.status, Some(txid), &content_type, body);
        out.headers = resp.headers;
        return out;
    }
    if path == "/node/join" && req.method == "POST" {
        return match forwarded_join(engine, from, req) {
            Ok(v) => answer(
                200,
                Some(engine.current_txid()),
                "application/json",
                v.to_string().into_bytes(),
            ),
            Err(e) => error(e),
        };
    }
    if path.starts_with("/gov/") {
        let r = super::gov::route(engine, &req.method, path, query, &req.body);
        return answer(
            r.status,
            Some(r.txid.unwrap_or(engine.current_txid())),
            r.content_type,
            r.body,
        );
    }
    error(ApiError::new(404, "ResourceNotFound", format!("Unknown path: {path}.")))
}

/// A join a backup forwarded: believed only from a Trusted node, which vouches that the joiner proved possession
/// of the key the request names (the forwarded caller is that key's node id).
fn forwarded_join(engine: &Engine, from: &NodeId, req: &ForwardedRequest) -> Result<serde_json::Value, ApiError> {
    if !engine.is_trusted_node(from) {
        return Err(ApiError::new(
            403,
            "Forbidden",
            "joins are forwarded only by Trusted nodes",
        ));
    }
    let join = super::join::parse_join(&req.body)?;
    // The forwarded caller of a join is the joiner's node id, as text in the frame.
    let vouched_for = req.caller.as_deref().and_then(|c| c.parse::<NodeId>().ok());
    if vouched_for.as_ref() != Some(&join.node_id) {
        return Err(ApiError::new(
            401,
            "InvalidAuthenticationInfo",
            "the forwarding node did not vouch for the joiner's key",
        ));
    }
    super::join::join_on_primary(engine, &join)
}
