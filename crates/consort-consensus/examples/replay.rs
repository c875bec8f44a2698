//! Measures recovery replay: builds an N-transaction ledger on disk with a one-voter replica, then times
//! `Replica::open` over it exactly as a restarting node does it.
//!
//! ```text
//! cargo run --release -p consort-consensus --example replay -- build --tx 1000000 --dir /tmp/replay
//! cargo run --release -p consort-consensus --example replay -- replay --dir /tmp/replay [--sequential]
//! ```
//!
//! `build` writes `DIR/ledger/` (CCF chunk files) and `DIR/raft_hard_state` the way the node does: logging-app-like
//! private writes (map `records`, distinct u64 keys, ~20-byte values), signatures every 5,000 transactions (the
//! node's default `signature_interval_tx`), 5 MB chunks. `replay` reopens it in a fresh process (decoding on a second core
//! as the node does, or on one with `--sequential`) and prints the
//! seconds, transactions per second and peak RSS (VmHWM), and the store digest, Merkle root and commit point
//! (which `build` prints too, so the two can be compared).

use consort_consensus::testing::ScopedThreadOffload;
use consort_consensus::{
    decode_hard_state, encode_hard_state, Action, Event, NodeIdentity, Offload, PersistedState, Replica, ReplicaConfig,
};
use consort_kv::CommitOutcome;
use consort_ledger::{LedgerSecret, LedgerStorage, StorageError};
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The node binary's allocator (consort-cli's `main.rs`), so replay is measured as a node runs it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const HARD_STATE_FILE: &str = "raft_hard_state";
/// Proposals between two ledger syncs while building (the node syncs once per batch as well).
const BUILD_BATCH: u64 = 1000;

/// A minimal file-backed ledger storage (the node's `FsStorage` lives in consort-node, above this crate).
struct DirStorage {
    dir: PathBuf,
    open: HashMap<String, std::io::BufWriter<File>>,
}

fn io(name: &str, e: std::io::Error) -> StorageError {
    match e.kind() {
        std::io::ErrorKind::NotFound => StorageError::NotFound(name.to_string()),
        _ => StorageError::io(name, e),
    }
}

impl DirStorage {
    fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("create the ledger directory");
        DirStorage {
            dir: dir.to_path_buf(),
            open: HashMap::new(),
        }
    }

    fn flush(&mut self, name: &str) -> Result<(), StorageError> {
        if let Some(w) = self.open.get_mut(name) {
            w.flush().map_err(|e| io(name, e))?;
        }
        Ok(())
    }

    fn len(&self, name: &str) -> Result<u64, StorageError> {
        let on_disk = std::fs::metadata(self.dir.join(name)).map_err(|e| io(name, e))?.len();
        Ok(on_disk + self.open.get(name).map_or(0, |w| w.buffer().len() as u64))
    }
}

impl LedgerStorage for DirStorage {
    fn list(&self) -> Result<Vec<String>, StorageError> {
        let mut names = Vec::new();
        for e in std::fs::read_dir(&self.dir).map_err(|e| io("dir", e))? {
            let e = e.map_err(|e| io("dir", e))?;
            names.extend(e.file_name().to_str().map(str::to_string));
        }
        Ok(names)
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, StorageError> {
        let mut bytes = std::fs::read(self.dir.join(name)).map_err(|e| io(name, e))?;
        if let Some(w) = self.open.get(name) {
            bytes.extend_from_slice(w.buffer());
        }
        Ok(bytes)
    }

    fn append(&mut self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
        if !self.open.contains_key(name) {
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(name))
                .map_err(|e| io(name, e))?;
            f.seek(SeekFrom::End(0)).map_err(|e| io(name, e))?;
            self.open
                .insert(name.to_string(), std::io::BufWriter::with_capacity(1 << 20, f));
        }
        let w = self.open.get_mut(name).expect("inserted above");
        w.write_all(bytes).map_err(|e| io(name, e))
    }

    fn write_at(&mut self, name: &str, offset: u64, bytes: &[u8]) -> Result<(), StorageError> {
        if offset > self.len(name)? {
            return Err(StorageError::OutOfRange(name.to_string()));
        }
        self.flush(name)?;
        let f = OpenOptions::new()
            .write(true)
            .open(self.dir.join(name))
            .map_err(|e| io(name, e))?;
        f.write_all_at(bytes, offset).map_err(|e| io(name, e))
    }

    fn truncate(&mut self, name: &str, len: u64) -> Result<(), StorageError> {
        if len > self.len(name)? {
            return Err(StorageError::OutOfRange(name.to_string()));
        }
        self.flush(name)?;
        self.open.remove(name);
        let f = OpenOptions::new()
            .write(true)
            .open(self.dir.join(name))
            .map_err(|e| io(name, e))?;
        f.set_len(len).map_err(|e| io(name, e))
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), StorageError> {
        self.flush(from)?;
        self.open.remove(from);
        self.open.remove(to);
        std::fs::rename(self.dir.join(from), self.dir.join(to)).map_err(|e| io(from, e))
    }

    fn remove(&mut self, name: &str) -> Result<(), StorageError> {
        self.open.remove(name);
        std::fs::remove_file(self.dir.join(name)).map_err(|e| io(name, e))
    }

    fn sync(&mut self, name: &str) -> Result<(), StorageError> {
        self.flush(name)?;
        match self.open.get(name) {
            Some(w) => w.get_ref().sync_data().map_err(|e| io(name, e)),
            None => File::open(self.dir.join(name))
                .and_then(|f| f.sync_data())
                .map_err(|e| io(name, e)),
        }
    }
}

fn identity() -> NodeIdentity {
    consort_consensus::testing::fixture_identities().remove(0)
}

fn config() -> ReplicaConfig {
    let mut cfg = ReplicaConfig::new(consort_consensus::RaftId(1));
    cfg.signature_interval_tx = 5_000;
    cfg.signature_interval_ticks = 10;
    cfg
}

fn open(dir: &Path, offload: Option<&dyn Offload>) -> Replica<DirStorage> {
    let hard_state = std::fs::read(dir.join(HARD_STATE_FILE))
        .ok()
        .map(|b| decode_hard_state(&b).expect("hard state decodes"));
    let id = identity();
    let trusted = BTreeMap::from([(consort_consensus::RaftId(1), id.cert_pem.clone())]);
    let persisted = PersistedState {
        hard_state,
        snapshot: None,
        voters: vec![1],
        recovery: None,
    };
    let secret = LedgerSecret::from_bytes([7u8; 32]);
    let storage = DirStorage::new(&dir.join("ledger"));
    Replica::open_with_offload(config(), id, trusted, secret, storage, persisted, offload)
        .unwrap_or_else(|e| panic!("opening the replica failed: {e}"))
}

/// Drives the replica's actions: sends go nowhere (one voter); persists are batched by the caller.
struct Builder {
    replica: Replica<DirStorage>,
    dir: PathBuf,
    unpersisted: Option<u64>,
    hard_state: Option<consort_consensus::eraftpb::HardState>,
}

impl Builder {
    fn step(&mut self, event: Event) {
        for a in self.replica.step(event) {
            match a {
                Action::Persist { number, hard_state, .. } => {
                    self.unpersisted = Some(number);
                    if hard_state.is_some() {
                        self.hard_state = hard_state;
                    }
                }
                Action::Halted { error } => panic!("the replica halted: {error}"),
                Action::ProposalRejected { version, error } => panic!("proposal {version} rejected: {error}"),
                _ => {}
            }
        }
    }

    /// What the node's driver does for a batch of persists: ledger sync, hard state, then `Persisted`.
    fn persist(&mut self) {
        while let Some(number) = self.unpersisted.take() {
            self.replica.sync_ledger().expect("ledger sync");
            if let Some(hs) = &self.hard_state {
                let tmp = self.dir.join(format!("{HARD_STATE_FILE}.tmp"));
                std::fs::write(&tmp, encode_hard_state(hs)).expect("write the hard state");
                std::fs::rename(&tmp, self.dir.join(HARD_STATE_FILE)).expect("rename the hard state");
            }
            self.step(Event::Persisted { number });
        }
    }
}

fn build(n: u64, dir: &Path) {
    if dir.join("ledger").exists() {
        std::fs::remove_dir_all(dir.join("ledger")).expect("remove the old ledger");
    }
    let _ = std::fs::remove_file(dir.join(HARD_STATE_FILE));
    let started = Instant::now();
    let mut b = Builder {
        replica: open(dir, None),
        dir: dir.to_path_buf(),
        unpersisted: None,
        hard_state: None,
    };
    b.step(Event::Campaign);
    b.persist();
    assert!(b.replica.is_leader(), "a one-voter replica wins its election");
    for i in 0..n {
        let store = b.replica.store().clone();
        let mut tx = store.begin();
        tx.put("records", &i.to_le_bytes(), format!("log message {i:08}").as_bytes());
        let (version, write_set) = match store.commit(tx, |v, ws| (v, ws.clone())) {
            Ok(CommitOutcome::Committed { result, .. }) => result,
            other => panic!("commit failed: {other:?}"),
        };
        b.step(Event::Propose {
            version,
            write_set,
            claims_digest: None,
        });
        if (i + 1) % BUILD_BATCH == 0 {
            b.persist();
        }
        if (i + 1) % 100_000 == 0 {
            eprintln!("built {} transactions", i + 1);
        }
    }
    // Let the last signature go out and commit.
    for _ in 0..20 {
        b.step(Event::Tick);
        b.persist();
    }
    let r = &b.replica;
    println!(
        "built {n} transactions ({} seqnos) in {:.1} s",
        r.last_seqno(),
        started.elapsed().as_secs_f64()
    );
    report(r);
}

fn report(r: &Replica<DirStorage>) {
    println!("last seqno   {}", r.last_seqno());
    println!("commit point {}", r.commit_point());
    println!("merkle root  {}", hex::encode(r.merkle_root()));
    println!("store digest {}", hex::encode(r.store().digest()));
}

/// Peak resident set size of this process in KiB (VmHWM).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// CPU seconds (user + system) this process has used so far, from /proc/self/stat (in clock ticks of 10 ms).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th of them.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let field = |i: usize| {
        rest.split_whitespace()
            .nth(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (field(11) + field(12)) / 100.0
}

fn replay(dir: &Path, offload: Option<&dyn Offload>) {
    let started = Instant::now();
    let cpu_before = cpu_secs();
    let r = open(dir, offload);
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu_before;
    let n = r.last_seqno().get();
    println!(
        "replayed {n} transactions in {secs:.2} s ({cpu:.2} s CPU): {:.0} tx/s, peak RSS {} MiB",
        n as f64 / secs,
        peak_rss_kib() / 1024
    );
    report(&r);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let dir = PathBuf::from(value("--dir").unwrap_or_else(|| "target/replay".into()));
    match args.first().map(String::as_str) {
        Some("build") => {
            let n = value("--tx").map_or(1_000_000, |v| v.parse().expect("--tx takes a number"));
            build(n, &dir);
        }
        // --sequential: replay on one core (no offload), as the simulation does.
        Some("replay") if args.iter().any(|a| a == "--sequential") => replay(&dir, None),
        Some("replay") => replay(&dir, Some(&ScopedThreadOffload)),
        _ => {
            eprintln!("usage: replay build --tx N --dir DIR | replay replay --dir DIR [--sequential]");
            std::process::exit(2);
        }
    }
}
