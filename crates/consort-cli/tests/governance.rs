//! Governance end to end against real node processes: COSE-signed proposals and ballots (ours and those of CCF's
//! `ccf_cose_sign1`), majority voting by the default constitution, a constitution change by proposal, refusals
//! of replayed, tampered and malformed requests, runaway ballots, the ledger as CCF's `read_ledger.py` sees it,
//! and the `consort gov` CLI including member activation by ack.

mod common;

use common::*;
use consort_crypto::{ParsedCert, SigningKey};
use consort_gov::MsgType;
use consort_node::config::IdentityConfig;
use consort_node::net::client::{Connection, Protocol, Reply};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// CCF's governance API version.
const API: &str = "api-version=2024-07-01";
/// Longest any one test may run: its nodes are dropped (killed) when it expires.
const TEST_TIMEOUT: Duration = Duration::from_secs(180);

const VOTE_YES: &str = "export function vote (proposal, proposerId) { return true }";
const VOTE_NO: &str = "export function vote (proposal, proposerId) { return false }";

/// Runs `fut` within [`TEST_TIMEOUT`].
async fn bounded<F: std::future::Future<Output = ()>>(fut: F) {
    tokio::time::timeout(TEST_TIMEOUT, fut)
        .await
        .expect("test exceeded its time bound");
}

fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `secs` since the epoch as the ISO 8601 UTC time `ccf_cose_sign1 --ccf-gov-msg-created_at` takes.
fn iso_utc(secs: i64) -> String {
    let (year, month, day, h, m, s) = utc_civil(secs);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}+00:00")
}

fn cert_id_of(cert_pem: &str) -> String {
    ParsedCert::from_pem(cert_pem).unwrap().cert_id()
}

/// A member identity (certificate and key files) that signs requests with our own COSE signer.
struct Member {
    id: String,
    key: SigningKey,
    cert: PathBuf,
    key_path: PathBuf,
}

impl Member {
    /// A fresh P-384 member written into `dir` as `<name>_cert.pem` / `<name>_privk.pem`.
    fn generate(dir: &Path, name: &str) -> Member {
        let (cert, key) = keygen(dir, name);
        Member::load(cert, key)
    }

    fn load(cert: PathBuf, key_path: PathBuf) -> Member {
        let id = cert_id_of(&std::fs::read_to_string(&cert).unwrap());
        let key = SigningKey::from_pem(&std::fs::read_to_string(&key_path).unwrap()).unwrap();
        Member {
            id,
            key,
            cert,
            key_path,
        }
    }

    fn identity(&self) -> IdentityConfig {
        IdentityConfig {
            cert: self.cert.clone(),
            encryption_public_key: None,
            data: None,
        }
    }

    fn cert_pem(&self) -> String {
        std::fs::read_to_string(&self.cert).unwrap()
    }

    fn sign(&self, t: MsgType, proposal_id: Option<&str>, payload: &[u8]) -> Vec<u8> {
        consort_gov::sign_gov_request(&self.key, &self.id, t, now_seconds(), proposal_id, payload)
    }
}

async fn post_cose(conn: &Connection, path: &str, body: Vec<u8>) -> Reply {
    conn.request_typed("POST", &format!("{path}?{API}"), Some(("application/cose", body)))
        .await
        .unwrap()
}

async fn get_json(conn: &Connection, path: &str) -> Value {
    let r = conn.get(&format!("{path}?{API}")).await.unwrap();
    assert_eq!(r.status, 200, "GET {path}: {}", String::from_utf8_lossy(&r.body));
    r.json().unwrap()
}

/// The JSON body of a 200 answer.
fn ok_json(r: &Reply, what: &str) -> Value {
    assert_eq!(r.status, 200, "{what}: {}", String::from_utf8_lossy(&r.body));
    r.json().unwrap()
}

/// Asserts a refusal: `status`, a JSON `{"error": {"code", "message"}}` with `code`; returns the message.
fn refused(r: &Reply, status: u16, code: &str, what: &str) -> String {
    let body = String::from_utf8_lossy(&r.body).to_string();
    assert_eq!(r.status, status, "{what}: {body}");
    let v: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {body}"));
    assert_eq!(v["error"]["code"], code, "{what}: {body}");
    let message = v["error"]["message"].as_str().unwrap_or_default().to_string();
    assert!(!message.is_empty(), "{what}: no message: {body}");
    message
}

async fn propose(conn: &Connection, m: &Member, proposal: &Value) -> Value {
    let r = post_cose(
        conn,
        "/gov/members/proposals:create",
        m.sign(MsgType::Proposal, None, proposal.to_string().as_bytes()),
    )
    .await;
    ok_json(&r, "create proposal")
}

async fn ballot(conn: &Connection, m: &Member, proposal_id: &str, script: &str) -> Reply {
    let payload = json!({ "ballot": script }).to_string();
    post_cose(
        conn,
        &format!("/gov/members/proposals/{proposal_id}/ballots/{}:submit", m.id),
        m.sign(MsgType::Ballot, Some(proposal_id), payload.as_bytes()),
    )
    .await
}

async fn vote(conn: &Connection, m: &Member, proposal_id: &str, accept: bool) -> Value {
    let r = ballot(conn, m, proposal_id, if accept { VOTE_YES } else { VOTE_NO }).await;
    ok_json(&r, "ballot")
}

fn id_of(v: &Value) -> String {
    v["proposalId"]
        .as_str()
        .unwrap_or_else(|| panic!("no proposalId in {v}"))
        .to_string()
}

/// A connection presenting `cert`/`key` as its TLS client certificate.
async fn connect_as(node: &TestNode, cert: &Path, key: &Path) -> Connection {
    let (cert, key) = (
        std::fs::read_to_string(cert).unwrap(),
        std::fs::read_to_string(key).unwrap(),
    );
    let tls = consort_node::net::tls::client_config(&node.service_cert(), Some((&cert, &key))).unwrap();
    Connection::connect(&node.address, tls, Protocol::Http1).await.unwrap()
}

/// Status of a logging-app write by the connection's user.
async fn log_status(conn: &Connection, id: u64) -> u16 {
    conn.post_json("/app/log/private", &json!({"id": id, "msg": format!("message {id}")}))
        .await
        .unwrap()
        .status
}

async fn member_status(conn: &Connection, member_id: &str) -> Option<String> {
    let members = get_json(conn, "/gov/service/members").await;
    members["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["memberId"] == member_id)
        .map(|m| m["status"].as_str().unwrap_or_default().to_string())
}

fn set_user(cert_pem: &str) -> Value {
    json!({"actions": [{"name": "set_user", "args": {"cert": cert_pem}}]})
}

fn set_user_data(user_id: &str, n: u64) -> Value {
    json!({"actions": [{"name": "set_user_data", "args": {"user_id": user_id, "user_data": {"n": n}}}]})
}

// ---------------------------------------------------------------------------------------------------------------
// 1. CCF's own tooling: keygenerator.sh identities, ccf_cose_sign1 requests.

/// Runs CCF's keygenerator.sh in `dir`; returns the member (cert, key written by the tool).
fn ccf_keygen(venv: &Path, dir: &Path, name: &str, curve: Option<&str>) -> Member {
    let mut cmd = Command::new("bash");
    cmd.arg(venv.join("bin/keygenerator.sh"))
        .args(["--name", name])
        .current_dir(dir);
    if let Some(c) = curve {
        cmd.args(["--curve", c]);
    }
    let out = run_bounded(cmd, TOOL_TIMEOUT);
    assert!(
        out.status.success(),
        "keygenerator.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Member::load(
        dir.join(format!("{name}_cert.pem")),
        dir.join(format!("{name}_privk.pem")),
    )
}

/// Signs `content` with CCF's `ccf_cose_sign1` as `m`.
fn ccf_sign(venv: &Path, m: &Member, msg_type: &str, proposal_id: Option<&str>, content: &[u8]) -> Vec<u8> {
    let tmp = tempfile::tempdir().unwrap();
    let content_path = tmp.path().join("content");
    std::fs::write(&content_path, content).unwrap();
    let mut cmd = Command::new(venv.join("bin/ccf_cose_sign1"));
    cmd.arg("--content")
        .arg(&content_path)
        .arg("--signing-key")
        .arg(&m.key_path)
        .arg("--signing-cert")
        .arg(&m.cert)
        .args(["--ccf-gov-msg-type", msg_type])
        .args(["--ccf-gov-msg-created_at", &iso_utc(now_seconds())]);
    if let Some(p) = proposal_id {
        cmd.args(["--ccf-gov-msg-proposal_id", p]);
    }
    let out = run_bounded(cmd, TOOL_TIMEOUT);
    assert!(
        out.status.success(),
        "ccf_cose_sign1: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn iso_utc_matches_known_dates() {
    assert_eq!(iso_utc(0), "1970-01-01T00:00:00+00:00");
    assert_eq!(iso_utc(1_700_000_000), "2023-11-14T22:13:20+00:00");
    assert_eq!(iso_utc(951_782_400), "2000-02-29T00:00:00+00:00");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_signed_by_ccf_cose_sign1_with_keygenerator_identities_are_accepted() {
    let Some(venv) = ccf_venv() else { return };
    bounded(async {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("n0");
        std::fs::create_dir_all(&dir).unwrap();
        let p384 = ccf_keygen(&venv, &dir, "ccf_p384", None);
        let p256 = ccf_keygen(&venv, &dir, "ccf_p256", Some("secp256r1"));
        let mut node = TestNode::configure(&dir, |cfg| cfg.start.members = vec![p384.identity(), p256.identity()]);
        node.start().await;
        let conn = node.connect(false).await;
        let (carol_cert, carol_key) = keygen(&dir, "carol");
        let carol = connect_as(&node, &carol_cert, &carol_key).await;
        assert_eq!(log_status(&carol, 1).await, 401, "carol is not a user yet");

        // P-384 member proposes (two Active members: the majority is two).
        let proposal = set_user(&std::fs::read_to_string(&carol_cert).unwrap()).to_string();
        let body = ccf_sign(&venv, &p384, "proposal", None, proposal.as_bytes());
        let v = ok_json(
            &post_cose(&conn, "/gov/members/proposals:create", body).await,
            "ccf proposal",
        );
        assert_eq!(v["proposalState"], "Open", "{v}");
        assert_eq!(v["proposerId"], p384.id.as_str());
        let id = id_of(&v);
        let actions = conn
            .get(&format!("/gov/members/proposals/{id}/actions?{API}"))
            .await
            .unwrap();
        assert_eq!(actions.status, 200);
        assert_eq!(
            actions.body.as_ref(),
            proposal.as_bytes(),
            "the signed proposal is stored as sent"
        );

        // Ballots made by the tool: P-384 then P-256 (ES384 and ES256).
        let ballot_json = json!({ "ballot": VOTE_YES }).to_string();
        for (m, state) in [(&p384, "Open"), (&p256, "Accepted")] {
            let body = ccf_sign(&venv, m, "ballot", Some(&id), ballot_json.as_bytes());
            let path = format!("/gov/members/proposals/{id}/ballots/{}:submit", m.id);
            let v = ok_json(&post_cose(&conn, &path, body).await, "ccf ballot");
            assert_eq!(v["proposalState"], state, "{v}");
        }
        assert_eq!(
            log_status(&carol, 2).await,
            200,
            "carol was added by the accepted proposal"
        );

        // A withdrawal made by the tool (empty content), on a proposal of the P-256 member.
        let carol_id = cert_id_of(&std::fs::read_to_string(&carol_cert).unwrap());
        let body = ccf_sign(
            &venv,
            &p256,
            "proposal",
            None,
            set_user_data(&carol_id, 1).to_string().as_bytes(),
        );
        let id = id_of(&ok_json(
            &post_cose(&conn, "/gov/members/proposals:create", body).await,
            "proposal",
        ));
        let body = ccf_sign(&venv, &p256, "withdrawal", Some(&id), b"");
        let v = ok_json(
            &post_cose(&conn, &format!("/gov/members/proposals/{id}:withdraw"), body).await,
            "ccf withdrawal",
        );
        assert_eq!(v["proposalState"], "Withdrawn", "{v}");

        // State digest update and ack made by the tool.
        let body = ccf_sign(&venv, &p384, "state_digest", None, b"");
        let path = format!("/gov/members/state-digests/{}:update", p384.id);
        let digest = ok_json(&post_cose(&conn, &path, body).await, "ccf state digest update");
        assert_eq!(digest["memberId"], p384.id.as_str());
        let ack = json!({"stateDigest": digest["stateDigest"]}).to_string();
        let body = ccf_sign(&venv, &p384, "ack", None, ack.as_bytes());
        let r = post_cose(&conn, &format!("/gov/members/state-digests/{}:ack", p384.id), body).await;
        assert_eq!(r.status, 204, "ccf ack: {}", String::from_utf8_lossy(&r.body));
    })
    .await;
}

// ---------------------------------------------------------------------------------------------------------------
// 2, 3, 6. Majority voting, a constitution change by proposal, and the ledger afterwards.

/// The default constitution with a veto: a `false` vote of `member_id` rejects any proposal.
fn with_veto(constitution: &str, member_id: &str) -> String {
    let head = "export function resolve(proposal, proposerId, votes, proposalId) {";
    assert!(constitution.contains(head), "resolve() not found in the constitution");
    constitution.replacen(
        head,
        &format!(
            "{head}\n  if (votes.some((v) => v.member_id === \"{member_id}\" && v.vote === false)) return \"Rejected\";"
        ),
        1,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn majority_adds_a_user_rejection_keeps_it_and_a_new_constitution_applies_to_the_next_proposal() {
    bounded(async {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("n0");
        std::fs::create_dir_all(&dir).unwrap();
        let [a, b, c] = ["ma", "mb", "mc"].map(|n| Member::generate(&dir, n));
        let mut node = TestNode::configure(&dir, |cfg| {
            cfg.start.members = vec![a.identity(), b.identity(), c.identity()];
            // Small chunks and frequent signatures, so the ledger holds several committed chunks.
            cfg.ledger.chunk_threshold_bytes = 4096;
            cfg.ledger.signature_interval_tx = 5;
        });
        node.start().await;
        let conn = node.connect(false).await;
        let mut proposal_ids = vec![];
        let mut gov_txids: Vec<String> = vec![];

        for m in [&a, &b, &c] {
            assert_eq!(member_status(&conn, &m.id).await.as_deref(), Some("Active"));
        }
        let (alice_cert, alice_key) = keygen(&dir, "alice");
        let alice_pem = std::fs::read_to_string(&alice_cert).unwrap();
        let alice_id = cert_id_of(&alice_pem);
        let alice = connect_as(&node, &alice_cert, &alice_key).await;
        assert_eq!(log_status(&alice, 1).await, 401, "alice is not a user yet");

        // set_user: Open after one vote in favour, Accepted after the second.
        let v = propose(&conn, &a, &set_user(&alice_pem)).await;
        assert_eq!(v["proposalState"], "Open", "{v}");
        assert_eq!(v["ballotCount"], 0);
        let id = id_of(&v);
        proposal_ids.push(id.clone());
        let v = vote(&conn, &a, &id, true).await;
        assert_eq!(v["proposalState"], "Open", "one vote of three is not a majority: {v}");
        assert_eq!(v["ballotCount"], 1);
        assert_eq!(
            get_json(&conn, &format!("/gov/members/proposals/{id}")).await["proposalState"],
            "Open"
        );
        assert_eq!(
            log_status(&alice, 2).await,
            401,
            "alice is still not a user while the proposal is open"
        );
        let r = ballot(&conn, &b, &id, VOTE_YES).await;
        let v = ok_json(&r, "second vote");
        assert_eq!(v["proposalState"], "Accepted", "{v}");
        assert_eq!(v["finalVotes"], json!({a.id.clone(): true, b.id.clone(): true}));
        gov_txids.push(r.txid.clone().expect("governance answers carry a TxID"));
        assert_eq!(log_status(&alice, 3).await, 200, "alice is a user now");
        let read = alice.get("/app/log/private?id=3").await.unwrap();
        assert_eq!(read.json().unwrap()["msg"], "message 3");

        // remove_user rejected by a majority: alice stays.
        let v = propose(
            &conn,
            &c,
            &json!({"actions": [{"name": "remove_user", "args": {"user_id": alice_id}}]}),
        )
        .await;
        let id = id_of(&v);
        proposal_ids.push(id.clone());
        let v = vote(&conn, &b, &id, false).await;
        assert_eq!(
            v["proposalState"], "Open",
            "one vote against of three does not reject: {v}"
        );
        let v = vote(&conn, &c, &id, false).await;
        assert_eq!(v["proposalState"], "Rejected", "{v}");
        assert_eq!(
            log_status(&alice, 4).await,
            200,
            "a rejected removal leaves the user in place"
        );
        let users = conn.get(&format!("/gov/members/proposals/{id}?{API}")).await.unwrap();
        assert_eq!(users.json().unwrap()["proposalState"], "Rejected");

        // set_constitution: c gets a veto; the change takes effect for the next proposal.
        let r = conn.get(&format!("/gov/service/constitution?{API}")).await.unwrap();
        assert_eq!(r.status, 200);
        let default_constitution = String::from_utf8(r.body.to_vec()).unwrap();
        let veto = with_veto(&default_constitution, &c.id);
        let v = propose(
            &conn,
            &a,
            &json!({"actions": [{"name": "set_constitution", "args": {"constitution": veto}}]}),
        )
        .await;
        let id = id_of(&v);
        proposal_ids.push(id.clone());
        vote(&conn, &a, &id, true).await;
        let r = ballot(&conn, &b, &id, VOTE_YES).await;
        assert_eq!(ok_json(&r, "constitution vote")["proposalState"], "Accepted");
        gov_txids.push(r.txid.clone().expect("governance answers carry a TxID"));
        let r = conn.get(&format!("/gov/service/constitution?{API}")).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&r.body), veto, "the constitution was replaced");

        // A false vote of another member still leaves a proposal Open; one of c rejects it outright.
        let (bob_cert, bob_key) = keygen(&dir, "bob");
        let v = propose(&conn, &a, &set_user(&std::fs::read_to_string(&bob_cert).unwrap())).await;
        let id = id_of(&v);
        proposal_ids.push(id.clone());
        assert_eq!(vote(&conn, &b, &id, false).await["proposalState"], "Open");
        assert_eq!(vote(&conn, &a, &id, true).await["proposalState"], "Open");
        let r = ballot(&conn, &c, &id, VOTE_NO).await;
        let v = ok_json(&r, "veto");
        assert_eq!(
            v["proposalState"], "Rejected",
            "c's veto rejects under the new constitution: {v}"
        );
        gov_txids.push(r.txid.clone().expect("governance answers carry a TxID"));
        let bob = connect_as(&node, &bob_cert, &bob_key).await;
        assert_eq!(log_status(&bob, 1).await, 401, "the vetoed user was not added");

        // 6. Every governance transaction is in the ledger, which CCF's read_ledger.py and our audit verify.
        // Application writes after the last governance transaction fill its chunk, so a committed chunk holds it.
        let seqno = |txid: &str| -> u64 { txid.split_once('.').unwrap().1.parse().unwrap() };
        let last_seqno = gov_txids.iter().map(|t| seqno(t)).max().unwrap();
        let ledger = node.ledger_dir();
        let committed_chunks = || {
            let mut chunks: Vec<(u64, u64, PathBuf)> = std::fs::read_dir(&ledger)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter_map(|p| {
                    let name = p
                        .file_name()?
                        .to_str()?
                        .strip_prefix("ledger_")?
                        .strip_suffix(".committed")?;
                    let (start, end) = name.split_once('-')?;
                    Some((start.parse().ok()?, end.parse().ok()?, p.clone()))
                })
                .collect();
            chunks.sort();
            chunks
        };
        let user0 = node.connect(true).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        for i in 0u64.. {
            if committed_chunks().iter().any(|(_, end, _)| *end >= last_seqno) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no committed chunk reached seqno {last_seqno}"
            );
            let r = user0
                .post_json("/app/log/public", &json!({"id": 1000 + i, "msg": "x".repeat(1024)}))
                .await
                .unwrap();
            assert_eq!(r.status, 200);
            node.wait_committed(&user0, &r.txid.unwrap()).await;
        }
        drop((conn, alice, bob, user0));
        node.stop();
        let chunks: Vec<PathBuf> = committed_chunks().into_iter().map(|(_, _, p)| p).collect();
        assert!(chunks.len() >= 2, "expected several committed chunks: {chunks:?}");
        let mut ledger_bytes = vec![];
        for p in &chunks {
            ledger_bytes.extend(std::fs::read(p).unwrap());
        }
        let holds = |needle: &[u8]| ledger_bytes.windows(needle.len()).any(|w| w == needle);
        for table in [
            "public:ccf.gov.proposals_info",
            "public:ccf.gov.constitution",
            "public:ccf.gov.cose_history",
        ] {
            assert!(holds(table.as_bytes()), "{table} is not in the committed ledger");
        }
        for id in &proposal_ids {
            assert!(holds(id.as_bytes()), "proposal {id} is not in the committed ledger");
        }
        let (ok, out) = run_consort(&["ledger", "audit", ledger.to_str().unwrap()]);
        assert!(ok, "consort ledger audit failed: {out}");
        if let Some(venv) = ccf_venv() {
            let (ok, out) = read_ledger_py(&venv, &ledger);
            assert!(
                ok && out.contains("Ledger verification complete"),
                "read_ledger.py failed:\n{out}"
            );
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------------------------------
// 4. Refusals.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_tampered_malformed_unknown_and_mistyped_requests_are_refused() {
    bounded(async {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("n0");
        std::fs::create_dir_all(&dir).unwrap();
        let second = Member::generate(&dir, "second");
        let mut node = TestNode::configure(&dir, |cfg| cfg.start.members.push(second.identity()));
        node.start().await;
        let member = Member::load(node.dir.join("member0_cert.pem"), node.dir.join("member0_privk.pem"));
        let user0_id = cert_id_of(&std::fs::read_to_string(&node.user_cert).unwrap());
        let conn = node.connect(false).await;
        let create = "/gov/members/proposals:create";
        let proposals = || async { get_json(&conn, "/gov/members/proposals").await };

        // The same signed proposal twice: the second is a replay.
        let body = member.sign(
            MsgType::Proposal,
            None,
            set_user_data(&user0_id, 1).to_string().as_bytes(),
        );
        let first = ok_json(&post_cose(&conn, create, body.clone()).await, "first submission");
        let id = id_of(&first);
        let before = proposals().await;
        assert_eq!(before["value"].as_array().unwrap().len(), 1, "{before}");
        let msg = refused(
            &post_cose(&conn, create, body).await,
            400,
            "ProposalReplay",
            "replayed proposal",
        );
        assert!(msg.contains(&id), "the replay names the first proposal: {msg}");
        assert_eq!(proposals().await, before, "a replay changes nothing");

        // A ballot sent twice while the proposal is Open is idempotent (as in CCF): the second changes nothing;
        // a different ballot by the same member is refused; once the proposal closed, the same ballot is refused.
        let payload = json!({ "ballot": VOTE_YES }).to_string();
        let ballot_body = member.sign(MsgType::Ballot, Some(&id), payload.as_bytes());
        let path = format!("/gov/members/proposals/{id}/ballots/{}:submit", member.id);
        let once = ok_json(&post_cose(&conn, &path, ballot_body.clone()).await, "ballot");
        assert_eq!(once["proposalState"], "Open", "one vote of two: {once}");
        let snapshot = proposals().await;
        let twice = ok_json(&post_cose(&conn, &path, ballot_body.clone()).await, "same ballot again");
        assert_eq!(twice["ballotCount"], 1, "{twice}");
        assert_eq!(proposals().await, snapshot, "a repeated ballot changes nothing");
        let other = member.sign(
            MsgType::Ballot,
            Some(&id),
            json!({"ballot": VOTE_NO}).to_string().as_bytes(),
        );
        refused(
            &post_cose(&conn, &path, other).await,
            400,
            "VoteAlreadyExists",
            "second, different ballot",
        );
        assert_eq!(vote(&conn, &second, &id, true).await["proposalState"], "Accepted");
        let snapshot = proposals().await;
        refused(
            &post_cose(&conn, &path, ballot_body.clone()).await,
            400,
            "ProposalNotOpen",
            "ballot after close",
        );
        assert_eq!(
            proposals().await,
            snapshot,
            "a ballot replayed after the close changes nothing"
        );

        let open_id = id_of(&propose(&conn, &member, &set_user_data(&user0_id, 2)).await);
        let open_path = format!("/gov/members/proposals/{open_id}/ballots/{}:submit", member.id);
        let before = proposals().await;

        // Tampered signature: last byte of the envelope is the last byte of the signature.
        let mut tampered = member.sign(
            MsgType::Proposal,
            None,
            set_user_data(&user0_id, 3).to_string().as_bytes(),
        );
        *tampered.last_mut().unwrap() ^= 0x01;
        let msg = refused(
            &post_cose(&conn, create, tampered).await,
            401,
            "InvalidAuthenticationInfo",
            "tampered",
        );
        assert!(msg.contains("signature"), "{msg}");
        // Tampered payload under a valid signature.
        let good = member.sign(
            MsgType::Proposal,
            None,
            set_user_data(&user0_id, 4).to_string().as_bytes(),
        );
        let needle = b"\"n\":4";
        let at = good.windows(needle.len()).position(|w| w == needle).unwrap();
        let mut tampered = good.clone();
        tampered[at + 4] = b'5';
        refused(
            &post_cose(&conn, create, tampered).await,
            401,
            "InvalidAuthenticationInfo",
            "tampered payload",
        );

        // Malformed CBOR, an empty body, and a ballot signed by nobody we know.
        for (what, body) in [
            ("garbage", b"\xff\x00not cbor at all".to_vec()),
            ("empty", vec![]),
            ("truncated", good[..good.len() / 2].to_vec()),
            ("untagged array", vec![0x84, 0x40, 0xa0, 0xf6, 0x40]),
        ] {
            refused(
                &post_cose(&conn, create, body).await,
                401,
                "InvalidAuthenticationInfo",
                what,
            );
        }
        let stranger = Member::generate(&node.dir, "stranger");
        let msg = refused(
            &post_cose(
                &conn,
                create,
                stranger.sign(
                    MsgType::Proposal,
                    None,
                    set_user_data(&user0_id, 5).to_string().as_bytes(),
                ),
            )
            .await,
            401,
            "InvalidAuthenticationInfo",
            "unknown member",
        );
        assert!(msg.contains("unknown member"), "{msg}");
        let stranger_ballot = stranger.sign(MsgType::Ballot, Some(&open_id), payload.as_bytes());
        let stranger_path = format!("/gov/members/proposals/{open_id}/ballots/{}:submit", stranger.id);
        refused(
            &post_cose(&conn, &stranger_path, stranger_ballot).await,
            401,
            "InvalidAuthenticationInfo",
            "unknown member's ballot",
        );

        // Wrong message types: a ballot posted as a proposal, a proposal posted as a ballot.
        let msg = refused(
            &post_cose(&conn, create, ballot_body).await,
            401,
            "InvalidAuthenticationInfo",
            "ballot as proposal",
        );
        assert!(msg.contains("message type"), "{msg}");
        let as_ballot = member.sign(MsgType::Proposal, Some(&open_id), payload.as_bytes());
        refused(
            &post_cose(&conn, &open_path, as_ballot).await,
            401,
            "InvalidAuthenticationInfo",
            "proposal as ballot",
        );
        // A ballot whose signed proposal id differs from the URL's, and one for a proposal that does not exist.
        let elsewhere = member.sign(MsgType::Ballot, Some(&id), payload.as_bytes());
        refused(
            &post_cose(&conn, &open_path, elsewhere).await,
            400,
            "InvalidResourceName",
            "mismatched id",
        );
        let missing = "ab".repeat(32);
        let body = member.sign(MsgType::Ballot, Some(&missing), payload.as_bytes());
        let missing_path = format!("/gov/members/proposals/{missing}/ballots/{}:submit", member.id);
        refused(
            &post_cose(&conn, &missing_path, body).await,
            404,
            "ProposalNotFound",
            "missing proposal",
        );
        // A proposal the constitution does not validate, and a withdrawal by someone else than the proposer.
        let body = member.sign(MsgType::Proposal, None, br#"{"actions": [{"name": "no_such_action"}]}"#);
        refused(
            &post_cose(&conn, create, body).await,
            400,
            "ProposalFailedToValidate",
            "invalid proposal",
        );
        let r = conn
            .get(&format!("/gov/members/proposals/{}?{API}", "cd".repeat(32)))
            .await
            .unwrap();
        refused(&r, 404, "ProposalNotFound", "GET missing proposal");
        let r = conn
            .get(&format!("/gov/members/proposals/not-an-id?{API}"))
            .await
            .unwrap();
        refused(&r, 400, "InvalidResourceName", "GET bad proposal id");

        assert_eq!(proposals().await, before, "no refused request changed the proposals");
    })
    .await;
}

// ---------------------------------------------------------------------------------------------------------------
// 5. Runaway ballots.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_ballots_fail_with_a_named_reason_and_the_node_keeps_serving() {
    bounded(async {
        let tmp = tempfile::tempdir().unwrap();
        let mut node = TestNode::configure(&tmp.path().join("n0"), |_| {});
        node.start().await;
        let member = Member::load(node.dir.join("member0_cert.pem"), node.dir.join("member0_privk.pem"));
        let user0_id = cert_id_of(&std::fs::read_to_string(&node.user_cert).unwrap());
        let conn = node.connect(false).await;
        let user = node.connect(true).await;

        let cases = [
            (
                "export function vote (proposal, proposerId) { while (true) {} }",
                consort_gov::TIMEOUT_REASON,
            ),
            (
                "export function vote (proposal, proposerId) { const a = []; while (true) a.push(new Array(100000).fill(proposerId)); }",
                "out of memory",
            ),
        ];
        for (n, (script, reason)) in cases.into_iter().enumerate() {
            let id = id_of(&propose(&conn, &member, &set_user_data(&user0_id, n as u64)).await);
            // The node keeps answering others while the ballot runs.
            let (r, commit) = tokio::join!(ballot(&conn, &member, &id, script), async {
                let other = node.connect(false).await;
                other.get("/node/commit").await.unwrap()
            });
            assert_eq!(commit.status, 200);
            let v = ok_json(&r, "runaway ballot");
            assert_eq!(v["proposalState"], "Open", "a failed ballot counts as no vote: {v}");
            let failure = &v["voteFailures"][&member.id]["reason"];
            assert!(
                failure.as_str().is_some_and(|f| f.contains(reason)),
                "the answer names the failure ({reason}): {v}"
            );
        }

        // The node still serves: a normal proposal passes and the logging app answers.
        let id = id_of(&propose(&conn, &member, &set_user_data(&user0_id, 9)).await);
        assert_eq!(vote(&conn, &member, &id, true).await["proposalState"], "Accepted");
        assert_eq!(log_status(&user, 1).await, 200);
        let r = conn.get("/node/commit").await.unwrap();
        assert_eq!(r.status, 200);
        assert!(r.json().unwrap()["transaction_id"].is_string());
    })
    .await;
}

// ---------------------------------------------------------------------------------------------------------------
// 7. The `consort gov` CLI, and member activation.

/// Runs `consort gov <args>` against `node` as the member with `cert`/`key`; returns (success, stdout, stderr).
fn consort_gov(node: &TestNode, cert: &Path, key: &Path, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(consort_bin());
    cmd.args(["gov", "--address", &node.address])
        .arg("--service-cert")
        .arg(node.dir.join("service_cert.pem"))
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .args(args);
    let out = run_bounded(cmd, TOOL_TIMEOUT);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The CLI's JSON output; panics (with the output) if it failed or printed something else.
fn cli_json(out: (bool, String, String), what: &str) -> Value {
    let (ok, stdout, stderr) = out;
    assert!(ok, "consort gov {what} failed: {stdout}{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("consort gov {what}: not JSON ({e}): {stdout}{stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consort_gov_cli_proposes_votes_lists_shows_withdraws_and_activates_a_member() {
    bounded(async {
        let tmp = tempfile::tempdir().unwrap();
        let mut node = TestNode::configure(&tmp.path().join("n0"), |_| {});
        node.start().await;
        let dir = node.dir.clone();
        let (m0_cert, m0_key) = (dir.join("member0_cert.pem"), dir.join("member0_privk.pem"));
        let m0_id = cert_id_of(&std::fs::read_to_string(&m0_cert).unwrap());
        let newcomer = Member::generate(&dir, "newcomer");
        let conn = node.connect(false).await;
        let gov = |args: &[&str]| consort_gov(&node, &m0_cert, &m0_key, args);

        // propose set_member, then vote for it.
        let proposal = dir.join("set_member.json");
        let set_member = json!({"actions": [{"name": "set_member", "args": {"cert": newcomer.cert_pem()}}]});
        std::fs::write(&proposal, set_member.to_string()).unwrap();
        let v = cli_json(gov(&["propose", proposal.to_str().unwrap()]), "propose");
        assert_eq!(v["proposalState"], "Open", "{v}");
        assert_eq!(v["proposerId"], m0_id.as_str());
        let id = id_of(&v);
        let listed = cli_json(gov(&["list"]), "list");
        assert!(
            listed["value"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["proposalId"] == id.as_str()),
            "{listed}"
        );
        let v = cli_json(gov(&["vote", &id, "--accept"]), "vote");
        assert_eq!(v["proposalState"], "Accepted", "{v}");
        let v = cli_json(gov(&["show", &id]), "show");
        assert_eq!(v["proposalState"], "Accepted", "{v}");
        assert_eq!(v["finalVotes"][&m0_id], true, "{v}");
        assert_eq!(member_status(&conn, &newcomer.id).await.as_deref(), Some("Accepted"));

        // An Accepted member may not propose yet...
        let early = dir.join("early.json");
        std::fs::write(&early, set_user_data(&"00".repeat(32), 1).to_string()).unwrap();
        let (ok, stdout, stderr) = consort_gov(
            &node,
            &newcomer.cert,
            &newcomer.key_path,
            &["propose", early.to_str().unwrap()],
        );
        assert!(!ok, "an Accepted member proposed: {stdout}{stderr}");
        assert!(stdout.contains("AuthorizationFailed"), "{stdout}{stderr}");
        // ...until it acks the state digest, which makes it Active.
        let (ok, stdout, stderr) = consort_gov(&node, &newcomer.cert, &newcomer.key_path, &["ack"]);
        assert!(ok, "consort gov ack failed: {stdout}{stderr}");
        assert_eq!(member_status(&conn, &newcomer.id).await.as_deref(), Some("Active"));
        let r = conn
            .get(&format!("/gov/members/state-digests/{}?{API}", newcomer.id))
            .await
            .unwrap();
        assert_eq!(ok_json(&r, "state digest")["memberId"], newcomer.id.as_str());

        // The new Active member proposes; withdraws via the CLI; a ballot from a file and a reject vote.
        let user0_id = cert_id_of(&std::fs::read_to_string(&node.user_cert).unwrap());
        let proposal = dir.join("user_data.json");
        std::fs::write(&proposal, set_user_data(&user0_id, 7).to_string()).unwrap();
        let newcomer_gov = |args: &[&str]| consort_gov(&node, &newcomer.cert, &newcomer.key_path, args);
        let id = id_of(&cli_json(
            newcomer_gov(&["propose", proposal.to_str().unwrap()]),
            "propose as newcomer",
        ));
        let v = cli_json(newcomer_gov(&["withdraw", &id]), "withdraw");
        assert_eq!(v["proposalState"], "Withdrawn", "{v}");
        let v = cli_json(gov(&["show", &id]), "show withdrawn");
        assert_eq!(v["proposalState"], "Withdrawn", "{v}");
        let (ok, stdout, _) = gov(&["vote", &id, "--accept"]);
        assert!(
            !ok && stdout.contains("ProposalNotOpen"),
            "voting on a withdrawn proposal: {stdout}"
        );

        // Two Active members now: one vote in favour (from a ballot file) and one against rejects nothing yet...
        let id = id_of(&cli_json(gov(&["propose", proposal.to_str().unwrap()]), "propose"));
        let ballot_file = dir.join("ballot.js");
        std::fs::write(
            &ballot_file,
            "export function vote (proposal, proposerId) { return JSON.parse(proposal).actions.length === 1 }",
        )
        .unwrap();
        let v = cli_json(
            gov(&["vote", &id, "--ballot", ballot_file.to_str().unwrap()]),
            "vote --ballot",
        );
        assert_eq!(v["proposalState"], "Open", "one of two is not a majority: {v}");
        let v = cli_json(newcomer_gov(&["vote", &id, "--reject"]), "vote --reject");
        assert_eq!(v["proposalState"], "Rejected", "{v}");
        assert_eq!(
            v["finalVotes"],
            json!({m0_id.clone(): true, newcomer.id.clone(): false}),
            "{v}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gov_reads_unknown_paths_wrong_methods_and_encoded_paths() {
    bounded(async {
        let tmp = tempfile::tempdir().unwrap();
        let mut node = TestNode::configure(&tmp.path().join("n0"), |_| {});
        node.start().await;
        let conn = node.connect(false).await;
        let info = get_json(&conn, "/gov/service/info").await;
        assert_eq!(info["status"], "Open", "{info}");
        let nodes = get_json(&conn, "/gov/service/nodes").await;
        assert_eq!(nodes["value"].as_array().unwrap().len(), 1, "{nodes}");
        get_json(&conn, "/gov/service/join-policy").await;
        let r = conn.get(&format!("/gov/no/such/thing?{API}")).await.unwrap();
        refused(&r, 404, "ResourceNotFound", "unknown path");
        // A known path with another method: 405, as CCF answers.
        let r = conn
            .request("PUT", &format!("/gov/members/proposals?{API}"), None)
            .await
            .unwrap();
        refused(&r, 405, "UnsupportedHttpVerb", "PUT on the proposals list");
        let r = conn.get(&format!("/gov/members/proposals:create?{API}")).await.unwrap();
        refused(&r, 405, "UnsupportedHttpVerb", "GET on proposals:create");
        // A client that percent-encodes the colon of `proposals:create` reaches the same endpoint.
        let member = Member::load(node.dir.join("member0_cert.pem"), node.dir.join("member0_privk.pem"));
        let user0_id = cert_id_of(&std::fs::read_to_string(&node.user_cert).unwrap());
        let body = member.sign(
            MsgType::Proposal,
            None,
            set_user_data(&user0_id, 1).to_string().as_bytes(),
        );
        let v = ok_json(
            &post_cose(&conn, "/gov/members/proposals%3Acreate", body).await,
            "encoded colon",
        );
        let id = id_of(&v);
        assert_eq!(vote(&conn, &member, &id, true).await["proposalState"], "Accepted");
        let r = conn
            .get(&format!("/gov/members/proposals/{id}/ballots/{}?{API}", member.id))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(
            String::from_utf8_lossy(&r.body),
            VOTE_YES,
            "the ballot is served as submitted"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_api_version_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = common::TestNode::configure(&tmp.path().join("n0"), |_| {});
    node.start().await;
    let conn = node.connect(false).await;
    let r = conn.get("/gov/members/proposals?api-version=2024-07-01").await.unwrap();
    assert_eq!(r.status, 200);
    let r = conn.get("/gov/members/proposals?api-version=1999-01-01").await.unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.json().unwrap()["error"]["code"], "UnsupportedApiVersion");
    node.stop();
}

/// Names of the complete (closed) ledger chunks in `dir`.
fn complete_chunks(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("ledger_") && n.contains('-'))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_ledger_chunk_closes_the_chunk_at_the_next_signature() {
    bounded(async {
        let tmp = tempfile::tempdir().unwrap();
        // A large threshold: only the proposal can close a chunk.
        let mut node = TestNode::configure(&tmp.path().join("n0"), |c| c.ledger.chunk_threshold_bytes = 1 << 30);
        node.start().await;
        let member = Member::load(node.dir.join("member0_cert.pem"), node.dir.join("member0_privk.pem"));
        let conn = node.connect(false).await;
        let ledger = node.ledger_dir();
        assert!(complete_chunks(&ledger).is_empty(), "{:?}", complete_chunks(&ledger));

        let proposal = serde_json::json!({"actions": [{"name": "trigger_ledger_chunk"}]});
        let id = id_of(&propose(&conn, &member, &proposal).await);
        let v = vote(&conn, &member, &id, true).await;
        assert_eq!(v["proposalState"], "Accepted", "{v}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while complete_chunks(&ledger).is_empty() {
            assert!(
                Instant::now() < deadline,
                "no chunk was closed after trigger_ledger_chunk"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Writes go on in a new chunk, and the ledger still verifies.
        let user = node.connect(true).await;
        let r = user
            .post_json("/app/log/private", &serde_json::json!({"id": 1, "msg": "after"}))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        node.wait_committed(&user, r.txid.as_deref().unwrap()).await;
        assert_eq!(complete_chunks(&ledger).len(), 1);
        node.stop();
        let (ok, out) = run_consort(&["ledger", "audit", ledger.to_str().unwrap()]);
        assert!(ok, "{out}");
    })
    .await;
}
