//! Historical queries: the state as of a past committed transaction, fetched from this node's own ledger files.
//!
//! As in CCF, the state of a transaction is what that transaction wrote (a store holding its write set, private
//! maps decrypted with the ledger secret of its seqno), with its receipt. [`HistoricalStates`] fetches states on
//! threads of its own ([`cache`]) and keeps them, bounded by `limits.historical_cache_size_bytes` with the least
//! recently used evicted first and at most `limits.max_historical_fetches` fetches at once; a request finds the
//! state ready, or is told to come back (`202 Accepted`, see `api::historical`). [`fetch`] reads and decodes.

pub mod cache;
pub mod fetch;

use crate::apps::{History, HistoryRange};
use crate::engine::{Engine, ReceiptParts, Seqno, TxId, TxStatus};
use cache::{Cache, CacheBounds, Lookup};
use consort_kv::Store;
use std::sync::Arc;

/// Most transactions one range fetch covers (CCF's logging sample pages its range queries by as many seqnos).
pub const MAX_RANGE_SEQNOS: u64 = 10_000;
/// A range fetch stops (and its page ends) once its states hold this share of the cache: 1/RANGE_CACHE_SHARE.
pub const RANGE_CACHE_SHARE: usize = 2;

/// What one past transaction wrote, and its receipt.
#[derive(Debug)]
pub struct HistoricalState {
    /// The transaction.
    pub txid: TxId,
    /// A store holding exactly the transaction's writes (public and private maps), at version 1.
    pub store: Arc<Store>,
    /// The parts of its receipt (none for the states of a range).
    pub receipt: Option<ReceiptParts>,
}

/// The states of consecutive committed transactions.
#[derive(Debug)]
pub struct RangeStates {
    /// (seqno, store of what it wrote), in seqno order.
    pub states: Vec<(Seqno, Arc<Store>)>,
    /// The last seqno covered: the asked end, or earlier if the range did not fit (the rest is the next page's).
    pub through: Seqno,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    At(TxId),
    Range(Seqno, Seqno),
}

#[derive(Debug, Clone)]
enum Value {
    State(Arc<HistoricalState>),
    Range(Arc<RangeStates>),
}

/// The node's historical state cache.
pub struct HistoricalStates {
    engine: Arc<Engine>,
    cache: Cache<Key, Value>,
    max_bytes: usize,
}

impl std::fmt::Debug for HistoricalStates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoricalStates")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl HistoricalStates {
    /// An empty cache for `engine`'s ledger, bounded by its configuration's limits.
    pub fn new(engine: Arc<Engine>) -> Arc<Self> {
        let limits = &engine.config().limits;
        let bounds = CacheBounds {
            max_bytes: limits.historical_cache_size_bytes,
            max_in_flight: limits.max_historical_fetches,
        };
        Arc::new(HistoricalStates {
            max_bytes: bounds.max_bytes,
            cache: Cache::new(bounds),
            engine,
        })
    }

    /// The state of the committed transaction `id`, or why not yet. The caller checked that `id` is Committed.
    pub fn state_at(&self, id: TxId) -> Lookup<Arc<HistoricalState>> {
        let engine = self.engine.clone();
        let got = self.cache.get_or_start(&Key::At(id), "historical-fetch", move || {
            fetch::fetch_state(&engine, id).map(|(s, bytes)| (Value::State(s), bytes))
        });
        match got {
            Lookup::Ready(Value::State(s)) => Lookup::Ready(s),
            Lookup::Ready(Value::Range(_)) => Lookup::Failed(cache::BuildError::Failed("cache key mix-up".into())),
            Lookup::Pending => Lookup::Pending,
            Lookup::Busy => Lookup::Busy,
            Lookup::Failed(e) => Lookup::Failed(e),
        }
    }

    /// The states of the committed transactions `from..=to` (at most [`MAX_RANGE_SEQNOS`] of them, fewer if they
    /// do not fit a share of the cache), or why not yet. The caller checked that `to` is Committed.
    pub fn range(&self, from: Seqno, to: Seqno) -> Lookup<Arc<RangeStates>> {
        let to = Seqno(to.get().min(from.get().saturating_add(MAX_RANGE_SEQNOS - 1)));
        let engine = self.engine.clone();
        let budget = self.max_bytes / RANGE_CACHE_SHARE;
        let got = self
            .cache
            .get_or_start(&Key::Range(from, to), "historical-range", move || {
                fetch::fetch_range(&engine, from, to, budget).map(|(r, bytes)| (Value::Range(r), bytes))
            });
        match got {
            Lookup::Ready(Value::Range(r)) => Lookup::Ready(r),
            Lookup::Ready(Value::State(_)) => Lookup::Failed(cache::BuildError::Failed("cache key mix-up".into())),
            Lookup::Pending => Lookup::Pending,
            Lookup::Busy => Lookup::Busy,
            Lookup::Failed(e) => Lookup::Failed(e),
        }
    }

    /// Bytes the cached states hold now.
    pub fn held_bytes(&self) -> usize {
        self.cache.held_bytes()
    }
}

impl History for HistoricalStates {
    fn committed_seqno(&self) -> u64 {
        self.engine.committed_txid().seqno.get()
    }

    fn range(&self, from: u64, to: u64) -> HistoryRange {
        if from == 0 || to < from {
            return HistoryRange::Failed(format!("invalid range {from}..={to}"));
        }
        match self.engine.seqno_status(Seqno(to)).1 {
            TxStatus::Committed => {}
            other => return HistoryRange::NotCommitted(other.as_str()),
        }
        match HistoricalStates::range(self, Seqno(from), Seqno(to)) {
            Lookup::Ready(r) => HistoryRange::Ready {
                states: r.states.iter().map(|(s, store)| (s.get(), store.clone())).collect(),
                through: r.through.get(),
            },
            Lookup::Pending | Lookup::Busy => HistoryRange::Pending,
            Lookup::Failed(e) => HistoryRange::Failed(e.to_string()),
        }
    }
}
