//! The checks after the last round: every node back in service and at the same commit, each operation's TxID
//! resolved on every node (Committed writes present everywhere, no node disagreeing on a committed seqno), the same
//! values on every node, byte-identical committed chunks, `read_ledger.py`, and the history for the checker.

use super::cluster::{Cluster, REQUEST_TIMEOUT};
use super::faults::committed_chunks;
use super::linearizability::{Call, Op, Outcome};
use super::workload::{Answer, RawOp, KEYS};
use consort_node::net::client::{Connection, Protocol};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long the service has, once healed and the workload stopped, to agree on a primary and a commit.
pub const RECOVERY_TIMEOUT: Duration = Duration::from_secs(90);
/// TxID status requests in flight at once.
const STATUS_CONCURRENCY: usize = 64;
/// Bound on one run of `read_ledger.py`.
const READ_LEDGER_TIMEOUT: Duration = Duration::from_secs(300);

/// A transaction's fate, agreed by every node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxState {
    Committed,
    Invalid,
    Unresolved,
}

/// What the checks found.
#[derive(Debug, Default)]
pub struct Findings {
    /// Transactions some node reports Committed that another reports Invalid or lacks.
    pub lost: usize,
    pub lines: Vec<String>,
    pub violations: Vec<String>,
}

async fn status_on(conn: &Connection, txid: &str) -> Option<String> {
    let path = format!("/node/tx?transaction_id={txid}");
    let r = tokio::time::timeout(REQUEST_TIMEOUT, conn.get(&path))
        .await
        .ok()?
        .ok()?;
    r.json().ok()?["status"].as_str().map(String::from)
}

/// Each TxID's status on every node, combined; records divergence and missing committed transactions.
pub async fn resolve(cluster: &Cluster, ops: &[RawOp], found: &mut Findings) -> HashMap<String, TxState> {
    let mut txids: Vec<String> = ops
        .iter()
        .filter_map(|op| match &op.answer {
            Answer::Reply {
                status: 200,
                txid: Some(t),
                ..
            } => Some(t.clone()),
            _ => None,
        })
        .collect();
    txids.sort();
    txids.dedup();
    let mut conns = vec![];
    for i in 0..cluster.nodes.len() {
        match cluster.connect(i, false, Protocol::Http2).await {
            Ok(c) => conns.push(c),
            Err(e) => {
                found
                    .violations
                    .push(format!("node {i} does not answer for the TxID checks: {e}"));
                return HashMap::new();
            }
        }
    }
    let mut out = HashMap::new();
    let (mut divergent, mut missing) = (0usize, 0usize);
    for batch in txids.chunks(STATUS_CONCURRENCY) {
        let mut set = tokio::task::JoinSet::new();
        for txid in batch {
            let (conns, txid) = (conns.clone(), txid.clone());
            set.spawn(async move {
                let mut per_node = vec![];
                for c in &conns {
                    per_node.push(status_on(c, &txid).await.unwrap_or_else(|| "NoAnswer".into()));
                }
                (txid, per_node)
            });
        }
        while let Some(Ok((txid, per_node))) = set.join_next().await {
            let committed = per_node.iter().filter(|s| *s == "Committed").count();
            let invalid = per_node.iter().filter(|s| *s == "Invalid").count();
            let state = if committed > 0 && invalid > 0 {
                divergent += 1;
                if divergent <= 5 {
                    found
                        .violations
                        .push(format!("TxID {txid}: nodes disagree {per_node:?}"));
                }
                TxState::Committed
            } else if committed > 0 {
                if committed < per_node.len() {
                    missing += 1;
                    if missing <= 5 {
                        found
                            .violations
                            .push(format!("TxID {txid} Committed but not on every node: {per_node:?}"));
                    }
                }
                TxState::Committed
            } else if invalid == per_node.len() {
                TxState::Invalid
            } else {
                TxState::Unresolved
            };
            out.insert(txid, state);
        }
    }
    found.lost += divergent + missing;
    found.lines.push(format!(
        "TxIDs resolved on every node: {} ({divergent} divergent, {missing} committed but missing on a node)",
        txids.len()
    ));
    out
}

/// Turns the recorded operations into the checker's history.
pub fn history(ops: &[RawOp], states: &HashMap<String, TxState>) -> Vec<Op> {
    let mut out = vec![];
    for raw in ops {
        let Some(call) = raw.call.clone() else { continue };
        let outcome = match &raw.answer {
            Answer::Reply {
                status: 200,
                txid: Some(t),
                ..
            } => match states.get(t) {
                Some(TxState::Committed) => match raw.answered_outcome() {
                    Some(o) => o,
                    None => Outcome::Unknown,
                },
                Some(TxState::Invalid) => continue,
                _ => Outcome::Unknown,
            },
            // Refused before it ran (bad request, not a user, ...): it did not happen.
            Answer::Reply { status, .. } if (400..500).contains(status) && *status != 408 && *status != 429 => continue,
            _ => Outcome::Unknown,
        };
        out.push(Op {
            key: raw.key.clone(),
            call,
            outcome,
            invoke: raw.invoke_ns,
            ret: raw.ret_ns,
        });
    }
    out
}

/// Writes acknowledged (a 200 for a put or a swap that swapped), and of those Committed, Invalid (rolled back before
/// commit, which CCF allows) and unresolved.
pub fn write_counts(ops: &[RawOp], states: &HashMap<String, TxState>) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for op in ops.iter().filter(|o| o.is_write()) {
        let Answer::Reply {
            status: 200,
            txid,
            body,
        } = &op.answer
        else {
            continue;
        };
        if matches!(op.call, Some(Call::Cas { .. })) && body["swapped"] != true {
            continue;
        }
        *counts.entry("acknowledged").or_insert(0) += 1;
        let key = match txid.as_ref().and_then(|t| states.get(t)) {
            Some(TxState::Committed) => "committed",
            Some(TxState::Invalid) => "rolled back (Invalid)",
            _ => "unresolved",
        };
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// Every node's local value of every key equals the value the final ordered read returned.
pub async fn compare_values(cluster: &Cluster, finals: &[Option<String>], found: &mut Findings) {
    for i in 0..cluster.nodes.len() {
        for (k, want) in finals.iter().enumerate().take(KEYS) {
            let got = cluster.get_json(i, &format!("/app/kv/k{k}")).await;
            let got = got.and_then(|v| v["value"].as_str().map(String::from));
            if got != *want {
                found.violations.push(format!(
                    "node {i} holds {got:?} for k{k}, the service's committed value is {want:?}"
                ));
            }
        }
    }
    found.lines.push(format!(
        "final values equal on all {} nodes: {finals:?}",
        cluster.nodes.len()
    ));
}

/// Committed chunks with the same name are byte-identical on every node that has them.
pub fn compare_chunks(cluster: &Cluster, found: &mut Findings) {
    let mut by_name: BTreeMap<String, Vec<(usize, Vec<u8>)>> = BTreeMap::new();
    for (i, node) in cluster.nodes.iter().enumerate() {
        for path in committed_chunks(&node.ledger_dir()) {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            match std::fs::read(&path) {
                Ok(bytes) => by_name.entry(name).or_default().push((i, bytes)),
                Err(e) => found.violations.push(format!("cannot read {}: {e}", path.display())),
            }
        }
    }
    let mut compared = 0;
    for (name, copies) in &by_name {
        if copies.len() > 1 {
            compared += 1;
        }
        for (j, bytes) in &copies[1..] {
            if *bytes != copies[0].1 {
                found.violations.push(format!(
                    "committed chunk {name} differs between node {} and node {j}",
                    copies[0].0
                ));
            }
        }
    }
    found.lines.push(format!(
        "committed chunks: {} names, {compared} held by several nodes, compared byte for byte",
        by_name.len()
    ));
}

/// Runs CCF's `read_ledger.py` from `$CCF_VENV` on every ledger that starts at seqno 1.
pub fn read_ledger_py(cluster: &Cluster, found: &mut Findings) {
    let Some(venv) = std::env::var_os("CCF_VENV").map(std::path::PathBuf::from) else {
        found.lines.push("read_ledger.py: skipped (CCF_VENV not set)".into());
        return;
    };
    let (python, script) = (venv.join("bin/python"), venv.join("bin/read_ledger.py"));
    if !python.exists() || !script.exists() {
        found
            .lines
            .push(format!("read_ledger.py: skipped (not in {})", venv.display()));
        return;
    }
    let mut verified = 0;
    for (i, node) in cluster.nodes.iter().enumerate() {
        let ledger = node.ledger_dir();
        let from_genesis = committed_chunks(&ledger).iter().any(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("ledger_1-"))
        });
        if !from_genesis {
            continue;
        }
        match run_bounded(&python, &script, &ledger) {
            Ok(()) => verified += 1,
            Err(e) => found
                .violations
                .push(format!("read_ledger.py rejects node {i}'s ledger: {e}")),
        }
    }
    found.lines.push(format!(
        "read_ledger.py verified {verified} ledgers that start at seqno 1"
    ));
}

fn run_bounded(python: &Path, script: &Path, ledger: &Path) -> Result<(), String> {
    let mut child = std::process::Command::new(python)
        .arg(script)
        .arg(ledger)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + READ_LEDGER_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            if status.success() {
                return Ok(());
            }
            let mut err = String::new();
            if let Some(mut s) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut s, &mut err);
            }
            let tail: Vec<&str> = err.lines().rev().take(3).collect();
            return Err(format!("{status}: {}", tail.join(" | ")));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("timed out after {READ_LEDGER_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
