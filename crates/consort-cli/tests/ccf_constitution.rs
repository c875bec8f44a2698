//! A running service installs, by a `set_constitution` proposal, a constitution written the way CCF's default one
//! is (consort-gov's fixture `ccf_style_constitution.js`), and runs proposals with it: `set_user` (the new user
//! writes to `/app/log/private`), `set_js_app` (the bundle serves), `transition_node_to_trusted` for a joiner (the
//! node endorses the joiner's certificate signing request with the service key and the validity asked; the joiner
//! becomes Trusted, starts with that certificate and serves), `set_service_certificate_validity` (the service
//! certificate is re-issued over the same key and `/node/network` shows it on every node) and `trigger_acme_refresh`
//! (refused: Consort has no ACME client). The genesis node records its own signing request too.
//!
//! CCF's own constitution is not in this repository. To run the same scenario against it (never commit its files):
//!
//! ```text
//! # CCF 6's samples/constitutions/default/{actions,validate,resolve,apply}.js in /tmp/ccf-constitution
//! CCF_CONSTITUTION_DIR=/tmp/ccf-constitution cargo test -p consort-cli --test ccf_constitution -- --ignored
//! ```

mod common;

use common::*;
use consort_crypto::ParsedCert;
use consort_node::config::NodeConfig;
use consort_node::net::client::{Connection, Protocol};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Longest the test waits for any one step.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

const FIXTURE: &str = include_str!("../../consort-gov/tests/fixtures/ccf_style_constitution.js");

const HELLO_JS: &str = r#"
export function hello(request) {
  return { body: { hello: request.caller.policy } };
}
"#;

/// A joining node's process, killed on drop.
struct Joiner {
    dir: PathBuf,
    address: String,
    child: Option<Child>,
}

impl Drop for Joiner {
    fn drop(&mut self) {
        kill_child(&mut self.child);
    }
}

/// `unix_s` as CCF's constitutions pass `valid_from`: `YYYYMMDDhhmmssZ`.
fn ccf_time(unix_s: i64) -> String {
    let (year, month, day, h, m, s) = utc_civil(unix_s);
    format!("{year:04}{month:02}{day:02}{h:02}{m:02}{s:02}Z")
}

fn now_s() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Proposes `actions` as member0 of the node in `dir` (at `address`) and votes for them if the proposal stays
/// open; returns the proposal's final state and id, or the error the vote got.
fn pass(dir: &Path, address: &str, actions: Value) -> (String, String) {
    let file = dir.join("proposal.json");
    std::fs::write(&file, json!({ "actions": actions }).to_string()).unwrap();
    let path = |f: &str| dir.join(f).to_string_lossy().to_string();
    let (sc, mc, mk) = (
        path("service_cert.pem"),
        path("member0_cert.pem"),
        path("member0_privk.pem"),
    );
    let gov = |cmd: &[&str]| -> Result<Value, String> {
        let mut args = vec![
            "gov",
            "--address",
            address,
            "--service-cert",
            &sc,
            "--cert",
            &mc,
            "--key",
            &mk,
        ];
        args.extend_from_slice(cmd);
        let (ok, out) = run_consort(&args);
        if !ok {
            return Err(out);
        }
        Ok(serde_json::from_str(&out[out.find('{').unwrap_or(0)..]).unwrap_or_else(|e| panic!("{e}: {out}")))
    };
    // Identical signed content within a second is refused as a replay.
    std::thread::sleep(Duration::from_millis(1100));
    let v = gov(&["propose", file.to_str().unwrap()]).unwrap_or_else(|e| panic!("propose: {e}"));
    let id = v["proposalId"].as_str().unwrap().to_string();
    if v["proposalState"] != "Open" {
        return (v["proposalState"].as_str().unwrap_or_default().to_string(), id);
    }
    match gov(&["vote", &id, "--accept"]) {
        Ok(v) => (v["proposalState"].as_str().unwrap_or_default().to_string(), id),
        Err(e) => (format!("vote refused: {e}"), id),
    }
}

/// A connection to `address` trusting `service_cert`, as the holder of `identity` (certificate and key files).
async fn connect(address: &str, service_cert: &str, identity: Option<(&Path, &Path)>) -> Connection {
    let id = identity.map(|(c, k)| (std::fs::read_to_string(c).unwrap(), std::fs::read_to_string(k).unwrap()));
    let tls = consort_node::net::tls::client_config(service_cert, id.as_ref().map(|(c, k)| (&**c, &**k))).unwrap();
    Connection::connect(address, tls, Protocol::Http1)
        .await
        .unwrap_or_else(|e| panic!("connect {address}: {e}"))
}

async fn call(conn: &Connection, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|b| ("application/json", b.to_string().into_bytes()));
    let r = conn
        .request_typed(method, path, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    (r.status, serde_json::from_slice(&r.body).unwrap_or(Value::Null))
}

/// Polls `GET path` on `address` (a fresh connection each time: the node may not be up yet) until `check` holds.
async fn eventually(
    address: &str,
    service_cert: &str,
    identity: Option<(&Path, &Path)>,
    path: &str,
    check: impl Fn(u16, &Value) -> bool,
) -> Value {
    let deadline = Instant::now() + STEP_TIMEOUT;
    let mut last = (0, Value::Null);
    while Instant::now() < deadline {
        let id = identity.map(|(c, k)| (std::fs::read_to_string(c).unwrap(), std::fs::read_to_string(k).unwrap()));
        let tls = consort_node::net::tls::client_config(service_cert, id.as_ref().map(|(c, k)| (&**c, &**k))).unwrap();
        if let Ok(Ok(conn)) = tokio::time::timeout(
            Duration::from_secs(5),
            Connection::connect(address, tls, Protocol::Http1),
        )
        .await
        {
            if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(5), conn.get(path)).await {
                last = (r.status, serde_json::from_slice(&r.body).unwrap_or(Value::Null));
                if check(last.0, &last.1) {
                    return last.1;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("GET {address}{path}: still {} {}", last.0, last.1)
}

fn node_status(nodes: &Value, id: &str) -> Option<String> {
    nodes["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["node_id"] == id)
        .and_then(|n| n["status"].as_str().map(str::to_string))
}

/// Everything the node wrote to its ledger directory so far.
fn ledger_bytes(dir: &Path) -> Vec<u8> {
    let mut all = vec![];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        all.extend(std::fs::read(e.path()).unwrap_or_default());
    }
    all
}

fn hello_bundle() -> Value {
    let endpoint = json!({"js_module": "hello.js", "js_function": "hello", "mode": "readonly",
                          "authn_policies": ["user_cert"], "forwarding_required": "sometimes", "openapi": {}});
    json!({"metadata": {"endpoints": {"/hello": {"get": endpoint}}},
           "modules": [{"name": "hello.js", "module": HELLO_JS}]})
}

/// The scenario of the module documentation, with `constitution` installed by proposal.
async fn scenario(constitution: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let mut n0 = TestNode::configure(&tmp.path().join("n0"), |c| {
        c.network.node_to_node_address = Some(format!("127.0.0.1:{}", free_port()));
    });
    n0.start().await;
    let (dir, address) = (n0.dir.clone(), n0.address.clone());
    let service_cert = n0.service_cert();
    // The genesis node recorded its signing request, for CCF's `set_node_certificate_validity` and the like.
    let ledger = ledger_bytes(&n0.ledger_dir());
    let has = |needle: &[u8]| ledger.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"certificate_signing_request") && has(b"BEGIN CERTIFICATE REQUEST"));

    let (state, _) = pass(
        &dir,
        &address,
        json!([{"name": "set_constitution", "args": {"constitution": constitution}}]),
    );
    assert_eq!(state, "Accepted");
    let anon = connect(&address, &service_cert, None).await;
    let r = anon.get("/gov/service/constitution").await.unwrap();
    assert_eq!(String::from_utf8_lossy(&r.body).trim(), constitution.trim());

    // set_user: a new user can write.
    let (user_cert, user_key) = keygen(&dir, "user1");
    let user = Some((user_cert.as_path(), user_key.as_path()));
    let as_user = connect(&address, &service_cert, user).await;
    let write = json!({"id": 1, "msg": "under CCF's constitution"});
    let (status, _) = call(&as_user, "POST", "/app/log/private", Some(write.clone())).await;
    assert!(status == 401 || status == 403, "an unknown user wrote: {status}");
    let cert = std::fs::read_to_string(&user_cert).unwrap();
    let (state, _) = pass(&dir, &address, json!([{"name": "set_user", "args": {"cert": cert}}]));
    assert_eq!(state, "Accepted");
    let (status, _) = call(&as_user, "POST", "/app/log/private", Some(write)).await;
    assert_eq!(status, 200);

    // set_js_app: the bundle serves.
    let (state, _) = pass(
        &dir,
        &address,
        json!([{"name": "set_js_app", "args": {"bundle": hello_bundle()}}]),
    );
    assert_eq!(state, "Accepted");
    eventually(&address, &service_cert, user, "/app/hello", |s, v| {
        s == 200 && v["hello"] == "user_cert"
    })
    .await;

    let joiner = trust_a_joiner(&tmp, &n0, user).await;
    renew_the_service_certificate(&n0, &joiner).await;

    // ACME is not supported: applying the proposal fails, and it stays open.
    let (state, id) = pass(&dir, &address, json!([{"name": "trigger_acme_refresh", "args": {}}]));
    assert!(
        state.contains("triggerACMERefresh") && state.contains("not supported by Consort"),
        "{state}"
    );
    let r = anon
        .get(&format!("/gov/members/proposals/{id}?api-version=2024-07-01"))
        .await
        .unwrap();
    assert_eq!(r.json().unwrap()["proposalState"], "Open");
}

/// A node joins; member0 trusts it by `transition_node_to_trusted`; it starts with the certificate the service
/// endorsed from its signing request and serves the service's state.
async fn trust_a_joiner(tmp: &tempfile::TempDir, n0: &TestNode, user: Option<(&Path, &Path)>) -> Joiner {
    let service_cert = n0.service_cert();
    let dir = tmp.path().join("n1");
    std::fs::create_dir_all(&dir).unwrap();
    let mut cfg = NodeConfig::default();
    let address = format!("127.0.0.1:{}", free_port());
    cfg.network.rpc_address = address.clone();
    cfg.network.node_to_node_address = Some(format!("127.0.0.1:{}", free_port()));
    cfg.ledger.signature_interval_ms = 20;
    cfg.join.target = Some(n0.address.clone());
    cfg.join.service_cert = Some(n0.dir.join("service_cert.pem"));
    let config = dir.join("node.toml");
    std::fs::write(&config, cfg.to_toml()).unwrap();
    let mut joiner = Joiner {
        child: Some(spawn_node(&dir, "join", &config)),
        dir,
        address,
    };
    let id_file = joiner.dir.join("joining_node_id");
    let deadline = Instant::now() + STEP_TIMEOUT;
    let node_id = loop {
        match std::fs::read_to_string(&id_file) {
            Ok(id) if !id.is_empty() => break id,
            _ => assert!(Instant::now() < deadline, "the joiner did not name itself"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eventually(&n0.address, &service_cert, None, "/node/network/nodes", |_, v| {
        node_status(v, &node_id).as_deref() == Some("Pending")
    })
    .await;

    let valid_from = now_s() - 3_600;
    let args = json!({"node_id": node_id, "valid_from": ccf_time(valid_from), "validity_period_days": 30});
    let (state, _) = pass(
        &n0.dir,
        &n0.address,
        json!([{"name": "transition_node_to_trusted", "args": args}]),
    );
    assert_eq!(state, "Accepted");

    // The endorsed certificate: the joiner's key, signed by the service key, with the validity asked.
    let nodes = eventually(&n0.address, &service_cert, None, "/gov/service/nodes", |_, v| {
        v["value"].as_array().is_some_and(|a| {
            a.iter()
                .any(|n| n["nodeId"] == node_id.as_str() && n["status"] == "Trusted" && n["certificate"].is_string())
        })
    })
    .await;
    let row = nodes["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["nodeId"] == node_id.as_str())
        .unwrap();
    let endorsed = ParsedCert::from_pem(row["certificate"].as_str().unwrap()).unwrap();
    let service = ParsedCert::from_pem(&service_cert).unwrap();
    assert_eq!(endorsed.key_id(), node_id);
    endorsed.verify_signed_by(&service.public_key().unwrap()).unwrap();
    assert_eq!(endorsed.not_before, valid_from);
    assert_eq!(endorsed.not_after, valid_from + 30 * 86_400 - 1);
    assert!(!endorsed.is_ca);

    // The joiner starts with it, serves (TLS checked against the service certificate) and has the state.
    eventually(&joiner.address, &service_cert, user, "/app/log/private?id=1", |s, v| {
        s == 200 && v["msg"] == "under CCF's constitution"
    })
    .await;
    let saved = std::fs::read_to_string(joiner.dir.join("node_cert.pem")).unwrap();
    assert_eq!(ParsedCert::from_pem(&saved).unwrap().der, endorsed.der);
    let through_joiner = connect(&joiner.address, &service_cert, user).await;
    let (status, _) = call(
        &through_joiner,
        "POST",
        "/app/log/private",
        Some(json!({"id": 2, "msg": "via the joiner"})),
    )
    .await;
    assert_eq!(status, 200, "a write sent to the joiner is forwarded to the primary");
    eventually(&joiner.address, &service_cert, user, "/app/hello", |s, _| s == 200).await;
    if let Some(Ok(Some(status))) = joiner.child.as_mut().map(|c| c.try_wait()) {
        panic!("the joiner exited: {status}");
    }
    joiner
}

/// `set_service_certificate_validity`: a new service certificate over the same key, shown by every node.
async fn renew_the_service_certificate(n0: &TestNode, joiner: &Joiner) {
    let service_cert = n0.service_cert();
    let valid_from = now_s() - 60;
    let args = json!({"valid_from": ccf_time(valid_from), "validity_period_days": 7});
    let (state, _) = pass(
        &n0.dir,
        &n0.address,
        json!([{"name": "set_service_certificate_validity", "args": args}]),
    );
    assert_eq!(state, "Accepted");
    let old = ParsedCert::from_pem(&service_cert).unwrap();
    for address in [&n0.address, &joiner.address] {
        let v = eventually(address, &service_cert, None, "/node/network", |_, v| {
            v["service_certificate"]
                .as_str()
                .is_some_and(|c| c.trim() != service_cert.trim())
        })
        .await;
        let renewed = ParsedCert::from_pem(v["service_certificate"].as_str().unwrap()).unwrap();
        assert_eq!(renewed.spki_der, old.spki_der);
        assert_eq!(renewed.subject_cn, old.subject_cn);
        assert!(renewed.is_ca);
        assert_eq!(
            (renewed.not_before, renewed.not_after),
            (valid_from, valid_from + 7 * 86_400 - 1)
        );
        // Clients holding either certificate reach the node.
        let tls = consort_node::net::tls::client_config(&renewed.to_pem(), None).unwrap();
        let conn = Connection::connect(address, tls, Protocol::Http1).await.unwrap();
        assert_eq!(conn.get("/node/network").await.unwrap().status, 200);
    }
}

/// POSTs a join request for `key` (virtual evidence, over TLS with a certificate for `key`) carrying `csr`.
async fn post_join_with_csr(node: &TestNode, key: &consort_crypto::SigningKey, csr: &str) -> (u16, Value) {
    use consort_attest::Platform;
    let measurement = consort_node::platform::measure_file(Path::new(consort_bin())).unwrap();
    let evidence = consort_attest::VirtualPlatform::new(measurement)
        .evidence_for(&key.verifying_key().to_spki_der())
        .unwrap();
    let body = json!({
        "public_key": key.verifying_key().to_pem(),
        "node_to_node_address": "127.0.0.1:1",
        "rpc_address": "127.0.0.1:2",
        "quote_info": evidence.to_json_value(),
        "encryption_public_key": consort_crypto::rsa_keys::generate_pem(2048).unwrap().1,
        "certificate_signing_request": csr,
    });
    let own = consort_crypto::x509::self_signed(key, &consort_crypto::CertParams::new("joiner")).unwrap();
    let tls =
        consort_node::net::tls::client_config(&node.service_cert(), Some((&own.pem, &key.to_pkcs8_pem()))).unwrap();
    let conn = Connection::connect(&node.address, tls, Protocol::Http1).await.unwrap();
    let r = conn
        .request("POST", "/node/join", Some(body.to_string().into_bytes()))
        .await
        .unwrap();
    (r.status, serde_json::from_slice(&r.body).unwrap_or(Value::Null))
}

/// A joiner's signing request must be a valid one for the key it joins with: otherwise a Pending record would
/// carry a request members could be led to endorse for a key the joiner does not hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_whose_signing_request_is_not_for_its_key_is_refused_and_not_recorded() {
    use consort_crypto::{Curve, SigningKey};
    let tmp = tempfile::tempdir().unwrap();
    let mut node = TestNode::configure(tmp.path(), |_| {});
    node.start().await;
    let key = SigningKey::generate(Curve::P384);
    let other = SigningKey::generate(Curve::P384);
    let params = consort_node::engine::certificates::node_cert_params("127.0.0.1:2");
    let foreign = consort_crypto::csr::signing_request(&other, &params).unwrap();
    let own = consort_crypto::csr::signing_request(&key, &params).unwrap();
    let garbled = own.replace("MI", "MJ");
    for (csr, says) in [
        (foreign.as_str(), "is not for public_key"),
        (&garbled, "certificate_signing_request"),
    ] {
        let (status, v) = post_join_with_csr(&node, &key, csr).await;
        assert_eq!(status, 400, "{v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{message}");
    }
    let node_id = consort_crypto::key_id(&key.verifying_key().to_spki_der());
    let anon = node.connect(false).await;
    let nodes = anon.get("/node/network/nodes").await.unwrap();
    assert!(!String::from_utf8_lossy(&nodes.body).contains(&node_id));
    // The same joiner with its own request is recorded, Pending, with the request in its row.
    let (status, v) = post_join_with_csr(&node, &key, &own).await;
    assert_eq!((status, v["node_status"].as_str()), (200, Some("Pending")), "{v}");
    let line = own.lines().nth(1).unwrap().as_bytes().to_vec();
    let deadline = Instant::now() + STEP_TIMEOUT;
    while !ledger_bytes(&node.ledger_dir()).windows(line.len()).any(|w| w == line) {
        assert!(
            Instant::now() < deadline,
            "the joiner's signing request is not in the ledger"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn ccf_times_are_formatted_as_constitutions_pass_them() {
    assert_eq!(ccf_time(0), "19700101000000Z");
    assert_eq!(ccf_time(1_704_067_200), "20240101000000Z");
    assert_eq!(ccf_time(1_709_208_000 + 3_661), "20240229130101Z");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_runs_proposals_under_a_ccf_style_constitution_installed_by_proposal() {
    scenario(FIXTURE).await;
}

/// CCF's own default constitution, concatenated from `$CCF_CONSTITUTION_DIR` (see the module documentation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs CCF's constitution files in CCF_CONSTITUTION_DIR"]
async fn a_service_runs_proposals_under_ccfs_own_constitution() {
    let dir = std::env::var("CCF_CONSTITUTION_DIR").expect("set CCF_CONSTITUTION_DIR");
    let parts: Vec<String> = ["actions.js", "validate.js", "resolve.js", "apply.js"]
        .iter()
        .map(|f| std::fs::read_to_string(Path::new(&dir).join(f)).unwrap())
        .collect();
    scenario(&parts.join("\n")).await;
}
