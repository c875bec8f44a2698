//! `POST /node/join` on the service's side: a joiner sends its public key and addresses to any node; a backup
//! forwards the request to the primary. The primary records the node in `public:ccf.gov.nodes.info` (Trusted while
//! the service is Opening, Pending once it is Open, until members pass `transition_node_to_trusted`) with a
//! certificate it issues with the service key. Once the node is Trusted, the primary adds it as a Raft learner, and
//! when that change is committed answers with the node certificate, the service key, certificate and ledger secret
//! (the virtual platform's stand-in for attested secret sharing), the peers, and a snapshot at the commit point.
//! The joiner's side is [`crate::joiner`].

use super::ApiError;
use crate::engine::{node_records, raft_id_of, Engine, NodeRecord};
use crate::net::client::{Connection, Protocol};
use crate::net::forwarding::FORWARD_TIMEOUT;
use crate::node::Node;
use consort_crypto::{ParsedCert, VerifyingKey};
use consort_ledger::{ENDORSED_CERTS_TABLE, NODES_INFO_TABLE};
use std::sync::Arc;

/// Largest join request body.
pub const MAX_JOIN_REQUEST_BYTES: usize = 64 * 1024;

/// RPC address of the primary, if known.
pub fn primary_rpc_address(svc: &Engine) -> Option<String> {
    let primary = svc.node_id_of(svc.leader()?)?;
    node_records(svc)
        .into_iter()
        .find(|r| r.node_id == primary)
        .and_then(|r| r.rpc_address)
}

/// The request a joining node sends.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct JoinRequest {
    pub public_key: String,
    pub node_to_node_address: String,
    pub rpc_address: String,
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_input(msg)
}

/// Handles `POST /node/join` (see the module documentation). Returns the JSON answer.
pub async fn handle_join(node: Arc<Node>, body: Vec<u8>) -> Result<serde_json::Value, ApiError> {
    if body.len() > MAX_JOIN_REQUEST_BYTES {
        return Err(ApiError::new(413, "RequestTooLarge", "join request too large"));
    }
    let req: JoinRequest = serde_json::from_slice(&body).map_err(|e| bad(format!("join request: {e}")))?;
    let key = VerifyingKey::from_pem(&req.public_key).map_err(|e| bad(format!("public_key: {e}")))?;
    req.rpc_address
        .parse::<std::net::SocketAddr>()
        .map_err(|e| bad(format!("rpc_address: {e}")))?;
    req.node_to_node_address
        .parse::<std::net::SocketAddr>()
        .map_err(|e| bad(format!("node_to_node_address: {e}")))?;
    let svc = node.engine().clone();
    if !svc.is_primary() {
        return forward_join(&svc, body).await;
    }
    let node_id = consort_crypto::key_id(&key.to_spki_der());
    let raft_id = raft_id_of(&node_id);
    let existing = node_records(&svc).into_iter().find(|r| r.node_id == node_id);
    let record = match existing {
        Some(r) => r,
        None => {
            let svc2 = svc.clone();
            tokio::task::spawn_blocking(move || record_joiner(&svc2, &req, &key, &node_id))
                .await
                .map_err(|e| ApiError::internal(e.to_string()))??
        }
    };
    if record.status != "Trusted" {
        return Ok(serde_json::json!({"node_id": record.node_id, "node_status": record.status}));
    }
    let Some(snapshot) = svc.snapshot_for(raft_id) else {
        return Ok(serde_json::json!({"node_id": record.node_id, "node_status": "Joining"}));
    };
    let peers: Vec<serde_json::Value> = node_records(&svc)
        .into_iter()
        // Retired nodes too: the joiner checks signature transactions they signed after its snapshot.
        .filter(|r| (r.status == "Trusted" || r.status == "Retired") && r.node_id != record.node_id)
        .map(|r| serde_json::json!({"node_id": r.node_id, "cert": r.cert_pem, "node_to_node_address": r.node_to_node_address}))
        .collect();
    use base64::Engine as _;
    Ok(serde_json::json!({
        "node_id": record.node_id,
        "node_status": "Trusted",
        "node_cert": record.cert_pem,
        "service_cert": svc.identities().service_cert_pem,
        "service_key": svc.identities().service_key.to_pkcs8_pem(),
        "ledger_secret": hex::encode(svc.identities().ledger_secret.raw()),
        "peers": peers,
        "snapshot": base64::engine::general_purpose::STANDARD.encode(snapshot),
    }))
}

/// Issues a node certificate for `key` signed by the service key, valid `validity_days`, naming the host of
/// `rpc_address` (and localhost) as subject alternative names.
pub fn issue_node_cert(
    svc: &Engine,
    key: &VerifyingKey,
    rpc_address: &str,
    validity_days: u32,
) -> Result<String, String> {
    let service_der = ParsedCert::from_pem(&svc.identities().service_cert_pem)
        .map_err(|e| e.to_string())?
        .der;
    let mut params = consort_crypto::CertParams::new("CCF Node");
    let host = rpc_address.rsplit_once(':').map(|(h, _)| h.to_string());
    params.subject_alt_names = host.into_iter().chain(["localhost".to_string()]).collect();
    params.validity_days = validity_days;
    let cert = consort_crypto::x509::issue(key, &params, &svc.identities().service_key, &service_der)
        .map_err(|e| e.to_string())?;
    Ok(cert.pem)
}

/// Governance's `endorseNodeCertificate` (passed with `transition_node_to_trusted`): issues the node's
/// certificate again, with the validity the proposal asked for, inside the proposal's transaction. The primary
/// then adds the (now Trusted) node to the Raft membership.
pub fn endorse_node(
    svc: &Engine,
    tx: &mut consort_kv::Tx<'_>,
    node_id: &str,
    validity_period_days: Option<u64>,
) -> Result<(), String> {
    let raw = tx
        .get(NODES_INFO_TABLE, node_id.as_bytes())
        .ok_or_else(|| format!("node {node_id} does not exist"))?;
    let info: serde_json::Value = serde_json::from_slice(&raw).map_err(|e| e.to_string())?;
    let key_pem = info["public_key"].as_str().ok_or("node has no public_key")?;
    let key = VerifyingKey::from_pem(key_pem).map_err(|e| e.to_string())?;
    let rpc = info["rpc_interfaces"]["primary_rpc_interface"]["bind_address"]
        .as_str()
        .unwrap_or("127.0.0.1:0");
    let days = validity_period_days
        .unwrap_or(u64::from(crate::identity::CERT_VALIDITY_DAYS))
        .clamp(1, u64::from(crate::identity::CERT_VALIDITY_DAYS)) as u32;
    let pem = issue_node_cert(svc, &key, rpc, days)?;
    tx.put(ENDORSED_CERTS_TABLE, node_id.as_bytes(), pem.as_bytes());
    Ok(())
}

/// On the primary: issues the joiner's certificate and records it in the nodes table.
fn record_joiner(svc: &Engine, req: &JoinRequest, key: &VerifyingKey, node_id: &str) -> Result<NodeRecord, ApiError> {
    let cert_pem =
        issue_node_cert(svc, key, &req.rpc_address, crate::identity::CERT_VALIDITY_DAYS).map_err(ApiError::internal)?;
    let status = if svc.service_status().as_deref() == Some("Opening") {
        "Trusted"
    } else {
        "Pending"
    };
    let info = serde_json::json!({
        "status": status,
        "public_key": req.public_key,
        "rpc_interfaces": {"primary_rpc_interface": {"bind_address": req.rpc_address}},
        "node_to_node_address": req.node_to_node_address,
        "node_data": null,
        "ledger_secret_seqno": 0,
        "retired_committed": false,
    });
    let outcome = svc.execute_write(|tx, _| -> Result<(), ApiError> {
        tx.put(NODES_INFO_TABLE, node_id.as_bytes(), info.to_string().as_bytes());
        tx.put(ENDORSED_CERTS_TABLE, node_id.as_bytes(), cert_pem.as_bytes());
        Ok(())
    });
    match outcome {
        Ok(_) => Ok(NodeRecord {
            node_id: node_id.to_string(),
            status: status.to_string(),
            rpc_address: Some(req.rpc_address.clone()),
            node_to_node_address: Some(req.node_to_node_address.clone()),
            cert_pem: Some(cert_pem),
        }),
        Err(crate::engine::WriteError::Body(e)) => Err(e),
        Err(other) => Err(ApiError::new(503, "NotPrimary", format!("{other:?}"))),
    }
}

async fn forward_join(svc: &Engine, body: Vec<u8>) -> Result<serde_json::Value, ApiError> {
    let addr =
        primary_rpc_address(svc).ok_or_else(|| ApiError::new(503, "NoPrimary", "no primary known yet; retry"))?;
    let tls = crate::net::tls::client_config(&svc.identities().service_cert_pem, None)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let fut = async {
        let conn = Connection::connect(&addr, tls, Protocol::Http1).await?;
        conn.request("POST", "/node/join", Some(body)).await
    };
    let reply = tokio::time::timeout(FORWARD_TIMEOUT, fut)
        .await
        .map_err(|_| {
            ApiError::new(
                504,
                "ForwardingTimeout",
                format!("the primary at {addr} did not answer"),
            )
        })?
        .map_err(|e| ApiError::new(502, "ForwardingFailed", e.to_string()))?;
    let v = reply
        .json()
        .map_err(|e| ApiError::new(502, "ForwardingFailed", e.to_string()))?;
    if reply.status != 200 {
        return Err(ApiError::new(502, "ForwardingFailed", v.to_string()));
    }
    Ok(v)
}
