//! Times appending leaves to the Merkle tree and taking roots, paths and serialisations (run with --release).

use consort_ledger::MerkleTree;
use std::time::Instant;

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let leaves: Vec<[u8; 32]> = (0..n).map(|i| consort_crypto::sha256(&i.to_le_bytes())).collect();
    let t = Instant::now();
    let mut tree = MerkleTree::new();
    for (i, leaf) in leaves.iter().enumerate() {
        tree.append(*leaf);
        if i % 1000 == 0 {
            std::hint::black_box(tree.root());
        }
    }
    let root = tree.root();
    println!(
        "append {n} leaves + {} roots: {:?} (root {})",
        n / 1000,
        t.elapsed(),
        hex::encode(root)
    );
    let t = Instant::now();
    for i in (0..n).step_by(1000) {
        std::hint::black_box(tree.path(i, n).unwrap());
    }
    println!("{} paths: {:?}", n / 1000, t.elapsed());
    let t = Instant::now();
    tree.flush_to(n - 100);
    let bytes = tree.serialise();
    let back = MerkleTree::deserialise(&bytes).unwrap();
    assert_eq!(back.root(), root);
    println!(
        "flush + serialise ({} bytes) + deserialise: {:?}",
        bytes.len(),
        t.elapsed()
    );
}
