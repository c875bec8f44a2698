//! Little-endian byte writer and bounds-checked reader shared by the write-set and snapshot codecs.

use crate::{KvError, WireFault};

/// Appends CCF's little-endian primitives to a growing buffer.
#[derive(Default)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn with_capacity(capacity_bytes: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(capacity_bytes),
        }
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// `u64 len ‖ bytes`, the framing CCF uses for map names, keys and values in write sets.
    pub(crate) fn sized(&mut self, bytes: &[u8]) {
        self.u64(bytes.len() as u64);
        self.raw(bytes);
    }

    /// Zero bytes up to the next multiple of 8 of `len` (snapshot entries are 8-byte aligned).
    pub(crate) fn pad8(&mut self, len: usize) {
        let padding = (8 - len % 8) % 8;
        self.buf.resize(self.buf.len() + padding, 0);
    }

    /// Reserves a u64 to be filled in later by [`Writer::patch_u64`]; returns its offset.
    pub(crate) fn placeholder_u64(&mut self) -> usize {
        let at = self.buf.len();
        self.u64(0);
        at
    }

    pub(crate) fn patch_u64(&mut self, at: usize, v: u64) {
        self.buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }
}

/// Reads primitives from untrusted bytes. Every length is checked against the bytes that remain before
/// anything is sliced or allocated, so garbage yields [`KvError::Malformed`], never a panic.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], KvError> {
        if n > self.remaining() {
            return Err(WireFault::Truncated {
                what,
                need: n,
                offset: self.pos,
                left: self.remaining(),
            }
            .into());
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], KvError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, KvError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, KvError> {
        Ok(u64::from_le_bytes(self.array::<8>(what)?))
    }

    pub(crate) fn i64(&mut self, what: &'static str) -> Result<i64, KvError> {
        Ok(i64::from_le_bytes(self.array::<8>(what)?))
    }

    /// A u64 length checked to fit in the remaining bytes (so it is safe to use as an allocation size).
    pub(crate) fn len(&mut self, what: &'static str) -> Result<usize, KvError> {
        let len = self.u64(what)?;
        match usize::try_from(len) {
            Ok(n) if n <= self.remaining() => Ok(n),
            _ => Err(WireFault::LengthTooLong {
                what,
                len,
                offset: self.pos - 8,
                left: self.remaining(),
            }
            .into()),
        }
    }

    /// `u64 len ‖ bytes`.
    pub(crate) fn sized(&mut self, what: &'static str) -> Result<&'a [u8], KvError> {
        let n = self.len(what)?;
        self.take(n, what)
    }

    /// A count of items each at least `min_item_bytes` long, checked against the remaining bytes.
    pub(crate) fn count(&mut self, min_item_bytes: usize, what: &'static str) -> Result<usize, KvError> {
        let count = self.u64(what)?;
        let max = (self.remaining() / min_item_bytes.max(1)) as u64;
        if count > max {
            return Err(WireFault::CountTooLarge {
                what,
                count,
                left: self.remaining(),
            }
            .into());
        }
        Ok(count as usize)
    }

    /// Skips the zero padding after an item of `len` bytes (its values are not checked: CCF never reads them).
    pub(crate) fn skip_pad8(&mut self, len: usize, what: &'static str) -> Result<(), KvError> {
        let padding = (8 - len % 8) % 8;
        self.take(padding, what).map(|_| ())
    }

    /// A map name: `u64 len ‖ UTF-8`. The empty name is accepted, as CCF's parser does: a transaction may write
    /// to it, and what the store commits must replay.
    pub(crate) fn map_name(&mut self) -> Result<String, KvError> {
        let raw = self.sized("map name")?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(WireFault::MapNameNotUtf8(e).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_rejects_lengths_beyond_the_buffer() {
        let mut w = Writer::with_capacity(16);
        w.u64(u64::MAX);
        let mut r = Reader::new(&w.buf);
        assert!(matches!(r.sized("x"), Err(KvError::Malformed(_))));
        let mut r = Reader::new(&w.buf);
        assert!(r.count(16, "x").is_err());
        let mut r = Reader::new(&[1, 2, 3]);
        assert!(r.u64("x").is_err());
    }

    #[test]
    fn padding_rounds_up_to_eight() {
        for (len, pad) in [(0, 0), (1, 7), (7, 1), (8, 0), (9, 7)] {
            let mut w = Writer::with_capacity(8);
            w.pad8(len);
            assert_eq!(w.buf.len(), pad);
        }
    }
}
