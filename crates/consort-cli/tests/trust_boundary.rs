//! The join protocol as an outsider meets it, over real sockets: nobody gets the service's secrets, a snapshot or a
//! service-endorsed certificate by naming a key they do not hold, a Pending joiner's record carries no endorsed
//! certificate, and the governed join policy on code ids decides which code may join.

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

/// SHA-256 of the `consort` binary the nodes run: the virtual platform's measurement of them.
fn consort_measurement() -> [u8; 32] {
    consort_node::platform::measure_file(std::path::Path::new(common::consort_bin())).unwrap()
}

/// A join request for `key` with virtual evidence binding it to `measurement`.
fn join_body_measured(key: &SigningKey, measurement: [u8; 32]) -> serde_json::Value {
    use consort_attest::Platform;
    let evidence = consort_attest::VirtualPlatform::new(measurement)
        .evidence_for(&key.verifying_key().to_spki_der())
        .unwrap();
    serde_json::json!({
        "public_key": key.verifying_key().to_pem(),
        "node_to_node_address": "127.0.0.1:1",
        "rpc_address": "127.0.0.1:2",
        "quote_info": evidence.to_json_value(),
        "encryption_public_key": encryption_key(),
    })
}

/// One RSA encryption public key for the test joiners (generating one per request would only cost time).
fn encryption_key() -> &'static str {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(|| consort_crypto::rsa_keys::generate_pem(2048).unwrap().1)
}

/// A join request naming `public_key_pem`, with evidence for a key the caller does not hold.
fn join_body(public_key_pem: &str) -> serde_json::Value {
    let mut body = join_body_measured(&SigningKey::generate(Curve::P384), consort_measurement());
    body["public_key"] = serde_json::json!(public_key_pem);
    body
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
async fn a_join_without_a_usable_encryption_key_is_refused_and_not_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let node = open_service(dir.path()).await;
    let key = SigningKey::generate(Curve::P384);
    let small = consort_crypto::rsa_keys::generate_pem(1024).unwrap().1;
    let mut cases = vec![];
    for value in [
        serde_json::Value::Null,
        serde_json::json!("not a key"),
        serde_json::json!(small),
    ] {
        let mut body = join_body_measured(&key, consort_measurement());
        match value {
            serde_json::Value::Null => {
                body.as_object_mut().unwrap().remove("encryption_public_key");
            }
            v => body["encryption_public_key"] = v,
        }
        let reply = post_join(&node, Some(&key), &body).await;
        assert_eq!(reply.status, 400, "{}", String::from_utf8_lossy(&reply.body));
        let message = reply.json().unwrap()["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains("encryption_public_key"), "{message}");
        assert_no_secrets(&reply);
        cases.push(message);
    }
    assert!(cases[2].contains("too small"), "{}", cases[2]);
    // None of them was recorded: the node is unknown to the service.
    let node_id = consort_crypto::key_id(&key.verifying_key().to_spki_der());
    let conn = node.connect(false).await;
    let nodes = conn.get("/node/network/nodes").await.unwrap();
    assert!(!String::from_utf8_lossy(&nodes.body).contains(&node_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_shares_are_answered_only_for_recovery_members_and_reading_them_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = open_service(dir.path()).await;
    let conn = node.connect(false).await;
    // The commit point once it has settled (the service's own signatures after opening).
    let commit = async || conn.get("/node/commit").await.unwrap().json().unwrap()["transaction_id"].clone();
    let mut before = commit().await;
    for _ in 0..20 {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let now = commit().await;
        if now == before {
            break;
        }
        before = now;
    }
    // An outsider asking for a member that does not exist, a malformed id, or a path that tries to climb out.
    for id in [
        "ab".repeat(32),
        "not-a-member".into(),
        "..%2F..%2Fservice_privk.pem".into(),
    ] {
        let r = conn.get(&format!("/gov/recovery/encrypted-shares/{id}")).await.unwrap();
        assert_eq!(r.status, 404, "{id}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json().unwrap()["error"]["code"], "ResourceNotFound");
        assert_no_secrets(&r);
    }
    // Writes are refused on this read-only path.
    let r = conn
        .request(
            "POST",
            &format!("/gov/recovery/encrypted-shares/{}", "ab".repeat(32)),
            Some(b"{}".to_vec()),
        )
        .await
        .unwrap();
    assert!(r.status >= 400 && r.status < 500, "{}", r.status);
    assert_eq!(before, commit().await, "reading shares wrote a transaction");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_joiner_holds_its_key_but_gets_no_endorsed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let node = open_service(dir.path()).await;
    let key = SigningKey::generate(Curve::P384);
    let node_id = consort_crypto::key_id(&key.verifying_key().to_spki_der());

    let body = join_body_measured(&key, consort_measurement());
    let reply = post_join(&node, Some(&key), &body).await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    let v = reply.json().unwrap();
    assert_eq!(v["node_status"], "Pending");
    assert_eq!(v["node_id"], node_id);
    assert_no_secrets(&reply);

    // Asking again changes nothing.
    let again = post_join(&node, Some(&key), &body).await;
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

/// Runs `consort gov` as member0 of `node`: proposes `actions` and votes for it; returns the final state.
fn pass_proposal(node: &TestNode, actions: serde_json::Value) -> String {
    let file = node.dir.join(format!("proposal_{}.json", rand_suffix()));
    std::fs::write(&file, serde_json::json!({ "actions": actions }).to_string()).unwrap();
    let gov = |args: &[&str]| {
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
        assert!(
            out.status.success(),
            "consort gov {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let proposed = gov(&["propose", file.to_str().unwrap()]);
    let id = proposed["proposalId"].as_str().unwrap().to_string();
    let voted = gov(&["vote", &id, "--accept"]);
    voted["proposalState"].as_str().unwrap_or_default().to_string()
}

fn rand_suffix() -> String {
    hex::encode(consort_crypto::sha256(
        &SigningKey::generate(Curve::P256).verifying_key().to_spki_der(),
    ))[..8]
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_join_policy_on_code_ids_is_enforced_and_governed() {
    let dir = tempfile::tempdir().unwrap();
    let node = open_service(dir.path()).await;
    let tls = client_config(&node.service_cert(), None).unwrap();
    let conn = Connection::connect(&node.address, tls, Protocol::Http1).await.unwrap();

    // Genesis recorded the first node's own measurement, and the node shows its quote, flagged as virtual.
    let ours = hex::encode(consort_measurement());
    let policy = conn.get("/gov/service/join-policy").await.unwrap().json().unwrap();
    assert!(policy["codeIds"].get(&ours).is_some(), "{policy}");
    let quote = conn.get("/node/quotes/self").await.unwrap().json().unwrap();
    assert_eq!(quote["format"], "Insecure_Virtual", "{quote}");
    assert_eq!(quote["measurement"], ours.as_str(), "{quote}");
    assert!(
        quote["security_warning"]
            .as_str()
            .unwrap()
            .contains("no hardware guarantee"),
        "{quote}"
    );
    let evidence = consort_attest::Evidence::from_any_json(quote.to_string().as_bytes()).unwrap();
    let node_cert = std::fs::read_to_string(node.dir.join("node_cert.pem")).unwrap();
    let node_key = consort_crypto::ParsedCert::from_pem(&node_cert)
        .unwrap()
        .public_key()
        .unwrap();
    consort_attest::verify(&evidence, &node_key.to_spki_der()).unwrap();
    // `consort attest verify` checks the saved answer offline against the node's certificate, and refuses it for
    // another node's certificate.
    let saved = node.dir.join("quote.json");
    std::fs::write(&saved, quote.to_string()).unwrap();
    let cert_path = node.dir.join("node_cert.pem");
    let (ok, out) = common::run_consort(&[
        "attest",
        "verify",
        saved.to_str().unwrap(),
        "--node-cert",
        cert_path.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    assert!(out.contains(&ours), "{out}");
    let stranger = node.dir.join("stranger_cert.pem");
    let stranger_key = SigningKey::generate(Curve::P384);
    std::fs::write(
        &stranger,
        x509::self_signed(&stranger_key, &CertParams::new("stranger"))
            .unwrap()
            .pem,
    )
    .unwrap();
    let (ok, out) = common::run_consort(&[
        "attest",
        "verify",
        saved.to_str().unwrap(),
        "--node-cert",
        stranger.to_str().unwrap(),
    ]);
    assert!(!ok, "{out}");
    assert!(out.contains("attestation INVALID"), "{out}");

    // Other code is refused, with its measurement named.
    let other = [7u8; 32];
    let other_hex = hex::encode(other);
    let key = SigningKey::generate(Curve::P384);
    let refused = post_join(&node, Some(&key), &join_body_measured(&key, other)).await;
    assert_eq!(refused.status, 403, "{}", String::from_utf8_lossy(&refused.body));
    let v = refused.json().unwrap();
    assert_eq!(v["error"]["code"], "JoinPolicyRefused");
    assert!(v["error"]["message"].as_str().unwrap().contains(&other_hex), "{v}");
    assert_no_secrets(&refused);

    // Evidence bound to another key than the one named is refused too.
    let mut forged = join_body_measured(&SigningKey::generate(Curve::P384), consort_measurement());
    forged["public_key"] = serde_json::json!(key.verifying_key().to_pem());
    let refused = post_join(&node, Some(&key), &forged).await;
    assert_eq!(refused.status, 403, "{}", String::from_utf8_lossy(&refused.body));
    assert_eq!(refused.json().unwrap()["error"]["code"], "InvalidQuote");

    // Members add that code: the node may join (as Pending, the service being open).
    let state = pass_proposal(
        &node,
        serde_json::json!([{"name": "add_node_code", "args": {"code_id": other_hex}}]),
    );
    assert_eq!(state, "Accepted");
    let joined = post_join(&node, Some(&key), &join_body_measured(&key, other)).await;
    assert_eq!(joined.status, 200, "{}", String::from_utf8_lossy(&joined.body));
    assert_eq!(joined.json().unwrap()["node_status"], "Pending");

    // Members remove it: a new node with that code is refused again.
    let state = pass_proposal(
        &node,
        serde_json::json!([{"name": "remove_node_code", "args": {"code_id": other_hex}}]),
    );
    assert_eq!(state, "Accepted");
    let key2 = SigningKey::generate(Curve::P384);
    let refused = post_join(&node, Some(&key2), &join_body_measured(&key2, other)).await;
    assert_eq!(refused.status, 403, "{}", String::from_utf8_lossy(&refused.body));
    assert!(refused.json().unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .contains(&other_hex));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_node_holding_its_key_gets_nothing_from_join() {
    let dir = tempfile::tempdir().unwrap();
    // With a node-to-node interface, so that the primary adds a Trusted joiner to the Raft membership.
    let mut node = TestNode::configure(dir.path(), |cfg| {
        cfg.network.node_to_node_address = Some(format!("127.0.0.1:{}", common::free_port()));
    });
    node.start().await;
    let key = SigningKey::generate(Curve::P384);
    let node_id = consort_crypto::key_id(&key.verifying_key().to_spki_der());
    let body = join_body_measured(&key, consort_measurement());
    let reply = post_join(&node, Some(&key), &body).await;
    assert_eq!(reply.json().unwrap()["node_status"], "Pending");

    // Members trust it: its key holder is then answered with what a joiner starts from.
    let state = pass_proposal(
        &node,
        serde_json::json!([{"name": "transition_node_to_trusted", "args": {"node_id": node_id}}]),
    );
    assert_eq!(state, "Accepted");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let trusted = loop {
        let reply = post_join(&node, Some(&key), &body).await;
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
        let v = reply.json().unwrap();
        if v["node_status"] == "Trusted" {
            break v;
        }
        assert!(std::time::Instant::now() < deadline, "never Trusted: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(trusted["service_key"].is_string(), "{trusted}");
    // A young service without a committed snapshot: the joiner replicates from seqno 1 and is told the first
    // membership (the genesis node alone).
    assert!(trusted["snapshot"].is_null(), "{trusted}");
    assert_eq!(trusted["initial_voters"].as_array().map(Vec::len), Some(1), "{trusted}");

    // Members retire it: from then on its key gets a 403 and nothing else.
    let state = pass_proposal(
        &node,
        serde_json::json!([{"name": "remove_node", "args": {"node_id": node_id}}]),
    );
    assert_eq!(state, "Accepted");
    let reply = post_join(&node, Some(&key), &body).await;
    assert_eq!(reply.status, 403, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.json().unwrap()["error"]["code"], "NodeNotTrusted");
    assert_no_secrets(&reply);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_joiners_are_limited_and_the_limit_names_itself() {
    let dir = tempfile::tempdir().unwrap();
    let node = open_service(dir.path()).await;
    let limit = consort_node::api::join::MAX_PENDING_NODES;
    for i in 0..limit {
        let key = SigningKey::generate(Curve::P384);
        let reply = post_join(&node, Some(&key), &join_body_measured(&key, consort_measurement())).await;
        assert_eq!(
            reply.status,
            200,
            "joiner {i}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(reply.json().unwrap()["node_status"], "Pending");
    }
    let key = SigningKey::generate(Curve::P384);
    let reply = post_join(&node, Some(&key), &join_body_measured(&key, consort_measurement())).await;
    assert_eq!(reply.status, 503, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.json().unwrap()["error"]["code"], "TooManyPendingNodes");
    assert_no_secrets(&reply);
    // Nothing was recorded for the refused joiner.
    let node_id = consort_crypto::key_id(&key.verifying_key().to_spki_der());
    let tls = client_config(&node.service_cert(), None).unwrap();
    let conn = Connection::connect(&node.address, tls, Protocol::Http1).await.unwrap();
    let nodes = conn.get("/gov/service/nodes").await.unwrap().json().unwrap();
    assert!(!nodes.to_string().contains(&node_id), "the refused joiner was recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outsider_with_virtual_evidence_gets_nothing_while_the_service_is_opening() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::configure(dir.path(), |cfg| {
        cfg.start.open_at_genesis = false;
        cfg.network.node_to_node_address = Some(format!("127.0.0.1:{}", common::free_port()));
    });
    node.child = Some(common::spawn_node(&node.dir, "start", &node.config));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(cert) = std::fs::read_to_string(node.dir.join("service_cert.pem")) {
            let tls = client_config(&cert, None).unwrap();
            if let Ok(conn) = Connection::connect(&node.address, tls, Protocol::Http1).await {
                if let Ok(r) = conn.get("/node/network").await {
                    if r.json().unwrap()["service_status"] == "Opening" {
                        break;
                    }
                }
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the service never came up Opening"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Virtual evidence is made by whoever holds a key: the outsider's join is recorded Pending, not trusted, and
    // asking again (as a Trusted joiner would to collect the secrets) still gives nothing.
    let key = SigningKey::generate(Curve::P384);
    let body = join_body_measured(&key, consort_measurement());
    for _ in 0..5 {
        let reply = post_join(&node, Some(&key), &body).await;
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
        assert_eq!(reply.json().unwrap()["node_status"], "Pending");
        assert_no_secrets(&reply);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_flood_of_receipt_requests_is_bounded_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    // Small chunks, so that old receipts read settled chunk files off the engine lock.
    let mut node = TestNode::configure(dir.path(), |cfg| cfg.ledger.chunk_threshold_bytes = 1024);
    node.start().await;
    let user = node.connect(true).await;
    let mut txids = vec![];
    for id in 0..40 {
        let body = serde_json::json!({"id": id, "msg": "x".repeat(200)})
            .to_string()
            .into_bytes();
        let r = user.request("POST", "/app/log/private", Some(body)).await.unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        txids.push(r.txid.clone().expect("a transaction id"));
    }
    node.wait_committed(&user, txids.last().unwrap()).await;
    let commit_before = user.get("/node/commit").await.unwrap().json().unwrap();

    // 200 anonymous receipt requests at once, over many connections, for every old transaction.
    let mut tasks = vec![];
    for i in 0..200 {
        let (address, cert, txid) = (
            node.address.clone(),
            node.service_cert(),
            txids[i % txids.len()].clone(),
        );
        tasks.push(tokio::spawn(async move {
            let tls = client_config(&cert, None).unwrap();
            let conn = Connection::connect(&address, tls, Protocol::Http1).await.unwrap();
            conn.get(&format!("/node/receipt?transaction_id={txid}")).await.unwrap()
        }));
    }
    let (mut ok, mut busy) = (0, 0);
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            200 => {
                consort_receipt::verify_json(&r.body, &node.service_cert()).expect("receipt verifies");
                ok += 1;
            }
            503 => {
                assert_eq!(r.json().unwrap()["error"]["code"], "TooManyRequests");
                busy += 1;
            }
            other => panic!("receipt answered {other}: {}", String::from_utf8_lossy(&r.body)),
        }
    }
    assert!(ok > 0, "no receipt was served ({busy} refused as busy)");
    // The flood changed nothing and the node still commits writes.
    assert_eq!(user.get("/node/commit").await.unwrap().json().unwrap(), commit_before);
    let body = serde_json::json!({"id": 999, "msg": "after"}).to_string().into_bytes();
    let r = user.request("POST", "/app/log/private", Some(body)).await.unwrap();
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_share_submissions_to_an_open_service_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = open_service(dir.path()).await;
    let conn = node.connect(false).await;
    let commit = async || conn.get("/node/commit").await.unwrap().json().unwrap()["transaction_id"].clone();
    let mut before = commit().await;
    for _ in 0..20 {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let now = commit().await;
        if now == before {
            break;
        }
        before = now;
    }
    let member_cert = std::fs::read_to_string(dir.path().join("member0_cert.pem")).unwrap();
    let member_key =
        SigningKey::from_pem(&std::fs::read_to_string(dir.path().join("member0_privk.pem")).unwrap()).unwrap();
    let member_id = consort_crypto::ParsedCert::from_pem(&member_cert).unwrap().cert_id();
    let outsider = SigningKey::generate(Curve::P384);
    let outsider_id = consort_crypto::key_id(&outsider.verifying_key().to_spki_der());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let share = br#"{"share": "AAAA"}"#;
    let sign = |key: &SigningKey, id: &str| {
        consort_gov::sign_gov_request(key, id, consort_gov::MsgType::RecoveryShare, now, None, share)
    };
    // As on every signed /gov endpoint, a body that does not authenticate a member is 401.
    let cases: Vec<(&str, String, Vec<u8>, u16, &str)> = vec![
        // Not COSE at all, and an empty body.
        (
            "garbage",
            member_id.clone(),
            b"not cose".to_vec(),
            401,
            "InvalidAuthenticationInfo",
        ),
        ("empty", member_id.clone(), Vec::new(), 401, "InvalidAuthenticationInfo"),
        // Signed by a key no member holds.
        (
            "outsider",
            outsider_id.clone(),
            sign(&outsider, &outsider_id),
            401,
            "InvalidAuthenticationInfo",
        ),
        // A real member, but the service is open, not waiting for shares.
        (
            "member",
            member_id.clone(),
            sign(&member_key, &member_id),
            403,
            "ServiceNotWaitingForRecoveryShares",
        ),
    ];
    for (what, id, body, want, code) in cases {
        let path = format!("/gov/recovery/members/{id}:recover?api-version=2024-07-01");
        let r = conn
            .request_typed("POST", &path, Some(("application/cose", body)))
            .await
            .unwrap();
        assert_eq!(r.status, want, "{what}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json().unwrap()["error"]["code"], code, "{what}");
        assert_no_secrets(&r);
    }
    assert_eq!(before, commit().await, "a refused share wrote a transaction");
}
