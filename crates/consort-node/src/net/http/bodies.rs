//! The budget of request-body bytes being read at once: server-wide, per connection, and a reserve for small
//! bodies that stalled large uploads cannot take.
//!
//! A body is charged as its bytes arrive, so a client that declares a large body and sends nothing holds nothing;
//! but one that sends all but the last bytes and then stalls (or trickles) holds nearly all it declared until the
//! body-read timeout. Three rules keep such clients from locking others out:
//! - one connection's bodies hold at most `max_buffered_body_bytes_per_connection`, so a single HTTP/2 connection
//!   cannot take the whole budget with its streams;
//! - the last `small_body_reserve_bytes` of `max_buffered_body_bytes` go only to bodies of at most
//!   `small_body_max_bytes` (declared, or received so far);
//! - whenever a body reaches into that reserve (or is refused room), the connection whose body read has made the
//!   least recent progress is closed, so that the reserve refills at once instead of after the body-read timeout.
//!   The bytes of a closed connection count as free from then on, so one burst does not close a cascade of
//!   connections while they are being returned.
//!
//! On HTTP/1.1 a connection reading a body executes nothing else; on HTTP/2 the requests already executing on a
//! closed connection run to completion (hyper runs each stream in a task of its own), only their answers are lost.

use super::slots::{Conn, Reader, Registry};
use crate::metrics::{BodyRefusalReason, HttpCounters};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The limits of [`BodyBudget`], from `[limits]`.
#[derive(Debug, Clone, Copy)]
pub(super) struct BodyLimits {
    /// `max_buffered_body_bytes`.
    pub(super) total: usize,
    /// `max_buffered_body_bytes_per_connection`.
    pub(super) per_connection: usize,
    /// `small_body_reserve_bytes`.
    pub(super) reserve: usize,
    /// `small_body_max_bytes`.
    pub(super) small_max: usize,
}

impl BodyLimits {
    pub(super) fn of(limits: &crate::config::Limits) -> Self {
        BodyLimits {
            total: limits.max_buffered_body_bytes.min(Semaphore::MAX_PERMITS),
            per_connection: limits.max_buffered_body_bytes_per_connection,
            reserve: limits.small_body_reserve_bytes,
            small_max: limits.small_body_max_bytes,
        }
    }
}

/// The server-wide budget of body bytes being read.
pub(super) struct BodyBudget {
    permits: Arc<Semaphore>,
    limits: BodyLimits,
    /// Bytes held by connections closed for the budget, not yet returned.
    releasing: AtomicUsize,
    counters: HttpCounters,
}

/// One request whose body may be read: its connection and its number there.
pub(super) struct BodyOf<'a> {
    pub(super) conn_id: u64,
    pub(super) conn: &'a Conn,
    pub(super) request: u64,
    /// The length its `content-length` declares, if any.
    pub(super) declared: Option<u64>,
}

impl BodyBudget {
    pub(super) fn new(limits: BodyLimits, counters: HttpCounters) -> Self {
        BodyBudget {
            permits: Arc::new(Semaphore::new(limits.total)),
            limits,
            releasing: AtomicUsize::new(0),
            counters,
        }
    }

    /// Charges `n` more bytes of `body`, per the module's rules; `None` (counted by reason) if there is no room.
    /// May close another connection to refill the small-body reserve.
    pub(super) fn reserve(&self, registry: &Registry, body: &BodyOf<'_>, n: usize) -> Option<OwnedSemaphorePermit> {
        let so_far = {
            let a = body.conn.activity();
            if a.body_bytes.saturating_add(n) > self.limits.per_connection {
                drop(a);
                self.counters.body_refused(BodyRefusalReason::ConnectionShare);
                return None;
            }
            a.readers.get(&body.request).map_or(0, |r| r.bytes)
        };
        let size = body.declared.unwrap_or(0).max(so_far.saturating_add(n) as u64);
        let small = size <= self.limits.small_max as u64;
        let free = self.permits.available_permits() + self.releasing.load(Ordering::Acquire);
        let pressed = free < self.limits.reserve.saturating_add(n);
        if pressed {
            let freed = registry.evict_stalest_reader(body.conn_id);
            self.releasing.fetch_add(freed, Ordering::AcqRel);
        }
        let permit = match u32::try_from(n) {
            Ok(n) if small || !pressed => self.permits.clone().try_acquire_many_owned(n).ok(),
            _ => None,
        };
        let Some(permit) = permit else {
            self.counters.body_refused(BodyRefusalReason::Budget);
            return None;
        };
        let mut a = body.conn.activity();
        let reader = a.readers.entry(body.request).or_insert(Reader {
            bytes: 0,
            progress: Instant::now(),
        });
        reader.bytes += n;
        reader.progress = Instant::now();
        a.body_bytes += n;
        Some(permit)
    }

    /// Forgets what request `request` of `conn` held: its body was read, or its request ended.
    pub(super) fn release(&self, conn: &Conn, request: u64) {
        let mut a = conn.activity();
        let Some(r) = a.readers.remove(&request) else {
            return;
        };
        a.body_bytes = a.body_bytes.saturating_sub(r.bytes);
        if a.body_evicted {
            // The permits went back with the request's body; so leaves the count of bytes on their way back.
            let _ = self
                .releasing
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| Some(v.saturating_sub(r.bytes)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const KIB: usize = 1024;

    fn budget() -> (BodyBudget, Registry) {
        budget_with_share(40 * KIB)
    }

    fn budget_with_share(per_connection: usize) -> (BodyBudget, Registry) {
        let limits = BodyLimits {
            total: 100 * KIB,
            per_connection,
            reserve: 20 * KIB,
            small_max: 4 * KIB,
        };
        let counters = HttpCounters::default();
        (
            BodyBudget::new(limits, counters.clone()),
            Registry::new(Duration::from_millis(500), counters),
        )
    }

    fn body(conn_id: u64, conn: &Conn, request: u64, declared: Option<u64>) -> BodyOf<'_> {
        BodyOf {
            conn_id,
            conn,
            request,
            declared,
        }
    }

    #[test]
    fn one_connection_holds_at_most_its_share() {
        let (b, r) = budget();
        let (id, conn) = r.admit(10).unwrap();
        let mut held = vec![];
        for request in 0..4 {
            held.push(b.reserve(&r, &body(id, &conn, request, None), 10 * KIB).unwrap());
        }
        assert!(b.reserve(&r, &body(id, &conn, 4, None), 1).is_none());
        assert_eq!(b.counters.body_refused_count(BodyRefusalReason::ConnectionShare), 1);
        // A request that finishes returns its share.
        b.release(&conn, 0);
        drop(held.remove(0));
        assert!(b.reserve(&r, &body(id, &conn, 4, None), 10 * KIB).is_some());
    }

    /// Fills the budget up to its reserve with two stalled connections of 40 KiB; returns them and their permits.
    fn stall_up_to_the_reserve(b: &BodyBudget, r: &Registry) -> (Vec<(u64, Arc<Conn>)>, Vec<OwnedSemaphorePermit>) {
        let mut conns = vec![];
        let mut held = vec![];
        for _ in 0..2 {
            let (id, conn) = r.admit(10).unwrap();
            held.push(
                b.reserve(r, &body(id, &conn, 0, Some(64 * KIB as u64)), 40 * KIB)
                    .unwrap(),
            );
            conn.activity().readers.get_mut(&0).unwrap().progress -= Duration::from_secs(1);
            conns.push((id, conn));
        }
        (conns, held)
    }

    #[test]
    fn small_bodies_reach_into_the_reserve_and_evict_the_stalest_reader() {
        let (b, r) = budget();
        let (stalled, mut held) = stall_up_to_the_reserve(&b, &r);
        stalled[1].1.activity().readers.get_mut(&0).unwrap().progress -= Duration::from_secs(1);
        let (id, conn) = r.admit(10).unwrap();
        let permit = b.reserve(&r, &body(id, &conn, 0, Some(2 * KIB as u64)), 2 * KIB);
        assert!(permit.is_some(), "a small body gets room from the reserve");
        assert_eq!(b.counters.evicted_count(crate::metrics::EvictionReason::BodyBudget), 1);
        assert!(
            stalled[1].1.activity().body_evicted,
            "the reader with the least recent progress went"
        );
        assert_eq!(b.releasing.load(Ordering::Acquire), 40 * KIB);
        // Its bytes count as free while they come back: the next small body evicts nobody else.
        assert!(b.reserve(&r, &body(id, &conn, 1, None), 2 * KIB).is_some());
        assert_eq!(b.counters.evicted_count(crate::metrics::EvictionReason::BodyBudget), 1);
        drop(held.remove(1));
        b.release(&stalled[1].1, 0);
        assert_eq!(b.releasing.load(Ordering::Acquire), 0);
    }

    #[test]
    fn a_large_body_never_reaches_into_the_reserve() {
        let (b, r) = budget();
        let (stalled, _held) = stall_up_to_the_reserve(&b, &r);
        let (id, conn) = r.admit(10).unwrap();
        // Declared large: refused at its first byte beyond the unreserved part, and a stalled reader is closed.
        assert!(b.reserve(&r, &body(id, &conn, 0, Some(30 * KIB as u64)), 1).is_none());
        assert_eq!(b.counters.body_refused_count(BodyRefusalReason::Budget), 1);
        assert!(stalled.iter().any(|(_, c)| c.activity().body_evicted));
    }

    #[test]
    fn an_undeclared_body_is_small_until_it_grows_past_the_small_body_size() {
        // One connection holds the unreserved part itself, so that there is nobody else to evict.
        let (b, r) = budget_with_share(100 * KIB);
        let (id, conn) = r.admit(10).unwrap();
        let _stalled = b.reserve(&r, &body(id, &conn, 0, None), 80 * KIB).unwrap();
        assert!(b.reserve(&r, &body(id, &conn, 1, None), 3 * KIB).is_some());
        assert!(b.reserve(&r, &body(id, &conn, 1, None), 3 * KIB).is_none());
        assert_eq!(b.counters.body_refused_count(BodyRefusalReason::Budget), 1);
        assert_eq!(b.counters.evicted_count(crate::metrics::EvictionReason::BodyBudget), 0);
    }

    #[test]
    fn without_pressure_nobody_is_evicted() {
        let (b, r) = budget();
        let (a, a_conn) = r.admit(10).unwrap();
        let (c, c_conn) = r.admit(10).unwrap();
        let _one = b.reserve(&r, &body(a, &a_conn, 0, None), 40 * KIB).unwrap();
        let _two = b.reserve(&r, &body(c, &c_conn, 0, None), 30 * KIB).unwrap();
        assert_eq!(b.counters.evicted_count(crate::metrics::EvictionReason::BodyBudget), 0);
        assert_eq!(r.lock().len(), 2);
    }
}
