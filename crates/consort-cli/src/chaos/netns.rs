//! The campaign's network: one Linux network namespace per node, veth pairs to a bridge in the root namespace, and
//! nftables partitions inside the namespaces; everything named per run and removed by [`Net`]'s `Drop`.

use super::ChaosError;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// Nodes live on 10.77.<run>.0/24: the bridge (where the client runs) is .1, node i is .(NODE_HOST_BASE + i).
const SUBNET_PREFIX: [u8; 2] = [10, 77];
const NODE_HOST_BASE: u8 = 10;
/// Runs are numbered 1..=MAX_RUN (the third octet); parallel runs pick different numbers.
const MAX_RUN: u32 = 250;
/// The nftables table the campaign adds inside a node's namespace (and deletes to heal).
const NFT_TABLE: &str = "consort_chaos";

/// Runs a command to completion; its stderr becomes the error.
pub fn sh(program: &str, args: &[&str]) -> Result<(), ChaosError> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ChaosError::Command(format!("{program} {}: {e}", args.join(" "))))?;
    if out.status.success() {
        return Ok(());
    }
    Err(ChaosError::Command(format!(
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

fn sh_stdin(program: &str, args: &[&str], input: &str) -> Result<(), ChaosError> {
    use std::io::Write;
    let what = || format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ChaosError::Command(format!("{}: {e}", what())))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| ChaosError::Command(format!("{}: {e}", what())))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| ChaosError::Command(format!("{}: {e}", what())))?;
    if out.status.success() {
        return Ok(());
    }
    Err(ChaosError::Command(format!(
        "{}: {}",
        what(),
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// Why the campaign cannot run here, or None if it can: root, `ip`, `nsenter` and `nft`.
pub fn unavailable_reason() -> Option<String> {
    // /proc/self belongs to the process's effective user.
    let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").map_err(|e| e.to_string()).ok()?);
    if uid != 0 {
        return Some("network namespaces need root (run as root, or in a container with CAP_SYS_ADMIN)".into());
    }
    for tool in [["ip", "-V"], ["nsenter", "--version"], ["nft", "--version"]] {
        if sh(tool[0], &tool[1..]).is_err() {
            return Some(format!(
                "`{}` is not installed (apt-get install iproute2 util-linux nftables)",
                tool[0]
            ));
        }
    }
    None
}

/// The namespaces, veth pairs and bridge of one run.
#[derive(Debug)]
pub struct Net {
    pub run: u32,
    nodes: usize,
    created_namespaces: Vec<String>,
    bridge_up: bool,
}

impl Net {
    /// Picks a free run number near `hint` and builds the network; on error, what was built is removed.
    pub fn create(nodes: usize, hint: u32) -> Result<Net, ChaosError> {
        let run = (0..MAX_RUN)
            .map(|k| (hint + k) % MAX_RUN + 1)
            .find(|&r| {
                !std::path::Path::new(&format!("/sys/class/net/{}", bridge_name(r))).exists()
                    && !std::path::Path::new(&format!("/run/netns/{}", ns_name(r, 0))).exists()
            })
            .ok_or_else(|| ChaosError::Unavailable("no free run number: clean up old consort-c* namespaces".into()))?;
        let mut net = Net {
            run,
            nodes,
            created_namespaces: vec![],
            bridge_up: false,
        };
        net.build().map_err(|e| match e {
            ChaosError::Command(m) => ChaosError::Unavailable(format!("cannot build the network: {m}")),
            other => other,
        })?;
        Ok(net)
    }

    fn build(&mut self) -> Result<(), ChaosError> {
        let (run, br) = (self.run, bridge_name(self.run));
        sh("ip", &["link", "add", &br, "type", "bridge"])?;
        self.bridge_up = true;
        sh("ip", &["addr", "add", &format!("{}/24", self.client_ip()), "dev", &br])?;
        sh("ip", &["link", "set", &br, "up"])?;
        for i in 0..self.nodes {
            let ns = ns_name(run, i);
            sh("ip", &["netns", "add", &ns])?;
            self.created_namespaces.push(ns.clone());
            let (outer, inner) = (format!("cch{run}v{i}"), format!("cch{run}p{i}"));
            sh("ip", &["link", "add", &outer, "type", "veth", "peer", "name", &inner])?;
            sh("ip", &["link", "set", &inner, "netns", &ns])?;
            sh("ip", &["link", "set", &outer, "master", &br])?;
            sh("ip", &["link", "set", &outer, "up"])?;
            let addr = format!("{}/24", self.node_ip(i));
            sh("ip", &["-n", &ns, "addr", "add", &addr, "dev", &inner])?;
            sh("ip", &["-n", &ns, "link", "set", &inner, "up"])?;
            sh("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    pub fn client_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(SUBNET_PREFIX[0], SUBNET_PREFIX[1], self.run as u8, 1)
    }

    pub fn node_ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(
            SUBNET_PREFIX[0],
            SUBNET_PREFIX[1],
            self.run as u8,
            NODE_HOST_BASE + i as u8,
        )
    }

    /// The path `nsenter --net=` takes for node `i`'s namespace.
    pub fn ns_path(&self, i: usize) -> String {
        format!("/run/netns/{}", ns_name(self.run, i))
    }

    /// Inside node `i`'s namespace, drops traffic with the nodes in `peers`: packets they send (`Direction::In`),
    /// packets to them (`Out`), or both.
    pub fn block(&self, i: usize, peers: &[usize], direction: Direction) -> Result<(), ChaosError> {
        if peers.is_empty() {
            return Ok(());
        }
        let set = peers
            .iter()
            .map(|&p| self.node_ip(p).to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let input = format!("ip saddr {{ {set} }} drop");
        let output = format!("ip daddr {{ {set} }} drop");
        let (inp, out) = match direction {
            Direction::In => (input.as_str(), ""),
            Direction::Out => ("", output.as_str()),
            Direction::Both => (input.as_str(), output.as_str()),
        };
        let rules = format!(
            "table inet {NFT_TABLE} {{\n chain input {{\n  type filter hook input priority 0; policy accept;\n  {inp}\n }}\n \
             chain output {{\n  type filter hook output priority 0; policy accept;\n  {out}\n }}\n}}\n"
        );
        let ns = ns_name(self.run, i);
        sh_stdin("ip", &["netns", "exec", &ns, "nft", "-f", "-"], &rules)
    }

    /// Removes every partition rule of node `i`.
    pub fn heal(&self, i: usize) {
        let ns = ns_name(self.run, i);
        let _ = sh(
            "ip",
            &["netns", "exec", &ns, "nft", "delete", "table", "inet", NFT_TABLE],
        );
    }
}

/// Which packets a partition drops, seen from the node whose namespace holds the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
    Both,
}

fn ns_name(run: u32, i: usize) -> String {
    format!("consort-c{run}-n{i}")
}

fn bridge_name(run: u32) -> String {
    format!("cch{run}br")
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end inside it, and with it the pair.
        for ns in self.created_namespaces.drain(..) {
            if let Err(e) = sh("ip", &["netns", "del", &ns]) {
                eprintln!("cleanup: {e}");
            }
        }
        for i in 0..self.nodes {
            let _ = sh("ip", &["link", "del", &format!("cch{}v{i}", self.run)]);
        }
        if self.bridge_up {
            if let Err(e) = sh("ip", &["link", "del", &bridge_name(self.run)]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}
