//! A small read interface over both kinds of consort-kv transaction, so read-only endpoints can use a
//! [`ReadTx`] and writing ones a [`Tx`].

use consort_kv::{ReadTx, Tx};

/// Reads of governance tables. Implemented for [`Tx`] (reads recorded for OCC, own writes visible) and
/// [`ReadTx`] (latest committed state).
pub trait KvRead {
    /// The value of `key` in `map`, if present.
    fn read(&mut self, map: &str, key: &[u8]) -> Option<Vec<u8>>;
    /// Calls `f(key, value)` for every entry in key order until it returns false.
    fn scan(&mut self, map: &str, f: &mut dyn FnMut(&[u8], &[u8]) -> bool);
}

impl KvRead for Tx<'_> {
    fn read(&mut self, map: &str, key: &[u8]) -> Option<Vec<u8>> {
        self.get(map, key)
    }
    fn scan(&mut self, map: &str, f: &mut dyn FnMut(&[u8], &[u8]) -> bool) {
        self.foreach(map, f)
    }
}

impl KvRead for ReadTx<'_> {
    fn read(&mut self, map: &str, key: &[u8]) -> Option<Vec<u8>> {
        self.get(map, key)
    }
    fn scan(&mut self, map: &str, f: &mut dyn FnMut(&[u8], &[u8]) -> bool) {
        self.foreach(map, f)
    }
}

/// All entries of `map` as (key, value) pairs, in key order.
pub(crate) fn entries(kv: &mut dyn KvRead, map: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    kv.scan(map, &mut |k, v| {
        out.push((k.to_vec(), v.to_vec()));
        true
    });
    out
}
