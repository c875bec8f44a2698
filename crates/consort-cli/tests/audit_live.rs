//! `consort ledger audit DIR` reads every chunk it finds, committed or not (as `read_ledger.py --uncommitted`
//! does): the ledger of a young running service, whose only chunk is still open, audits and the report says what no
//! signature covers yet; a changed byte in an uncommitted chunk is reported with the file.

mod common;

use common::*;
use std::path::Path;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_of_a_running_young_service_audits_uncommitted_chunks_included() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::configure(&dir.path().join("n0"), |_| {});
    node.start().await;
    let conn = node.connect(true).await;
    let mut last = String::new();
    for id in 0..5 {
        let body = serde_json::json!({"id": id, "msg": format!("m{id}")});
        let r = conn.post_json("/app/log/private", &body).await.unwrap();
        assert_eq!(r.status, 200);
        last = r.txid.clone().unwrap();
    }
    node.wait_committed(&conn, &last).await;

    // A copy of the ledger as the running node has it: a young service's chunks are not committed yet.
    let copy = dir.path().join("copy");
    copy_dir(&node.ledger_dir(), &copy);
    let names: Vec<String> = std::fs::read_dir(&copy)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert!(
        names.iter().any(|n| !n.ends_with(".committed")),
        "expected an uncommitted chunk in {names:?}"
    );
    let (ok, out) = run_consort(&["ledger", "audit", copy.to_str().unwrap()]);
    assert!(ok, "consort ledger audit refused a running node's ledger: {out}");
    assert!(out.contains("ledger OK"), "{out}");
    let not_yet: usize = out
        .lines()
        .find_map(|l| {
            l.strip_prefix("chunks: ")?
                .split(", ")
                .nth(1)?
                .strip_suffix(" not yet")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no chunk count in: {out}"));
    assert!(not_yet >= 1, "{out}");
    assert!(
        out.contains("covered by a signature") || out.contains("covered by signatures up to seqno"),
        "{out}"
    );

    // One changed byte inside the open chunk's entries: refused, naming the chunk.
    let open = names.iter().find(|n| !n.ends_with(".committed")).unwrap();
    let path = copy.join(open);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();
    let (ok, out) = run_consort(&["ledger", "audit", copy.to_str().unwrap()]);
    assert!(!ok, "a changed uncommitted chunk was accepted: {out}");
    assert!(out.contains("INVALID") && out.contains(open.as_str()), "{out}");
    node.stop();
}
