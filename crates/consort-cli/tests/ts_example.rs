//! The app developer's path, end to end: the TypeScript order book in examples/orderbook-ts is type-checked and
//! bundled with npm (`npm run build`: tsc, esbuild, @microsoft/ccf-app), turned into a `set_js_app` proposal by
//! `consort gov js-app-proposal`, deployed to a sandbox with `consort gov propose` and a vote, and then trades:
//! orders of two users match at once, each user sees only its own orders, the book shows open quantities only.
//! The toolchain is installed by scripts/test.sh (`npm ci` in the example); this test itself needs no network.

mod common;

use common::*;
use consort_node::net::client::{Connection, Protocol};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BUILD_TIMEOUT: Duration = Duration::from_secs(180);
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/orderbook-ts")
}

fn gov(sandbox: &DetachedSandbox, cmd: &[&str]) -> Value {
    let ws = &sandbox.ws;
    let (cert, c, k) = (
        ws.join("service_cert.pem"),
        ws.join("member0_cert.pem"),
        ws.join("member0_privk.pem"),
    );
    let address = sandbox.address(0);
    let mut args = vec!["gov", "--address", &address, "--service-cert"];
    let (cert, c, k) = (cert.to_str().unwrap(), c.to_str().unwrap(), k.to_str().unwrap());
    args.extend_from_slice(&[cert, "--cert", c, "--key", k]);
    args.extend_from_slice(cmd);
    let (ok, out) = run_consort(&args);
    assert!(ok, "{cmd:?}: {out}");
    serde_json::from_str(&out[out.find('{').unwrap_or(0)..]).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn pass(sandbox: &DetachedSandbox, proposal: &Path) {
    std::thread::sleep(Duration::from_millis(1100));
    let v = gov(sandbox, &["propose", proposal.to_str().unwrap()]);
    let state = if v["proposalState"] == "Open" {
        gov(sandbox, &["vote", v["proposalId"].as_str().unwrap(), "--accept"])["proposalState"].clone()
    } else {
        v["proposalState"].clone()
    };
    assert_eq!(state, "Accepted", "{v}");
}

async fn connect_as(sandbox: &DetachedSandbox, cert: &Path, key: &Path) -> Connection {
    let (cert, key) = (
        std::fs::read_to_string(cert).unwrap(),
        std::fs::read_to_string(key).unwrap(),
    );
    let tls = consort_node::net::tls::client_config(&sandbox.service_cert(), Some((&cert, &key))).unwrap();
    Connection::connect(&sandbox.address(0), tls, Protocol::Http1)
        .await
        .unwrap()
}

async fn call(conn: &Connection, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let r = conn
        .request(method, path, body.map(|b| b.to_string().into_bytes()))
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    (r.status, serde_json::from_slice(&r.body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_order_book_builds_deploys_and_keeps_orders_private() {
    let dir = example_dir();
    assert!(
        dir.join("node_modules/.bin/esbuild").exists(),
        "the example's npm toolchain is missing: run `bash scripts/test.sh` (it runs `npm ci` in {})",
        dir.display()
    );
    let mut build = Command::new("npm");
    build.args(["run", "build"]).current_dir(&dir);
    let out = run_bounded(build, BUILD_TIMEOUT);
    assert!(
        out.status.success(),
        "npm run build: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let tmp = tempfile::tempdir().unwrap();
    let proposal = tmp.path().join("set_js_app.json");
    let (ok, out) = run_consort(&[
        "gov",
        "js-app-proposal",
        "--app-dir",
        dir.join("dist").to_str().unwrap(),
        "--out",
        proposal.to_str().unwrap(),
    ]);
    assert!(ok, "js-app-proposal: {out}");

    let ws = tmp.path().join("sandbox");
    let mut sandbox = DetachedSandbox::start(&ws, 1, &[], &[]);
    pass(&sandbox, &proposal);
    // A second user, so that confidentiality between users can be seen.
    let (user1_cert, user1_key) = keygen(tmp.path(), "user1");
    let set_user = tmp.path().join("set_user.json");
    let cert_pem = std::fs::read_to_string(&user1_cert).unwrap();
    std::fs::write(
        &set_user,
        json!({"actions": [{"name": "set_user", "args": {"cert": cert_pem}}]}).to_string(),
    )
    .unwrap();
    pass(&sandbox, &set_user);

    let seller = sandbox.connect(0, true).await;
    let buyer = connect_as(&sandbox, &user1_cert, &user1_key).await;
    let deadline = Instant::now() + STEP_TIMEOUT;
    let (status, sold) = loop {
        let (status, v) = call(
            &seller,
            "POST",
            "/app/orders",
            Some(json!({"side": "sell", "price": 100, "quantity": 10})),
        )
        .await;
        if status != 404 || Instant::now() > deadline {
            break (status, v);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((status, &sold), (201, &json!({"id": 1, "filled": 0, "trades": []})));
    let (status, bought) = call(
        &buyer,
        "POST",
        "/app/orders",
        Some(json!({"side": "buy", "price": 101, "quantity": 4})),
    )
    .await;
    assert_eq!(
        (status, &bought),
        (
            201,
            &json!({"id": 2, "filled": 4, "trades": [{"price": 100, "quantity": 4}]})
        )
    );

    let (status, mine) = call(&seller, "GET", "/app/orders/1", None).await;
    assert_eq!(
        (status, &mine["filled"], &mine["side"]),
        (200, &json!(4), &json!("sell")),
        "{mine}"
    );
    let (status, theirs) = call(&buyer, "GET", "/app/orders/1", None).await;
    assert_eq!(status, 404, "another user's order is not disclosed: {theirs}");
    let (status, book) = call(&buyer, "GET", "/app/book", None).await;
    assert_eq!((status, &book), (200, &json!({"buy": {}, "sell": {"100": 6}})));
    let (status, v) = call(
        &buyer,
        "POST",
        "/app/orders",
        Some(json!({"side": "hold", "price": 1, "quantity": 1})),
    )
    .await;
    assert_eq!((status, &v["error"]["code"]), (400, &json!("InvalidInput")));
    let (_, api) = call(&buyer, "GET", "/app/api", None).await;
    assert!(api["paths"]["/app/orders/{id}"]["get"]["summary"].is_string(), "{api}");
    sandbox.stop();
}
