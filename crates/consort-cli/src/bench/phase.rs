//! Running a phase: `connections × window` workers take request numbers from one counter, pace them if asked,
//! send them and count what came back; the progress line; and the SmallBank verification's balance reads.

use super::connection::{etcd_revision, send, Applied, Outcome, Slot};
use super::workload::{Call, Effect, Generator, Op, Rng};
use super::{BenchError, PROGRESS_EVERY, VERIFY_ATTEMPTS};
use consort_node::engine::TxId;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Counters the progress line reads while a phase runs.
#[derive(Debug, Default)]
pub(super) struct Live {
    sent: AtomicU64,
    acked: AtomicU64,
    errors: AtomicU64,
    /// Commit point seqno as last seen by the commit poller.
    pub(super) commit_seqno: AtomicU64,
}

/// What a phase's workers observed.
#[derive(Debug, Default)]
pub(super) struct Stats {
    pub(super) sent: u64,
    pub(super) ok: u64,
    pub(super) ok_writes: u64,
    pub(super) rejected: u64,
    pub(super) ack_latency: Vec<Duration>,
    pub(super) errors: BTreeMap<String, u64>,
    pub(super) ops: BTreeMap<&'static str, u64>,
    /// Sum of the flows of the successful requests.
    pub(super) flow: i128,
    /// Requests with a non-zero flow whose outcome is unknown (timeouts, connection errors, 5xx).
    pub(super) unknown_flows: u64,
    /// The highest TxID of an acknowledged write.
    pub(super) last_write: Option<TxId>,
    /// etcd: the highest revision an acknowledged put reported.
    pub(super) last_revision: Option<u64>,
    /// When the last response arrived.
    pub(super) last_ack: Option<Instant>,
}

impl Stats {
    fn merge(&mut self, o: Stats) {
        self.sent += o.sent;
        self.ok += o.ok;
        self.ok_writes += o.ok_writes;
        self.rejected += o.rejected;
        self.ack_latency.extend(o.ack_latency);
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for (k, v) in o.ops {
            *self.ops.entry(k).or_default() += v;
        }
        self.flow += o.flow;
        self.unknown_flows += o.unknown_flows;
        self.last_write = self.last_write.max(o.last_write);
        self.last_revision = self.last_revision.max(o.last_revision);
        self.last_ack = self.last_ack.max(o.last_ack);
    }

    pub(super) fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub(super) fn error_kinds(&self) -> String {
        self.errors
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Counts a definite answer (success or business refusal) that arrived at `now` for a request due at `t0`.
    fn answered(&mut self, op: Op, t0: Instant, now: Instant) {
        self.ack_latency.push(now.saturating_duration_since(t0));
        self.last_ack = self.last_ack.max(Some(now));
        *self.ops.entry(op.name()).or_default() += 1;
    }
}

/// When a phase stops and how fast it sends.
#[derive(Debug, Clone, Copy)]
pub(super) struct Plan {
    pub(super) total: Option<u64>,
    pub(super) until: Option<Duration>,
    pub(super) rate: Option<f64>,
}

/// A commit-latency sample: when the write was sent and the TxID it got.
#[derive(Debug)]
pub(super) struct Sample {
    pub(super) sent: Instant,
    pub(super) txid: TxId,
}

/// Where the workers send every `every`th acknowledged write (0: none) for the commit poller to time.
#[derive(Debug, Clone)]
pub(super) struct Sampler {
    pub(super) every: u64,
    pub(super) samples: mpsc::UnboundedSender<Sample>,
}

/// One phase to run over the shared connections.
pub(super) struct Phase<'a> {
    pub(super) slots: &'a [Arc<Slot>],
    pub(super) window: usize,
    pub(super) generator: Arc<Generator>,
    pub(super) plan: Plan,
    pub(super) timeout: Duration,
    pub(super) seed: u64,
    pub(super) live: Arc<Live>,
    pub(super) sampler: Option<Sampler>,
}

impl Phase<'_> {
    /// Runs `connections × window` workers until the plan says stop; returns the merged stats and the start time.
    pub(super) async fn run(self) -> Result<(Stats, Instant), BenchError> {
        let next = Arc::new(AtomicU64::new(0));
        let writes = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for (c, slot) in self.slots.iter().enumerate() {
            for w in 0..self.window {
                let worker = Worker {
                    index: c * self.window + w,
                    slot: slot.clone(),
                    next: next.clone(),
                    writes: writes.clone(),
                    live: self.live.clone(),
                    generator: self.generator.clone(),
                    sampler: self.sampler.clone(),
                    rng: Rng(self.seed ^ ((c * self.window + w) as u64).wrapping_mul(0xa076_1d64_78bd_642f)),
                    plan: self.plan,
                    timeout: self.timeout,
                    started,
                    stats: Stats::default(),
                };
                tasks.spawn(worker.run());
            }
        }
        // The workers hold the only senders left, so the poller sees the channel close when they are done.
        drop(self.sampler);
        let mut stats = Stats::default();
        while let Some(r) = tasks.join_next().await {
            stats.merge(r?);
        }
        Ok((stats, started))
    }
}

/// One of a phase's request loops: one request in flight at a time on its connection.
struct Worker {
    /// This worker's index among the phase's `connections × window`.
    index: usize,
    slot: Arc<Slot>,
    /// The phase's next request number, shared by its workers.
    next: Arc<AtomicU64>,
    /// Acknowledged writes so far in the phase, shared, for sampling every Nth.
    writes: Arc<AtomicU64>,
    live: Arc<Live>,
    generator: Arc<Generator>,
    sampler: Option<Sampler>,
    rng: Rng,
    plan: Plan,
    timeout: Duration,
    started: Instant,
    stats: Stats,
}

impl Worker {
    async fn run(mut self) -> Stats {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if self.plan.total.is_some_and(|n| i >= n) {
                break;
            }
            let due = self
                .plan
                .rate
                .map(|r| self.started + Duration::from_secs_f64(i as f64 / r));
            if let Some(due) = due {
                if self.plan.until.is_some_and(|u| due >= self.started + u) {
                    break;
                }
                tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
            }
            if self.plan.until.is_some_and(|u| self.started.elapsed() >= u) {
                break;
            }
            let call = (self.generator)(i, self.index, &mut self.rng);
            // Paced: latency counts from the scheduled time, so waiting for the window is not hidden.
            let t0 = due.unwrap_or_else(Instant::now);
            self.stats.sent += 1;
            self.live.sent.fetch_add(1, Ordering::Relaxed);
            let outcome = send(&self.slot, &call, self.timeout).await;
            self.record(&call, t0, outcome);
        }
        self.stats
    }

    /// Counts the outcome of `call`, sent (or due) at `t0`.
    fn record(&mut self, call: &Call, t0: Instant, outcome: Outcome) {
        let now = Instant::now();
        let st = &mut self.stats;
        match outcome {
            Outcome::Ok(txid, reply) => {
                self.live.acked.fetch_add(1, Ordering::Relaxed);
                st.ok += 1;
                st.answered(call.op, t0, now);
                st.flow += i128::from(call.flow);
                match (call.effect, txid) {
                    (Effect::WriteCommittedOnAck, _) => {
                        st.ok_writes += 1;
                        let revision = etcd_revision(&reply);
                        st.last_revision = st.last_revision.max(revision);
                        if let Some(r) = revision {
                            self.live.commit_seqno.fetch_max(r, Ordering::Relaxed);
                        }
                    }
                    (Effect::Write, Some(txid)) => {
                        st.ok_writes += 1;
                        st.last_write = st.last_write.max(Some(txid));
                        let n = self.writes.fetch_add(1, Ordering::Relaxed);
                        if let Some(sampler) = &self.sampler {
                            if sampler.every > 0 && n.is_multiple_of(sampler.every) {
                                let _ = sampler.samples.send(Sample { sent: t0, txid });
                            }
                        }
                    }
                    (Effect::Write, None) | (Effect::Read, _) => {}
                }
            }
            Outcome::Rejected => {
                self.live.acked.fetch_add(1, Ordering::Relaxed);
                st.rejected += 1;
                st.answered(call.op, t0, now);
            }
            Outcome::Error { kind, applied } => {
                self.live.errors.fetch_add(1, Ordering::Relaxed);
                *st.errors.entry(kind).or_default() += 1;
                if call.flow != 0 && applied == Applied::Unknown {
                    st.unknown_flows += 1;
                }
            }
        }
    }
}

/// Prints a progress line to stderr every [`PROGRESS_EVERY`] until aborted; `commit_label` names what
/// `live.commit_seqno` holds (Consort's commit seqno, or etcd's latest revision).
pub(super) fn spawn_progress(
    phase: &'static str,
    commit_label: &'static str,
    live: Arc<Live>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let started = Instant::now();
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        tick.tick().await;
        let mut last_acked = 0;
        loop {
            tick.tick().await;
            let acked = live.acked.load(Ordering::Relaxed);
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "bench {phase} {secs:6.1}s  sent {}  acked {acked}  errors {}  {:.0} tx/s (last {:.0}s)  {:.0} tx/s (avg)  {commit_label} {}",
                live.sent.load(Ordering::Relaxed),
                live.errors.load(Ordering::Relaxed),
                (acked - last_acked) as f64 / PROGRESS_EVERY.as_secs_f64(),
                PROGRESS_EVERY.as_secs_f64(),
                acked as f64 / secs,
                live.commit_seqno.load(Ordering::Relaxed),
            );
            last_acked = acked;
        }
    })
}

/// Sums the balances of accounts `base..base + n` (after the load, so nothing changes meanwhile).
pub(super) async fn sum_balances(
    slots: &[Arc<Slot>],
    window: usize,
    base: u64,
    n: u64,
    timeout: Duration,
) -> Result<i128, BenchError> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for slot in slots {
        for _ in 0..window {
            let (slot, next) = (slot.clone(), next.clone());
            tasks.spawn(async move {
                let mut sum: i128 = 0;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    sum += i128::from(balance(&slot, base + i, timeout).await?);
                }
                Ok::<i128, BenchError>(sum)
            });
        }
    }
    let mut sum: i128 = 0;
    while let Some(r) = tasks.join_next().await {
        sum += r??;
    }
    Ok(sum)
}

/// The total balance of account `id`, in at most [`VERIFY_ATTEMPTS`] attempts.
async fn balance(slot: &Slot, id: u64, timeout: Duration) -> Result<i64, BenchError> {
    let call = Call::get(Op::Balance, format!("/app/smallbank/balance?id={id}"));
    for _ in 0..VERIFY_ATTEMPTS {
        if let Outcome::Ok(_, reply) = send(slot, &call, timeout).await {
            let v = reply.json().map_err(|source| BenchError::BalanceReply { id, source })?;
            return v["total"].as_i64().ok_or(BenchError::BalanceTotal { id });
        }
    }
    Err(BenchError::BalanceUnreadable { id })
}
