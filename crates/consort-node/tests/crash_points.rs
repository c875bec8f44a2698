//! A node crashed at each of its persist steps, or stopped by a storage error (ENOSPC, EIO), comes back on restart
//! with every transaction it acknowledged as committed, or refuses to start naming a file; never a silent loss.
//!
//! Each case runs a node in a child process (this test binary re-run with `CONSORT_CRASH_CHILD` set): genesis, then
//! writes, each acknowledged (recorded durably in `acked`) once the engine reports it committed, with a failpoint
//! armed. A crash point aborts the process at its n-th hit (no destructor runs, no buffer is flushed, as with
//! SIGKILL); an error point makes the step fail as the disk would. The parent then reopens the node's directories.

use consort_node::config::{IdentityConfig, NodeConfig};
use consort_node::engine::{Engine, OpenOptions, Start, TxStatus};
use consort_node::identity::Identities;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "CONSORT_CRASH_CHILD";
/// Writes the child makes; each waits for its commit.
const WRITES: u64 = 12;
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);
const TABLE: &str = "public:records";

fn config(dir: &Path) -> NodeConfig {
    let mut cfg = NodeConfig::default();
    cfg.storage.ledger_dir = dir.join("ledger");
    cfg.storage.snapshots_dir = dir.join("snapshots");
    cfg.storage.secrets_dir = dir.join("secrets");
    cfg.start.members = vec![IdentityConfig {
        cert: dir.join("member0_cert.pem"),
        encryption_public_key: None,
        data: None,
    }];
    cfg.ledger.signature_interval_tx = 1;
    cfg.ledger.signature_interval_ms = 10;
    // Small chunks, so that chunks close (and are renamed) during the run.
    cfg.ledger.chunk_threshold_bytes = 1;
    cfg
}

fn platform() -> consort_attest::VirtualPlatform {
    consort_attest::VirtualPlatform::new([0; 32])
}

/// The child: arms the failpoint `CONSORT_CRASH_CHILD` names (`point|n|crash` aborts at the n-th hit, `point|n|error`
/// fails every hit from the n-th), starts (or restarts) the node in `dir` with its ticker and persister threads, and
/// writes keys, appending each to `acked` once it is committed. Returns (and the process exits 0) when done.
#[test]
fn child_process_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut it = spec.splitn(4, '|');
    let (point, n, mode, dir) = (
        it.next().unwrap(),
        it.next().unwrap(),
        it.next().unwrap(),
        it.next().unwrap(),
    );
    let n: usize = n.parse().unwrap();
    let dir = PathBuf::from(dir);
    let counts: Arc<std::sync::Mutex<BTreeMap<&'static str, usize>>> = Arc::default();
    match mode {
        "crash" => {
            let hits = AtomicUsize::new(0);
            fail::cfg_callback(point, move || {
                if hits.fetch_add(1, Ordering::SeqCst) + 1 == n {
                    std::process::abort();
                }
            })
            .unwrap();
        }
        "error" => fail::cfg(point, &format!("{}*off->return", n - 1)).unwrap(),
        "none" => {}
        "count" => {
            for &name in CRASH_POINTS {
                let counter = counts.clone();
                fail::cfg_callback(name, move || *counter.lock().unwrap().entry(name).or_insert(0) += 1).unwrap();
            }
        }
        other => panic!("unknown mode {other}"),
    }
    if point.starts_with("join|") || std::env::var("CONSORT_CRASH_JOIN").is_ok() {
        return join_child(&dir);
    }
    let cfg = config(&dir);
    let secrets = cfg.storage.secrets_dir.clone();
    let (ids, start) = if Identities::exist(&secrets) {
        (Identities::load(&platform(), &secrets).unwrap(), Start::Restart)
    } else {
        std::fs::create_dir_all(&secrets).unwrap();
        (
            Identities::generate(&platform(), &secrets, &["127.0.0.1".into()]).unwrap(),
            Start::Genesis,
        )
    };
    let options = OpenOptions {
        start,
        ..OpenOptions::default()
    };
    let engine = Engine::open_with(cfg, ids, options).unwrap();
    let stopping = Arc::new(AtomicBool::new(false));
    for run in [Engine::drive as fn(&Engine, &AtomicBool), Engine::persist_loop] {
        let (engine, stopping) = (engine.clone(), stopping.clone());
        std::thread::spawn(move || run(&engine, &stopping));
    }
    let first = next_key(&dir);
    let mut acked = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("acked"))
        .unwrap();
    for key in first..first + WRITES {
        let (_, txid) = engine
            .execute_write(|tx, _| -> Result<(), ()> {
                tx.put(TABLE, &key.to_le_bytes(), format!("value {key}").as_bytes());
                Ok(())
            })
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while engine.tx_status(txid) != TxStatus::Committed {
            assert!(Instant::now() < deadline, "write {key} ({txid}) did not commit");
            std::thread::sleep(Duration::from_millis(2));
        }
        writeln!(acked, "{key}").unwrap();
        acked.sync_all().unwrap();
    }
    stopping.store(true, Ordering::Release);
    let counts = counts.lock().unwrap();
    let lines: String = counts.iter().map(|(name, n)| format!("{name} {n}\n")).collect();
    std::fs::write(dir.join("counts"), lines).unwrap();
}

/// The keys the child acknowledged as committed so far.
fn acked_keys(dir: &Path) -> Vec<u64> {
    std::fs::read_to_string(dir.join("acked"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

fn next_key(dir: &Path) -> u64 {
    acked_keys(dir).last().map_or(0, |k| k + 1)
}

/// How a child run ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Completed,
    Aborted,
    /// Exited with this code; the text is its stderr.
    Exited(i32, String),
}

fn run_child(dir: &Path, spec: &str) -> Ended {
    run_child_with(dir, spec, &[])
}

fn run_child_with(dir: &Path, spec: &str, env: &[(&str, &str)]) -> Ended {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .envs(env.iter().copied())
        .args(["--exact", "child_process_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{spec}|{}", dir.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + CHILD_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child {spec} did not finish within {CHILD_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    use std::io::Read as _;
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(0), _) => Ended::Completed,
        (_, Some(6)) => Ended::Aborted,
        (Some(code), _) => Ended::Exited(code, stderr),
        (None, signal) => panic!("child {spec} ended by signal {signal:?}: {stderr}"),
    }
}

/// A fresh node directory with the member certificate genesis needs.
fn node_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let key = consort_crypto::SigningKey::generate(consort_crypto::Curve::P384);
    let cert = consort_crypto::x509::self_signed(&key, &consort_crypto::CertParams::new("member0")).unwrap();
    std::fs::write(dir.path().join("member0_cert.pem"), cert.pem).unwrap();
    dir
}

/// Reopens the node in `dir` in this process and checks that every acknowledged write is there and committed.
/// Returns the refusal instead if the node refuses to start; a refusal must name a file in the node's directories.
fn check_restart(dir: &Path, what: &str) -> Result<(), String> {
    let cfg = config(dir);
    let ids = match Identities::load(&platform(), &cfg.storage.secrets_dir) {
        Ok(ids) => ids,
        Err(e) => return Err(e.to_string()),
    };
    let options = OpenOptions {
        start: Start::Restart,
        attestation: None,
        ..OpenOptions::default()
    };
    let engine = Engine::open_with(cfg, ids, options).map_err(|e| e.to_string())?;
    let store = engine.store();
    let tx = store.read_only();
    let committed = engine.committed_txid();
    for key in acked_keys(dir) {
        let value = tx.get(TABLE, &key.to_le_bytes());
        assert_eq!(
            value.as_deref(),
            Some(format!("value {key}").as_bytes()),
            "{what}: acknowledged write {key} lost (committed {committed})"
        );
    }
    Ok(())
}

/// The crash points: every persist step of the node, in the order a persist round takes them (identity files and
/// atomic file writes at genesis, a ledger append, the flush, the fsync, the chunk rename, hard state and snapshot
/// files, the acknowledgement).
const CRASH_POINTS: &[&str] = &[
    "identity::write",
    "atomic::write",
    "atomic::rename",
    "ledger::append",
    "persist::flushed",
    "ledger::fsync",
    "persist::synced",
    "ledger::rename",
    "persist::written",
];

/// How often a clean run hits each crash point.
fn hit_counts() -> BTreeMap<String, usize> {
    let dir = node_dir();
    assert_eq!(run_child(dir.path(), "none|1|count"), Ended::Completed);
    std::fs::read_to_string(dir.path().join("counts"))
        .unwrap()
        .lines()
        .map(|l| {
            let (name, n) = l.split_once(' ').unwrap();
            (name.to_string(), n.parse().unwrap())
        })
        .collect()
}

#[test]
fn a_node_crashed_at_any_persist_step_restarts_with_every_acknowledged_write() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let counts = hit_counts();
    let (mut crashed, mut refused) = (0, 0);
    for &point in CRASH_POINTS {
        let count = counts.get(point).copied().unwrap_or(0);
        assert!(count > 0, "a clean run never reaches {point}: {counts:?}");
        // The first hits (genesis), one in the middle and the last.
        let mut hits: Vec<usize> = vec![1, 2, count / 2, count];
        hits.retain(|&n| n >= 1 && n <= count);
        hits.dedup();
        let mut crashed_here = 0;
        for n in hits {
            let what = format!("crash at the {n}th {point}");
            let dir = node_dir();
            match run_child(dir.path(), &format!("{point}|{n}|crash")) {
                Ended::Aborted => {
                    crashed += 1;
                    crashed_here += 1;
                }
                // The later hits depend on timing (hard state commit writes are throttled): the run may end first.
                Ended::Completed => {}
                other => panic!("{what}: {other:?}"),
            }
            match check_restart(dir.path(), &what) {
                Ok(()) => {
                    // And it goes on: the restarted node commits new writes after the crash.
                    assert_eq!(run_child(dir.path(), "none|1|none"), Ended::Completed, "{what}");
                    check_restart(dir.path(), &what).unwrap();
                }
                // Only a crash during genesis, before the node wrote its first entry (so before it acknowledged
                // anything), may leave a node that cannot start; it says why and names its directories.
                Err(refusal) => {
                    let during_genesis = point == "identity::write" || (point.starts_with("atomic::") && n == 1);
                    assert!(during_genesis, "{what}: refused to start: {refusal}");
                    assert!(acked_keys(dir.path()).is_empty(), "{what}: refused to start: {refusal}");
                    assert!(
                        std::fs::read_dir(dir.path().join("ledger")).map_or(true, |mut d| d.next().is_none()),
                        "{what}: refused to start over a ledger: {refusal}"
                    );
                    assert!(refusal.contains(&dir.path().display().to_string()), "{what}: {refusal}");
                    refused += 1;
                }
            }
        }
        assert!(crashed_here >= 2, "{point}: only {crashed_here} runs crashed there");
    }
    eprintln!(
        "{crashed} crashes at {} points ({counts:?} hits in a clean run); {refused} refused",
        CRASH_POINTS.len()
    );
    assert!(crashed >= 2 * CRASH_POINTS.len(), "only {crashed} crashes");
}

/// Storage errors stop the node with a message naming the error (exit code 70), never a panic; once the disk works
/// again it restarts with every acknowledged write and goes on.
#[test]
fn storage_errors_stop_the_node_cleanly_and_it_restarts_once_the_disk_is_back() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    // Hits every run reaches whatever the timing: the second atomic write is the Raft state of the first election
    // (later ones depend on how often the commit index is written), every write appends and is fsynced.
    for (point, n, message) in [
        ("ledger::append", 6, "No space left on device"),
        ("ledger::fsync", 5, "Input/output error"),
        ("atomic::write", 2, "No space left on device"),
    ] {
        let what = format!("{point} failing from its {n}th call");
        let dir = node_dir();
        match run_child(dir.path(), &format!("{point}|{n}|error")) {
            Ended::Exited(70, stderr) => {
                assert!(stderr.contains("fatal") && stderr.contains(message), "{what}: {stderr}")
            }
            other => panic!("{what}: {other:?}"),
        }
        let before = acked_keys(dir.path()).len();
        check_restart(dir.path(), &what).unwrap();
        assert_eq!(run_child(dir.path(), "none|1|none"), Ended::Completed, "{what}");
        check_restart(dir.path(), &what).unwrap();
        assert_eq!(acked_keys(dir.path()).len() as u64, before as u64 + WRITES, "{what}");
    }
}

/// The joiner's save, as `consort node join` does it once the primary admitted the node: the join record (where its
/// log starts, the peers), then the identity (its key, its certificate issued by the service, the service's key and
/// certificate, the ledger secret); then the engine's first start as a joined node.
fn join_child(dir: &Path) {
    let cfg = config(dir);
    let service = Identities::generate(&platform(), &dir.join("service"), &["127.0.0.1".into()]).unwrap();
    let service_cert = consort_crypto::ParsedCert::from_pem(&service.service_cert_pem).unwrap();
    let node_key = consort_crypto::SigningKey::generate(consort_crypto::Curve::P384);
    let node_cert = consort_crypto::x509::issue(
        &node_key.verifying_key(),
        &consort_crypto::CertParams::new("CCF Node"),
        &service.service_key,
        &service_cert.der,
    )
    .unwrap();
    let primary: consort_node::engine::NodeId = service.node_id.clone();
    let record = consort_node::engine::JoinRecord {
        initial_voters: vec![primary.raft_id().get()],
        peers: vec![],
    };
    record.save(&cfg, None).unwrap();
    let ids = Identities::save_joined(
        &platform(),
        &cfg.storage.secrets_dir,
        &node_key,
        &consort_node::identity::new_encryption_key(&cfg.storage.secrets_dir)
            .unwrap()
            .0,
        &node_cert.pem,
        &service.service_key.to_pkcs8_pem(),
        &service.service_cert_pem,
        &service.ledger_secrets,
    )
    .unwrap();
    let options = OpenOptions {
        start: Start::Joined,
        attestation: None,
        ..OpenOptions::default()
    };
    Engine::open_with(cfg, ids, options).unwrap();
}

/// A joiner crashed anywhere in saving its join: if it holds an identity, it also holds where its log starts and it
/// restarts (as `consort node join` does for a node that joined before); if not, it never joined and `start` refuses
/// to make a new service over its join record.
#[test]
fn a_joiner_crashed_while_saving_its_join_restarts_as_the_node_it_joined_as() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let join = [("CONSORT_CRASH_JOIN", "1")];
    let mut crashed = 0;
    for point in ["atomic::write", "atomic::rename", "identity::write"] {
        for n in 1..=12 {
            let what = format!("joiner crashed at the {n}th {point}");
            let dir = node_dir();
            match run_child_with(dir.path(), &format!("{point}|{n}|crash"), &join) {
                Ended::Aborted => crashed += 1,
                Ended::Completed => break,
                other => panic!("{what}: {other:?}"),
            }
            let cfg = config(dir.path());
            let secrets = &cfg.storage.secrets_dir;
            if Identities::exist(secrets) {
                let record = consort_node::engine::JoinRecord::load(secrets).unwrap();
                assert!(record.is_some(), "{what}: an identity without its join record");
                check_restart(dir.path(), &what).unwrap_or_else(|e| panic!("{what}: refused to restart: {e}"));
            } else if secrets.join(consort_node::engine::JOIN_FILE).exists() {
                let err = consort_node::open_node(cfg)
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                assert!(err.contains("join"), "{what}: start over a join record: {err:?}");
            }
        }
    }
    assert!(crashed >= 8, "only {crashed} crashes");
}
