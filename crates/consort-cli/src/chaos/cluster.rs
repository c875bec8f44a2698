//! The campaign's nodes: configurations, `consort node` processes inside their namespaces (start, kill, pause,
//! restart), opening the service, and HTTPS connections from the client side of the bridge.

use super::netns::Net;
use super::ChaosError;
use consort_node::config::{IdentityConfig, NodeConfig};
use consort_node::net::client::{Connection, Protocol};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Every node serves clients on this port of its own address, and node-to-node traffic on the next one.
pub const RPC_PORT: u16 = 8000;
/// How long the service has to open.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound on one HTTPS request of the harness (not the workload's).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Ledger chunks close at the first signature past this many bytes: small, so that rounds have committed chunks to
/// compare and damage.
pub const CHUNK_THRESHOLD_BYTES: u64 = 64 * 1024;

/// How a node is (re)started: node 0 started the service, the others joined it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Launch {
    Start,
    Join,
}

/// One node process.
#[derive(Debug)]
pub struct NodeProc {
    pub dir: PathBuf,
    pub addr: String,
    launch: Launch,
    child: Option<Child>,
    /// Set between SIGSTOP and SIGCONT.
    pub paused: bool,
}

impl NodeProc {
    pub fn ledger_dir(&self) -> PathBuf {
        self.dir.join("ledger")
    }
    pub fn err_log(&self) -> PathBuf {
        self.dir.join("err.log")
    }

    pub fn out_log(&self) -> PathBuf {
        self.dir.join("out.log")
    }
}

/// The nodes of one campaign. Dropping it kills every node (the network is dropped after it).
#[derive(Debug)]
pub struct Cluster {
    exe: PathBuf,
    pub ws: PathBuf,
    pub nodes: Vec<NodeProc>,
    pub service_cert: String,
    /// Ledger directories the campaign mounted a tmpfs on (unmounted on drop, their files kept beside them).
    pub tmpfs: Vec<PathBuf>,
    pub net: Net,
}

impl Cluster {
    /// Writes identities and configurations into `ws` (wiping an earlier campaign there).
    pub fn prepare(ws: &Path, net: Net, nodes: usize) -> Result<Cluster, ChaosError> {
        if ws.join("chaos.json").exists() {
            std::fs::remove_dir_all(ws).map_err(|e| ChaosError::io(ws, e))?;
        }
        let ws = crate::sandbox::prepare_workspace(ws, 1).map_err(|e| ChaosError::Setup(e.to_string()))?;
        let marker = serde_json::json!({"run": net.run, "nodes": nodes});
        write(&ws.join("chaos.json"), &marker.to_string())?;
        let mut cluster = Cluster {
            exe: std::env::current_exe().map_err(|e| ChaosError::io(Path::new("current_exe"), e))?,
            ws,
            nodes: vec![],
            service_cert: String::new(),
            tmpfs: vec![],
            net,
        };
        for i in 0..nodes {
            let launch = if i == 0 { Launch::Start } else { Launch::Join };
            let dir = cluster.ws.join("nodes").join(i.to_string());
            std::fs::create_dir_all(&dir).map_err(|e| ChaosError::io(&dir, e))?;
            let cfg = cluster.node_config(i, launch);
            write(&dir.join("node.toml"), &cfg.to_toml())?;
            cluster.nodes.push(NodeProc {
                dir,
                addr: cfg.network.rpc_address,
                launch,
                child: None,
                paused: false,
            });
        }
        Ok(cluster)
    }

    fn node_config(&self, i: usize, launch: Launch) -> NodeConfig {
        let ip = self.net.node_ip(i);
        let mut cfg = NodeConfig::default();
        cfg.network.rpc_address = format!("{ip}:{RPC_PORT}");
        cfg.network.node_to_node_address = Some(format!("{ip}:{}", RPC_PORT + 1));
        cfg.ledger.chunk_threshold_bytes = CHUNK_THRESHOLD_BYTES;
        cfg.start.members = vec![IdentityConfig {
            cert: self.ws.join("member0_cert.pem"),
            encryption_public_key: Some(self.ws.join("member0_enc_pubk.pem")),
            data: None,
        }];
        if launch == Launch::Join {
            cfg.join.target = Some(format!("{}:{RPC_PORT}", self.net.node_ip(0)));
            cfg.join.service_cert = Some(self.ws.join("service_cert.pem"));
        }
        cfg
    }

    /// Starts node `i` in its namespace (appending to its `out.log` and `err.log`).
    pub fn start(&mut self, i: usize) -> Result<(), ChaosError> {
        let node = &self.nodes[i];
        let log = |name: &str| {
            let path = node.dir.join(name);
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| ChaosError::io(&path, e))
        };
        let verb = match node.launch {
            Launch::Start => "start",
            Launch::Join => "join",
        };
        // nsenter enters only the network namespace and then runs the node in its own place (same process id).
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.net.ns_path(i)))
            .arg("--")
            .arg(&self.exe)
            .args(["node", verb, "--config"])
            .arg(node.dir.join("node.toml"))
            .env(crate::ALLOCATOR_PURGE_DELAY_VAR, crate::NODE_ALLOCATOR_PURGE_DELAY_MS)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log("out.log")?)
            .stderr(log("err.log")?)
            .spawn()
            .map_err(|e| ChaosError::Setup(format!("starting node {i}: {e}")))?;
        self.nodes[i].child = Some(child);
        self.nodes[i].paused = false;
        Ok(())
    }

    /// Sends `signal` to node `i` if it runs.
    pub fn signal(&mut self, i: usize, signal: Signal) {
        if let Some(c) = &self.nodes[i].child {
            let _ = kill(Pid::from_raw(c.id() as i32), signal);
        }
        match signal {
            Signal::SIGSTOP => self.nodes[i].paused = true,
            Signal::SIGCONT => self.nodes[i].paused = false,
            _ => {}
        }
    }

    /// SIGKILLs node `i` and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.nodes[i].paused = false;
    }

    /// Node `i`'s exit status if it has exited since it was last started.
    pub fn exited(&mut self, i: usize) -> Option<ExitStatus> {
        match self.nodes[i].child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(status))) => Some(status),
            None => Some(ExitStatus::default()),
            _ => None,
        }
    }

    /// Whether node `i` has a process that has not exited.
    pub fn running(&mut self, i: usize) -> bool {
        self.nodes[i].child.is_some() && self.exited(i).is_none()
    }

    /// Waits up to `timeout` for node `i` to exit; its status if it did.
    pub async fn wait_exit(&mut self, i: usize, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(s) = self.exited(i) {
                return Some(s);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// A TLS connection to node `i` as user0 (or anonymously).
    pub async fn connect(&self, i: usize, as_user: bool, protocol: Protocol) -> Result<Connection, ChaosError> {
        connect(&self.ws, &self.service_cert, &self.nodes[i].addr, as_user, protocol).await
    }

    /// GET `path` on node `i` as user0, bounded by [`REQUEST_TIMEOUT`]; the JSON body if the status is 200.
    pub async fn get_json(&self, i: usize, path: &str) -> Option<serde_json::Value> {
        let f = async {
            let conn = self.connect(i, true, Protocol::Http1).await.ok()?;
            let r = conn.get(path).await.ok()?;
            (r.status == 200).then(|| r.json().ok()).flatten()
        };
        tokio::time::timeout(REQUEST_TIMEOUT, f).await.ok().flatten()
    }
}

/// A TLS connection to `addr`, as user0 when `as_user`.
pub async fn connect(
    ws: &Path,
    service_cert: &str,
    addr: &str,
    as_user: bool,
    protocol: Protocol,
) -> Result<Connection, ChaosError> {
    let read = |f: &str| std::fs::read_to_string(ws.join(f)).map_err(|e| ChaosError::io(&ws.join(f), e));
    let (cert, key) = (read("user0_cert.pem")?, read("user0_privk.pem")?);
    let identity = as_user.then_some((cert.as_str(), key.as_str()));
    let tls = consort_node::net::tls::client_config(service_cert, identity)
        .map_err(|e| ChaosError::Setup(format!("client TLS: {e}")))?;
    let conn = tokio::time::timeout(REQUEST_TIMEOUT, Connection::connect(addr, tls, protocol)).await;
    match conn {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(ChaosError::Request(format!("{addr}: {e}"))),
        Err(_) => Err(ChaosError::Request(format!("{addr}: connect timed out"))),
    }
}

fn write(path: &Path, text: &str) -> Result<(), ChaosError> {
    std::fs::write(path, text).map_err(|e| ChaosError::io(path, e))
}

impl Cluster {
    /// Starts node 0, then the joiners once the service certificate exists; trusts them, adds user0 and opens the
    /// service (as the sandbox does).
    pub async fn bring_up(&mut self) -> Result<(), ChaosError> {
        let deadline = Instant::now() + OPEN_TIMEOUT;
        self.start(0)?;
        let node0 = self.nodes[0].dir.clone();
        let cert = loop {
            if let Some(status) = self.exited(0) {
                return Err(ChaosError::Setup(format!(
                    "node 0 exited ({status}): {}",
                    last_lines(&node0.join("err.log"), 0, 5)
                )));
            }
            if let Ok(cert) = std::fs::read_to_string(node0.join("service_cert.pem")) {
                break cert;
            }
            if Instant::now() > deadline {
                return Err(ChaosError::Setup("node 0 wrote no service certificate".into()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        write(&self.ws.join("service_cert.pem"), &cert)?;
        self.service_cert = cert;
        for i in 1..self.nodes.len() {
            self.start(i)?;
        }
        let address = self.nodes[0].addr.clone();
        while Instant::now() < deadline {
            self.trust_joiners().await;
            if crate::sandbox::voters(&node0, &address).await >= self.nodes.len()
                && crate::sandbox::poll_open(&node0, &address, &self.ws).await.is_some()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(ChaosError::Setup(format!(
            "the service did not open within {OPEN_TIMEOUT:?}"
        )))
    }

    /// member0 trusts each joiner of this campaign that is Pending.
    async fn trust_joiners(&self) {
        let Ok(conn) = self.connect(0, false, Protocol::Http1).await else {
            return;
        };
        let nodes = tokio::time::timeout(REQUEST_TIMEOUT, conn.get("/node/network/nodes")).await;
        let Some(nodes) = nodes.ok().and_then(|r| r.ok()).and_then(|r| r.json().ok()) else {
            return;
        };
        for node in &self.nodes[1..] {
            if let Some(id) = crate::sandbox::pending_joiner(&node.dir, &nodes) {
                let actions = serde_json::json!([{"name": "transition_node_to_trusted", "args": {"node_id": id}}]);
                let pass = crate::sandbox::pass_as_members(&conn, &self.ws, actions);
                if let Ok(Err(e)) = tokio::time::timeout(REQUEST_TIMEOUT, pass).await {
                    eprintln!("trusting {}: {e}", node.dir.display());
                }
            }
        }
    }
}

/// The last `n` lines of `path` written after byte `from`.
pub fn last_lines(path: &Path, from: u64, n: usize) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let tail = bytes.get(from as usize..).unwrap_or_default();
    let text = strip_ansi(&String::from_utf8_lossy(tail));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `text` without terminal colour sequences (ESC [ ... letter).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.signal(i, Signal::SIGCONT);
            self.kill(i);
        }
        for dir in std::mem::take(&mut self.tmpfs) {
            // Keep the files for a post-mortem: the tmpfs goes away with the mount.
            let saved = dir.with_extension("from-tmpfs");
            let kept = std::fs::create_dir_all(&saved).is_ok() && super::faults::copy_files(&dir, &saved).is_ok();
            if let Some(d) = dir.to_str() {
                if let Err(e) = super::netns::sh("umount", &["-l", d]) {
                    eprintln!("cleanup: {e}");
                } else if kept {
                    let _ = std::fs::remove_dir(&dir).and_then(|_| std::fs::rename(&saved, &dir));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn colour_sequences_are_stripped() {
        let line = "\u{1b}[2m2026\u{1b}[0m \u{1b}[31mERROR\u{1b}[0m fatal: ledger_1-28.committed";
        assert_eq!(super::strip_ansi(line), "2026 ERROR fatal: ledger_1-28.committed");
    }
}
