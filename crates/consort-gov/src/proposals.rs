//! The proposal lifecycle of CCF's 2024-07-01 governance API: create, ballot, withdraw, resolve, apply, and
//! the reads behind the GET endpoints.
//!
//! Every writing function takes the endpoint's transaction. On `Err` the caller must drop that transaction
//! (never commit it): like CCF, a proposal whose resolve or apply fails at creation or on a ballot is not
//! recorded at all, and partial writes of a failed apply must not land.

use std::collections::BTreeMap;

use serde_json::json;

use consort_kv::Tx;

use crate::cose::{MsgType, VerifiedRequest};
use crate::error::{InputFault, InternalFault};
use crate::js::{self, Access, GovEnv, HostAction, JsCall};
use crate::kv::{entries, KvRead};
use crate::limits::{DEFAULT_RECENT_COSE_PROPOSALS_WINDOW_SIZE, MAX_BALLOT_SIZE_BYTES, MAX_PROPOSAL_SIZE_BYTES};
use crate::model::{constitution, is_hex_id, parse_json, proposal_info, to_json_bytes, Failure, ProposalInfo};
use crate::{tables, GovError, ProposalState};

/// The result of a governance write that evaluated a proposal.
#[derive(Debug, Clone, PartialEq)]
pub struct ProposalOutcome {
    /// The proposal's id (see [`proposal_id`]).
    pub proposal_id: String,
    /// The proposal's info as now written to `public:ccf.gov.proposals_info`.
    pub info: ProposalInfo,
    /// Ballots that failed in this evaluation (also when the proposal is still Open, where CCF keeps them out
    /// of the KV until the proposal closes).
    pub vote_failures: BTreeMap<String, Failure>,
    /// `ccf.node.*` actions the constitution's apply recorded: the node performs them before committing.
    pub actions: Vec<HostAction>,
    /// `console.log` output of the JS calls, for the node's log.
    pub logs: Vec<String>,
}

impl ProposalOutcome {
    /// The JSON response body (CCF's proposal format).
    pub fn to_api_json(&self) -> serde_json::Value {
        let mut body = self.info.to_api_json(&self.proposal_id);
        if self.info.vote_failures.is_none() && !self.vote_failures.is_empty() {
            body["voteFailures"] = json!(self.vote_failures);
        }
        body
    }
}

/// CCF's proposal id: hex SHA-256 of (the Merkle root at the transaction's read version ‖ SHA-256 of the
/// request's signature in its low-S form, see [`VerifiedRequest::request_digest`]). Binding to the root makes the
/// id unique per state even for identical requests.
pub fn proposal_id(state_root: &[u8; 32], request: &VerifiedRequest) -> String {
    let mut h = consort_crypto::Sha256Hasher::new();
    h.update(state_root);
    h.update(&request.request_digest());
    hex::encode(h.finish())
}

fn check_path_id(id: &str, what: &str) -> Result<(), GovError> {
    if is_hex_id(id) {
        Ok(())
    } else {
        Err(GovError::InvalidResourceName(format!(
            "'{id}' is not a valid hex-encoded {what} ID"
        )))
    }
}

fn check_type(req: &VerifiedRequest, expected: MsgType) -> Result<(), GovError> {
    if req.msg_type == expected {
        Ok(())
    } else {
        Err(GovError::WrongMessageType {
            expected: expected.as_str().into(),
            got: req.msg_type.as_str().into(),
        })
    }
}

fn record_history(tx: &mut Tx<'_>, req: &VerifiedRequest) {
    tx.put(tables::COSE_HISTORY, req.member_id.as_bytes(), &req.envelope);
}

fn put_info(tx: &mut Tx<'_>, proposal_id: &str, info: &ProposalInfo) {
    tx.put(tables::PROPOSALS_INFO, proposal_id.as_bytes(), &to_json_bytes(info));
}

fn replay_window_size(tx: &mut Tx<'_>) -> usize {
    tx.get(tables::SERVICE_CONFIG, &tables::SINGLETON_KEY)
        .and_then(|raw| serde_json::from_slice::<serde_json::Value>(&raw).ok())
        .and_then(|c| c.get("recent_cose_proposals_window_size").and_then(|v| v.as_u64()))
        .and_then(|v| usize::try_from(v).ok())
        .unwrap_or(DEFAULT_RECENT_COSE_PROPOSALS_WINDOW_SIZE)
        .max(1)
}

/// CCF's replay protection: the recent-proposal window holds `"<created_at, 10 digits>:<digest>"` keys; a key
/// already there is a replay, one older than the window's median is too old; otherwise the key is added and the
/// window trimmed to its size, oldest first.
///
/// CCF's digest is that of the signature as received, which a replayer can change without the key (s -> n - s,
/// both verify); ours is [`VerifiedRequest::signed_digest`], the digest of the signed bytes, which no re-encoding
/// of the signature or of the envelope's unsigned parts changes.
fn check_and_record_submission(tx: &mut Tx<'_>, req: &VerifiedRequest, proposal_id: &str) -> Result<(), GovError> {
    let created_at = format!("{:010}", req.created_at);
    let key = format!("{created_at}:{}", hex::encode(req.signed_digest));
    if let Some(existing) = tx.get(tables::COSE_RECENT_PROPOSALS, key.as_bytes()) {
        let existing: String = serde_json::from_slice(&existing).unwrap_or_default();
        return Err(GovError::ProposalReplay(existing));
    }
    let keys: Vec<Vec<u8>> = entries(tx, tables::COSE_RECENT_PROPOSALS)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    if let Some(median) = keys.get(keys.len() / 2) {
        let median_created_at = median.split(|b| *b == b':').next().unwrap_or_default();
        if created_at.as_bytes() < median_created_at {
            return Err(GovError::ProposalTooOld(
                String::from_utf8_lossy(median_created_at).into_owned(),
            ));
        }
    }
    tx.put(
        tables::COSE_RECENT_PROPOSALS,
        key.as_bytes(),
        &to_json_bytes(&proposal_id),
    );
    let window = replay_window_size(tx);
    let excess = (keys.len() + 1).saturating_sub(window);
    for old in keys.iter().take(excess) {
        tx.remove(tables::COSE_RECENT_PROPOSALS, old);
    }
    Ok(())
}

fn proposal_text(bytes: &[u8]) -> Result<&str, GovError> {
    std::str::from_utf8(bytes).map_err(|e| GovError::InvalidInput(InputFault::ProposalNotUtf8(e)))
}

/// `POST /gov/members/proposals:create`. `request` must come from [`crate::verify_gov_request`] with
/// [`MsgType::Proposal`]; `state_root` is the Merkle root at the transaction's read version (see
/// [`proposal_id`]). Validates the proposal with the constitution, records it (with replay protection), then
/// resolves it at once, so a one-member consortium can act alone; an Accepted proposal is applied in the same
/// transaction.
pub fn create_proposal(
    tx: &mut Tx<'_>,
    request: &VerifiedRequest,
    state_root: &[u8; 32],
    env: &GovEnv<'_>,
) -> Result<ProposalOutcome, GovError> {
    check_type(request, MsgType::Proposal)?;
    if request.payload.len() > MAX_PROPOSAL_SIZE_BYTES {
        return Err(GovError::TooLarge {
            what: "proposal",
            size: request.payload.len(),
            limit: MAX_PROPOSAL_SIZE_BYTES,
        });
    }
    let proposal = proposal_text(&request.payload)?;
    let id = proposal_id(state_root, request);
    check_and_record_submission(tx, request, &id)?;
    let constitution = constitution(tx)?;

    let mut logs = Vec::new();
    let validation = js::run(
        tx,
        &JsCall {
            source: &constitution,
            module_name: "constitution",
            function: "validate",
            args: json!([proposal]),
            access: Access::ReadOnly,
        },
        env,
    )
    .map_err(|f| {
        GovError::ProposalFailed(format!(
            "Failed to execute validation: {} {}",
            f.reason,
            f.trace.unwrap_or_default()
        ))
    })?;
    logs.extend(validation.logs);
    let Some(serde_json::Value::Object(result)) = validation.result else {
        return Err(GovError::ProposalFailed("Validation failed to return an object".into()));
    };
    if result.get("valid") != Some(&serde_json::Value::Bool(true)) {
        let description = result.get("description").and_then(|d| d.as_str()).unwrap_or_default();
        return Err(GovError::ProposalFailedToValidate(description.into()));
    }

    if tx.has(tables::PROPOSALS, id.as_bytes()) {
        return Err(GovError::Internal(InternalFault::ProposalIdCollision));
    }
    tx.put(tables::PROPOSALS, id.as_bytes(), &request.payload);
    let mut info = ProposalInfo {
        proposer_id: request.member_id.clone(),
        state: ProposalState::Open,
        ballots: BTreeMap::new(),
        final_votes: None,
        vote_failures: None,
        failure: None,
    };
    put_info(tx, &id, &info);
    record_history(tx, request);

    let mut outcome = resolve(tx, &id, proposal, &mut info, &constitution, env)?;
    logs.append(&mut outcome.logs);
    outcome.logs = logs;
    Ok(outcome)
}

/// `POST /gov/members/proposals/{proposalId}/ballots/{memberId}:submit`. `request` must come from
/// [`crate::verify_gov_request`] with [`MsgType::Ballot`] and the URL's proposal id; its payload is
/// `{"ballot": "<JS module exporting vote(proposal, proposerId)>"}`. Re-evaluates every ballot and resolves.
/// Submitting the same ballot again answers the current state without writing.
pub fn submit_ballot(
    tx: &mut Tx<'_>,
    request: &VerifiedRequest,
    proposal_id: &str,
    member_id: &str,
    env: &GovEnv<'_>,
) -> Result<ProposalOutcome, GovError> {
    check_type(request, MsgType::Ballot)?;
    check_path_id(proposal_id, "proposal")?;
    check_path_id(member_id, "member")?;
    if request.proposal_id.as_deref() != Some(proposal_id) {
        return Err(GovError::InvalidResourceName(
            "authenticated proposal id does not match URL".into(),
        ));
    }
    if request.member_id != member_id {
        return Err(GovError::InvalidResourceName(
            "authenticated member id does not match URL".into(),
        ));
    }
    let mut info = proposal_info(tx, proposal_id)?.ok_or_else(|| GovError::ProposalNotFound(proposal_id.into()))?;
    if info.state != ProposalState::Open {
        return Err(GovError::ProposalNotOpen {
            id: proposal_id.into(),
            state: info.state.as_str().into(),
        });
    }
    let proposal = tx
        .get(tables::PROPOSALS, proposal_id.as_bytes())
        .ok_or_else(|| GovError::ProposalNotFound(proposal_id.into()))?;
    let proposal = proposal_text(&proposal)?.to_owned();
    let ballot = serde_json::from_slice::<serde_json::Value>(&request.payload)
        .ok()
        .and_then(|v| v.get("ballot").and_then(|b| b.as_str()).map(str::to_owned))
        .ok_or(GovError::InvalidInput(InputFault::MissingField("ballot")))?;
    if ballot.len() > MAX_BALLOT_SIZE_BYTES {
        return Err(GovError::TooLarge {
            what: "ballot",
            size: ballot.len(),
            limit: MAX_BALLOT_SIZE_BYTES,
        });
    }
    let constitution = constitution(tx)?;
    if let Some(existing) = info.ballots.get(member_id) {
        if *existing == ballot {
            return Ok(ProposalOutcome {
                proposal_id: proposal_id.into(),
                info,
                vote_failures: BTreeMap::new(),
                actions: Vec::new(),
                logs: Vec::new(),
            });
        }
        return Err(GovError::VoteAlreadyExists {
            member_id: member_id.into(),
            proposal_id: proposal_id.into(),
        });
    }
    info.ballots.insert(member_id.into(), ballot);
    record_history(tx, request);
    resolve(tx, proposal_id, &proposal, &mut info, &constitution, env)
}

/// `POST /gov/members/proposals/{proposalId}:withdraw`. `Ok(None)` when the proposal does not exist (CCF
/// answers 204: withdrawal is idempotent); only the proposer may withdraw, and only an Open (or already
/// Withdrawn) proposal.
pub fn withdraw_proposal(
    tx: &mut Tx<'_>,
    request: &VerifiedRequest,
    proposal_id: &str,
) -> Result<Option<ProposalOutcome>, GovError> {
    check_type(request, MsgType::Withdrawal)?;
    check_path_id(proposal_id, "proposal")?;
    if request.proposal_id.as_deref() != Some(proposal_id) {
        return Err(GovError::InvalidResourceName(
            "authenticated proposal id does not match URL".into(),
        ));
    }
    let Some(mut info) = proposal_info(tx, proposal_id)? else {
        return Ok(None);
    };
    if request.member_id != info.proposer_id {
        return Err(GovError::NotProposer {
            proposal_id: proposal_id.into(),
            proposer_id: info.proposer_id,
            caller_id: request.member_id.clone(),
        });
    }
    match info.state {
        ProposalState::Open => {
            info.state = ProposalState::Withdrawn;
            put_info(tx, proposal_id, &info);
            remove_other_closed_proposals(tx, proposal_id);
            record_history(tx, request);
        }
        ProposalState::Withdrawn => {}
        other => {
            return Err(GovError::ProposalNotOpen {
                id: proposal_id.into(),
                state: other.as_str().into(),
            })
        }
    }
    Ok(Some(ProposalOutcome {
        proposal_id: proposal_id.into(),
        info,
        vote_failures: BTreeMap::new(),
        actions: Vec::new(),
        logs: Vec::new(),
    }))
}

/// When a proposal closes, CCF forgets every other closed proposal: only Open ones and the latest closed one
/// stay in the tables.
fn remove_other_closed_proposals(tx: &mut Tx<'_>, keep: &str) {
    let mut remove = Vec::new();
    for (k, v) in entries(tx, tables::PROPOSALS_INFO) {
        let open = serde_json::from_slice::<ProposalInfo>(&v).is_ok_and(|i| i.state == ProposalState::Open);
        if !open && k != keep.as_bytes() {
            remove.push(k);
        }
    }
    for k in remove {
        tx.remove(tables::PROPOSALS, &k);
        tx.remove(tables::PROPOSALS_INFO, &k);
    }
}

/// Runs every member's ballot (`vote`) on the proposal: the votes cast, and the ballots that failed.
fn run_ballots(
    tx: &mut Tx<'_>,
    proposal_id: &str,
    proposal: &str,
    info: &ProposalInfo,
    env: &GovEnv<'_>,
    logs: &mut Vec<String>,
) -> (BTreeMap<String, bool>, BTreeMap<String, Failure>) {
    let mut votes = BTreeMap::new();
    let mut vote_failures = BTreeMap::new();
    for (member, ballot) in &info.ballots {
        let module_name = format!("{}[{proposal_id}].ballots[{member}]", tables::PROPOSALS_INFO);
        let call = JsCall {
            source: ballot,
            module_name: &module_name,
            function: "vote",
            args: json!([proposal, info.proposer_id]),
            access: Access::ReadOnly,
        };
        match js::run(tx, &call, env) {
            Ok(out) => {
                logs.extend(out.logs);
                votes.insert(member.clone(), out.result == Some(serde_json::Value::Bool(true)));
            }
            Err(f) => {
                vote_failures.insert(member.clone(), f);
            }
        }
    }
    (votes, vote_failures)
}

/// Runs the constitution's `resolve` over the votes and sets `info.state` (and `info.failure` when it fails or
/// returns no valid state); returns the call's log lines.
fn run_resolve(
    tx: &mut Tx<'_>,
    proposal_id: &str,
    proposal: &str,
    info: &mut ProposalInfo,
    votes: &BTreeMap<String, bool>,
    constitution: &str,
    env: &GovEnv<'_>,
) -> Vec<String> {
    let mut logs = Vec::new();
    let votes_arg: Vec<serde_json::Value> = votes.iter().map(|(m, v)| json!({"member_id": m, "vote": v})).collect();
    let call = JsCall {
        source: constitution,
        module_name: "constitution",
        function: "resolve",
        args: json!([proposal, info.proposer_id, votes_arg, proposal_id]),
        access: Access::ReadOnly,
    };
    match js::run(tx, &call, env) {
        Err(f) => {
            info.state = ProposalState::Failed;
            info.failure = Some(Failure {
                reason: format!("Failed to resolve(): {}", f.reason),
                trace: f.trace,
            });
        }
        Ok(out) => {
            logs.extend(out.logs);
            let status = out.result.as_ref().and_then(|v| v.as_str()).unwrap_or_default();
            info.state = match status {
                "Open" => ProposalState::Open,
                "Accepted" => ProposalState::Accepted,
                "Rejected" => ProposalState::Rejected,
                _ => {
                    info.failure = Some(Failure {
                        reason: format!("resolve() returned invalid status value: {}", json!(out.result)),
                        trace: None,
                    });
                    ProposalState::Failed
                }
            };
        }
    }
    logs
}

/// Runs every ballot, then the constitution's resolve and, if Accepted, apply. Writes the info. A Failed
/// outcome is returned as `Err(GovError::ProposalFailed)` (the caller drops the transaction).
fn resolve(
    tx: &mut Tx<'_>,
    proposal_id: &str,
    proposal: &str,
    info: &mut ProposalInfo,
    constitution: &str,
    env: &GovEnv<'_>,
) -> Result<ProposalOutcome, GovError> {
    let mut logs = Vec::new();
    let (votes, vote_failures) = run_ballots(tx, proposal_id, proposal, info, env, &mut logs);
    logs.extend(run_resolve(tx, proposal_id, proposal, info, &votes, constitution, env));
    put_info(tx, proposal_id, info);

    let mut actions = Vec::new();
    if info.state != ProposalState::Open {
        remove_other_closed_proposals(tx, proposal_id);
        info.final_votes = Some(votes);
        info.vote_failures = Some(vote_failures.clone());
        put_info(tx, proposal_id, info);
        if info.state == ProposalState::Accepted {
            let call = JsCall {
                source: constitution,
                module_name: "constitution",
                function: "apply",
                args: json!([proposal, proposal_id]),
                access: Access::Apply,
            };
            // The member-certificate invariant holds whatever the constitution wrote.
            let applied = js::run(tx, &call, env).and_then(|out| match crate::members::check_member_certs(tx) {
                Ok(()) => Ok(out),
                Err(fault) => Err(Failure {
                    reason: fault.to_string(),
                    trace: None,
                }),
            });
            match applied {
                Ok(out) => {
                    logs.extend(out.logs);
                    actions = out.actions;
                }
                Err(f) => {
                    info.state = ProposalState::Failed;
                    info.failure = Some(Failure {
                        reason: format!("Failed to apply(): {}", f.reason),
                        trace: f.trace,
                    });
                    put_info(tx, proposal_id, info);
                }
            }
        }
    }
    if info.state == ProposalState::Failed {
        let reason = info.failure.as_ref().map_or("proposal failed", |f| f.reason.as_str());
        return Err(GovError::ProposalFailed(reason.into()));
    }
    Ok(ProposalOutcome {
        proposal_id: proposal_id.into(),
        info: info.clone(),
        vote_failures,
        actions,
        logs,
    })
}

/// `GET /gov/members/proposals/{proposalId}`: the info (answer with [`ProposalInfo::to_api_json`]).
pub fn get_proposal(kv: &mut dyn KvRead, proposal_id: &str) -> Result<ProposalInfo, GovError> {
    check_path_id(proposal_id, "proposal")?;
    proposal_info(kv, proposal_id)?.ok_or_else(|| GovError::ProposalNotFound(proposal_id.into()))
}

/// `GET /gov/members/proposals/{proposalId}/actions`: the raw proposal body (answer it as
/// `application/json`).
pub fn get_proposal_actions(kv: &mut dyn KvRead, proposal_id: &str) -> Result<Vec<u8>, GovError> {
    check_path_id(proposal_id, "proposal")?;
    kv.read(tables::PROPOSALS, proposal_id.as_bytes())
        .ok_or_else(|| GovError::ProposalNotFound(proposal_id.into()))
}

/// `GET /gov/members/proposals/{proposalId}/ballots/{memberId}`: the ballot source (answer it as
/// `text/javascript`).
pub fn get_ballot(kv: &mut dyn KvRead, proposal_id: &str, member_id: &str) -> Result<String, GovError> {
    check_path_id(proposal_id, "proposal")?;
    check_path_id(member_id, "member")?;
    let info = proposal_info(kv, proposal_id)?.ok_or_else(|| GovError::ProposalNotFound(proposal_id.into()))?;
    info.ballots
        .get(member_id)
        .cloned()
        .ok_or_else(|| GovError::VoteNotFound {
            member_id: member_id.into(),
            proposal_id: proposal_id.into(),
        })
}

/// All proposals in the tables, by id.
pub fn list_proposals(kv: &mut dyn KvRead) -> Result<Vec<(String, ProposalInfo)>, GovError> {
    entries(kv, tables::PROPOSALS_INFO)
        .into_iter()
        .map(|(k, v)| {
            let id = String::from_utf8_lossy(&k).into_owned();
            let info = parse_json(tables::PROPOSALS_INFO, &id, &v)?;
            Ok((id, info))
        })
        .collect()
}

/// `GET /gov/members/proposals`: `{"value": [proposal, ...]}` in CCF's format.
pub fn list_proposals_json(kv: &mut dyn KvRead) -> Result<serde_json::Value, GovError> {
    let value: Vec<serde_json::Value> = list_proposals(kv)?
        .iter()
        .map(|(id, info)| info.to_api_json(id))
        .collect();
    Ok(json!({ "value": value }))
}
