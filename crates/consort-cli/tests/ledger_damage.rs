//! End-to-end tests of a node restarted over a ledger edited while it was stopped (the host edits files): a flipped
//! byte in a closed chunk makes it refuse to start, naming the chunk and the offset and leaving the file as it
//! was; a torn tail of the open chunk is dropped, and the node serves every committed transaction.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Small chunks, so that a few dozen transactions close several of them.
const CHUNK_THRESHOLD_BYTES: u64 = 4096;
/// Transactions written before the node is stopped.
const TXS: u64 = 60;

fn configure(dir: &Path) -> TestNode {
    TestNode::configure(dir, |cfg| cfg.ledger.chunk_threshold_bytes = CHUNK_THRESHOLD_BYTES)
}

/// Writes `TXS` public log messages and waits until the last is committed; returns their transaction ids.
async fn write_committed(node: &TestNode) -> Vec<String> {
    let user = node.connect(true).await;
    let mut txids = Vec::new();
    for i in 0..TXS {
        let r = user
            .post_json(
                "/app/log/public",
                &serde_json::json!({"id": i, "msg": format!("message {i}")}),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{:?}", r.body);
        txids.push(r.txid.clone().expect("a transaction id"));
    }
    node.wait_committed(&user, txids.last().unwrap()).await;
    txids
}

/// Every message written by [`write_committed`] reads back, and every one of its transactions is Committed.
async fn check_all_served(node: &TestNode, txids: &[String]) {
    let user = node.connect(true).await;
    for i in 0..TXS {
        let r = user.get(&format!("/app/log/public?id={i}")).await.unwrap();
        assert_eq!(r.status, 200, "message {i}: {:?}", r.body);
        assert_eq!(r.json().unwrap()["msg"], format!("message {i}"));
    }
    for txid in txids {
        let r = user.get(&format!("/app/tx?transaction_id={txid}")).await.unwrap();
        assert_eq!(r.json().unwrap()["status"], "Committed", "{txid}");
    }
}

/// The ledger's chunk files by first seqno.
fn chunks(dir: &Path) -> BTreeMap<u64, PathBuf> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let Some(rest) = name.strip_prefix("ledger_") else {
            continue;
        };
        let start = rest.split(['-', '.']).next().unwrap().parse::<u64>().unwrap();
        out.insert(start, path);
    }
    out
}

/// Every file in `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

fn is_closed(path: &Path) -> bool {
    path.file_name().unwrap().to_str().unwrap().contains('-')
}

/// Offsets of a closed chunk's entries, read from its position table (its header holds the table's offset).
fn entry_offsets(bytes: &[u8]) -> Vec<usize> {
    let table_at = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    bytes[table_at..]
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()) as usize)
        .collect()
}

/// Starts the node expecting it to refuse: it must exit, non-zero, within the start timeout. Returns what it
/// wrote to stderr during this start.
fn start_refused(node: &mut TestNode) -> String {
    let err_log = node.dir.join("err.log");
    let logged_before = std::fs::metadata(&err_log).map_or(0, |m| m.len() as usize);
    node.child = Some(spawn_node(&node.dir, "start", &node.config));
    let deadline = Instant::now() + START_TIMEOUT;
    let status = loop {
        if let Some(status) = node.child.as_mut().unwrap().try_wait().unwrap() {
            node.child = None;
            break status;
        }
        if Instant::now() > deadline {
            node.kill();
            panic!("the node did not refuse to start within {START_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read(&err_log).unwrap();
    let stderr = String::from_utf8_lossy(&stderr[logged_before..]).into_owned();
    assert!(
        !status.success(),
        "the node exited successfully over a damaged ledger: {stderr}"
    );
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_a_closed_chunk_stops_the_node_and_names_chunk_and_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = configure(&tmp.path().join("n0"));
    node.start().await;
    let txids = write_committed(&node).await;
    node.stop();

    // A closed chunk with at least three entries; the host changes one byte in the middle one's header (its
    // version), which the chunk's framing covers. (A byte of an entry's payload is covered by its AES-GCM tag,
    // which replay checks: the node refuses that too, naming the transaction.)
    let ledger = node.ledger_dir();
    let closed: Vec<PathBuf> = chunks(&ledger).into_values().filter(|p| is_closed(p)).collect();
    let (chunk, offsets) = closed
        .iter()
        .map(|p| (p.clone(), entry_offsets(&std::fs::read(p).unwrap())))
        .find(|(_, offsets)| offsets.len() >= 3)
        .unwrap_or_else(|| panic!("no closed chunk with 3 entries among {closed:?}"));
    let at = offsets[offsets.len() / 2];
    let original = std::fs::read(&chunk).unwrap();
    let mut damaged = original.clone();
    damaged[at] ^= 0x40;
    std::fs::write(&chunk, &damaged).unwrap();
    let before = snapshot(&ledger);

    let stderr = start_refused(&mut node);
    let name = chunk.file_name().unwrap().to_str().unwrap();
    assert!(stderr.contains(name), "stderr does not name {name}: {stderr}");
    assert!(
        stderr.contains(&format!("offset {at}")),
        "stderr does not name offset {at}: {stderr}"
    );
    assert!(
        snapshot(&ledger) == before,
        "the refused start changed the ledger directory"
    );

    // A second try refuses the same way: nothing was dropped by the first one.
    let again = start_refused(&mut node);
    assert!(
        again.contains(name) && again.contains(&format!("offset {at}")),
        "{again}"
    );

    // With the byte put back the node starts, with every committed transaction.
    std::fs::write(&chunk, &original).unwrap();
    node.start().await;
    check_all_served(&node, &txids).await;
    node.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_of_the_open_chunk_is_dropped_and_every_committed_transaction_served() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = configure(&tmp.path().join("n0"));
    node.start().await;
    let txids = write_committed(&node).await;
    node.stop();

    // A crash in the middle of an append: the first 40 bytes of an entry (its header claims far more) at the end
    // of the open chunk, or, when the ledger ends on a closed chunk, in a new open chunk after it (the crash came
    // right after the chunk was started).
    let ledger = node.ledger_dir();
    let files = chunks(&ledger);
    let (&last_start, last) = files.last_key_value().unwrap();
    let first_closed = files.values().find(|p| is_closed(p)).expect("a closed chunk");
    let partial = std::fs::read(first_closed).unwrap()[8..48].to_vec();
    let (open, kept) = if is_closed(last) {
        let end: u64 = last.file_name().unwrap().to_str().unwrap()["ledger_".len()..]
            .split(['-', '.'])
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert!(end >= last_start);
        (ledger.join(format!("ledger_{}", end + 1)), Vec::new())
    } else {
        (last.clone(), std::fs::read(last).unwrap())
    };
    let torn = if kept.is_empty() {
        [&[0u8; 8][..], &partial].concat()
    } else {
        [&kept[..], &partial].concat()
    };
    std::fs::write(&open, &torn).unwrap();

    node.start().await;
    check_all_served(&node, &txids).await;
    // The node goes on writing after the torn tail was cut.
    let user = node.connect(true).await;
    let r = user
        .post_json(
            "/app/log/public",
            &serde_json::json!({"id": TXS, "msg": "after the torn tail"}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    node.wait_committed(&user, &r.txid.clone().unwrap()).await;
    node.stop();
    let logs = std::fs::read_to_string(node.dir.join("err.log")).unwrap_or_default()
        + &std::fs::read_to_string(node.dir.join("out.log")).unwrap_or_default();
    let name = open.file_name().unwrap().to_str().unwrap();
    assert!(
        logs.contains("torn tail") && logs.contains(name),
        "the dropped tail of {name} is not logged: {logs}"
    );

    // And it restarts over what it wrote since.
    node.start().await;
    check_all_served(&node, &txids).await;
}
