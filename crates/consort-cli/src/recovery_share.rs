//! The member side of disaster recovery, behind `consort gov recovery-share`: fetch the member's encrypted
//! recovery share from a node, decrypt it with the member's RSA encryption key, sign it as a COSE
//! `recovery_share` request and submit it. Each step is a function of its own, so that a test (or another tool)
//! can run them one by one, look at what each returns, or replace one.
//!
//! The wire contract is CCF's (2024-07-01 governance API): `GET /gov/recovery/encrypted-shares/{memberId}` answers
//! `{"encryptedShare": "<base64 of RSA-OAEP-SHA-256(member key, share)>"}`, and
//! `POST /gov/recovery/members/{memberId}:recover` takes a COSE Sign1 with `ccf.gov.msg.type` `recovery_share`
//! whose payload is `{"share": "<base64 of the decrypted share>"}`. A member id is the hex SHA-256 of the DER of
//! the member's certificate.

use base64::Engine as _;
use consort_crypto::{CryptoError, ParsedCert, SigningKey};
use consort_gov::MsgType;
use consort_node::net::client::{ClientError, Connection, Reply};

/// The governance API version these requests name (CCF's).
pub const API_VERSION: &str = "2024-07-01";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A non-2xx answer of the node: its status and, from CCF's error JSON (`{"error": {"code", "message"}}`), its
/// code and message (the raw body as the message when it is not that JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRefusal {
    /// The HTTP status.
    pub status: u16,
    /// CCF's error code (`ResourceNotFound`, ...), when the body carries one.
    pub code: Option<String>,
    /// The node's message.
    pub message: String,
}

impl NodeRefusal {
    /// The refusal a reply stands for (whatever its status: call it for a non-2xx reply).
    pub fn of(reply: &Reply) -> Self {
        let json = serde_json::from_slice::<serde_json::Value>(&reply.body).ok();
        let error = json.as_ref().map(|v| &v["error"]);
        let text = |k: &str| error.and_then(|e| e[k].as_str()).map(str::to_string);
        NodeRefusal {
            status: reply.status,
            code: text("code"),
            message: text("message").unwrap_or_else(|| String::from_utf8_lossy(&reply.body).trim().to_string()),
        }
    }
}

impl std::fmt::Display for NodeRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if let Some(code) = &self.code {
            write!(f, " {code}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Why a step of the member side of recovery failed.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryShareError {
    /// The member certificate does not parse, so there is no member id.
    #[error("member certificate: {0}")]
    MemberCert(#[source] CryptoError),
    /// The node holds no share for the member (404).
    #[error(
        "no recovery share for member {member_id} (the node answered {refusal}); only Active members registered \
         with an encryption key get one, once the service is open"
    )]
    NoShare { member_id: String, refusal: NodeRefusal },
    /// The node refused to hand out the share for another reason.
    #[error("fetching the recovery share of member {member_id}: the node answered {refusal}")]
    FetchRefused { member_id: String, refusal: NodeRefusal },
    /// A 200 answer without a base64 `encryptedShare`.
    #[error("the node's answer holds no base64 encryptedShare: {0}")]
    MalformedShareAnswer(String),
    /// The encryption key file holds no RSA private key (it may be the member's signing key, or a public key).
    #[error("member encryption key: not an RSA private key: {0}")]
    EncryptionKey(#[source] CryptoError),
    /// The key parsed but does not decrypt the share: not the private half of the key registered for the member
    /// (or the share was altered).
    #[error(
        "the member encryption key does not decrypt the recovery share of member {member_id}: it is not the \
         private key of the encryption key registered for this member ({source})"
    )]
    WrongKey {
        member_id: String,
        #[source]
        source: CryptoError,
    },
    /// The node refused the submitted share.
    #[error("the node refused the recovery share of member {member_id}: {refusal}")]
    SubmitRefused { member_id: String, refusal: NodeRefusal },
    /// The request could not be made (connection, TLS, HTTP).
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// The member id of a member certificate (PEM): hex SHA-256 of its DER, as CCF computes it.
pub fn member_id(cert_pem: &str) -> Result<String, RecoveryShareError> {
    ParsedCert::from_pem(cert_pem)
        .map(|c| c.cert_id())
        .map_err(RecoveryShareError::MemberCert)
}

/// The path of a member's encrypted share.
pub fn encrypted_share_path(member_id: &str) -> String {
    format!("/gov/recovery/encrypted-shares/{member_id}?api-version={API_VERSION}")
}

/// The path a member submits their share to.
pub fn submit_path(member_id: &str) -> String {
    format!("/gov/recovery/members/{member_id}:recover?api-version={API_VERSION}")
}

/// Step 1: the member's encrypted share, as the node holds it (the bytes the base64 in its answer stands for).
pub async fn fetch_encrypted_share(conn: &Connection, member_id: &str) -> Result<Vec<u8>, RecoveryShareError> {
    let reply = conn.get(&encrypted_share_path(member_id)).await?;
    let member_id = member_id.to_string();
    match reply.status {
        200 => {}
        404 => {
            let refusal = NodeRefusal::of(&reply);
            return Err(RecoveryShareError::NoShare { member_id, refusal });
        }
        _ => {
            let refusal = NodeRefusal::of(&reply);
            return Err(RecoveryShareError::FetchRefused { member_id, refusal });
        }
    }
    let malformed = || RecoveryShareError::MalformedShareAnswer(String::from_utf8_lossy(&reply.body).into_owned());
    let answer: serde_json::Value = serde_json::from_slice(&reply.body).map_err(|_| malformed())?;
    let text = answer["encryptedShare"].as_str().ok_or_else(malformed)?;
    B64.decode(text).map_err(|_| malformed())
}

/// Step 2: the raw share, decrypted with the member's RSA encryption private key (PEM, PKCS#8 or PKCS#1) by
/// RSA-OAEP-SHA-256.
pub fn decrypt_share(
    encryption_key_pem: &str,
    member_id: &str,
    encrypted: &[u8],
) -> Result<Vec<u8>, RecoveryShareError> {
    consort_crypto::oaep::decrypt(encryption_key_pem, encrypted).map_err(|e| match e {
        CryptoError::OaepDecrypt(_) => RecoveryShareError::WrongKey {
            member_id: member_id.to_string(),
            source: e,
        },
        other => RecoveryShareError::EncryptionKey(other),
    })
}

/// The JSON payload of a share submission: `{"share": "<base64>"}`.
pub fn share_payload(share: &[u8]) -> Vec<u8> {
    serde_json::json!({ "share": B64.encode(share) })
        .to_string()
        .into_bytes()
}

/// Step 3: the COSE Sign1 `recovery_share` request carrying `share`, signed with the member's key, created at
/// `created_at` (seconds since the epoch).
pub fn sign_share(key: &SigningKey, member_id: &str, share: &[u8], created_at: i64) -> Vec<u8> {
    consort_gov::sign_gov_request(
        key,
        member_id,
        MsgType::RecoveryShare,
        created_at,
        None,
        &share_payload(share),
    )
}

/// Step 4: submits a signed share; returns the node's 2xx answer, or its refusal as an error.
pub async fn submit_share(conn: &Connection, member_id: &str, signed: Vec<u8>) -> Result<Reply, RecoveryShareError> {
    let reply = conn
        .request_typed("POST", &submit_path(member_id), Some(("application/cose", signed)))
        .await?;
    if (200..300).contains(&reply.status) {
        Ok(reply)
    } else {
        Err(RecoveryShareError::SubmitRefused {
            member_id: member_id.to_string(),
            refusal: NodeRefusal::of(&reply),
        })
    }
}

/// Steps 1 and 2: the member's share, fetched and decrypted.
pub async fn fetch_and_decrypt(
    conn: &Connection,
    member_id: &str,
    encryption_key_pem: &str,
) -> Result<Vec<u8>, RecoveryShareError> {
    let encrypted = fetch_encrypted_share(conn, member_id).await?;
    decrypt_share(encryption_key_pem, member_id, &encrypted)
}

/// All four steps; returns the node's answer to the submission.
pub async fn recover_with_share(
    conn: &Connection,
    member_id: &str,
    signing_key: &SigningKey,
    encryption_key_pem: &str,
    created_at: i64,
) -> Result<Reply, RecoveryShareError> {
    let share = fetch_and_decrypt(conn, member_id, encryption_key_pem).await?;
    submit_share(conn, member_id, sign_share(signing_key, member_id, &share, created_at)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            txid: None,
            body: body.as_bytes().to_vec().into(),
            content_type: "application/json".into(),
            headers: vec![],
        }
    }

    #[test]
    fn a_refusal_carries_the_nodes_code_and_message() {
        let r = NodeRefusal::of(&reply(
            404,
            r#"{"error": {"code": "ResourceNotFound", "message": "Unknown path"}}"#,
        ));
        assert_eq!(r.to_string(), "HTTP 404 ResourceNotFound: Unknown path");
        let plain = NodeRefusal::of(&reply(502, "bad gateway\n"));
        assert_eq!((plain.code, plain.message.as_str()), (None, "bad gateway"));
    }

    #[test]
    fn a_share_decrypts_only_with_the_members_key() {
        let (privk, pubk) = consort_crypto::rsa_keys::generate_pem(2048).unwrap();
        let (other, _) = consort_crypto::rsa_keys::generate_pem(2048).unwrap();
        let share = [7u8; 33];
        let encrypted = consort_crypto::oaep::encrypt(&pubk, &share, &mut rand::rngs::OsRng).unwrap();
        assert_eq!(decrypt_share(&privk, "m", &encrypted).unwrap(), share);
        let wrong = decrypt_share(&other, "m", &encrypted).unwrap_err();
        assert!(matches!(wrong, RecoveryShareError::WrongKey { .. }), "{wrong}");
        let signing = SigningKey::generate(consort_crypto::Curve::P384).to_pkcs8_pem();
        let not_rsa = decrypt_share(&signing, "m", &encrypted).unwrap_err();
        assert!(matches!(not_rsa, RecoveryShareError::EncryptionKey(_)), "{not_rsa}");
    }

    #[test]
    fn the_signed_request_is_a_recovery_share_with_the_share_in_base64() {
        let key = SigningKey::generate(consort_crypto::Curve::P384);
        let cose = sign_share(&key, "abcd", &[1, 2, 3], 1_700_000_000);
        let payload = share_payload(&[1, 2, 3]);
        assert_eq!(payload, br#"{"share":"AQID"}"#);
        // The payload and the message type are in the signed bytes.
        assert!(cose.windows(payload.len()).any(|w| w == payload));
        assert!(cose.windows(14).any(|w| w == b"recovery_share"));
    }
}
