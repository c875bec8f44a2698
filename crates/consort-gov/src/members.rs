//! Member activation (Accepted → Active by acking the state digest), genesis, and the service-state helpers
//! the node calls when it performs a constitution's host actions.

use serde::{Deserialize, Serialize};

use consort_crypto::ParsedCert;
use consort_kv::Tx;

use crate::cose::{MsgType, VerifiedRequest};
use crate::error::{InputFault, InternalFault, MemberCertFault};
use crate::kv::KvRead;
use crate::model::{is_hex_id, member_info, parse_json, to_json_bytes, MemberAck, MemberInfo, MemberStatus, UserInfo};
use crate::{tables, GovError};

/// Body of the state-digest endpoints: `{"memberId", "stateDigest"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateDigest {
    /// The member the digest is for.
    #[serde(rename = "memberId")]
    pub member_id: String,
    /// Hex digest of the state the member acks.
    #[serde(rename = "stateDigest")]
    pub state_digest: String,
}

fn check_member_path(request: &VerifiedRequest, member_id: &str) -> Result<(), GovError> {
    if !is_hex_id(member_id) {
        return Err(GovError::InvalidResourceName(format!(
            "'{member_id}' is not a valid hex-encoded member ID"
        )));
    }
    if request.member_id != member_id {
        return Err(GovError::InvalidResourceName(format!(
            "member ID from path parameter ({member_id}) does not match member ID from body signature ({})",
            request.member_id
        )));
    }
    Ok(())
}

fn read_ack(kv: &mut dyn KvRead, member_id: &str) -> Result<Option<MemberAck>, GovError> {
    kv.read(tables::MEMBERS_ACKS, member_id.as_bytes())
        .map(|raw| parse_json(tables::MEMBERS_ACKS, member_id, &raw))
        .transpose()
}

/// `GET /gov/members/state-digests/{memberId}`.
pub fn get_state_digest(kv: &mut dyn KvRead, member_id: &str) -> Result<StateDigest, GovError> {
    let ack = read_ack(kv, member_id)?.ok_or_else(|| GovError::AckNotFound(member_id.into()))?;
    Ok(StateDigest {
        member_id: member_id.into(),
        state_digest: ack.state_digest,
    })
}

/// `POST /gov/members/state-digests/{memberId}:update` (message type `state_digest`): sets the digest the
/// member must sign to the current Merkle root (hex) of the latest signature, which the node passes as
/// `current_root_hex` (`None` before the first signature: CCF answers 500 "try again soon").
pub fn update_state_digest(
    tx: &mut Tx<'_>,
    request: &VerifiedRequest,
    member_id: &str,
    current_root_hex: Option<&str>,
) -> Result<StateDigest, GovError> {
    if request.msg_type != MsgType::StateDigest {
        return Err(GovError::WrongMessageType {
            expected: MsgType::StateDigest.as_str().into(),
            got: request.msg_type.as_str().into(),
        });
    }
    check_member_path(request, member_id)?;
    let root = current_root_hex.ok_or(GovError::Internal(InternalFault::NoSignatureYet))?;
    let mut ack = read_ack(tx, member_id)?.unwrap_or_default();
    ack.state_digest = root.into();
    tx.put(tables::MEMBERS_ACKS, member_id.as_bytes(), &to_json_bytes(&ack));
    Ok(StateDigest {
        member_id: member_id.into(),
        state_digest: ack.state_digest,
    })
}

/// `POST /gov/members/state-digests/{memberId}:ack` (message type `ack`, payload `{"stateDigest": "..."}`):
/// checks the signed digest against the expected one, stores the signed ack and makes the member Active.
/// Returns whether the member became Active now; the node then issues it a recovery share if it is a
/// recovery member of an Open service (answer 204).
pub fn ack_state_digest(tx: &mut Tx<'_>, request: &VerifiedRequest, member_id: &str) -> Result<bool, GovError> {
    use base64::Engine;
    if request.msg_type != MsgType::Ack {
        return Err(GovError::WrongMessageType {
            expected: MsgType::Ack.as_str().into(),
            got: request.msg_type.as_str().into(),
        });
    }
    check_member_path(request, member_id)?;
    let mut ack = read_ack(tx, member_id)?.ok_or_else(|| GovError::AckNotFound(member_id.into()))?;
    let received = serde_json::from_slice::<serde_json::Value>(&request.payload)
        .ok()
        .and_then(|v| v.get("stateDigest").and_then(|d| d.as_str()).map(str::to_owned))
        .ok_or(GovError::InvalidInput(InputFault::MissingField("stateDigest")))?;
    if received != ack.state_digest {
        return Err(GovError::StateDigestMismatch {
            expected: ack.state_digest,
            received,
        });
    }
    ack.cose_sign1_req = Some(base64::engine::general_purpose::STANDARD.encode(&request.envelope));
    tx.put(tables::MEMBERS_ACKS, member_id.as_bytes(), &to_json_bytes(&ack));
    activate_member(tx, member_id)
}

/// Makes a member Active; returns whether it was not Active before.
pub fn activate_member(tx: &mut Tx<'_>, member_id: &str) -> Result<bool, GovError> {
    let mut info = member_info(tx, member_id)?.ok_or_else(|| GovError::UnknownMember(member_id.into()))?;
    if info.status == MemberStatus::Active {
        return Ok(false);
    }
    info.status = MemberStatus::Active;
    tx.put(tables::MEMBERS_INFO, member_id.as_bytes(), &to_json_bytes(&info));
    Ok(true)
}

/// Ids of the Active members, in order.
pub fn active_members(kv: &mut dyn KvRead) -> Result<Vec<String>, GovError> {
    let mut out = Vec::new();
    for (k, v) in crate::kv::entries(kv, tables::MEMBERS_INFO) {
        let id = String::from_utf8_lossy(&k).into_owned();
        let info: MemberInfo = parse_json(tables::MEMBERS_INFO, &id, &v)?;
        if info.status == MemberStatus::Active {
            out.push(id);
        }
    }
    Ok(out)
}

/// A member to create at genesis.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberSpec {
    /// The member's certificate (PEM); its id is hex SHA-256 of the DER.
    pub cert_pem: String,
    /// RSA public key (PEM) for recovery shares; makes the member a recovery member.
    pub encryption_public_key_pem: Option<String>,
    /// Free-form JSON stored in `public:ccf.gov.members.info`.
    pub member_data: Option<serde_json::Value>,
    /// "Participant" (default for members with an encryption key) or "Owner".
    pub recovery_role: Option<String>,
}

/// A user to create at genesis.
#[derive(Debug, Clone, PartialEq)]
pub struct UserSpec {
    /// The user's certificate (PEM); its id is hex SHA-256 of the DER.
    pub cert_pem: String,
    /// Free-form JSON stored in `public:ccf.gov.users.info`.
    pub user_data: Option<serde_json::Value>,
}

/// Writes the initial governance state in the genesis transaction: the members (Active: the genesis
/// consortium is trusted by construction), their encryption keys, the users, the constitution, and a
/// service configuration with `recovery_threshold` if none exists. Returns the member ids in order.
pub fn genesis(
    tx: &mut Tx<'_>,
    members: &[MemberSpec],
    users: &[UserSpec],
    constitution: &str,
    recovery_threshold: u32,
) -> Result<Vec<String>, GovError> {
    if members.is_empty() {
        return Err(GovError::InvalidInput(InputFault::NoGenesisMember));
    }
    let mut ids = Vec::new();
    for m in members {
        let cert = ParsedCert::from_pem(&m.cert_pem).map_err(|source| {
            GovError::InvalidInput(InputFault::Certificate {
                whose: "member",
                source,
            })
        })?;
        let id = cert.cert_id();
        tx.put(tables::MEMBERS_CERTS, id.as_bytes(), m.cert_pem.as_bytes());
        let recovery_role = match &m.encryption_public_key_pem {
            Some(key) => {
                tx.put(tables::MEMBERS_ENCRYPTION_PUBLIC_KEYS, id.as_bytes(), key.as_bytes());
                Some(m.recovery_role.clone().unwrap_or_else(|| "Participant".into()))
            }
            None => None,
        };
        let info = MemberInfo {
            status: MemberStatus::Active,
            member_data: m.member_data.clone(),
            recovery_role,
        };
        tx.put(tables::MEMBERS_INFO, id.as_bytes(), &to_json_bytes(&info));
        tx.put(
            tables::MEMBERS_ACKS,
            id.as_bytes(),
            &to_json_bytes(&MemberAck::default()),
        );
        ids.push(id);
    }
    for u in users {
        let cert = ParsedCert::from_pem(&u.cert_pem)
            .map_err(|source| GovError::InvalidInput(InputFault::Certificate { whose: "user", source }))?;
        let id = cert.cert_id();
        tx.put(tables::USERS_CERTS, id.as_bytes(), u.cert_pem.as_bytes());
        if u.user_data.is_some() {
            let info = UserInfo {
                user_data: u.user_data.clone(),
            };
            tx.put(tables::USERS_INFO, id.as_bytes(), &to_json_bytes(&info));
        }
    }
    tx.put(
        tables::CONSTITUTION,
        &tables::SINGLETON_KEY,
        &to_json_bytes(&constitution),
    );
    if !tx.has(tables::SERVICE_CONFIG, &tables::SINGLETON_KEY) {
        let config = serde_json::json!({
            "recovery_threshold": recovery_threshold,
            "reconfiguration_type": "OneTransaction",
            "recent_cose_proposals_window_size": crate::limits::DEFAULT_RECENT_COSE_PROPOSALS_WINDOW_SIZE,
        });
        tx.put(tables::SERVICE_CONFIG, &tables::SINGLETON_KEY, &to_json_bytes(&config));
    }
    check_member_certs(tx).map_err(|e| GovError::InvalidInput(e.into()))?;
    Ok(ids)
}

/// Checks every member certificate `tx` has written: it parses, its key (the member id) is SHA-256 of its DER as
/// parsed, and no other member holds a certificate for the same public key. Run after genesis and after every
/// proposal's apply, whatever the constitution: a key that signs for two member ids would vote twice, and a
/// certificate re-encoded (other PEM wrapping, whitespace, line endings, or a DER variant a lenient parser
/// accepts) or re-issued for the same key is how such a twin would be added.
pub(crate) fn check_member_certs(tx: &mut Tx<'_>) -> Result<(), MemberCertFault> {
    let written: Vec<(Vec<u8>, Vec<u8>)> = tx
        .write_set()
        .maps
        .get(tables::MEMBERS_CERTS)
        .map(|m| {
            m.writes
                .iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_vec(), v.to_vec())))
                .collect()
        })
        .unwrap_or_default();
    for (id, pem) in written {
        let id = String::from_utf8_lossy(&id).into_owned();
        let text = std::str::from_utf8(&pem).map_err(|source| MemberCertFault::NotUtf8 {
            member_id: id.clone(),
            source,
        })?;
        let cert = ParsedCert::from_pem(text).map_err(|source| MemberCertFault::Unparsable {
            member_id: id.clone(),
            source,
        })?;
        if cert.cert_id() != id {
            return Err(MemberCertFault::NotCertId {
                member_id: id,
                cert_id: cert.cert_id(),
            });
        }
        let key = cert.key_id();
        let mut twin = None;
        tx.foreach(tables::MEMBERS_CERTS, |other_id, other_pem| {
            let same_key = other_id != id.as_bytes()
                && std::str::from_utf8(other_pem)
                    .ok()
                    .and_then(|text| ParsedCert::from_pem(text).ok())
                    .is_some_and(|other| other.key_id() == key);
            if same_key {
                twin = Some(String::from_utf8_lossy(other_id).into_owned());
            }
            !same_key
        });
        if let Some(other) = twin {
            return Err(MemberCertFault::SharedKey { member_id: id, other });
        }
    }
    Ok(())
}

/// Performs [`crate::HostAction::TransitionServiceToOpen`] for a service that is not recovering: sets the
/// status in `public:ccf.gov.service.info` to "Open", keeping the other fields.
pub fn open_service(tx: &mut Tx<'_>) -> Result<(), GovError> {
    let raw = tx
        .get(tables::SERVICE_INFO, &tables::SINGLETON_KEY)
        .ok_or(GovError::Internal(InternalFault::NoServiceInfo))?;
    let mut info: serde_json::Value = parse_json(tables::SERVICE_INFO, "0", &raw)?;
    let serde_json::Value::Object(fields) = &mut info else {
        return Err(GovError::Internal(InternalFault::ServiceInfoNotObject));
    };
    fields.insert("status".into(), serde_json::Value::String("Open".into()));
    tx.put(tables::SERVICE_INFO, &tables::SINGLETON_KEY, &to_json_bytes(&info));
    Ok(())
}
