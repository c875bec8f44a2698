//! A linearizability checker for a history of per-key registers with compare-and-swap, including operations whose
//! outcome is unknown (Wing and Gong's search with Lowe's memo of visited states, as Porcupine does), that checks a
//! long history in pieces cut at quiescent points and carries the set of possible states across each cut.
//!
//! Keys are independent registers, so the history is split by key and each part is checked alone (a history is
//! linearizable iff each key's part is). An operation whose outcome is unknown (the client never learned whether it
//! happened) gets an infinite response time and may return anything: it may take effect at any point after its
//! invocation, however much later, or never (the same as taking effect after everything else). An unknown read tells
//! nothing and is dropped.
//!
//! **Cutting a key's history.** A cut goes between two operations with known outcomes where every such operation
//! invoked before the cut has returned before every one invoked after it; unknown operations never block a cut
//! (their response is at infinity). Between cuts lies a segment. Each segment is searched *exhaustively* from every
//! configuration the previous segment can end in, and yields every configuration it can end in; the history is
//! linearizable iff some configuration survives the last segment. A configuration is the register's value, the
//! unknown operations invoked so far and not yet linearized (carried into the next segment as optional operations
//! that may be linearized anywhere in it, or later, or never) and a count of "unobserved writes" (below). Nothing is
//! forgotten at a cut, so the answer is the same as one search over the whole history: sound (a history that is not
//! linearizable is reported as such) and complete. Three rules keep the carried sets small, each exact:
//!
//! - a carried unknown write whose value no later operation reads or expects (in a compare-and-swap) can only make
//!   the register hold a value nobody looks at; it becomes one "unobserved write" token, which the search may spend
//!   at any step to set the register to [`Reg::Unobserved`] (a value equal to none);
//! - a carried unknown compare-and-swap whose expected value the register can never hold again (not its current
//!   value, written by no later operation and no carried one) can never take effect, and is dropped;
//! - a register value no later operation reads or expects becomes [`Reg::Unobserved`];
//!
//! and a configuration is dropped when another has the same value, a superset of its carried operations and at least
//! as many tokens (whatever the first can do later, the second can too). Inside a segment, an unknown operation (or a
//! token) is placed only where an operation that may come next looks at its value or is a failed compare-and-swap
//! that needs the current value gone, and of several interchangeable ones (values nobody looks at any more) only one
//! is offered: anywhere else it could be moved later or left pending, which leads to a configuration that covers the
//! first (see `segment::useful`).

mod segment;
#[cfg(test)]
mod tests;

use segment::{Config, Reg, SegmentError};
use std::collections::{BTreeMap, HashMap, HashSet};

/// A register's value; `None` is an absent key.
pub type Value = Option<String>;

/// Most configurations carried across one cut before the key is reported inconclusive.
pub const MAX_CONFIGS: usize = 10_000;

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

/// The checker's answer for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyVerdict {
    Linearizable,
    /// No order of the key's operations explains what the clients saw; `detail` says where the search got stuck.
    NotLinearizable {
        segment: usize,
        detail: String,
    },
    /// A segment's search visited more than the budget of states, or too many configurations crossed a cut.
    Inconclusive {
        segment: usize,
        reason: String,
    },
}

/// One key's figures and verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyReport {
    pub key: String,
    /// Operations checked (unknown reads are not).
    pub ops: usize,
    pub segments: usize,
    /// Operations invoked in the largest segment.
    pub largest_segment: usize,
    /// States visited by the searches of all segments.
    pub states: usize,
    /// Most configurations that crossed one cut.
    pub max_configs: usize,
    pub verdict: KeyVerdict,
}

/// The checker's answer for a whole history: one report per key, in key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub keys: Vec<KeyReport>,
}

impl Report {
    pub fn is_linearizable(&self) -> bool {
        self.keys.iter().all(|k| k.verdict == KeyVerdict::Linearizable)
    }

    /// The first key that is not linearizable, else the first inconclusive one.
    fn worst(&self) -> Option<&KeyReport> {
        let bad = |k: &&KeyReport| matches!(k.verdict, KeyVerdict::NotLinearizable { .. });
        let open = |k: &&KeyReport| k.verdict != KeyVerdict::Linearizable;
        self.keys.iter().find(bad).or_else(|| self.keys.iter().find(open))
    }
}

impl std::fmt::Display for KeyVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyVerdict::Linearizable => write!(f, "linearizable"),
            KeyVerdict::NotLinearizable { segment, detail } => {
                write!(f, "NOT linearizable in segment {segment}: {detail}")
            }
            KeyVerdict::Inconclusive { segment, reason } => write!(f, "inconclusive in segment {segment}: {reason}"),
        }
    }
}

impl std::fmt::Display for KeyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "key {}: {} ops, {} segments, largest {} ops, {} states explored, at most {} configurations at a cut: {}",
            self.key, self.ops, self.segments, self.largest_segment, self.states, self.max_configs, self.verdict
        )
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.worst() {
            None => {
                let ops: usize = self.keys.iter().map(|k| k.ops).sum();
                write!(f, "linearizable ({ops} operations on {} keys)", self.keys.len())
            }
            Some(k) => match &k.verdict {
                KeyVerdict::NotLinearizable { .. } => write!(f, "NOT linearizable on key {}: {}", k.key, k.verdict),
                _ => write!(f, "inconclusive on key {}: {}", k.key, k.verdict),
            },
        }
    }
}

/// The response time the search uses: infinity for an unknown outcome.
fn ret_time(op: &Op) -> u64 {
    match op.outcome {
        Outcome::Unknown => u64::MAX,
        _ => op.ret,
    }
}

/// Checks `history` (any order); each segment's search may visit at most `max_states` states.
pub fn check(history: &[Op], max_states: usize) -> Report {
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in history {
        if op.call == Call::Read && op.outcome == Outcome::Unknown {
            continue;
        }
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let keys = by_key
        .into_iter()
        .map(|(key, mut part)| {
            part.sort_by_key(|op| (op.invoke, ret_time(op)));
            check_key(key, &part, max_states)
        })
        .collect();
    Report { keys }
}

/// A key's operations cut into segments: `of[i]` is operation i's segment.
struct Segments {
    of: Vec<usize>,
    members: Vec<Vec<usize>>,
}

/// Cuts `ops` (sorted by invocation) where every known operation invoked before has returned; an unknown operation
/// belongs to the segment in which it was invoked.
fn cut(ops: &[&Op]) -> Segments {
    let mut of = vec![0; ops.len()];
    let mut members: Vec<Vec<usize>> = vec![];
    let mut max_ret: Option<u64> = None;
    for (i, op) in ops.iter().enumerate() {
        let known = op.outcome != Outcome::Unknown;
        let starts = members.is_empty() || (known && max_ret.is_some_and(|r| op.invoke > r));
        if starts {
            members.push(vec![]);
        }
        if known {
            max_ret = Some(max_ret.map_or(op.ret, |r| r.max(op.ret)));
        }
        let s = members.len() - 1;
        of[i] = s;
        members[s].push(i);
    }
    Segments { of, members }
}

/// For each value, the last segment in which an operation looks at it (reads it, or expects it in a
/// compare-and-swap) and the last in which one writes it.
struct LastUse {
    observed: HashMap<Value, usize>,
    written: HashMap<Value, usize>,
}

impl LastUse {
    fn new(ops: &[&Op], segs: &Segments) -> Self {
        let (mut observed, mut written) = (HashMap::new(), HashMap::new());
        for (i, op) in ops.iter().enumerate() {
            let s = segs.of[i];
            let note = |map: &mut HashMap<Value, usize>, v: &Value| {
                let e = map.entry(v.clone()).or_insert(s);
                *e = (*e).max(s);
            };
            match (&op.call, &op.outcome) {
                (Call::Read, Outcome::Read(v)) => note(&mut observed, v),
                (Call::Write(v), _) => note(&mut written, &Some(v.clone())),
                (Call::Cas { expected, new }, _) => {
                    note(&mut observed, expected);
                    note(&mut written, &Some(new.clone()));
                }
                _ => {}
            }
        }
        LastUse { observed, written }
    }
    fn observed_after(&self, v: &Value, s: usize) -> bool {
        self.observed.get(v).is_some_and(|&last| last > s)
    }
    fn written_after(&self, v: &Value, s: usize) -> bool {
        self.written.get(v).is_some_and(|&last| last > s)
    }
}

fn check_key(key: &str, ops: &[&Op], max_states: usize) -> KeyReport {
    let segs = cut(ops);
    let uses = LastUse::new(ops, &segs);
    let zobrist = segment::zobrist(ops.len());
    let mut report = KeyReport {
        key: key.to_string(),
        ops: ops.len(),
        segments: segs.members.len(),
        largest_segment: segs.members.iter().map(Vec::len).max().unwrap_or(0),
        states: 0,
        max_configs: 1,
        verdict: KeyVerdict::Linearizable,
    };
    let mut configs = vec![Config::start()];
    for (s, members) in segs.members.iter().enumerate() {
        let watched = |v: &str| uses.observed.get(&Some(v.to_string())).is_some_and(|&last| last >= s);
        let searched = segment::search(ops, members, &configs, &zobrist, &watched, max_states);
        report.states += searched.states;
        let ends = match searched.result {
            Ok(ends) => ends,
            Err(SegmentError::Stuck(detail)) => {
                report.verdict = KeyVerdict::NotLinearizable { segment: s, detail };
                return report;
            }
            Err(SegmentError::Budget) => {
                report.verdict = KeyVerdict::Inconclusive {
                    segment: s,
                    reason: format!("search budget of {max_states} states exhausted"),
                };
                return report;
            }
        };
        configs = prune(ends.into_iter().map(|c| at_cut(c, ops, &uses, s)).collect());
        report.max_configs = report.max_configs.max(configs.len());
        if configs.len() > MAX_CONFIGS {
            report.verdict = KeyVerdict::Inconclusive {
                segment: s,
                reason: format!("{} configurations at its end, over {MAX_CONFIGS}", configs.len()),
            };
            return report;
        }
    }
    report
}

/// Applies the three exact rules of the module's documentation to a configuration at the cut after segment `s`.
fn at_cut(mut c: Config, ops: &[&Op], uses: &LastUse, s: usize) -> Config {
    let carried_values: HashSet<Value> = c.optional.iter().map(|&g| Some(written_value(ops[g]))).collect();
    let reg_value = match &c.reg {
        Reg::Val(v) => Some(v.clone()),
        Reg::Unobserved => None,
    };
    c.optional.retain(|&g| match &ops[g].call {
        Call::Cas { expected, .. } => {
            reg_value.as_ref() == Some(expected) || uses.written_after(expected, s) || carried_values.contains(expected)
        }
        _ => true,
    });
    let expected_by_carried: HashSet<Value> = c
        .optional
        .iter()
        .filter_map(|&g| match &ops[g].call {
            Call::Cas { expected, .. } => Some(expected.clone()),
            _ => None,
        })
        .collect();
    let looked_at = |v: &Value| uses.observed_after(v, s) || expected_by_carried.contains(v);
    let before = c.optional.len();
    c.optional
        .retain(|&g| !matches!(&ops[g].call, Call::Write(v) if !looked_at(&Some(v.clone()))));
    c.unobserved_writes += before - c.optional.len();
    if let Some(v) = reg_value {
        if !looked_at(&v) {
            c.reg = Reg::Unobserved;
        }
    }
    c
}

/// The value an operation writes if it takes effect (a compare-and-swap's new value).
fn written_value(op: &Op) -> String {
    match &op.call {
        Call::Write(v) | Call::Cas { new: v, .. } => v.clone(),
        Call::Read => String::new(),
    }
}

/// Removes duplicates and every configuration another one dominates (same value, a superset of carried operations,
/// at least as many tokens).
fn prune(mut configs: Vec<Config>) -> Vec<Config> {
    configs.sort();
    configs.dedup();
    // Most carried operations first, so a dominating configuration is kept before the ones it dominates.
    configs.sort_by_key(|c| std::cmp::Reverse((c.optional.len(), c.unobserved_writes)));
    let mut kept: Vec<Config> = vec![];
    for c in configs {
        if !kept.iter().any(|k| k.dominates(&c)) {
            kept.push(c);
        }
    }
    kept
}
