//! CCF ledger entry framing: the transaction header, the AES-GCM header, the public domain and the encrypted
//! private domain, plus the ledger secret and the commit evidence derived from it.

use crate::error::EntryFraming;
use crate::limits::MAX_ENTRY_SIZE;
use crate::reader::Reader;
use crate::LedgerError;
use consort_crypto::{hmac_sha256, sha256, Aes256GcmKey, Sha256Hasher, GCM_IV_SIZE, GCM_TAG_SIZE};

/// Size of the transaction header: u8 version, u8 flags, u48 size of what follows.
pub const ENTRY_HEADER_SIZE: usize = 8;
/// The only entry format version CCF 6.x writes.
pub const ENTRY_VERSION: u8 = 1;
/// Header flag: the node should start a new chunk after this entry.
pub const FLAG_FORCE_CHUNK_AFTER: u8 = 0x01;
/// Header flag: the node should start a new chunk before this entry.
pub const FLAG_FORCE_CHUNK_BEFORE: u8 = 0x02;
/// GCM header: tag then IV.
pub const GCM_HEADER_SIZE: usize = GCM_TAG_SIZE + GCM_IV_SIZE;
/// Bytes of an entry before its public domain: transaction header, GCM header, u64 public domain size.
pub const ENTRY_PREFIX_SIZE: usize = ENTRY_HEADER_SIZE + GCM_HEADER_SIZE + 8;
/// Top bit of the IV's view word marks a snapshot.
const IV_SNAPSHOT_BIT: u32 = 0x8000_0000;
/// Largest value of the header's 6-byte size field.
const MAX_HEADER_SIZE_FIELD: u64 = (1 << 48) - 1;
/// HMAC message from which the commit secret is derived from the ledger secret.
const COMMIT_SECRET_LABEL: &[u8] = b"Commit Secret Label";

/// The ledger secret: the AES-256-GCM key for private domains and the commit secret derived from it.
#[derive(Clone)]
pub struct LedgerSecret {
    key: Aes256GcmKey,
    commit_secret: [u8; 32],
}

impl std::fmt::Debug for LedgerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LedgerSecret(..)")
    }
}

impl LedgerSecret {
    /// A fresh random secret.
    pub fn generate() -> Self {
        Self::from_bytes(*Aes256GcmKey::generate().raw())
    }

    /// The secret with this raw AES-256 key (the commit secret is derived from it).
    pub fn from_bytes(raw: [u8; 32]) -> Self {
        let commit_secret = hmac_sha256(&raw, COMMIT_SECRET_LABEL);
        LedgerSecret {
            key: Aes256GcmKey::from_bytes(raw),
            commit_secret,
        }
    }

    /// The raw AES-256 key, to hand the secret to another trusted node or seal it.
    pub fn raw(&self) -> &[u8; 32] {
        self.key.raw()
    }

    /// CCF's commit evidence string for a transaction: `ce:<view>.<seqno>:<hex HMAC(commit secret, "view.seqno")>`.
    pub fn commit_evidence(&self, view: u64, seqno: u64) -> String {
        let txid = format!("{view}.{seqno}");
        format!(
            "ce:{txid}:{}",
            hex::encode(hmac_sha256(&self.commit_secret, txid.as_bytes()))
        )
    }

    /// SHA-256 of [`Self::commit_evidence`], as recorded in the public domain header.
    pub fn commit_evidence_digest(&self, view: u64, seqno: u64) -> [u8; 32] {
        sha256(self.commit_evidence(view, seqno).as_bytes())
    }
}

/// What an encoding holds: a transaction or a snapshot. They get distinct IVs (the snapshot bit), so that a
/// snapshot at seqno s never reuses the IV of the transaction at s under the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Payload {
    Transaction,
    Snapshot,
}

fn iv_bytes(view: u64, seqno: u64, payload: Payload) -> [u8; GCM_IV_SIZE] {
    let mut iv = [0u8; GCM_IV_SIZE];
    iv[..8].copy_from_slice(&seqno.to_le_bytes());
    let mut view_word = (view as u32) & !IV_SNAPSHOT_BIT;
    if payload == Payload::Snapshot {
        view_word |= IV_SNAPSHOT_BIT;
    }
    iv[8..].copy_from_slice(&view_word.to_le_bytes());
    iv
}

/// Encodes one transaction entry. Fails only if the entry would exceed [`MAX_ENTRY_SIZE`] or the view does not
/// fit the IV's 31 bits.
pub fn try_encode_entry(
    secret: &LedgerSecret,
    view: u64,
    seqno: u64,
    flags: u8,
    public_domain: &[u8],
    private_plain: &[u8],
) -> Result<Vec<u8>, LedgerError> {
    encode_with_iv(
        secret,
        view,
        seqno,
        flags,
        public_domain,
        private_plain,
        Payload::Transaction,
    )
}

fn encode_with_iv(
    secret: &LedgerSecret,
    view: u64,
    seqno: u64,
    flags: u8,
    public_domain: &[u8],
    private_plain: &[u8],
    payload: Payload,
) -> Result<Vec<u8>, LedgerError> {
    if view > u64::from(!IV_SNAPSHOT_BIT) {
        return Err(LedgerError::MalformedEntry(EntryFraming::ViewTooLarge(view)));
    }
    let total = ENTRY_PREFIX_SIZE as u64 + public_domain.len() as u64 + private_plain.len() as u64;
    if total > MAX_ENTRY_SIZE as u64 {
        return Err(LedgerError::TooLarge {
            what: "entry",
            size: total,
            limit: MAX_ENTRY_SIZE as u64,
        });
    }
    let iv = iv_bytes(view, seqno, payload);
    // The tag is computed even for an empty private domain: it still authenticates the public domain.
    let (cipher, tag) = secret.key.encrypt(&iv, private_plain, public_domain);
    let size = total - ENTRY_HEADER_SIZE as u64;
    let mut out = Vec::with_capacity(total as usize);
    out.push(ENTRY_VERSION);
    out.push(flags);
    out.extend_from_slice(&size.to_le_bytes()[..6]);
    out.extend_from_slice(&tag);
    out.extend_from_slice(&iv);
    out.extend_from_slice(&(public_domain.len() as u64).to_le_bytes());
    out.extend_from_slice(public_domain);
    out.extend_from_slice(&cipher);
    Ok(out)
}

/// Encodes a snapshot the way [`try_encode_entry`] encodes a transaction, but with the IV's snapshot bit set, so
/// a snapshot at seqno s never reuses the AES-GCM IV of the transaction at s.
pub fn try_encode_snapshot(
    secret: &LedgerSecret,
    view: u64,
    seqno: u64,
    public_domain: &[u8],
    private_plain: &[u8],
) -> Result<Vec<u8>, LedgerError> {
    encode_with_iv(secret, view, seqno, 0, public_domain, private_plain, Payload::Snapshot)
}

/// Encodes one transaction entry: header(version 1, flags, size) ‖ GCM tag ‖ IV(seqno, view) ‖ public size ‖
/// public domain ‖ private domain encrypted with the public domain as additional data.
///
/// # Panics
/// If the entry exceeds [`MAX_ENTRY_SIZE`] or `view` exceeds 31 bits: callers bound both (programmer error).
/// Use [`try_encode_entry`] to get an error instead.
pub fn encode_entry(
    secret: &LedgerSecret,
    view: u64,
    seqno: u64,
    flags: u8,
    public_domain: &[u8],
    private_plain: &[u8],
) -> Vec<u8> {
    match try_encode_entry(secret, view, seqno, flags, public_domain, private_plain) {
        Ok(bytes) => bytes,
        Err(e) => panic!("encode_entry: {e}"),
    }
}

/// A parsed entry borrowing the bytes it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryView<'a> {
    /// Format version from the header (always [`ENTRY_VERSION`] once parsed).
    pub version: u8,
    /// Header flags ([`FLAG_FORCE_CHUNK_AFTER`], [`FLAG_FORCE_CHUNK_BEFORE`]).
    pub flags: u8,
    /// View, from the IV.
    pub view: u64,
    /// Seqno, from the IV.
    pub seqno: u64,
    /// Whether the IV's snapshot bit is set (a snapshot, not a transaction).
    pub is_snapshot: bool,
    /// AES-GCM tag over the private domain, with the public domain as additional data.
    pub tag: [u8; GCM_TAG_SIZE],
    /// AES-GCM IV: seqno and view.
    pub iv: [u8; GCM_IV_SIZE],
    /// The public domain, in the clear.
    pub public_domain: &'a [u8],
    /// The private domain, encrypted (empty if the transaction wrote no private map).
    pub encrypted_private: &'a [u8],
    /// The whole entry, header included.
    pub raw: &'a [u8],
}

/// Reads only the 8-byte header at the start of `bytes`: (version, flags, total entry length including header).
pub fn parse_entry_header(bytes: &[u8]) -> Result<(u8, u8, u64), LedgerError> {
    let mut r = Reader::new(bytes, "entry header");
    let hdr: [u8; ENTRY_HEADER_SIZE] = r.array()?;
    let mut size_bytes = [0u8; 8];
    size_bytes[..6].copy_from_slice(&hdr[2..]);
    let size = u64::from_le_bytes(size_bytes);
    debug_assert!(size <= MAX_HEADER_SIZE_FIELD);
    Ok((hdr[0], hdr[1], size + ENTRY_HEADER_SIZE as u64))
}

/// Parses the entry at the start of `bytes`; returns it and the number of bytes it occupies.
pub fn parse_entry(bytes: &[u8]) -> Result<(EntryView<'_>, usize), LedgerError> {
    let (version, flags, total) = parse_entry_header(bytes)?;
    if version != ENTRY_VERSION {
        return Err(LedgerError::UnsupportedVersion(version));
    }
    if total > MAX_ENTRY_SIZE as u64 {
        return Err(LedgerError::TooLarge {
            what: "entry",
            size: total,
            limit: MAX_ENTRY_SIZE as u64,
        });
    }
    if total < ENTRY_PREFIX_SIZE as u64 {
        return Err(LedgerError::MalformedEntry(EntryFraming::SmallerThanHeaders(total)));
    }
    if total > bytes.len() as u64 {
        return Err(LedgerError::Truncated {
            what: "entry",
            need: total,
            have: bytes.len() as u64,
        });
    }
    let raw = &bytes[..total as usize];
    let mut r = Reader::new(&raw[ENTRY_HEADER_SIZE..], "entry");
    let tag: [u8; GCM_TAG_SIZE] = r.array()?;
    let iv: [u8; GCM_IV_SIZE] = r.array()?;
    let public_size = r.u64()?;
    if public_size > r.remaining() as u64 {
        return Err(LedgerError::MalformedEntry(EntryFraming::PublicDomainSize {
            size: public_size,
            left: r.remaining(),
        }));
    }
    let public_domain = r.take(public_size)?;
    let encrypted_private = r.take(r.remaining() as u64)?;
    let mut seqno_bytes = [0u8; 8];
    seqno_bytes.copy_from_slice(&iv[..8]);
    let mut view_bytes = [0u8; 4];
    view_bytes.copy_from_slice(&iv[8..]);
    let view_word = u32::from_le_bytes(view_bytes);
    let entry = EntryView {
        version,
        flags,
        view: u64::from(view_word & !IV_SNAPSHOT_BIT),
        seqno: u64::from_le_bytes(seqno_bytes),
        is_snapshot: view_word & IV_SNAPSHOT_BIT != 0,
        tag,
        iv,
        public_domain,
        encrypted_private,
        raw,
    };
    Ok((entry, total as usize))
}

impl EntryView<'_> {
    /// SHA-256 of the whole entry, header included (CCF's write-set digest).
    pub fn write_set_digest(&self) -> [u8; 32] {
        sha256(self.raw)
    }

    /// Decrypts and authenticates the private domain (also authenticates the public domain as additional data).
    pub fn decrypt_private(&self, secret: &LedgerSecret) -> Result<Vec<u8>, LedgerError> {
        secret
            .key
            .decrypt(&self.iv, self.encrypted_private, &self.tag, self.public_domain)
            .map_err(|_| LedgerError::Decrypt)
    }

    /// "view.seqno" of this entry.
    pub fn txid(&self) -> String {
        format!("{}.{}", self.view, self.seqno)
    }
}

/// The Merkle leaf of a transaction: SHA-256(write-set digest ‖ commit-evidence digest ‖ claims digest).
pub fn leaf_digest(
    write_set_digest: &[u8; 32],
    commit_evidence_digest: &[u8; 32],
    claims_digest: &[u8; 32],
) -> [u8; 32] {
    let mut h = Sha256Hasher::new();
    h.update(write_set_digest);
    h.update(commit_evidence_digest);
    h.update(claims_digest);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(secret: &LedgerSecret) -> Vec<u8> {
        encode_entry(secret, 3, 42, 0, b"public bytes here", b"private secret payload")
    }

    #[test]
    fn round_trip() {
        let secret = LedgerSecret::from_bytes([9u8; 32]);
        let bytes = sample(&secret);
        let mut with_tail = bytes.clone();
        with_tail.extend_from_slice(b"next entry");
        let (e, used) = parse_entry(&with_tail).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(
            (e.version, e.flags, e.view, e.seqno, e.is_snapshot),
            (1, 0, 3, 42, false)
        );
        assert_eq!(e.public_domain, b"public bytes here");
        assert_eq!(e.raw, &bytes[..]);
        assert_eq!(e.decrypt_private(&secret).unwrap(), b"private secret payload");
        assert_eq!(e.write_set_digest(), sha256(&bytes));
        assert_eq!(e.txid(), "3.42");
        // IV layout: seqno then view, little-endian.
        assert_eq!(&bytes[24..32], &42u64.to_le_bytes());
        assert_eq!(&bytes[32..36], &3u32.to_le_bytes());
        assert_eq!(
            e.decrypt_private(&LedgerSecret::from_bytes([8u8; 32])),
            Err(LedgerError::Decrypt)
        );
    }

    #[test]
    fn empty_private_domain_still_has_a_tag() {
        let secret = LedgerSecret::from_bytes([1u8; 32]);
        let bytes = encode_entry(&secret, 1, 1, 0, b"pub", b"");
        let (e, _) = parse_entry(&bytes).unwrap();
        assert!(e.encrypted_private.is_empty());
        assert_ne!(e.tag, [0u8; 16]);
        assert_eq!(e.decrypt_private(&secret).unwrap(), b"");
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1; // flip a public byte: the tag no longer authenticates
        assert_eq!(
            parse_entry(&bad).unwrap().0.decrypt_private(&secret),
            Err(LedgerError::Decrypt)
        );
    }

    #[test]
    fn tamper_any_byte_is_detected() {
        let secret = LedgerSecret::generate();
        let bytes = sample(&secret);
        let digest = sha256(&bytes);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            match parse_entry(&bad) {
                Err(_) => {}
                Ok((e, _)) => {
                    let undetected = e.write_set_digest() == digest && e.decrypt_private(&secret).is_ok();
                    assert!(!undetected, "flip at {i} undetected");
                    // Any flip outside the header and size fields must break decryption.
                    if i >= ENTRY_HEADER_SIZE && !(GCM_HEADER_SIZE + ENTRY_HEADER_SIZE..ENTRY_PREFIX_SIZE).contains(&i)
                    {
                        assert!(e.decrypt_private(&secret).is_err(), "flip at {i} decrypted");
                    }
                }
            }
        }
    }

    #[test]
    fn commit_evidence_format() {
        let secret = LedgerSecret::from_bytes([7u8; 32]);
        let ce = secret.commit_evidence(2, 10);
        let commit_secret = hmac_sha256(&[7u8; 32], b"Commit Secret Label");
        assert_eq!(
            ce,
            format!("ce:2.10:{}", hex::encode(hmac_sha256(&commit_secret, b"2.10")))
        );
        assert_eq!(ce.len(), "ce:2.10:".len() + 64);
        assert_eq!(secret.commit_evidence_digest(2, 10), sha256(ce.as_bytes()));
    }

    #[test]
    fn parse_errors() {
        assert!(matches!(parse_entry(&[]), Err(LedgerError::Truncated { .. })));
        assert!(matches!(
            parse_entry(&[2, 0, 0, 0, 0, 0, 0, 0]),
            Err(LedgerError::UnsupportedVersion(2))
        ));
        assert!(matches!(
            parse_entry(&[1, 0, 3, 0, 0, 0, 0, 0]),
            Err(LedgerError::MalformedEntry(_))
        ));
        assert!(matches!(
            parse_entry(&[1, 0, 255, 255, 255, 255, 255, 255]),
            Err(LedgerError::TooLarge { .. })
        ));
        let secret = LedgerSecret::generate();
        let bytes = sample(&secret);
        assert!(matches!(
            parse_entry(&bytes[..bytes.len() - 1]),
            Err(LedgerError::Truncated { .. })
        ));
        let mut bad = bytes.clone();
        bad[36..44].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(parse_entry(&bad), Err(LedgerError::MalformedEntry(_))));
        assert!(try_encode_entry(&secret, 1 << 31, 1, 0, b"", b"").is_err());
    }

    #[test]
    fn snapshot_iv_differs_from_the_transaction_iv() {
        let secret = LedgerSecret::from_bytes([4u8; 32]);
        let snap = try_encode_snapshot(&secret, 3, 42, b"pub", b"private").unwrap();
        let tx = encode_entry(&secret, 3, 42, 0, b"pub", b"private");
        let (s, _) = parse_entry(&snap).unwrap();
        assert!(s.is_snapshot && s.view == 3 && s.seqno == 42);
        assert_ne!(s.iv, parse_entry(&tx).unwrap().0.iv);
        assert_eq!(s.decrypt_private(&secret).unwrap(), b"private");
    }

    #[test]
    fn leaf_is_hash_of_concatenation() {
        let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        assert_eq!(leaf_digest(&a, &b, &c), sha256(&[a, b, c].concat()));
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_entry(&bytes);
        }

        #[test]
        fn parse_never_panics_on_plausible_headers(mut bytes in proptest::collection::vec(any::<u8>(), 44..300),
                                                   size in 0u64..400, public in any::<u64>()) {
            bytes[0] = 1;
            bytes[2..8].copy_from_slice(&size.to_le_bytes()[..6]);
            bytes[36..44].copy_from_slice(&(public % 512).to_le_bytes());
            if let Ok((e, used)) = parse_entry(&bytes) {
                prop_assert_eq!(used as u64, size + 8);
                prop_assert_eq!(e.public_domain.len() + e.encrypted_private.len() + ENTRY_PREFIX_SIZE, used);
            }
        }

        #[test]
        fn encode_parse_round_trip(view in 0u64..(1 << 31), seqno in any::<u64>(), flags in any::<u8>(),
                                   public in proptest::collection::vec(any::<u8>(), 0..64),
                                   private in proptest::collection::vec(any::<u8>(), 0..64)) {
            let secret = LedgerSecret::from_bytes([5u8; 32]);
            let bytes = encode_entry(&secret, view, seqno, flags, &public, &private);
            let (e, used) = parse_entry(&bytes).unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!((e.view, e.seqno, e.flags), (view, seqno, flags));
            prop_assert_eq!(e.public_domain, &public[..]);
            prop_assert_eq!(e.decrypt_private(&secret).unwrap(), private);
        }
    }
}
