//! A cache of values that take long to build, bounded in bytes and in builds running at once: a lookup that misses
//! starts the build on a thread of its own and answers "not yet"; later lookups find the value, until the least
//! recently used values are evicted to make room for new ones.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

/// What a build produced: the value and the bytes it holds (what the cache counts against its bound).
pub type Built<V> = (V, usize);

/// The bounds of a [`Cache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheBounds {
    /// Bytes the ready values may hold together; older ones are evicted past it, and a value larger than it alone
    /// is refused ([`Lookup::Failed`] with [`BuildError::TooLarge`]).
    pub max_bytes: usize,
    /// Builds running at once; a miss beyond it is answered [`Lookup::Busy`] and starts nothing.
    pub max_in_flight: usize,
}

/// Why a build gave no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The value would hold more than the whole cache may.
    #[error("the result needs {size} bytes, more than the cache's {limit} (historical_cache_size_bytes)")]
    TooLarge {
        /// Bytes the value holds.
        size: usize,
        /// The cache's bound.
        limit: usize,
    },
    /// The builder failed; the text says why.
    #[error("{0}")]
    Failed(String),
    /// No thread could be started for the build.
    #[error("could not start a fetch thread: {0}")]
    NoThread(String),
}

/// The answer to a lookup.
#[derive(Debug)]
pub enum Lookup<V> {
    /// The value.
    Ready(V),
    /// Being built (this lookup may have started it): ask again later.
    Pending,
    /// Not cached, and the cache already runs as many builds as it may: ask again later.
    Busy,
    /// The last build failed; this answer forgets it, so the next lookup builds again.
    Failed(BuildError),
}

/// Failed builds remembered at once (each until it is reported, or until newer failures push it out); they hold
/// only their error and do not count against `max_bytes`, so a failure never evicts a value.
pub const MAX_FAILED_ENTRIES: usize = 1024;

enum Slot<V> {
    Building,
    Ready { value: V, bytes: usize, used: u64 },
    Failed { error: BuildError, used: u64 },
}

struct Inner<K, V> {
    slots: HashMap<K, Slot<V>>,
    /// Bytes held by the ready slots.
    held_bytes: usize,
    /// Failed slots.
    failed: usize,
    in_flight: usize,
    /// A counter for least-recently-used order.
    clock: u64,
}

/// The cache: `K` names a value, `V` is a cheap handle on it (an `Arc`).
pub struct Cache<K, V> {
    bounds: CacheBounds,
    inner: Arc<Mutex<Inner<K, V>>>,
}

impl<K, V> std::fmt::Debug for Cache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("bounds", &self.bounds)
            .finish_non_exhaustive()
    }
}

impl<K, V> Cache<K, V>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    /// An empty cache with these bounds.
    pub fn new(bounds: CacheBounds) -> Self {
        Cache {
            bounds,
            inner: Arc::new(Mutex::new(Inner {
                slots: HashMap::new(),
                held_bytes: 0,
                failed: 0,
                in_flight: 0,
                clock: 0,
            })),
        }
    }

    /// The value for `key`; on a miss, starts `build` on a thread named `thread_name` (if fewer than
    /// `max_in_flight` builds run) and answers [`Lookup::Pending`].
    pub fn get_or_start<F>(&self, key: &K, thread_name: &str, build: F) -> Lookup<V>
    where
        F: FnOnce() -> Result<Built<V>, BuildError> + Send + 'static,
    {
        let mut inner = lock(&self.inner);
        inner.clock += 1;
        let now = inner.clock;
        match inner.slots.get_mut(key) {
            Some(Slot::Ready { value, used, .. }) => {
                *used = now;
                return Lookup::Ready(value.clone());
            }
            Some(Slot::Building) => return Lookup::Pending,
            Some(Slot::Failed { .. }) => {
                if let Some(Slot::Failed { error, .. }) = inner.slots.remove(key) {
                    inner.failed -= 1;
                    return Lookup::Failed(error);
                }
            }
            None => {}
        }
        if inner.in_flight >= self.bounds.max_in_flight {
            return Lookup::Busy;
        }
        inner.in_flight += 1;
        inner.slots.insert(key.clone(), Slot::Building);
        drop(inner);
        let (shared, bounds, k) = (self.inner.clone(), self.bounds, key.clone());
        let started = std::thread::Builder::new()
            .name(thread_name.to_string())
            .spawn(move || finish(&shared, bounds, k, build()));
        if let Err(e) = started {
            finish(
                &self.inner,
                self.bounds,
                key.clone(),
                Err(BuildError::NoThread(e.to_string())),
            );
        }
        Lookup::Pending
    }

    /// Bytes the ready values hold now.
    pub fn held_bytes(&self) -> usize {
        lock(&self.inner).held_bytes
    }

    /// Builds running now.
    pub fn in_flight(&self) -> usize {
        lock(&self.inner).in_flight
    }

    /// Whether `key` has a ready value (without touching its age).
    pub fn contains(&self, key: &K) -> bool {
        matches!(lock(&self.inner).slots.get(key), Some(Slot::Ready { .. }))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while holding it with the cache half-changed, so a poisoned lock still guards a whole cache.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Stores what a build produced: a value evicts the least recently used values until it fits; a failure pushes
/// out the oldest failure once [`MAX_FAILED_ENTRIES`] are remembered.
fn finish<K: Hash + Eq + Clone, V>(
    shared: &Mutex<Inner<K, V>>,
    bounds: CacheBounds,
    key: K,
    result: Result<Built<V>, BuildError>,
) {
    let mut inner = lock(shared);
    inner.in_flight -= 1;
    inner.clock += 1;
    let used = inner.clock;
    let result = match result {
        Ok((_, bytes)) if bytes > bounds.max_bytes => Err(BuildError::TooLarge {
            size: bytes,
            limit: bounds.max_bytes,
        }),
        other => other,
    };
    match result {
        Ok((value, bytes)) => {
            while inner.held_bytes + bytes > bounds.max_bytes {
                let Some(oldest) = oldest(&inner.slots, |s| matches!(s, Slot::Ready { .. })) else {
                    break;
                };
                if let Some(Slot::Ready { bytes, .. }) = inner.slots.remove(&oldest) {
                    inner.held_bytes -= bytes;
                }
            }
            inner.held_bytes += bytes;
            inner.slots.insert(key, Slot::Ready { value, bytes, used });
        }
        Err(error) => {
            if inner.failed >= MAX_FAILED_ENTRIES {
                if let Some(oldest) = oldest(&inner.slots, |s| matches!(s, Slot::Failed { .. })) {
                    inner.slots.remove(&oldest);
                    inner.failed -= 1;
                }
            }
            inner.failed += 1;
            inner.slots.insert(key, Slot::Failed { error, used });
        }
    }
}

/// The least recently used key among the slots `which` selects.
fn oldest<K: Clone, V>(slots: &HashMap<K, Slot<V>>, which: impl Fn(&Slot<V>) -> bool) -> Option<K> {
    slots
        .iter()
        .filter(|(_, s)| which(s))
        .filter_map(|(k, s)| match s {
            Slot::Ready { used, .. } | Slot::Failed { used, .. } => Some((*used, k)),
            Slot::Building => None,
        })
        .min_by_key(|(used, _)| *used)
        .map(|(_, k)| k.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    fn bounds(max_bytes: usize, max_in_flight: usize) -> CacheBounds {
        CacheBounds {
            max_bytes,
            max_in_flight,
        }
    }

    /// Looks `key` up until the build finishes (bounded in time).
    fn wait_ready(cache: &Cache<u64, Arc<String>>, key: u64, size: usize) -> Lookup<Arc<String>> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = cache.get_or_start(&key, "test-build", move || Ok((Arc::new(format!("v{key}")), size)));
            match got {
                Lookup::Pending | Lookup::Busy => {
                    assert!(Instant::now() < deadline, "build of {key} did not finish");
                    std::thread::sleep(Duration::from_millis(2));
                }
                done => return done,
            }
        }
    }

    #[test]
    fn a_miss_answers_pending_then_the_value() {
        let cache = Cache::new(bounds(1000, 2));
        let first = cache.get_or_start(&1, "t", || Ok((Arc::new("one".to_string()), 10)));
        assert!(matches!(first, Lookup::Pending), "{first:?}");
        match wait_ready(&cache, 1, 10) {
            Lookup::Ready(v) => assert_eq!(*v, "one"),
            other => panic!("{other:?}"),
        }
        assert_eq!(cache.held_bytes(), 10);
    }

    #[test]
    fn held_bytes_never_exceed_the_bound_and_the_least_recently_used_goes_first() {
        let cache = Cache::new(bounds(300, 4));
        for k in 0..3 {
            assert!(matches!(wait_ready(&cache, k, 100), Lookup::Ready(_)));
        }
        assert_eq!(cache.held_bytes(), 300);
        // Touch 0, so 1 is now the least recently used.
        assert!(matches!(wait_ready(&cache, 0, 100), Lookup::Ready(_)));
        assert!(matches!(wait_ready(&cache, 3, 100), Lookup::Ready(_)));
        assert!(cache.held_bytes() <= 300, "{}", cache.held_bytes());
        assert!(cache.contains(&0) && cache.contains(&2) && cache.contains(&3));
        assert!(!cache.contains(&1), "the least recently used value stays");
        // A bigger value evicts as many as it needs.
        assert!(matches!(wait_ready(&cache, 4, 250), Lookup::Ready(_)));
        assert!(cache.held_bytes() <= 300, "{}", cache.held_bytes());
        assert!(cache.contains(&4));
        assert_eq!([0, 2, 3].iter().filter(|k| cache.contains(k)).count(), 0);
    }

    #[test]
    fn a_value_larger_than_the_cache_is_refused_and_evicts_nothing() {
        let cache = Cache::new(bounds(300, 2));
        assert!(matches!(wait_ready(&cache, 0, 100), Lookup::Ready(_)));
        match wait_ready(&cache, 9, 301) {
            Lookup::Failed(BuildError::TooLarge { size: 301, limit: 300 }) => {}
            other => panic!("{other:?}"),
        }
        assert!(cache.contains(&0));
        assert_eq!(cache.held_bytes(), 100);
    }

    #[test]
    fn builds_in_flight_are_bounded_and_a_failure_is_reported_once() {
        let cache: Cache<u64, Arc<String>> = Cache::new(bounds(1000, 1));
        let (release, wait) = mpsc::channel::<()>();
        let slow = cache.get_or_start(&1, "t", move || {
            let _ = wait.recv_timeout(Duration::from_secs(10));
            Err(BuildError::Failed("no such entry".into()))
        });
        assert!(matches!(slow, Lookup::Pending));
        assert_eq!(cache.in_flight(), 1);
        let other = cache.get_or_start(&2, "t", || Ok((Arc::new("two".into()), 1)));
        assert!(matches!(other, Lookup::Busy), "{other:?}");
        assert!(matches!(
            cache.get_or_start(&1, "t", || unreachable!()),
            Lookup::Pending
        ));
        release.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while cache.in_flight() > 0 {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(2));
        }
        match cache.get_or_start(&1, "t", || Ok((Arc::new("one".into()), 1))) {
            Lookup::Failed(BuildError::Failed(why)) => assert_eq!(why, "no such entry"),
            other => panic!("{other:?}"),
        }
        // Forgotten once reported: the next lookup builds again.
        assert!(matches!(wait_ready(&cache, 1, 1), Lookup::Ready(_)));
    }
}
