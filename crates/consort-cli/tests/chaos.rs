//! `consort chaos` end to end: a short seeded fault campaign (3 nodes in network namespaces, every kind of fault)
//! ends with nothing lost, a linearizable history and its namespaces removed. Skipped with a printed reason where
//! namespaces are unavailable (not root, tools missing), except under CI (CI=true), where that is a failure.

mod common;

use common::consort_bin;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest the campaign may take before the test interrupts it (it then cleans up and the test fails).
const CAMPAIGN_TIMEOUT: Duration = Duration::from_secs(300);
/// After an interrupt, how long the campaign has to remove its nodes and namespaces before it is killed.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(30);
/// `consort chaos`'s exit status when namespaces are unavailable.
const EXIT_UNAVAILABLE: i32 = 77;
/// This seed's first rounds draw every kind of fault (see the schedule the campaign prints).
const SEED: &str = "20";
const ROUNDS: &str = "6";

#[test]
fn a_short_fault_campaign_loses_nothing_and_stays_linearizable() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    let (out_path, err_path) = (tmp.path().join("stdout"), tmp.path().join("stderr"));
    let mut child = Command::new(consort_bin())
        .args([
            "chaos",
            "--nodes",
            "3",
            "--rounds",
            ROUNDS,
            "--seed",
            SEED,
            "--settle-ms",
            "500",
        ])
        .arg("--workspace")
        .arg(&ws)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + CAMPAIGN_TIMEOUT;
    let mut interrupted = None;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        let now = Instant::now();
        match interrupted {
            None if now > deadline => {
                // SIGINT, not SIGKILL: the campaign removes its nodes and namespaces on the way out.
                let pid = nix::unistd::Pid::from_raw(child.id() as i32);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
                interrupted = Some(now);
            }
            Some(at) if now > at + CLEANUP_TIMEOUT => {
                let _ = child.kill();
                break child.wait().unwrap();
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap();
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    if status.code() == Some(EXIT_UNAVAILABLE) {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("namespaces must be available under CI: {stderr}");
        }
        eprintln!("skipping the fault campaign: {}", stderr.trim());
        return;
    }
    println!("{stdout}\n{stderr}");
    assert!(
        interrupted.is_none(),
        "the campaign did not finish within {CAMPAIGN_TIMEOUT:?}"
    );
    assert!(status.success(), "campaign failed ({status})");
    assert!(stdout.contains(&format!("seed {SEED}")), "the seed is printed");
    assert!(
        stdout.contains("RESULT: PASS") && stdout.contains("lost 0"),
        "nothing lost"
    );
    assert!(
        stdout.contains("linearizability: linearizable ("),
        "the checker's verdict"
    );
    for kind in [
        "kill+restart",
        "pause",
        "full partition",
        "one-way partition",
        "ledger disk full",
        "flipped byte",
    ] {
        assert!(stdout.contains(kind), "fault kind {kind} ran");
    }
    assert!(
        stdout.contains("refused to start with byte"),
        "the damaged chunk stopped its node"
    );
    let acknowledged = stdout
        .split("writes acknowledged ")
        .nth(1)
        .and_then(|s| s.split(':').next())
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(0);
    assert!(acknowledged > 0, "the workload wrote");

    // The network is gone: the run number is the third octet of the bridge address the campaign printed.
    let run = stdout
        .split("bridge on 10.77.")
        .nth(1)
        .and_then(|s| s.split('.').next())
        .expect("network line");
    for i in 0..3 {
        let ns = format!("/run/netns/consort-c{run}-n{i}");
        assert!(!std::path::Path::new(&ns).exists(), "{ns} was removed");
    }
    assert!(
        !std::path::Path::new(&format!("/sys/class/net/cch{run}br")).exists(),
        "bridge removed"
    );
}
