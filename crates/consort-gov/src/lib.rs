//! Consort's governance core: members, users and nodes tables, signed governance requests, proposals and
//! ballots, and the JavaScript constitution runtime (QuickJS via rquickjs) with heap, stack and time limits.
//!
//! This crate is sans-IO: no sockets, files, clocks or threads. The node passes in the transaction, the
//! request bytes, the time (`now_seconds`) and the Merkle root; it gets back typed results, typed errors
//! ([`GovError::code`], [`GovError::http_status`], [`GovError::to_json`]) and the host actions to perform.
//!
//! # Handling the `/gov` endpoints (api-version 2024-07-01)
//!
//! Signed endpoints take a `Content-Type: application/cose` body. For each, in one [`consort_kv::Tx`]:
//! 1. `let req = verify_gov_request(&mut tx, body, MsgType::X, path_proposal_id, now_seconds)?;`
//! 2. call the operation below with `&mut tx` and `&req`;
//! 3. on `Ok`, perform the outcome's [`HostAction`]s (they may write to `tx`), commit `tx` and answer;
//!    on `Err(e)`, **drop `tx`** and answer `e.http_status()` with `e.to_json()`.
//!
//! | endpoint | type | call | answer |
//! |---|---|---|---|
//! | `POST /gov/members/proposals:create` | `Proposal` | [`create_proposal`]`(tx, &req, &merkle_root_at_read, &env)` | 200 [`ProposalOutcome::to_api_json`] |
//! | `POST /gov/members/proposals/{id}/ballots/{memberId}:submit` | `Ballot` | [`submit_ballot`]`(tx, &req, id, member_id, &env)` | 200 `to_api_json` |
//! | `POST /gov/members/proposals/{id}:withdraw` | `Withdrawal` | [`withdraw_proposal`]`(tx, &req, id)` | 200 `to_api_json`, or 204 on `Ok(None)` |
//! | `POST /gov/members/state-digests/{memberId}:update` | `StateDigest` | [`update_state_digest`]`(tx, &req, member_id, Some(root_hex))` | 200 [`StateDigest`] JSON |
//! | `POST /gov/members/state-digests/{memberId}:ack` | `Ack` | [`ack_state_digest`]`(tx, &req, member_id)` | 204 |
//! | `GET /gov/members/state-digests/{memberId}` | — | [`get_state_digest`]`(kv, member_id)` | 200 JSON |
//! | `GET /gov/members/proposals` | — | [`list_proposals_json`]`(kv)` | 200 |
//! | `GET /gov/members/proposals/{id}` | — | [`get_proposal`]`(kv, id)?.to_api_json(id)` | 200 |
//! | `GET /gov/members/proposals/{id}/actions` | — | [`get_proposal_actions`]`(kv, id)` | 200 raw JSON body |
//! | `GET /gov/members/proposals/{id}/ballots/{memberId}` | — | [`get_ballot`]`(kv, id, member_id)` | 200 `text/javascript` |
//!
//! Reads take any [`KvRead`] (a [`consort_kv::ReadTx`] or a `Tx`). `GET /gov/service/constitution` is
//! [`constitution`]; members, users and nodes are plain reads of the tables in [`tables`].
//!
//! # Host actions
//!
//! The constitution's `apply` reaches the node only through recorded [`HostAction`]s (`ccf.node.*`):
//! `TransitionServiceToOpen` (without recovery: [`open_service`]), `EndorseNodeCertificate` (sign the node's
//! certificate into `public:ccf.gov.nodes.endorsed_certificates`), `TriggerSnapshot` (the constitution's
//! `trigger_snapshot` action: the primary snapshots at its next signature) and `TriggerLedgerChunk`
//! (`trigger_ledger_chunk`: the current ledger chunk ends at the next signature). `TriggerLedgerRekey` and
//! `TriggerRecoverySharesRefresh` are recorded too; the node logs them and does nothing else until ledger
//! rekeying and recovery shares exist. Attestation actions (`add_node_code`, `add_snp_measurement`,
//! `add_snp_host_data`, `add_snp_tcb_version` (by CPUID or product name; CCF's `set_snp_minimum_tcb_version` and
//! `set_snp_minimum_tcb_version_hex` too) and their removals) only write their tables here, after checking
//! their shape; the node's join path reads them.
//!
//! # The application platform's tables
//!
//! `set_js_app`, `remove_js_app`, `set_js_runtime_options`, `set_jwt_issuer`, `remove_jwt_issuer`,
//! `set_jwt_public_signing_keys`, `set_ca_cert_bundle`, `remove_ca_cert_bundle` and `set_evm_config` write the
//! tables listed in [`tables`] (`MODULES`, `ENDPOINTS`, `JS_RUNTIME_OPTIONS`, `JWT_ISSUERS`,
//! `JWT_PUBLIC_SIGNING_KEYS_METADATA`, `CA_CERT_BUNDLES`, `EVM_CONFIG`). The checks live in the host
//! (`ccf.node.setJsApp`, `ccf.setJwtPublicSigningKeys`), so CCF's own constitution gets them too: a bad bundle or key set fails the proposal and writes nothing. CCF's
//! constitution stores some rows in CCF's forms (an endpoint key `"GET /path"`, a CA bundle as a JSON string);
//! [`endpoint_from_key`], [`ca_cert_bundle_pem`] and [`jwt_issuer`] read either form.
//!
//! Certificates signed with the service key (`ccf.network.generateEndorsedCertificate`,
//! `generateNetworkCertificate`) come from the node through [`GovEnv::certificates`] ([`CertificateIssuer`]);
//! the JS call is re-run with the answer, as it is when it first touches a map.
//!
//! Whatever the constitution, a proposal whose apply leaves a member certificate under an id that is not SHA-256
//! of its DER, or a second member id for one public key, fails (`members::check_member_certs`).
//!
//! # Determinism
//!
//! Every JS call runs in a fresh QuickJS runtime without `Date`, `performance` or `WeakRef`, with a seeded
//! `Math.random` and a time budget counted in interrupt polls ([`limits::JsLimits`]), so the same inputs give
//! the same outputs and KV writes on every node. A call that loops or allocates without bound fails with a
//! clear reason ([`TIMEOUT_REASON`], "out of memory") and leaves the host healthy.
//!
//! # Ids
//!
//! Member and user ids are hex SHA-256 of the certificate DER. A proposal id is hex SHA-256 of (the Merkle
//! root at the transaction's read version ‖ SHA-256 of the request signature), as CCF computes it, except that
//! the signature is taken in its low-S form so both valid forms of one signature name one proposal
//! ([`proposal_id`]).
//!
//! # Replay protection
//!
//! A proposal request is recorded in the recent-proposal window under its `created_at` and the digest of the
//! bytes the member signed ([`VerifiedRequest::signed_digest`]), not of the signature: ECDSA signatures are
//! malleable (if (r, s) verifies, so does (r, n - s)) and CCF's own signer emits either form, so a key over the
//! signature's bytes would let anybody replay a recorded request under its twin signature.
#![forbid(unsafe_code)]
#![warn(unreachable_pub, missing_docs)]

mod app_tables;
pub mod cose;
mod error;
mod js;
pub mod kv;
pub mod limits;
mod members;
mod model;
mod proposals;
pub mod tables;

pub use app_tables::{ca_cert_bundle_pem, endpoint_from_key, jwt_issuer, JwtIssuer};

pub use cose::{sign_gov_request, verify_gov_request, MsgType, VerifiedRequest};
pub use error::{
    AlgorithmFault, CoseFault, CreatedAtFault, GovError, HeaderFault, InputFault, InternalFault, MemberCertFault,
    SignatureRejected,
};
pub use js::{
    endpoint_key, stored_module_name, CertificateIssuer, GovEnv, HostAction, JwtSigningKey, AUTHN_POLICIES,
    TIMEOUT_REASON,
};
pub use kv::KvRead;
pub use members::{
    ack_state_digest, activate_member, active_members, genesis, get_state_digest, open_service, update_state_digest,
    MemberSpec, StateDigest, UserSpec,
};
pub use model::{
    constitution, is_hex_id, member_info, proposal_info, Failure, MemberAck, MemberInfo, MemberStatus, ProposalInfo,
    ProposalState, UserInfo,
};
pub use proposals::{
    create_proposal, get_ballot, get_proposal, get_proposal_actions, list_proposals, list_proposals_json, proposal_id,
    submit_ballot, withdraw_proposal, ProposalOutcome,
};

/// Consort's default constitution: one JS module exporting `validate`, `resolve` (majority of Active members)
/// and `apply`, built from the files in `constitution/`.
pub const DEFAULT_CONSTITUTION: &str = concat!(
    include_str!("../constitution/actions.js"),
    "\n",
    include_str!("../constitution/validate.js"),
    "\n",
    include_str!("../constitution/resolve.js"),
    "\n",
    include_str!("../constitution/apply.js"),
);
