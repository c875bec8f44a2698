//! `POST /node/join` on the service's side: a joiner sends its public key and addresses to any node; a backup
//! forwards the request to the primary. The primary records the node in `public:ccf.gov.nodes.info` (Trusted while
//! the service is Opening, Pending once it is Open, until members pass `transition_node_to_trusted`) with a
//! certificate it issues with the service key. Once the node is Trusted, the primary adds it as a Raft learner, and
//! when that change is committed answers with the node certificate, the service key, certificate and ledger secret
//! (handed only to the holder of the node key, over TLS with its client certificate), the peers, and where its log
//! starts: the latest committed snapshot, or seqno 1 (see [`Engine::join_start_for`]). A Retired node is refused.
//! The joiner's side is [`crate::joiner`].

use super::ApiError;
use crate::engine::{node_records, Engine, NodeRecord, SeedPeer};
use crate::node::Node;
use consort_consensus::NodeId;
use consort_crypto::{ParsedCert, VerifyingKey};
use consort_ledger::{ENDORSED_CERTS_TABLE, NODES_INFO_TABLE};
use std::sync::Arc;

/// Largest join request body.
pub const MAX_JOIN_REQUEST_BYTES: usize = 64 * 1024;
/// Pending joiners the service records at most: anyone with a key and acceptable evidence can ask to join, and each
/// request records a node; beyond this, new joiners are refused (503) until members trust or remove the others.
pub const MAX_PENDING_NODES: usize = 32;

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
    /// The joiner's public key, PEM; the request must come over TLS with a certificate for it.
    pub public_key: String,
    /// Where it accepts node-to-node channels.
    pub node_to_node_address: String,
    /// Where it serves clients.
    pub rpc_address: String,
    /// Its attestation evidence, CCF's `QuoteInfo` (`format`, `quote`, `endorsements`), binding `public_key`.
    pub quote_info: serde_json::Value,
    /// Its RSA encryption public key (SPKI PEM, at least 2048 bits): rekeys encrypt new ledger secrets to it.
    /// Required; optional in the type only so that a request without it gets a clear refusal.
    #[serde(default)]
    pub encryption_public_key: Option<String>,
    /// A PEM certificate signing request for `public_key` (CCF's `certificate_signing_request`), recorded in the
    /// nodes table so that CCF's `transition_node_to_trusted` can endorse the node from it. Optional: a node
    /// without one is endorsed from its public key by Consort's constitution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_signing_request: Option<String>,
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_input(msg)
}

/// A join request that parsed, with the key it names.
pub struct ParsedJoin {
    /// The request as sent.
    pub request: JoinRequest,
    /// Its public key.
    pub key: VerifyingKey,
    /// The node id that key gives (hex SHA-256 of its SubjectPublicKeyInfo).
    pub node_id: NodeId,
    /// The attestation evidence it sent (parsed, not yet verified).
    pub evidence: consort_attest::Evidence,
}

impl std::fmt::Debug for ParsedJoin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParsedJoin")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// Parses and checks a join request body: size, JSON shape, key, addresses.
pub fn parse_join(body: &[u8]) -> Result<ParsedJoin, ApiError> {
    if body.len() > MAX_JOIN_REQUEST_BYTES {
        return Err(ApiError::new(413, "RequestTooLarge", "join request too large"));
    }
    let request: JoinRequest = serde_json::from_slice(body).map_err(|e| bad(format!("join request: {e}")))?;
    let key = VerifyingKey::from_pem(&request.public_key).map_err(|e| bad(format!("public_key: {e}")))?;
    request
        .rpc_address
        .parse::<std::net::SocketAddr>()
        .map_err(|e| bad(format!("rpc_address: {e}")))?;
    request
        .node_to_node_address
        .parse::<std::net::SocketAddr>()
        .map_err(|e| bad(format!("node_to_node_address: {e}")))?;
    let node_id: NodeId = consort_crypto::key_id(&key.to_spki_der())
        .parse()
        .map_err(|e: String| ApiError::new(500, "InternalError", e))?;
    let evidence =
        consort_attest::Evidence::from_json_value(&request.quote_info).map_err(|e| bad(format!("quote_info: {e}")))?;
    check_encryption_key(request.encryption_public_key.as_deref())?;
    if let Some(csr) = &request.certificate_signing_request {
        let csr_key =
            consort_crypto::csr::request_key(csr).map_err(|e| bad(format!("certificate_signing_request: {e}")))?;
        if csr_key != key {
            return Err(bad("certificate_signing_request is not for public_key"));
        }
    }
    Ok(ParsedJoin {
        request,
        key,
        node_id,
        evidence,
    })
}

/// Smallest RSA modulus accepted for a node's encryption key, in bytes.
const MIN_ENCRYPTION_KEY_BYTES: usize = 256;

/// A joiner's encryption key must be an RSA public key of at least 2048 bits that encrypts a ledger secret.
fn check_encryption_key(pem: Option<&str>) -> Result<(), ApiError> {
    let pem = pem.ok_or_else(|| bad("encryption_public_key is required"))?;
    let probe = consort_crypto::oaep::encrypt(pem, &[0u8; 32], &mut rand_core::OsRng)
        .map_err(|e| bad(format!("encryption_public_key: {e}")))?;
    if probe.len() < MIN_ENCRYPTION_KEY_BYTES {
        return Err(bad(format!(
            "encryption_public_key: an RSA key of {} bits is too small (at least {})",
            probe.len() * 8,
            MIN_ENCRYPTION_KEY_BYTES * 8
        )));
    }
    Ok(())
}

/// Handles `POST /node/join` (see the module documentation). `client_key_id` is the key id (hex SHA-256 of the
/// public key) of the TLS client certificate the caller presented, whose possession the handshake proved: the join
/// is accepted only for that key, so nobody can join, or collect what a join answers, in another node's name. A
/// backup forwards the request to the primary over the node-to-node channel, vouching for that proof.
pub async fn handle_join(
    node: Arc<Node>,
    client_key_id: Option<&NodeId>,
    body: Vec<u8>,
) -> Result<serde_json::Value, ApiError> {
    let join = parse_join(&body)?;
    if client_key_id != Some(&join.node_id) {
        return Err(ApiError::new(
            401,
            "InvalidAuthenticationInfo",
            "a join request must come over TLS with a client certificate for the public key it names",
        ));
    }
    let engine = node.engine().clone();
    if engine.private_pending() {
        return Err(ApiError::new(
            503,
            "ServiceRecovering",
            "the service is recovering: nodes can join once it is open",
        ));
    }
    if !engine.is_primary() {
        let request = crate::net::forwarding::Outgoing {
            method: "POST",
            target: "/node/join",
            caller: Some(join.node_id.as_str()),
            content_type: "application/json",
            body: &body,
            headers: &[],
        };
        let reply = super::app::forward(&node, request).await.map_err(ApiError::from)?;
        let v: serde_json::Value = serde_json::from_slice(&reply.body)
            .map_err(|e| ApiError::new(502, "ForwardingFailed", format!("primary's answer: {e}")))?;
        if reply.status != 200 {
            let message = v["error"]["message"]
                .as_str()
                .unwrap_or("the primary refused the join")
                .to_string();
            return Err(ApiError::new(reply.status, "JoinRefused", message));
        }
        return Ok(v);
    }
    tokio::task::spawn_blocking(move || join_on_primary(&engine, &join))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
}

/// On the primary: records the joiner (the first time), and answers with its status; once it is Trusted and its
/// addition to the Raft membership is committed, also with its certificate, the service's secrets, the peers and
/// the snapshot to start from. The caller has checked that the joiner holds the key.
pub fn join_on_primary(svc: &Engine, join: &ParsedJoin) -> Result<serde_json::Value, ApiError> {
    let claims = super::join_policy::check_attestation(svc, join)?;
    let existing = node_records(svc).into_iter().find(|r| r.node_id == join.node_id);
    let record = match existing {
        Some(r) => r,
        None => record_joiner(svc, join, &claims)?,
    };
    match record.status.as_str() {
        "Trusted" => {}
        "Pending" => return Ok(serde_json::json!({"node_id": record.node_id, "node_status": "Pending"})),
        // A node that left (or was never admitted) gets nothing, whoever holds its key.
        other => {
            return Err(ApiError::new(
                403,
                "NodeNotTrusted",
                format!("node {} is {other}: it cannot join again", record.node_id),
            ))
        }
    }
    let Some(start) = svc.join_start_for(join.node_id.raft_id()) else {
        return Ok(serde_json::json!({"node_id": record.node_id, "node_status": "Joining"}));
    };
    let service_key = svc.identities().service_key.verifying_key();
    // A certificate this service endorsed: after a disaster recovery, the nodes of the previous service (Retired)
    // hold certificates of the previous service key; what they signed lies before the recovered ledger's base,
    // which no joiner replays, and a joiner refuses to start naming them.
    let endorsed = |cert: &Option<String>| {
        cert.as_deref()
            .and_then(|c| consort_crypto::ParsedCert::from_pem(c).ok())
            .is_some_and(|c| c.verify_signed_by(&service_key).is_ok())
    };
    let peers: Vec<SeedPeer> = node_records(svc)
        .into_iter()
        // Retired nodes too: the joiner checks signature transactions they signed.
        .filter(|r| (r.status == "Trusted" || r.status == "Retired") && r.node_id != record.node_id)
        .filter(|r| endorsed(&r.cert_pem))
        .filter_map(|r| {
            Some(SeedPeer {
                cert: r.cert_pem?,
                node_id: r.node_id,
                node_to_node_address: r.node_to_node_address,
                status: r.status,
            })
        })
        .collect();
    use base64::Engine as _;
    let ids = svc.identities();
    Ok(serde_json::json!({
        "node_id": record.node_id,
        "node_status": "Trusted",
        "node_cert": record.cert_pem,
        "service_cert": svc.current_service_cert_pem(),
        "service_key": ids.service_key.to_pkcs8_pem(),
        "ledger_secrets": committed_secrets(svc),
        "peers": peers,
        "snapshot": start.snapshot.map(|s| base64::engine::general_purpose::STANDARD.encode(s)),
        "initial_voters": start.initial_voters,
    }))
}

/// The ledger secrets a joiner gets: every one whose rekey is committed (a rekey still in flight may be rolled
/// back; the joiner learns it from the ledger, encrypted to it, once it is trusted), as `{version, secret}`.
fn committed_secrets(svc: &Engine) -> Vec<serde_json::Value> {
    let committed = svc.committed_txid().seqno.get();
    svc.ledger_secrets()
        .iter()
        .filter(|(version, _)| *version <= committed + 1)
        .map(|(version, s)| serde_json::json!({"version": version, "secret": hex::encode(s.raw())}))
        .collect()
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
    let mut params = crate::engine::certificates::node_cert_params(rpc_address);
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
    node_id: &NodeId,
    validity_period_days: Option<u64>,
) -> Result<(), String> {
    let raw = tx
        .get(NODES_INFO_TABLE, node_id.as_str().as_bytes())
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
    tx.put(ENDORSED_CERTS_TABLE, node_id.as_str().as_bytes(), pem.as_bytes());
    Ok(())
}

/// On the primary: records the joiner in the nodes table. Only a node admitted as Trusted (while the service is
/// Opening) gets a service-endorsed certificate now; a Pending node gets one only when members trust it
/// (`transition_node_to_trusted`, see [`endorse_node`]), so a certificate never vouches for a node nobody admitted.
fn record_joiner(svc: &Engine, join: &ParsedJoin, claims: &consort_attest::Claims) -> Result<NodeRecord, ApiError> {
    let (req, key, node_id) = (&join.request, &join.key, &join.node_id);
    // While the service is Opening, CCF trusts joiners at once. Only hardware evidence earns that here: virtual
    // evidence is made by whoever holds a key (anyone on the network can write it), so a virtual joiner always
    // waits, Pending, for members to trust it.
    let hardware = claims.kind != consort_attest::PlatformKind::Virtual;
    let status = if hardware && svc.service_status().as_deref() == Some("Opening") {
        "Trusted"
    } else {
        "Pending"
    };
    if status == "Pending" && node_records(svc).iter().filter(|r| r.status == "Pending").count() >= MAX_PENDING_NODES {
        return Err(ApiError::new(
            503,
            "TooManyPendingNodes",
            format!("{MAX_PENDING_NODES} nodes already wait for members to trust them; try again later"),
        ));
    }
    let cert_pem = if status == "Trusted" {
        let pem = issue_node_cert(svc, key, &req.rpc_address, crate::identity::CERT_VALIDITY_DAYS)
            .map_err(ApiError::internal)?;
        Some(pem)
    } else {
        None
    };
    let mut info = serde_json::json!({
        "status": status,
        "public_key": req.public_key,
        "rpc_interfaces": {"primary_rpc_interface": {"bind_address": req.rpc_address}},
        "node_to_node_address": req.node_to_node_address,
        "node_data": null,
        "quote_info": req.quote_info,
        "encryption_pub_key": req.encryption_public_key,
        "ledger_secret_seqno": 0,
        "retired_committed": false,
    });
    if let (Some(csr), Some(row)) = (&req.certificate_signing_request, info.as_object_mut()) {
        row.insert("certificate_signing_request".into(), csr.clone().into());
    }
    let outcome = svc.execute_write(|tx, _| -> Result<(), ApiError> {
        tx.put(
            NODES_INFO_TABLE,
            node_id.as_str().as_bytes(),
            info.to_string().as_bytes(),
        );
        if let Some(pem) = &cert_pem {
            tx.put(ENDORSED_CERTS_TABLE, node_id.as_str().as_bytes(), pem.as_bytes());
        }
        Ok(())
    });
    match outcome {
        Ok(_) => Ok(NodeRecord {
            node_id: node_id.clone(),
            status: status.to_string(),
            rpc_address: Some(req.rpc_address.clone()),
            node_to_node_address: Some(req.node_to_node_address.clone()),
            cert_pem,
        }),
        Err(crate::engine::WriteError::Body(e)) => Err(e),
        Err(other) => Err(ApiError::new(503, "NotPrimary", format!("{other:?}"))),
    }
}
