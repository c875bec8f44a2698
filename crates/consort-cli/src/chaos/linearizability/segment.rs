//! The exhaustive search of one segment of a key's history: from each configuration the previous segment can end
//! in, every configuration this one can end in (Wing and Gong's search, with a memo of visited states).

use super::{ret_time, Call, Op, Outcome, Value};
use std::collections::HashSet;

/// The register as the search sees it: a value, or a value that no later operation looks at.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reg {
    Val(Value),
    /// Equal to no value any later operation reads or expects.
    Unobserved,
}

/// Where the history may stand at a cut.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Config {
    pub reg: Reg,
    /// Unknown operations invoked so far and not linearized, as indices into the key's operations, ascending.
    pub optional: Vec<usize>,
    /// Unknown writes whose value nobody looks at any more, each of which may still make the register
    /// [`Reg::Unobserved`] once.
    pub unobserved_writes: usize,
}

impl Config {
    pub fn start() -> Self {
        Config {
            reg: Reg::Val(None),
            optional: vec![],
            unobserved_writes: 0,
        }
    }

    /// Everything `other` can still do, `self` can too.
    pub fn dominates(&self, other: &Config) -> bool {
        self.reg == other.reg
            && self.unobserved_writes >= other.unobserved_writes
            && other.optional.iter().all(|g| self.optional.binary_search(g).is_ok())
    }
}

/// Why a segment has no end configuration.
#[derive(Debug)]
pub enum SegmentError {
    /// No order explains it: where the search got furthest.
    Stuck(String),
    Budget,
}

/// A segment's end configurations (or why there are none) and the states visited.
pub struct Searched {
    pub states: usize,
    pub result: Result<Vec<Config>, SegmentError>,
}

/// A random 128-bit word per operation of the key: a linearized set is keyed by the XOR of its members' words.
pub fn zobrist(n: usize) -> Vec<u128> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(n as u64);
    (0..n).map(|_| rng.gen()).collect()
}

/// The register model: the state after `op` runs on `state`, or None if `op`'s outcome is impossible there.
pub fn step(state: &Reg, op: &Op) -> Option<Reg> {
    let is = |v: &Value| matches!(state, Reg::Val(s) if s == v);
    match (&op.call, &op.outcome) {
        (Call::Write(v), Outcome::Written | Outcome::Unknown) => Some(Reg::Val(Some(v.clone()))),
        (Call::Read, Outcome::Read(seen)) => is(seen).then(|| state.clone()),
        (Call::Read, Outcome::Unknown) => Some(state.clone()),
        (Call::Cas { expected, new }, Outcome::Cas(true)) => is(expected).then(|| Reg::Val(Some(new.clone()))),
        (Call::Cas { expected, .. }, Outcome::Cas(false)) => (!is(expected)).then(|| state.clone()),
        (Call::Cas { expected, new }, Outcome::Unknown) => Some(if is(expected) {
            Reg::Val(Some(new.clone()))
        } else {
            state.clone()
        }),
        _ => None,
    }
}

/// Searches the segment made of `members` (indices into `ops`) from each of `starts`.
/// `watched` says whether an operation of this segment or a later one looks at a value.
pub fn search(
    ops: &[&Op],
    members: &[usize],
    starts: &[Config],
    zobrist: &[u128],
    watched: &dyn Fn(&str) -> bool,
    max_states: usize,
) -> Searched {
    let mut ends: HashSet<Config> = HashSet::new();
    let mut states = 0;
    let mut deepest = Deepest::default();
    for start in starts {
        let mut local: Vec<usize> = start.optional.iter().chain(members).copied().collect();
        local.sort_by_key(|&g| (ops[g].invoke, ret_time(ops[g]), g));
        let mut run = Run::new(ops, local, zobrist, watched);
        let outcome = run.explore(start, max_states.saturating_sub(states), &mut ends);
        states += run.seen.len();
        if run.deepest.linearized > deepest.linearized || deepest.reg.is_none() {
            deepest = std::mem::take(&mut run.deepest);
        }
        if outcome.is_err() {
            return Searched {
                states,
                result: Err(SegmentError::Budget),
            };
        }
    }
    let result = if ends.is_empty() {
        Err(SegmentError::Stuck(describe(ops, &deepest)))
    } else {
        Ok(ends.into_iter().collect())
    };
    Searched { states, result }
}

/// A step of the search: linearize a pending operation, or spend an unobserved-write token.
#[derive(Debug, Clone, Copy)]
enum Move {
    Op(usize),
    Unobserve,
}

/// One level of the search: the moves from here, the next to try, the state here and the move that led here.
struct Frame {
    moves: Vec<Move>,
    next: usize,
    reg: Reg,
    tokens: usize,
    via: Option<Move>,
}

/// Where the search got furthest, for the report: known operations linearized, the register, and the operations
/// that could not come next (indices into the key's operations).
#[derive(Default)]
struct Deepest {
    linearized: usize,
    reg: Option<Reg>,
    stuck: Vec<usize>,
    known: usize,
}

/// The operations not yet linearized, in invocation order, as a doubly linked list over local indices: unlinking and
/// relinking in reverse order is O(1), so the search never rescans the operations it already placed.
struct Pending {
    next: Vec<usize>,
    prev: Vec<usize>,
}

/// End of the list; index `n` is its head.
const END: usize = usize::MAX;

impl Pending {
    fn new(n: usize) -> Self {
        let mut next: Vec<usize> = (1..=n).collect();
        if let Some(last) = next.last_mut() {
            *last = END;
        }
        next.push(if n > 0 { 0 } else { END });
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
    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        let head = self.next[self.next.len() - 1];
        std::iter::successors((head != END).then_some(head), |&i| {
            let nx = self.next[i];
            (nx != END).then_some(nx)
        })
    }
}

/// The search of one segment from one start.
struct Run<'a> {
    ops: &'a [&'a Op],
    /// Local index to index into `ops`, sorted by invocation.
    local: Vec<usize>,
    zobrist: &'a [u128],
    watched: &'a dyn Fn(&str) -> bool,
    pending: Pending,
    bits: u128,
    /// Known operations not yet linearized: the segment ends when none is left.
    known_left: usize,
    seen: HashSet<(u128, Reg, usize)>,
    deepest: Deepest,
}

impl<'a> Run<'a> {
    fn new(ops: &'a [&'a Op], local: Vec<usize>, zobrist: &'a [u128], watched: &'a dyn Fn(&str) -> bool) -> Self {
        let known_left = local.iter().filter(|&&g| ops[g].outcome != Outcome::Unknown).count();
        Run {
            pending: Pending::new(local.len()),
            ops,
            local,
            zobrist,
            watched,
            bits: 0,
            known_left,
            seen: HashSet::new(),
            deepest: Deepest::default(),
        }
    }

    fn op(&self, i: usize) -> &'a Op {
        self.ops[self.local[i]]
    }

    /// The moves from a state: each pending known operation invoked no later than the earliest response of a pending
    /// one; each such unknown operation, and a token, only where it can matter (see [`useful`]).
    fn moves(&self, reg: &Reg, tokens: usize) -> Vec<Move> {
        let mut candidates = vec![];
        let mut min_ret = u64::MAX;
        for i in self.pending.iter() {
            let op = self.op(i);
            if op.invoke > min_ret {
                break;
            }
            candidates.push(i);
            min_ret = min_ret.min(ret_time(op));
        }
        let next: Vec<&Op> = candidates.iter().map(|&i| self.op(i)).collect();
        let clears = destroyer_needed(reg, &next);
        let looked_at: HashSet<&str> = next.iter().filter_map(|o| looks_at(o)).collect();
        let mut out = vec![];
        // Unknown writes whose value nobody looks at any more are interchangeable when all they do is clear the
        // register (and a token is one of them): offering one of them is enough.
        let mut interchangeable_offered = false;
        if tokens > 0 && clears {
            out.push(Move::Unobserve);
            interchangeable_offered = true;
        }
        for &i in &candidates {
            let op = self.op(i);
            let offer = match (op.outcome == Outcome::Unknown).then(|| useful(op, reg, clears, &looked_at)) {
                None | Some(Use::Observed) => true,
                Some(Use::None) => false,
                Some(Use::Clears(new)) if (self.watched)(new) => true,
                Some(Use::Clears(_)) => !std::mem::replace(&mut interchangeable_offered, true),
            };
            if offer {
                out.push(Move::Op(i));
            }
        }
        out
    }

    /// Applies `m` from (`reg`, `tokens`) if possible and not visited yet; the new state.
    fn apply(&mut self, m: Move, reg: &Reg, tokens: usize) -> Option<(Reg, usize)> {
        let (next, tokens, bits) = match m {
            Move::Op(i) => (step(reg, self.op(i))?, tokens, self.bits ^ self.zobrist[self.local[i]]),
            Move::Unobserve => (Reg::Unobserved, tokens - 1, self.bits),
        };
        if !self.seen.insert((bits, next.clone(), tokens)) {
            return None;
        }
        self.bits = bits;
        if let Move::Op(i) = m {
            self.pending.unlink(i);
            if self.op(i).outcome != Outcome::Unknown {
                self.known_left -= 1;
            }
        }
        Some((next, tokens))
    }

    fn undo(&mut self, m: Move) {
        if let Move::Op(i) = m {
            self.pending.relink(i);
            self.bits ^= self.zobrist[self.local[i]];
            if self.op(i).outcome != Outcome::Unknown {
                self.known_left += 1;
            }
        }
    }

    /// Every configuration in which all known operations are linearized, into `ends`; Err if the budget ran out.
    fn explore(&mut self, start: &Config, max_states: usize, ends: &mut HashSet<Config>) -> Result<(), ()> {
        let total_known = self.known_left;
        let root = Frame {
            moves: self.moves(&start.reg, start.unobserved_writes),
            next: 0,
            reg: start.reg.clone(),
            tokens: start.unobserved_writes,
            via: None,
        };
        let mut stack = vec![root];
        if self.known_left == 0 {
            ends.insert(start.clone());
            return Ok(());
        }
        while let Some(top) = stack.last_mut() {
            if top.next == top.moves.len() {
                let via = top.via;
                let linearized = total_known - self.known_left;
                if linearized > self.deepest.linearized || self.deepest.reg.is_none() {
                    let stuck = top.moves.iter().filter_map(|m| match m {
                        Move::Op(i) => Some(self.local[*i]),
                        Move::Unobserve => None,
                    });
                    self.deepest = Deepest {
                        linearized,
                        reg: Some(top.reg.clone()),
                        stuck: stuck.take(8).collect(),
                        known: total_known,
                    };
                }
                stack.pop();
                if let Some(m) = via {
                    self.undo(m);
                }
                continue;
            }
            let m = top.moves[top.next];
            top.next += 1;
            let (reg, tokens) = (top.reg.clone(), top.tokens);
            let Some((next, tokens)) = self.apply(m, &reg, tokens) else {
                continue;
            };
            if self.seen.len() > max_states {
                return Err(());
            }
            if self.known_left == 0 {
                ends.insert(self.end(next, tokens));
                self.undo(m);
                continue;
            }
            let moves = self.moves(&next, tokens);
            stack.push(Frame {
                moves,
                next: 0,
                reg: next,
                tokens,
                via: Some(m),
            });
        }
        Ok(())
    }

    /// The configuration once every known operation is linearized: the unknown ones still pending are carried.
    fn end(&self, reg: Reg, tokens: usize) -> Config {
        let mut optional: Vec<usize> = self.pending.iter().map(|i| self.local[i]).collect();
        optional.sort_unstable();
        Config {
            reg,
            optional,
            unobserved_writes: tokens,
        }
    }
}

/// Whether a known failed compare-and-swap among `next` expects the register's current value: only an unknown
/// write (or a token) placed first can explain it.
fn destroyer_needed(reg: &Reg, next: &[&Op]) -> bool {
    next.iter().any(|op| {
        matches!((&op.call, &op.outcome), (Call::Cas { expected, .. }, Outcome::Cas(false)) if *reg == Reg::Val(expected.clone()))
    })
}

/// Whether placing the unknown operation `op` now can matter: it changes the register, and a candidate in `next`
/// looks at the new value or needs the current one gone. Otherwise it can be moved past the next operation without
/// changing anything, or dropped (left pending, which covers more), so the search need not place it here: a
/// partial-order reduction that keeps the set of end configurations the same up to domination.
fn useful<'o>(op: &'o Op, reg: &Reg, clears: bool, looked_at: &HashSet<&str>) -> Use<'o> {
    let new = match &op.call {
        Call::Write(v) => v,
        Call::Cas { expected, new } if *reg == Reg::Val(expected.clone()) => new,
        _ => return Use::None,
    };
    if looked_at.contains(new.as_str()) {
        Use::Observed
    } else if clears {
        Use::Clears(new)
    } else {
        Use::None
    }
}

/// The value an operation looks at: what a read returned, what a compare-and-swap expects.
fn looks_at(op: &Op) -> Option<&str> {
    match (&op.call, &op.outcome) {
        (Call::Read, Outcome::Read(Some(seen))) => Some(seen),
        (Call::Cas { expected: Some(e), .. }, _) => Some(e),
        _ => None,
    }
}

/// What placing an unknown operation now can do: give a candidate the value it looks at, clear the register (setting
/// it to this new value) for a failed compare-and-swap, or nothing.
enum Use<'o> {
    Observed,
    Clears(&'o str),
    None,
}

/// Says where the search got furthest.
fn describe(ops: &[&Op], deepest: &Deepest) -> String {
    let stuck: Vec<String> = deepest
        .stuck
        .iter()
        .map(|&g| {
            let op = ops[g];
            format!("{:?} -> {:?} [{}..{}]", op.call, op.outcome, op.invoke, op.ret)
        })
        .collect();
    format!(
        "{} of its {} known operations linearize at most; then the register is {:?} and none of these can come \
         next: {}",
        deepest.linearized,
        deepest.known,
        deepest.reg,
        stuck.join("; ")
    )
}
