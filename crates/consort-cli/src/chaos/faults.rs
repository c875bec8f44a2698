//! The fault schedule (drawn from the seed, so a seed replays the same rounds) and how each fault is done to the
//! running nodes and healed: SIGKILL and restart, SIGSTOP/SIGCONT, full and one-way partitions, a full ledger
//! filesystem, and a flipped byte in a committed chunk followed by the operator's repair.

use super::cluster::{last_lines, Cluster};
use super::netns::Direction;
use super::ChaosError;
use nix::sys::signal::Signal;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

/// The kinds of fault, in the order the report lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    Kill,
    Pause,
    Partition,
    OneWayPartition,
    DiskFull,
    FlipByte,
}

impl FaultKind {
    pub const ALL: [FaultKind; 6] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::OneWayPartition,
        FaultKind::DiskFull,
        FaultKind::FlipByte,
    ];
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill+restart",
            FaultKind::Pause => "pause (SIGSTOP/SIGCONT)",
            FaultKind::Partition => "full partition",
            FaultKind::OneWayPartition => "one-way partition",
            FaultKind::DiskFull => "ledger disk full",
            FaultKind::FlipByte => "flipped byte in a committed chunk",
        }
    }
}

/// Whom a fault hits: the primary at the time, or a fixed node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Primary,
    Node(usize),
}

/// One round's fault, fully decided by the seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    pub who: Who,
    pub duration_ms: u64,
    /// Further random choices (partition members, direction, chunk and byte to damage).
    pub pick: u64,
}

/// Faults last between these bounds.
const MIN_FAULT_MS: u64 = 1_000;
const MAX_FAULT_MS: u64 = 4_000;
/// Room left on a node's small ledger filesystem: a few seconds of workload fill it.
const DISK_SLACK_BYTES: u64 = 96 * 1024;
/// The size a full ledger filesystem grows to when space is "freed".
const DISK_ENLARGED: &str = "size=1g";
/// How long a flip-byte round waits for its node to have a committed chunk.
const CHUNK_WAIT: Duration = Duration::from_secs(30);
/// How long a node with a damaged chunk has to refuse to start or come into service. It replays its whole ledger
/// first, so this is no short bound: a 178,000-entry ledger (53 MB) took 14 s to refuse a damaged entry near its end
/// on this idle 2-core machine, and the long 5-node run of an earlier version reported a node "running" with a
/// damaged chunk after 30 s when it was still replaying toward it under load.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(300);

/// The schedule of `rounds` faults for `seed` over `nodes` nodes, drawn from `kinds`.
pub fn schedule(seed: u64, rounds: usize, nodes: usize, kinds: &[FaultKind]) -> Vec<Fault> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..rounds)
        .map(|_| Fault {
            kind: kinds[rng.gen_range(0..kinds.len())],
            who: if rng.gen_bool(0.4) {
                Who::Primary
            } else {
                Who::Node(rng.gen_range(0..nodes))
            },
            duration_ms: rng.gen_range(MIN_FAULT_MS..=MAX_FAULT_MS),
            pick: rng.gen(),
        })
        .collect()
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let who = match self.who {
            Who::Primary => "the primary".to_string(),
            Who::Node(i) => format!("node {i}"),
        };
        write!(f, "{} on {who} for {} ms", self.kind.name(), self.duration_ms)
    }
}

/// What a round did that the report should show: observations, and defects (violations of what a node must do).
#[derive(Debug, Default)]
pub struct RoundLog {
    pub notes: Vec<String>,
    pub defects: Vec<String>,
    /// Defects the operator chose to tolerate ([`UnnamedDamage::Tolerated`]): reported, but the run can pass.
    pub tolerated: Vec<String>,
    /// How to count a damaged chunk refused without naming the file.
    pub unnamed_damage: UnnamedDamage,
}

/// A node that refuses a damaged chunk must name the file; whether failing to is a defect of this run or a known
/// one that is only reported (`--tolerate-unnamed-damage`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UnnamedDamage {
    #[default]
    Defect,
    Tolerated,
}

/// Node index of the current primary, as the first node that answers says.
pub async fn primary_index(cluster: &Cluster) -> Option<usize> {
    for i in 0..cluster.nodes.len() {
        let Some(net) = cluster.get_json(i, "/node/network").await else {
            continue;
        };
        let Some(id) = net["primary_id"].as_str() else { continue };
        return (0..cluster.nodes.len()).find(|&j| node_id(cluster, j).as_deref() == Some(id));
    }
    None
}

/// Node `i`'s id (the key id of its certificate).
pub fn node_id(cluster: &Cluster, i: usize) -> Option<String> {
    let pem = std::fs::read_to_string(cluster.nodes[i].dir.join("node_cert.pem")).ok()?;
    Some(consort_crypto::ParsedCert::from_pem(&pem).ok()?.key_id())
}

/// Does `fault` to the cluster, waits its duration, and heals it (restarting nodes that stopped).
pub async fn run_fault(cluster: &mut Cluster, fault: &Fault, log: &mut RoundLog) -> Result<usize, ChaosError> {
    let n = cluster.nodes.len();
    let target = match fault.who {
        Who::Node(i) => i,
        Who::Primary => primary_index(cluster).await.unwrap_or((fault.pick % n as u64) as usize),
    };
    let hold = Duration::from_millis(fault.duration_ms);
    match fault.kind {
        FaultKind::Kill => {
            cluster.kill(target);
            tokio::time::sleep(hold).await;
            cluster.start(target)?;
        }
        FaultKind::Pause => {
            cluster.signal(target, Signal::SIGSTOP);
            tokio::time::sleep(hold).await;
            cluster.signal(target, Signal::SIGCONT);
        }
        FaultKind::Partition => {
            let group = minority(target, n, fault.pick);
            let others: Vec<usize> = (0..n).filter(|j| !group.contains(j)).collect();
            for &g in &group {
                cluster.net.block(g, &others, Direction::Both)?;
            }
            log.notes.push(format!("nodes {group:?} cut off from {others:?}"));
            tokio::time::sleep(hold).await;
            heal_all(cluster);
        }
        FaultKind::OneWayPartition => {
            let others: Vec<usize> = (0..n).filter(|&j| j != target).collect();
            let dir = if fault.pick.is_multiple_of(2) {
                Direction::In
            } else {
                Direction::Out
            };
            cluster.net.block(target, &others, dir)?;
            let what = if dir == Direction::In {
                "hears nothing"
            } else {
                "reaches nobody"
            };
            log.notes.push(format!("node {target} {what} (one-way)"));
            tokio::time::sleep(hold).await;
            heal_all(cluster);
        }
        FaultKind::DiskFull => disk_full(cluster, target, hold, log).await?,
        FaultKind::FlipByte => flip_byte(cluster, target, fault.pick, log).await?,
    }
    Ok(target)
}

/// `target` and, on five nodes, maybe one more: always a minority.
fn minority(target: usize, n: usize, pick: u64) -> Vec<usize> {
    let mut group = vec![target];
    if n >= 5 && pick % 2 == 1 {
        group.push((target + 1 + (pick as usize / 2) % (n - 1)) % n);
    }
    group
}

/// Removes every partition rule.
pub fn heal_all(cluster: &Cluster) {
    for i in 0..cluster.nodes.len() {
        cluster.net.heal(i);
    }
}

/// Bytes a directory's files take on tmpfs (whole pages).
fn used_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len().div_ceil(4096) * 4096)
        .sum()
}

/// Puts node `target`'s ledger directory on a tmpfs with little room (moving its files there the first time), runs
/// for `hold` while the workload fills it, then enlarges it and restarts the node if it stopped.
async fn disk_full(cluster: &mut Cluster, target: usize, hold: Duration, log: &mut RoundLog) -> Result<(), ChaosError> {
    let ledger = cluster.nodes[target].ledger_dir();
    cluster.kill(target);
    let size = format!("size={}", used_bytes(&ledger) + DISK_SLACK_BYTES);
    if cluster.tmpfs.contains(&ledger) {
        super::netns::sh(
            "mount",
            &["-o", &format!("remount,{size}"), "tmpfs", path_str(&ledger)?],
        )?;
    } else {
        move_onto_tmpfs(&ledger, &size)?;
        cluster.tmpfs.push(ledger.clone());
    }
    let log_from = file_len(&cluster.nodes[target].err_log());
    cluster.start(target)?;
    // Long enough for the workload to fill the slack, whatever the fault's nominal duration.
    tokio::time::sleep(hold.max(Duration::from_secs(4))).await;
    let free = tmpfs_free(&ledger);
    super::netns::sh(
        "mount",
        &["-o", &format!("remount,{DISK_ENLARGED}"), "tmpfs", path_str(&ledger)?],
    )?;
    match cluster.exited(target) {
        Some(status) => {
            let why = last_lines(&cluster.nodes[target].err_log(), log_from, 1);
            log.notes.push(format!(
                "node {target} stopped on a full ledger disk ({status}): {why}; restarted after space was freed"
            ));
            cluster.start(target)?;
        }
        None => log.notes.push(format!(
            "node {target} kept running with its ledger disk at {} bytes free; space freed",
            free.map_or("?".into(), |f| f.to_string())
        )),
    }
    Ok(())
}

fn path_str(p: &Path) -> Result<&str, ChaosError> {
    p.to_str()
        .ok_or_else(|| ChaosError::Setup(format!("path is not UTF-8: {}", p.display())))
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Free bytes on the filesystem holding `p`, from `df`.
fn tmpfs_free(p: &Path) -> Option<u64> {
    let out = std::process::Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(p)
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().nth(1)?.trim().parse().ok()
}

fn move_onto_tmpfs(ledger: &Path, size: &str) -> Result<(), ChaosError> {
    let aside = ledger.with_extension("before-tmpfs");
    std::fs::rename(ledger, &aside).map_err(|e| ChaosError::io(ledger, e))?;
    std::fs::create_dir(ledger).map_err(|e| ChaosError::io(ledger, e))?;
    super::netns::sh("mount", &["-t", "tmpfs", "-o", size, "tmpfs", path_str(ledger)?])?;
    copy_files(&aside, ledger)?;
    std::fs::remove_dir_all(&aside).map_err(|e| ChaosError::io(&aside, e))
}

/// Copies the regular files of `from` into `to`.
pub fn copy_files(from: &Path, to: &Path) -> Result<(), ChaosError> {
    for e in std::fs::read_dir(from).map_err(|e| ChaosError::io(from, e))?.flatten() {
        if e.file_type().is_ok_and(|t| t.is_file()) {
            let dest = to.join(e.file_name());
            std::fs::copy(e.path(), &dest).map_err(|err| ChaosError::io(&dest, err))?;
        }
    }
    Ok(())
}

/// Committed chunk files of a ledger directory, sorted by name.
pub fn committed_chunks(ledger: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(ledger)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("ledger_") && n.ends_with(".committed"))
        })
        .collect();
    out.sort();
    out
}

/// Stops `target`, flips one byte of one of its committed chunks, checks that it refuses to start naming the file,
/// then repairs the chunk from a peer (the operator's fix) and restarts it.
async fn flip_byte(cluster: &mut Cluster, target: usize, pick: u64, log: &mut RoundLog) -> Result<(), ChaosError> {
    // Early in a campaign the first chunk may not be closed yet: the workload closes one within seconds.
    let deadline = Instant::now() + CHUNK_WAIT;
    let mut chunks = committed_chunks(&cluster.nodes[target].ledger_dir());
    while chunks.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        chunks = committed_chunks(&cluster.nodes[target].ledger_dir());
    }
    if chunks.is_empty() {
        log.notes
            .push(format!("node {target} has no committed chunk yet: nothing to damage"));
        return Ok(());
    }
    cluster.kill(target);
    let chunk = chunks[(pick % chunks.len() as u64) as usize].clone();
    let mut bytes = std::fs::read(&chunk).map_err(|e| ChaosError::io(&chunk, e))?;
    let offset = ((pick >> 20) % bytes.len().max(1) as u64) as usize;
    let original = bytes.clone();
    if let Some(b) = bytes.get_mut(offset) {
        *b ^= 0xff;
    }
    std::fs::write(&chunk, &bytes).map_err(|e| ChaosError::io(&chunk, e))?;
    let name = chunk
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let log_from = file_len(&cluster.nodes[target].err_log());
    let out_from = file_len(&cluster.nodes[target].out_log());
    cluster.start(target)?;
    let started = Instant::now();
    match wait_refused(cluster, target, out_from).await {
        Ok(status) => {
            let why = last_lines(&cluster.nodes[target].err_log(), log_from, 3);
            if why.contains(&name) {
                log.notes.push(format!(
                    "node {target} refused to start with byte {offset} of {name} flipped ({status}, after {:.1} s): {}",
                    started.elapsed().as_secs_f64(),
                    why.lines().last().unwrap_or_default()
                ));
            } else {
                let defect = format!(
                    "node {target} refused to start with byte {offset} of {name} flipped, without naming the file: {}",
                    why.lines().last().unwrap_or_default()
                );
                match log.unnamed_damage {
                    UnnamedDamage::Defect => log.defects.push(defect),
                    UnnamedDamage::Tolerated => log.tolerated.push(defect),
                }
            }
        }
        Err(Starting::InService) => {
            log.defects.push(format!(
                "node {target} came into service {:.1} s after its start with byte {offset} of its committed chunk \
                 {name} flipped",
                started.elapsed().as_secs_f64()
            ));
            cluster.kill(target);
        }
        Err(Starting::StillStarting) => {
            log.defects.push(format!(
                "node {target} neither refused to start nor came into service within {REFUSE_TIMEOUT:?} with byte \
                 {offset} of its committed chunk {name} flipped"
            ));
            cluster.kill(target);
        }
    }
    let repaired = repair_chunk(cluster, target, &chunk, &name, &original)?;
    log.notes.push(repaired);
    cluster.start(target)
}

/// Why a node with a damaged chunk did not refuse to start.
enum Starting {
    /// It reported listening (its replay is over): it took the damaged chunk.
    InService,
    /// Neither that nor an exit within [`REFUSE_TIMEOUT`].
    StillStarting,
}

/// Waits until node `target` exits (it refused to start: its status) or says it listens in its out.log after byte
/// `out_from` (it opened its ledger, damage included), for up to [`REFUSE_TIMEOUT`].
async fn wait_refused(cluster: &mut Cluster, target: usize, out_from: u64) -> Result<ExitStatus, Starting> {
    let deadline = Instant::now() + REFUSE_TIMEOUT;
    let out_log = cluster.nodes[target].out_log();
    while Instant::now() < deadline {
        if let Some(status) = cluster.wait_exit(target, Duration::from_millis(250)).await {
            return Ok(status);
        }
        if last_lines(&out_log, out_from, 5).contains("listening on") {
            // A node that refuses does so before it listens; give an exit racing this read a moment.
            return match cluster.wait_exit(target, Duration::from_millis(500)).await {
                Some(status) => Ok(status),
                None => Err(Starting::InService),
            };
        }
    }
    Err(Starting::StillStarting)
}

/// Replaces node `target`'s damaged chunk with a peer's copy of the same name (committed chunks are byte-identical
/// across nodes), or with the original bytes if no peer has one.
fn repair_chunk(
    cluster: &Cluster,
    target: usize,
    chunk: &Path,
    name: &str,
    original: &[u8],
) -> Result<String, ChaosError> {
    let peer = (0..cluster.nodes.len()).filter(|&j| j != target).find_map(|j| {
        std::fs::read(cluster.nodes[j].ledger_dir().join(name))
            .ok()
            .map(|b| (j, b))
    });
    let (bytes, from) = match &peer {
        Some((j, b)) => (b.as_slice(), format!("copied {name} from node {j}")),
        None => (original, format!("no peer has {name}: restored the original bytes")),
    };
    if peer.as_ref().is_some_and(|(_, b)| b.as_slice() != original) {
        return Err(ChaosError::Violation(format!(
            "committed chunk {name} differs between node {target} (before the damage) and its peer"
        )));
    }
    std::fs::write(chunk, bytes).map_err(|e| ChaosError::io(chunk, e))?;
    Ok(format!("repair of node {target}: {from}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_decides_the_schedule() {
        let a = schedule(42, 50, 3, &FaultKind::ALL);
        assert_eq!(a, schedule(42, 50, 3, &FaultKind::ALL), "same seed, same schedule");
        assert_ne!(
            a,
            schedule(43, 50, 3, &FaultKind::ALL),
            "another seed, another schedule"
        );
        assert!(a.iter().all(|f| (MIN_FAULT_MS..=MAX_FAULT_MS).contains(&f.duration_ms)));
        assert!(a.iter().all(|f| match f.who {
            Who::Node(i) => i < 3,
            Who::Primary => true,
        }));
        let only_kills = schedule(42, 20, 5, &[FaultKind::Kill]);
        assert!(only_kills.iter().all(|f| f.kind == FaultKind::Kill));
    }

    #[test]
    fn partitions_cut_off_a_minority() {
        for pick in 0..64 {
            for target in 0..5 {
                let g = minority(target, 5, pick);
                assert!(g.contains(&target) && g.len() <= 2 && g.iter().all(|&j| j < 5));
                assert!(g.len() == 1 || g[0] != g[1]);
                assert_eq!(minority(target, 3, pick), vec![target]);
            }
        }
    }

    /// The integration test's seed draws every kind of fault in its rounds (tests/chaos.rs).
    #[test]
    fn the_short_campaign_seed_covers_every_kind() {
        let (seed, rounds) = (SHORT_SEED, SHORT_ROUNDS);
        let kinds: std::collections::BTreeSet<FaultKind> = schedule(seed, rounds, 3, &FaultKind::ALL)
            .iter()
            .map(|f| f.kind)
            .collect();
        assert_eq!(
            kinds.len(),
            FaultKind::ALL.len(),
            "{:?}",
            schedule(seed, rounds, 3, &FaultKind::ALL)
        );
    }

    const SHORT_SEED: u64 = 20;
    const SHORT_ROUNDS: usize = 6;
}
