//! `/gov/*` endpoints (CCF's 2024-07-01 API): COSE-signed member requests run through consort-gov inside a node
//! transaction, with the constitution's host actions performed before commit; plus the read-only views.

use super::{raw_response, Resp};
use crate::engine::{Engine, TxId, WriteError};
use crate::node::Node;
use bytes::Bytes;
use consort_gov::{tables, GovEnv, GovError, HostAction, KvRead, MsgType, VerifiedRequest};
use consort_kv::Tx;

/// A finished governance answer: status, body, content type.
#[derive(Debug)]
pub struct GovReply {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
    /// Its content type.
    pub content_type: &'static str,
    /// The transaction the request wrote, if any.
    pub txid: Option<TxId>,
}

/// Serves a `/gov/...` request on this node: writes are forwarded to the primary when this node is not it (the
/// member's signature travels with the body), everything else runs here.
pub(super) async fn serve(
    node: &Node,
    method: &str,
    path: &str,
    query: &str,
    content_type: &str,
    body: &Bytes,
) -> Resp {
    let engine = node.engine();
    if method != "GET" && !engine.is_primary() {
        let target = if query.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{query}")
        };
        let request = crate::net::forwarding::Outgoing {
            method,
            target: &target,
            caller: None,
            content_type,
            body,
            headers: &[],
        };
        let reply = super::app::forward(node, request).await;
        return super::app::forwarded_response(node, reply);
    }
    let r = route(engine, method, path, query, body);
    let txid = r.txid.unwrap_or(engine.current_txid());
    raw_response(r.status, r.content_type, Bytes::from(r.body), Some(txid.to_string()))
}

pub(super) fn json(status: u16, v: serde_json::Value, txid: Option<TxId>) -> GovReply {
    GovReply {
        status,
        body: v.to_string().into_bytes(),
        content_type: "application/json",
        txid,
    }
}

fn err(e: &GovError) -> GovReply {
    json(e.http_status(), e.to_json(), None)
}

fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Performs the constitution's recorded node actions inside the proposal's transaction.
fn perform(svc: &Engine, tx: &mut Tx<'_>, actions: &[HostAction]) -> Result<(), GovError> {
    // The newest secret as of this transaction: a rekey earlier in the same proposal replaces it. A transaction
    // rekeys at most once (its write set holds one new secret, used from the next seqno on).
    let (version, mut latest) = {
        let secrets = svc.ledger_secrets();
        let (v, s) = secrets.latest();
        (v, s.clone())
    };
    let mut rekeyed = false;
    let shares_failed =
        |e: consort_ledger::secrets::shares::SharesError| GovError::ProposalFailed(format!("recovery shares: {e}"));
    for a in actions {
        match a {
            HostAction::TransitionServiceToOpen {
                previous_service_identity,
                next_service_identity,
            } if svc.private_pending() => super::recovery::await_shares(
                svc,
                tx,
                previous_service_identity.as_deref(),
                next_service_identity.as_deref(),
            )?,
            HostAction::TransitionServiceToOpen { .. } => {
                consort_gov::open_service(tx)?;
                crate::engine::secrets::issue_recovery_shares(tx, &latest).map_err(shares_failed)?;
            }
            HostAction::EndorseNodeCertificate {
                node_id,
                validity_period_days,
                ..
            } => crate::identity::parse_node_id(node_id)
                .map_err(|e| e.to_string())
                .and_then(|id| super::join::endorse_node(svc, tx, &id, *validity_period_days))
                .map_err(|e| GovError::ProposalFailed(format!("endorsing node {node_id}: {e}")))?,
            HostAction::TriggerLedgerChunk => svc.request_chunk_end(),
            HostAction::TriggerSnapshot => svc.request_snapshot(),
            HostAction::TriggerLedgerRekey | HostAction::TriggerRecoverySharesRefresh if svc.private_pending() => {
                // The recovery-shares record is the old service's until its private state is back.
                return Err(GovError::ProposalFailed(
                    "no rekey or recovery-shares refresh while the service recovers".into(),
                ));
            }
            HostAction::TriggerLedgerRekey if rekeyed => {}
            HostAction::TriggerLedgerRekey => {
                let new = crate::engine::secrets::write_rekey(tx, (version, &latest))
                    .map_err(|e| GovError::ProposalFailed(format!("ledger rekey: {e}")))?;
                crate::engine::secrets::issue_recovery_shares(tx, &new).map_err(shares_failed)?;
                latest = new;
                rekeyed = true;
            }
            HostAction::TriggerRecoverySharesRefresh => {
                crate::engine::secrets::issue_recovery_shares(tx, &latest).map_err(shares_failed)?;
            }
        }
    }
    Ok(())
}

/// What a signed endpoint does with its verified request.
enum SignedOp<'a> {
    Create,
    Ballot { proposal_id: &'a str, member_id: &'a str },
    Withdraw { proposal_id: &'a str },
    UpdateDigest { member_id: &'a str },
    Ack { member_id: &'a str },
}

impl SignedOp<'_> {
    fn msg_type(&self) -> MsgType {
        match self {
            SignedOp::Create => MsgType::Proposal,
            SignedOp::Ballot { .. } => MsgType::Ballot,
            SignedOp::Withdraw { .. } => MsgType::Withdrawal,
            SignedOp::UpdateDigest { .. } => MsgType::StateDigest,
            SignedOp::Ack { .. } => MsgType::Ack,
        }
    }
    fn proposal_id(&self) -> Option<&str> {
        match self {
            SignedOp::Ballot { proposal_id, .. } | SignedOp::Withdraw { proposal_id } => Some(proposal_id),
            _ => None,
        }
    }
}

fn signed(svc: &Engine, op: SignedOp<'_>, body: &[u8]) -> GovReply {
    // The constitution may ask for certificates signed with the service key (CCF's `transition_node_to_trusted`
    // endorses a joiner's signing request; `set_service_certificate_validity` renews the service certificate).
    let issuer = crate::engine::certificates::ServiceIssuer::new(svc.identities());
    let env = GovEnv {
        latest_ledger_secret_seqno: svc.ledger_secrets().latest().0,
        certificates: Some(&issuer),
        ..GovEnv::default()
    };
    let now = now_seconds();
    let signed_root = svc.last_signed_root();
    // The constitution's and ballots' console.log lines travel out with the answer, so that they are logged once,
    // for the execution that committed, not for every re-execution after a conflict.
    let outcome = svc.execute_write(|tx, root| -> Result<(u16, serde_json::Value, Vec<String>), GovError> {
        let req: VerifiedRequest = consort_gov::verify_gov_request(tx, body, op.msg_type(), op.proposal_id(), now)?;
        match &op {
            SignedOp::Create => {
                let out = consort_gov::create_proposal(tx, &req, &root(), &env)?;
                perform(svc, tx, &out.actions)?;
                Ok((200, out.to_api_json(), out.logs))
            }
            SignedOp::Ballot { proposal_id, member_id } => {
                let out = consort_gov::submit_ballot(tx, &req, proposal_id, member_id, &env)?;
                perform(svc, tx, &out.actions)?;
                Ok((200, out.to_api_json(), out.logs))
            }
            SignedOp::Withdraw { proposal_id } => match consort_gov::withdraw_proposal(tx, &req, proposal_id)? {
                Some(out) => Ok((200, out.to_api_json(), out.logs)),
                None => Ok((204, serde_json::Value::Null, vec![])),
            },
            SignedOp::UpdateDigest { member_id } => {
                let d = consort_gov::update_state_digest(tx, &req, member_id, signed_root.as_deref())?;
                Ok((200, serde_json::to_value(d).unwrap_or_default(), vec![]))
            }
            SignedOp::Ack { member_id } => {
                consort_gov::ack_state_digest(tx, &req, member_id)?;
                Ok((204, serde_json::Value::Null, vec![]))
            }
        }
    });
    if let Ok(((_, _, logs), txid)) = &outcome {
        for line in logs {
            tracing::info!(%txid, "governance JS: {line}");
        }
    }
    match outcome {
        Ok(((status, _, _), txid)) if status == 204 => GovReply {
            status,
            body: vec![],
            content_type: "application/json",
            txid: Some(txid),
        },
        Ok(((status, body, _), txid)) => json(status, body, Some(txid)),
        Err(WriteError::Body(e)) => {
            tracing::info!("governance request refused: {e}");
            err(&e)
        }
        Err(WriteError::Conflict) => json(
            409,
            serde_json::json!({"error": {"code": "TransactionConflict", "message": "governance transaction kept conflicting; retry"}}),
            None,
        ),
        Err(WriteError::NotPrimary(_)) => json(
            503,
            serde_json::json!({"error": {"code": "NotPrimary", "message": "this node is not the primary; retry on the primary"}}),
            None,
        ),
        Err(WriteError::Refused(msg)) => json(
            503,
            serde_json::json!({"error": {"code": "ProposalRefused", "message": msg}}),
            None,
        ),
    }
}

fn read<T>(svc: &Engine, f: impl FnOnce(&mut dyn KvRead) -> Result<T, GovError>) -> Result<T, GovError> {
    let store = svc.store();
    let mut tx = store.read_only();
    f(&mut tx)
}

fn map_json(svc: &Engine, map: &str, raw_values: bool) -> serde_json::Value {
    let store = svc.store();
    let tx = store.read_only();
    let mut out = serde_json::Map::new();
    tx.foreach(map, |k, v| {
        let key = String::from_utf8_lossy(k).to_string();
        let value = if raw_values {
            serde_json::Value::String(String::from_utf8_lossy(v).to_string())
        } else {
            serde_json::from_slice(v).unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(v).into()))
        };
        out.insert(key, value);
        true
    });
    serde_json::Value::Object(out)
}

/// `GET /gov/service/join-policy`: the governed tables a joiner's attestation is judged by, in CCF's shape.
fn join_policy_json(svc: &Engine) -> serde_json::Value {
    serde_json::json!({
        "snp": {
            "measurements": map_json(svc, tables::NODES_SNP_MEASUREMENTS, false),
            "hostData": map_json(svc, tables::NODES_SNP_HOST_DATA, false),
            "tcbVersions": map_json(svc, tables::NODES_SNP_TCB_VERSIONS, false),
        },
        "codeIds": map_json(svc, tables::NODES_CODE_IDS, false),
    })
}

fn service_info(svc: &Engine) -> serde_json::Value {
    let store = svc.store();
    let tx = store.read_only();
    tx.get(tables::SERVICE_INFO, &tables::SINGLETON_KEY)
        .and_then(|v| serde_json::from_slice(&v).ok())
        .unwrap_or(serde_json::Value::Null)
}

fn members(svc: &Engine) -> serde_json::Value {
    let certs = map_json(svc, tables::MEMBERS_CERTS, true);
    let info = map_json(svc, tables::MEMBERS_INFO, false);
    let keys = map_json(svc, tables::MEMBERS_ENCRYPTION_PUBLIC_KEYS, true);
    let value: Vec<serde_json::Value> = certs
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(id, cert)| {
                    let mut v = serde_json::json!({"memberId": id, "certificate": cert});
                    if let Some(i) = info.get(id) {
                        v["status"] = i["status"].clone();
                        v["memberData"] = i["member_data"].clone();
                        v["recoveryRole"] = i["recovery_role"].clone();
                    }
                    if let Some(k) = keys.get(id) {
                        v["publicEncryptionKey"] = k.clone();
                    }
                    v
                })
                .collect()
        })
        .unwrap_or_default();
    serde_json::json!({ "value": value })
}

fn nodes(svc: &Engine) -> serde_json::Value {
    let info = map_json(svc, tables::NODES_INFO, false);
    let certs = map_json(svc, tables::NODES_ENDORSED_CERTIFICATES, true);
    let value: Vec<serde_json::Value> = info
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(id, i)| {
                    serde_json::json!({"nodeId": id, "status": i["status"], "nodeData": i["node_data"], "certificate": certs.get(id)})
                })
                .collect()
        })
        .unwrap_or_default();
    serde_json::json!({ "value": value })
}

/// Decodes `%XX` escapes (clients may send the `:` of `proposals:create` as `%3A`); anything else is kept as is.
fn percent_decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                // Two hex digits make one byte: hi * 16 + lo <= 255.
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The method a `/gov` endpoint answers (each path has exactly one), or `None` for an unknown path.
fn endpoint_method(parts: &[&str]) -> Option<&'static str> {
    match parts {
        ["members", "proposals:create"] => Some("POST"),
        ["recovery", "members", m] if m.ends_with(":recover") => Some("POST"),
        ["members", "proposals", _, "ballots", m] if m.ends_with(":submit") => Some("POST"),
        ["members", "proposals", p] if p.ends_with(":withdraw") => Some("POST"),
        ["members", "state-digests", m] if m.ends_with(":update") || m.ends_with(":ack") => Some("POST"),
        ["members", "state-digests", _]
        | ["members", "proposals"]
        | ["members", "proposals", _]
        | ["members", "proposals", _, "actions"]
        | ["members", "proposals", _, "ballots", _]
        | ["service", "info" | "members" | "nodes" | "constitution" | "join-policy"]
        | ["recovery", "encrypted-shares", _] => Some("GET"),
        _ => None,
    }
}

/// The governance API version this node implements (CCF's); requests naming another are refused.
pub const API_VERSION: &str = "2024-07-01";

/// Routes a `/gov/...` request. `query` may carry `api-version`: when present it must be [`API_VERSION`].
pub fn route(svc: &Engine, method: &str, path: &str, query: &str, body: &[u8]) -> GovReply {
    if let Some(v) = crate::apps::query_param(query, "api-version") {
        if v != API_VERSION {
            return json(
                400,
                serde_json::json!({"error": {"code": "UnsupportedApiVersion", "message": format!("api-version {v} is not supported; use {API_VERSION}")}}),
                None,
            );
        }
    }
    let path = percent_decode(path);
    let Some(rest) = path.strip_prefix("/gov/") else {
        return err(&GovError::InvalidResourceName(path));
    };
    let parts: Vec<&str> = rest.split('/').collect();
    if let Some(allowed) = endpoint_method(&parts) {
        if allowed != method {
            return json(
                405,
                serde_json::json!({"error": {"code": "UnsupportedHttpVerb", "message": format!("Allowed methods for '{path}' are: {allowed}.")}}),
                None,
            );
        }
    }
    let reply = |r: Result<serde_json::Value, GovError>| match r {
        Ok(v) => json(200, v, None),
        Err(e) => err(&e),
    };
    match (method, parts.as_slice()) {
        ("POST", ["members", "proposals:create"]) => signed(svc, SignedOp::Create, body),
        ("POST", ["members", "proposals", p, "ballots", m]) if m.ends_with(":submit") => signed(
            svc,
            SignedOp::Ballot {
                proposal_id: p,
                member_id: m.trim_end_matches(":submit"),
            },
            body,
        ),
        ("POST", ["members", "proposals", p]) if p.ends_with(":withdraw") => signed(
            svc,
            SignedOp::Withdraw {
                proposal_id: p.trim_end_matches(":withdraw"),
            },
            body,
        ),
        ("POST", ["members", "state-digests", m]) if m.ends_with(":update") => signed(
            svc,
            SignedOp::UpdateDigest {
                member_id: m.trim_end_matches(":update"),
            },
            body,
        ),
        ("POST", ["members", "state-digests", m]) if m.ends_with(":ack") => signed(
            svc,
            SignedOp::Ack {
                member_id: m.trim_end_matches(":ack"),
            },
            body,
        ),
        ("GET", ["members", "state-digests", m]) => reply(
            read(svc, |kv| consort_gov::get_state_digest(kv, m)).map(|d| serde_json::to_value(d).unwrap_or_default()),
        ),
        ("GET", ["members", "proposals"]) => reply(read(svc, consort_gov::list_proposals_json)),
        ("GET", ["members", "proposals", p]) => {
            reply(read(svc, |kv| consort_gov::get_proposal(kv, p)).map(|i| i.to_api_json(p)))
        }
        ("GET", ["members", "proposals", p, "actions"]) => {
            match read(svc, |kv| consort_gov::get_proposal_actions(kv, p)) {
                Ok(bytes) => GovReply {
                    status: 200,
                    body: bytes,
                    content_type: "application/json",
                    txid: None,
                },
                Err(e) => err(&e),
            }
        }
        ("GET", ["members", "proposals", p, "ballots", m]) => match read(svc, |kv| consort_gov::get_ballot(kv, p, m)) {
            Ok(text) => GovReply {
                status: 200,
                body: text.into_bytes(),
                content_type: "text/javascript",
                txid: None,
            },
            Err(e) => err(&e),
        },
        ("GET", ["service", "info"]) => json(200, service_info(svc), None),
        ("GET", ["service", "members"]) => json(200, members(svc), None),
        ("GET", ["service", "nodes"]) => json(200, nodes(svc), None),
        ("GET", ["service", "constitution"]) => match read(svc, consort_gov::constitution) {
            Ok(text) => GovReply {
                status: 200,
                body: text.into_bytes(),
                content_type: "text/javascript",
                txid: None,
            },
            Err(e) => err(&e),
        },
        ("GET", ["service", "join-policy"]) => json(200, join_policy_json(svc), None),
        ("GET", ["recovery", "encrypted-shares", m]) => encrypted_share(svc, m),
        ("POST", ["recovery", "members", m]) if m.ends_with(":recover") => {
            super::recovery::submit(svc, m.trim_end_matches(":recover"), body, now_seconds())
        }
        _ => not_found(format!("Unknown path: {path} for {method}.")),
    }
}

/// `GET /gov/recovery/encrypted-shares/{memberId}`: the member's encrypted recovery share, or 404.
fn encrypted_share(svc: &Engine, member_id: &str) -> GovReply {
    let store = svc.store();
    match crate::engine::secrets::encrypted_share(&store.read_only(), member_id) {
        Some(share) => json(200, serde_json::json!({ "encryptedShare": share }), None),
        None => not_found(format!("Recovery share not found for member {member_id}.")),
    }
}

fn not_found(message: String) -> GovReply {
    json(
        404,
        serde_json::json!({"error": {"code": "ResourceNotFound", "message": message}}),
        None,
    )
}
