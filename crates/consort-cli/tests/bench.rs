//! `consort bench` end to end against one node process: every workload with small counts, checked through its
//! `--json` report (counts, errors, commit, SmallBank invariant). Benchmarks are measured, never asserted on time.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

/// Longest one bench run may take before the test kills it.
const BENCH_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `consort bench` against `node` with `extra` arguments; kills it after [`BENCH_TIMEOUT`]. Returns (exit
/// success, the JSON report from stdout, stderr).
fn bench(node: &TestNode, extra: &[&str]) -> (bool, Option<serde_json::Value>, String) {
    let mut cmd = Command::new(consort_bin());
    cmd.args(["bench", "--workspace"])
        .arg(&node.dir)
        .args(["--address", &node.address, "--json", "--quiet", "--seed", "7"])
        .args(extra);
    let out = run_bounded(cmd, BENCH_TIMEOUT);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let report = stdout
        .lines()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok());
    (
        out.status.success(),
        report,
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The checks every successful run must pass: everything sent was acknowledged, no errors, writes committed,
/// latency percentiles present.
fn assert_clean(report: &serde_json::Value, workload: &str) {
    assert_eq!(report["workload"], workload, "{report}");
    assert!(report["requests"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["acknowledged"], report["requests"], "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert!(report["errors_by_kind"].as_object().unwrap().is_empty(), "{report}");
    assert!(report["acked_tx_per_s"].as_f64().unwrap() > 0.0, "{report}");
    assert!(report["committed_tx_per_s"].as_f64().unwrap() > 0.0, "{report}");
    assert!(report["last_write"].is_string(), "{report}");
    for key in ["ack_latency_ms", "commit_latency_ms"] {
        let l = &report[key];
        assert!(l["samples"].as_u64().unwrap() > 0, "{key}: {report}");
        assert!(
            l["p50"].as_f64().unwrap() <= l["p99"].as_f64().unwrap(),
            "{key}: {report}"
        );
        assert!(
            l["p99"].as_f64().unwrap() <= l["max"].as_f64().unwrap(),
            "{key}: {report}"
        );
    }
    assert_eq!(report["commit_samples_unresolved"], 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_workloads_report_and_smallbank_conserves_money() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = TestNode::configure(&tmp.path().join("n0"), |_| {});
    node.start().await;

    // The SmallBank app is served next to logging, with user authentication.
    let anon = node.connect(false).await;
    let r = anon
        .post_json("/app/smallbank/balance", &serde_json::json!({"id": 1}))
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    let api = anon.get("/app/api").await.unwrap().json().unwrap();
    assert!(api["paths"]["/app/smallbank/send_payment"].is_object(), "{api}");
    assert!(api["paths"]["/app/log/private"].is_object(), "{api}");

    let small = ["--connections", "2", "--window", "8", "--commit-sample", "10"];
    for workload in ["private", "public", "mixed", "smallbank"] {
        let mut args = vec![
            "--workload",
            workload,
            "--requests",
            "300",
            "--keys",
            "40",
            "--accounts",
            "50",
        ];
        args.extend(small);
        let (ok, report, stderr) = tokio::task::block_in_place(|| bench(&node, &args));
        assert!(ok, "{workload}: {stderr}");
        let report = report.unwrap_or_else(|| panic!("{workload}: no JSON report; stderr: {stderr}"));
        assert_eq!(report["requests"], 300, "{report}");
        assert_clean(&report, workload);
        match workload {
            "mixed" => {
                let ops = &report["ops"];
                assert!(
                    ops["log_read"].as_u64().unwrap() > ops["log_write"].as_u64().unwrap(),
                    "{report}"
                );
            }
            "smallbank" => {
                let inv = &report["invariant"];
                assert_eq!(inv["passed"], true, "{report}");
                assert_eq!(inv["expected_total"], inv["actual_total"], "{report}");
                assert_eq!(inv["initial_total"], 50 * 2 * 10_000, "{report}");
                assert_eq!(inv["unknown_outcomes"], 0, "{report}");
                for op in [
                    "amalgamate",
                    "balance",
                    "deposit_checking",
                    "send_payment",
                    "transact_savings",
                ] {
                    assert!(report["ops"][op].as_u64().is_some_and(|n| n > 0), "{op}: {report}");
                }
            }
            _ => assert!(report["invariant"].is_null(), "{report}"),
        }
    }

    // Duration mode with a paced rate; and with accounts so poor that overdrafts are refused (counted apart
    // from errors, money still conserved).
    let mut args = vec!["--workload", "private", "--duration-s", "1", "--rate", "200"];
    args.extend(small);
    let (ok, report, stderr) = tokio::task::block_in_place(|| bench(&node, &args));
    assert!(ok, "{stderr}");
    assert_clean(&report.unwrap(), "private");

    let mut args = vec![
        "--workload",
        "smallbank",
        "--requests",
        "300",
        "--accounts",
        "10",
        "--initial-balance",
        "20",
    ];
    args.extend(small);
    let (ok, report, stderr) = tokio::task::block_in_place(|| bench(&node, &args));
    assert!(ok, "{stderr}");
    let report = report.unwrap();
    assert_clean(&report, "smallbank");
    assert!(report["rejected"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["invariant"]["passed"], true, "{report}");

    // Bad arguments are refused before any load.
    let (ok, report, _) = tokio::task::block_in_place(|| bench(&node, &["--window", "0"]));
    assert!(!ok && report.is_none());
    let (ok, _, _) = tokio::task::block_in_place(|| bench(&node, &["--requests", "5", "--duration-s", "1"]));
    assert!(!ok, "--requests and --duration-s conflict");
}
