//! The JavaScript app runtime against a real KV store: the `ccf` API, module imports, and every limit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use consort_js::{CallInput, Interpreter, JsError, KvAccess, NodeView, ResponseBody, RuntimeOptions};
use consort_kv::{Store, Tx};

struct Node;
impl NodeView for Node {
    fn last_committed(&self) -> (u64, u64) {
        (2, 41)
    }
    fn status(&self, _view: u64, seqno: u64) -> String {
        if seqno <= 41 { "Committed" } else { "Unknown" }.into()
    }
    fn view_of(&self, seqno: u64) -> Option<u64> {
        (seqno <= 41).then_some(2)
    }
    /// Committed seqnos are ready; even ones wrote `records["k"] = "v<seqno>"`; later ones are still "fetching".
    fn state_range(&self, from: u64, to: u64) -> consort_js::StateRange {
        if to > 41 {
            return consort_js::StateRange::Pending;
        }
        let states = (from..=to)
            .map(|seqno| {
                let store = Arc::new(Store::new());
                if seqno % 2 == 0 {
                    let mut tx = Tx::shared(store.clone());
                    tx.put("records", b"k", format!("v{seqno}").as_bytes());
                    store.commit(tx, |_, _| ()).expect("commit");
                }
                (seqno, store)
            })
            .collect();
        consort_js::StateRange::Ready(states)
    }
}

const APP: &str = r#"
import { key, parse } from "./lib/util.js";
export function put(request) {
  const body = request.body.json();
  ccf.kv["records"].set(key(request.params.id), ccf.jsonCompatibleToBuf(body));
  return { statusCode: 201, headers: { "X-Written": request.params.id }, body: { ok: true } };
}
export function get(request) {
  const v = ccf.kv["records"].get(key(request.params.id));
  if (v === undefined) return { statusCode: 404, body: "no such record" };
  return { body: parse(v) };
}
export function count() {
  let n = 0;
  ccf.kv["records"].forEach((v, k) => { n += 1; });
  return { body: { n, size: ccf.kv["records"].size, committed: ccf.consensus.getLastCommittedTxId() } };
}
export function spin() { while (true) {} }
export function hog() { const a = []; while (true) { a.push(new Array(1e6).fill(1)); } }
export function deep() { function f(n) { return f(n + 1) + 1; } return f(0); }
export function fails() { throw new Error("the app refused"); }
export function reserved() { ccf.kv["public:ccf.gov.users.info"].set(key("1"), key("x")); return {}; }
export function internal() { ccf.kv["public:ccf.internal.signatures"].get(key("1")); return {}; }
export function digest(request) {
  const d = ccf.crypto.digest("SHA-256", ccf.strToBuf("abc"));
  const pair = ccf.crypto.generateEcdsaKeyPair("secp256r1");
  const sig = ccf.crypto.sign({ name: "ECDSA", hash: "SHA-256" }, pair.privateKey, ccf.strToBuf("m"));
  const ok = ccf.crypto.verifySignature({ name: "ECDSA", hash: "SHA-256" }, pair.publicKey, sig, ccf.strToBuf("m"));
  const bad = ccf.crypto.verifySignature({ name: "ECDSA", hash: "SHA-256" }, pair.publicKey, sig, ccf.strToBuf("n"));
  ccf.rpc.setClaimsDigest(d);
  return { body: new Uint8Array(d), headers: { "x-ok": String(ok), "x-bad": String(bad) } };
}
"#;

const UTIL: &str = r#"
export function key(id) { return ccf.strToBuf(String(id)); }
export function parse(buf) { return ccf.bufToJsonCompatible(buf); }
"#;

const RANGE: &str = r#"
export function range(request) {
  const [from, to] = request.params.id.split("-").map(Number);
  const states = ccf.historical.getStateRange("h", from, to, 60);
  if (states === null) return { statusCode: 202 };
  const seen = states.map((s) => {
    const v = s.kv["records"].get(ccf.strToBuf("k"));
    return [s.transactionId, v === undefined ? null : ccf.bufToStr(v)];
  });
  let refused = "";
  try { states[0].kv["records"].set(ccf.strToBuf("k"), ccf.strToBuf("x")); } catch (e) { refused = e.message; }
  return { body: { seen, refused, live: ccf.kv["records"].size } };
}
"#;

fn modules() -> Arc<BTreeMap<String, String>> {
    let mut m = BTreeMap::new();
    m.insert("/app.js".to_string(), APP.to_string());
    m.insert("/lib/util.js".to_string(), UTIL.to_string());
    m.insert("/range.js".to_string(), RANGE.to_string());
    Arc::new(m)
}

fn options() -> RuntimeOptions {
    RuntimeOptions {
        max_heap_bytes: 32 * 1024 * 1024,
        max_stack_bytes: 256 * 1024,
        max_execution_time_ms: 200,
        ..RuntimeOptions::default()
    }
}

fn call(
    js: &mut Interpreter,
    store: &Arc<Store>,
    function: &str,
    id: &str,
    body: &str,
    access: KvAccess,
) -> (Tx<'static>, Result<consort_js::CallOutput, JsError>) {
    let request = serde_json::json!({"method": "POST", "params": {"id": id}, "headers": {}, "query": ""});
    let module = if function == "range" { "/range.js" } else { "/app.js" };
    let input = CallInput {
        module,
        function,
        request_json: request.to_string(),
        body: body.as_bytes(),
        access,
        historical_json: None,
    };
    let deadline = Instant::now() + Duration::from_millis(options().max_execution_time_ms);
    js.call(
        Tx::shared(store.clone()),
        Box::new(Node),
        Box::new(move || Instant::now() > deadline),
        &input,
    )
}

#[test]
fn endpoints_read_and_write_the_transaction_through_ccf_kv() {
    let store = Arc::new(Store::new());
    let mut js = Interpreter::new(modules(), &options()).expect("interpreter");
    let (tx, out) = call(&mut js, &store, "put", "7", r#"{"msg": "hello"}"#, KvAccess::ReadWrite);
    let out = out.expect("put");
    assert_eq!(out.status, 201);
    assert_eq!(out.headers, vec![("x-written".to_string(), "7".to_string())]);
    assert_eq!(out.body, ResponseBody::Json(r#"{"ok":true}"#.into()));
    assert_eq!(tx.write_set().maps["records"].writes.len(), 1);
    store.commit(tx, |_, _| ()).expect("commit");

    let (_, out) = call(&mut js, &store, "get", "7", "", KvAccess::ReadOnly);
    assert_eq!(out.expect("get").body, ResponseBody::Json(r#"{"msg":"hello"}"#.into()));
    let (_, out) = call(&mut js, &store, "get", "8", "", KvAccess::ReadOnly);
    let out = out.expect("get missing");
    assert_eq!(
        (out.status, out.body),
        (404, ResponseBody::Text("no such record".into()))
    );
    let (_, out) = call(&mut js, &store, "count", "", "", KvAccess::ReadOnly);
    let body = match out.expect("count").body {
        ResponseBody::Json(j) => serde_json::from_str::<serde_json::Value>(&j).expect("json"),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        body,
        serde_json::json!({"n": 1, "size": 1, "committed": {"view": 2, "seqno": 41}})
    );
}

#[test]
fn read_only_endpoints_and_reserved_maps_refuse_writes_and_internal_maps_are_unreadable() {
    let store = Arc::new(Store::new());
    let mut js = Interpreter::new(modules(), &options()).expect("interpreter");
    let (tx, out) = call(&mut js, &store, "put", "1", r#"{"a": 1}"#, KvAccess::ReadOnly);
    match out {
        Err(JsError::Exception { message, .. }) => assert!(message.contains("read-only"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert!(!tx.has_writes());
    let (tx, out) = call(&mut js, &store, "reserved", "", "", KvAccess::ReadWrite);
    assert!(
        matches!(out, Err(JsError::Exception { ref message, .. }) if message.contains("read-only for applications"))
    );
    assert!(!tx.has_writes());
    let (_, out) = call(&mut js, &store, "internal", "", "", KvAccess::ReadOnly);
    assert!(matches!(out, Err(JsError::Exception { ref message, .. }) if message.contains("not readable")));
    // The interpreter goes on serving after those exceptions.
    let (_, out) = call(&mut js, &store, "put", "2", r#"{"a": 2}"#, KvAccess::ReadWrite);
    assert_eq!(out.expect("still serving").status, 201);
}

#[test]
fn an_exception_carries_its_message() {
    let store = Arc::new(Store::new());
    let mut js = Interpreter::new(modules(), &options()).expect("interpreter");
    let (_, out) = call(&mut js, &store, "fails", "", "", KvAccess::ReadWrite);
    match out {
        Err(JsError::Exception { message, .. }) => assert_eq!(message, "the app refused"),
        other => panic!("{other:?}"),
    }
    let (_, out) = call(&mut js, &store, "nosuch", "", "", KvAccess::ReadWrite);
    assert!(matches!(out, Err(JsError::Exception { .. })), "{out:?}");
}

#[test]
fn an_infinite_loop_is_interrupted_at_the_time_limit() {
    let store = Arc::new(Store::new());
    let mut js = Interpreter::new(modules(), &options()).expect("interpreter");
    let (_, out) = call(&mut js, &store, "spin", "", "", KvAccess::ReadWrite);
    assert_eq!(out.err(), Some(JsError::Timeout));
}

#[test]
fn allocating_past_the_heap_limit_fails_the_call() {
    let store = Arc::new(Store::new());
    let mut js = Interpreter::new(modules(), &options()).expect("interpreter");
    let (_, out) = call(&mut js, &store, "hog", "", "", KvAccess::ReadWrite);
    assert_eq!(out.err(), Some(JsError::OutOfMemory));
    // A fresh interpreter serves normally afterwards.
    let mut js = Interpreter::new(modules(), &options()).expect("interpreter");
    let (_, out) = call(&mut js, &store, "put", "3", "{}", KvAccess::ReadWrite);
    assert_eq!(out.expect("fresh").status, 201);
}

#[test]
fn deep_recursion_fails_at_the_stack_limit() {
    let store = Arc::new(Store::new());
    let mut js = Interpreter::new(modules(), &options()).expect("interpreter");
    let (_, out) = call(&mut js, &store, "deep", "", "", KvAccess::ReadWrite);
    assert_eq!(out.err(), Some(JsError::StackOverflow));
}

#[test]
fn crypto_digests_signs_verifies_and_sets_the_claims_digest() {
    let store = Arc::new(Store::new());
    let mut js = Interpreter::new(modules(), &options()).expect("interpreter");
    let (_, out) = call(&mut js, &store, "digest", "", "", KvAccess::ReadWrite);
    let out = out.expect("digest");
    let sha = consort_crypto::sha256(b"abc");
    assert_eq!(out.body, ResponseBody::Bytes(sha.to_vec()));
    assert_eq!(out.claims_digest, Some(sha));
    let h: BTreeMap<_, _> = out.headers.into_iter().collect();
    assert_eq!((h["x-ok"].as_str(), h["x-bad"].as_str()), ("true", "false"));
}

#[test]
fn get_state_range_gives_read_only_states_per_seqno_or_null_while_fetching() {
    let store = Arc::new(Store::new());
    let mut js = Interpreter::new(modules(), &options()).expect("interpreter");
    let (_, out) = call(&mut js, &store, "range", "40-42", "", KvAccess::ReadOnly);
    assert_eq!(out.expect("pending").status, 202, "null while the states are fetched");
    let (_, out) = call(&mut js, &store, "range", "3-6", "", KvAccess::ReadOnly);
    let body = match out.expect("range").body {
        ResponseBody::Json(j) => serde_json::from_str::<serde_json::Value>(&j).expect("json"),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        body,
        serde_json::json!({
            "seen": [["2.3", null], ["2.4", "v4"], ["2.5", null], ["2.6", "v6"]],
            "refused": "a historical state is read-only",
            "live": 0
        })
    );
    for (range, reason) in [("0-3", "invalid seqno range"), ("1-20000", "at most 10000 seqnos")] {
        let (_, out) = call(&mut js, &store, "range", range, "", KvAccess::ReadOnly);
        let err = out.expect_err(range).to_string();
        assert!(err.contains(reason), "{range}: {err}");
    }
}
