//! A bounds-checked little-endian reader over untrusted bytes: every read returns a typed error, never panics.

use crate::LedgerError;

pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Reader { bytes, pos: 0, what }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// Takes `n` bytes; `n` comes from untrusted data, so it is checked against what is left before slicing.
    pub(crate) fn take(&mut self, n: u64) -> Result<&'a [u8], LedgerError> {
        let have = self.remaining() as u64;
        if n > have {
            return Err(LedgerError::Truncated {
                what: self.what,
                need: n,
                have,
            });
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.bytes[start..self.pos])
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], LedgerError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64)?);
        Ok(out)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, LedgerError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
}
