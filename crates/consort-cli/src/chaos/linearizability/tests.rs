//! Tests of the checker: known-good and known-bad histories, histories cut into segments (violations that span a
//! cut, unknown operations that take effect segments later), long generated histories, and agreement with a brute
//! force search on thousands of small random histories.

use super::*;
use rand::{Rng, SeedableRng};

const BUDGET: usize = 100_000;
/// The campaign's budget.
const CAMPAIGN_BUDGET: usize = 5_000_000;

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
fn verdict(h: &[Op], budget: usize) -> KeyVerdict {
    let report = check(h, budget);
    assert_eq!(report.keys.len(), 1, "one key");
    report.keys[0].verdict.clone()
}
fn is_bad(v: &KeyVerdict) -> bool {
    matches!(v, KeyVerdict::NotLinearizable { .. })
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
    let report = check(&h, BUDGET);
    assert!(is_bad(&report.keys[0].verdict), "{report}");
    assert!(report.to_string().starts_with("NOT linearizable on key k"), "{report}");
}

#[test]
fn a_lost_write_is_caught() {
    // "b" was acknowledged, yet a later read sees the value from before it.
    let h = [w("a", 0, 1), w("b", 2, 3), r(Some("b"), 4, 5), r(Some("a"), 6, 7)];
    assert!(is_bad(&verdict(&h, BUDGET)));
    let never_written = [w("a", 0, 1), r(Some("z"), 2, 3)];
    assert!(is_bad(&verdict(&never_written, BUDGET)));
}

#[test]
fn a_cas_violation_is_caught() {
    // Two swaps from the same expected value cannot both succeed.
    let h = [
        w("a", 0, 1),
        cas(Some("a"), "b", true, 2, 5),
        cas(Some("a"), "c", true, 3, 6),
    ];
    assert!(is_bad(&verdict(&h, BUDGET)));
    // A swap that reports failure although the expected value was there.
    let h = [w("a", 0, 1), cas(Some("a"), "b", false, 2, 3)];
    assert!(is_bad(&verdict(&h, BUDGET)));
}

#[test]
fn unknown_outcomes_may_or_may_not_have_happened() {
    let happened = [unknown(w("a", 0, 1)), r(Some("a"), 5, 6)];
    assert!(check(&happened, BUDGET).is_linearizable());
    let did_not = [unknown(w("a", 0, 1)), r(None, 5, 6)];
    assert!(check(&did_not, BUDGET).is_linearizable());
    // It cannot have happened before it was invoked.
    let too_early = [r(Some("a"), 0, 1), unknown(w("a", 5, 6))];
    assert!(is_bad(&verdict(&too_early, BUDGET)));
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
    assert!(is_bad(&verdict(&flip, BUDGET)));
    let unknown_read = [w("a", 0, 1), unknown(r(Some("zzz"), 2, 3))];
    assert!(check(&unknown_read, BUDGET).is_linearizable());
}

#[test]
fn keys_are_independent_and_budget_is_reported() {
    let mut h = vec![w("a", 0, 1)];
    h.push(op("other", Call::Write("x".into()), Outcome::Written, 2, 3));
    h.push(r(Some("a"), 4, 5));
    let report = check(&h, BUDGET);
    assert!(report.is_linearizable());
    assert_eq!(report.to_string(), "linearizable (3 operations on 2 keys)");
    assert_eq!(
        report.keys.iter().map(|k| (k.key.as_str(), k.ops)).collect::<Vec<_>>(),
        [("k", 2), ("other", 1)]
    );
    // Many concurrent writes in one segment: its exhaustive search (every subset of them) gives up within its budget.
    let wide: Vec<Op> = (0..16).map(|i| w(&format!("v{i}"), 0, 100)).collect();
    let v = verdict(&wide, 1000);
    assert!(matches!(v, KeyVerdict::Inconclusive { segment: 0, .. }), "{v}");
    assert!(check(&wide, CAMPAIGN_BUDGET).is_linearizable());
}

/// The shape that exhausted the budget in a long campaign: a slow operation overlapping 150 others (a paused node
/// answers seconds later), while unknown writes from earlier timeouts are still pending, a few of them read later.
#[test]
fn a_slow_operation_among_many_with_pending_unknown_writes_stays_cheap() {
    let mut h: Vec<Op> = (0..20).map(|i| unknown(w(&format!("lost{i}"), i, i + 1))).collect();
    h.extend((0..3).map(|i| unknown(w(&format!("late{i}"), 30 + i, 31 + i))));
    h.push(r(None, 40, 41));
    h.push(w("slow", 50, 100_000)); // takes effect at 50_000
    let mut state = None;
    for n in 0..150u64 {
        let t = 100 + n * 600;
        if t > 50_000 && t < 50_600 {
            state = Some("slow".to_string());
        }
        if n % 50 == 49 {
            state = Some(format!("late{}", n / 50));
        }
        let o = match n % 3 {
            0 => {
                state = Some(format!("x{n}"));
                w(&format!("x{n}"), t, t + 10)
            }
            1 => r(state.as_deref(), t, t + 10),
            _ => cas(Some("nope"), "y", false, t, t + 10),
        };
        h.push(o);
    }
    let report = check(&h, CAMPAIGN_BUDGET);
    let k = &report.keys[0];
    assert!(report.is_linearizable(), "{report}");
    assert!(k.states < 100_000, "{k}");
}

#[test]
fn the_history_is_cut_where_nothing_is_pending() {
    let h = [
        w("a", 0, 10),
        r(Some("a"), 5, 12), // overlaps the write: same segment
        unknown(w("b", 11, 0)),
        r(Some("a"), 13, 14), // the unknown write is still pending, yet the history is cut here
        w("c", 20, 30),
        r(Some("c"), 25, 26),
    ];
    let ops: Vec<&Op> = h.iter().collect();
    let segs = cut(&ops);
    assert_eq!(segs.members, vec![vec![0, 1, 2], vec![3], vec![4, 5]]);
    let report = check(&h, BUDGET);
    assert_eq!(report.keys[0].segments, 3);
    assert_eq!(report.keys[0].largest_segment, 3);
    assert!(report.is_linearizable(), "{report}");
}

#[test]
fn violations_spanning_a_cut_are_still_caught() {
    // Each operation is its own segment.
    let stale = [w("a", 0, 1), w("b", 2, 3), r(Some("a"), 4, 5)];
    assert_eq!(check(&stale, BUDGET).keys[0].segments, 3);
    assert!(is_bad(&verdict(&stale, BUDGET)));
    let double_swap = [
        w("a", 0, 1),
        cas(Some("a"), "b", true, 2, 3),
        cas(Some("a"), "c", true, 4, 5),
    ];
    assert!(is_bad(&verdict(&double_swap, BUDGET)));
    // An unknown write, seen, cannot be undone in a later segment.
    let undone = [
        w("a", 0, 1),
        unknown(w("b", 2, 3)),
        r(Some("b"), 10, 11),
        r(Some("a"), 20, 21),
    ];
    assert!(is_bad(&verdict(&undone, BUDGET)));
    // An unknown write takes effect once: its value cannot come back after a later write was seen.
    let twice = [
        unknown(w("b", 0, 1)),
        r(Some("b"), 10, 11),
        w("c", 20, 21),
        r(Some("b"), 30, 31),
    ];
    assert!(is_bad(&verdict(&twice, BUDGET)));
    // The failure names the segment where the search got stuck (the unknown write opens segment 0 with the first
    // read, the write of "c" is segment 1).
    let v = verdict(&twice, BUDGET);
    assert!(matches!(v, KeyVerdict::NotLinearizable { segment: 2, .. }), "{v}");
}

#[test]
fn an_unknown_write_may_take_effect_segments_later() {
    let h = [
        unknown(w("late", 0, 1)),
        r(None, 2, 3),
        w("a", 10, 11),
        r(Some("a"), 20, 21),
        r(Some("late"), 1000, 1001),
        r(Some("late"), 1010, 1011),
    ];
    let report = check(&h, BUDGET);
    assert_eq!(report.keys[0].segments, 5);
    assert!(report.is_linearizable(), "{report}");
    // The same with a compare-and-swap that can only fire once "a" is there.
    let h = [
        unknown(cas(Some("a"), "late", true, 0, 1)),
        r(None, 2, 3),
        w("a", 10, 11),
        r(Some("a"), 20, 21),
        r(Some("late"), 1000, 1001),
    ];
    assert!(check(&h, BUDGET).is_linearizable());
    // ...but not before "a" was written: "late" read while the register is still absent is impossible.
    let h = [
        unknown(cas(Some("a"), "late", true, 0, 1)),
        r(Some("late"), 2, 3),
        w("a", 10, 11),
    ];
    assert!(is_bad(&verdict(&h, BUDGET)));
}

#[test]
fn an_unobserved_unknown_write_can_explain_a_failed_swap_once() {
    // Nobody reads "v", but its write may have happened: then the swap from "a" fails, and a later read of "a"
    // would be impossible.
    let good = [
        w("a", 0, 1),
        unknown(w("v", 2, 3)),
        cas(Some("a"), "b", false, 10, 11),
        w("c", 20, 21),
        r(Some("c"), 30, 31),
    ];
    let report = check(&good, BUDGET);
    assert!(report.is_linearizable(), "{report}");
    let read_back = [
        w("a", 0, 1),
        unknown(w("v", 2, 3)),
        cas(Some("a"), "b", false, 10, 11),
        r(Some("a"), 20, 21),
    ];
    assert!(is_bad(&verdict(&read_back, BUDGET)));
    // Two failed swaps need two such writes.
    let two = [
        w("a", 0, 1),
        unknown(w("v", 2, 3)),
        cas(Some("a"), "b", false, 10, 11),
        w("a2", 20, 21),
        cas(Some("a2"), "b", false, 30, 31),
    ];
    assert!(is_bad(&verdict(&two, BUDGET)));
    let mut two_unknown = two.to_vec();
    two_unknown.push(unknown(w("u", 4, 5)));
    assert!(check(&two_unknown, BUDGET).is_linearizable());
}

/// A history of `bursts` groups of 1-4 concurrent operations, with quiet time between groups, made by a real
/// register: each operation takes effect at a point inside its interval. About 1 in 200 is unknown: of those,
/// half never took effect, and some writes take effect (and are read) up to 50 bursts after they were invoked.
/// Returns the history and each operation's burst.
fn simulated(seed: u64, bursts: u64) -> (Vec<Op>, Vec<u64>) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut state: Value = None;
    let (mut history, mut burst_of) = (vec![], vec![]);
    let mut late: Vec<(u64, String)> = vec![];
    let mut n = 0u64;
    for b in 0..bursts {
        let base = b * 100;
        if let Some(pos) = late.iter().position(|(at, _)| *at == b) {
            let (_, v) = late.swap_remove(pos);
            state = Some(v);
            history.push(r(state.as_deref(), base, base + 1));
            burst_of.push(b);
        }
        let size = rng.gen_range(1..=4u64);
        for p in 0..size {
            n += 1;
            let point = base + 10 + p * 10;
            let (invoke, ret) = (point - rng.gen_range(0..10), point + rng.gen_range(1..30));
            let value = format!("v{n}");
            let lost = rng.gen_ratio(1, 200);
            let o = match rng.gen_range(0..3) {
                0 if lost && rng.gen_bool(0.5) => {
                    late.push((b + rng.gen_range(1..50), value.clone()));
                    w(&value, invoke, ret)
                }
                0 => {
                    if !lost || rng.gen_bool(0.5) {
                        state = Some(value.clone());
                    }
                    w(&value, invoke, ret)
                }
                1 => r(state.as_deref(), invoke, ret),
                _ => {
                    let expected = if rng.gen_bool(0.5) {
                        state.clone()
                    } else {
                        Some("x".into())
                    };
                    let swapped = expected == state && (!lost || rng.gen_bool(0.5));
                    if swapped {
                        state = Some(value.clone());
                    }
                    cas(expected.as_deref(), &value, swapped, invoke, ret)
                }
            };
            let o = if lost && o.call != Call::Read { unknown(o) } else { o };
            history.push(o);
            burst_of.push(b);
        }
    }
    (history, burst_of)
}

#[test]
fn a_long_simulated_history_checks_within_the_budget() {
    let (history, _) = simulated(7, 80_000);
    assert!(history.len() >= 200_000, "{} operations", history.len());
    let report = check(&history, CAMPAIGN_BUDGET);
    let k = &report.keys[0];
    assert!(report.is_linearizable(), "{report}");
    assert!(k.segments > 70_000, "cut at quiet times: {k}");
    assert!(k.largest_segment < 100, "{k}");
    assert!(k.states < CAMPAIGN_BUDGET, "{k}");
}

#[test]
fn a_long_simulated_history_with_one_stale_read_is_rejected() {
    let (mut history, burst) = simulated(8, 20_000);
    // A read that returns the value of a write which a later completed write, in a later burst, overwrote.
    let known_write = |i: usize| matches!(history[i].call, Call::Write(_)) && history[i].outcome == Outcome::Written;
    let old = (0..history.len())
        .find(|&i| burst[i] > 100 && known_write(i))
        .expect("a write");
    let newer = (old..history.len())
        .find(|&j| burst[j] > burst[old] && known_write(j))
        .expect("a later write");
    let read = (newer..history.len())
        .find(|&k| burst[k] > burst[newer] + 1000 && matches!(history[k].outcome, Outcome::Read(_)))
        .expect("a later read");
    let Call::Write(v) = history[old].call.clone() else {
        unreachable!()
    };
    assert!(check(&history, CAMPAIGN_BUDGET).is_linearizable());
    history[read].outcome = Outcome::Read(Some(v));
    let v = verdict(&history, CAMPAIGN_BUDGET);
    assert!(is_bad(&v), "{v}");
    // And a read of a value never written.
    let (mut history, _) = simulated(9, 20_000);
    let last_read = history
        .iter()
        .rposition(|o| matches!(o.outcome, Outcome::Read(_)))
        .expect("a read");
    history[last_read].outcome = Outcome::Read(Some("bogus".into()));
    assert!(is_bad(&verdict(&history, CAMPAIGN_BUDGET)));
}

/// Whether some order of `ops` (one key) respects real time and the register, every known operation placed and
/// each unknown one placed or not: a plain search without cuts or memo.
fn brute_force(ops: &[Op]) -> bool {
    let ops: Vec<&Op> = ops
        .iter()
        .filter(|o| !(o.call == Call::Read && o.outcome == Outcome::Unknown))
        .collect();
    fn go(ops: &[&Op], placed: u32, state: &segment::Reg) -> bool {
        let known_left = (0..ops.len()).any(|i| placed & (1 << i) == 0 && ops[i].outcome != Outcome::Unknown);
        if !known_left {
            return true;
        }
        (0..ops.len()).filter(|&i| placed & (1 << i) == 0).any(|i| {
            let blocked = (0..ops.len()).any(|j| j != i && placed & (1 << j) == 0 && ret_time(ops[j]) < ops[i].invoke);
            !blocked && segment::step(state, ops[i]).is_some_and(|next| go(ops, placed | (1 << i), &next))
        })
    }
    go(&ops, 0, &segment::Reg::Val(None))
}

/// A small random history: from a real register (linearizable) or with random outcomes (mostly not), values from a
/// small set so that values repeat, and quiet gaps so that it is cut.
fn small_random(rng: &mut rand_chacha::ChaCha8Rng) -> Vec<Op> {
    let honest = rng.gen_bool(0.5);
    let values = ["a", "b", "c"];
    let mut state: Value = None;
    let mut t = 0u64;
    let mut out = vec![];
    for _ in 0..rng.gen_range(1..=7) {
        t += rng.gen_range(0..6);
        let (invoke, ret) = (t, t + rng.gen_range(1..8));
        let v = values[rng.gen_range(0..3)];
        let mut o = match rng.gen_range(0..3) {
            0 => w(v, invoke, ret),
            1 => r(if rng.gen_bool(0.2) { None } else { Some(v) }, invoke, ret),
            _ => {
                let e = if rng.gen_bool(0.3) {
                    None
                } else {
                    Some(values[rng.gen_range(0..3)])
                };
                cas(e, v, rng.gen_bool(0.5), invoke, ret)
            }
        };
        if honest {
            // Outcomes as a register taking each operation at its invocation would give.
            let next = match &o.call {
                Call::Write(v) => Some(v.clone()),
                Call::Read => {
                    o.outcome = Outcome::Read(state.clone());
                    state.clone()
                }
                Call::Cas { expected, new } => {
                    o.outcome = Outcome::Cas(*expected == state);
                    if *expected == state {
                        Some(new.clone())
                    } else {
                        state.clone()
                    }
                }
            };
            state = next;
        }
        if rng.gen_ratio(1, 4) {
            o = unknown(o);
        }
        out.push(o);
    }
    out
}

#[test]
fn the_cut_search_agrees_with_a_brute_force_search() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let (mut good, mut bad, mut cut_histories) = (0, 0, 0);
    for _ in 0..5000 {
        let h = small_random(&mut rng);
        let report = check(&h, BUDGET);
        let expected = brute_force(&h);
        assert_eq!(report.is_linearizable(), expected, "{h:#?}\n{report}");
        if expected {
            good += 1
        } else {
            bad += 1
        }
        if report.keys.first().is_some_and(|k| k.segments > 1) {
            cut_histories += 1;
        }
    }
    assert!(
        good > 1000 && bad > 1000 && cut_histories > 1000,
        "{good} good, {bad} bad, {cut_histories} cut"
    );
}

/// Requests refused during a fault (5xx) are unknown writes that never took effect and that nobody reads; with a
/// slow operation holding the segment open, failed swaps that overlap a write could each be explained by any of
/// them, which must not multiply the search by their number.
#[test]
fn many_refused_writes_in_one_segment_stay_cheap() {
    let mut h: Vec<Op> = (0..200).map(|i| unknown(w(&format!("refused{i}"), i, i + 1))).collect();
    h.push(cas(Some("never"), "z", false, 300, 100_000)); // slow: spans the whole segment
    let mut prev = None::<String>;
    for n in 0..50u64 {
        let t = 1000 + n * 900;
        let x = format!("x{n}");
        // The write takes effect first, so the overlapping swap from the old value fails.
        h.push(w(&x, t, t + 50));
        h.push(cas(prev.as_deref(), &format!("y{n}"), false, t + 10, t + 60));
        h.push(r(Some(&x), t + 100, t + 110));
        prev = Some(x);
    }
    let report = check(&h, CAMPAIGN_BUDGET);
    let k = &report.keys[0];
    assert!(report.is_linearizable(), "{report}");
    assert_eq!(k.segments, 1, "{k}");
    assert!(k.states < 200_000, "{k}");
    // A refused write may still have taken effect late, but then the value before it cannot come back.
    h.push(r(Some("refused7"), 95_000, 95_010));
    assert!(check(&h, CAMPAIGN_BUDGET).is_linearizable());
    h.push(r(Some("x49"), 96_000, 96_010));
    assert!(is_bad(&verdict(&h, CAMPAIGN_BUDGET)));
}
