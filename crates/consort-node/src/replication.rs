//! The node side of replication: joining a service, keeping Raft peers and membership in line with the nodes
//! table, and forwarding writes from backups to the primary.
//!
//! Join (virtual platform): the joiner sends its public key and addresses to any node (`POST /node/join`); a
//! backup forwards the request to the primary. The primary records the node in `public:ccf.gov.nodes.info`
//! (Trusted while the service is Opening, Pending once it is Open, until members pass `transition_node_to_trusted`)
//! with a certificate it issues with the service key. Once the node is Trusted, the primary adds it as a Raft
//! learner, and when that change is committed answers with the node certificate, the service key, certificate and
//! ledger secret (the virtual platform's stand-in for attested secret sharing), the peers, and a snapshot at the
//! commit point. The joiner starts from that snapshot as a learner; the primary promotes it to voter once it has
//! caught up with the commit index.
//!
//! Forwarding of writes from backups goes over the node-to-node channel: see [`crate::forwarding`].

use crate::client::{Connection, Protocol};
use crate::config::NodeConfig;
use crate::identity::Identities;
use crate::service::{raft_id_of, Service};
use consort_crypto::{Curve, ParsedCert, SigningKey, VerifyingKey};
use consort_ledger::{ENDORSED_CERTS_TABLE, NODES_INFO_TABLE};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::forwarding::FORWARD_TIMEOUT;
/// How often the node re-reads the nodes table to update peers and membership.
pub const RECONCILE_INTERVAL: Duration = Duration::from_millis(100);
/// A joining node gives up after this long.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(120);
/// Pause between join attempts while the node is Pending or the primary is not ready.
pub const JOIN_RETRY: Duration = Duration::from_millis(300);
/// Largest join request body.
pub const MAX_JOIN_REQUEST_BYTES: usize = 64 * 1024;

/// A node as recorded in the nodes table.
#[derive(Debug, Clone)]
pub struct NodeRecord {
    pub node_id: String,
    pub status: String,
    pub rpc_address: Option<String>,
    pub node_to_node_address: Option<String>,
    pub cert_pem: Option<String>,
}

/// Every node in `public:ccf.gov.nodes.info`, with its endorsed certificate.
pub fn node_records(svc: &Service) -> Vec<NodeRecord> {
    let store = svc.store();
    let tx = store.read_only();
    let mut out = vec![];
    tx.foreach(NODES_INFO_TABLE, |k, v| {
        let node_id = String::from_utf8_lossy(k).to_string();
        let info: serde_json::Value = serde_json::from_slice(v).unwrap_or_default();
        out.push(NodeRecord {
            status: info["status"].as_str().unwrap_or("").to_string(),
            rpc_address: info["rpc_interfaces"]["primary_rpc_interface"]["bind_address"]
                .as_str()
                .map(str::to_string),
            node_to_node_address: info["node_to_node_address"].as_str().map(str::to_string),
            cert_pem: None,
            node_id,
        });
        true
    });
    for r in out.iter_mut() {
        r.cert_pem = tx
            .get(ENDORSED_CERTS_TABLE, r.node_id.as_bytes())
            .map(|c| String::from_utf8_lossy(&c).to_string());
    }
    out
}

/// RPC address of the primary, if known.
pub fn primary_rpc_address(svc: &Service) -> Option<String> {
    let primary = svc.node_id_of(svc.leader()?)?;
    node_records(svc)
        .into_iter()
        .find(|r| r.node_id == primary)
        .and_then(|r| r.rpc_address)
}

/// Keeps channels, trusted peers and (on the primary) the Raft membership in line with the nodes table.
pub async fn reconcile_loop(
    svc: Arc<Service>,
    channels: Arc<crate::channels::Channels>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RECONCILE_INTERVAL) => {}
            _ = shutdown.changed() => return,
        }
        let svc2 = svc.clone();
        let channels = channels.clone();
        let _ = tokio::task::spawn_blocking(move || reconcile_once(&svc2, &channels)).await;
    }
}

fn reconcile_once(svc: &Service, channels: &Arc<crate::channels::Channels>) {
    let mut trusted = vec![];
    let mut retired = vec![];
    for r in node_records(svc) {
        if r.status == "Retired" {
            retired.push(raft_id_of(&r.node_id));
        }
        if r.status != "Trusted" {
            continue;
        }
        trusted.push(raft_id_of(&r.node_id));
        if r.node_id == svc.ids.node_id {
            continue;
        }
        if let (Some(addr), Some(cert)) = (&r.node_to_node_address, &r.cert_pem) {
            channels.set_peer(&r.node_id, addr);
            svc.add_peer(&r.node_id, cert);
        }
    }
    svc.reconcile_membership(&trusted, &retired);
}

/// The request a joining node sends.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct JoinRequest {
    pub public_key: String,
    pub node_to_node_address: String,
    pub rpc_address: String,
}

/// An error answer: HTTP status, code, message.
pub type HttpError = (u16, &'static str, String);

fn bad(msg: impl Into<String>) -> HttpError {
    (400, "InvalidInput", msg.into())
}

/// Handles `POST /node/join` (see the module documentation). Returns the JSON answer.
pub async fn handle_join(svc: Arc<Service>, body: Vec<u8>) -> Result<serde_json::Value, HttpError> {
    if body.len() > MAX_JOIN_REQUEST_BYTES {
        return Err((413, "RequestTooLarge", "join request too large".into()));
    }
    let req: JoinRequest = serde_json::from_slice(&body).map_err(|e| bad(format!("join request: {e}")))?;
    let key = VerifyingKey::from_pem(&req.public_key).map_err(|e| bad(format!("public_key: {e}")))?;
    req.rpc_address
        .parse::<std::net::SocketAddr>()
        .map_err(|e| bad(format!("rpc_address: {e}")))?;
    req.node_to_node_address
        .parse::<std::net::SocketAddr>()
        .map_err(|e| bad(format!("node_to_node_address: {e}")))?;
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
                .map_err(|e| (500, "InternalError", e.to_string()))??
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
    use base64::Engine;
    Ok(serde_json::json!({
        "node_id": record.node_id,
        "node_status": "Trusted",
        "node_cert": record.cert_pem,
        "service_cert": svc.ids.service_cert_pem,
        "service_key": svc.ids.service_key.to_pkcs8_pem(),
        "ledger_secret": hex::encode(svc.ids.ledger_secret.raw()),
        "peers": peers,
        "snapshot": base64::engine::general_purpose::STANDARD.encode(snapshot),
    }))
}

/// Issues a node certificate for `key` signed by the service key, valid `validity_days`, naming the host of
/// `rpc_address` (and localhost) as subject alternative names.
pub fn issue_node_cert(
    svc: &Service,
    key: &VerifyingKey,
    rpc_address: &str,
    validity_days: u32,
) -> Result<String, String> {
    let service_der = ParsedCert::from_pem(&svc.ids.service_cert_pem)
        .map_err(|e| e.to_string())?
        .der;
    let mut params = consort_crypto::CertParams::new("CCF Node");
    let host = rpc_address.rsplit_once(':').map(|(h, _)| h.to_string());
    params.subject_alt_names = host.into_iter().chain(["localhost".to_string()]).collect();
    params.validity_days = validity_days;
    let cert =
        consort_crypto::x509::issue(key, &params, &svc.ids.service_key, &service_der).map_err(|e| e.to_string())?;
    Ok(cert.pem)
}

/// Governance's `endorseNodeCertificate` (passed with `transition_node_to_trusted`): issues the node's
/// certificate again, with the validity the proposal asked for, inside the proposal's transaction. The primary
/// then adds the (now Trusted) node to the Raft membership.
pub fn endorse_node(
    svc: &Service,
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
fn record_joiner(svc: &Service, req: &JoinRequest, key: &VerifyingKey, node_id: &str) -> Result<NodeRecord, HttpError> {
    let cert_pem = issue_node_cert(svc, key, &req.rpc_address, crate::identity::CERT_VALIDITY_DAYS)
        .map_err(|e| (500, "InternalError", e))?;
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
    let outcome = svc.execute_write(|tx, _| -> Result<(), HttpError> {
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
        Err(crate::service::WriteError::Body(e)) => Err(e),
        Err(other) => Err((503, "NotPrimary", format!("{other:?}"))),
    }
}

async fn forward_join(svc: &Service, body: Vec<u8>) -> Result<serde_json::Value, HttpError> {
    let addr = primary_rpc_address(svc).ok_or((503, "NoPrimary", "no primary known yet; retry".to_string()))?;
    let tls = crate::tls::client_config(&svc.ids.service_cert_pem, None)
        .map_err(|e| (500, "InternalError", e.to_string()))?;
    let fut = async {
        let conn = Connection::connect(&addr, tls, Protocol::Http1).await?;
        conn.request("POST", "/node/join", Some(body)).await
    };
    let reply = tokio::time::timeout(FORWARD_TIMEOUT, fut)
        .await
        .map_err(|_| {
            (
                504,
                "ForwardingTimeout",
                format!("the primary at {addr} did not answer"),
            )
        })?
        .map_err(|e| (502, "ForwardingFailed", e.to_string()))?;
    let v = reply.json().map_err(|e| (502, "ForwardingFailed", e.to_string()))?;
    if reply.status != 200 {
        return Err((502, "ForwardingFailed", v.to_string()));
    }
    Ok(v)
}

/// Joins the service at `cfg.join.target`, or restarts a node that joined before. Returns the running engine.
pub async fn join_service(cfg: NodeConfig) -> Result<Arc<Service>, crate::NodeError> {
    let dir = cfg.storage.secrets_dir.clone();
    if Identities::exist(&dir) {
        return crate::open_service(cfg);
    }
    let io = |e: String| crate::NodeError::Io(e);
    let target = cfg
        .join
        .target
        .clone()
        .ok_or_else(|| io("join.target is not set".into()))?;
    let service_cert_path = cfg
        .join
        .service_cert
        .clone()
        .ok_or_else(|| io("join.service_cert is not set".into()))?;
    let service_cert =
        std::fs::read_to_string(&service_cert_path).map_err(|e| io(format!("{}: {e}", service_cert_path.display())))?;
    let n2n = cfg
        .network
        .node_to_node_address
        .clone()
        .ok_or_else(|| io("network.node_to_node_address is needed to join".into()))?;
    let node_key = SigningKey::generate(Curve::P384);
    let req = JoinRequest {
        public_key: node_key.verifying_key().to_pem(),
        node_to_node_address: n2n,
        rpc_address: cfg.network.rpc_address.clone(),
    };
    let body = serde_json::to_vec(&req).map_err(|e| io(e.to_string()))?;
    let tls = crate::tls::client_config(&service_cert, None)?;
    let deadline = Instant::now() + JOIN_TIMEOUT;
    let answer = loop {
        if Instant::now() > deadline {
            return Err(io(format!("could not join through {target} within {JOIN_TIMEOUT:?}")));
        }
        let attempt = async {
            let conn = Connection::connect(&target, tls.clone(), Protocol::Http1).await?;
            conn.request("POST", "/node/join", Some(body.clone())).await
        };
        match tokio::time::timeout(FORWARD_TIMEOUT, attempt).await {
            Ok(Ok(r)) if r.status == 200 => {
                let v = r.json().map_err(|e| io(e.to_string()))?;
                if v["node_status"] == "Trusted" {
                    break v;
                }
                tracing::info!(status = %v["node_status"], "waiting to join");
            }
            Ok(Ok(r)) => tracing::info!(status = r.status, body = %String::from_utf8_lossy(&r.body), "join refused"),
            Ok(Err(e)) => tracing::info!(%e, "join attempt failed"),
            Err(_) => tracing::info!("join attempt timed out"),
        }
        tokio::time::sleep(JOIN_RETRY).await;
    };
    let field = |k: &str| -> Result<String, crate::NodeError> {
        answer[k]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| io(format!("join answer has no {k}")))
    };
    let ids = Identities::save_joined(
        &dir,
        &node_key,
        &field("node_cert")?,
        &field("service_key")?,
        &field("service_cert")?,
        &field("ledger_secret")?,
    )?;
    use base64::Engine;
    let snapshot = base64::engine::general_purpose::STANDARD
        .decode(field("snapshot")?)
        .map_err(|e| io(format!("snapshot: {e}")))?;
    let mut trusted = BTreeMap::new();
    for p in answer["peers"].as_array().into_iter().flatten() {
        if let (Some(id), Some(cert)) = (p["node_id"].as_str(), p["cert"].as_str()) {
            trusted.insert(raft_id_of(id), cert.to_string());
        }
    }
    let svc = Service::open_with(
        cfg,
        ids,
        Box::new(crate::apps::logging::LoggingApp),
        trusted,
        Some(snapshot),
    )?;
    for p in answer["peers"].as_array().into_iter().flatten() {
        if let (Some(id), Some(cert)) = (p["node_id"].as_str(), p["cert"].as_str()) {
            svc.add_peer(id, cert);
        }
    }
    Ok(svc)
}

/// Whether `node_id` is a Trusted node of this service (per the nodes table).
pub fn is_trusted_node(svc: &Service, node_id: &str) -> bool {
    node_records(svc)
        .into_iter()
        .any(|r| r.node_id == node_id && r.status == "Trusted")
}
