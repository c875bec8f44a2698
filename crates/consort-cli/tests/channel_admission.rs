//! The node-to-node port against its attackers, over real sockets: a node that was retired (its service-endorsed
//! certificate still valid) and a stranger holding a certificate the service key endorsed cannot get a frame
//! through; a member's forged or out-of-range Raft frames are dropped, and every node stays up and goes on
//! committing.

mod common;

use common::*;
use consort_crypto::x509::{self, CertParams};
use consort_crypto::{Curve, ParsedCert, SigningKey};
use consort_node::config::{IdentityConfig, NodeConfig};
use consort_node::engine::NodeId;
use consort_node::net::channels::{Channels, FrameKind};
use consort_node::net::client::{Connection, Protocol};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bound on every wait in this test.
const WAIT: Duration = Duration::from_secs(60);

struct Proc {
    dir: PathBuf,
    address: String,
    n2n: String,
    child: Option<Child>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        kill_child(&mut self.child);
    }
}

struct Net {
    root: PathBuf,
    nodes: Vec<Proc>,
}

impl Net {
    fn add(&mut self, join: Option<&str>) {
        let dir = self.root.join(format!("n{}", self.nodes.len()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cfg = NodeConfig::default();
        let address = format!("127.0.0.1:{}", free_port());
        let n2n = format!("127.0.0.1:{}", free_port());
        cfg.network.rpc_address = address.clone();
        cfg.network.node_to_node_address = Some(n2n.clone());
        cfg.ledger.signature_interval_ms = 20;
        let identity = |name: &str| IdentityConfig {
            cert: self.root.join(format!("{name}_cert.pem")),
            encryption_public_key: None,
            data: None,
        };
        cfg.start.users = vec![identity("user0")];
        cfg.start.members = vec![identity("member0")];
        if let Some(target) = join {
            cfg.join.target = Some(target.to_string());
            cfg.join.service_cert = Some(self.root.join("service_cert.pem"));
        }
        let config = dir.join("node.toml");
        std::fs::write(&config, cfg.to_toml()).unwrap();
        let verb = if join.is_some() { "join" } else { "start" };
        let child = Some(spawn_node(&dir, verb, &config));
        self.nodes.push(Proc {
            dir,
            address,
            n2n,
            child,
        });
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.root.join(name)).unwrap()
    }

    async fn get_json(&self, i: usize, path: &str) -> Option<serde_json::Value> {
        let tls = consort_node::net::tls::client_config(
            &self.file("service_cert.pem"),
            Some((&self.file("user0_cert.pem"), &self.file("user0_privk.pem"))),
        )
        .ok()?;
        let c = tokio::time::timeout(
            Duration::from_secs(5),
            Connection::connect(&self.nodes[i].address, tls, Protocol::Http1),
        )
        .await
        .ok()?
        .ok()?;
        let r = tokio::time::timeout(Duration::from_secs(5), c.get(path))
            .await
            .ok()?
            .ok()?;
        if path == "/node/metrics" {
            return Some(serde_json::Value::String(String::from_utf8_lossy(&r.body).to_string()));
        }
        r.json().ok()
    }

    async fn wait_for(&self, what: &str, mut check: impl AsyncFnMut() -> bool) {
        let deadline = Instant::now() + WAIT;
        while !check().await {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn primary(&self, live: &[usize]) -> Option<usize> {
        for &i in live {
            if self
                .get_json(i, "/node/consensus")
                .await
                .is_some_and(|v| v["role"] == "Primary")
            {
                return Some(i);
            }
        }
        None
    }

    /// member0 proposes `actions` to the primary and votes for them if the constitution wants a ballot.
    async fn pass_proposal(&self, live: &[usize], actions: serde_json::Value) {
        let p = self.primary(live).await.expect("a primary");
        let file = self.root.join("proposal.json");
        std::fs::write(&file, serde_json::json!({ "actions": actions }).to_string()).unwrap();
        let path = |f: &str| self.root.join(f).to_string_lossy().to_string();
        let (addr, sc, mc, mk) = (
            self.nodes[p].address.clone(),
            path("service_cert.pem"),
            path("member0_cert.pem"),
            path("member0_privk.pem"),
        );
        let gov = |cmd: &[&str]| {
            let mut args = vec![
                "gov",
                "--address",
                &addr,
                "--service-cert",
                &sc,
                "--cert",
                &mc,
                "--key",
                &mk,
            ];
            args.extend_from_slice(cmd);
            run_consort(&args)
        };
        let (ok, out) = gov(&["propose", file.to_str().unwrap()]);
        assert!(ok, "propose: {out}");
        let v: serde_json::Value = serde_json::from_str(&out[out.find('{').unwrap()..]).unwrap();
        if v["proposalState"] != "Accepted" {
            let id = v["proposalId"].as_str().unwrap().to_string();
            let (ok, out) = gov(&["vote", &id, "--accept"]);
            assert!(ok && out.contains("Accepted"), "vote: {out}");
        }
    }

    async fn node_id(&self, i: usize) -> String {
        let v = self.get_json(i, "/node/state").await.expect("node state");
        v["node_id"].as_str().unwrap().to_string()
    }

    async fn commit_seqno(&self, i: usize) -> Option<u64> {
        let v = self.get_json(i, "/node/commit").await?;
        v["transaction_id"].as_str()?.split_once('.')?.1.parse().ok()
    }

    /// Every node process is still running.
    fn assert_all_alive(&mut self, which: &[usize]) {
        for &i in which {
            let status = self.nodes[i].child.as_mut().unwrap().try_wait().unwrap();
            assert!(status.is_none(), "node {i} exited: {status:?}");
        }
    }

    /// A write through the primary, then every node in `live` reports a commit point past the one before it.
    async fn assert_commits_advance(&self, live: &[usize]) {
        let before: Vec<u64> = {
            let mut v = vec![];
            for &i in live {
                v.push(self.commit_seqno(i).await.unwrap_or(0));
            }
            v
        };
        let p = self.primary(live).await.expect("a primary");
        let tls = consort_node::net::tls::client_config(
            &self.file("service_cert.pem"),
            Some((&self.file("user0_cert.pem"), &self.file("user0_privk.pem"))),
        )
        .unwrap();
        let c = Connection::connect(&self.nodes[p].address, tls, Protocol::Http1)
            .await
            .unwrap();
        let r = c
            .post_json("/app/log/public", &serde_json::json!({"id": 7, "msg": "still here"}))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        for (k, &i) in live.iter().enumerate() {
            self.wait_for("the commit point to advance on every node", async || {
                self.commit_seqno(i).await.is_some_and(|s| s > before[k])
            })
            .await;
        }
    }

    async fn metric(&self, i: usize, name: &str) -> u64 {
        self.metric_if_up(i, name).await.expect("metrics")
    }

    /// The metric `name` of node `i`, if the node answers.
    async fn metric_if_up(&self, i: usize, name: &str) -> Option<u64> {
        let text = self.get_json(i, "/node/metrics").await?;
        let value = text
            .as_str()
            .unwrap()
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0, |v| v as u64);
        Some(value)
    }
}

/// The file `name` somewhere under `dir` (a node keeps its identity in its secrets directory).
fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
        if p.is_dir() {
            if let Some(found) = find(&p, name) {
                return Some(found);
            }
        }
    }
    None
}

/// A node-to-node channel (the node's own implementation, framing and TLS) that holds `key` and `cert_der` and
/// sends to the node `target_id` at `address`.
fn channel_as(key: &SigningKey, cert_der: &[u8], service_pem: &str, target_id: &str, address: &str) -> Arc<Channels> {
    let (ch, _incoming) = Channels::new(key, cert_der, service_pem).unwrap();
    let target_id: NodeId = target_id.parse().unwrap();
    ch.set_admitted(HashSet::from([target_id.clone()]));
    ch.set_peer(&target_id, address);
    ch
}

/// A protobuf-encoded Raft `Message` with varint fields (field number, value); zero values are left out as protobuf
/// does. Field numbers are raft-rs's eraftpb.proto: 1 type, 2 to, 3 from, 4 term, 5 log_term, 6 index, 8 commit.
fn raft_message(fields: &[(u32, u64)]) -> Vec<u8> {
    let mut out = vec![];
    let varint = |mut v: u64, out: &mut Vec<u8>| loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    };
    for &(field, value) in fields {
        if value != 0 {
            varint(u64::from(field) << 3, &mut out);
            varint(value, &mut out);
        }
    }
    out
}

const MSG_HUP: u64 = 0;
const MSG_APPEND: u64 = 3;
const MSG_HEARTBEAT: u64 = 8;
const MSG_REQUEST_VOTE: u64 = 5;

/// Sends `frames` over `ch` to `target` for a while (the channel connects in the background and drops what it
/// cannot deliver).
async fn send_for_a_while(ch: &Channels, target: &str, frames: &[(FrameKind, Vec<u8>)]) {
    let target: NodeId = target.parse().unwrap();
    for _ in 0..20 {
        for (kind, f) in frames {
            ch.send(&target, *kind, f.clone().into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn three_node_service(net: &mut Net) {
    net.add(None);
    let n0 = net.nodes[0].dir.clone();
    let root = net.root.clone();
    net.wait_for("node 0 to start", async || {
        match std::fs::read_to_string(n0.join("service_cert.pem")) {
            Ok(c) => {
                std::fs::write(root.join("service_cert.pem"), c).unwrap();
                true
            }
            Err(_) => false,
        }
    })
    .await;
    let target = net.nodes[0].address.clone();
    net.add(Some(&target));
    net.add(Some(&target));
    // Joiners on the virtual platform are never trusted automatically: member0 trusts each by its node id.
    for i in 1..3 {
        let file = net.nodes[i].dir.join("joining_node_id");
        let mut id = String::new();
        net.wait_for("a joiner to name itself", async || {
            id = std::fs::read_to_string(&file).unwrap_or_default();
            !id.is_empty()
        })
        .await;
        net.wait_for("the joiner to be Pending", async || {
            net.get_json(0, "/node/network/nodes").await.is_some_and(|v| {
                v["nodes"].as_array().is_some_and(|a| {
                    a.iter()
                        .any(|n| n["node_id"] == id.as_str() && n["status"] == "Pending")
                })
            })
        })
        .await;
        let actions = serde_json::json!([{"name": "transition_node_to_trusted", "args": {"node_id": id}}]);
        net.pass_proposal(&[0], actions).await;
    }
    net.wait_for("three voters", async || {
        net.get_json(0, "/node/consensus").await.is_some_and(|v| {
            v["peers"]
                .as_object()
                .is_some_and(|p| p.values().filter(|x| x["voter"] == true).count() == 3)
        })
    })
    .await;
    let cert = net.file("service_cert.pem");
    net.pass_proposal(
        &[0, 1, 2],
        serde_json::json!([{"name": "transition_service_to_open", "args": {"next_service_identity": cert}}]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_current_members_reach_the_node_to_node_port_and_bad_frames_are_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    keygen(&root, "user0");
    keygen(&root, "member0");
    let mut net = Net { root, nodes: vec![] };
    three_node_service(&mut net).await;
    let service_pem = net.file("service_cert.pem");
    let ids = [net.node_id(0).await, net.node_id(1).await, net.node_id(2).await];

    // A stranger whose certificate the service key endorsed (as a node admitted by a rolled-back join would hold):
    // it chains to the service, but names no member.
    let service_key =
        SigningKey::from_pem(&std::fs::read_to_string(find(&net.nodes[0].dir, "service_privk.pem").unwrap()).unwrap())
            .unwrap();
    let service_der = ParsedCert::all_from_pem(&service_pem).unwrap().remove(0).der;
    let stranger = SigningKey::generate(Curve::P384);
    let mut params = CertParams::new("CCF Node");
    params.subject_alt_names = vec!["127.0.0.1".into()];
    let stranger_cert = x509::issue(&stranger.verifying_key(), &params, &service_key, &service_der).unwrap();
    let refused_before = net.metric(0, "consort_node_channel_refused_handshakes").await;
    let ch = channel_as(&stranger, &stranger_cert.der, &service_pem, &ids[0], &net.nodes[0].n2n);
    let hup = raft_message(&[
        (1, MSG_HUP),
        (2, raft_id_of(&ids[0])),
        (3, raft_id_of(&stranger_cert_id(&stranger_cert.der))),
    ]);
    send_for_a_while(&ch, &ids[0], &[(FrameKind::Raft, hup)]).await;
    drop(ch);
    let refused = net.metric(0, "consort_node_channel_refused_handshakes").await;
    assert!(
        refused > refused_before,
        "the stranger's handshakes were not refused ({refused_before} -> {refused})"
    );

    // Retire node 2 and wait until it has left the Raft membership; it keeps its endorsed certificate.
    let retired = 2;
    net.pass_proposal(
        &[0, 1, 2],
        serde_json::json!([{"name": "remove_node", "args": {"node_id": ids[retired]}}]),
    )
    .await;
    net.wait_for("the retired node to leave the membership", async || {
        let Some(p) = net.primary(&[0, 1]).await else {
            return false;
        };
        net.get_json(p, "/node/consensus")
            .await
            .is_some_and(|v| v["peers"].get(&ids[retired]).is_none())
    })
    .await;
    let retired_key = SigningKey::from_pem(
        &std::fs::read_to_string(find(&net.nodes[retired].dir, "node_privk.pem").unwrap()).unwrap(),
    )
    .unwrap();
    let retired_cert = ParsedCert::all_from_pem(
        &std::fs::read_to_string(find(&net.nodes[retired].dir, "node_cert.pem").unwrap()).unwrap(),
    )
    .unwrap()
    .remove(0)
    .der;
    // Its certificate is still endorsed by the service key.
    let service_public = ParsedCert::from_der(&service_der).unwrap().public_key().unwrap();
    assert!(ParsedCert::from_der(&retired_cert)
        .unwrap()
        .verify_signed_by(&service_public)
        .is_ok());
    // The retired node, still running, may go on trying to reach its former peers, which refuse it after the TLS
    // handshake: it retries with a growing back-off (capped at 2 s), not in a loop.
    let window = Duration::from_secs(4);
    let refused_before = [
        net.metric(0, "consort_node_channel_refused_handshakes").await,
        net.metric(1, "consort_node_channel_refused_handshakes").await,
    ];
    let attempts_before = net.metric_if_up(retired, "consort_node_channel_connect_attempts").await;
    tokio::time::sleep(window).await;
    for (k, &i) in [0usize, 1].iter().enumerate() {
        let refused = net.metric(i, "consort_node_channel_refused_handshakes").await - refused_before[k];
        eprintln!("node {i} refused the retired node {refused} times in {window:?}");
        // A back-off whose waits are at least half of periods doubling from 20 ms fits at most 11 attempts in 4 s.
        assert!(
            refused <= 12,
            "node {i} refused the retired node {refused} times in {window:?}"
        );
    }
    if let (Some(before), Some(after)) = (
        attempts_before,
        net.metric_if_up(retired, "consort_node_channel_connect_attempts").await,
    ) {
        eprintln!(
            "the retired node made {} connection attempts in {window:?}",
            after - before
        );
        assert!(
            after - before <= 24,
            "{} attempts in {window:?} to two peers",
            after - before
        );
    }
    kill_child(&mut net.nodes[retired].child);
    let live = [0usize, 1];

    // As the retired node: handshakes with both remaining nodes fail, so none of its frames is stepped (a
    // heartbeat from it with a higher term would otherwise depose the primary).
    for &i in &live {
        let before = net.metric(i, "consort_node_channel_refused_handshakes").await;
        let view = net.get_json(i, "/node/consensus").await.unwrap()["view"]
            .as_u64()
            .unwrap_or(0);
        let ch = channel_as(&retired_key, &retired_cert, &service_pem, &ids[i], &net.nodes[i].n2n);
        let (to, from) = (raft_id_of(&ids[i]), raft_id_of(&ids[retired]));
        let vote = raft_message(&[
            (1, MSG_REQUEST_VOTE),
            (2, to),
            (3, from),
            (4, view + 100),
            (5, view + 100),
            (6, 1 << 40),
        ]);
        send_for_a_while(&ch, &ids[i], &[(FrameKind::Raft, vote)]).await;
        drop(ch);
        let after = net.metric(i, "consort_node_channel_refused_handshakes").await;
        assert!(
            after > before,
            "node {i} did not refuse the retired node ({before} -> {after})"
        );
    }
    net.assert_all_alive(&live);
    net.assert_commits_advance(&live).await;

    // As a member (node 1, Trusted and admitted): frames with a forged sender, a commit index beyond the log, a
    // term of 0, a local message type, and bytes that are no message at all. None may stop a node or change it.
    let member_key =
        SigningKey::from_pem(&std::fs::read_to_string(find(&net.nodes[1].dir, "node_privk.pem").unwrap()).unwrap())
            .unwrap();
    let member_cert =
        ParsedCert::all_from_pem(&std::fs::read_to_string(find(&net.nodes[1].dir, "node_cert.pem").unwrap()).unwrap())
            .unwrap()
            .remove(0)
            .der;
    let view = net.get_json(0, "/node/consensus").await.unwrap()["view"]
        .as_u64()
        .unwrap_or(1);
    let (to, me) = (raft_id_of(&ids[0]), raft_id_of(&ids[1]));
    let frames = vec![
        // Forged sender: claims to be the retired node, and the primary itself.
        (
            FrameKind::Raft,
            raft_message(&[
                (1, MSG_HEARTBEAT),
                (2, to),
                (3, raft_id_of(&ids[retired])),
                (4, view + 1),
            ]),
        ),
        (
            FrameKind::Raft,
            raft_message(&[(1, MSG_HEARTBEAT), (2, to), (3, to), (4, view + 1)]),
        ),
        // raft-rs's commit_to panics on a heartbeat committing past the log.
        (
            FrameKind::Raft,
            raft_message(&[(1, MSG_HEARTBEAT), (2, to), (3, me), (4, view), (8, u64::MAX)]),
        ),
        (
            FrameKind::Raft,
            raft_message(&[(1, MSG_HEARTBEAT), (2, to), (3, me), (4, view + 1), (8, 1 << 40)]),
        ),
        // Term 0 (raft-rs's local messages skip term checks), and a local message type.
        (
            FrameKind::Raft,
            raft_message(&[(1, MSG_APPEND), (2, to), (3, me), (6, 1 << 40), (8, 1 << 40)]),
        ),
        (
            FrameKind::Raft,
            raft_message(&[(1, MSG_HUP), (2, to), (3, me), (4, view)]),
        ),
        // A term beyond the ledger's 31-bit views.
        (
            FrameKind::Raft,
            raft_message(&[(1, MSG_HEARTBEAT), (2, to), (3, me), (4, 1 << 40)]),
        ),
        // Not a Raft message at all.
        (FrameKind::Raft, vec![0xff; 64]),
    ];
    let dropped_before = net.metric(0, "consort_dropped_inputs").await;
    let ch = channel_as(&member_key, &member_cert, &service_pem, &ids[0], &net.nodes[0].n2n);
    send_for_a_while(&ch, &ids[0], &frames).await;
    drop(ch);
    net.assert_all_alive(&live);
    let dropped = net.metric(0, "consort_dropped_inputs").await;
    assert!(
        dropped > dropped_before,
        "the bad frames were not counted as dropped ({dropped_before} -> {dropped})"
    );
    let after = net.get_json(0, "/node/consensus").await.unwrap();
    assert!(
        after["view"].as_u64().unwrap_or(0) < 1 << 31,
        "a forged term was adopted: {after}"
    );
    net.assert_commits_advance(&live).await;
    net.assert_all_alive(&live);
    for p in &mut net.nodes {
        stop_child(&mut p.child);
    }
}

/// The node id a certificate names (hex SHA-256 of its public key).
/// A node's Raft id, as a raw Raft message carries it.
fn raft_id_of(node_id: &str) -> u64 {
    node_id.parse::<NodeId>().expect("a node id").raft_id().get()
}

fn stranger_cert_id(der: &[u8]) -> String {
    ParsedCert::from_der(der).unwrap().key_id()
}
