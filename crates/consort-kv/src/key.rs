//! The key type of the store's maps: short keys (ids, small hashes) are held inline, so that the comparisons of a
//! map lookup or insert read the B-tree node itself instead of chasing a pointer per key, and take no allocation.

use std::borrow::Borrow;
use std::cmp::Ordering;

/// Longest key held inline (the variant then fits in 24 bytes, like a `Vec<u8>`).
const INLINE_MAX: usize = 22;

/// A map key, ordered exactly as its bytes (`[u8]`'s order), so maps can be searched with a `&[u8]`.
#[derive(Clone)]
pub(crate) enum StoredKey {
    Inline { len: u8, bytes: [u8; INLINE_MAX] },
    Heap(Box<[u8]>),
}

impl StoredKey {
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            StoredKey::Inline { len, bytes } => &bytes[..usize::from(*len)],
            StoredKey::Heap(b) => b,
        }
    }
}

impl From<&[u8]> for StoredKey {
    fn from(key: &[u8]) -> Self {
        if key.len() <= INLINE_MAX {
            let mut bytes = [0u8; INLINE_MAX];
            bytes[..key.len()].copy_from_slice(key);
            // INLINE_MAX < 256, so the length fits.
            StoredKey::Inline {
                len: key.len() as u8,
                bytes,
            }
        } else {
            StoredKey::Heap(key.into())
        }
    }
}

impl From<Vec<u8>> for StoredKey {
    fn from(key: Vec<u8>) -> Self {
        if key.len() <= INLINE_MAX {
            StoredKey::from(key.as_slice())
        } else {
            StoredKey::Heap(key.into_boxed_slice())
        }
    }
}

impl Borrow<[u8]> for StoredKey {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for StoredKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for StoredKey {}

impl PartialOrd for StoredKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for StoredKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_slice().cmp(other.as_slice())
    }
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_like_bytes_across_inline_and_heap() {
        let keys: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![0, 0],
            vec![1],
            vec![1; 22],
            vec![1; 23],
            vec![1; 40],
            vec![2; 21],
            vec![255],
        ];
        for a in &keys {
            for b in &keys {
                let (ka, kb) = (StoredKey::from(a.clone()), StoredKey::from(b.as_slice()));
                assert_eq!(ka.cmp(&kb), a.cmp(b), "{a:?} vs {b:?}");
                assert_eq!(ka == kb, a == b);
                assert_eq!(ka.as_slice(), &a[..]);
            }
        }
        assert_eq!(std::mem::size_of::<StoredKey>(), 24);
    }
}
