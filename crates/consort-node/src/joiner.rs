//! The joiner's side of the join protocol: a new node asks a running service to admit it (`POST /node/join`),
//! retries while it is Pending, and once it is Trusted saves what the primary handed it (its certificate, the
//! service's secrets, the peers, and where its log starts: a committed snapshot or seqno 1) and starts.
//! The service's side is [`crate::api::join`].

use crate::api::join::JoinRequest;
use crate::config::NodeConfig;
use crate::engine::{Engine, JoinRecord, OpenOptions, Start};
use crate::identity::Identities;
use crate::net::client::{Connection, Protocol};
use crate::net::forwarding::FORWARD_TIMEOUT;
use crate::node::Node;
use crate::NodeError;
use consort_crypto::{Curve, SigningKey};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// File in the secrets directory holding the joining node's id (public), for members to trust it by.
pub const JOINING_NODE_ID_FILE: &str = "joining_node_id";
/// A joining node gives up after this long.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(120);
/// Pause between join attempts while the node is Pending or the primary is not ready.
pub const JOIN_RETRY: Duration = Duration::from_millis(300);

/// Why a join failed (see [`NodeError::Join`]): what the joiner lacked, what it could not write, or what the
/// service answered.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// A configuration field a joiner needs is not set.
    #[error("{0} is not set")]
    NotSet(&'static str),
    /// The node-to-node address is not configured (peers must reach a joined node).
    #[error("network.node_to_node_address is needed to join")]
    NoNodeToNodeAddress,
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The join request could not be encoded.
    #[error("{0}")]
    Encode(#[source] serde_json::Error),
    /// The joiner's own TLS certificate could not be made.
    #[error("joiner certificate: {0}")]
    OwnCertificate(#[source] consort_crypto::CryptoError),
    /// The service answered 200 with a body that is not JSON.
    #[error("{0}")]
    Answer(#[source] crate::net::client::ClientError),
    /// The join policy refused this node (the service's answer, as it sent it).
    #[error("join refused: {answer}")]
    Refused {
        /// The body of the service's 403 answer.
        answer: String,
    },
    /// No Trusted answer within [`JOIN_TIMEOUT`].
    #[error("could not join through {target} within {waited:?}")]
    Timeout {
        /// The service address asked.
        target: String,
        /// How long the joiner tried.
        waited: Duration,
    },
    /// The Trusted answer lacks a text field.
    #[error("join answer has no {0}")]
    MissingField(&'static str),
    /// The answer's snapshot is not base64.
    #[error("snapshot: {0}")]
    Snapshot(#[source] base64::DecodeError),
    /// A field of the answer does not have its shape.
    #[error("join answer: {field}: {source}")]
    AnswerField {
        /// The field.
        field: &'static str,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The answer gives the node nowhere to start its log.
    #[error("join answer names neither a snapshot nor the first membership")]
    NoStart,
    /// The answer's ledger secrets are missing or not a list of `{version, secret}`.
    #[error("join answer: ledger_secrets are missing or malformed")]
    LedgerSecrets,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> JoinError + '_ {
    move |source| JoinError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Joins the service at `cfg.join.target`, or restarts a node that joined before. Returns the running engine.
pub async fn join_service(cfg: NodeConfig) -> Result<Arc<Node>, NodeError> {
    let dir = cfg.storage.secrets_dir.clone();
    if Identities::exist(&dir) {
        return crate::launch::open_node(cfg);
    }
    let target = cfg.join.target.clone().ok_or(JoinError::NotSet("join.target"))?;
    let service_cert_path = cfg
        .join
        .service_cert
        .clone()
        .ok_or(JoinError::NotSet("join.service_cert"))?;
    let service_cert = std::fs::read_to_string(&service_cert_path).map_err(io_error(&service_cert_path))?;
    let n2n = cfg
        .network
        .node_to_node_address
        .clone()
        .ok_or(JoinError::NoNodeToNodeAddress)?;
    let node_key = SigningKey::generate(Curve::P384);
    // The evidence binds the node key to the code this process runs; the primary checks it against the join policy.
    // The platform seals this node's secrets too.
    let platform: Arc<dyn consort_attest::Platform> = Arc::from(crate::platform::open(&cfg.attestation)?);
    let attestation = crate::launch::attest_on(platform.as_ref(), &node_key)?;
    let (enc_key_pem, enc_public_pem) = crate::identity::new_encryption_key(&dir)?;
    let req = JoinRequest {
        public_key: node_key.verifying_key().to_pem(),
        node_to_node_address: n2n,
        rpc_address: cfg.network.rpc_address.clone(),
        quote_info: attestation.evidence.to_json_value(),
        encryption_public_key: Some(enc_public_pem),
        certificate_signing_request: Some(
            crate::engine::certificates::node_signing_request(&node_key, &cfg.network.rpc_address)
                .map_err(JoinError::OwnCertificate)?,
        ),
    };
    let body = serde_json::to_vec(&req).map_err(JoinError::Encode)?;
    // The node id is public (a digest of the public key); members need it to trust this node, so it is written
    // where an operator (or the sandbox) finds it, and logged.
    let node_id = consort_crypto::key_id(&node_key.verifying_key().to_spki_der());
    std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    let id_path = dir.join(JOINING_NODE_ID_FILE);
    std::fs::write(&id_path, &node_id).map_err(io_error(&id_path))?;
    tracing::info!(%node_id, "asking to join; members trust this node with transition_node_to_trusted");
    // Proof of possession: the join goes over TLS with a certificate for the node key, so the service admits (and
    // later hands secrets to) only the holder of the key the request names.
    let own_cert = consort_crypto::x509::self_signed(&node_key, &consort_crypto::CertParams::new("CCF Node joiner"))
        .map_err(JoinError::OwnCertificate)?;
    let key_pem = node_key.to_pkcs8_pem();
    let tls = crate::net::tls::client_config(&service_cert, Some((&own_cert.pem, &key_pem)))?;
    let answer = ask_until_trusted(&target, tls, body).await?;
    let ids = save_answer(&cfg, platform.as_ref(), (&node_key, &enc_key_pem), &answer)?;
    let engine = Engine::open_with(
        cfg,
        ids,
        OpenOptions {
            start: Start::Joined,
            attestation: None,
            platform: Some(platform),
        },
    )?;
    // A joined node serves exactly the applications a genesis node serves.
    let node = Node::new(engine.clone(), Box::new(crate::apps::Apps::standard(engine)));
    node.attach_attestation(attestation);
    Ok(node)
}

/// Saves what the primary handed this node: the join record (where its log starts, the peers) first, its identity
/// last, so a node holding an identity always knows where its log starts and a crash in between never leaves one
/// that would start a new service under the real identity.
fn save_answer(
    cfg: &NodeConfig,
    platform: &dyn consort_attest::Platform,
    (node_key, enc_key_pem): (&SigningKey, &str),
    answer: &serde_json::Value,
) -> Result<Identities, NodeError> {
    let field = |k: &'static str| -> Result<String, JoinError> {
        answer[k].as_str().map(str::to_string).ok_or(JoinError::MissingField(k))
    };
    use base64::Engine as _;
    let snapshot = match answer["snapshot"].as_str() {
        Some(b64) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(JoinError::Snapshot)?,
        ),
        None => None,
    };
    let record = JoinRecord {
        initial_voters: serde_json::from_value(answer["initial_voters"].clone()).map_err(|source| {
            JoinError::AnswerField {
                field: "initial_voters",
                source,
            }
        })?,
        peers: serde_json::from_value(answer["peers"].clone())
            .map_err(|source| JoinError::AnswerField { field: "peers", source })?,
    };
    if snapshot.is_none() && record.initial_voters.is_empty() {
        return Err(JoinError::NoStart.into());
    }
    let secrets = answer_secrets(answer).ok_or(JoinError::LedgerSecrets)?;
    record.save(cfg, snapshot.as_deref())?;
    let ids = Identities::save_joined(
        platform,
        &cfg.storage.secrets_dir,
        node_key,
        enc_key_pem,
        &field("node_cert")?,
        &field("service_key")?,
        &field("service_cert")?,
        &secrets,
    )?;
    tracing::info!(
        from_snapshot = snapshot.is_some(),
        "joined; starting from {}",
        if snapshot.is_some() {
            "the primary's latest committed snapshot"
        } else {
            "seqno 1"
        }
    );
    Ok(ids)
}

/// The keyring in a join answer: `ledger_secrets`, a list of `{version, secret (hex)}`.
fn answer_secrets(answer: &serde_json::Value) -> Option<consort_ledger::LedgerSecrets> {
    let mut pairs = Vec::new();
    for item in answer["ledger_secrets"].as_array()? {
        let version = item["version"].as_u64()?;
        let raw: [u8; 32] = hex::decode(item["secret"].as_str()?).ok()?.try_into().ok()?;
        pairs.push((version, consort_ledger::LedgerSecret::from_bytes(raw)));
    }
    consort_ledger::LedgerSecrets::from_versions(pairs)
}

/// Asks the service at `target` to admit this node (`body`, over `tls` with the node's own certificate) until it
/// answers Trusted with everything the node starts from; gives up after [`JOIN_TIMEOUT`], or at once when the join
/// policy refuses the node (retrying would not change that).
async fn ask_until_trusted(
    target: &str,
    tls: crate::net::client::TlsConfig,
    body: Vec<u8>,
) -> Result<serde_json::Value, NodeError> {
    let deadline = Instant::now() + JOIN_TIMEOUT;
    loop {
        if Instant::now() > deadline {
            return Err(JoinError::Timeout {
                target: target.to_owned(),
                waited: JOIN_TIMEOUT,
            }
            .into());
        }
        let attempt = async {
            let conn = Connection::connect(target, tls.clone(), Protocol::Http1).await?;
            conn.request("POST", "/node/join", Some(body.clone())).await
        };
        match tokio::time::timeout(FORWARD_TIMEOUT, attempt).await {
            Ok(Ok(r)) if r.status == 200 => {
                let v = r.json().map_err(JoinError::Answer)?;
                if v["node_status"] == "Trusted" {
                    return Ok(v);
                }
                tracing::info!(status = %v["node_status"], "waiting to join");
            }
            // A refusal by the join policy will not change by retrying; other refusals (no primary yet) may.
            Ok(Ok(r)) if r.status == 403 => {
                return Err(JoinError::Refused {
                    answer: String::from_utf8_lossy(&r.body).into_owned(),
                }
                .into());
            }
            Ok(Ok(r)) => tracing::info!(status = r.status, body = %String::from_utf8_lossy(&r.body), "join refused"),
            Ok(Err(e)) => tracing::info!(%e, "join attempt failed"),
            Err(_) => tracing::info!("join attempt timed out"),
        }
        tokio::time::sleep(JOIN_RETRY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn join_errors_keep_their_cause_and_their_text() {
        let source = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let err = NodeError::from(io_error(Path::new("/s/service_cert.pem"))(source));
        assert_eq!(err.to_string(), "join: /s/service_cert.pem: gone");
        let join = err
            .source()
            .and_then(|s| s.downcast_ref::<JoinError>())
            .expect("a join error");
        assert!(join.source().is_some_and(|s| s.is::<std::io::Error>()));

        let bad = serde_json::from_value::<Vec<u64>>(serde_json::json!("x")).unwrap_err();
        let text = bad.to_string();
        let err = NodeError::from(JoinError::AnswerField {
            field: "peers",
            source: bad,
        });
        assert_eq!(err.to_string(), format!("join: join answer: peers: {text}"));

        let err = NodeError::from(JoinError::Timeout {
            target: "127.0.0.1:1".into(),
            waited: JOIN_TIMEOUT,
        });
        assert_eq!(err.to_string(), "join: could not join through 127.0.0.1:1 within 120s");
        let err = NodeError::from(JoinError::NotSet("join.target"));
        assert_eq!(err.to_string(), "join: join.target is not set");
    }
}
