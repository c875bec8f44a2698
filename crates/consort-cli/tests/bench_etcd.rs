//! `consort bench --target etcd` end to end against one real etcd member with TLS (client certificates required):
//! the JSON report counts every put as committed, and the keys are really in etcd. Skipped when no `etcd` binary
//! is installed, except under CI (CI=true), where that is a failure.

mod common;

use common::*;
use consort_crypto::x509::{self, CertParams};
use consort_crypto::{Curve, SigningKey};
use consort_node::net::client::{Connection, Protocol};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest etcd may take to serve its health endpoint with a leader.
const ETCD_START_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest one bench run may take before the test kills it.
const BENCH_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest one request to etcd from the test may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The `etcd` binary (`ETCD_BIN`, else the first `etcd` on PATH). Under CI its absence fails the test.
fn etcd_bin() -> Option<PathBuf> {
    let found = std::env::var_os("ETCD_BIN").map(PathBuf::from).or_else(|| {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|d| d.join("etcd"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("no etcd binary under CI (apt-get install etcd-server)");
        }
        eprintln!("skipping the etcd bench test: no etcd binary on PATH (apt-get install etcd-server)");
    }
    found
}

/// TLS material for one etcd member and its client, written into a directory.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all P-256, issued by the CA.
fn make_pki(dir: &Path) -> Pki {
    let ca_key = SigningKey::generate(Curve::P256);
    let mut ca_params = CertParams::new("bench-etcd test CA");
    ca_params.is_ca = true;
    let ca = x509::self_signed(&ca_key, &ca_params).unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let issue = |cn: &str, sans: &[&str]| {
        let key = SigningKey::generate(Curve::P256);
        let mut params = CertParams::new(cn);
        params.subject_alt_names = sans.iter().map(|s| s.to_string()).collect();
        let cert = x509::issue(&key.verifying_key(), &params, &ca_key, &ca.der).unwrap();
        (
            write(&format!("{cn}_cert.pem"), &cert.pem),
            write(&format!("{cn}_key.pem"), &key.to_pkcs8_pem()),
        )
    };
    let (server_cert, server_key) = issue("server", &["127.0.0.1", "localhost"]);
    let (client_cert, client_key) = issue("client", &[]);
    Pki {
        ca: write("ca.pem", &ca.pem),
        server_cert,
        server_key,
        client_cert,
        client_key,
    }
}

/// One etcd member; killed (SIGKILL) and reaped when dropped, also when the test panics.
struct EtcdMember {
    child: Option<Child>,
    log: PathBuf,
}

impl Drop for EtcdMember {
    fn drop(&mut self) {
        kill_child(&mut self.child);
    }
}

impl EtcdMember {
    /// Starts a one-member cluster serving clients over TLS (client certificates required) on `client_port`.
    fn start(bin: &Path, dir: &Path, pki: &Pki, client_port: u16, peer_port: u16) -> EtcdMember {
        let log = dir.join("etcd.log");
        let client_url = format!("https://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let child = Command::new(bin)
            .arg("--name=m0")
            .arg(format!("--data-dir={}", dir.join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=m0={peer_url}"))
            .arg(format!("--cert-file={}", pki.server_cert.display()))
            .arg(format!("--key-file={}", pki.server_key.display()))
            .arg(format!("--trusted-ca-file={}", pki.ca.display()))
            .arg("--client-cert-auth")
            .arg("--logger=zap")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.join("etcd.err.log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        EtcdMember {
            child: Some(child),
            log: dir.join("etcd.err.log"),
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A client connection authenticated with the test's client certificate.
async fn connect(address: &str, pki: &Pki) -> Result<Connection, String> {
    let ca = std::fs::read_to_string(&pki.ca).unwrap();
    let cert = std::fs::read_to_string(&pki.client_cert).unwrap();
    let key = std::fs::read_to_string(&pki.client_key).unwrap();
    let tls = consort_node::net::tls::client_config(&ca, Some((&cert, &key))).unwrap();
    match tokio::time::timeout(REQUEST_TIMEOUT, Connection::connect(address, tls, Protocol::Http1)).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("connect timed out".into()),
    }
}

/// POSTs JSON to etcd's gateway, bounded in time.
async fn post(conn: &Connection, path: &str, body: serde_json::Value) -> serde_json::Value {
    let reply = tokio::time::timeout(REQUEST_TIMEOUT, conn.post_json(path, &body))
        .await
        .unwrap_or_else(|_| panic!("{path} timed out"))
        .unwrap();
    assert_eq!(reply.status, 200, "{path}: {}", String::from_utf8_lossy(&reply.body));
    reply.json().unwrap()
}

/// Waits (bounded) until the member reports itself healthy (it has a leader: itself).
async fn wait_healthy(member: &mut EtcdMember, address: &str, pki: &Pki) {
    let deadline = Instant::now() + ETCD_START_TIMEOUT;
    loop {
        if let Some(Ok(Some(status))) = member.child.as_mut().map(|c| c.try_wait()) {
            panic!("etcd exited with {status}: {}", member.logs());
        }
        if let Ok(conn) = connect(address, pki).await {
            if let Ok(Ok(r)) = tokio::time::timeout(REQUEST_TIMEOUT, conn.get("/health")).await {
                if r.status == 200 && r.json().is_ok_and(|v| v["health"] == "true") {
                    return;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "etcd not healthy within {ETCD_START_TIMEOUT:?}: {}",
            member.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_puts_to_etcd_are_committed_and_really_stored() {
    let Some(bin) = etcd_bin() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let pki = make_pki(tmp.path());
    let (client_port, peer_port) = (free_port(), free_port());
    let address = format!("127.0.0.1:{client_port}");
    let mut member = EtcdMember::start(&bin, tmp.path(), &pki, client_port, peer_port);
    wait_healthy(&mut member, &address, &pki).await;

    let prefix = "bench-etcd-test/";
    let mut cmd = Command::new(consort_bin());
    cmd.args(["bench", "--target", "etcd", "--address", &address])
        .arg("--cacert")
        .arg(&pki.ca)
        .arg("--cert")
        .arg(&pki.client_cert)
        .arg("--key")
        .arg(&pki.client_key)
        .args([
            "--key-prefix",
            prefix,
            "--requests",
            "300",
            "--connections",
            "2",
            "--window",
            "8",
        ])
        .args(["--json", "--quiet"]);
    let out = tokio::task::block_in_place(|| run_bounded(cmd, BENCH_TIMEOUT));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "bench failed: {stdout}{stderr}\netcd: {}",
        member.logs()
    );
    let report: serde_json::Value = stdout
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON report: {stdout}{stderr}"));
    assert_eq!(report["target"], "etcd", "{report}");
    assert_eq!(report["workload"], "private", "{report}");
    assert_eq!(report["requests"], 300, "{report}");
    assert_eq!(report["acknowledged"], 300, "{report}");
    assert_eq!(report["writes"], 300, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert!(report["errors_by_kind"].as_object().unwrap().is_empty(), "{report}");
    assert_eq!(report["ops"]["etcd_put"], 300, "{report}");
    // Acknowledged puts are committed puts: the same rate, and a commit latency for every put.
    let acked = report["acked_tx_per_s"].as_f64().unwrap();
    assert!(acked > 0.0, "{report}");
    assert_eq!(report["committed_tx_per_s"].as_f64(), Some(acked), "{report}");
    assert_eq!(report["commit_latency_ms"]["samples"], 300, "{report}");
    assert_eq!(report["commit_samples_unresolved"], 0, "{report}");
    assert!(
        report["last_write"]
            .as_str()
            .is_some_and(|s| s.starts_with("revision ")),
        "{report}"
    );

    // The keys are really in etcd: a count-only range over the prefix ('/' + 1 = '0' ends it).
    let conn = connect(&address, &pki).await.unwrap();
    let range = post(
        &conn,
        "/v3/kv/range",
        serde_json::json!({"key": b64(prefix), "range_end": b64("bench-etcd-test0"), "count_only": true}),
    )
    .await;
    assert_eq!(range["count"], "300", "{range}");
    let one = post(
        &conn,
        "/v3/kv/range",
        serde_json::json!({"key": b64("bench-etcd-test/299")}),
    )
    .await;
    assert_eq!(one["kvs"][0]["value"], b64("bench message 299"), "{one}");
    drop(conn);
    drop(member);
}

#[test]
fn bench_refuses_workloads_etcd_has_no_equivalent_of() {
    for workload in ["public", "mixed", "smallbank"] {
        let (ok, out) = run_consort(&[
            "bench",
            "--target",
            "etcd",
            "--workload",
            workload,
            "--cacert",
            "/nonexistent/ca.pem",
        ]);
        assert!(!ok, "{workload}: {out}");
        assert!(out.contains("only the private-write workload"), "{workload}: {out}");
    }
    let (ok, out) = run_consort(&["bench", "--target", "etcd", "--requests", "1"]);
    assert!(!ok && out.contains("--cacert"), "{out}");
}
