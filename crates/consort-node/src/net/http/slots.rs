//! The HTTP server's connection table: which connections hold a slot, what each is doing, and which one goes
//! when a newcomer needs room (the slot policy of the module above).

use crate::metrics::{EvictionReason, HttpCounters};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Who is at the other end of a connection, as far as its TLS handshake tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Client {
    /// The handshake has not finished.
    Handshaking,
    /// No client certificate, or one of no known member, user or Trusted node.
    Anonymous,
    /// A client certificate of a known member, user or Trusted node.
    Known,
}

/// A request body being read on a connection: what it holds of the body budget and when it last received bytes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reader {
    pub(super) bytes: usize,
    pub(super) progress: Instant,
}

/// What one connection is doing, for the slot policy, the body budget and the idle reaper.
#[derive(Debug)]
pub(super) struct Activity {
    /// Requests whose handler has not finished.
    pub(super) in_flight: u32,
    /// Of those, requests whose body has been read: their handler does bounded work and is not to be interrupted.
    pub(super) executing: u32,
    /// When the connection last started or finished a request (or was accepted).
    pub(super) since: Instant,
    /// When the connection was accepted.
    pub(super) accepted: Instant,
    /// Who the client is.
    pub(super) client: Client,
    /// The bodies being read, by request number: what each holds of the body budget.
    pub(super) readers: BTreeMap<u64, Reader>,
    /// The sum of `readers`' bytes.
    pub(super) body_bytes: usize,
    /// Whether the connection was closed for the body budget: its bodies' bytes are on their way back.
    pub(super) body_evicted: bool,
}

impl Activity {
    fn new(now: Instant) -> Self {
        Activity {
            in_flight: 0,
            executing: 0,
            since: now,
            accepted: now,
            client: Client::Handshaking,
            readers: BTreeMap::new(),
            body_bytes: 0,
            body_evicted: false,
        }
    }
}

/// One open connection: its activity and the signal that closes it.
#[derive(Debug)]
pub(super) struct Conn {
    pub(super) activity: Mutex<Activity>,
    pub(super) close: Notify,
}

impl Conn {
    pub(super) fn new() -> Self {
        Conn {
            activity: Mutex::new(Activity::new(Instant::now())),
            close: Notify::new(),
        }
    }

    pub(super) fn activity(&self) -> MutexGuard<'_, Activity> {
        // A poisoned lock only means a panic elsewhere while holding it; the counters stay usable.
        self.activity.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The eviction rank: least recent progress first; `None` while a request executes or within `grace` of the
    /// last progress.
    fn eviction_rank(&self, grace: Duration) -> Option<Instant> {
        let a = self.activity();
        (a.executing == 0 && a.since.elapsed() >= grace).then_some(a.since)
    }

    /// The rank among anonymous connections: accepted first goes first; `None` for a connection that is not
    /// anonymous, is executing a request, or was accepted within `grace`.
    fn age_rank(&self, grace: Duration) -> Option<Instant> {
        let a = self.activity();
        (a.client == Client::Anonymous && a.executing == 0 && a.accepted.elapsed() >= grace).then_some(a.accepted)
    }

    /// The rank among connections reading bodies: the least recent progress of any of its bodies first; `None`
    /// for a connection reading none.
    fn body_rank(&self) -> Option<Instant> {
        self.activity().readers.values().map(|r| r.progress).min()
    }
}

/// The server's open connections.
pub(super) struct Registry {
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    /// `limits.eviction_grace_ms`.
    grace: Duration,
    /// Where evictions are counted.
    pub(super) counters: HttpCounters,
}

impl Registry {
    pub(super) fn new(grace: Duration, counters: HttpCounters) -> Self {
        Registry {
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            grace,
            counters,
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes connection `id` from the table, closes it and counts it for `reason`.
    fn evict(&self, conns: &mut HashMap<u64, Arc<Conn>>, id: u64, reason: EvictionReason) -> Option<Arc<Conn>> {
        let c = conns.remove(&id)?;
        self.counters.evicted(reason);
        c.close.notify_one();
        Some(c)
    }

    /// The anonymous connection accepted first, other than `except`, if one is older than the grace period and
    /// executing nothing.
    fn oldest_anonymous(&self, conns: &HashMap<u64, Arc<Conn>>, except: Option<u64>) -> Option<u64> {
        conns
            .iter()
            .filter(|(id, _)| Some(**id) != except)
            .filter_map(|(id, c)| c.age_rank(self.grace).map(|r| (r, *id)))
            .min()
            .map(|(_, id)| id)
    }

    /// Takes a slot for a new connection, evicting per the module's slot policy when all `max` are taken: the
    /// connection with the least recent progress beyond the grace period, else the oldest anonymous one beyond
    /// it; `None` if neither exists.
    pub(super) fn admit(&self, max: usize) -> Option<(u64, Arc<Conn>)> {
        let mut conns = self.lock();
        if conns.len() >= max {
            let stalest = conns
                .iter()
                .filter_map(|(id, c)| c.eviction_rank(self.grace).map(|r| (r, *id)))
                .min()
                .map(|(_, id)| id);
            match stalest {
                Some(id) => self.evict(&mut conns, id, EvictionReason::Displaced),
                None => {
                    let oldest = self.oldest_anonymous(&conns, None)?;
                    self.evict(&mut conns, oldest, EvictionReason::OldestAnonymous)
                }
            };
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn::new());
        conns.insert(id, conn.clone());
        Some((id, conn))
    }

    /// Records who the client of connection `id` is, once its handshake is done. An anonymous client beyond
    /// `max_anonymous` displaces the oldest anonymous connection past the grace period, or else is itself closed;
    /// returns whether connection `id` may go on.
    pub(super) fn identify(&self, id: u64, client: Client, max_anonymous: usize) -> bool {
        let mut conns = self.lock();
        let Some(me) = conns.get(&id).cloned() else {
            return false; // evicted during its handshake
        };
        me.activity().client = client;
        if client != Client::Anonymous {
            return true;
        }
        let anonymous = conns
            .values()
            .filter(|c| c.activity().client == Client::Anonymous)
            .count();
        if anonymous <= max_anonymous {
            return true;
        }
        match self.oldest_anonymous(&conns, Some(id)) {
            Some(oldest) => {
                self.evict(&mut conns, oldest, EvictionReason::OldestAnonymous);
                true
            }
            None => {
                conns.remove(&id);
                self.counters.evicted(EvictionReason::AnonymousCap);
                false
            }
        }
    }

    /// Closes the connection, other than `except`, whose body read has made the least recent progress, and marks
    /// it so; returns the body bytes it held, now on their way back to the budget (0 if no other connection reads a
    /// body).
    pub(super) fn evict_stalest_reader(&self, except: u64) -> usize {
        let mut conns = self.lock();
        let victim = conns
            .iter()
            .filter(|(id, _)| **id != except)
            .filter_map(|(id, c)| c.body_rank().map(|r| (r, *id)))
            .min()
            .map(|(_, id)| id);
        let Some(conn) = victim.and_then(|id| self.evict(&mut conns, id, EvictionReason::BodyBudget)) else {
            return 0;
        };
        let mut a = conn.activity();
        a.body_evicted = true;
        a.body_bytes
    }

    /// Closes every connection that has had no request in flight for `idle`; returns how many.
    pub(super) fn reap_idle(&self, idle: Duration) -> usize {
        let mut conns = self.lock();
        let stale: Vec<u64> = conns
            .iter()
            .filter(|(_, c)| {
                let a = c.activity();
                a.in_flight == 0 && a.since.elapsed() >= idle
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &stale {
            self.evict(&mut conns, *id, EvictionReason::IdleTimeout);
        }
        stale.len()
    }

    pub(super) fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        Registry::new(Duration::from_millis(500), HttpCounters::default())
    }

    fn ids(r: &Registry) -> Vec<u64> {
        r.lock().keys().copied().collect()
    }

    /// Moves `conn`'s acceptance and last progress `by` into the past.
    fn age(conn: &Conn, by: Duration) {
        let mut a = conn.activity();
        a.accepted -= by;
        a.since -= by;
    }

    #[test]
    fn a_full_table_of_busy_anonymous_connections_gives_up_the_oldest() {
        let r = registry();
        let (first, first_conn) = r.admit(2).unwrap();
        let (second, second_conn) = r.admit(2).unwrap();
        for (id, c, by) in [(first, &first_conn, 10), (second, &second_conn, 5)] {
            assert!(r.identify(id, Client::Anonymous, 10));
            age(c, Duration::from_secs(by));
            // Each made progress just now: none is stale.
            c.activity().since = Instant::now();
        }
        let (third, _) = r.admit(2).unwrap();
        let now = ids(&r);
        assert!(!now.contains(&first), "the anonymous connection accepted first goes");
        assert!(now.contains(&second) && now.contains(&third));
        assert_eq!(r.counters.evicted_count(EvictionReason::OldestAnonymous), 1);
        // The newcomer is within its grace period and the other one is known: nothing can go.
        assert!(r.identify(second, Client::Known, 10));
        assert!(r.admit(2).is_none());
    }

    #[test]
    fn known_clients_are_never_displaced_by_age() {
        let r = registry();
        let (id, conn) = r.admit(1).unwrap();
        assert!(r.identify(id, Client::Known, 10));
        age(&conn, Duration::from_secs(10));
        conn.activity().since = Instant::now();
        assert!(r.admit(1).is_none());
        assert_eq!(ids(&r), vec![id]);
    }

    #[test]
    fn anonymous_clients_beyond_their_cap_displace_the_oldest_or_are_closed() {
        let r = registry();
        let (a, a_conn) = r.admit(10).unwrap();
        assert!(r.identify(a, Client::Anonymous, 1));
        let (b, _) = r.admit(10).unwrap();
        assert!(
            !r.identify(b, Client::Anonymous, 1),
            "the first anonymous is within its grace period"
        );
        assert_eq!(r.counters.evicted_count(EvictionReason::AnonymousCap), 1);
        assert_eq!(ids(&r), vec![a]);
        let (k, _) = r.admit(10).unwrap();
        assert!(r.identify(k, Client::Known, 1), "known clients are not capped");
        age(&a_conn, Duration::from_secs(5));
        let (c, _) = r.admit(10).unwrap();
        assert!(r.identify(c, Client::Anonymous, 1));
        let mut now = ids(&r);
        now.sort_unstable();
        assert_eq!(now, vec![k, c], "the old anonymous connection made room");
        assert_eq!(r.counters.evicted_count(EvictionReason::OldestAnonymous), 1);
    }

    #[test]
    fn the_body_reader_with_the_least_recent_progress_is_evicted() {
        let r = registry();
        let (stale, stale_conn) = r.admit(10).unwrap();
        let (fresh, fresh_conn) = r.admit(10).unwrap();
        let (_, idle_conn) = r.admit(10).unwrap();
        let now = Instant::now();
        let reader = |bytes, ago| Reader {
            bytes,
            progress: now - Duration::from_millis(ago),
        };
        {
            let mut a = stale_conn.activity();
            a.readers.insert(0, reader(100, 5_000));
            a.readers.insert(1, reader(50, 0));
            a.body_bytes = 150;
        }
        {
            let mut a = fresh_conn.activity();
            a.readers.insert(0, reader(70, 1_000));
            a.body_bytes = 70;
        }
        idle_conn.activity().since -= Duration::from_secs(60);
        assert_eq!(
            r.evict_stalest_reader(fresh),
            150,
            "one stalled body marks its connection"
        );
        assert!(stale_conn.activity().body_evicted);
        assert!(!ids(&r).contains(&stale));
        assert_eq!(
            r.evict_stalest_reader(fresh),
            0,
            "the reader itself is never its own victim"
        );
        assert_eq!(r.evict_stalest_reader(u64::MAX), 70);
        assert_eq!(r.counters.evicted_count(EvictionReason::BodyBudget), 2);
        assert_eq!(r.lock().len(), 1, "a connection reading no body is not a victim");
    }
}
