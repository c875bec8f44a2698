//! The join protocol as an outsider meets it, over real sockets: nobody gets the service's secrets, a snapshot or a
//! service-endorsed certificate by naming a key they do not hold, and a Pending joiner's record carries no
//! endorsed certificate.

mod common;

use common::TestNode;
use consort_crypto::x509::{self, CertParams};
use consort_crypto::{Curve, SigningKey};
use consort_node::net::client::{Connection, Protocol, Reply};
use consort_node::net::tls::client_config;

/// A running one-node service whose status is Open (so joiners become Pending).
async fn open_service(dir: &std::path::Path) -> TestNode {
    let mut node = TestNode::configure(dir, |_| {});
    node.start().await;
    node
}

/// POSTs `body` to `/node/join`, over TLS with a client certificate for `client_key` if given.
async fn post_join(node: &TestNode, client_key: Option<&SigningKey>, body: &serde_json::Value) -> Reply {
    let identity = client_key.map(|k| {
        let cert = x509::self_signed(k, &CertParams::new("joiner")).unwrap();
        (cert.pem, k.to_pkcs8_pem())
    });
    let tls = client_config(
        &node.service_cert(),
        identity.as_ref().map(|(c, k)| (c.as_str(), k.as_str())),
    )
    .unwrap();
    let conn = Connection::connect(&node.address, tls, Protocol::Http1).await.unwrap();
    conn.request("POST", "/node/join", Some(body.to_string().into_bytes()))
        .await
        .unwrap()
}

fn join_body(public_key_pem: &str) -> serde_json::Value {
    serde_json::json!({
        "public_key": public_key_pem,
        "node_to_node_address": "127.0.0.1:1",
        "rpc_address": "127.0.0.1:2",
    })
}

/// Asserts that an answer carries nothing a joiner would start from.
fn assert_no_secrets(reply: &Reply) {
    let text = String::from_utf8_lossy(&reply.body);
    for secret in ["service_key", "ledger_secret", "snapshot", "node_cert", "PRIVATE KEY"] {
        assert!(!text.contains(secret), "the answer leaks {secret}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outsider_naming_a_trusted_nodes_key_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = open_service(dir.path()).await;
    // The trusted node's public key is public: it is in its certificate.
    let node_cert = std::fs::read_to_string(node.dir.join("node_cert.pem")).unwrap();
    let trusted_key = consort_crypto::ParsedCert::from_pem(&node_cert)
        .unwrap()
        .public_key()
        .unwrap()
        .to_pem();

    // Without a client certificate.
    let reply = post_join(&node, None, &join_body(&trusted_key)).await;
    assert_eq!(reply.status, 401, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.json().unwrap()["error"]["code"], "InvalidAuthenticationInfo");
    assert_no_secrets(&reply);

    // With a client certificate for another key.
    let other = SigningKey::generate(Curve::P384);
    let reply = post_join(&node, Some(&other), &join_body(&trusted_key)).await;
    assert_eq!(reply.status, 401, "{}", String::from_utf8_lossy(&reply.body));
    assert_no_secrets(&reply);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_joiner_holds_its_key_but_gets_no_endorsed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let node = open_service(dir.path()).await;
    let key = SigningKey::generate(Curve::P384);
    let node_id = consort_crypto::key_id(&key.verifying_key().to_spki_der());

    let reply = post_join(&node, Some(&key), &join_body(&key.verifying_key().to_pem())).await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    let v = reply.json().unwrap();
    assert_eq!(v["node_status"], "Pending");
    assert_eq!(v["node_id"], node_id);
    assert_no_secrets(&reply);

    // Asking again changes nothing.
    let again = post_join(&node, Some(&key), &join_body(&key.verifying_key().to_pem())).await;
    assert_eq!(again.json().unwrap()["node_status"], "Pending");
    assert_no_secrets(&again);

    // The nodes table names the joiner, Pending, with no certificate the service endorsed.
    let tls = client_config(&node.service_cert(), None).unwrap();
    let conn = Connection::connect(&node.address, tls, Protocol::Http1).await.unwrap();
    let nodes = conn.get("/gov/service/nodes").await.unwrap().json().unwrap();
    let joiner = nodes["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["nodeId"] == node_id)
        .expect("the joiner is recorded")
        .clone();
    assert_eq!(joiner["status"], "Pending");
    assert!(joiner["certificate"].is_null(), "a Pending node was endorsed: {joiner}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_join_requests_get_a_clear_4xx_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let node = open_service(dir.path()).await;
    let key = SigningKey::generate(Curve::P384);
    let pem = key.verifying_key().to_pem();
    let cases = [
        serde_json::json!("not an object"),
        serde_json::json!({"public_key": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
            "node_to_node_address": "127.0.0.1:1", "rpc_address": "127.0.0.1:2"}),
        serde_json::json!({"public_key": pem, "node_to_node_address": "nowhere", "rpc_address": "127.0.0.1:2"}),
        serde_json::json!({"public_key": pem, "node_to_node_address": "127.0.0.1:1"}),
        serde_json::json!({"public_key": pem, "node_to_node_address": "127.0.0.1:1", "rpc_address": "x".repeat(70_000)}),
    ];
    for body in cases {
        let reply = post_join(&node, Some(&key), &body).await;
        assert!((400..500).contains(&reply.status), "{} for {body}", reply.status);
        assert!(reply.json().unwrap()["error"]["code"].is_string());
        assert_no_secrets(&reply);
    }
    // Still serving.
    let tls = client_config(&node.service_cert(), None).unwrap();
    let conn = Connection::connect(&node.address, tls, Protocol::Http1).await.unwrap();
    assert_eq!(conn.get("/node/commit").await.unwrap().status, 200);
}
