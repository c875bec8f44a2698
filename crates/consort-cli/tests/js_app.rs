//! JavaScript apps deployed by governance, end to end on a 3-node sandbox: `set_js_runtime_options` and
//! `set_js_app` by proposal; the bundle's endpoints (path templates, read-only and read-write modes, policies)
//! served by every node, writes sent to a backup forwarded; `/app/api` lists them; an infinite loop, a huge
//! allocation and deep recursion each get a 500 under the limits while the node goes on serving; a private write
//! is in no ledger file in the clear; an endpoint that sets a claims digest gets a receipt whose leaf commits to
//! it (checked by `ccf.receipt` when CCF_VENV is set); a node restarted on its directories serves the bundle; a
//! later `set_js_app` replaces it and `remove_js_app` removes it.

mod common;

use common::*;
use consort_node::net::client::Connection;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// Longest the test may wait for anything one step needs.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

const RECORDS_JS: &str = r#"
function key(id) { return ccf.strToBuf(String(id)); }
export function put(request) {
  const body = request.body.json();
  if (typeof body.msg !== "string") return { statusCode: 400, body: { error: "msg must be a string" } };
  ccf.kv["records"].set(key(request.params.id), ccf.strToBuf(body.msg));
  return { statusCode: 200, body: { id: request.params.id, caller: request.caller.policy } };
}
export function get(request) {
  const v = ccf.kv["records"].get(key(request.params.id));
  if (v === undefined) return { statusCode: 404, body: { error: "no such record" } };
  return { body: { msg: ccf.bufToStr(v), version: ccf.kv["records"].getVersionOfPreviousWrite(key(request.params.id)) } };
}
export function count() {
  return { body: { count: ccf.kv["records"].size } };
}
export function hello() { return { body: "hello __VERSION__", headers: { "x-app": "records" } }; }
export function spin() { while (true) {} }
export function hog() { const a = []; while (true) { a.push("x".repeat(1 << 20) + a.length); } }
export function deep() { function f(n) { return f(n + 1) + 1; } return f(0); }
export function range(request) {
  const q = Object.fromEntries(request.query.split("&").map((kv) => kv.split("=")));
  const states = ccf.historical.getStateRange(q.id, Number(q.from), Number(q.to), 1800);
  if (states === null) return { statusCode: 202, headers: { "retry-after": "1" } };
  const entries = [];
  for (const s of states) {
    const v = s.kv["records"].get(key(q.id));
    if (v !== undefined) entries.push({ txid: s.transactionId, msg: ccf.bufToStr(v) });
  }
  let writeRefused = false;
  try { states[0].kv["records"].set(key(q.id), ccf.strToBuf("rewritten")); } catch (e) { writeRefused = true; }
  return { body: { count: states.length, entries, writeRefused } };
}
export function claimed(request) {
  const text = request.body.text();
  ccf.kv["claims"].set(key("last"), ccf.strToBuf(text));
  ccf.rpc.setClaimsDigest(ccf.crypto.digest("SHA-256", ccf.strToBuf(text)));
  return { body: { claimed: text } };
}
"#;

fn endpoint(function: &str, mode: &str, policies: &[&str]) -> Value {
    json!({"js_module": "records.js", "js_function": function, "mode": mode,
           "authn_policies": policies, "forwarding_required": "sometimes", "openapi": {}})
}

fn bundle(version: &str) -> Value {
    let module = RECORDS_JS.replace("__VERSION__", version);
    json!({
        "metadata": {"endpoints": {
            "/records/{id}": {"put": endpoint("put", "readwrite", &["user_cert"]),
                              "get": endpoint("get", "readonly", &["user_cert"])},
            "/records": {"get": endpoint("count", "readonly", &["user_cert"])},
            format!("/{version}/hello"): {"get": endpoint("hello", "readonly", &["no_auth"])},
            "/spin": {"post": endpoint("spin", "readwrite", &["user_cert"])},
            "/hog": {"post": endpoint("hog", "readwrite", &["user_cert"])},
            "/deep": {"post": endpoint("deep", "readwrite", &["user_cert"])},
            "/claimed": {"post": endpoint("claimed", "readwrite", &["user_cert"])},
            "/range": {"get": endpoint("range", "readonly", &["user_cert"])}
        }},
        "modules": [{"name": "records.js", "module": module}]
    })
}

/// Proposes `actions` as member0 and votes for them; returns the final proposal state.
fn pass(sandbox: &DetachedSandbox, actions: Value) -> String {
    let file = sandbox.ws.join("proposal.json");
    std::fs::write(&file, json!({ "actions": actions }).to_string()).unwrap();
    let ws = &sandbox.ws;
    let cert = ws.join("service_cert.pem");
    let (c, k) = (ws.join("member0_cert.pem"), ws.join("member0_privk.pem"));
    let address = sandbox.address(0);
    let gov = |cmd: &[&str]| -> Value {
        let mut args = vec!["gov", "--address", &address, "--service-cert"];
        let (cert, c, k) = (cert.to_str().unwrap(), c.to_str().unwrap(), k.to_str().unwrap());
        args.extend_from_slice(&[cert, "--cert", c, "--key", k]);
        args.extend_from_slice(cmd);
        let (ok, out) = run_consort(&args);
        assert!(ok, "{cmd:?}: {out}");
        serde_json::from_str(&out[out.find('{').unwrap_or(0)..]).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    // Identical signed content within a second is refused as a replay.
    std::thread::sleep(Duration::from_millis(1100));
    let v = gov(&["propose", file.to_str().unwrap()]);
    if v["proposalState"] != "Open" {
        return v["proposalState"].as_str().unwrap_or_default().to_string();
    }
    let id = v["proposalId"].as_str().unwrap().to_string();
    let v = gov(&["vote", &id, "--accept"]);
    v["proposalState"].as_str().unwrap_or_default().to_string()
}

async fn call(conn: &Connection, method: &str, path: &str, body: Option<&str>) -> (u16, Value, String) {
    let r = conn
        .request_typed(method, path, body.map(|b| ("application/json", b.as_bytes().to_vec())))
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let json = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status, json, r.txid.unwrap_or_default())
}

/// Waits until `check` holds on what `GET path` answers on `conn`.
async fn eventually(conn: &Connection, path: &str, check: impl Fn(u16, &Value) -> bool) -> Value {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let (status, v, _) = call(conn, "GET", path, None).await;
        if check(status, &v) {
            return v;
        }
        assert!(Instant::now() < deadline, "GET {path}: still {status} {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_committed(conn: &Connection, txid: &str) {
    eventually(conn, &format!("/app/tx?transaction_id={txid}"), |_, v| {
        v["status"] == "Committed"
    })
    .await;
}

fn ledger_holds(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir.join("ledger")).unwrap().any(|f| {
        let data = std::fs::read(f.unwrap().path()).unwrap_or_default();
        data.windows(needle.len()).any(|w| w == needle)
    })
}

/// `ccf.historical.getStateRange`: three writes to one record are read back from the states of their seqnos
/// (with their TxIDs), after `null` (202) while the node fetches them; the states are read-only; a range past the
/// commit or longer than the limit throws (500 with the reason).
async fn state_ranges(primary: &Connection, backup: &Connection) {
    let mut written = Vec::new();
    for msg in ["first", "second", "third"] {
        let body = json!({ "msg": msg }).to_string();
        let (status, v, txid) = call(primary, "PUT", "/app/records/9", Some(&body)).await;
        assert_eq!(status, 200, "{v}");
        written.push((txid, msg));
    }
    wait_committed(primary, &written[2].0).await;
    let seqno = |txid: &str| txid.split('.').nth(1).unwrap().parse::<u64>().unwrap();
    let (from, to) = (seqno(&written[0].0), seqno(&written[2].0));
    let path = format!("/app/range?id=9&from={from}&to={to}");
    let v = eventually(backup, &path, |s, _| s != 202).await;
    let want: Vec<Value> = written
        .iter()
        .map(|(txid, msg)| json!({"txid": txid, "msg": msg}))
        .collect();
    assert_eq!(v["entries"], json!(want), "{v}");
    assert_eq!(v["count"], to - from + 1, "one state per seqno: {v}");
    assert_eq!(v["writeRefused"], true, "{v}");
    for (path, reason) in [
        (
            format!("/app/range?id=9&from={from}&to={}", to + 1_000),
            "not committed",
        ),
        (format!("/app/range?id=9&from=1&to={}", 20_000), "at most 10000"),
        ("/app/range?id=9&from=0&to=3".to_string(), "invalid seqno range"),
    ] {
        let (status, v, _) = call(backup, "GET", &path, None).await;
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(status == 500 && msg.contains(reason), "{path}: {status} {v}");
    }
    let (status, v, _) = call(primary, "GET", "/app/records/9", None).await;
    assert_eq!(
        (status, &v["msg"]),
        (200, &json!("third")),
        "the latest state is untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_js_app_deployed_by_proposal_serves_on_every_node_under_its_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("sandbox");
    let mut sandbox = DetachedSandbox::start(&ws, 3, &[], &[]);
    let options = json!({"max_heap_bytes": 50 * 1024 * 1024, "max_stack_bytes": 512 * 1024,
                         "max_execution_time_ms": 500, "log_exception_details": false,
                         "return_exception_details": true});
    assert_eq!(
        pass(&sandbox, json!([{"name": "set_js_runtime_options", "args": options}])),
        "Accepted"
    );
    assert_eq!(
        pass(
            &sandbox,
            json!([{"name": "set_js_app", "args": {"bundle": bundle("v1")}}])
        ),
        "Accepted"
    );

    let conns = [
        sandbox.connect(0, true).await,
        sandbox.connect(1, true).await,
        sandbox.connect(2, true).await,
    ];
    let primary = 0;
    let backup = &conns[1];
    // A write sent to a backup is forwarded to the primary; every node then reads it.
    let marker = format!("private-js-{}", std::process::id());
    let (status, v, txid) = call(
        backup,
        "PUT",
        "/app/records/42",
        Some(&json!({"msg": marker}).to_string()),
    )
    .await;
    assert_eq!((status, &v), (200, &json!({"id": "42", "caller": "user_cert"})), "{v}");
    wait_committed(&conns[primary], &txid).await;
    for conn in &conns {
        let v = eventually(conn, "/app/records/42", |s, _| s == 200).await;
        assert_eq!(v["msg"], marker.as_str());
        assert!(v["version"].as_u64().unwrap() > 0, "{v}");
    }
    // Template parameters, policies and modes.
    let (status, v, _) = call(&conns[2], "GET", "/app/records/7", None).await;
    assert_eq!((status, &v["error"]), (404, &json!("no such record")));
    let (status, _, _) = call(&conns[0], "PUT", "/app/records/8", Some(r#"{"msg": 5}"#)).await;
    assert_eq!(status, 400, "the app's own refusal");
    let anon = sandbox.connect(2, false).await;
    let (status, v, _) = call(&anon, "GET", "/app/records/42", None).await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (401, &json!("InvalidAuthenticationInfo")),
        "{v}"
    );
    let r = anon.get("/app/v1/hello").await.unwrap();
    assert_eq!((r.status, &r.body[..]), (200, &b"hello v1"[..]));
    let (status, v, _) = call(&conns[1], "GET", "/app/records", None).await;
    assert_eq!((status, &v), (200, &json!({"count": 1})));
    let (_, api, _) = call(&conns[0], "GET", "/app/api", None).await;
    assert!(api["paths"]["/app/records/{id}"]["put"].is_object(), "{api}");
    assert!(
        api["paths"]["/app/log/private"].is_object(),
        "built-in apps stay listed"
    );

    // Limits: each failure is a 500 with its reason; the node goes on serving.
    for (path, reason) in [
        ("/app/spin", "too long"),
        ("/app/hog", "out of memory"),
        ("/app/deep", "stack overflow"),
    ] {
        let (status, v, _) = call(&conns[primary], "POST", path, Some("{}")).await;
        assert_eq!(status, 500, "{path}: {v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(reason), "{path}: {msg}");
        let (status, _, _) = call(&conns[primary], "GET", "/app/records/42", None).await;
        assert_eq!(status, 200, "still serving after {path}");
    }

    state_ranges(&conns[primary], &conns[2]).await;

    // A claims digest set by the app is bound into the transaction's receipt.
    let claim = "order 17 shipped";
    let r = conns[primary]
        .request_typed("POST", "/app/claimed", Some(("text/plain", claim.as_bytes().to_vec())))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let txid = r.txid.unwrap();
    wait_committed(&conns[primary], &txid).await;
    let receipt = eventually(
        &conns[primary],
        &format!("/app/receipt?transaction_id={txid}"),
        |s, _| s == 200,
    )
    .await;
    let want = hex::encode(consort_crypto::sha256(claim.as_bytes()));
    assert_eq!(receipt["leaf_components"]["claims_digest"], want.as_str(), "{receipt}");
    if let Some(venv) = ccf_venv() {
        ccf_verifies_receipt(&venv, tmp.path(), &receipt, &ws.join("service_cert.pem"));
    }

    // A later set_js_app replaces the bundle; the records survive (they are KV state, not code).
    assert_eq!(
        pass(
            &sandbox,
            json!([{"name": "set_js_app", "args": {"bundle": bundle("v2")}}])
        ),
        "Accepted"
    );
    eventually(&conns[2], "/app/v2/hello", |s, _| s == 200).await;
    let (status, _, _) = call(&conns[2], "GET", "/app/v1/hello", None).await;
    assert_eq!(status, 404, "the old bundle's endpoint is gone");
    assert_eq!(
        eventually(&conns[2], "/app/records/42", |s, _| s == 200).await["msg"],
        marker.as_str()
    );

    // remove_js_app removes every endpoint; a new set_js_app deploys again.
    assert_eq!(
        pass(&sandbox, json!([{"name": "remove_js_app", "args": {}}])),
        "Accepted"
    );
    eventually(&conns[1], "/app/records/42", |s, _| s == 404).await;
    let (status, _, _) = call(&conns[1], "GET", "/app/v2/hello", None).await;
    assert_eq!(status, 404);
    assert_eq!(
        pass(
            &sandbox,
            json!([{"name": "set_js_app", "args": {"bundle": bundle("v3")}}])
        ),
        "Accepted"
    );
    eventually(&conns[1], "/app/v3/hello", |s, _| s == 200).await;

    // Nothing of the private record is in any ledger file in the clear; the public endpoint table is.
    drop(conns);
    drop(anon);
    sandbox.stop();
    for i in 0..3 {
        let dir = sandbox.node_dir(i);
        assert!(
            !ledger_holds(&dir, marker.as_bytes()),
            "node {i}'s ledger holds the private record"
        );
        assert!(
            ledger_holds(&dir, b"/v3/hello"),
            "node {i}'s ledger holds the endpoints table"
        );
    }

    // A node restarted on its directories serves the bundle (read-only endpoints need no primary).
    let dir = sandbox.node_dir(1);
    let mut child = Some(spawn_node(&dir, "start", &dir.join("node.toml")));
    let conn = {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let read = |f: &str| std::fs::read_to_string(ws.join(f)).unwrap();
            let tls = consort_node::net::tls::client_config(&read("service_cert.pem"), None).unwrap();
            match Connection::connect(&sandbox.address(1), tls, consort_node::net::client::Protocol::Http1).await {
                Ok(c) => break c,
                Err(e) => assert!(Instant::now() < deadline, "restarted node: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let v = eventually(&conn, "/app/v3/hello", |s, _| s == 200 || s == 404).await;
    let r = conn.get("/app/v3/hello").await.unwrap();
    assert_eq!((r.status, &r.body[..]), (200, &b"hello v3"[..]), "{v}");
    kill_child(&mut child);
}
