//! The commit poller: a background task on its own connection that reads the commit point every
//! [`COMMIT_POLL`], times the sampled writes until they are committed, and notes when the load's last
//! acknowledged write is (Consort only: etcd acknowledges only committed puts).

use super::phase::{Live, Sample};
use super::{COMMIT_POLL, COMMIT_WAIT, CONNECT_TIMEOUT};
use consort_node::engine::TxId;
use consort_node::net::client::Connection;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// What the commit poller found.
#[derive(Debug, Default)]
pub(super) struct CommitReport {
    pub(super) latencies: Vec<Duration>,
    /// When the target (the last acknowledged write) was first seen Committed.
    pub(super) target_committed_at: Option<Instant>,
    pub(super) invalid: Option<TxId>,
    pub(super) unresolved: usize,
}

/// What is known of a transaction's fate at a given commit point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolution {
    Committed,
    Invalid,
    /// Not yet known: above the commit point, or its status could not be read.
    Pending,
}

async fn commit_point(conn: &Connection) -> Option<TxId> {
    let r = tokio::time::timeout(CONNECT_TIMEOUT, conn.get("/app/commit"))
        .await
        .ok()?
        .ok()?;
    r.json().ok()?["transaction_id"].as_str()?.parse().ok()
}

async fn tx_status(conn: &Connection, txid: TxId) -> Option<String> {
    let path = format!("/app/tx?transaction_id={txid}");
    let r = tokio::time::timeout(CONNECT_TIMEOUT, conn.get(&path))
        .await
        .ok()?
        .ok()?;
    r.json().ok()?["status"].as_str().map(str::to_string)
}

/// Whether `txid` is committed given the commit point `commit`: certainly when it is in the commit point's view
/// and at or below it; across views, asks `/app/tx`.
async fn resolve(conn: &Connection, txid: TxId, commit: TxId) -> Resolution {
    if txid.seqno > commit.seqno {
        return Resolution::Pending;
    }
    if txid.view == commit.view {
        return Resolution::Committed;
    }
    match tx_status(conn, txid).await.as_deref() {
        Some("Committed") => Resolution::Committed,
        Some("Invalid") => Resolution::Invalid,
        _ => Resolution::Pending,
    }
}

/// Polls the commit point, resolving samples as they become committed, until it has been given its target
/// (the last acknowledged write, or None) and has resolved it and every sample, or [`COMMIT_WAIT`] has passed.
pub(super) async fn commit_poller(
    conn: Connection,
    mut samples: mpsc::UnboundedReceiver<Sample>,
    mut target_rx: oneshot::Receiver<Option<TxId>>,
    live: Arc<Live>,
) -> CommitReport {
    let mut report = CommitReport::default();
    let mut pending: Vec<Sample> = vec![];
    // None until the load has ended; then Some(the write still waited for, if any).
    let mut target: Option<Option<TxId>> = None;
    let mut deadline: Option<Instant> = None;
    let mut tick = tokio::time::interval(COMMIT_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        while let Ok(s) = samples.try_recv() {
            pending.push(s);
        }
        if target.is_none() {
            let given = match target_rx.try_recv() {
                Ok(t) => Some(t),
                Err(oneshot::error::TryRecvError::Closed) => Some(None),
                Err(oneshot::error::TryRecvError::Empty) => None,
            };
            if given.is_some() {
                target = given;
                deadline = Some(Instant::now() + COMMIT_WAIT);
            }
        }
        if let Some(commit) = commit_point(&conn).await {
            let now = Instant::now();
            live.commit_seqno.store(commit.seqno.get(), Ordering::Relaxed);
            pending = resolve_samples(&conn, pending, commit, now, &mut report).await;
            if let Some(Some(t)) = target {
                match resolve(&conn, t, commit).await {
                    Resolution::Committed => {
                        report.target_committed_at = Some(now);
                        target = Some(None);
                    }
                    Resolution::Invalid => {
                        report.invalid = report.invalid.or(Some(t));
                        target = Some(None);
                    }
                    Resolution::Pending => {}
                }
            }
        }
        let target_done = target == Some(None);
        if target_done && pending.is_empty() && samples.is_closed() && samples.is_empty() {
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            report.unresolved = pending.len();
            break;
        }
    }
    report
}

/// Records the samples resolved at commit point `commit` (seen at `now`) in `report`; returns those still pending.
async fn resolve_samples(
    conn: &Connection,
    pending: Vec<Sample>,
    commit: TxId,
    now: Instant,
    report: &mut CommitReport,
) -> Vec<Sample> {
    let mut still = Vec::with_capacity(pending.len());
    for s in pending {
        match resolve(conn, s.txid, commit).await {
            Resolution::Committed => report.latencies.push(now.saturating_duration_since(s.sent)),
            Resolution::Invalid => report.invalid = report.invalid.or(Some(s.txid)),
            Resolution::Pending => still.push(s),
        }
    }
    still
}
