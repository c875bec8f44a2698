//! The HTTPS front end: accepts TLS connections (bounded), parses HTTP/1.1 and HTTP/2 with hyper, enforces the
//! body limit, routes to node endpoints or the app, and answers every error with CCF's JSON error shape.

use crate::apps::{AppRequest, AppResponse, AuthPolicy, Caller, EndpointInfo};
use crate::metrics::RequestLabels;
use crate::service::{Service, TxId};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Header carrying the transaction id on every response.
pub const TXID_HEADER: &str = "x-ms-ccf-transaction-id";

type Resp = Response<Full<Bytes>>;

fn json_response(status: u16, body: &serde_json::Value, txid: Option<TxId>) -> Resp {
    let mut b = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    if let Some(t) = txid {
        b = b.header(TXID_HEADER, t.to_string());
    }
    b.body(Full::new(Bytes::from(body.to_string())))
        .expect("static headers are valid")
}

fn error_response(status: u16, code: &str, message: impl Into<String>, txid: Option<TxId>) -> Resp {
    json_response(status, &AppResponse::error(status, code, message).body, txid)
}

/// Serves HTTPS on `listener` until `shutdown` fires.
pub async fn serve(
    svc: Arc<Service>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let limits = svc.cfg.limits.clone();
    let slots = Arc::new(Semaphore::new(limits.max_open_connections));
    loop {
        let (tcp, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => { tracing::warn!("accept: {e}"); tokio::time::sleep(Duration::from_millis(10)).await; continue; }
            },
            _ = shutdown.changed() => return,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            svc.metrics.rejected_connections.inc();
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let svc = svc.clone();
        let acceptor = acceptor.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let handshake = Duration::from_millis(limits.tls_handshake_timeout_ms);
            let tls = match tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!("TLS handshake failed: {e}");
                    return;
                }
                Err(_) => return,
            };
            svc.metrics.open_connections.inc();
            // The client certificate's id (SHA-256 of its DER), computed once per connection, not per request.
            let peer_cert: Option<Arc<str>> = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| Arc::from(consort_crypto::cert_id(c)));
            let svc2 = svc.clone();
            let service = hyper::service::service_fn(move |req| {
                let svc = svc2.clone();
                let peer = peer_cert.clone();
                async move { Ok::<_, Infallible>(handle(&svc, peer.as_deref(), req).await) }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .max_buf_size(limits.max_header_bytes)
                .timer(hyper_util::rt::TokioTimer::new());
            builder
                .http2()
                .max_header_list_size(limits.max_header_bytes as u32)
                .max_concurrent_streams(256);
            if let Err(e) = builder.serve_connection(TokioIo::new(tls), service).await {
                tracing::debug!("connection ended: {e}");
            }
            svc.metrics.open_connections.dec();
        });
    }
}

/// Handles one request; never panics on client input. `peer_cert` is the id of the client's TLS certificate.
pub async fn handle(svc: &Arc<Service>, peer_cert: Option<&str>, req: Request<Incoming>) -> Resp {
    let method = req.method().as_str().to_string();
    let resp = route(svc, peer_cert, req).await;
    svc.metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            status: resp.status().as_u16(),
        })
        .inc();
    resp
}

#[allow(clippy::result_large_err)]
async fn read_body(svc: &Service, req: Request<Incoming>) -> Result<Bytes, Resp> {
    let max = svc.cfg.limits.max_body_bytes;
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        svc.metrics.rejected_requests.inc();
        return Err(error_response(
            413,
            "RequestBodyTooLarge",
            format!("body larger than {max} bytes"),
            None,
        ));
    }
    match Limited::new(req.into_body(), max).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            svc.metrics.rejected_requests.inc();
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                Err(error_response(
                    413,
                    "RequestBodyTooLarge",
                    format!("body larger than {max} bytes"),
                    None,
                ))
            } else {
                Err(error_response(
                    400,
                    "InvalidBody",
                    format!("could not read body: {e}"),
                    None,
                ))
            }
        }
    }
}

// The error is the finished response: it is returned straight to hyper, so boxing it would only add an allocation.
#[allow(clippy::result_large_err)]
fn txid_param(svc: &Service, query: &str) -> Result<TxId, Resp> {
    let raw = crate::apps::query_param(query, "transaction_id").ok_or_else(|| {
        error_response(
            400,
            "InvalidQueryParameterValue",
            "missing query parameter transaction_id",
            None,
        )
    })?;
    raw.parse::<TxId>().map_err(|e| {
        svc.metrics.rejected_requests.inc();
        error_response(400, "InvalidQueryParameterValue", e, None)
    })
}

async fn route(svc: &Arc<Service>, peer_cert: Option<&str>, req: Request<Incoming>) -> Resp {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let body = match read_body(svc, req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let current = svc.current_txid();
    match (method.as_str(), path.as_str()) {
        ("GET", "/node/commit") | ("GET", "/app/commit") => json_response(
            200,
            &serde_json::json!({"transaction_id": svc.committed_txid().to_string()}),
            Some(current),
        ),
        ("GET", "/node/tx") | ("GET", "/app/tx") => match txid_param(svc, &query) {
            Ok(id) => json_response(
                200,
                &serde_json::json!({"status": svc.tx_status(id).as_str(), "transaction_id": id.to_string()}),
                Some(current),
            ),
            Err(r) => r,
        },
        ("GET", "/app/receipt") | ("GET", "/node/receipt") => match txid_param(svc, &query) {
            Ok(id) => match svc.receipt(id) {
                Ok(r) => json_response(200, &r, Some(id)),
                Err((status, code, msg)) => error_response(status, code, msg, Some(current)),
            },
            Err(r) => r,
        },
        ("GET", "/node/network") => json_response(200, &network_info(svc), Some(current)),
        ("POST", "/node/join") => match crate::replication::handle_join(svc.clone(), body.to_vec()).await {
            Ok(v) => json_response(200, &v, Some(current)),
            Err((status, code, msg)) => error_response(status, code, msg, Some(current)),
        },
        ("GET", "/node/consensus") => json_response(200, &svc.consensus_state(), Some(current)),
        ("GET", "/node/network/nodes") => json_response(200, &nodes_info(svc), Some(current)),
        ("GET", "/node/state") => json_response(
            200,
            &serde_json::json!({
                "node_id": svc.ids.node_id,
                "state": "PartOfNetwork",
                "last_signed_seqno": svc.last_signature_seqno(),
                "startup_seqno": 0,
            }),
            Some(current),
        ),
        ("GET", "/node/metrics") => Response::builder()
            .status(200)
            .header("content-type", "text/plain; version=0.0.4")
            .header(TXID_HEADER, current.to_string())
            .body(Full::new(Bytes::from(svc.metrics.render())))
            .expect("static headers are valid"),
        ("GET", "/node/api") => json_response(200, &crate::openapi::node_api(), Some(current)),
        ("GET", "/app/api") => json_response(200, &crate::openapi::app_api(svc.app()), Some(current)),
        (_, p) if p.starts_with("/app/") => app_request(svc, peer_cert, &method, &p[4..], &query, &body).await,
        (m, p) if p.starts_with("/gov/") && m != "GET" && !svc.is_primary() => {
            // Governance writes run on the primary; the member's signature travels with the body.
            let target = if query.is_empty() {
                p.to_string()
            } else {
                format!("{p}?{query}")
            };
            let reply = svc.forwarder.forward(svc, m, &target, None, &content_type, &body).await;
            forwarded_response(svc, reply)
        }
        (_, p) if p.starts_with("/gov/") => {
            let r = crate::gov::route(svc, &method, p, &query, &body);
            let mut b = Response::builder()
                .status(r.status)
                .header("content-type", r.content_type)
                .header(TXID_HEADER, r.txid.unwrap_or(current).to_string());
            if r.status == 204 {
                b = b.header("content-length", "0");
            }
            b.body(Full::new(Bytes::from(r.body)))
                .expect("static headers are valid")
        }
        _ => error_response(404, "ResourceNotFound", format!("Unknown path: {path}."), Some(current)),
    }
}

/// The app endpoint `method` `/app{sub}`, if `caller` may call it: 404 for an unknown one, 401 (with
/// `no_user_msg`) for one that needs a user the caller is not.
fn app_endpoint(
    svc: &Service,
    method: &str,
    sub: &str,
    caller: &Caller,
    no_user_msg: &str,
) -> Result<EndpointInfo, (u16, &'static str, String)> {
    let Some(info) = svc.app().endpoint(method, sub) else {
        return Err((
            404,
            "ResourceNotFound",
            format!("Unknown path: /app{sub} for {method}."),
        ));
    };
    if info.auth == AuthPolicy::UserCert && !matches!(caller, Caller::User(_)) {
        return Err((401, "InvalidAuthenticationInfo", no_user_msg.to_string()));
    }
    Ok(info)
}

/// Runs an app request for `caller` on this node (the checks of [`app_endpoint`] passed).
fn run_app(
    svc: &Service,
    info: &EndpointInfo,
    method: &str,
    sub: &str,
    query: &str,
    body: &[u8],
    caller: &Caller,
) -> (AppResponse, TxId) {
    let req = AppRequest {
        method,
        path: sub,
        query,
        body,
        caller,
    };
    svc.execute_app(&req, info.read_only)
}

async fn app_request(
    svc: &Service,
    peer_cert: Option<&str>,
    method: &str,
    sub: &str,
    query: &str,
    body: &[u8],
) -> Resp {
    let caller = svc.caller_of(peer_cert);
    let no_user_msg = if peer_cert.is_some() {
        "Could not find matching user certificate"
    } else {
        "Missing client certificate: this endpoint requires a user TLS certificate"
    };
    let info = match app_endpoint(svc, method, sub, &caller, no_user_msg) {
        Ok(info) => info,
        Err((status, code, msg)) => {
            let txid = (status != 404).then(|| svc.current_txid());
            return error_response(status, code, msg, txid);
        }
    };
    if !info.read_only && !svc.is_primary() {
        let Caller::User(user) = &caller else {
            return error_response(401, "InvalidAuthenticationInfo", "no caller", None);
        };
        let target = if query.is_empty() {
            format!("/app{sub}")
        } else {
            format!("/app{sub}?{query}")
        };
        let reply = svc
            .forwarder
            .forward(svc, method, &target, Some(user), "application/json", body)
            .await;
        return forwarded_response(svc, reply);
    }
    let (resp, txid) = run_app(svc, &info, method, sub, query, body, &caller);
    json_response(resp.status, &resp.body, Some(txid))
}

/// On the primary: runs a request that node `from` forwarded over the channel (see [`crate::forwarding`]). The
/// caller it names is believed only from a Trusted node, and only if registered; a node that is not the primary
/// (any more) answers 503 rather than forwarding again.
pub fn execute_forwarded(
    svc: &Service,
    from: &str,
    req: &crate::forwarding::ForwardedRequest,
) -> crate::forwarding::ForwardedResponse {
    let answer =
        |status: u16, txid: Option<TxId>, content_type: &str, body: Vec<u8>| crate::forwarding::ForwardedResponse {
            id: req.id,
            status,
            txid: txid.map(|t| t.to_string()),
            content_type: content_type.to_string(),
            body,
        };
    let error = |status: u16, code: &str, msg: String| {
        let body = AppResponse::error(status, code, msg).body.to_string().into_bytes();
        answer(status, Some(svc.current_txid()), "application/json", body)
    };
    let (path, query) = req.target.split_once('?').unwrap_or((req.target.as_str(), ""));
    if !svc.is_primary() {
        return error(503, "NotPrimary", "this node is no longer the primary; retry".into());
    }
    if let Some(sub) = path.strip_prefix("/app") {
        let caller = match &req.caller {
            Some(user) if crate::replication::is_trusted_node(svc, from) && svc.is_user(user) => {
                Caller::User(user.clone())
            }
            _ => Caller::Anonymous,
        };
        let no_user_msg = "Could not find matching user certificate";
        let info = match app_endpoint(svc, &req.method, sub, &caller, no_user_msg) {
            Ok(info) => info,
            Err((status, code, msg)) => return error(status, code, msg),
        };
        let (resp, txid) = run_app(svc, &info, &req.method, sub, query, &req.body, &caller);
        return answer(
            resp.status,
            Some(txid),
            "application/json",
            resp.body.to_string().into_bytes(),
        );
    }
    if path.starts_with("/gov/") {
        let r = crate::gov::route(svc, &req.method, path, query, &req.body);
        return answer(
            r.status,
            Some(r.txid.unwrap_or(svc.current_txid())),
            r.content_type,
            r.body,
        );
    }
    error(404, "ResourceNotFound", format!("Unknown path: {path}."))
}

/// The primary's answer to a forwarded request, passed back to the caller (or the forwarding error).
fn forwarded_response(svc: &Service, reply: Result<crate::client::Reply, crate::replication::HttpError>) -> Resp {
    match reply {
        Ok(r) => {
            let mut b = Response::builder()
                .status(r.status)
                .header("content-type", "application/json");
            if let Some(t) = r.txid {
                b = b.header(TXID_HEADER, t);
            }
            if r.status == 204 {
                b = b.header("content-length", "0");
            }
            b.body(Full::new(r.body)).expect("static headers are valid")
        }
        Err((status, code, msg)) => error_response(status, code, msg, Some(svc.current_txid())),
    }
}

fn network_info(svc: &Service) -> serde_json::Value {
    serde_json::json!({
        "service_status": svc.service_status(),
        "service_certificate": svc.ids.service_cert_pem,
        "current_view": svc.current_view(),
        "primary_id": svc.leader().and_then(|l| svc.node_id_of(l)),
        "current_service_create_txid": svc.service_info().map(|i| i["current_service_create_txid"].clone()),
    })
}

fn nodes_info(svc: &Service) -> serde_json::Value {
    let primary = svc.leader().and_then(|l| svc.node_id_of(l));
    let nodes: Vec<serde_json::Value> = crate::replication::node_records(svc)
        .into_iter()
        .map(|r| {
            serde_json::json!({
                "node_id": r.node_id,
                "status": r.status,
                "primary": primary.as_deref() == Some(r.node_id.as_str()),
                "rpc_interfaces": {"primary_rpc_interface": {"bind_address": r.rpc_address}},
                "node_to_node_address": r.node_to_node_address,
            })
        })
        .collect();
    serde_json::json!({ "nodes": nodes })
}
