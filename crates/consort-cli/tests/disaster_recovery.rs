//! Disaster recovery end to end, with CCF's own tools: three recovery members (keys from `keygenerator.sh
//! --gen-enc-key`, threshold 2) and a fourth without an encryption key; private and public entries written under
//! three ledger secrets (two rekeys); the node killed; `consort node recover` on a copy of its ledger directory; the
//! members open the recovered service and submit shares with CCF's `submit_recovery_share.sh`: one share leaves it
//! waiting, the second opens it, every entry reads back, an old transaction's receipt verifies against the new
//! service certificate through `service_endorsements` (`ccf.receipt`), and `read_ledger.py` and
//! `verify_ledger_secrets_chain.py` accept the recovered ledger. Wrong, corrupted and non-member shares are refused;
//! a copy with one flipped byte in a private domain does not recover.

mod common;

use base64::Engine as _;
use common::*;
use consort_node::config::{IdentityConfig, NodeConfig};
use consort_node::net::client::{Connection, Protocol};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// Entries written under each of the three ledger secrets, private and public.
const PER_SECRET: u64 = 15;

struct Proc {
    dir: PathBuf,
    config: PathBuf,
    address: String,
    child: Option<Child>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        kill_child(&mut self.child);
    }
}

impl Proc {
    fn configure(root: &Path, name: &str, members: &[IdentityConfig]) -> Proc {
        Self::configure_joining(root, name, members, None)
    }

    /// A node that joins the service at `join` (address, service certificate) when started with `join`.
    fn configure_joining(root: &Path, name: &str, members: &[IdentityConfig], join: Option<(&str, &Path)>) -> Proc {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut cfg = NodeConfig::default();
        let address = format!("127.0.0.1:{}", free_port());
        cfg.network.rpc_address = address.clone();
        cfg.network.node_to_node_address = Some(format!("127.0.0.1:{}", free_port()));
        cfg.ledger.signature_interval_ms = 20;
        cfg.ledger.chunk_threshold_bytes = 16 * 1024;
        cfg.start.users = vec![IdentityConfig {
            cert: root.join("user0_cert.pem"),
            encryption_public_key: None,
            data: None,
        }];
        cfg.start.members = members.to_vec();
        cfg.start.recovery_threshold = 2;
        if let Some((target, cert)) = join {
            cfg.join.target = Some(target.to_string());
            cfg.join.service_cert = Some(cert.to_path_buf());
        }
        let config = dir.join("node.toml");
        std::fs::write(&config, cfg.to_toml()).unwrap();
        Proc {
            dir,
            config,
            address,
            child: None,
        }
    }

    fn cert(&self) -> PathBuf {
        self.dir.join("service_cert.pem")
    }

    async fn connect(&self, root: &Path, as_user: bool) -> Option<Connection> {
        let service = std::fs::read_to_string(self.cert()).ok()?;
        let cert = std::fs::read_to_string(root.join("user0_cert.pem")).unwrap();
        let key = std::fs::read_to_string(root.join("user0_privk.pem")).unwrap();
        let tls = consort_node::net::tls::client_config(&service, as_user.then_some((&*cert, &*key))).ok()?;
        let fut = Connection::connect(&self.address, tls, Protocol::Http1);
        tokio::time::timeout(Duration::from_secs(5), fut).await.ok()?.ok()
    }

    async fn get_json(&self, root: &Path, path: &str) -> Option<serde_json::Value> {
        let c = self.connect(root, false).await?;
        c.get(path).await.ok()?.json().ok()
    }

    async fn service_status(&self, root: &Path) -> Option<String> {
        let v = self.get_json(root, "/gov/service/info?api-version=2024-07-01").await?;
        v["status"].as_str().map(str::to_owned)
    }

    async fn wait_status(&mut self, root: &Path, want: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("{} exited with {status}: {}", self.dir.display(), self.log());
            }
            if self.service_status(root).await.as_deref() == Some(want) {
                return;
            }
            assert!(Instant::now() < deadline, "no {want} within {WAIT:?}: {}", self.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("err.log")).unwrap_or_default();
        log.lines().rev().take(20).collect::<Vec<_>>().join("\n")
    }

    /// member0 proposes `actions`; member0, member1 and member2 vote for them as needed. Panics if a step fails.
    fn pass(&self, root: &Path, actions: serde_json::Value) -> serde_json::Value {
        self.try_pass(root, actions).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Self::pass`], returning the failing step's output instead.
    fn try_pass(&self, root: &Path, actions: serde_json::Value) -> Result<serde_json::Value, String> {
        let file = root.join("proposal.json");
        std::fs::write(&file, serde_json::json!({ "actions": actions }).to_string()).unwrap();
        let gov = |m: &str, cmd: &[&str]| {
            let (c, k) = (root.join(format!("{m}_cert.pem")), root.join(format!("{m}_privk.pem")));
            let cert = self.cert();
            let mut args = vec!["gov", "--address", &self.address, "--service-cert"];
            let (cert, c, k) = (cert.to_str().unwrap(), c.to_str().unwrap(), k.to_str().unwrap());
            args.extend_from_slice(&[cert, "--cert", c, "--key", k]);
            args.extend_from_slice(cmd);
            let (ok, out) = run_consort(&args);
            if !ok {
                return Err(format!("{cmd:?}: {out}"));
            }
            serde_json::from_str::<serde_json::Value>(&out[out.find('{').unwrap_or(0)..])
                .map_err(|e| format!("{e}: {out}"))
        };
        // The same signed content twice within a second is refused as a replay (the rekeys are identical).
        std::thread::sleep(Duration::from_millis(1100));
        let v = gov("member0", &["propose", file.to_str().unwrap()])?;
        if v["proposalState"] == "Accepted" {
            return Ok(v);
        }
        let id = v["proposalId"].as_str().unwrap().to_string();
        // A majority of the four members: ballots by member0, member1 and member2.
        let mut v = v;
        for m in ["member0", "member1", "member2"] {
            v = gov(m, &["vote", &id, "--accept"])?;
            if v["proposalState"] != "Open" {
                break;
            }
        }
        Ok(v)
    }
}

fn keygenerator(venv: &Path, root: &Path, name: &str, enc: bool) {
    let mut cmd = Command::new("bash");
    cmd.arg(venv.join("bin/keygenerator.sh"))
        .args(["--name", name])
        .current_dir(root);
    if enc {
        cmd.arg("--gen-enc-key");
    }
    let out = run_bounded(cmd, TOOL_TIMEOUT);
    assert!(
        out.status.success(),
        "keygenerator.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn write(conn: &Connection, kind: &str, id: u64) -> String {
    let body = serde_json::json!({"id": id, "msg": format!("{kind} message {id}")});
    let r = conn.post_json(&format!("/app/log/{kind}"), &body).await.unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.txid.unwrap()
}

async fn wait_committed(conn: &Connection, txid: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let r = conn.get(&format!("/app/tx?transaction_id={txid}")).await.unwrap();
        if r.json().unwrap()["status"] == "Committed" {
            return;
        }
        assert!(Instant::now() < deadline, "{txid} not committed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Runs CCF's `submit_recovery_share.sh` as member `m` against `node`; returns (success, output).
fn submit_with_ccf_script(venv: &Path, root: &Path, node: &Proc, m: &str) -> (bool, String) {
    let mut cmd = Command::new("bash");
    let path = format!(
        "{}:{}",
        venv.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    cmd.env("PATH", path)
        .arg(venv.join("bin/submit_recovery_share.sh"))
        .arg(format!("https://{}", node.address))
        .arg("--member-enc-privk")
        .arg(root.join(format!("{m}_enc_privk.pem")))
        .arg("--member-id-privk")
        .arg(root.join(format!("{m}_privk.pem")))
        .arg("--member-id-cert")
        .arg(root.join(format!("{m}_cert.pem")))
        .args(["--api-version", "2024-07-01", "--cacert"])
        .arg(node.cert());
    let out = run_bounded(cmd, TOOL_TIMEOUT);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// member `m`'s share as the recovered node serves it, decrypted with its encryption key.
async fn decrypted_share(root: &Path, node: &Proc, m: &str) -> Vec<u8> {
    let cert = std::fs::read_to_string(root.join(format!("{m}_cert.pem"))).unwrap();
    let id = consort_crypto::ParsedCert::from_pem(&cert).unwrap().cert_id();
    let v = node
        .get_json(
            root,
            &format!("/gov/recovery/encrypted-shares/{id}?api-version=2024-07-01"),
        )
        .await
        .unwrap();
    let sealed = B64.decode(v["encryptedShare"].as_str().unwrap()).unwrap();
    let key = std::fs::read_to_string(root.join(format!("{m}_enc_privk.pem"))).unwrap();
    consort_crypto::oaep::decrypt(&key, &sealed).unwrap()
}

/// Submits `share` signed by member `signer` to member `path_member`'s endpoint; returns (status, body).
async fn submit_signed(root: &Path, node: &Proc, signer: &str, path_member: &str, share: &[u8]) -> (u16, String) {
    let cert = std::fs::read_to_string(root.join(format!("{signer}_cert.pem"))).unwrap();
    let key = std::fs::read_to_string(root.join(format!("{signer}_privk.pem"))).unwrap();
    let id = consort_crypto::ParsedCert::from_pem(&cert).unwrap().cert_id();
    let key = consort_crypto::SigningKey::from_pem(&key).unwrap();
    let payload = serde_json::json!({"share": B64.encode(share)}).to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let body = consort_gov::sign_gov_request(
        &key,
        &id,
        consort_gov::MsgType::RecoveryShare,
        now,
        None,
        payload.as_bytes(),
    );
    let conn = node.connect(root, false).await.unwrap();
    let path_cert = std::fs::read_to_string(root.join(format!("{path_member}_cert.pem"))).unwrap();
    let path_id = consort_crypto::ParsedCert::from_pem(&path_cert).unwrap().cert_id();
    let path = format!("/gov/recovery/members/{path_id}:recover?api-version=2024-07-01");
    let r = conn
        .request_typed("POST", &path, Some(("application/cose", body)))
        .await
        .unwrap();
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_whose_node_is_lost_is_recovered_from_a_ledger_copy_with_two_of_three_shares() {
    let Some(venv) = ccf_venv() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    keygen(root, "user0");
    let mut members = Vec::new();
    for i in 0..3 {
        keygenerator(&venv, root, &format!("member{i}"), true);
        members.push(IdentityConfig {
            cert: root.join(format!("member{i}_cert.pem")),
            encryption_public_key: Some(root.join(format!("member{i}_enc_pubk.pem"))),
            data: None,
        });
    }
    keygenerator(&venv, root, "member3", false);
    members.push(IdentityConfig {
        cert: root.join("member3_cert.pem"),
        encryption_public_key: None,
        data: None,
    });

    // The old service: opened by the members, entries under three secrets.
    let mut old = Proc::configure(root, "old", &members);
    old.child = Some(spawn_node(&old.dir, "start", &old.config));
    old.wait_status(root, "Opening").await;
    let cert = std::fs::read_to_string(old.cert()).unwrap();
    let opened = old.pass(
        root,
        serde_json::json!([{"name": "transition_service_to_open", "args": {"next_service_identity": cert}}]),
    );
    assert_eq!(opened["proposalState"], "Accepted", "{opened}");
    old.wait_status(root, "Open").await;
    let user = old.connect(root, true).await.unwrap();
    let mut txids = Vec::new();
    for phase in 0..3 {
        if phase > 0 {
            old.pass(root, serde_json::json!([{"name": "trigger_ledger_rekey"}]));
        }
        for id in phase * PER_SECRET..(phase + 1) * PER_SECRET {
            txids.push((id, write(&user, "private", id).await));
            write(&user, "public", id).await;
        }
    }
    let last = txids.last().unwrap().1.clone();
    wait_committed(&user, &last).await;
    let old_receipt_tx = txids[3].1.clone();
    drop(user);
    kill_child(&mut old.child);

    // A copy with one flipped byte in the private domain of a committed entry does not recover.
    let damaged = Proc::configure(root, "damaged", &members);
    copy_dir(&old.dir.join("ledger"), &damaged.dir.join("ledger"));
    let target: u64 = txids[PER_SECRET as usize + 2]
        .1
        .split('.')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    flip_private_byte(&damaged.dir.join("ledger"), target);
    let mut cmd = Command::new(consort_bin());
    cmd.args(["node", "recover", "--config"]).arg(&damaged.config);
    let out = run_bounded(cmd, Duration::from_secs(60));
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "a damaged ledger recovered");
    let from: u64 = text
        .split("from seqno ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    let at: u64 = text
        .split("seqno ")
        .nth(1)
        .and_then(|t| t.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        from <= target && target <= at,
        "damage at {target} reported as {from}..{at}: {text}"
    );
    // The audit of the chunk files names the damaged transaction itself.
    assert!(text.contains("the old ledger is damaged: transaction"), "{text}");
    assert!(
        text.contains(&format!(".{target} in ledger_")),
        "the damaged transaction {target} is named: {text}"
    );

    // The recovered service, on a clean copy.
    let mut new = Proc::configure(root, "new", &members);
    copy_dir(&old.dir.join("ledger"), &new.dir.join("ledger"));
    new.child = Some(spawn_node(&new.dir, "recover", &new.config));
    new.wait_status(root, "Recovering").await;
    // A restart (as `node start`) continues the recovery from the sealed record.
    kill_child(&mut new.child);
    new.child = Some(spawn_node(&new.dir, "start", &new.config));
    new.wait_status(root, "Recovering").await;
    let state = new.get_json(root, "/node/state").await.unwrap();
    assert_eq!(state["state"], "PartOfPublicNetwork", "{state}");
    assert_eq!(state["recovery"]["stage"]["stage"], "WaitingForShares", "{state}");
    let user = new.connect(root, true).await.unwrap();
    let r = user.get("/app/log/private?id=1").await.unwrap();
    assert_eq!(r.status, 503, "the app waits for the old private state");

    // The old service's recovery-shares record must stay as it is until the private state is back.
    let rekey = new.try_pass(root, serde_json::json!([{"name": "trigger_ledger_rekey"}]));
    assert!(
        matches!(&rekey, Err(out) if out.contains("while the service recovers")),
        "{rekey:?}"
    );
    // Opening needs the identity the old ledger was signed under.
    let next = std::fs::read_to_string(new.cert()).unwrap();
    let wrong = new.try_pass(
        root,
        serde_json::json!([{"name": "transition_service_to_open",
        "args": {"previous_service_identity": next, "next_service_identity": next}}]),
    );
    let refused = match &wrong {
        Err(out) => out.contains("previous_service_identity"),
        Ok(v) => v["proposalState"] == "Failed",
    };
    assert!(refused, "{wrong:?}");
    assert_eq!(new.service_status(root).await.as_deref(), Some("Recovering"));
    new.pass(
        root,
        serde_json::json!([{"name": "transition_service_to_open",
        "args": {"previous_service_identity": cert, "next_service_identity": next}}]),
    );
    new.wait_status(root, "WaitingForRecoveryShares").await;

    // Refused shares: corrupted, someone else's, from a member with no share.
    let mut bad = decrypted_share(root, &new, "member0").await;
    bad[5] ^= 1;
    let (status, body) = submit_signed(root, &new, "member0", "member0", &bad).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("InvalidShare"), "{body}");
    let share1 = decrypted_share(root, &new, "member1").await;
    let (status, body) = submit_signed(root, &new, "member0", "member0", &share1).await;
    assert_eq!((status, body.contains("InvalidShare")), (403, true), "{body}");
    let (status, body) = submit_signed(root, &new, "member3", "member3", &share1).await;
    assert_eq!((status, body.contains("NotRecoveryMember")), (403, true), "{body}");
    let (status, body) = submit_signed(root, &new, "member3", "member1", &share1).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        new.get_json(root, "/node/state").await.unwrap()["recovery"]["submitted_shares"],
        0
    );

    // One share (CCF's script): still waiting. A second: the old private state comes back and the service opens.
    let (ok, out) = submit_with_ccf_script(&venv, root, &new, "member0");
    assert!(ok && out.contains("1/2"), "{out}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        new.service_status(root).await.as_deref(),
        Some("WaitingForRecoveryShares")
    );
    assert_eq!(
        new.get_json(root, "/node/state").await.unwrap()["recovery"]["submitted_shares"],
        1
    );
    let (ok, out) = submit_with_ccf_script(&venv, root, &new, "member2");
    assert!(ok && out.contains("2/2"), "{out}");
    new.wait_status(root, "Open").await;
    let state = new.get_json(root, "/node/state").await.unwrap();
    assert_eq!(state["state"], "PartOfNetwork", "{state}");
    for id in 0..3 * PER_SECRET {
        for kind in ["private", "public"] {
            let r = user.get(&format!("/app/log/{kind}?id={id}")).await.unwrap();
            assert_eq!(r.status, 200, "{kind} {id}: {}", String::from_utf8_lossy(&r.body));
            assert_eq!(r.json().unwrap()["msg"], format!("{kind} message {id}"), "{kind} {id}");
        }
    }
    let after = write(&user, "private", 1000).await;
    wait_committed(&user, &after).await;

    // A node that joins the recovered service reads what was written under each old secret.
    let mut joiner = Proc::configure_joining(root, "joiner", &members, Some((&new.address, &new.cert())));
    joiner.child = Some(spawn_node(&joiner.dir, "join", &joiner.config));
    let id_file = joiner.dir.join("joining_node_id");
    let deadline = Instant::now() + WAIT;
    let joiner_id = loop {
        let id = std::fs::read_to_string(&id_file).unwrap_or_default();
        let pending = new.get_json(root, "/node/network/nodes").await.is_some_and(|v| {
            v["nodes"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|n| n["node_id"] == id.as_str() && n["status"] == "Pending")
            })
        });
        if !id.is_empty() && pending {
            break id;
        }
        assert!(Instant::now() < deadline, "the joiner is not Pending: {}", joiner.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    new.pass(
        root,
        serde_json::json!([{"name": "transition_node_to_trusted", "args": {"node_id": joiner_id}}]),
    );
    for id in [0, PER_SECRET + 1, 2 * PER_SECRET + 2] {
        let deadline = Instant::now() + WAIT;
        loop {
            let body = match joiner.connect(root, true).await {
                Some(c) => c
                    .get(&format!("/app/log/private?id={id}"))
                    .await
                    .ok()
                    .filter(|r| r.status == 200),
                None => None,
            };
            if let Some(r) = body {
                assert_eq!(r.json().unwrap()["msg"], format!("private message {id}"));
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the joiner does not serve entry {id}: {}",
                joiner.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    kill_child(&mut joiner.child);

    // An old transaction's receipt verifies against the new service certificate.
    let r = user
        .get(&format!("/app/receipt?transaction_id={old_receipt_tx}"))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let receipt: serde_json::Value = r.json().unwrap();
    assert_eq!(
        receipt["service_endorsements"].as_array().unwrap().len(),
        1,
        "{receipt}"
    );
    ccf_verifies_receipt(&venv, root, &serde_json::from_slice(&r.body).unwrap(), &new.cert());
    drop(user);
    kill_child(&mut new.child);

    // CCF's tools accept the recovered ledger, old part and new, and its chain of secrets.
    let (ok, out) = read_ledger_py(&venv, &new.dir.join("ledger"));
    assert!(ok, "read_ledger.py: {out}");
    let mut cmd = Command::new(venv.join("bin/python"));
    cmd.arg(venv.join("bin/verify_ledger_secrets_chain.py"))
        .arg(new.dir.join("ledger"))
        .arg("--uncommitted");
    let out = run_bounded(cmd, TOOL_TIMEOUT);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "verify_ledger_secrets_chain.py: {text}");
    assert!(
        text.matches("previous_ledger_secret").count() >= 3,
        "two rekeys and the recovery: {text}"
    );
}

/// Flips the last byte (private-domain ciphertext) of entry `seqno` in the chunk file holding it.
fn flip_private_byte(ledger_dir: &Path, seqno: u64) {
    let storage = consort_node::engine::storage::FsStorage::new(ledger_dir).unwrap();
    let ledger = consort_ledger::Ledger::load(storage, 1 << 20).unwrap();
    let entry = ledger.read_entry(seqno).unwrap();
    let (parsed, _) = consort_ledger::parse_entry(&entry).unwrap();
    assert!(
        !parsed.encrypted_private.is_empty(),
        "entry {seqno} has a private domain"
    );
    for f in std::fs::read_dir(ledger_dir).unwrap() {
        let path = f.unwrap().path();
        let mut data = std::fs::read(&path).unwrap();
        if let Some(at) = data.windows(entry.len()).position(|w| w == entry.as_slice()) {
            data[at + entry.len() - 1] ^= 1;
            std::fs::write(&path, data).unwrap();
            return;
        }
    }
    panic!("entry {seqno} not found in {}", ledger_dir.display());
}
