//! A linearizability checker for a history of per-key registers with compare-and-swap, including operations whose
//! outcome is unknown (Wing and Gong's search with Lowe's memo of visited states, as Porcupine does).
//!
//! Keys are independent registers, so the history is split by key and each part is checked alone (a history is
//! linearizable iff each key's part is). An operation whose outcome is unknown (the client never learned whether it
//! happened) gets an infinite response time and may return anything: it can then be linearized after everything
//! else, which is the same as not having happened, or at any point after its invocation. An unknown read tells
//! nothing and is dropped.

use std::collections::HashSet;

/// A register's value; `None` is an absent key.
pub type Value = Option<String>;

/// What the client asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Write(String),
    Read,
    Cas { expected: Value, new: String },
}

/// What the client learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A write took effect.
    Written,
    /// A read returned this value.
    Read(Value),
    /// A compare-and-swap took effect and swapped (true) or found another value (false).
    Cas(bool),
    /// It may or may not have taken effect; no result was seen.
    Unknown,
}

/// One operation of the history. Times are in any monotonic unit; `ret` is ignored for unknown outcomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub key: String,
    pub call: Call,
    pub outcome: Outcome,
    pub invoke: u64,
    pub ret: u64,
}

/// The checker's answer for a whole history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linearizable {
        keys: usize,
        ops: usize,
    },
    /// No order of `key`'s operations explains what the clients saw; `detail` says where the search got stuck.
    NotLinearizable {
        key: String,
        detail: String,
    },
    /// The search visited more than the budget of states for `key` without an answer.
    Inconclusive {
        key: String,
        states: usize,
    },
}

impl Verdict {
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable { .. })
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Linearizable { keys, ops } => write!(f, "linearizable ({ops} operations on {keys} keys)"),
            Verdict::NotLinearizable { key, detail } => write!(f, "NOT linearizable on key {key}: {detail}"),
            Verdict::Inconclusive { key, states } => {
                write!(
                    f,
                    "inconclusive on key {key}: search budget of {states} states exhausted"
                )
            }
        }
    }
}

/// The register model: the state after `op` runs on `state`, or None if `op`'s outcome is impossible there.
fn step(state: &Value, op: &Op) -> Option<Value> {
    match (&op.call, &op.outcome) {
        (Call::Write(v), Outcome::Written | Outcome::Unknown) => Some(Some(v.clone())),
        (Call::Read, Outcome::Read(seen)) => (seen == state).then(|| state.clone()),
        (Call::Read, Outcome::Unknown) => Some(state.clone()),
        (Call::Cas { expected, new }, Outcome::Cas(true)) => (expected == state).then(|| Some(new.clone())),
        (Call::Cas { expected, .. }, Outcome::Cas(false)) => (expected != state).then(|| state.clone()),
        (Call::Cas { expected, new }, Outcome::Unknown) => Some(if expected == state {
            Some(new.clone())
        } else {
            state.clone()
        }),
        _ => None,
    }
}

fn ret_time(op: &Op) -> u64 {
    match op.outcome {
        Outcome::Unknown => u64::MAX,
        _ => op.ret,
    }
}

/// Checks `history` (any order); each key's search may visit at most `max_states` states.
pub fn check(history: &[Op], max_states: usize) -> Verdict {
    let mut by_key: std::collections::BTreeMap<&str, Vec<&Op>> = Default::default();
    for op in history {
        if op.call == Call::Read && op.outcome == Outcome::Unknown {
            continue;
        }
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let (keys, mut ops) = (by_key.len(), 0);
    for (key, mut part) in by_key {
        part.sort_by_key(|op| (op.invoke, ret_time(op)));
        ops += part.len();
        if let Err(v) = check_key(key, &part, max_states) {
            return v;
        }
    }
    Verdict::Linearizable { keys, ops }
}

/// One level of the search: the candidates for the next linearized operation, and the state before it.
struct Frame {
    candidates: Vec<usize>,
    next: usize,
    state: Value,
}

/// The operations not yet linearized, in invocation order, as a doubly linked list over indices: unlinking and
/// relinking in reverse order is O(1), so the search never rescans the operations it already placed.
struct Pending {
    next: Vec<usize>,
    prev: Vec<usize>,
}

/// End of the list; index `n` is its head.
const END: usize = usize::MAX;

impl Pending {
    fn new(n: usize) -> Self {
        let mut next = vec![END; n + 1];
        for (i, slot) in next.iter_mut().enumerate().take(n.saturating_sub(1)) {
            *slot = i + 1;
        }
        if n > 0 {
            next[n] = 0;
        }
        let prev = (0..n).map(|i| if i == 0 { n } else { i - 1 }).collect();
        Pending { next, prev }
    }

    fn unlink(&mut self, i: usize) {
        let (p, nx) = (self.prev[i], self.next[i]);
        self.next[p] = nx;
        if nx != END {
            self.prev[nx] = p;
        }
    }
    /// Undoes the latest [`Pending::unlink`] of `i` (unlinks must be undone in reverse order).
    fn relink(&mut self, i: usize) {
        let (p, nx) = (self.prev[i], self.next[i]);
        self.next[p] = i;
        if nx != END {
            self.prev[nx] = i;
        }
    }
    /// The operations that may be linearized next: pending and invoked no later than the earliest response of any
    /// pending operation. `ops` is sorted by invocation, so the walk stops at the first one invoked after it.
    fn candidates(&self, ops: &[&Op]) -> Vec<usize> {
        let mut out = vec![];
        let mut min_ret = u64::MAX;
        let mut i = self.next[ops.len()];
        while i != END {
            if ops[i].invoke > min_ret {
                break;
            }
            out.push(i);
            min_ret = min_ret.min(ret_time(ops[i]));
            i = self.next[i];
        }
        out
    }
}

/// Where the search got furthest, for the report.
struct Deepest {
    linearized: usize,
    state: Value,
    stuck: Vec<usize>,
}

fn check_key(key: &str, ops: &[&Op], max_states: usize) -> Result<(), Verdict> {
    let n = ops.len();
    let mut pending = Pending::new(n);
    // The memo keys a linearized set by its Zobrist hash (a random 128-bit word per operation, XORed in and out):
    // O(1) per step and 16 bytes per state, where the set itself would take n bits per state (gigabytes on a long
    // campaign's history). A collision, which could only hide a path, has probability about states^2 / 2^129.
    let zobrist: Vec<u128> = {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(n as u64);
        (0..n).map(|_| rng.gen()).collect()
    };
    let mut bits = 0u128;
    let mut seen: HashSet<(u128, Value)> = HashSet::new();
    let mut stack: Vec<Frame> = vec![];
    let (mut linearized, mut state) = (0usize, None);
    let mut deepest = Deepest {
        linearized: 0,
        state: None,
        stuck: vec![],
    };
    loop {
        if linearized == n {
            return Ok(());
        }
        let frame = Frame {
            candidates: pending.candidates(ops),
            next: 0,
            state: state.clone(),
        };
        if linearized >= deepest.linearized {
            deepest = Deepest {
                linearized,
                state: state.clone(),
                stuck: frame.candidates.clone(),
            };
        }
        stack.push(frame);
        // Try the top frame's remaining candidates; backtrack while a frame has none left.
        loop {
            let Some(top) = stack.last_mut() else {
                return Err(not_linearizable(key, ops, &deepest));
            };
            let mut advanced = false;
            while top.next < top.candidates.len() {
                let i = top.candidates[top.next];
                top.next += 1;
                let Some(next_state) = step(&top.state, ops[i]) else {
                    continue;
                };
                bits ^= zobrist[i];
                if seen.insert((bits, next_state.clone())) {
                    pending.unlink(i);
                    linearized += 1;
                    state = next_state;
                    advanced = true;
                    break;
                }
                bits ^= zobrist[i];
            }
            if advanced {
                break;
            }
            if seen.len() > max_states {
                return Err(Verdict::Inconclusive {
                    key: key.to_string(),
                    states: max_states,
                });
            }
            stack.pop();
            if let Some(parent) = stack.last() {
                let i = parent.candidates[parent.next - 1];
                pending.relink(i);
                bits ^= zobrist[i];
                linearized -= 1;
            }
        }
    }
}

fn not_linearizable(key: &str, ops: &[&Op], deepest: &Deepest) -> Verdict {
    let stuck: Vec<String> = deepest
        .stuck
        .iter()
        .take(8)
        .map(|&i| {
            format!(
                "{:?} -> {:?} [{}..{}]",
                ops[i].call, ops[i].outcome, ops[i].invoke, ops[i].ret
            )
        })
        .collect();
    Verdict::NotLinearizable {
        key: key.to_string(),
        detail: format!(
            "{} of {} operations linearize at most; then the value is {:?} and none of these can come next: {}",
            deepest.linearized,
            ops.len(),
            deepest.state,
            stuck.join("; ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: usize = 100_000;

    fn op(key: &str, call: Call, outcome: Outcome, invoke: u64, ret: u64) -> Op {
        Op {
            key: key.into(),
            call,
            outcome,
            invoke,
            ret,
        }
    }
    fn w(v: &str, invoke: u64, ret: u64) -> Op {
        op("k", Call::Write(v.into()), Outcome::Written, invoke, ret)
    }
    fn r(v: Option<&str>, invoke: u64, ret: u64) -> Op {
        op("k", Call::Read, Outcome::Read(v.map(String::from)), invoke, ret)
    }
    fn cas(expected: Option<&str>, new: &str, swapped: bool, invoke: u64, ret: u64) -> Op {
        let call = Call::Cas {
            expected: expected.map(String::from),
            new: new.into(),
        };
        op("k", call, Outcome::Cas(swapped), invoke, ret)
    }
    fn unknown(mut o: Op) -> Op {
        o.outcome = Outcome::Unknown;
        o
    }

    #[test]
    fn sequential_and_concurrent_good_histories_are_linearizable() {
        let sequential = [
            r(None, 0, 1),
            w("a", 2, 3),
            r(Some("a"), 4, 5),
            cas(Some("a"), "b", true, 6, 7),
        ];
        assert!(check(&sequential, BUDGET).is_linearizable());
        // Two overlapping writes: a read after both may see either, but then the order is fixed.
        let overlapping = [w("a", 0, 10), w("b", 1, 9), r(Some("a"), 11, 12), r(Some("a"), 13, 14)];
        assert!(check(&overlapping, BUDGET).is_linearizable());
        // A read overlapping a write may see the old or the new value.
        let read_during_write = [w("a", 0, 1), w("b", 2, 10), r(Some("a"), 3, 4), r(Some("b"), 5, 6)];
        assert!(check(&read_during_write, BUDGET).is_linearizable());
        let failed_cas = [w("a", 0, 1), cas(Some("x"), "y", false, 2, 3), r(Some("a"), 4, 5)];
        assert!(check(&failed_cas, BUDGET).is_linearizable());
    }

    #[test]
    fn a_stale_read_is_caught() {
        let h = [w("a", 0, 1), w("b", 2, 3), r(Some("a"), 4, 5)];
        let v = check(&h, BUDGET);
        assert!(matches!(&v, Verdict::NotLinearizable { key, .. } if key == "k"), "{v}");
    }

    #[test]
    fn a_lost_write_is_caught() {
        // "b" was acknowledged, yet a later read sees the value from before it.
        let h = [w("a", 0, 1), w("b", 2, 3), r(Some("b"), 4, 5), r(Some("a"), 6, 7)];
        assert!(!check(&h, BUDGET).is_linearizable());
        let never_written = [w("a", 0, 1), r(Some("z"), 2, 3)];
        assert!(!check(&never_written, BUDGET).is_linearizable());
    }

    #[test]
    fn a_cas_violation_is_caught() {
        // Two swaps from the same expected value cannot both succeed.
        let h = [
            w("a", 0, 1),
            cas(Some("a"), "b", true, 2, 5),
            cas(Some("a"), "c", true, 3, 6),
        ];
        assert!(!check(&h, BUDGET).is_linearizable());
        // A swap that reports failure although the expected value was there.
        let h = [w("a", 0, 1), cas(Some("a"), "b", false, 2, 3)];
        assert!(!check(&h, BUDGET).is_linearizable());
    }

    #[test]
    fn unknown_outcomes_may_or_may_not_have_happened() {
        let happened = [unknown(w("a", 0, 1)), r(Some("a"), 5, 6)];
        assert!(check(&happened, BUDGET).is_linearizable());
        let did_not = [unknown(w("a", 0, 1)), r(None, 5, 6)];
        assert!(check(&did_not, BUDGET).is_linearizable());
        // It cannot have happened before it was invoked.
        let too_early = [r(Some("a"), 0, 1), unknown(w("a", 5, 6))];
        assert!(!check(&too_early, BUDGET).is_linearizable());
        let cas_then_read = [
            w("a", 0, 1),
            unknown(cas(Some("a"), "b", true, 2, 3)),
            r(Some("b"), 7, 8),
        ];
        assert!(check(&cas_then_read, BUDGET).is_linearizable());
        // Once seen, an unknown write's value cannot disappear and come back... unless written twice.
        let flip = [
            unknown(w("a", 0, 1)),
            w("b", 2, 3),
            r(Some("a"), 4, 5),
            r(Some("b"), 6, 7),
        ];
        assert!(!check(&flip, BUDGET).is_linearizable());
        let unknown_read = [w("a", 0, 1), unknown(r(Some("zzz"), 2, 3))];
        assert!(check(&unknown_read, BUDGET).is_linearizable());
    }

    #[test]
    fn keys_are_independent_and_budget_is_reported() {
        let mut h = vec![w("a", 0, 1)];
        h.push(op("other", Call::Write("x".into()), Outcome::Written, 2, 3));
        h.push(r(Some("a"), 4, 5));
        assert_eq!(check(&h, BUDGET), Verdict::Linearizable { keys: 2, ops: 3 });
        // Many concurrent unknown writes and a read of none of them: the search gives up within its budget.
        let mut wide: Vec<Op> = (0..24).map(|i| unknown(w(&format!("v{i}"), 0, 1))).collect();
        wide.push(r(Some("never"), 2, 3));
        assert!(matches!(check(&wide, 1000), Verdict::Inconclusive { .. }));
    }

    /// A long history made by a real register with overlapping operations (each takes effect at a point inside its
    /// interval, some outcomes unknown) is linearizable; the same history with one read of a value never written is
    /// not.
    #[test]
    fn a_long_simulated_history_checks_and_a_corrupted_one_does_not() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut state: Value = None;
        let mut history = vec![];
        for n in 0..3000u64 {
            let point = n * 10;
            let (invoke, ret) = (point - rng.gen_range(0..=point.min(40)), point + rng.gen_range(1..40));
            let o = match rng.gen_range(0..3) {
                0 => {
                    state = Some(format!("v{n}"));
                    w(&format!("v{n}"), invoke, ret)
                }
                1 => r(state.as_deref(), invoke, ret),
                _ => {
                    let expected = if rng.gen_bool(0.5) {
                        state.clone()
                    } else {
                        Some("x".into())
                    };
                    let swapped = expected == state;
                    if swapped {
                        state = Some(format!("v{n}"));
                    }
                    cas(expected.as_deref(), &format!("v{n}"), swapped, invoke, ret)
                }
            };
            history.push(if rng.gen_ratio(1, 300) && o.call != Call::Read {
                unknown(o)
            } else {
                o
            });
        }
        // Proving that no order exists visits every reachable (linearized set, value): more than the small budget.
        let budget = 5_000_000;
        assert!(check(&history, budget).is_linearizable());
        let read = history
            .iter()
            .rposition(|o| o.call == Call::Read && o.outcome != Outcome::Unknown);
        history[read.expect("a read")].outcome = Outcome::Read(Some("bogus".into()));
        let v = check(&history, budget);
        assert!(matches!(v, Verdict::NotLinearizable { .. }), "{v}");
    }
}
