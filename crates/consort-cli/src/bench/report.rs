//! The bench's report: throughput, latency percentiles, errors and the SmallBank invariant, as one JSON object
//! (`--json`) or as text.

use super::args::{BenchArgs, Target};
use super::commit::CommitReport;
use super::phase::Stats;
use super::COMMIT_WAIT;
use std::time::{Duration, Instant};

/// The SmallBank check: the total money the accounts should hold and what they hold.
#[derive(Debug, Clone, Copy)]
pub(super) struct Invariant {
    /// The initial total plus the flows of the acknowledged requests.
    pub(super) expected: i128,
    pub(super) actual: i128,
    /// Money-changing requests whose outcome is unknown (the check is inconclusive unless this is 0).
    pub(super) unknown_outcomes: u64,
}

impl Invariant {
    /// Some(whether money was conserved), or None when unknown outcomes make the check inconclusive.
    pub(super) fn passed(&self) -> Option<bool> {
        (self.unknown_outcomes == 0).then_some(self.expected == self.actual)
    }
}

/// What a run measured.
pub(super) struct Findings {
    pub(super) address: String,
    pub(super) seed: u64,
    /// The load phase's stats and start time.
    pub(super) stats: Stats,
    pub(super) started: Instant,
    pub(super) commits: CommitReport,
    pub(super) invariant: Option<Invariant>,
}

/// The report as one JSON object (the `--json` output, and what the text is printed from).
pub(super) fn to_json(args: &BenchArgs, found: Findings) -> serde_json::Value {
    let Findings {
        address,
        seed,
        stats,
        started,
        commits,
        invariant,
    } = found;
    let acknowledged = stats.ok + stats.rejected;
    let acked_elapsed = stats
        .last_ack
        .map_or(Duration::ZERO, |t| t.saturating_duration_since(started));
    let rate = |n: u64, d: Duration| (d > Duration::ZERO).then(|| n as f64 / d.as_secs_f64());
    let acked_tps = rate(acknowledged, acked_elapsed);
    let committed_elapsed = commits
        .target_committed_at
        .map(|t| t.saturating_duration_since(started));
    let committed_tps = committed_elapsed.and_then(|d| rate(acknowledged, d));
    let initial_total = i128::from(args.initial_balance) * 2 * i128::from(args.accounts);
    let invariant_json = invariant.map(|inv| {
        serde_json::json!({
            "checked": true,
            "passed": inv.passed(),
            "initial_total": big(initial_total),
            "expected_total": big(inv.expected),
            "actual_total": big(inv.actual),
            "unknown_outcomes": inv.unknown_outcomes,
        })
    });
    let last_write = match args.target {
        Target::Consort => stats.last_write.map(|t| t.to_string()),
        Target::Etcd => stats.last_revision.map(|r| format!("revision {r}")),
    };
    serde_json::json!({
        "target": args.target.name(),
        "commit_rule": args.target.commit_rule(),
        "protocol": "h2",
        "workload": args.workload.name(),
        "address": address,
        "connections": args.connections,
        "window": args.window,
        "target_rate": args.rate,
        "duration_target_s": args.duration_s,
        "seed": seed,
        "requests": stats.sent,
        "acknowledged": acknowledged,
        "ok": stats.ok,
        "rejected": stats.rejected,
        "writes": stats.ok_writes,
        "errors": stats.error_count(),
        "errors_by_kind": stats.errors,
        "ops": stats.ops,
        "duration_s": acked_elapsed.as_secs_f64(),
        "acked_tx_per_s": acked_tps,
        "committed_tx_per_s": committed_tps,
        "commit_duration_s": committed_elapsed.map(|d| d.as_secs_f64()),
        "last_write": last_write,
        "ack_latency_ms": latency_json(stats.ack_latency),
        "commit_latency_ms": latency_json(commits.latencies),
        "commit_samples_unresolved": commits.unresolved,
        "invariant": invariant_json,
    })
}

/// A JSON number when it fits in i64 (always, for sane account counts), else a decimal string.
fn big(v: i128) -> serde_json::Value {
    i64::try_from(v).map_or_else(|_| serde_json::Value::String(v.to_string()), serde_json::Value::from)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn latency_json(mut v: Vec<Duration>) -> serde_json::Value {
    v.sort_unstable();
    serde_json::json!({
        "samples": v.len(),
        "p50": ms(percentile(&v, 0.50)),
        "p90": ms(percentile(&v, 0.90)),
        "p99": ms(percentile(&v, 0.99)),
        "max": ms(v.last().copied().unwrap_or_default()),
    })
}

/// Prints the report `r` (as made by [`to_json`]) as text.
pub(super) fn print_text(r: &serde_json::Value) {
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
    println!(
        "{} target, {} workload: {} requests over {} connections x {} window in {:.2} s (rate {})",
        r["target"].as_str().unwrap_or(""),
        r["workload"].as_str().unwrap_or(""),
        r["requests"],
        r["connections"],
        r["window"],
        f(&r["duration_s"]),
        r["target_rate"]
            .as_f64()
            .map_or("unlimited".to_string(), |x| format!("{x:.0}/s")),
    );
    println!(
        "acknowledged: {:.0} tx/s ({} acknowledged, {} refused for insufficient funds, {} writes)",
        f(&r["acked_tx_per_s"]),
        r["acknowledged"],
        r["rejected"],
        r["writes"]
    );
    match r["committed_tx_per_s"].as_f64() {
        Some(c) if r["target"] == "etcd" => println!(
            "committed:    {c:.0} tx/s (= acknowledged: etcd answers a put only once it is committed; last {})",
            r["last_write"].as_str().unwrap_or("-"),
        ),
        Some(c) => println!(
            "committed:    {c:.0} tx/s (last acknowledged write {} committed at {:.3} s)",
            r["last_write"].as_str().unwrap_or("-"),
            f(&r["commit_duration_s"])
        ),
        None if r["last_write"].is_null() => println!("committed:    (no writes)"),
        None => println!("committed:    (last write not committed within {COMMIT_WAIT:?})"),
    }
    for (label, key) in [
        ("ack latency ms:   ", "ack_latency_ms"),
        ("commit latency ms:", "commit_latency_ms"),
    ] {
        let l = &r[key];
        println!(
            "{label} p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  ({} samples)",
            f(&l["p50"]),
            f(&l["p90"]),
            f(&l["p99"]),
            f(&l["max"]),
            l["samples"]
        );
    }
    print_errors_and_invariant(r);
}

fn print_errors_and_invariant(r: &serde_json::Value) {
    match r["errors_by_kind"].as_object() {
        Some(m) if !m.is_empty() => {
            let kinds: Vec<String> = m.iter().map(|(k, v)| format!("{k} {v}")).collect();
            println!("errors:       {} ({})", r["errors"], kinds.join(", "));
        }
        _ => println!("errors:       none"),
    }
    if let Some(inv) = r["invariant"].as_object() {
        let (e, a) = (&inv["expected_total"], &inv["actual_total"]);
        match inv["passed"].as_bool() {
            Some(true) => println!("invariant:    PASS total money conserved (expected {e}, found {a})"),
            Some(false) => println!("invariant:    FAIL total money not conserved (expected {e}, found {a})"),
            None => println!(
                "invariant:    UNKNOWN {} money-changing requests have unknown outcomes (expected {e} without them, found {a})",
                inv["unknown_outcomes"]
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_sorted_latencies() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 0.5), Duration::from_millis(51));
        assert_eq!(percentile(&v, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
        assert_eq!(big(5), serde_json::json!(5));
        assert_eq!(big(i128::MAX), serde_json::json!(i128::MAX.to_string()));
    }
}
