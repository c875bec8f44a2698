//! Historical queries end to end: the logging app's `/historical`, `/historical_receipt` and `/historical/range`
//! endpoints on a real node. A TxID whose value was later overwritten answers `202` (with `Retry-After`) while the
//! node fetches it, then `200` with the old value and a receipt `ccf.receipt` verifies; uncommitted, unknown,
//! wrong-view and malformed TxIDs get CCF's errors; a range returns every write in order, paged by `@nextLink`
//! when it does not fit the (deliberately small) cache; values written under a ledger secret that was since
//! rekeyed still read back.

mod common;

use common::*;
use consort_node::net::client::{Connection, Reply};
use std::time::{Duration, Instant};

/// Longest a historical fetch may take before the test gives up on it.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

async fn write(conn: &Connection, path: &str, id: u64, msg: &str) -> String {
    let r = conn
        .post_json(path, &serde_json::json!({"id": id, "msg": msg}))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.txid.unwrap()
}

async fn get_at(conn: &Connection, path: &str, txid: Option<&str>) -> Reply {
    let headers: Vec<(&str, &str)> = txid.map(|t| ("x-ms-ccf-transaction-id", t)).into_iter().collect();
    conn.request_with_headers("GET", path, &headers, None).await.unwrap()
}

fn header<'a>(r: &'a Reply, name: &str) -> Option<&'a str> {
    r.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// Asks until the answer is not `202` (bounded); returns the answer and how many `202`s came first, each checked
/// to carry CCF's `Retry-After`.
async fn until_ready(conn: &Connection, path: &str, txid: Option<&str>) -> (Reply, usize) {
    let deadline = Instant::now() + FETCH_TIMEOUT;
    let mut accepted = 0;
    loop {
        let r = get_at(conn, path, txid).await;
        if r.status != 202 {
            return (r, accepted);
        }
        assert_eq!(header(&r, "retry-after"), Some("3"), "{:?}", r.headers);
        assert!(r.content_type.starts_with("text/plain"), "{}", r.content_type);
        accepted += 1;
        assert!(
            Instant::now() < deadline,
            "{path} at {txid:?} still 202 after {FETCH_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn error_code(r: &Reply) -> String {
    r.json().unwrap()["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn seqno_of(txid: &str) -> u64 {
    txid.split_once('.').unwrap().1.parse().unwrap()
}

/// member0 proposes `trigger_ledger_rekey` (one member: accepted at once, or after its own ballot).
fn rekey(node: &TestNode) {
    let file = node.dir.join("rekey.json");
    std::fs::write(&file, r#"{"actions": [{"name": "trigger_ledger_rekey"}]}"#).unwrap();
    let p = |f: &str| node.dir.join(f).to_string_lossy().to_string();
    let (sc, mc, mk) = (p("service_cert.pem"), p("member0_cert.pem"), p("member0_privk.pem"));
    let base = [
        "gov",
        "--address",
        &node.address,
        "--service-cert",
        &sc,
        "--cert",
        &mc,
        "--key",
        &mk,
    ];
    let (ok, out) = run_consort(&[&base[..], &["propose", file.to_str().unwrap()]].concat());
    assert!(ok, "propose: {out}");
    let v: serde_json::Value = serde_json::from_str(&out[out.find('{').unwrap()..]).unwrap();
    if v["proposalState"] != "Accepted" {
        let id = v["proposalId"].as_str().unwrap().to_string();
        let (ok, out) = run_consort(&[&base[..], &["vote", &id, "--accept"]].concat());
        assert!(ok && out.contains("Accepted"), "vote: {out}");
    }
}

/// Follows `@nextLink` from `first` to the end of the range; returns every (seqno, msg) and the pages it took.
async fn whole_range(conn: &Connection, first: &str) -> (Vec<(u64, String)>, usize) {
    let mut link = Some(first.to_string());
    let (mut entries, mut pages) = (vec![], 0);
    while let Some(path) = link.take() {
        let (r, _) = until_ready(conn, &path, None).await;
        assert_eq!(r.status, 200, "{path}: {}", String::from_utf8_lossy(&r.body));
        let v = r.json().unwrap();
        for e in v["entries"].as_array().unwrap() {
            entries.push((e["seqno"].as_u64().unwrap(), e["msg"].as_str().unwrap().to_string()));
            assert_eq!(e["id"], 1);
        }
        link = v["@nextLink"].as_str().map(str::to_string);
        pages += 1;
        assert!(pages < 1000, "the range does not end");
    }
    (entries, pages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn historical_queries_answer_old_values_with_receipts_and_ccf_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = TestNode::configure(&tmp.path().join("n0"), |c| {
        // Small enough that a range over the whole ledger takes several pages, big enough for the genesis
        // transaction's state (it holds the constitution).
        c.limits.historical_cache_size_bytes = 160 * 1024;
        c.ledger.chunk_threshold_bytes = 8 * 1024;
    });
    node.start().await;
    let user = node.connect(true).await;

    let t: Vec<String> = {
        let mut t = vec![];
        for v in ["first", "second", "third"] {
            t.push(write(&user, "/app/log/private", 1, v).await);
        }
        t
    };
    let public = write(&user, "/app/log/public", 1, "public one").await;
    // Other writes between, so that the range has seqnos that did not write id 1.
    for i in 0..100 {
        write(
            &user,
            "/app/log/private",
            2,
            &format!("filler {i} {}", "f".repeat(1000)),
        )
        .await;
    }
    let last = write(&user, "/app/log/private", 2, "last filler").await;
    node.wait_committed(&user, &last).await;

    // The first TxID: 202 with Retry-After while the node fetches it, then the value it wrote, not today's.
    let (r, accepted) = until_ready(&user, "/app/log/private/historical?id=1", Some(&t[0])).await;
    assert!(accepted >= 1, "the first request should be answered 202");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json().unwrap(), serde_json::json!({"msg": "first"}));
    let now = user.get("/app/log/private?id=1").await.unwrap();
    assert_eq!(now.json().unwrap()["msg"], "third");

    // With its receipt, which CCF's Python verifies.
    let (r, _) = until_ready(&user, "/app/log/private/historical_receipt?id=1", Some(&t[0])).await;
    assert_eq!(r.status, 200);
    let v = r.json().unwrap();
    assert_eq!(v["msg"], "first");
    assert_eq!(v["receipt"]["is_signature_transaction"], false);
    let (ok, out) = {
        let file = tmp.path().join("r.json");
        std::fs::write(&file, v["receipt"].to_string()).unwrap();
        let sc = node.dir.join("service_cert.pem");
        run_consort(&[
            "receipt",
            "verify",
            file.to_str().unwrap(),
            "--service-cert",
            sc.to_str().unwrap(),
        ])
    };
    assert!(ok, "consort receipt verify: {out}");
    if let Some(venv) = ccf_venv() {
        ccf_verifies_receipt(&venv, tmp.path(), &v["receipt"], &node.dir.join("service_cert.pem"));
    }

    // A transaction that did not write the id: 204, as CCF's sample; the public map through its own endpoint.
    let (r, _) = until_ready(&user, "/app/log/private/historical?id=2", Some(&t[1])).await;
    assert_eq!(r.status, 204);
    let (r, _) = until_ready(&user, "/app/log/public/historical?id=1", Some(&public)).await;
    assert_eq!(r.json().unwrap(), serde_json::json!({"msg": "public one"}));
    let (r, _) = until_ready(&user, "/app/log/private/historical?id=1", Some(&public)).await;
    assert_eq!(r.status, 204, "the public write is not in the private map");

    // CCF's errors.
    let (view, s0) = t[0].split_once('.').unwrap();
    let view: u64 = view.parse().unwrap();
    let wrong_view = format!("{}.{s0}", view + 1);
    let unknown = format!("{view}.{}", seqno_of(&last) + 1_000_000);
    for (txid, code) in [
        (Some("not-a-txid"), "TransactionInvalid"),
        (Some("1"), "TransactionInvalid"),
        (None, "TransactionInvalid"),
        (Some(wrong_view.as_str()), "TransactionInvalid"),
        (Some(unknown.as_str()), "TransactionPendingOrUnknown"),
    ] {
        let r = get_at(&user, "/app/log/private/historical?id=1", txid).await;
        assert_eq!((r.status, error_code(&r).as_str()), (404, code), "{txid:?}");
        if code == "TransactionPendingOrUnknown" {
            assert_eq!(header(&r, "cache-control"), Some("no-cache"));
        }
    }
    let r = get_at(&user, "/app/log/private/historical?id=x", Some(&t[0])).await;
    assert_eq!((r.status, error_code(&r).as_str()), (400, "InvalidQueryParameterValue"));
    let anonymous = node.connect(false).await;
    let r = get_at(&anonymous, "/app/log/private/historical?id=1", Some(&t[0])).await;
    assert_eq!(r.status, 401, "historical endpoints authenticate like the others");

    // The range: every write to id 1, in order, over several pages of the small cache.
    let from = seqno_of(&t[0]);
    let (entries, pages) = whole_range(
        &user,
        &format!(
            "/app/log/private/historical/range?id=1&from_seqno={from}&to_seqno={}",
            seqno_of(&last)
        ),
    )
    .await;
    let expected: Vec<(u64, String)> = t
        .iter()
        .zip(["first", "second", "third"])
        .map(|(t, m)| (seqno_of(t), m.to_string()))
        .collect();
    assert_eq!(entries, expected);
    assert!(pages > 1, "the range should not fit one page of a 160 KiB cache");
    let (entries, _) = whole_range(&user, "/app/log/public/historical/range?id=1").await;
    assert_eq!(entries, vec![(seqno_of(&public), "public one".to_string())]);
    let r = user
        .get(&format!(
            "/app/log/private/historical/range?id=1&from_seqno=5&to_seqno={}",
            seqno_of(&last) + 1_000_000
        ))
        .await
        .unwrap();
    assert_eq!(
        (r.status, error_code(&r).as_str()),
        (400, "InvalidInput"),
        "an uncommitted end"
    );
    let r = user
        .get("/app/log/private/historical/range?id=1&from_seqno=9&to_seqno=3")
        .await
        .unwrap();
    assert_eq!((r.status, error_code(&r).as_str()), (400, "InvalidInput"));

    // A rekey: values written under the old secret still read back (a TxID not fetched before), as do new ones.
    rekey(&node);
    let after = write(&user, "/app/log/private", 1, "fourth").await;
    node.wait_committed(&user, &after).await;
    let (r, _) = until_ready(&user, "/app/log/private/historical?id=1", Some(&t[1])).await;
    assert_eq!(r.json().unwrap(), serde_json::json!({"msg": "second"}));
    let (r, _) = until_ready(&user, "/app/log/private/historical_receipt?id=1", Some(&after)).await;
    let v = r.json().unwrap();
    assert_eq!(v["msg"], "fourth");
    if let Some(venv) = ccf_venv() {
        ccf_verifies_receipt(&venv, tmp.path(), &v["receipt"], &node.dir.join("service_cert.pem"));
    }
    let (entries, _) = whole_range(
        &user,
        &format!(
            "/app/log/private/historical/range?id=1&from_seqno={from}&to_seqno={}",
            seqno_of(&after)
        ),
    )
    .await;
    let msgs: Vec<&str> = entries.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(msgs, ["first", "second", "third", "fourth"]);

    drop((user, anonymous));
    node.stop();
}
