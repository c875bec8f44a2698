//! `/app/*` requests: authentication by policy, then the application runs in a KV transaction on this node (reads,
//! and writes on the primary) or the write is forwarded to the primary; and, on the primary, requests that backups
//! forwarded.

use super::{error_response, json_response, raw_response, ApiError, Resp};
use crate::apps::{AppRequest, AppResponse, AuthPolicy, Caller, EndpointInfo};
use crate::engine::{Engine, NodeId, TxId, WriteError};
use crate::net::client::Reply;
use crate::net::forwarding::{ForwardError, ForwardedRequest, ForwardedResponse, Outgoing};
use crate::node::Node;

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
        let outcome = engine.execute_write(|tx, _| {
            let resp = self.app().handle(req, tx);
            if !resp.is_success() {
                return Err(resp);
            }
            if let Some(bad) = tx.write_set().maps.keys().find(|m| m.starts_with(RESERVED_MAP_PREFIX)) {
                return Err(AppResponse::error(
                    403,
                    "ReservedMap",
                    format!("applications may not write the reserved map {bad}"),
                ));
            }
            Ok(resp)
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
            let mut tx = store.begin();
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

    /// The identity of a caller whose TLS certificate has id `cert_id`, per `public:ccf.gov.users.certs`.
    pub fn caller_of(&self, cert_id: Option<&str>) -> Caller {
        match cert_id {
            Some(id) if self.is_user(id) => Caller::User(id.to_string()),
            _ => Caller::Anonymous,
        }
    }

    /// Whether `user_id` is a registered user.
    pub fn is_user(&self, user_id: &str) -> bool {
        self.engine()
            .store()
            .read_only()
            .has(USERS_CERTS_TABLE, user_id.as_bytes())
    }
}

/// The app endpoint `method` `/app{sub}`, if `caller` may call it: 404 for an unknown one, 401 (with
/// `no_user_msg`) for one that needs a user the caller is not.
fn app_endpoint(
    node: &Node,
    method: &str,
    sub: &str,
    caller: &Caller,
    no_user_msg: &str,
) -> Result<EndpointInfo, ApiError> {
    let Some(info) = node.app().endpoint(method, sub) else {
        return Err(ApiError::new(
            404,
            "ResourceNotFound",
            format!("Unknown path: /app{sub} for {method}."),
        ));
    };
    if info.auth == AuthPolicy::UserCert && !matches!(caller, Caller::User(_)) {
        return Err(ApiError::new(401, "InvalidAuthenticationInfo", no_user_msg));
    }
    Ok(info)
}

/// What a request to the app asks for.
struct AppCall<'a> {
    method: &'a str,
    sub: &'a str,
    query: &'a str,
    body: &'a [u8],
}

/// Runs an app request for `caller` on this node (the checks of [`app_endpoint`] passed).
fn run_app(node: &Node, info: &EndpointInfo, call: &AppCall<'_>, caller: &Caller) -> (AppResponse, TxId) {
    let req = AppRequest {
        method: call.method,
        path: call.sub,
        query: call.query,
        body: call.body,
        caller,
    };
    node.execute_app(&req, info.read_only)
}

/// Serves `method /app{sub}` for the client whose certificate id is `peer_cert`.
pub(super) async fn route(
    node: &Node,
    peer_cert: Option<&str>,
    method: &str,
    sub: &str,
    query: &str,
    body: &[u8],
) -> Resp {
    let engine = node.engine();
    let caller = node.caller_of(peer_cert);
    let no_user_msg = if peer_cert.is_some() {
        "Could not find matching user certificate"
    } else {
        "Missing client certificate: this endpoint requires a user TLS certificate"
    };
    let info = match app_endpoint(node, method, sub, &caller, no_user_msg) {
        Ok(info) => info,
        Err(e) => {
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
    if !info.read_only && !engine.is_primary() {
        let Caller::User(user) = &caller else {
            return error_response(&ApiError::new(401, "InvalidAuthenticationInfo", "no caller"), None);
        };
        let target = if query.is_empty() {
            format!("/app{sub}")
        } else {
            format!("/app{sub}?{query}")
        };
        let reply = forward(node, method, &target, Some(user), "application/json", body).await;
        return forwarded_response(node, reply);
    }
    let call = AppCall {
        method,
        sub,
        query,
        body,
    };
    let (resp, txid) = run_app(node, &info, &call, &caller);
    json_response(resp.status, &resp.body, Some(txid))
}

/// Forwards a request this node cannot execute to the primary over the node-to-node channel.
pub(super) async fn forward(
    node: &Node,
    method: &str,
    target: &str,
    caller: Option<&str>,
    content_type: &str,
    body: &[u8],
) -> Result<Reply, ForwardError> {
    let engine = node.engine();
    let primary = engine
        .leader()
        .filter(|&l| l != engine.raft_id())
        .and_then(|l| engine.node_id_of(l))
        .ok_or(ForwardError::NoPrimary("no primary known; retry"))?;
    let channels = node
        .channels()
        .ok_or(ForwardError::NoPrimary("this node has no channel to other nodes"))?;
    let request = Outgoing {
        method,
        target,
        caller,
        content_type,
        body,
    };
    node.forwarder().forward(channels, &primary, request).await
}

/// The primary's answer to a forwarded request, passed back to the caller (or the forwarding error).
pub(super) fn forwarded_response(node: &Node, reply: Result<Reply, ForwardError>) -> Resp {
    match reply {
        Ok(r) => raw_response(r.status, "application/json", r.body, r.txid),
        Err(e) => error_response(&ApiError::from(e), Some(node.engine().current_txid())),
    }
}

/// On the primary: runs a request that node `from` forwarded over the channel (see [`crate::net::forwarding`]).
/// The caller it names is believed only from a Trusted node, and only if registered; a node that is not the
/// primary (any more) answers 503 rather than forwarding again.
pub fn execute_forwarded(node: &Node, from: &NodeId, req: &ForwardedRequest) -> ForwardedResponse {
    let engine = node.engine();
    let answer = |status: u16, txid: Option<TxId>, content_type: &str, body: Vec<u8>| ForwardedResponse {
        id: req.id,
        status,
        txid: txid.map(|t| t.to_string()),
        content_type: content_type.to_string(),
        body,
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
        let caller = match &req.caller {
            Some(user) if engine.is_trusted_node(from) && node.is_user(user) => Caller::User(user.clone()),
            _ => Caller::Anonymous,
        };
        let no_user_msg = "Could not find matching user certificate";
        let info = match app_endpoint(node, &req.method, sub, &caller, no_user_msg) {
            Ok(info) => info,
            Err(e) => return error(e),
        };
        let call = AppCall {
            method: &req.method,
            sub,
            query,
            body: &req.body,
        };
        let (resp, txid) = run_app(node, &info, &call, &caller);
        return answer(
            resp.status,
            Some(txid),
            "application/json",
            resp.body.to_string().into_bytes(),
        );
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
