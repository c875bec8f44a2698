//! The SEV-SNP side of the join policy and of the node's own platform, over real processes and sockets: members
//! govern the minimum TCB per CPU model (`add_snp_tcb_version` / `remove_snp_tcb_version`, seen in
//! `GET /gov/service/join-policy` as `snp.tcbVersions`), a malformed one is refused with the field it got wrong,
//! a node configured for SEV-SNP on a machine without `/dev/sev-guest` refuses to start, and a virtual node says
//! in its log and its quote that it gives no hardware guarantee.

mod common;

use common::TestNode;
use consort_node::config::PlatformChoice;
use consort_node::net::client::{Connection, Protocol};
use consort_node::net::tls::client_config;
use serde_json::{json, Value};

/// Runs `consort gov` as member0 of `node`; returns (success, stdout, stderr).
fn gov(node: &TestNode, args: &[&str]) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(common::consort_bin());
    cmd.args(["gov", "--address", &node.address])
        .arg("--service-cert")
        .arg(node.dir.join("service_cert.pem"))
        .arg("--cert")
        .arg(node.dir.join("member0_cert.pem"))
        .arg("--key")
        .arg(node.dir.join("member0_privk.pem"))
        .args(args);
    let out = common::run_bounded(cmd, std::time::Duration::from_secs(30));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes `actions` as a proposal file and proposes it as member0; returns (success, output).
fn propose(node: &TestNode, name: &str, actions: Value) -> (bool, String, String) {
    let file = node.dir.join(format!("{name}.json"));
    std::fs::write(&file, json!({ "actions": actions }).to_string()).unwrap();
    gov(node, &["propose", file.to_str().unwrap()])
}

/// Proposes `actions` and votes for them as member0 (the only member, so a majority); returns the final state.
fn pass(node: &TestNode, name: &str, actions: Value) -> String {
    let (ok, out, err) = propose(node, name, actions);
    assert!(ok, "propose {name}: {out}{err}");
    let proposed: Value = serde_json::from_str(&out).unwrap();
    let id = proposed["proposalId"].as_str().unwrap();
    let (ok, out, err) = gov(node, &["vote", id, "--accept"]);
    assert!(ok, "vote {name}: {out}{err}");
    let voted: Value = serde_json::from_str(&out).unwrap();
    voted["proposalState"].as_str().unwrap_or_default().to_string()
}

async fn join_policy(node: &TestNode) -> Value {
    let tls = client_config(&node.service_cert(), None).unwrap();
    let conn = Connection::connect(&node.address, tls, Protocol::Http1).await.unwrap();
    let reply = conn.get("/gov/service/join-policy").await.unwrap();
    assert_eq!(reply.status, 200);
    reply.json().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snp_tcb_versions_are_governed_and_shown_in_the_join_policy() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::configure(dir.path(), |_| {});
    node.start().await;
    assert_eq!(join_policy(&node).await["snp"]["tcbVersions"], json!({}));

    let milan = json!({"boot_loader": 3, "tee": 0, "snp": 8, "microcode": 115});
    let state = pass(
        &node,
        "add_milan",
        json!([{"name": "add_snp_tcb_version", "args": {"product": "Milan", "tcb_version": milan}}]),
    );
    assert_eq!(state, "Accepted");
    let state = pass(
        &node,
        "add_genoa_hex",
        json!([{"name": "set_snp_minimum_tcb_version_hex",
                "args": {"cpuid": "00a10f11", "tcb_version": "d315000000000004"}}]),
    );
    assert_eq!(state, "Accepted");
    let policy = join_policy(&node).await;
    assert_eq!(
        policy["snp"]["tcbVersions"],
        json!({
            "00a00f11": milan,
            "00a10f11": {"boot_loader": 4, "tee": 0, "snp": 21, "microcode": 211, "hexstring": "d315000000000004"},
        }),
        "{policy}"
    );

    // A malformed TCB version is refused at proposal time, naming the field, and changes nothing.
    for (name, args, field) in [
        (
            "above_255",
            json!({"product": "Milan", "tcb_version": {"boot_loader": 3, "tee": 0, "snp": 300, "microcode": 115}}),
            "tcb_version.snp",
        ),
        (
            "missing_field",
            json!({"product": "Milan", "tcb_version": {"boot_loader": 3, "tee": 0, "snp": 8}}),
            "tcb_version.microcode",
        ),
        (
            "uppercase_cpuid",
            json!({"cpuid": "00A00F11", "tcb_version": milan}),
            "cpuid",
        ),
        (
            "unknown_product",
            json!({"product": "Naples", "tcb_version": milan}),
            "product",
        ),
    ] {
        let (ok, out, err) = propose(&node, name, json!([{"name": "add_snp_tcb_version", "args": args}]));
        assert!(!ok, "{name} was accepted: {out}");
        let text = format!("{out}{err}");
        assert!(text.contains("ProposalFailedToValidate"), "{name}: {text}");
        assert!(text.contains(field), "{name} does not name {field}: {text}");
    }
    assert_eq!(
        join_policy(&node).await["snp"]["tcbVersions"],
        policy["snp"]["tcbVersions"]
    );

    // Removal, by product and by CPUID.
    let state = pass(
        &node,
        "remove_milan",
        json!([{"name": "remove_snp_tcb_version", "args": {"product": "Milan"}}]),
    );
    assert_eq!(state, "Accepted");
    let state = pass(
        &node,
        "remove_genoa",
        json!([{"name": "remove_snp_tcb_version", "args": {"cpuid": "00a10f11"}}]),
    );
    assert_eq!(state, "Accepted");
    assert_eq!(join_policy(&node).await["snp"]["tcbVersions"], json!({}));

    // The virtual platform this node runs says it guarantees nothing: in its quote and in its log at start.
    let tls = client_config(&node.service_cert(), None).unwrap();
    let conn = Connection::connect(&node.address, tls, Protocol::Http1).await.unwrap();
    let quote: Value = conn.get("/node/quotes/self").await.unwrap().json().unwrap();
    assert!(
        quote["security_warning"]
            .as_str()
            .unwrap()
            .contains("no hardware guarantee"),
        "{quote}"
    );
    let log = std::fs::read_to_string(node.dir.join("err.log")).unwrap();
    assert!(log.contains("no hardware guarantee"), "{log}");
    node.stop();
}

#[test]
fn a_node_configured_for_snp_without_the_guest_device_refuses_to_start() {
    if std::path::Path::new("/dev/sev-guest").exists() {
        eprintln!("skipping: this machine is an SEV-SNP guest");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Real AMD endorsements (a Milan VCEK), so that the device is the only thing missing.
    let vcek = dir.path().join("vcek_milan.der");
    std::fs::write(&vcek, include_bytes!("../../consort-attest/tests/data/vcek_milan.der")).unwrap();
    let node = TestNode::configure(dir.path(), |cfg| {
        cfg.attestation.platform = PlatformChoice::Snp;
        cfg.attestation.snp_endorsements_file = Some(vcek.clone());
    });
    let mut cmd = std::process::Command::new(common::consort_bin());
    cmd.args(["node", "start", "--config"]).arg(&node.config);
    let out = common::run_bounded(cmd, common::TOOL_TIMEOUT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the node started: {stderr}");
    assert!(
        stderr.contains("/dev/sev-guest"),
        "the error does not name the device: {stderr}"
    );
    // It refused before writing anything: no identity, no ledger.
    assert!(!node.dir.join("service_cert.pem").exists());
    assert!(!node.ledger_dir().exists() || std::fs::read_dir(node.ledger_dir()).unwrap().next().is_none());
}
