//! The client workload: one client per node sends writes, compare-and-swaps and consensus-ordered reads (and a few
//! local reads) on a small key set, and records each operation's invocation, response and TxID.

use super::cluster::connect;
use super::linearizability::{Call, Outcome};
use consort_node::net::client::{Connection, Protocol};
use rand::{Rng, SeedableRng};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Keys `k0..k{KEYS-1}`.
pub const KEYS: usize = 5;
/// A request not answered in this long is abandoned: its outcome is resolved later, or stays unknown.
pub const OP_TIMEOUT: Duration = Duration::from_secs(3);
/// The reason of a request abandoned after [`OP_TIMEOUT`].
pub const TIMED_OUT: &str = "timed out";
/// Pause between a client's operations (the machines are shared; this keeps the load moderate).
pub const THINK_TIME: Duration = Duration::from_millis(5);

/// What came back for one request.
#[derive(Debug, Clone)]
pub enum Answer {
    Reply {
        status: u16,
        txid: Option<String>,
        body: serde_json::Value,
    },
    /// No answer: connection error or [`OP_TIMEOUT`].
    NoReply(String),
}

/// One operation as the client saw it. Times are nanoseconds since the campaign started.
#[derive(Debug, Clone)]
pub struct RawOp {
    /// The node the request went to.
    pub node: usize,
    pub key: String,
    /// None for a local (unordered) read, which the checker does not use.
    pub call: Option<Call>,
    pub invoke_ns: u64,
    pub ret_ns: u64,
    pub answer: Answer,
}

impl RawOp {
    /// The outcome the answer body shows, if the request succeeded (its TxID still to be resolved).
    pub fn answered_outcome(&self) -> Option<Outcome> {
        let Answer::Reply { status: 200, body, .. } = &self.answer else {
            return None;
        };
        match self.call.as_ref()? {
            Call::Write(_) => Some(Outcome::Written),
            Call::Read => Some(Outcome::Read(body["value"].as_str().map(String::from))),
            Call::Cas { .. } => body["swapped"].as_bool().map(Outcome::Cas),
        }
    }

    pub fn is_write(&self) -> bool {
        matches!(self.call, Some(Call::Write(_)) | Some(Call::Cas { .. }))
    }
}

/// Where a client sends its requests.
#[derive(Debug, Clone)]
pub struct Target {
    pub ws: PathBuf,
    pub service_cert: String,
    pub addr: String,
    pub node: usize,
}

fn choose(rng: &mut rand_chacha::ChaCha8Rng, client: usize, seq: u64, last_seen: &[Option<String>]) -> RawOpPlan {
    let k = rng.gen_range(0..KEYS);
    let key = format!("k{k}");
    let value = format!("c{client}-{seq}");
    match rng.gen_range(0..10) {
        0..=2 => RawOpPlan {
            method: "PUT",
            path: format!("/app/kv/{key}"),
            body: Some(serde_json::json!({ "value": value })),
            call: Some(Call::Write(value)),
            key,
        },
        3..=5 => RawOpPlan {
            method: "POST",
            path: format!("/app/kv/{key}/cas"),
            body: Some(serde_json::json!({"expected": last_seen[k], "new": value})),
            call: Some(Call::Cas {
                expected: last_seen[k].clone(),
                new: value,
            }),
            key,
        },
        6..=8 => RawOpPlan {
            method: "POST",
            path: format!("/app/kv/{key}/read"),
            body: None,
            call: Some(Call::Read),
            key,
        },
        _ => RawOpPlan {
            method: "GET",
            path: format!("/app/kv/{key}"),
            body: None,
            call: None,
            key,
        },
    }
}

struct RawOpPlan {
    method: &'static str,
    path: String,
    body: Option<serde_json::Value>,
    call: Option<Call>,
    key: String,
}

/// Runs one client until `stop`; returns its history.
pub async fn client(id: usize, target: Target, seed: u64, start: Instant, stop: Arc<AtomicBool>) -> Vec<RawOp> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed.wrapping_add(id as u64 + 1));
    let mut last_seen: Vec<Option<String>> = vec![None; KEYS];
    let mut conn: Option<Connection> = None;
    let mut history = vec![];
    let ns = |t: Instant| t.duration_since(start).as_nanos() as u64;
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let Some(c) = conn.clone() else {
            conn = connect(&target.ws, &target.service_cert, &target.addr, true, Protocol::Http1)
                .await
                .ok();
            if conn.is_none() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            continue;
        };
        seq += 1;
        let plan = choose(&mut rng, id, seq, &last_seen);
        let body = plan.body.as_ref().map(|b| b.to_string().into_bytes());
        let invoke = Instant::now();
        let reply = tokio::time::timeout(OP_TIMEOUT, c.request(plan.method, &plan.path, body)).await;
        let ret = Instant::now();
        let answer = match reply {
            Ok(Ok(r)) => Answer::Reply {
                status: r.status,
                txid: r.txid.clone(),
                body: r.json().unwrap_or(serde_json::Value::Null),
            },
            Ok(Err(e)) => Answer::NoReply(e.to_string()),
            Err(_) => Answer::NoReply(TIMED_OUT.into()),
        };
        if matches!(answer, Answer::NoReply(_)) {
            conn = None;
        }
        let op = RawOp {
            node: target.node,
            key: plan.key,
            call: plan.call,
            invoke_ns: ns(invoke),
            ret_ns: ns(ret),
            answer,
        };
        remember(&op, &mut last_seen);
        history.push(op);
        tokio::time::sleep(THINK_TIME).await;
    }
    history
}

/// Keeps the last value the client saw for each key, so its next swap has a fair chance.
fn remember(op: &RawOp, last_seen: &mut [Option<String>]) {
    let Some(k) = op.key.strip_prefix('k').and_then(|k| k.parse::<usize>().ok()) else {
        return;
    };
    let Answer::Reply { status: 200, body, .. } = &op.answer else {
        return;
    };
    let Some(slot) = last_seen.get_mut(k) else { return };
    match &op.call {
        Some(Call::Write(v)) => *slot = Some(v.clone()),
        Some(Call::Cas { new, .. }) if body["swapped"] == true => *slot = Some(new.clone()),
        _ => *slot = body["value"].as_str().map(String::from),
    }
}
