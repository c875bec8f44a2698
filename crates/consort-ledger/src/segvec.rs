//! An append-mostly sequence stored in fixed-size blocks, so that growing it never moves what it holds.
//!
//! A `Vec` that doubles copies all of its contents when it grows: for the Merkle tree's leaves or the Raft term
//! index that is tens of megabytes copied, and freshly faulted in, while the engine lock is held (a 50 ms stall
//! at 2^19 leaves, measured). [`SegVec`] appends into blocks of [`BLOCK`] elements, drops whole blocks from the
//! front, and never reallocates a block once allocated.

use std::collections::VecDeque;

/// Elements per block (4096: 128 KiB blocks of Merkle nodes).
pub const BLOCK: usize = 4096;

/// A sequence of `T` in blocks of [`BLOCK`]: every block but the last is full, and the first `head` slots of the
/// first block were removed from the front.
#[derive(Clone, Default)]
pub struct SegVec<T: Copy> {
    blocks: VecDeque<Vec<T>>,
    head: usize,
    len: usize,
}

impl<T: Copy> SegVec<T> {
    /// An empty vector (it allocates its first block on the first push).
    pub fn new() -> Self {
        SegVec {
            blocks: VecDeque::new(),
            head: 0,
            len: 0,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds an element at the end.
    pub fn push(&mut self, value: T) {
        match self.blocks.back_mut() {
            Some(last) if last.len() < BLOCK => last.push(value),
            _ => {
                let mut block = Vec::with_capacity(BLOCK);
                block.push(value);
                self.blocks.push_back(block);
            }
        }
        self.len += 1;
    }

    /// Element `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<T> {
        if index >= self.len {
            return None;
        }
        let at = self.head + index;
        self.blocks.get(at / BLOCK).and_then(|b| b.get(at % BLOCK)).copied()
    }

    /// The last element, if any.
    pub fn last(&self) -> Option<T> {
        self.len.checked_sub(1).and_then(|i| self.get(i))
    }

    /// Keeps the first `len` elements.
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        if len == 0 {
            self.clear();
            return;
        }
        let end = self.head + len;
        let keep = end.div_ceil(BLOCK);
        self.blocks.truncate(keep);
        if let Some(last) = self.blocks.back_mut() {
            last.truncate(end - (keep - 1) * BLOCK);
        }
        self.len = len;
    }

    /// Removes the first `n` elements (all of them if there are fewer).
    pub fn drain_front(&mut self, n: usize) {
        if n >= self.len {
            self.clear();
            return;
        }
        self.head += n;
        self.len -= n;
        while self.head >= BLOCK {
            self.blocks.pop_front();
            self.head -= BLOCK;
        }
    }

    /// Removes every element and frees the blocks.
    pub fn clear(&mut self) {
        self.blocks.clear();
        self.head = 0;
        self.len = 0;
    }

    /// The elements from `from` on, in order.
    pub fn iter_from(&self, from: usize) -> impl Iterator<Item = T> + '_ {
        let start = self.head + from.min(self.len);
        let end = self.head + self.len;
        (start..end).map(move |at| self.blocks[at / BLOCK][at % BLOCK])
    }

    /// Every element, in order.
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        self.iter_from(0)
    }
}

impl<T: Copy> FromIterator<T> for SegVec<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut v = SegVec::new();
        for x in iter {
            v.push(x);
        }
        v
    }
}

impl<T: Copy + PartialEq> PartialEq for SegVec<T> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl<T: Copy + Eq> Eq for SegVec<T> {}

impl<T: Copy + std::fmt::Debug> std::fmt::Debug for SegVec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Push(u32),
        Truncate(usize),
        DrainFront(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => any::<u32>().prop_map(Op::Push),
            1 => (0usize..3 * BLOCK).prop_map(Op::Truncate),
            1 => (0usize..2 * BLOCK).prop_map(Op::DrainFront),
        ]
    }

    proptest! {
        /// Any sequence of operations leaves a SegVec holding what a Vec would.
        #[test]
        fn behaves_like_a_vec(ops in proptest::collection::vec(op(), 0..200), bulk in 0usize..3 * BLOCK) {
            let mut model: Vec<u32> = (0..bulk as u32).collect();
            let mut v: SegVec<u32> = model.iter().copied().collect();
            for op in ops {
                match op {
                    Op::Push(x) => { model.push(x); v.push(x); }
                    Op::Truncate(n) => { model.truncate(n); v.truncate(n); }
                    Op::DrainFront(n) => { model.drain(..n.min(model.len())); v.drain_front(n); }
                }
                prop_assert_eq!(v.len(), model.len());
                prop_assert_eq!(v.last(), model.last().copied());
            }
            prop_assert_eq!(v.iter().collect::<Vec<_>>(), model.clone());
            for (i, x) in model.iter().enumerate() {
                prop_assert_eq!(v.get(i), Some(*x));
            }
            prop_assert_eq!(v.get(model.len()), None);
            let skip = model.len() / 2;
            prop_assert_eq!(v.iter_from(skip).collect::<Vec<_>>(), model[skip..].to_vec());
        }
    }

    #[test]
    fn growing_never_moves_earlier_blocks() {
        let mut v = SegVec::new();
        for i in 0..BLOCK as u64 {
            v.push(i);
        }
        let first_block = v.blocks[0].as_ptr();
        for i in 0..(5 * BLOCK) as u64 {
            v.push(i);
        }
        assert_eq!(v.blocks[0].as_ptr(), first_block);
        assert_eq!(v.len(), 6 * BLOCK);
        assert_eq!(v.get(BLOCK + 7), Some(7));
    }
}
