//! CCF's Merkle tree over transaction leaves, with incrementally cached internal nodes.
//!
//! The tree is the one `merkletree.py` builds: pair nodes level by level and promote an unpaired last node
//! unhashed. That is the left-balanced tree of RFC 6962, so the root of `n` leaves folds the perfect subtrees
//! given by the binary digits of `n`, right to left: `root = H(P_big ‖ H(P_mid ‖ P_small))`.
//!
//! Storage: level `k` holds every *complete* node (a perfect subtree of `2^k` leaves). Appending a leaf costs one
//! hash amortised; a root or a path costs O(log n). Leaf 0 is 32 zero bytes, as in CCF.
//!
//! Flushing ([`MerkleTree::flush_to`]) forgets leaves below an index while keeping exactly the nodes needed for
//! roots of prefixes at least that long and paths of leaves at or after it. At level `k` the tree keeps nodes from
//! index `(first >> k) & !1`, so the sibling of every retained node is retained too.

use crate::error::MerkleFault;
use crate::limits::MAX_MERKLE_LEAVES;
use crate::reader::Reader;
use crate::segvec::SegVec;
use crate::LedgerError;
use consort_crypto::Sha256Hasher;

/// One step of an inclusion proof, from the leaf up. `Left(h)`: the sibling `h` is on the left, so the parent is
/// `H(h ‖ current)`; `Right(h)`: the parent is `H(current ‖ h)`. This is `ccf.receipt.root`'s order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofStep {
    /// The sibling is on the left.
    Left([u8; 32]),
    /// The sibling is on the right.
    Right([u8; 32]),
}

impl ProofStep {
    /// The CCF receipt JSON form: `{"left": hex}` or `{"right": hex}`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            ProofStep::Left(h) => serde_json::json!({ "left": hex::encode(h) }),
            ProofStep::Right(h) => serde_json::json!({ "right": hex::encode(h) }),
        }
    }
}

/// Folds a proof over a leaf, as `ccf.receipt.root` does.
pub fn fold_proof(leaf: &[u8; 32], proof: &[ProofStep]) -> [u8; 32] {
    proof.iter().fold(*leaf, |cur, step| match step {
        ProofStep::Left(h) => hash_pair(h, &cur),
        ProofStep::Right(h) => hash_pair(&cur, h),
    })
}

fn hash_pair(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256Hasher::new();
    h.update(left);
    h.update(right);
    h.finish()
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Level {
    /// Index (within the level) of the first node held.
    base: u64,
    /// In blocks, so that appending never copies the level (a doubling `Vec` stalled appends for tens of ms).
    nodes: SegVec<[u8; 32]>,
}

/// First retained node index at `level` once leaves below `first` are flushed.
fn level_base(first: u64, level: usize) -> u64 {
    (first >> level) & !1
}

/// Magic at the start of [`MerkleTree::serialise`] output ("CMT1").
const SERIALISED_MAGIC: [u8; 4] = *b"CMT1";

/// CCF's Merkle tree over the ledger's leaves (leaf 0 is 32 zero bytes), kept level by level so that roots and
/// paths of any prefix still held can be computed; [`MerkleTree::flush_to`] drops what committed leaves no longer
/// need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerkleTree {
    /// Leaves below this index are flushed (only their covering nodes are kept).
    first: u64,
    /// Number of leaves ever appended (and not truncated).
    len: u64,
    /// `levels[0]` are the leaves.
    levels: Vec<Level>,
}

impl Default for MerkleTree {
    fn default() -> Self {
        Self::new()
    }
}

impl MerkleTree {
    /// A tree holding CCF's first leaf, 32 zero bytes.
    pub fn new() -> Self {
        let mut tree = MerkleTree {
            first: 0,
            len: 0,
            levels: vec![Level {
                base: 0,
                nodes: SegVec::new(),
            }],
        };
        tree.append([0u8; 32]);
        tree
    }

    /// Number of leaves, the zero leaf included.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Never true: the tree always holds at least the zero leaf.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Index of the first leaf whose path is still available (leaves below were flushed).
    pub fn first_retained(&self) -> u64 {
        self.first
    }

    fn node(&self, level: usize, index: u64) -> [u8; 32] {
        let l = &self.levels[level];
        debug_assert!(index >= l.base, "merkle node {level}/{index} was flushed");
        match l.nodes.get((index - l.base) as usize) {
            Some(n) => n,
            // invariant: callers ask only for nodes of leaves below `len` and at or above `first`, which they
            // check (or `try_root_at`/`path` check for them) before.
            None => panic!("merkle node {level}/{index} is not held"),
        }
    }

    /// Adds the next leaf.
    pub fn append(&mut self, leaf: [u8; 32]) {
        self.levels[0].nodes.push(leaf);
        self.len += 1;
        let mut level = 0;
        let mut index = self.len - 1;
        // A node with an odd index completes its parent.
        while index & 1 == 1 {
            let parent = hash_pair(&self.node(level, index - 1), &self.node(level, index));
            if self.levels.len() == level + 1 {
                self.levels.push(Level {
                    base: level_base(self.first, level + 1),
                    nodes: SegVec::new(),
                });
            }
            self.levels[level + 1].nodes.push(parent);
            level += 1;
            index >>= 1;
        }
    }

    /// Leaf `index`, if held (neither flushed nor beyond the end).
    pub fn leaf(&self, index: u64) -> Option<[u8; 32]> {
        let l = &self.levels[0];
        if index < l.base || index >= self.len {
            return None;
        }
        l.nodes.get((index - l.base) as usize)
    }

    /// Root of all leaves.
    pub fn root(&self) -> [u8; 32] {
        self.root_at(self.len)
    }

    /// Root of the first `leaves` leaves, or an error if that prefix is empty, too long, or partly flushed.
    pub fn try_root_at(&self, leaves: u64) -> Result<[u8; 32], LedgerError> {
        if leaves == 0 || leaves > self.len || leaves < self.first {
            return Err(LedgerError::Merkle(MerkleFault::NoRoot {
                leaves,
                len: self.len,
                first: self.first,
            }));
        }
        // invariant: `leaves` > 0 (checked above) has a set bit, so the fold covers at least one node.
        Ok(self.fold_low_bits(leaves, 64).expect("leaves > 0 has a set bit"))
    }

    /// Root of the first `leaves` leaves.
    ///
    /// # Panics
    /// If `leaves` is 0, more than [`Self::len`] or below [`Self::first_retained`] (programmer error); see
    /// [`Self::try_root_at`].
    pub fn root_at(&self, leaves: u64) -> [u8; 32] {
        match self.try_root_at(leaves) {
            Ok(root) => root,
            Err(e) => panic!("root_at: {e}"),
        }
    }

    /// Folds the perfect subtrees given by the bits of `m` below `below_level`, smallest (rightmost) first. This
    /// is the root of leaves `[(m >> below_level) << below_level, m)`, or None if that range is empty.
    fn fold_low_bits(&self, m: u64, below_level: usize) -> Option<[u8; 32]> {
        let mut acc: Option<[u8; 32]> = None;
        for level in 0..below_level.min(64) {
            if (m >> level) & 1 == 1 {
                let node = self.node(level, (m >> level) - 1);
                acc = Some(match acc {
                    None => node,
                    Some(right) => hash_pair(&node, &right),
                });
            }
        }
        acc
    }

    /// Inclusion proof of leaf `index` in the tree of the first `leaves` leaves, leaf to root.
    pub fn path(&self, index: u64, leaves: u64) -> Result<Vec<ProofStep>, LedgerError> {
        if leaves > self.len || index >= leaves || index < self.first {
            return Err(LedgerError::Merkle(MerkleFault::NoPath {
                index,
                leaves,
                len: self.len,
                first: self.first,
            }));
        }
        let mut steps = Vec::new();
        let mut level = 0usize;
        let mut i = index;
        // Nodes at this level: the complete ones plus one partial node if `leaves` is not a multiple of 2^level.
        let mut count = leaves;
        while count > 1 {
            let sibling = i ^ 1;
            if sibling < i {
                steps.push(ProofStep::Left(self.node(level, sibling)));
            } else if sibling < count {
                let complete = leaves >> level;
                let value = if sibling < complete {
                    self.node(level, sibling)
                } else {
                    // invariant: `sibling` < `count` but not below `complete`, so `leaves` has bits below `level`.
                    self.fold_low_bits(leaves, level)
                        .expect("a partial node covers at least one leaf")
                };
                steps.push(ProofStep::Right(value));
            }
            // Otherwise `i` is the unpaired last node: promoted unhashed, no step.
            i >>= 1;
            count = count.div_ceil(2);
            level += 1;
        }
        Ok(steps)
    }

    /// Drops leaves at index `leaves` and above (Raft rollback).
    ///
    /// # Panics
    /// If `leaves` is 0 or below [`Self::first_retained`]: flushed leaves are committed and never rolled back.
    pub fn truncate(&mut self, leaves: u64) {
        assert!(
            leaves >= 1 && leaves >= self.first,
            "truncate below the flushed or zero leaf"
        );
        if leaves >= self.len {
            return;
        }
        self.len = leaves;
        for (k, level) in self.levels.iter_mut().enumerate() {
            let keep = (leaves >> k).saturating_sub(level.base);
            level.nodes.truncate(keep as usize);
        }
        // Levels above the new height hold nothing; drop them so equal trees compare equal.
        self.levels.truncate(Self::levels_for(leaves).max(1));
    }

    /// Forgets leaves below `index` (keeping what roots and paths at or after it need), so that the tree's
    /// memory and [`Self::serialise`] output stay proportional to the unflushed suffix. Clamped to [`Self::len`].
    pub fn flush_to(&mut self, index: u64) {
        let index = index.min(self.len);
        if index <= self.first {
            return;
        }
        self.first = index;
        for (k, level) in self.levels.iter_mut().enumerate() {
            let new_base = level_base(index, k);
            let drop = (new_base - level.base).min(level.nodes.len() as u64);
            level.nodes.drain_front(drop as usize);
            level.base = new_base;
        }
    }

    /// Nodes at level `k >= 1` that cannot be recomputed from the level below because their children are flushed.
    fn explicit_range(first: u64, len: u64, k: usize) -> (u64, u64) {
        let start = level_base(first, k);
        let computable_from = level_base(first, k - 1) / 2;
        let end = computable_from.min(len >> k).max(start);
        (start, end)
    }

    fn levels_for(len: u64) -> usize {
        (64 - len.leading_zeros()) as usize
    }

    /// Consort's own format: "CMT1" ‖ u64 first ‖ u64 len ‖ retained leaves ‖ per level k ≥ 1, the nodes whose
    /// children are flushed (at most one per level). Every other node is recomputed on load.
    pub fn serialise(&self) -> Vec<u8> {
        self.serialise_flushed_to(self.first)
    }

    /// What [`Self::serialise`] returns for this tree after `flush_to(index)`, without changing or copying it
    /// (the primary stores the flushed tree with every signature; cloning the whole tree there costs O(leaves)).
    pub fn serialise_flushed_to(&self, index: u64) -> Vec<u8> {
        let index = index.min(self.len);
        let first = if index <= self.first { self.first } else { index };
        let l0 = &self.levels[0];
        let skip = (level_base(first, 0) - l0.base).min(l0.nodes.len() as u64) as usize;
        let leaves = l0.nodes.iter_from(skip);
        let mut out = Vec::with_capacity(20 + 32 * (l0.nodes.len() - skip + self.levels.len()));
        out.extend_from_slice(&SERIALISED_MAGIC);
        out.extend_from_slice(&first.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        for leaf in leaves {
            out.extend_from_slice(&leaf);
        }
        for k in 1..Self::levels_for(self.len) {
            let (start, end) = Self::explicit_range(first, self.len, k);
            for index in start..end {
                out.extend_from_slice(&self.node(k, index));
            }
        }
        out
    }

    /// The tree [`Self::serialise`] wrote, checked (these bytes come from the ledger, so from the host).
    pub fn deserialise(bytes: &[u8]) -> Result<Self, LedgerError> {
        let bad = LedgerError::Merkle;
        let mut r = Reader::new(bytes, "serialised merkle tree");
        if r.array::<4>()? != SERIALISED_MAGIC {
            return Err(bad(MerkleFault::BadMagic));
        }
        let first = r.u64()?;
        let len = r.u64()?;
        if len == 0 || len > MAX_MERKLE_LEAVES || first > len {
            return Err(bad(MerkleFault::InvalidSizes { first, len }));
        }
        let levels_count = Self::levels_for(len);
        let leaf_base = level_base(first, 0);
        let mut expected_nodes = len - leaf_base;
        for k in 1..levels_count {
            let (start, end) = Self::explicit_range(first, len, k);
            expected_nodes += end - start;
        }
        // Checked against the actual byte count before anything is allocated from these lengths.
        if r.remaining() as u64 != expected_nodes * 32 {
            return Err(bad(MerkleFault::NodeCount {
                expected: expected_nodes,
                found: r.remaining(),
            }));
        }
        let mut leaves = SegVec::new();
        for _ in leaf_base..len {
            leaves.push(r.array::<32>()?);
        }
        let mut levels = vec![Level {
            base: leaf_base,
            nodes: leaves,
        }];
        for k in 1..levels_count {
            let (start, end) = Self::explicit_range(first, len, k);
            let mut nodes = SegVec::new();
            for _ in start..end {
                nodes.push(r.array::<32>()?);
            }
            let below = &levels[k - 1];
            for index in end..(len >> k) {
                let child = |i: u64| {
                    below
                        .nodes
                        .get((i - below.base) as usize)
                        .ok_or_else(|| bad(MerkleFault::NoChildren { level: k, index }))
                };
                nodes.push(hash_pair(&child(2 * index)?, &child(2 * index + 1)?));
            }
            levels.push(Level { base: start, nodes });
        }
        Ok(MerkleTree { first, len, levels })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use consort_crypto::sha256;
    use proptest::prelude::*;

    fn leaf(i: u64) -> [u8; 32] {
        sha256(&i.to_le_bytes())
    }

    fn tree(n: u64) -> MerkleTree {
        let mut t = MerkleTree::new();
        for i in 1..n {
            t.append(leaf(i));
        }
        t
    }

    /// Straightforward reference: the level-by-level pairing of merkletree.py, recomputed from scratch.
    fn reference_root(leaves: &[[u8; 32]]) -> [u8; 32] {
        let mut level = leaves.to_vec();
        while level.len() > 1 {
            level = level
                .chunks(2)
                .map(|c| if c.len() == 2 { hash_pair(&c[0], &c[1]) } else { c[0] })
                .collect();
        }
        level[0]
    }

    #[test]
    fn roots_match_reference_and_prefixes() {
        let t = tree(70);
        let leaves: Vec<_> = (0..70).map(|i| t.leaf(i).unwrap()).collect();
        assert_eq!(leaves[0], [0u8; 32]);
        for m in 1..=70u64 {
            assert_eq!(t.root_at(m), reference_root(&leaves[..m as usize]), "m={m}");
            assert_eq!(tree(m).root(), t.root_at(m));
        }
        assert_eq!(MerkleTree::new().root(), [0u8; 32]);
    }

    #[test]
    fn every_path_folds_to_its_root() {
        let t = tree(70);
        for m in 1..=70u64 {
            for i in 0..m {
                let p = t.path(i, m).unwrap();
                assert_eq!(fold_proof(&t.leaf(i).unwrap(), &p), t.root_at(m), "i={i} m={m}");
            }
            assert!(t.path(m, m).is_err());
        }
        assert!(t.path(0, 71).is_err());
    }

    #[test]
    fn truncate_then_append_matches_fresh_tree() {
        for cut in 1..40u64 {
            let mut t = tree(40);
            t.truncate(cut);
            assert_eq!(t, tree(cut));
            for i in cut..50 {
                t.append(leaf(i));
            }
            assert_eq!(t, tree(50), "cut={cut}");
        }
    }

    #[test]
    fn serialise_round_trip_full_and_flushed() {
        for n in 1..70u64 {
            let full = tree(n);
            assert_eq!(MerkleTree::deserialise(&full.serialise()).unwrap(), full);
            for first in 0..=n {
                let mut t = full.clone();
                t.flush_to(first);
                let bytes = t.serialise();
                let back = MerkleTree::deserialise(&bytes).unwrap();
                assert_eq!(back, t, "n={n} first={first}");
                // The flushed tree still answers for the suffix, and keeps growing correctly.
                let mut grown = back.clone();
                let mut reference = full.clone();
                for i in n..n + 9 {
                    grown.append(leaf(i));
                    reference.append(leaf(i));
                }
                for m in first.max(1)..=n + 9 {
                    assert_eq!(grown.root_at(m), reference.root_at(m), "n={n} first={first} m={m}");
                    for i in first..m {
                        assert_eq!(grown.path(i, m).unwrap(), reference.path(i, m).unwrap());
                    }
                }
            }
        }
    }

    #[test]
    fn serialising_as_if_flushed_equals_flushing_a_copy() {
        for n in 1..70u64 {
            for already in [0, n / 3, n / 2] {
                let mut t = tree(n);
                t.flush_to(already);
                for index in 0..=n + 2 {
                    let mut copy = t.clone();
                    copy.flush_to(index);
                    assert_eq!(
                        t.serialise_flushed_to(index),
                        copy.serialise(),
                        "n={n} already={already} index={index}"
                    );
                }
            }
        }
    }

    #[test]
    fn deserialise_rejects_garbage() {
        assert!(MerkleTree::deserialise(b"").is_err());
        assert!(MerkleTree::deserialise(b"CMT1").is_err());
        let mut bytes = tree(5).serialise();
        bytes.pop();
        assert!(MerkleTree::deserialise(&bytes).is_err());
        let mut huge = b"CMT1".to_vec();
        huge.extend_from_slice(&0u64.to_le_bytes());
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(MerkleTree::deserialise(&huge).is_err());
    }

    proptest! {
        #[test]
        fn deserialise_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = MerkleTree::deserialise(&bytes);
        }

        #[test]
        fn deserialise_never_panics_on_plausible_headers(first in 0u64..80, len in 0u64..80, nodes in 0usize..90) {
            let mut bytes = b"CMT1".to_vec();
            bytes.extend_from_slice(&first.to_le_bytes());
            bytes.extend_from_slice(&len.to_le_bytes());
            bytes.extend(vec![7u8; nodes * 32]);
            let _ = MerkleTree::deserialise(&bytes);
        }

        #[test]
        fn flush_then_truncate_then_append_matches_a_fresh_tree(n in 1u64..130, flush in any::<u64>(), cut in any::<u64>(), extra in 0u64..40) {
            // Raft rollback after a flush: truncate to any length at or above the flushed index, grow again, and
            // every root and path still available must be those of a tree that never flushed or truncated.
            let mut t = tree(n);
            let first = flush % (n + 1);
            t.flush_to(first);
            let keep = first.max(1) + cut % (n - first.max(1) + 1);
            t.truncate(keep);
            let mut reference = tree(keep);
            for i in keep..keep + extra {
                t.append(leaf(1000 + i));
                reference.append(leaf(1000 + i));
            }
            prop_assert_eq!(t.len(), reference.len());
            for m in first.max(1)..=t.len() {
                prop_assert_eq!(t.root_at(m), reference.root_at(m), "m={}", m);
                for i in first..m {
                    prop_assert_eq!(t.path(i, m).unwrap(), reference.path(i, m).unwrap(), "i={} m={}", i, m);
                }
            }
            // And it serialises to what it is.
            prop_assert_eq!(MerkleTree::deserialise(&t.serialise()).unwrap(), t);
        }

        #[test]
        fn paths_fold_to_root_at(n in 1u64..300, seed in any::<u64>()) {
            let t = tree(n);
            let m = 1 + seed % n;
            let i = (seed >> 20) % m;
            prop_assert_eq!(fold_proof(&t.leaf(i).unwrap(), &t.path(i, m).unwrap()), t.root_at(m));
        }
    }
}
