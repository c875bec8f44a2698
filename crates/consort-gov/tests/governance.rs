//! Governance scenarios over an in-memory store: signed requests, the proposal lifecycle under the default
//! constitution, constitution changes, JS limits and determinism.

use consort_crypto::x509::self_signed;
use consort_crypto::{CertParams, Curve, SigningKey};
use consort_gov::*;
use consort_kv::Store;
use serde_json::json;

const NOW: i64 = 1_700_000_000;
const ROOT: [u8; 32] = [7u8; 32];

struct Member {
    key: SigningKey,
    cert_pem: String,
    id: String,
}

fn member(curve: Curve, name: &str) -> Member {
    let key = SigningKey::generate(curve);
    let cert = self_signed(&key, &CertParams::new(name)).unwrap();
    Member {
        id: consort_crypto::cert_id(&cert.der),
        key,
        cert_pem: cert.pem,
    }
}

fn spec(m: &Member) -> MemberSpec {
    MemberSpec {
        cert_pem: m.cert_pem.clone(),
        encryption_public_key_pem: None,
        member_data: None,
        recovery_role: None,
    }
}

fn setup(members: &[&Member], constitution: &str) -> Store {
    let store = Store::new();
    let mut tx = store.begin();
    let specs: Vec<_> = members.iter().map(|m| spec(m)).collect();
    genesis(&mut tx, &specs, &[], constitution, 1).unwrap();
    store.commit(tx, |_, _| ()).unwrap();
    store
}

/// Sends a signed request through verification and `op` in one transaction, committing only on success.
fn run<T>(
    store: &Store,
    body: &[u8],
    ty: MsgType,
    pid: Option<&str>,
    op: impl FnOnce(&mut consort_kv::Tx<'_>, &VerifiedRequest) -> Result<T, GovError>,
) -> Result<T, GovError> {
    let mut tx = store.begin();
    let req = verify_gov_request(&mut tx, body, ty, pid, NOW)?;
    let out = op(&mut tx, &req)?;
    store.commit(tx, |_, _| ()).unwrap();
    Ok(out)
}

fn propose_at(
    store: &Store,
    m: &Member,
    proposal: &serde_json::Value,
    created_at: i64,
) -> Result<ProposalOutcome, GovError> {
    let body = sign_gov_request(
        &m.key,
        &m.id,
        MsgType::Proposal,
        created_at,
        None,
        proposal.to_string().as_bytes(),
    );
    run(store, &body, MsgType::Proposal, None, |tx, req| {
        create_proposal(tx, req, &ROOT, &GovEnv::default())
    })
}

fn propose(store: &Store, m: &Member, proposal: &serde_json::Value) -> Result<ProposalOutcome, GovError> {
    propose_at(store, m, proposal, NOW)
}

fn vote_with(store: &Store, m: &Member, pid: &str, ballot: &str, env: &GovEnv) -> Result<ProposalOutcome, GovError> {
    let payload = json!({ "ballot": ballot }).to_string();
    let body = sign_gov_request(&m.key, &m.id, MsgType::Ballot, NOW, Some(pid), payload.as_bytes());
    run(store, &body, MsgType::Ballot, Some(pid), |tx, req| {
        submit_ballot(tx, req, pid, &m.id, env)
    })
}

fn vote(store: &Store, m: &Member, pid: &str, yes: bool) -> Result<ProposalOutcome, GovError> {
    let ballot = format!("export function vote(proposal, proposerId) {{ return {yes}; }}");
    vote_with(store, m, pid, &ballot, &GovEnv::default())
}

fn set_user_proposal(user: &Member) -> serde_json::Value {
    json!({"actions": [{"name": "set_user", "args": {"cert": user.cert_pem, "user_data": {"role": "tester"}}}]})
}

fn has_user(store: &Store, id: &str) -> bool {
    store.read_only().has(tables::USERS_CERTS, id.as_bytes())
}

fn three() -> (Member, Member, Member) {
    (
        member(Curve::P384, "m0"),
        member(Curve::P256, "m1"),
        member(Curve::P384, "m2"),
    )
}

#[test]
fn one_member_consortium_acts_alone() {
    let m = member(Curve::P256, "solo");
    let store = setup(&[&m], DEFAULT_CONSTITUTION);
    let user = member(Curve::P256, "user");
    let out = propose(&store, &m, &set_user_proposal(&user)).unwrap();
    assert_eq!(out.info.state, ProposalState::Open, "no ballot yet");
    let out = vote(&store, &m, &out.proposal_id, true).unwrap();
    assert_eq!(out.info.state, ProposalState::Accepted);
    assert!(has_user(&store, &user.id));
    let info: serde_json::Value =
        serde_json::from_slice(&store.read_only().get(tables::USERS_INFO, user.id.as_bytes()).unwrap()).unwrap();
    assert_eq!(info, json!({"user_data": {"role": "tester"}}));
}

#[test]
fn set_user_needs_a_majority_of_three() {
    let (a, b, c) = three();
    let store = setup(&[&a, &b, &c], DEFAULT_CONSTITUTION);
    let user = member(Curve::P256, "user");
    let created = propose(&store, &a, &set_user_proposal(&user)).unwrap();
    let pid = created.proposal_id.clone();
    // The id binds the state root and the request's signature (ECDSA signing here is deterministic, RFC 6979).
    let body = sign_gov_request(
        &a.key,
        &a.id,
        MsgType::Proposal,
        NOW,
        None,
        set_user_proposal(&user).to_string().as_bytes(),
    );
    let again = verify_gov_request(&mut store.begin(), &body, MsgType::Proposal, None, NOW).unwrap();
    assert_eq!(pid, proposal_id(&ROOT, &again));
    let after_one = vote(&store, &a, &pid, true).unwrap();
    assert_eq!(after_one.info.state, ProposalState::Open);
    assert!(!has_user(&store, &user.id));
    let api = get_proposal(&mut store.read_only(), &pid).unwrap().to_api_json(&pid);
    assert_eq!(api["proposalState"], "Open");
    assert_eq!(api["ballotCount"], 1);
    let after_two = vote(&store, &b, &pid, true).unwrap();
    assert_eq!(after_two.info.state, ProposalState::Accepted);
    assert_eq!(
        after_two.to_api_json()["finalVotes"],
        json!({ a.id.clone(): true, b.id.clone(): true })
    );
    assert!(has_user(&store, &user.id));
    // Closed proposals take no more ballots.
    let err = vote(&store, &c, &pid, true).unwrap_err();
    assert_eq!(err.code(), "ProposalNotOpen");
    // The read endpoints.
    let list = list_proposals_json(&mut store.read_only()).unwrap();
    assert_eq!(list["value"][0]["proposalId"], pid);
    let actions = get_proposal_actions(&mut store.read_only(), &pid).unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&actions).unwrap(),
        set_user_proposal(&user)
    );
    assert!(get_ballot(&mut store.read_only(), &pid, &a.id)
        .unwrap()
        .contains("return true"));
    assert_eq!(
        get_ballot(&mut store.read_only(), &pid, &c.id).unwrap_err().code(),
        "VoteNotFound"
    );
}

#[test]
fn remove_user_rejected_by_majority_leaves_the_user() {
    let (a, b, c) = three();
    let store = setup(&[&a, &b, &c], DEFAULT_CONSTITUTION);
    let user = member(Curve::P256, "user");
    let pid = propose(&store, &a, &set_user_proposal(&user)).unwrap().proposal_id;
    vote(&store, &a, &pid, true).unwrap();
    vote(&store, &b, &pid, true).unwrap();
    assert!(has_user(&store, &user.id));

    let remove = json!({"actions": [{"name": "remove_user", "args": {"user_id": user.id}}]});
    let pid = propose_at(&store, &a, &remove, NOW + 1).unwrap().proposal_id;
    assert_eq!(vote(&store, &b, &pid, false).unwrap().info.state, ProposalState::Open);
    assert_eq!(
        vote(&store, &c, &pid, false).unwrap().info.state,
        ProposalState::Rejected
    );
    assert!(has_user(&store, &user.id));
}

#[test]
fn same_ballot_is_idempotent_and_a_different_one_refused() {
    let (a, b, c) = three();
    let store = setup(&[&a, &b, &c], DEFAULT_CONSTITUTION);
    let pid = propose(&store, &a, &set_user_proposal(&member(Curve::P256, "u")))
        .unwrap()
        .proposal_id;
    vote(&store, &a, &pid, true).unwrap();
    assert_eq!(vote(&store, &a, &pid, true).unwrap().info.ballots.len(), 1);
    assert_eq!(vote(&store, &a, &pid, false).unwrap_err().code(), "VoteAlreadyExists");
}

#[test]
fn withdraw_only_by_proposer() {
    let (a, b, c) = three();
    let store = setup(&[&a, &b, &c], DEFAULT_CONSTITUTION);
    let pid = propose(&store, &a, &set_user_proposal(&member(Curve::P256, "u")))
        .unwrap()
        .proposal_id;
    let withdraw = |m: &Member| {
        let body = sign_gov_request(&m.key, &m.id, MsgType::Withdrawal, NOW, Some(&pid), b"");
        run(&store, &body, MsgType::Withdrawal, Some(&pid), |tx, req| {
            withdraw_proposal(tx, req, &pid)
        })
    };
    let err = withdraw(&b).unwrap_err();
    assert_eq!((err.code(), err.http_status()), ("AuthorizationFailed", 403));
    let out = withdraw(&a).unwrap().unwrap();
    assert_eq!(out.info.state, ProposalState::Withdrawn);
    assert_eq!(vote(&store, &b, &pid, true).unwrap_err().code(), "ProposalNotOpen");
    // Withdrawing an unknown proposal is idempotent (204).
    let other = "ab".repeat(32);
    let body = sign_gov_request(&a.key, &a.id, MsgType::Withdrawal, NOW, Some(&other), b"");
    let none = run(&store, &body, MsgType::Withdrawal, Some(&other), |tx, req| {
        withdraw_proposal(tx, req, &other)
    });
    assert!(none.unwrap().is_none());
}

#[test]
fn invalid_proposals_are_refused_by_validate() {
    let m = member(Curve::P256, "solo");
    let store = setup(&[&m], DEFAULT_CONSTITUTION);
    let bad = json!({"actions": [{"name": "remove_user", "args": {"user_id": "nothex"}}]});
    let err = propose(&store, &m, &bad).unwrap_err();
    assert_eq!((err.code(), err.http_status()), ("ProposalFailedToValidate", 400));
    assert!(err.to_string().contains("user_id"), "{err}");
    let unknown = json!({"actions": [{"name": "make_coffee"}]});
    assert!(propose_at(&store, &m, &unknown, NOW + 1)
        .unwrap_err()
        .to_string()
        .contains("no such action"));
    // Nothing was recorded.
    assert!(list_proposals(&mut store.read_only()).unwrap().is_empty());
}

#[test]
fn constitution_change_with_a_veto_takes_effect_for_the_next_proposal() {
    let (a, b, c) = three();
    let store = setup(&[&a, &b, &c], DEFAULT_CONSTITUTION);
    // A pending proposal is dropped when the constitution changes.
    let pending = propose(&store, &b, &set_user_proposal(&member(Curve::P256, "pending")))
        .unwrap()
        .proposal_id;
    let veto_resolve = format!(
        r#"
export function resolve(proposal, proposerId, votes, proposalId) {{
  if (votes.some((v) => v.member_id === "{}" && !v.vote)) return "Rejected";
  return resolveByMajority(proposal, proposerId, votes, proposalId);
}}
"#,
        c.id
    );
    let new_constitution =
        DEFAULT_CONSTITUTION.replace("export function resolve(", "function resolveByMajority(") + &veto_resolve;
    let change = json!({"actions": [{"name": "set_constitution", "args": {"constitution": new_constitution}}]});
    let pid = propose_at(&store, &a, &change, NOW + 1).unwrap().proposal_id;
    vote(&store, &a, &pid, true).unwrap();
    assert_eq!(
        vote(&store, &b, &pid, true).unwrap().info.state,
        ProposalState::Accepted
    );
    assert_eq!(constitution(&mut store.read_only()).unwrap(), new_constitution);
    assert_eq!(
        get_proposal(&mut store.read_only(), &pending).unwrap().state,
        ProposalState::Dropped
    );

    let user = member(Curve::P256, "user");
    let pid = propose_at(&store, &a, &set_user_proposal(&user), NOW + 2)
        .unwrap()
        .proposal_id;
    vote(&store, &a, &pid, true).unwrap();
    assert_eq!(
        vote(&store, &c, &pid, false).unwrap().info.state,
        ProposalState::Rejected
    );
    assert!(!has_user(&store, &user.id));
}

fn small_limits() -> GovEnv<'static> {
    GovEnv {
        limits: limits::JsLimits {
            max_heap_bytes: 16 * 1024 * 1024,
            max_stack_bytes: 256 * 1024,
            max_interrupt_polls: 200,
        },
        ..GovEnv::default()
    }
}

#[test]
fn runaway_ballots_fail_with_a_clear_reason_and_the_host_stays_healthy() {
    let (a, b, c) = three();
    let store = setup(&[&a, &b, &c], DEFAULT_CONSTITUTION);
    let pid = propose(&store, &a, &set_user_proposal(&member(Curve::P256, "u")))
        .unwrap()
        .proposal_id;
    let env = small_limits();
    let looping = vote_with(&store, &a, &pid, "export function vote() { while (true) {} }", &env).unwrap();
    assert_eq!(looping.info.state, ProposalState::Open);
    assert_eq!(looping.vote_failures[&a.id].reason, TIMEOUT_REASON);
    assert!(looping.to_api_json()["voteFailures"][&a.id]["reason"].is_string());
    let hog = "export function vote() { const a = []; while (true) { a.push(new Array(100000).fill(1)); } }";
    let hogging = vote_with(&store, &b, &pid, hog, &env).unwrap();
    let reason = &hogging.vote_failures[&b.id].reason;
    assert!(reason.contains("out of memory") || reason == TIMEOUT_REASON, "{reason}");
    let deep = "function f(n) { return f(n + 1) + 1; } export function vote() { return f(0); }";
    let overflowing = vote_with(&store, &c, &pid, deep, &env).unwrap();
    assert!(
        overflowing.vote_failures[&c.id].reason.to_lowercase().contains("stack"),
        "{overflowing:?}"
    );

    // A normal proposal still works.
    let user = member(Curve::P256, "user");
    let pid = propose_at(&store, &a, &set_user_proposal(&user), NOW + 1)
        .unwrap()
        .proposal_id;
    vote(&store, &a, &pid, true).unwrap();
    assert_eq!(
        vote(&store, &b, &pid, true).unwrap().info.state,
        ProposalState::Accepted
    );
    assert!(has_user(&store, &user.id));
}

#[test]
fn runaway_constitution_fails_the_proposal() {
    let m = member(Curve::P256, "solo");
    // A one-member service with `constitution`: a set_user proposal, then m's ballot, which must fail.
    let failing_ballot = |constitution: &str| {
        let store = setup(&[&m], constitution);
        let pid = propose(&store, &m, &set_user_proposal(&member(Curve::P256, "u")))
            .unwrap()
            .proposal_id;
        let ballot = "export function vote() { return true; }";
        let err = vote_with(&store, &m, &pid, ballot, &small_limits()).unwrap_err();
        (store, pid, err)
    };
    let looping = DEFAULT_CONSTITUTION.replace(
        "export function resolve(proposal, proposerId, votes, proposalId) {",
        "export function resolve(proposal, proposerId, votes, proposalId) { if (votes.length > 0) while (true) {}",
    );
    let (store, pid, err) = failing_ballot(&looping);
    assert_eq!((err.code(), err.http_status()), ("InternalError", 500));
    assert!(err.to_string().contains(TIMEOUT_REASON), "{err}");
    // The failed ballot's transaction was dropped: the proposal is still Open without ballots.
    let info = get_proposal(&mut store.read_only(), &pid).unwrap();
    assert_eq!((info.state, info.ballots.len()), (ProposalState::Open, 0));

    let hog = DEFAULT_CONSTITUTION.replace(
        "export function apply(input, proposalId) {",
        "export function apply(input, proposalId) { let s = 'x'; while (true) { s = s + s; }",
    );
    let (_, _, err) = failing_ballot(&hog);
    assert!(err.to_string().starts_with("Failed to apply():"), "{err}");
}

#[test]
fn governance_js_is_deterministic() {
    let script = r#"
export function vote() {
  return typeof Date === "undefined" && Math.random() === Math.random() - 0 + 0 && ccf.crypto.sha256(ccf.strToBuf("x")).byteLength === 32;
}"#;
    let (a, b, c) = three();
    let user = member(Curve::P256, "user");
    let proposal = set_user_proposal(&user).to_string();
    let create = sign_gov_request(&a.key, &a.id, MsgType::Proposal, NOW, None, proposal.as_bytes());
    let run_all = || {
        let store = setup(&[&a, &b, &c], DEFAULT_CONSTITUTION);
        let out = run(&store, &create, MsgType::Proposal, None, |tx, req| {
            create_proposal(tx, req, &ROOT, &GovEnv::default())
        })
        .unwrap();
        let pid = out.proposal_id.clone();
        let mut results = vec![out.to_api_json()];
        let ballots = [
            (&a, script),
            (&b, "export function vote() { return Math.random() < 2; }"),
            (&c, "export function vote() { console.log('yes', 1); return true; }"),
        ];
        for (m, ballot) in ballots {
            let payload = json!({ "ballot": ballot }).to_string();
            let body = sign_gov_request(&m.key, &m.id, MsgType::Ballot, NOW, Some(&pid), payload.as_bytes());
            let out = run(&store, &body, MsgType::Ballot, Some(&pid), |tx, req| {
                submit_ballot(tx, req, &pid, &m.id, &GovEnv::default())
            })
            .unwrap();
            results.push(out.to_api_json());
        }
        (results, store.digest())
    };
    let (first, digest1) = run_all();
    let (second, digest2) = run_all();
    assert_eq!(first, second);
    assert_eq!(digest1, digest2);
    assert_eq!(first[3]["proposalState"], "Accepted", "{first:?}");
    assert_eq!(
        first[3]["finalVotes"][&a.id], false,
        "Math.random() === Math.random() is false: {first:?}"
    );
}

#[test]
fn member_activation_by_state_digest_ack() {
    let m = member(Curve::P256, "solo");
    let store = setup(&[&m], DEFAULT_CONSTITUTION);
    let newcomer = member(Curve::P384, "new");
    let add =
        json!({"actions": [{"name": "set_member", "args": {"cert": newcomer.cert_pem, "member_data": {"k": 1}}}]});
    let pid = propose(&store, &m, &add).unwrap().proposal_id;
    assert_eq!(
        vote(&store, &m, &pid, true).unwrap().info.state,
        ProposalState::Accepted
    );
    let info = member_info(&mut store.read_only(), &newcomer.id).unwrap().unwrap();
    assert_eq!(info.status, MemberStatus::Accepted);

    // An Accepted member may not propose yet.
    let err = propose_at(
        &store,
        &newcomer,
        &set_user_proposal(&member(Curve::P256, "u")),
        NOW + 1,
    )
    .unwrap_err();
    assert_eq!((err.code(), err.http_status()), ("AuthorizationFailed", 403));

    let root = "cd".repeat(32);
    let body = sign_gov_request(&newcomer.key, &newcomer.id, MsgType::StateDigest, NOW, None, b"");
    let digest = run(&store, &body, MsgType::StateDigest, None, |tx, req| {
        update_state_digest(tx, req, &newcomer.id, Some(&root))
    })
    .unwrap();
    assert_eq!(digest.state_digest, root);
    assert_eq!(get_state_digest(&mut store.read_only(), &newcomer.id).unwrap(), digest);

    let wrong = json!({"stateDigest": "00".repeat(32)}).to_string();
    let body = sign_gov_request(&newcomer.key, &newcomer.id, MsgType::Ack, NOW, None, wrong.as_bytes());
    let err = run(&store, &body, MsgType::Ack, None, |tx, req| {
        ack_state_digest(tx, req, &newcomer.id)
    })
    .unwrap_err();
    assert_eq!(err.code(), "StateDigestMismatch");

    let right = serde_json::to_vec(&digest).unwrap();
    let body = sign_gov_request(&newcomer.key, &newcomer.id, MsgType::Ack, NOW, None, &right);
    let newly = run(&store, &body, MsgType::Ack, None, |tx, req| {
        ack_state_digest(tx, req, &newcomer.id)
    })
    .unwrap();
    assert!(newly);
    assert_eq!(active_members(&mut store.read_only()).unwrap().len(), 2);

    // Two active members now: one vote is no longer a majority.
    let user = member(Curve::P256, "user");
    let pid = propose_at(&store, &newcomer, &set_user_proposal(&user), NOW + 2)
        .unwrap()
        .proposal_id;
    assert_eq!(vote(&store, &m, &pid, true).unwrap().info.state, ProposalState::Open);
    assert_eq!(
        vote(&store, &newcomer, &pid, true).unwrap().info.state,
        ProposalState::Accepted
    );
}

#[test]
fn host_actions_are_recorded_for_the_node() {
    let m = member(Curve::P256, "solo");
    let store = setup(&[&m], DEFAULT_CONSTITUTION);
    {
        let mut tx = store.begin();
        tx.put(
            tables::SERVICE_INFO,
            &tables::SINGLETON_KEY,
            br#"{"status":"Opening","cert":"x"}"#,
        );
        store.commit(tx, |_, _| ()).unwrap();
    }
    let service = member(Curve::P384, "service");
    let p = json!({"actions": [
        {"name": "transition_service_to_open", "args": {"next_service_identity": service.cert_pem}},
        {"name": "trigger_snapshot"},
        {"name": "add_snp_measurement", "args": {"measurement": "AB01"}},
    ]});
    let pid = propose(&store, &m, &p).unwrap().proposal_id;
    let out = vote(&store, &m, &pid, true).unwrap();
    assert_eq!(out.actions.len(), 2);
    assert!(
        matches!(&out.actions[0], HostAction::TransitionServiceToOpen { next_service_identity: Some(c), previous_service_identity: None } if *c == service.cert_pem)
    );
    assert_eq!(out.actions[1], HostAction::TriggerSnapshot);
    assert_eq!(
        store
            .read_only()
            .get(tables::NODES_SNP_MEASUREMENTS, b"ab01")
            .as_deref(),
        Some(&b"\"AllowedToJoin\""[..])
    );
    let mut tx = store.begin();
    open_service(&mut tx).unwrap();
    store.commit(tx, |_, _| ()).unwrap();
    let info: serde_json::Value = serde_json::from_slice(
        &store
            .read_only()
            .get(tables::SERVICE_INFO, &tables::SINGLETON_KEY)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(info, json!({"status": "Open", "cert": "x"}));
}

fn member_ids(store: &Store) -> Vec<String> {
    let mut ids = vec![];
    store.read_only().foreach(tables::MEMBERS_CERTS, |k, _| {
        ids.push(String::from_utf8_lossy(k).into_owned());
        true
    });
    ids
}

fn set_member(cert_pem: &str) -> serde_json::Value {
    json!({"actions": [{"name": "set_member", "args": {"cert": cert_pem}}]})
}

/// Re-wraps a PEM certificate at 76 columns with CRLF line endings and trailing whitespace.
fn rewrapped(cert_pem: &str) -> String {
    let body: String = cert_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    let mut out = String::from("-----BEGIN CERTIFICATE-----  \r\n");
    for chunk in body.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push_str("\r\n");
    }
    out.push_str("-----END CERTIFICATE-----\r\n\r\n   \n");
    out
}

/// The same certificate with its outer SEQUENCE length in a longer form than DER allows (BER): the same signed
/// content under different bytes, so a different SHA-256.
fn ber_twin(der: &[u8]) -> Vec<u8> {
    assert_eq!((der[0], der[1]), (0x30, 0x82), "a certificate of 256 to 65535 bytes");
    let mut out = vec![0x30, 0x83, 0x00];
    out.extend_from_slice(&der[2..]);
    out
}

#[test]
fn a_member_certificate_twin_is_the_same_member_or_refused() {
    let m = member(Curve::P256, "solo");
    let store = setup(&[&m], DEFAULT_CONSTITUTION);
    let newcomer = member(Curve::P384, "newcomer");
    let pid = propose(&store, &m, &set_member(&newcomer.cert_pem))
        .unwrap()
        .proposal_id;
    assert_eq!(
        vote(&store, &m, &pid, true).unwrap().info.state,
        ProposalState::Accepted
    );
    let mut expected = vec![m.id.clone(), newcomer.id.clone()];
    expected.sort();
    assert_eq!(member_ids(&store), expected);

    // Other PEM wrapping, CRLF and trailing whitespace: the id comes from the parsed DER, so it is the same member.
    let twin = rewrapped(&newcomer.cert_pem);
    assert_ne!(twin, newcomer.cert_pem);
    assert_eq!(
        consort_crypto::ParsedCert::from_pem(&twin).unwrap().cert_id(),
        newcomer.id
    );
    let pid = propose_at(&store, &m, &set_member(&twin), NOW + 1).unwrap().proposal_id;
    assert_eq!(
        vote(&store, &m, &pid, true).unwrap().info.state,
        ProposalState::Accepted
    );
    assert_eq!(
        member_ids(&store),
        expected,
        "no second member for a re-encoded certificate"
    );

    // A certificate re-issued for the newcomer's key (another DER, so another id) is refused, naming the member.
    let reissued = self_signed(&newcomer.key, &CertParams::new("newcomer again")).unwrap();
    let pid = propose_at(&store, &m, &set_member(&reissued.pem), NOW + 2)
        .unwrap()
        .proposal_id;
    let err = vote(&store, &m, &pid, true).unwrap_err();
    assert!(err.to_string().contains("same public key"), "{err}");
    assert!(err.to_string().contains(&newcomer.id), "{err}");
    assert_eq!(member_ids(&store), expected);

    // A BER variant of the very same certificate: refused, whether the parser rejects it or the key check does.
    let der = pem::parse(&newcomer.cert_pem).unwrap().contents().to_vec();
    let ber = pem::encode(&pem::Pem::new("CERTIFICATE", ber_twin(&der)));
    match propose_at(&store, &m, &set_member(&ber), NOW + 3) {
        Err(err) => assert_eq!(err.code(), "ProposalFailedToValidate", "{err}"),
        Ok(out) => {
            let err = vote(&store, &m, &out.proposal_id, true).unwrap_err();
            assert!(err.to_string().contains("same public key"), "{err}");
        }
    }
    assert_eq!(member_ids(&store), expected);
}

#[test]
fn genesis_refuses_two_members_with_one_key() {
    let m = member(Curve::P256, "m");
    let again = self_signed(&m.key, &CertParams::new("m again")).unwrap();
    let twin = MemberSpec {
        cert_pem: again.pem,
        encryption_public_key_pem: None,
        member_data: None,
        recovery_role: None,
    };
    let store = Store::new();
    let mut tx = store.begin();
    let err = genesis(&mut tx, &[spec(&m), twin], &[], DEFAULT_CONSTITUTION, 1).unwrap_err();
    assert!(err.to_string().contains("same public key"), "{err}");
}

fn tcb_table(store: &Store) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    store.read_only().foreach(tables::NODES_SNP_TCB_VERSIONS, |k, v| {
        out.insert(
            String::from_utf8_lossy(k).into_owned(),
            serde_json::from_slice(v).unwrap(),
        );
        true
    });
    out
}

#[test]
fn snp_tcb_versions_are_governed_by_cpuid_or_product() {
    let m = member(Curve::P256, "solo");
    let store = setup(&[&m], DEFAULT_CONSTITUTION);
    let pass = |actions: serde_json::Value, at: i64| {
        let pid = propose_at(&store, &m, &json!({ "actions": actions }), at)
            .unwrap()
            .proposal_id;
        assert_eq!(
            vote(&store, &m, &pid, true).unwrap().info.state,
            ProposalState::Accepted
        );
    };
    let tcb = json!({"boot_loader": 3, "tee": 0, "snp": 8, "microcode": 115});
    pass(
        json!([{"name": "add_snp_tcb_version", "args": {"product": "Milan", "tcb_version": tcb}}]),
        NOW,
    );
    pass(
        json!([{"name": "add_snp_tcb_version", "args": {"cpuid": "00b00f21",
            "tcb_version": {"boot_loader": 1, "tee": 2, "snp": 3, "microcode": 4, "fmc": 5}}}]),
        NOW + 1,
    );
    assert_eq!(
        serde_json::Value::Object(tcb_table(&store)),
        json!({"00a00f11": tcb, "00b00f21": {"boot_loader": 1, "tee": 2, "snp": 3, "microcode": 4, "fmc": 5}})
    );

    // CCF's hex form, read with each product's layout (the examples of CCF's documentation).
    pass(
        json!([
            {"name": "set_snp_minimum_tcb_version_hex", "args": {"cpuid": "00a00f11", "tcb_version": "d315000000000004"}},
            {"name": "set_snp_minimum_tcb_version_hex", "args": {"cpuid": "00b00f21", "tcb_version": "1100000022334455"}},
        ]),
        NOW + 2,
    );
    let table = tcb_table(&store);
    assert_eq!(
        table["00a00f11"],
        json!({"boot_loader": 4, "tee": 0, "snp": 21, "microcode": 211, "hexstring": "d315000000000004"})
    );
    assert_eq!(
        table["00b00f21"],
        json!({"boot_loader": 68, "tee": 51, "snp": 34, "microcode": 17, "fmc": 85, "hexstring": "1100000022334455"})
    );

    pass(
        json!([{"name": "remove_snp_tcb_version", "args": {"product": "Turin"}}]),
        NOW + 3,
    );
    pass(
        json!([{"name": "remove_snp_minimum_tcb_version", "args": {"cpuid": "00a00f11"}}]),
        NOW + 4,
    );
    assert!(tcb_table(&store).is_empty());
}

#[test]
fn malformed_snp_tcb_versions_are_refused_naming_the_field() {
    let m = member(Curve::P256, "solo");
    let store = setup(&[&m], DEFAULT_CONSTITUTION);
    let ok = json!({"boot_loader": 3, "tee": 0, "snp": 8, "microcode": 115});
    let with = |field: &str, value: serde_json::Value| {
        let mut tcb = ok.clone();
        tcb[field] = value;
        tcb
    };
    let mut missing = ok.clone();
    missing.as_object_mut().unwrap().remove("snp");
    let cases = [
        (
            "add_snp_tcb_version",
            json!({"product": "Milan", "tcb_version": missing}),
            "tcb_version.snp",
        ),
        (
            "add_snp_tcb_version",
            json!({"product": "Milan", "tcb_version": with("tee", json!(256))}),
            "tcb_version.tee",
        ),
        (
            "add_snp_tcb_version",
            json!({"product": "Milan", "tcb_version": with("microcode", json!("115"))}),
            "tcb_version.microcode",
        ),
        (
            "add_snp_tcb_version",
            json!({"product": "Milan", "tcb_version": with("speed", json!(1))}),
            "tcb_version.speed",
        ),
        (
            "add_snp_tcb_version",
            json!({"product": "Milan", "tcb_version": "7308000000000003"}),
            "tcb_version",
        ),
        (
            "add_snp_tcb_version",
            json!({"product": "Naples", "tcb_version": ok}),
            "product",
        ),
        (
            "add_snp_tcb_version",
            json!({"cpuid": "00A00F11", "tcb_version": ok}),
            "cpuid",
        ),
        (
            "add_snp_tcb_version",
            json!({"cpuid": "00a00f1", "tcb_version": ok}),
            "cpuid",
        ),
        ("add_snp_tcb_version", json!({"tcb_version": ok}), "cpuid"),
        (
            "add_snp_tcb_version",
            json!({"cpuid": "00a00f11", "product": "Milan", "tcb_version": ok}),
            "not both",
        ),
        ("add_snp_tcb_version", json!(null), "args"),
        ("remove_snp_tcb_version", json!({"cpuid": 1}), "cpuid"),
        (
            "set_snp_minimum_tcb_version_hex",
            json!({"cpuid": "00a00f11", "tcb_version": "d3150000000000"}),
            "tcb_version",
        ),
        (
            "set_snp_minimum_tcb_version_hex",
            json!({"cpuid": "00a00f11", "tcb_version": "d315000000010004"}),
            "reserved",
        ),
        (
            "set_snp_minimum_tcb_version_hex",
            json!({"cpuid": "00a00f99", "tcb_version": "d315000000000004"}),
            "00a00f99",
        ),
    ];
    for (i, (action, args, named)) in cases.iter().enumerate() {
        let proposal = json!({"actions": [{"name": action, "args": args}]});
        let err = propose_at(&store, &m, &proposal, NOW + i as i64).unwrap_err();
        assert_eq!(err.code(), "ProposalFailedToValidate", "{action} {args}: {err}");
        assert!(err.to_string().contains(named), "{action} {args}: {err}");
    }
    assert!(tcb_table(&store).is_empty());
    assert!(list_proposals(&mut store.read_only()).unwrap().is_empty());
}
