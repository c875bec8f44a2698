//! `consort ledger audit --snapshot FILE`: the chunks a node wrote after one of its committed snapshots audit from
//! that snapshot (the ledger a node that joined from it holds), and not without it, nor from a changed snapshot,
//! nor when they do not start right after it.

mod common;

use common::*;
use consort_node::engine::snapshot_files::{list_committed, split_snapshot_file};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Periodic snapshot interval of the test node (transactions).
const SNAPSHOT_INTERVAL_TX: u64 = 20;
/// Batches of writes after the first committed snapshot appears, each committed before the next (so each ends
/// with a signature, which closes its chunk), and writes per batch.
const BATCHES_AFTER: u64 = 4;
const WRITES_PER_BATCH: u64 = 10;
/// Most writes the test makes waiting for a snapshot.
const MAX_WRITES: u64 = 2_000;

/// Committed chunk files of `dir`: (start, end, path), by start.
fn chunks(dir: &Path) -> Vec<(u64, u64, PathBuf)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().to_string();
            let c = consort_ledger::parse_chunk_name(&name).filter(|_| name.ends_with(".committed"))?;
            Some((c.start, c.end?, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// Copies `files` into a new directory `name` under `root`.
fn copy_into(root: &Path, name: &str, files: &[&(u64, u64, PathBuf)]) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for (_, _, path) in files {
        std::fs::copy(path, dir.join(path.file_name().unwrap())).unwrap();
    }
    dir
}

fn audit(snapshot: Option<&Path>, dir: &Path) -> (bool, String) {
    let mut args = vec!["ledger".to_string(), "audit".to_string()];
    if let Some(s) = snapshot {
        args.extend(["--snapshot".to_string(), s.display().to_string()]);
    }
    args.push(dir.display().to_string());
    run_consort(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

async fn write(user: &consort_node::net::client::Connection, id: u64) -> String {
    let body = serde_json::json!({"id": id, "msg": format!("message {id}")});
    let r = user.post_json("/app/log/private", &body).await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.txid.expect("a transaction id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_after_a_snapshot_audit_from_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = TestNode::configure(&tmp.path().join("n0"), |cfg| {
        cfg.ledger.snapshot_tx_interval = SNAPSHOT_INTERVAL_TX;
        // Every signature closes its chunk, so one starts right after the snapshot's signature transaction.
        cfg.ledger.chunk_threshold_bytes = 1;
        // Keep the first snapshot: the test audits from it.
        cfg.ledger.snapshots_to_keep = 100;
    });
    node.start().await;
    let user = node.connect(true).await;
    let snapshots = node.dir.join("snapshots");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut id = 0;
    // Committed batches until the first snapshot file appears (it is written once its evidence commits).
    while list_committed(&snapshots).is_empty() {
        assert!(
            Instant::now() < deadline && id < MAX_WRITES,
            "no committed snapshot after {id} writes"
        );
        let mut last = String::new();
        for _ in 0..WRITES_PER_BATCH {
            last = write(&user, id).await;
            id += 1;
        }
        node.wait_committed(&user, &last).await;
    }
    for _ in 0..BATCHES_AFTER {
        let mut last = String::new();
        for _ in 0..WRITES_PER_BATCH {
            last = write(&user, id).await;
            id += 1;
        }
        node.wait_committed(&user, &last).await;
    }
    node.stop();

    // The first snapshot: the batches after it are in chunks of their own.
    let snapshot = list_committed(&snapshots)
        .into_iter()
        .next()
        .expect("a committed snapshot");
    let (s, evidence) = (snapshot.seqno, snapshot.evidence);
    let all = chunks(&node.ledger_dir());
    let after: Vec<_> = all.iter().filter(|(start, _, _)| *start > s).collect();
    assert_eq!(
        after.first().map(|c| c.0),
        Some(s + 1),
        "no chunk starts after the snapshot at {s}"
    );
    assert!(after.len() >= 2, "a single chunk after the snapshot at {s}: {after:?}");
    let dir = copy_into(tmp.path(), "after", &after);
    let parts = split_snapshot_file(&std::fs::read(&snapshot.path).unwrap()).unwrap();
    assert_eq!(parts.seqno, s);

    // With the snapshot: every transaction after it, up to the last signature (every chunk ends at one).
    let (ok, out) = audit(Some(&snapshot.path), &dir);
    assert!(ok, "audit from the snapshot at {s} failed: {out}");
    let end = after.last().unwrap().1;
    for expected in [
        format!("{} chunks, {} transactions", after.len(), end - s),
        format!("verified up to {}.{end},", parts.view),
        format!("started from the snapshot at {}.{s} ", parts.view),
        format!("its digest matches the evidence transaction at seqno {evidence}"),
        node.service_cert().trim_end().to_string(),
    ] {
        assert!(out.contains(&expected), "{expected:?} not in: {out}");
    }

    // Without it, the chunks do not start at seqno 1.
    let (ok, out) = audit(None, &dir);
    assert!(!ok && out.contains("expected 1"), "{out}");

    // A snapshot with one byte flipped: in its signature entry, in its public tables, at its end (encrypted state,
    // which only the evidence covers).
    let bytes = std::fs::read(&snapshot.path).unwrap();
    let bundle = bytes.windows(4).position(|w| w == b"CSB1").expect("the bundle's magic");
    let sig_len = parts.signature_entry.len();
    let entries_at = bundle + 12;
    let snapshot_end = entries_at + sig_len + parts.snapshot_entry.len();
    for (what, at) in [
        ("signature entry", entries_at + sig_len / 2),
        ("snapshot entry", entries_at + sig_len + 100),
        ("encrypted state", snapshot_end - 5),
    ] {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x01;
        let file = tmp.path().join(format!("flipped_{at}.committed"));
        std::fs::write(&file, &flipped).unwrap();
        let (ok, out) = audit(Some(&file), &dir);
        assert!(!ok, "a flipped byte in the {what} (offset {at}) was accepted: {out}");
        assert!(out.contains("INVALID"), "{what}: {out}");
    }

    // Chunks that do not start right after the snapshot: a gap, named, and an overlap.
    let gap = copy_into(tmp.path(), "gap", &after[1..]);
    let (ok, out) = audit(Some(&snapshot.path), &gap);
    let missing = format!("gap, seqnos {} to {} are missing", s + 1, after[1].0 - 1);
    assert!(!ok && out.contains(&missing), "{out}");
    let mut overlapping: Vec<_> = all.iter().filter(|(_, end, _)| *end == s).collect();
    assert_eq!(overlapping.len(), 1, "no chunk ends at the snapshot's signature {s}");
    overlapping.extend(after.iter().copied());
    let overlap = copy_into(tmp.path(), "overlap", &overlapping);
    let (ok, out) = audit(Some(&snapshot.path), &overlap);
    assert!(!ok && out.contains("overlap"), "{out}");
}
