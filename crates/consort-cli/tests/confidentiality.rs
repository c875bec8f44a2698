//! What the host stores holds no private data in the clear: on a 3-node sandbox (nodes logging at debug level), a
//! private logging entry holding a unique random marker and a public entry holding another are written, committed
//! and snapshotted; once the nodes are stopped, every file under every node's directory (ledger chunks, snapshots,
//! secrets, logs, configs) and the whole workspace is scanned: the private marker's bytes (and their hex) appear
//! nowhere, while the public marker is found in every node's ledger and in a snapshot, which shows the scan reads
//! what it should.

mod common;

use common::*;
use rand::RngCore;
use std::time::{Duration, Instant};

/// Longest the test may run: its nodes are killed (on drop) when it expires.
const TEST_TIMEOUT: Duration = Duration::from_secs(300);
/// Periodic snapshot interval of the test network (transactions).
const SNAPSHOT_INTERVAL_TX: u64 = 10;
const NODES: usize = 3;

fn marker(kind: &str) -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("consort-{kind}-marker-{}", hex::encode(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_marker_is_in_no_file_of_any_node_and_a_public_one_is() {
    tokio::time::timeout(TEST_TIMEOUT, private_marker_nowhere())
        .await
        .expect("test exceeded its time bound");
}

async fn private_marker_nowhere() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("sandbox");
    let interval = SNAPSHOT_INTERVAL_TX.to_string();
    let mut sandbox = DetachedSandbox::start(
        &ws,
        NODES,
        &[
            "--snapshot-interval-tx",
            &interval,
            "--recovery-members",
            "3",
            "--recovery-threshold",
            "2",
        ],
        &[("CONSORT_LOG", "debug")],
    );
    let (private, public) = (marker("private"), marker("public"));
    let user = sandbox.connect(0, true).await;
    let write = async |path: &str, id: u64, msg: &str| {
        let r = user
            .post_json(path, &serde_json::json!({"id": id, "msg": msg}))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{path}: {}", String::from_utf8_lossy(&r.body));
        r.txid.unwrap()
    };
    write("/app/log/private", 1, &private).await;
    let public_txid = write("/app/log/public", 2, &public).await;
    // More writes, so that a periodic snapshot is taken after the markers' transactions.
    let mut last = String::new();
    for id in 3..3 + 2 * SNAPSHOT_INTERVAL_TX {
        last = write("/app/log/private", id, &format!("filler {id}")).await;
    }
    wait_committed(&user, &last).await;
    // The private marker reads back (it was written), from the primary.
    let r = user.get("/app/log/private?id=1").await.unwrap();
    assert_eq!(r.json().unwrap()["msg"], private.as_str());
    // A snapshot of the state after both markers were written.
    let public_seqno: u64 = public_txid.split('.').nth(1).unwrap().parse().unwrap();
    wait_for_snapshot_after(&sandbox, public_seqno).await;
    sandbox.stop();

    let mut public_in_ledgers = 0;
    let mut public_in_snapshots = 0;
    let private_hex = hex::encode(private.as_bytes());
    let files = files_under(&ws);
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        assert!(
            !contains(&bytes, private.as_bytes()),
            "the private marker is in {}",
            file.display()
        );
        assert!(
            !contains(&bytes, private_hex.as_bytes()),
            "the private marker's hex is in {}",
            file.display()
        );
        if contains(&bytes, public.as_bytes()) {
            let path = file.to_string_lossy();
            public_in_ledgers += usize::from(path.contains("/ledger/"));
            public_in_snapshots += usize::from(path.contains("/snapshots/"));
        }
    }
    // Every node's ledger holds the public marker, and so does a snapshot.
    assert!(
        public_in_ledgers >= NODES,
        "the public marker is in {public_in_ledgers} ledger files"
    );
    assert!(public_in_snapshots >= 1, "the public marker is in no snapshot");
    // The nodes' stdout and stderr (debug level) were scanned above; they exist and are not empty.
    for i in 0..NODES {
        let dir = sandbox.node_dir(i);
        for log in ["out.log", "err.log"] {
            assert!(files.contains(&dir.join(log)), "node {i} has no {log}");
        }
        let err = std::fs::read(dir.join("err.log")).unwrap();
        assert!(!err.is_empty(), "node {i} logged nothing at debug level");
        assert!(!contains(&err, private.as_bytes()));
    }
}

/// Polls until `txid` is Committed (bounded).
async fn wait_committed(conn: &consort_node::net::client::Connection, txid: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = conn.get(&format!("/app/tx?transaction_id={txid}")).await.unwrap();
        if r.json().unwrap()["status"] == "Committed" {
            return;
        }
        assert!(Instant::now() < deadline, "{txid} not committed in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (bounded) until some node has a committed snapshot file at a seqno after `seqno`.
async fn wait_for_snapshot_after(sandbox: &DetachedSandbox, seqno: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
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
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
