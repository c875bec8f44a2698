//! The JSON values stored in the governance tables, in CCF's field names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::InternalFault;
use crate::kv::KvRead;
use crate::{tables, GovError};

/// A member's status: Accepted on creation, Active once it has acked the state digest. Only Active members
/// may propose and vote, and the default constitution counts only them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberStatus {
    /// Created, has not acked the state digest yet: may only ack.
    Accepted,
    /// Acked: may propose, vote and withdraw.
    Active,
}

/// Value of `public:ccf.gov.members.info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Accepted or Active.
    pub status: MemberStatus,
    /// Free-form JSON given when the member was added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_data: Option<serde_json::Value>,
    /// "NonParticipant", "Participant" or "Owner" (recovery), when the member has an encryption key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_role: Option<String>,
}

/// Value of `public:ccf.gov.members.acks`: the state digest the member must sign to become Active.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberAck {
    /// Hex digest of the state the member must sign.
    #[serde(default)]
    pub state_digest: String,
    /// The member's last signed ack, base64 of the COSE Sign1 envelope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cose_sign1_req: Option<String>,
}

/// A proposal's state (CCF's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProposalState {
    /// Waiting for ballots.
    Open,
    /// The constitution's `resolve` accepted it and `apply` ran.
    Accepted,
    /// Withdrawn by its proposer.
    Withdrawn,
    /// The constitution's `resolve` rejected it.
    Rejected,
    /// `resolve` or `apply` threw or exceeded a limit.
    Failed,
    /// Closed unresolved because a new constitution was set while it was Open (its votes would change meaning).
    Dropped,
}

impl ProposalState {
    /// The state's name, as CCF's API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ProposalState::Open => "Open",
            ProposalState::Accepted => "Accepted",
            ProposalState::Withdrawn => "Withdrawn",
            ProposalState::Rejected => "Rejected",
            ProposalState::Failed => "Failed",
            ProposalState::Dropped => "Dropped",
        }
    }
}

/// Why a JS call failed: a reason and, when the engine gave one, a stack trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The error message or limit that stopped the call.
    pub reason: String,
    /// The JS stack trace, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

/// Value of `public:ccf.gov.proposals_info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProposalInfo {
    /// The member who proposed it.
    pub proposer_id: String,
    /// Where the proposal is in its lifecycle.
    pub state: ProposalState,
    /// Ballot source (a JS module exporting `vote`) per member id.
    #[serde(default)]
    pub ballots: BTreeMap<String, String>,
    /// Votes as evaluated when the proposal left Open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_votes: Option<BTreeMap<String, bool>>,
    /// Ballots that threw or exceeded a limit when the proposal left Open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vote_failures: Option<BTreeMap<String, Failure>>,
    /// Why resolve or apply failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
}

impl ProposalInfo {
    /// CCF's API representation (`GET /gov/members/proposals/{id}` and the create/ballot/withdraw responses).
    pub fn to_api_json(&self, proposal_id: &str) -> serde_json::Value {
        let mut body = serde_json::json!({
            "proposalId": proposal_id,
            "proposerId": self.proposer_id,
            "proposalState": self.state.as_str(),
            "ballotCount": self.ballots.len(),
        });
        if let Some(votes) = &self.final_votes {
            body["finalVotes"] = serde_json::json!(votes);
        }
        if let Some(failures) = &self.vote_failures {
            body["voteFailures"] = serde_json::json!(failures);
        }
        if let Some(failure) = &self.failure {
            body["failure"] = serde_json::json!(failure);
        }
        body
    }
}

/// Value of `public:ccf.gov.users.info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserInfo {
    /// Free-form JSON given when the user was added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<serde_json::Value>,
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(table: &str, key: &str, bytes: &[u8]) -> Result<T, GovError> {
    serde_json::from_slice(bytes).map_err(|e| GovError::CorruptTable {
        table: table.to_owned(),
        key: key.to_owned(),
        source: e.into(),
    })
}

pub(crate) fn to_json_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    // invariant: serialising our own plain data types (strings, string-keyed maps, enums) cannot fail.
    serde_json::to_vec(value).expect("governance values serialise to JSON")
}

/// The member's info, if it exists.
pub fn member_info(kv: &mut dyn KvRead, member_id: &str) -> Result<Option<MemberInfo>, GovError> {
    kv.read(tables::MEMBERS_INFO, member_id.as_bytes())
        .map(|b| parse_json(tables::MEMBERS_INFO, member_id, &b))
        .transpose()
}

/// The proposal's info, if it exists.
pub fn proposal_info(kv: &mut dyn KvRead, proposal_id: &str) -> Result<Option<ProposalInfo>, GovError> {
    kv.read(tables::PROPOSALS_INFO, proposal_id.as_bytes())
        .map(|b| parse_json(tables::PROPOSALS_INFO, proposal_id, &b))
        .transpose()
}

/// The current constitution's source.
pub fn constitution(kv: &mut dyn KvRead) -> Result<String, GovError> {
    let raw = kv
        .read(tables::CONSTITUTION, &tables::SINGLETON_KEY)
        .ok_or(GovError::Internal(InternalFault::NoConstitution))?;
    parse_json(tables::CONSTITUTION, "0", &raw)
}

/// True for a 64-character hex string, the form of member, user, node and proposal ids.
pub fn is_hex_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}
