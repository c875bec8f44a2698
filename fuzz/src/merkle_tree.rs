//! The `merkle_tree` target's properties over `consort_ledger::MerkleTree::deserialise` (the tree a signature
//! transaction and a snapshot carry in `public:ccf.internal.tree`), and its seeds. Shared, through `#[path]`, with
//! consort-ledger's `fuzz_replay` test, so the seeds are replayed with exactly the checks the fuzzer runs.

use consort_ledger::{fold_proof, MerkleTree, MAX_MERKLE_LEAVES};

/// Every prefix length (and every leaf of it) is checked when the retained span is at most this long; above it, a
/// few picks, so that one input stays well under a millisecond.
const EXHAUSTIVE_SPAN: u64 = 12;

/// Runs the target on `data`: returns the tree if `deserialise` accepted it, after checking that it re-serialises
/// to the same bytes and answers consistently for every prefix it still holds. Panics when a property fails.
pub fn check(data: &[u8]) -> Option<MerkleTree> {
    let tree = MerkleTree::deserialise(data).ok()?;
    assert_eq!(tree.serialise(), data, "an accepted tree re-serialises to other bytes");
    let (first, len) = (tree.first_retained(), tree.len());
    assert!(len >= 1 && first <= len, "accepted sizes: first {first}, len {len}");
    for i in first..len {
        assert!(tree.leaf(i).is_some(), "retained leaf {i} of {len} is missing");
    }
    assert_eq!(tree.leaf(len), None, "a leaf beyond the end");
    check_prefixes(&tree);
    if first == 0 {
        // Nothing flushed: every internal node was recomputed, so the roots are those of a plain pairing.
        let leaves: Vec<[u8; 32]> = (0..len).filter_map(|i| tree.leaf(i)).collect();
        assert_eq!(
            tree.root(),
            reference_root(&leaves),
            "root differs from the leaves' pairing"
        );
    }
    check_growth(&tree);
    check_flush_and_truncate(&tree);
    Some(tree)
}

/// The prefix lengths checked: all of `lo..=hi` for a short span, else its ends, middle and neighbours.
fn picks(lo: u64, hi: u64) -> Vec<u64> {
    if hi < lo {
        return Vec::new();
    }
    if hi - lo <= EXHAUSTIVE_SPAN {
        return (lo..=hi).collect();
    }
    let mid = lo + (hi - lo) / 2;
    let mut v = vec![lo, lo + 1, mid, mid + 1, hi - 1, hi];
    v.dedup();
    v
}

/// Every prefix at or after the flushed index has a root, and every retained leaf's path folds to it; prefixes
/// and leaves out of range are refused, not panicked on.
fn check_prefixes(tree: &MerkleTree) {
    let (first, len) = (tree.first_retained(), tree.len());
    for m in picks(first.max(1), len) {
        let root = tree
            .try_root_at(m)
            .unwrap_or_else(|e| panic!("no root for {m} of {len} leaves (first {first}): {e}"));
        for i in picks(first, m - 1) {
            let leaf = tree.leaf(i).unwrap_or_else(|| panic!("leaf {i} missing"));
            let path = tree
                .path(i, m)
                .unwrap_or_else(|e| panic!("no path for leaf {i} in {m} (first {first}): {e}"));
            assert_eq!(
                fold_proof(&leaf, &path),
                root,
                "path of leaf {i} in {m} does not fold to the root"
            );
        }
        assert!(tree.path(m, m).is_err(), "a path for a leaf outside the prefix");
    }
    assert!(tree.try_root_at(len + 1).is_err(), "a root beyond the end");
    assert!(tree.try_root_at(0).is_err(), "a root of no leaves");
    if first > 1 {
        assert!(tree.try_root_at(first - 1).is_err(), "a root of a flushed prefix");
        assert!(tree.path(first - 1, len).is_err(), "a path of a flushed leaf");
    }
}

/// Appending keeps every earlier root, the new leaves' paths fold to the new roots, and the grown tree
/// round-trips too.
fn check_growth(tree: &MerkleTree) {
    let (first, len) = (tree.first_retained(), tree.len());
    let mut grown = tree.clone();
    for k in 0..3u8 {
        grown.append([0xa0 | k; 32]);
    }
    for m in picks(first.max(1), len) {
        assert_eq!(
            grown.try_root_at(m).ok(),
            tree.try_root_at(m).ok(),
            "appending changed the root of {m}"
        );
    }
    for i in len..len + 3 {
        let leaf = grown.leaf(i).unwrap_or_else(|| panic!("appended leaf {i} missing"));
        for m in i + 1..=len + 3 {
            let path = grown
                .path(i, m)
                .unwrap_or_else(|e| panic!("no path for appended leaf {i}: {e}"));
            assert_eq!(Some(fold_proof(&leaf, &path)), grown.try_root_at(m).ok());
        }
    }
    // A tree grown past the reader's limit (one accepted at the limit, then appended to) is refused when read
    // back; below it, it round-trips.
    match MerkleTree::deserialise(&grown.serialise()) {
        Ok(back) => assert_eq!(back, grown, "the grown tree does not round-trip"),
        Err(e) => assert!(
            grown.len() > MAX_MERKLE_LEAVES,
            "grown tree of {} leaves: {e}",
            grown.len()
        ),
    }
}

/// Flushing further keeps the roots of the prefixes it keeps and round-trips; truncating (a rollback) keeps the
/// roots of the shorter prefixes.
fn check_flush_and_truncate(tree: &MerkleTree) {
    let (first, len) = (tree.first_retained(), tree.len());
    let cut = first.max(1) + (len - first.max(1)) / 2;
    let mut flushed = tree.clone();
    flushed.flush_to(cut);
    assert_eq!(flushed.first_retained(), cut.max(first));
    assert_eq!(
        flushed.serialise(),
        tree.serialise_flushed_to(cut),
        "flushing a copy differs"
    );
    let back = MerkleTree::deserialise(&flushed.serialise()).unwrap_or_else(|e| panic!("flushed tree: {e}"));
    assert_eq!(back, flushed, "the flushed tree does not round-trip");
    for m in picks(cut.max(1), len) {
        assert_eq!(
            flushed.try_root_at(m).ok(),
            tree.try_root_at(m).ok(),
            "flushing changed the root of {m}"
        );
    }
    let mut truncated = tree.clone();
    truncated.truncate(cut);
    assert_eq!(truncated.len(), cut);
    for m in picks(first.max(1), cut) {
        assert_eq!(
            truncated.try_root_at(m).ok(),
            tree.try_root_at(m).ok(),
            "truncating changed the root of {m}"
        );
    }
}

/// The root `merkletree.py` computes: pair nodes level by level, promote an unpaired last node unhashed.
fn reference_root(leaves: &[[u8; 32]]) -> [u8; 32] {
    let mut level = leaves.to_vec();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|c| match c {
                [l, r] => {
                    let mut both = l.to_vec();
                    both.extend_from_slice(r);
                    consort_crypto::sha256(&both)
                }
                _ => c[0],
            })
            .collect();
    }
    level.first().copied().unwrap_or([0; 32])
}

/// A tree of `n` leaves (leaf 0 is zeros, as in CCF; leaf i is SHA-256 of i) flushed below `first`.
pub fn sample_tree(n: u64, first: u64) -> MerkleTree {
    let mut t = MerkleTree::new();
    for i in 1..n {
        t.append(consort_crypto::sha256(&i.to_le_bytes()));
    }
    t.flush_to(first);
    t
}

/// Seeds: trees whole and flushed at sizes around powers of two, and the tree tables of a small ledger's
/// signature transactions (what a node really stores).
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (n, first) in [
        (1, 0),
        (2, 0),
        (3, 1),
        (7, 0),
        (8, 5),
        (9, 9),
        (16, 0),
        (33, 17),
        (64, 63),
    ] {
        out.push((format!("tree_{n}_from_{first}"), sample_tree(n, first).serialise()));
    }
    let ledger = consort_ledger::testing::sample_ledger(3, 2);
    for e in ledger.entries().iter().filter(|e| e.is_signature) {
        if let Some(tree) = tree_table(&e.bytes) {
            out.push((format!("ledger_signature_{}", e.seqno), tree));
        }
    }
    out
}

/// The serialised tree a signature entry stores in `public:ccf.internal.tree`.
fn tree_table(entry: &[u8]) -> Option<Vec<u8>> {
    let (e, _) = consort_ledger::parse_entry(entry).ok()?;
    let (_, ws) = consort_kv::WriteSet::deserialise_public(e.public_domain).ok()?;
    ws.maps
        .get(consort_ledger::TREE_TABLE)?
        .writes
        .get(&consort_ledger::SINGLETON_KEY[..])?
        .clone()
}
