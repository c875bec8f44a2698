//! Unmodified Ethereum tooling against Consort's EVM app on a 3-node sandbox: the example ERC-20 token
//! (examples/erc20) is compiled by solc-js during the test (and must give the bytes of the committed
//! `Token.bin.hex`, which the erc20 bench embeds), then driven by ethers v6 (`ethers_token.js`) and by web3.py (`web3_token.py`):
//! deploy, transfers, balances, `Transfer` logs through eth_getLogs, reverts with their reason strings, on the primary
//! and on a backup. `tests/evm_tooling/rejections.py` then sends transactions that must be refused (bad signature,
//! wrong chain id, reused and future nonce, too little balance) with the JSON-RPC error clients expect, changing
//! nothing, and a marker transfer whose calldata, amount, recipient and storage key must appear in no ledger or
//! snapshot file of any node (while a user certificate, public, is found there: the scan reads what it should).
//!
//! The npm toolchain is installed by scripts/test.sh (`npm ci` in the example; this test runs it when missing), the
//! Python one (web3, eth-account) in the `ccf` venv of `CCF_VENV`.

mod common;

use common::*;
use rand::RngCore;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Longest the test may run: its nodes are killed (on drop) when it expires.
const TEST_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest one script (npm ci, compile, a client script) may run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);
/// Periodic snapshot interval of the test network (transactions), so that snapshots follow the marker transfer.
const SNAPSHOT_INTERVAL_TX: u64 = 10;
const NODES: usize = 3;

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/erc20")
}

/// Runs `cmd` (bounded) and returns its stdout; panics with both outputs when it fails.
fn run_ok(mut cmd: Command, what: &str) -> String {
    cmd.env("NODE_NO_WARNINGS", "1");
    let out = run_bounded(cmd, SCRIPT_TIMEOUT);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

/// The last line of a script's output, as JSON with `"ok": true`.
fn last_json(stdout: &str, what: &str) -> serde_json::Value {
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{what}: {e}: {stdout}"));
    assert_eq!(v["ok"], true, "{what}: {stdout}");
    v
}

/// `npm ci` when the example's toolchain is missing, then `node compile.js`: a fresh compile must give the committed
/// creation bytecode.
fn compile_example() {
    let dir = example_dir();
    if !dir.join("node_modules/solc").exists() || !dir.join("node_modules/ethers").exists() {
        let mut ci = Command::new("npm");
        ci.args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir);
        run_ok(ci, "npm ci");
    }
    let mut compile = Command::new("node");
    compile.arg("compile.js").current_dir(&dir);
    run_ok(compile, "node compile.js");
    let fresh = std::fs::read_to_string(dir.join("build/Token.bin.hex")).unwrap();
    let committed = std::fs::read_to_string(dir.join("Token.bin.hex")).unwrap();
    assert_eq!(
        fresh.trim(),
        committed.trim(),
        "a fresh compile differs from the committed Token.bin.hex: run `node compile.js --update` in examples/erc20"
    );
}

/// The arguments every client script takes: the nodes' JSON-RPC URLs (primary first), the CA and user0's identity.
fn client_args(sandbox: &DetachedSandbox) -> Vec<String> {
    let mut args = vec![];
    for i in 0..NODES {
        args.extend(["--url".to_string(), format!("https://{}/app/eth", sandbox.address(i))]);
    }
    for (flag, file) in [
        ("--ca", "service_cert.pem"),
        ("--cert", "user0_cert.pem"),
        ("--key", "user0_privk.pem"),
    ] {
        args.extend([flag.to_string(), sandbox.ws.join(file).to_string_lossy().to_string()]);
    }
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ethers_and_web3py_drive_the_token_and_refusals_change_nothing_and_leak_nothing() {
    tokio::time::timeout(TEST_TIMEOUT, tooling())
        .await
        .expect("test exceeded its time bound");
}

async fn tooling() {
    let Some(venv) = ccf_venv() else { return };
    let python = venv.join("bin/python");
    let has_web3 = Command::new(&python)
        .args(["-c", "import web3, eth_account"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_web3,
        "web3 and eth-account are missing from {}: run `bash scripts/test.sh` (it installs them)",
        venv.display()
    );
    compile_example();

    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("sandbox");
    let interval = SNAPSHOT_INTERVAL_TX.to_string();
    let mut sandbox = DetachedSandbox::start(&ws, NODES, &["--snapshot-interval-tx", &interval], &[]);
    let args = client_args(&sandbox);
    let dir = example_dir();

    let mut ethers = Command::new("node");
    ethers.arg(dir.join("ethers_token.js")).args(&args);
    let out = last_json(&run_ok(ethers, "ethers (ethers_token.js)"), "ethers_token.js");
    assert!(out["token"].as_str().is_some_and(|a| a.starts_with("0x")), "{out}");

    let mut web3 = Command::new(&python);
    web3.arg(dir.join("web3_token.py")).args(&args);
    let out = last_json(&run_ok(web3, "web3.py (web3_token.py)"), "web3_token.py");
    assert!(out["token"].as_str().is_some_and(|a| a.starts_with("0x")), "{out}");

    // The marker transfer: an amount and a recipient nobody else uses.
    let mut bytes = [0u8; 36];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let recipient = hex::encode(&bytes[..20]);
    let amount = u128::from_be_bytes(bytes[20..].try_into().unwrap()) >> 8;
    let mut rejections = Command::new(&python);
    rejections
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/evm_tooling/rejections.py"))
        .args(&args)
        .arg("--token-json")
        .arg(dir.join("build/Token.json"))
        .args([
            "--recipient",
            &format!("0x{recipient}"),
            "--amount",
            &amount.to_string(),
        ]);
    let markers = last_json(&run_ok(rejections, "rejections.py"), "rejections.py");
    eprintln!("refusals: {}", markers["messages"]);

    // An outsider without a user certificate is refused before any JSON-RPC runs, on the primary and a backup,
    // for a send (which a backup would forward) and for a read.
    // A member's certificate is not a user's: the EVM app serves users only.
    let read = |f: &str| std::fs::read_to_string(sandbox.ws.join(f)).unwrap();
    let (member_cert, member_key) = (read("member0_cert.pem"), read("member0_privk.pem"));
    let member_tls =
        consort_node::net::tls::client_config(&sandbox.service_cert(), Some((&*member_cert, &*member_key))).unwrap();
    for node in [0, 1] {
        let member = consort_node::net::client::Connection::connect(
            &sandbox.address(node),
            member_tls.clone(),
            consort_node::net::client::Protocol::Http1,
        )
        .await
        .unwrap();
        for outsider in [sandbox.connect(node, false).await, member] {
            for body in [
                r#"{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":["0x00"]}"#,
                r#"{"jsonrpc":"2.0","id":2,"method":"eth_blockNumber"}"#,
            ] {
                let r = outsider
                    .request_typed("POST", "/app/eth", Some(("application/json", body.as_bytes().to_vec())))
                    .await
                    .unwrap();
                let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
                assert_eq!(
                    (r.status, &v["error"]["code"]),
                    (401, &serde_json::json!("InvalidAuthenticationInfo")),
                    "node {node}: {v}"
                );
            }
        }
    }

    let commit = sandbox.connect(0, true).await.get("/app/commit").await.unwrap();
    let seqno: u64 = commit.json().unwrap()["transaction_id"]
        .as_str()
        .and_then(|t| t.split('.').nth(1)?.parse().ok())
        .unwrap();
    wait_for_snapshot_after(&sandbox, seqno).await;
    sandbox.stop();
    no_marker_in_ledgers_or_snapshots(&sandbox, &markers, &recipient, amount);
}

/// Scans every ledger and snapshot file of every node for the marker transfer's calldata, amount, recipient and
/// storage key (as bytes and as hex); and finds user0's certificate there, so the scan reads what it should.
fn no_marker_in_ledgers_or_snapshots(
    sandbox: &DetachedSandbox,
    markers: &serde_json::Value,
    recipient: &str,
    amount: u128,
) {
    let mut amount_word = [0u8; 32];
    amount_word[16..].copy_from_slice(&amount.to_be_bytes());
    let hex_markers = [
        ("calldata", markers["calldata"].as_str().unwrap().to_string()),
        ("storage key", markers["storage_key"].as_str().unwrap().to_string()),
        ("amount", hex::encode(amount_word)),
        ("recipient", recipient.to_string()),
    ];
    let public = std::fs::read_to_string(sandbox.ws.join("user0_cert.pem")).unwrap();
    let public = public.lines().nth(1).unwrap().to_string();
    let (mut scanned, mut public_in_ledgers, mut public_in_snapshots) = (0, 0, 0);
    for i in 0..NODES {
        for sub in ["ledger", "snapshots"] {
            let dir = sandbox.node_dir(i).join(sub);
            for file in files_under(&dir) {
                let bytes = std::fs::read(&file).unwrap();
                scanned += 1;
                for (what, hex_marker) in &hex_markers {
                    let raw = hex::decode(hex_marker).unwrap();
                    assert!(!contains(&bytes, &raw), "the marker {what} is in {}", file.display());
                    assert!(
                        !contains(&bytes, hex_marker.as_bytes()),
                        "the marker {what}'s hex is in {}",
                        file.display()
                    );
                }
                if contains(&bytes, public.as_bytes()) {
                    public_in_ledgers += usize::from(sub == "ledger");
                    public_in_snapshots += usize::from(sub == "snapshots");
                }
            }
        }
    }
    assert!(scanned > NODES, "only {scanned} files scanned");
    assert!(
        public_in_ledgers >= NODES,
        "user0's certificate is in {public_in_ledgers} ledger files"
    );
    assert!(public_in_snapshots >= 1, "user0's certificate is in no snapshot");
}

/// Waits (bounded) until some node has a committed snapshot file at a seqno after `seqno`.
async fn wait_for_snapshot_after(sandbox: &DetachedSandbox, seqno: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let user = sandbox.connect(0, true).await;
    let mut id = 1_000_000;
    loop {
        let newest = (0..NODES)
            .flat_map(|i| consort_node::engine::snapshot_files::list_committed(&sandbox.node_dir(i).join("snapshots")))
            .map(|f| f.seqno)
            .max();
        if newest.is_some_and(|s| s > seqno) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no snapshot after seqno {seqno} in time (newest {newest:?})"
        );
        // Writes of the logging app move the ledger on to the next snapshot.
        id += 1;
        let r = user
            .post_json("/app/log/private", &serde_json::json!({"id": id, "msg": "filler"}))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
