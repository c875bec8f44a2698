//! End-to-end tests of one node process: the logging app, authentication, limits, receipts, restart and crash.

mod common;

use common::*;
use std::time::Duration;

fn txid_of(r: &consort_node::net::client::Reply) -> String {
    r.txid.clone().expect("every response carries x-ms-ccf-transaction-id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_app_auth_limits_receipts_and_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = TestNode::configure(&tmp.path().join("n0"), |_| {});
    node.start().await;
    let user = node.connect(true).await;
    let anon = node.connect(false).await;

    // The node runs with mimalloc's purge delay set: it re-executed itself with it (same pid), unless the
    // environment already set one, which it keeps.
    let pid = node.child.as_ref().unwrap().id();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let expected = std::env::var("MIMALLOC_PURGE_DELAY").unwrap_or_else(|_| "1000".into());
    let wanted = format!("MIMALLOC_PURGE_DELAY={expected}");
    assert!(
        environ.split(|b| *b == 0).any(|v| v == wanted.as_bytes()),
        "node environment lacks {wanted}"
    );

    // Writes need a registered user certificate.
    let r = anon
        .post_json("/app/log/private", &serde_json::json!({"id": 1, "msg": "x"}))
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.json().unwrap()["error"]["code"], "InvalidAuthenticationInfo");
    assert!(r.txid.is_some());

    // Write and read private and public messages.
    let mut last = String::new();
    for i in 0..50u64 {
        let path = if i % 2 == 0 {
            "/app/log/private"
        } else {
            "/app/log/public"
        };
        let r = user
            .post_json(path, &serde_json::json!({"id": i, "msg": format!("message {i}")}))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{:?}", r.body);
        last = txid_of(&r);
    }
    let r = user.get("/app/log/private?id=4").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json().unwrap()["msg"], "message 4");
    let r = user.get("/app/log/public?id=5").await.unwrap();
    assert_eq!(r.json().unwrap()["msg"], "message 5");
    let r = user.get("/app/log/private?id=5").await.unwrap();
    assert_eq!(r.status, 404, "public id 5 is not in the private map");
    assert_eq!(r.json().unwrap()["error"]["code"], "ResourceNotFound");

    // Malformed and oversized input gets a JSON error and changes nothing. (HTTP/2, so that the early 413 reaches
    // the client while it is still sending; an HTTP/1.1 client must read the response before finishing the body.)
    let user2 = node
        .connect_with(true, consort_node::net::client::Protocol::Http2)
        .await;
    let before = user.get("/node/commit").await.unwrap().json().unwrap();
    for (body, status) in [
        (b"{not json".to_vec(), 400),
        (br#"{"id": "seven", "msg": "x"}"#.to_vec(), 400),
        (br#"{"id": 1}"#.to_vec(), 400),
        (vec![b'a'; 2 * 1024 * 1024], 413),
    ] {
        let r = user2.request("POST", "/app/log/private", Some(body)).await.unwrap();
        assert_eq!(r.status, status, "{:?}", r.body);
        assert!(r.json().unwrap_or_else(|_| panic!("not JSON: {:?}", r.body))["error"]["code"].is_string());
    }
    assert_eq!(
        user.get("/app/log/private?id=1").await.unwrap().status,
        404,
        "rejected writes left no trace"
    );
    for (path, status) in [
        ("/app/log/private?id=abc", 400),
        ("/app/nowhere", 404),
        ("/node/tx?transaction_id=x", 400),
    ] {
        let r = user.get(path).await.unwrap();
        assert_eq!(r.status, status, "{path}");
        assert!(r.json().unwrap()["error"]["message"].is_string());
    }
    let r = user.request("DELETE", "/app/log/private", None).await.unwrap();
    assert_eq!(r.status, 404);
    assert!(before["transaction_id"].is_string());

    // Status goes Pending -> Committed; receipts verify offline.
    node.wait_committed(&user, &last).await;
    let r = user.get(&format!("/app/receipt?transaction_id={last}")).await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let verified = consort_receipt::verify_json(&r.body, &node.service_cert()).unwrap();
    let receipt_path = tmp.path().join("receipt.json");
    std::fs::write(&receipt_path, &r.body).unwrap();
    let cert_path = node.dir.join("service_cert.pem");
    let (ok, out) = run_consort(&[
        "receipt",
        "verify",
        receipt_path.to_str().unwrap(),
        "--service-cert",
        cert_path.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    let mut tampered: serde_json::Value = r.json().unwrap();
    tampered["leaf_components"]["write_set_digest"] = serde_json::Value::String("00".repeat(32));
    std::fs::write(&receipt_path, tampered.to_string()).unwrap();
    let (ok, _) = run_consort(&[
        "receipt",
        "verify",
        receipt_path.to_str().unwrap(),
        "--service-cert",
        cert_path.to_str().unwrap(),
    ]);
    assert!(!ok, "a tampered receipt must not verify");
    let (lview, lseq) = last.split_once('.').unwrap();
    let future = format!("{lview}.{}", lseq.parse::<u64>().unwrap() + 1000);
    let r = user.get(&format!("/app/tx?transaction_id={future}")).await.unwrap();
    assert_eq!(r.json().unwrap()["status"], "Unknown");

    // Node endpoints.
    let m = user.get("/node/metrics").await.unwrap();
    let text = String::from_utf8_lossy(&m.body).to_string();
    assert!(text.contains("consort_transactions_total"), "{text}");
    assert!(text.contains("consort_http_requests_total"), "{text}");
    for path in [
        "/node/state",
        "/node/network/nodes",
        "/app/api",
        "/node/api",
        "/node/network",
    ] {
        let r = user.get(path).await.unwrap();
        assert_eq!(r.status, 200, "{path}");
        r.json().unwrap();
    }

    // Graceful restart: same data, same receipts (so the same Merkle tree), and the node keeps going.
    drop(user);
    drop(anon);
    drop(user2);
    node.stop();
    node.start().await;
    let user = node.connect(true).await;
    assert_eq!(
        user.get("/app/log/private?id=4").await.unwrap().json().unwrap()["msg"],
        "message 4"
    );
    let r = user.get(&format!("/app/receipt?transaction_id={last}")).await.unwrap();
    assert_eq!(r.status, 200);
    let again = consort_receipt::verify_json(&r.body, &node.service_cert()).unwrap();
    assert_eq!(again.root, verified.root, "restart must rebuild the same Merkle tree");
    let r = user
        .post_json(
            "/app/log/private",
            &serde_json::json!({"id": 1000, "msg": "after restart"}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let after = txid_of(&r);
    assert!(
        after.split_once('.').unwrap().0.parse::<u64>().unwrap() > lview.parse::<u64>().unwrap(),
        "new view after restart"
    );
    node.wait_committed(&user, &after).await;

    // Crash (SIGKILL) after commit: committed data survives.
    drop(user);
    node.kill();
    node.start().await;
    let user = node.connect(true).await;
    assert_eq!(
        user.get("/app/log/private?id=1000").await.unwrap().json().unwrap()["msg"],
        "after restart"
    );
    assert_eq!(
        user.get(&format!("/app/tx?transaction_id={after}"))
            .await
            .unwrap()
            .json()
            .unwrap()["status"],
        "Committed"
    );
    node.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_limit_and_connection_limit_are_enforced() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = TestNode::configure(&tmp.path().join("n0"), |c| {
        c.limits.max_open_connections = 2;
    });
    node.start().await;
    let a = node.connect(true).await;
    let b = node.connect(true).await;
    // A third connection is closed at accept: its handshake or first request fails.
    let third = tokio::time::timeout(Duration::from_secs(5), async {
        let c = consort_node::net::client::Connection::connect(
            &node.address,
            consort_node::net::tls::client_config(&node.service_cert(), None).unwrap(),
            consort_node::net::client::Protocol::Http1,
        )
        .await;
        match c {
            Ok(c) => c.get("/node/commit").await.is_ok(),
            Err(_) => false,
        }
    })
    .await
    .unwrap_or(false);
    assert!(!third, "connection beyond max_open_connections must be refused");
    let m = a.get("/node/metrics").await.unwrap();
    assert!(String::from_utf8_lossy(&m.body).contains("consort_rejected_connections_total 1"));
    // Oversized headers: the connection is refused with 431 or closed, and the node keeps serving.
    let big = "x".repeat(64 * 1024);
    let r = a.request("GET", &format!("/node/commit?pad={big}"), None).await;
    assert!(
        r.map(|r| r.status == 431).unwrap_or(true),
        "oversized head must get 431 or a closed connection"
    );
    // Once a slot frees up, new connections are served again.
    drop(b);
    let c = node.connect(true).await;
    assert_eq!(c.get("/node/commit").await.unwrap().status, 200);
}

/// A node whose node-to-node address is taken exits with an error naming the bind, and does not panic (the
/// node-to-node runtime it had already made is shut down on that return path too).
#[test]
fn a_taken_node_to_node_port_is_a_clear_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let n2n = taken.local_addr().unwrap().to_string();
    let node = TestNode::configure(tmp.path(), |c| c.network.node_to_node_address = Some(n2n.clone()));
    let mut cmd = std::process::Command::new(consort_bin());
    cmd.args(["node", "start", "--config"]).arg(&node.config);
    let out = run_bounded(cmd, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the node started on a taken port: {stderr}");
    assert!(stderr.contains(&format!("bind {n2n}")), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    drop(taken);
}
