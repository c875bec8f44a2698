//! Test harness: starts real `consort` node processes on 127.0.0.1 with free ports, bounded waits, and kills them
//! on drop.
#![allow(dead_code)]

use consort_crypto::x509::{self, CertParams};
use consort_crypto::{Curve, SigningKey};
use consort_node::config::{IdentityConfig, NodeConfig};
use consort_node::net::client::{Connection, Protocol};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest a node may take to start and open its service.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

pub fn consort_bin() -> &'static str {
    env!("CARGO_BIN_EXE_consort")
}

/// A port that was free a moment ago on 127.0.0.1.
///
/// Ports come from below the kernel's ephemeral range (32768-60999 by default), where no outgoing connection can
/// take one between this check and the node's bind, and each is handed out once per test process; the range is
/// split by process id so that test binaries run side by side rarely meet.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 12_000;
    const SPAN: u32 = 20_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = (std::process::id() * 997) % SPAN;
    for _ in 0..SPAN {
        let port = FIRST + (base + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN;
        let port = u16::try_from(port).unwrap();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + SPAN)
}

/// The `ccf==6.0.28` virtualenv, if any. Under CI (CI=true) its absence is a failure, not a skip.
pub fn ccf_venv() -> Option<PathBuf> {
    let p = PathBuf::from(std::env::var("CCF_VENV").unwrap_or_else(|_| "/opt/ccfvenv".into()));
    if p.join("bin/python").exists() {
        return Some(p);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CCF_VENV ({}) is missing under CI", p.display());
    }
    eprintln!("skipping CCF interop checks: no venv at {}", p.display());
    None
}

/// Writes `<name>_privk.pem` / `<name>_cert.pem` (P-384 self-signed) into `dir`.
pub fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = SigningKey::generate(Curve::P384);
    let cert = x509::self_signed(&key, &CertParams::new(name)).unwrap();
    let k = dir.join(format!("{name}_privk.pem"));
    let c = dir.join(format!("{name}_cert.pem"));
    std::fs::write(&k, key.to_pkcs8_pem()).unwrap();
    std::fs::write(&c, cert.pem).unwrap();
    (c, k)
}

/// One node process with its own directory, plus the user0 identity to call it with.
pub struct TestNode {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub address: String,
    pub child: Option<Child>,
    pub user_cert: PathBuf,
    pub user_key: PathBuf,
}

impl TestNode {
    /// Configures a node in `dir` (created) with user0 and member0; does not start it.
    pub fn configure(dir: &Path, tune: impl FnOnce(&mut NodeConfig)) -> TestNode {
        std::fs::create_dir_all(dir).unwrap();
        let (user_cert, user_key) = keygen(dir, "user0");
        let (member_cert, _) = keygen(dir, "member0");
        let mut cfg = NodeConfig::default();
        let address = format!("127.0.0.1:{}", free_port());
        cfg.network.rpc_address = address.clone();
        cfg.start.users = vec![IdentityConfig {
            cert: user_cert.clone(),
            encryption_public_key: None,
            data: None,
        }];
        cfg.start.members = vec![IdentityConfig {
            cert: member_cert,
            encryption_public_key: None,
            data: None,
        }];
        cfg.start.open_at_genesis = true;
        cfg.ledger.signature_interval_ms = 20;
        tune(&mut cfg);
        let config = dir.join("node.toml");
        std::fs::write(&config, cfg.to_toml()).unwrap();
        TestNode {
            dir: dir.to_path_buf(),
            config,
            address,
            child: None,
            user_cert,
            user_key,
        }
    }

    /// Starts the process and waits until the service is open.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        self.child = Some(spawn_node(&self.dir, "start", &self.config));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "node exited with {status}: {}",
                    std::fs::read_to_string(self.dir.join("err.log")).unwrap_or_default()
                );
            }
            if self.service_open().await {
                return;
            }
            assert!(Instant::now() < deadline, "node did not open within {START_TIMEOUT:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn service_open(&self) -> bool {
        let Ok(cert) = std::fs::read_to_string(self.dir.join("service_cert.pem")) else {
            return false;
        };
        let Ok(tls) = consort_node::net::tls::client_config(&cert, None) else {
            return false;
        };
        let Ok(conn) = Connection::connect(&self.address, tls, Protocol::Http1).await else {
            return false;
        };
        match conn.get("/node/network").await.ok().and_then(|r| r.json().ok()) {
            Some(v) => v["service_status"] == "Open",
            None => false,
        }
    }

    pub fn service_cert(&self) -> String {
        std::fs::read_to_string(self.dir.join("service_cert.pem")).unwrap()
    }

    pub fn ledger_dir(&self) -> PathBuf {
        self.dir.join("ledger")
    }

    /// A connection authenticated as user0 (or anonymous).
    pub async fn connect(&self, as_user: bool) -> Connection {
        self.connect_with(as_user, Protocol::Http1).await
    }

    /// A connection speaking `protocol`, authenticated as user0 (or anonymous).
    pub async fn connect_with(&self, as_user: bool, protocol: Protocol) -> Connection {
        let cert = std::fs::read_to_string(&self.user_cert).unwrap();
        let key = std::fs::read_to_string(&self.user_key).unwrap();
        let tls =
            consort_node::net::tls::client_config(&self.service_cert(), as_user.then_some((&*cert, &*key))).unwrap();
        // Retry briefly: a connection closed a moment ago may still hold one of the node's connection slots.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match Connection::connect(&self.address, tls.clone(), protocol).await {
                Ok(c) => return c,
                Err(e) if Instant::now() > deadline => panic!("connect {}: {e}", self.address),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Graceful stop (SIGTERM), bounded; falls back to SIGKILL.
    pub fn stop(&mut self) {
        stop_child(&mut self.child);
    }

    /// Crash stop (SIGKILL).
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }

    /// Polls until `txid` is Committed (bounded).
    pub async fn wait_committed(&self, conn: &Connection, txid: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = conn.get(&format!("/app/tx?transaction_id={txid}")).await.unwrap();
            let status = r.json().unwrap()["status"].as_str().unwrap().to_string();
            if status == "Committed" {
                return;
            }
            assert_ne!(status, "Invalid", "{txid} became Invalid");
            assert!(
                Instant::now() < deadline,
                "{txid} not committed in time (status {status})"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Longest a tool run by a test (the `consort` CLI, CCF's Python tools) may take before it is killed.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `cmd` to completion within `timeout` (killed beyond it, failing the test); stdout and stderr go through
/// files so a chatty child cannot block on a full pipe.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> std::process::Output {
    let tmp = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (tmp.path().join("stdout"), tmp.path().join("stderr"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::process::Output {
        status,
        stdout: std::fs::read(&out_path).unwrap(),
        stderr: std::fs::read(&err_path).unwrap(),
    }
}

/// Starts `consort node <verb> --config <config>` with its output appended to `out.log` and `err.log` in `dir`.
pub fn spawn_node(dir: &Path, verb: &str, config: &Path) -> Child {
    let log = |name: &str| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(name))
            .unwrap()
    };
    Command::new(consort_bin())
        .args(["node", verb, "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log("out.log"))
        .stderr(log("err.log"))
        .spawn()
        .unwrap()
}

/// Runs the `consort` binary with `args` (bounded by [`TOOL_TIMEOUT`]); returns (success, stdout+stderr).
pub fn run_consort(args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(consort_bin());
    cmd.args(args);
    let out = run_bounded(cmd, TOOL_TIMEOUT);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Stops a child process gracefully (SIGTERM, at most 10 s), then with SIGKILL; always reaps it.
pub fn stop_child(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Kills a child process (SIGKILL) and reaps it.
pub fn kill_child(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Runs CCF's `read_ledger.py` (from the `ccf` venv) on a ledger directory, bounded; returns (success, output).
pub fn read_ledger_py(venv: &Path, dir: &Path) -> (bool, String) {
    let mut cmd = Command::new(venv.join("bin/python"));
    cmd.arg(venv.join("bin/read_ledger.py")).arg(dir);
    let out = run_bounded(cmd, TOOL_TIMEOUT);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A client port P for a sandbox of `nodes` nodes: ports P..P+nodes and P+100..P+100+nodes (the node-to-node
/// ports) were free a moment ago.
pub fn sandbox_port(nodes: usize) -> u16 {
    let free = |p: usize| u16::try_from(p).is_ok_and(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
    for _ in 0..1000 {
        let p = free_port() as usize;
        if (0..nodes).all(|i| free(p + i) && free(p + 100 + i)) {
            return u16::try_from(p).unwrap();
        }
    }
    panic!("no free port range for a sandbox of {nodes} nodes")
}

/// Whether process `pid` (not a child of ours) still runs: it exists and is not a zombie.
fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// A network started by `consort sandbox --detach`: its workspace and the node processes it left running, which
/// are stopped on [`DetachedSandbox::stop`] and killed on drop.
pub struct DetachedSandbox {
    pub ws: PathBuf,
    /// What the sandbox printed.
    pub output: String,
    /// `sandbox.json`.
    pub info: serde_json::Value,
    pids: Vec<i32>,
}

impl DetachedSandbox {
    /// Runs `consort sandbox --detach --nodes N --port P --workspace WS EXTRA...` (bounded) with `env` set, and
    /// returns once the service is open; panics with the sandbox's output if it fails.
    pub fn start(ws: &Path, nodes: usize, extra: &[&str], env: &[(&str, &str)]) -> DetachedSandbox {
        let port = sandbox_port(nodes).to_string();
        let mut cmd = Command::new(consort_bin());
        cmd.args([
            "sandbox",
            "--detach",
            "--nodes",
            &nodes.to_string(),
            "--port",
            &port,
            "--workspace",
        ])
        .arg(ws)
        .args(extra)
        .envs(env.iter().copied());
        let out = run_bounded(cmd, TOOL_TIMEOUT);
        let output = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let info: serde_json::Value = std::fs::read(ws.join("sandbox.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let pids = info["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["pid"].as_i64())
            .map(|p| i32::try_from(p).unwrap())
            .collect();
        let sandbox = DetachedSandbox {
            ws: ws.to_path_buf(),
            output,
            info,
            pids,
        };
        assert!(out.status.success(), "the sandbox failed: {}", sandbox.output);
        assert_eq!(sandbox.pids.len(), nodes, "{}", sandbox.output);
        sandbox
    }

    /// Node `i`'s client address.
    pub fn address(&self, i: usize) -> String {
        self.info["nodes"][i]["rpc_address"].as_str().unwrap().to_string()
    }

    /// Node `i`'s directory.
    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.ws.join("nodes").join(i.to_string())
    }

    pub fn service_cert(&self) -> String {
        std::fs::read_to_string(self.ws.join("service_cert.pem")).unwrap()
    }

    /// A connection to node `i`, as user0 or anonymous.
    pub async fn connect(&self, i: usize, as_user: bool) -> Connection {
        let read = |f: &str| std::fs::read_to_string(self.ws.join(f)).unwrap();
        let (cert, key) = (read("user0_cert.pem"), read("user0_privk.pem"));
        let tls =
            consort_node::net::tls::client_config(&self.service_cert(), as_user.then_some((&*cert, &*key))).unwrap();
        Connection::connect(&self.address(i), tls, Protocol::Http1)
            .await
            .unwrap()
    }

    /// Stops every node gracefully (SIGTERM), waiting at most 10 s for each, then SIGKILL.
    pub fn stop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        for &pid in &self.pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.pids.iter().any(|&p| process_alive(p)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }

    /// Kills every node (SIGKILL).
    pub fn kill(&mut self) {
        for pid in self.pids.drain(..) {
            if process_alive(pid) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}

impl Drop for DetachedSandbox {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One ledger entry as it lies in a chunk file.
pub struct EntryAt {
    pub file: PathBuf,
    /// Where the entry starts in the file, and its length.
    pub offset: usize,
    pub len: usize,
    pub view: u64,
    pub seqno: u64,
    /// Where its private domain (encrypted) lies in the file; empty if it wrote no private map.
    pub private: std::ops::Range<usize>,
    /// Its public domain (a CCF write set).
    pub public_domain: Vec<u8>,
}

/// Every entry of the chunk files in a ledger directory, in seqno order. Read as a running node may have them:
/// an open chunk is read up to its last whole entry.
pub fn ledger_entries(dir: &Path) -> Vec<EntryAt> {
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name()?.to_str()?.to_string();
            consort_ledger::parse_chunk_name(&name).map(|c| (c.start, path))
        })
        .collect();
    files.sort();
    let mut out = Vec::new();
    for (_, file) in files {
        let bytes = std::fs::read(&file).unwrap();
        let table_at = bytes
            .get(..8)
            .map_or(0, |h| u64::from_le_bytes(h.try_into().unwrap()) as usize);
        let limit = if table_at == 0 || table_at > bytes.len() {
            bytes.len()
        } else {
            table_at
        };
        let mut pos = 8;
        while pos < limit {
            let Ok((e, used)) = consort_ledger::parse_entry(&bytes[pos..limit]) else {
                break;
            };
            out.push(EntryAt {
                file: file.clone(),
                offset: pos,
                len: used,
                view: e.view,
                seqno: e.seqno,
                private: pos + used - e.encrypted_private.len()..pos + used,
                public_domain: e.public_domain.to_vec(),
            });
            pos += used;
        }
    }
    out
}

/// Checks a JSON `receipt` with CCF's Python package (`ccf.receipt`): the leaf from its components (claims digest
/// included), the root from its proof, the signature, and the node certificate's endorsement by `service_cert`
/// (through `service_endorsements` when the receipt has them). Panics with Python's error if any check fails.
pub fn ccf_verifies_receipt(venv: &Path, dir: &Path, receipt: &serde_json::Value, service_cert: &Path) {
    let receipt_path = dir.join("receipt_for_ccf.json");
    std::fs::write(&receipt_path, receipt.to_string()).unwrap();
    let script = r#"
import json, sys, hashlib
from cryptography.x509 import load_pem_x509_certificate
import ccf.receipt
r = json.load(open(sys.argv[1]))
service = load_pem_x509_certificate(open(sys.argv[2], 'rb').read())
lc = r["leaf_components"]
leaf = hashlib.sha256(bytes.fromhex(lc["write_set_digest"]) + hashlib.sha256(lc["commit_evidence"].encode()).digest() + bytes.fromhex(lc["claims_digest"])).hexdigest()
root = ccf.receipt.root(leaf, r["proof"])
node_cert = load_pem_x509_certificate(r["cert"].encode())
ccf.receipt.verify(root, r["signature"], node_cert)
ccf.receipt.check_endorsements(node_cert, service, [load_pem_x509_certificate(e.encode()) for e in r.get("service_endorsements", [])])
print("receipt OK", root)
"#;
    let mut cmd = Command::new(venv.join("bin/python"));
    cmd.arg("-c").arg(script).arg(&receipt_path).arg(service_cert);
    let out = run_bounded(cmd, TOOL_TIMEOUT);
    assert!(
        out.status.success(),
        "ccf.receipt: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every file under `dir`, recursively (none if it does not exist): for scanning a node's files for clear text.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten() {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `secs` since the Unix epoch as a UTC civil time `(year, month, day, hour, minute, second)` (proleptic
/// Gregorian: 400-year eras of 146,097 days counted from March 1st), for the time strings CCF's tools take.
pub fn utc_civil(secs: i64) -> (i64, i64, i64, i64, i64, i64) {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, rem / 3_600, rem % 3_600 / 60, rem % 60)
}
