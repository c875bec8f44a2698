//! Measures what building a periodic snapshot costs a node: a store of N logging-app-like private entries
//! (8-byte keys, ~40-byte values) is captured, encrypted and bundled by `snapshot::build`, then hashed, as the
//! primary's snapshot builder does (without the pauses between batches). Prints each phase's wall time.
//!
//! `cargo run --release -p consort-consensus --example snapshot_build -- [keys] [runs]` (defaults: 400000, 3).

use consort_consensus::snapshot;
use consort_crypto::sha256;
use consort_kv::{Store, WriteSet};
use consort_ledger::LedgerSecret;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let keys: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(400_000);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let store = Store::new();
    let per_version = 1_000u64;
    let mut version = 0;
    let mut next = 0u64;
    while next < keys {
        let mut ws = WriteSet::default();
        for k in next..(next + per_version).min(keys) {
            ws.put(
                "records",
                &k.to_le_bytes(),
                format!("{{\"id\":{k},\"msg\":\"bench message {k}\"}}").as_bytes(),
            );
        }
        next += per_version;
        version += 1;
        store.apply(version, &ws).expect("apply");
    }
    store.set_committed(version);
    let secret = consort_ledger::LedgerSecrets::new(LedgerSecret::generate());
    let signature_entry = vec![0u8; 600];
    println!("store: {keys} keys in {version} versions");
    for _ in 0..runs {
        let t = Instant::now();
        let bundle = snapshot::build(&store, &secret, &signature_entry, 2, version, vec![1]).expect("build");
        let built = t.elapsed();
        let t = Instant::now();
        let digest = sha256(&bundle);
        let hashed = t.elapsed();
        println!(
            "capture+encrypt+bundle {:7.1} ms, digest {:5.1} ms, {} bytes ({:02x}{:02x}..)",
            built.as_secs_f64() * 1e3,
            hashed.as_secs_f64() * 1e3,
            bundle.len(),
            digest[0],
            digest[1]
        );
    }
}
