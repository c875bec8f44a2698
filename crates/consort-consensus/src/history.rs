//! CCF's view history: for each view, the first seqno in it. Answers "which view is seqno s in?".

/// `starts[v - 1]` is the first seqno of view `v`; a view with no entries starts where the next one does
/// (CCF's `ViewHistory` layout, also the `view_history` of a snapshot header).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewHistory {
    starts: Vec<u64>,
}

impl ViewHistory {
    /// The history whose views start at the given seqnos (as [`ViewHistory::starts`] returns them).
    pub fn from_starts(starts: Vec<u64>) -> Self {
        ViewHistory { starts }
    }

    /// The first seqno of each view, in view order.
    pub fn starts(&self) -> &[u64] {
        &self.starts
    }

    /// Records that entry `seqno` is in `view` (entries are noted in seqno order, views never decrease).
    pub fn note(&mut self, view: u64, seqno: u64) {
        while (self.starts.len() as u64) < view {
            self.starts.push(seqno);
        }
    }

    /// The view of `seqno`, if `seqno` is at or after the first view's start. The caller bounds `seqno` by the
    /// last seqno it holds.
    pub fn view_of(&self, seqno: u64) -> Option<u64> {
        let n = self.starts.partition_point(|&s| s <= seqno);
        (n > 0 && seqno > 0).then_some(n as u64)
    }

    /// Forgets everything after `seqno` (rollback).
    pub fn truncate(&mut self, seqno: u64) {
        while self.starts.last().is_some_and(|&s| s > seqno) {
            self.starts.pop();
        }
    }

    /// The history up to and including `seqno` (for a snapshot at `seqno`).
    pub fn up_to(&self, seqno: u64) -> Vec<u64> {
        let mut h = self.clone();
        h.truncate(seqno);
        h.starts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_with_gaps_and_truncation() {
        let mut h = ViewHistory::default();
        h.note(2, 1);
        h.note(2, 2);
        h.note(5, 3);
        assert_eq!(h.starts(), &[1, 1, 3, 3, 3]);
        assert_eq!(h.view_of(0), None);
        assert_eq!(h.view_of(1), Some(2));
        assert_eq!(h.view_of(2), Some(2));
        assert_eq!(h.view_of(3), Some(5));
        assert_eq!(h.view_of(100), Some(5));
        h.truncate(2);
        assert_eq!(h.starts(), &[1, 1]);
        h.note(6, 3);
        assert_eq!(h.view_of(3), Some(6));
        assert_eq!(h.up_to(2), vec![1, 1]);
    }
}
