//! Recovery shares: the record CCF keeps in `public:ccf.internal.recovery_shares`, how it is issued from the latest
//! ledger secret, how a member's decrypted share is checked on its own, and how k shares restore the secret.
//!
//! Issuing draws a fresh random 32-byte *wrapping key*, wraps the latest ledger secret with it (AES-256-GCM),
//! splits the wrapping key k-of-n with Shamir's scheme ([`consort_crypto::shamir`]) and encrypts each member's
//! share to that member's RSA key with OAEP-SHA-256 ([`consort_crypto::oaep`]). The record holds only the wrapped
//! secret and the encrypted shares, so it can sit in a public table: the host sees it, and no fewer than k members
//! together can use it. A member fetches their encrypted share, decrypts it with their private key (CCF's
//! `submit_recovery_share.sh` does it with `openssl pkeyutl`), and submits the raw share.
//!
//! Formats (JSON, the table's value under its singleton key):
//!
//! ```text
//! {
//!   "wrapped_latest_ledger_secret": base64( tag (16) ‖ iv (12) ‖ AES-256-GCM(wrapping key, iv, secret (32)) ),
//!   "encrypted_shares": { "<member id>": base64( RSA-OAEP-SHA-256(member's key, share) ), ... },
//!   "previous_secret_stored_version": <u64>,            (optional, omitted when absent; CCF's field)
//!   "share_digests": { "<member id>": hex( SHA-256(share) ), ... }        (Consort's field)
//! }
//! share = identifier (1 byte, 1..=255) ‖ 32 values        (consort_crypto::shamir::Share, 33 bytes)
//! ```
//!
//! The wrapped secret has the layout of the GCM header of a ledger entry followed by the ciphertext (60 bytes), no
//! additional data; the IV is drawn from the injected RNG (each wrapping key is used once anyway). The share
//! digests are Consort's: they let the service refuse a wrong or corrupted share when it is submitted, and say
//! whose it was, instead of failing only when k shares are combined. A digest reveals nothing usable: a share
//! holds 256 bits the attacker does not know, so it cannot be found from its digest.
//!
//! The recovery threshold is not in the record (as in CCF): it is the service configuration's, and shares are
//! re-issued whenever it changes, so the caller of [`restore`] passes it. Nothing here does IO; randomness is
//! injected.

use crate::entry::LedgerSecret;
use consort_crypto::shamir::{self, Share, MAX_SHARES, SECRET_SIZE_BYTES};
use consort_crypto::{oaep, sha256, AeadError, Aes256GcmKey, CryptoError, CryptoRngCore, ShamirError};
use consort_crypto::{GCM_IV_SIZE, GCM_TAG_SIZE};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The public table holding the record, under [`crate::SINGLETON_KEY`].
pub const RECOVERY_SHARES_TABLE: &str = "public:ccf.internal.recovery_shares";
/// Size of `wrapped_latest_ledger_secret` in bytes: GCM tag, IV and the 32-byte secret encrypted.
pub const WRAPPED_SECRET_SIZE_BYTES: usize = GCM_TAG_SIZE + GCM_IV_SIZE + SECRET_SIZE_BYTES;

/// The recovery-shares record (CCF's `RecoverySharesInfo`, with Consort's `share_digests`). Member ids are CCF's
/// (hex SHA-256 of the member certificate's DER); maps are ordered by them, so the JSON is deterministic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoverySharesInfo {
    /// The latest ledger secret wrapped with the wrapping key: `tag ‖ iv ‖ ciphertext` (base64 in JSON).
    #[serde(with = "base64_bytes")]
    pub wrapped_latest_ledger_secret: Vec<u8>,
    /// Each recovery member's share, encrypted to their RSA key with OAEP-SHA-256 (base64 in JSON).
    #[serde(with = "base64_map")]
    pub encrypted_shares: BTreeMap<String, Vec<u8>>,
    /// The version at which the previous ledger secret was stored, if any (CCF's optional field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_stored_version: Option<u64>,
    /// Hex SHA-256 of each member's plaintext share (Consort's field). A record without it (as CCF writes it)
    /// reads as an empty map, and then no share is accepted: Consort cannot check one on its own.
    #[serde(default)]
    pub share_digests: BTreeMap<String, String>,
}

/// A recovery member as [`issue`] needs it: their id and their RSA encryption public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryMember<'a> {
    /// The member id (hex SHA-256 of the member certificate's DER).
    pub member_id: &'a str,
    /// The member's RSA public key, PEM (`PUBLIC KEY` or `RSA PUBLIC KEY`).
    pub encryption_key_pem: &'a str,
}

/// Why recovery shares could not be issued or the ledger secret could not be restored.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SharesError {
    /// No recovery member: nobody could ever restore the secret.
    #[error("recovery shares: no recovery members")]
    NoRecoveryMembers,
    /// A recovery threshold of 0.
    #[error("recovery shares: the recovery threshold must be at least 1")]
    ThresholdZero,
    /// More shares needed than there are recovery members.
    #[error("recovery shares: threshold {threshold} is above the number of recovery members {members}")]
    ThresholdAboveMembers {
        /// The recovery threshold.
        threshold: usize,
        /// The number of recovery members.
        members: usize,
    },
    /// More recovery members than Shamir's scheme over GF(256) can give shares to.
    #[error("recovery shares: {members} recovery members, at most {MAX_SHARES}")]
    TooManyMembers {
        /// The number of recovery members.
        members: usize,
    },
    /// The same member twice in the list of recovery members.
    #[error("recovery shares: member {member_id} is listed twice")]
    DuplicateMember {
        /// The member listed twice.
        member_id: String,
    },
    /// A member's share could not be encrypted to their key (the key does not parse or is not RSA).
    #[error("recovery shares: cannot encrypt the share of member {member_id}: {source}")]
    EncryptShare {
        /// The member.
        member_id: String,
        /// The key or encryption error.
        #[source]
        source: CryptoError,
    },
    /// Shamir's scheme refused to split or combine.
    #[error("recovery shares: {0}")]
    Sharing(#[source] ShamirError),
    /// Fewer shares than the threshold were submitted.
    #[error("recovery: {submitted} shares submitted, {threshold} needed")]
    NotEnoughShares {
        /// Shares submitted.
        submitted: usize,
        /// The recovery threshold.
        threshold: usize,
    },
    /// More shares submitted than a split can make: some must be duplicates.
    #[error("recovery: {submitted} shares submitted, at most {MAX_SHARES} can be distinct")]
    TooManyShares {
        /// Shares submitted.
        submitted: usize,
    },
    /// A submitted share (by its position) that does not parse as a share.
    #[error("recovery: share {index} is malformed: {source}")]
    MalformedShare {
        /// Position of the share in the list given to [`restore`].
        index: usize,
        /// Why it does not parse.
        #[source]
        source: ShamirError,
    },
    /// A submitted share (by its position) whose digest is not one the record holds: not a share issued with it.
    #[error("recovery: share {index} is not one of the shares issued with this record")]
    UnknownShare {
        /// Position of the share in the list given to [`restore`].
        index: usize,
    },
    /// `wrapped_latest_ledger_secret` of another length than [`WRAPPED_SECRET_SIZE_BYTES`].
    #[error("recovery: the wrapped ledger secret is {found} bytes, expected {WRAPPED_SECRET_SIZE_BYTES}")]
    WrappedSecretLength {
        /// Bytes found.
        found: usize,
    },
    /// The combined wrapping key does not unwrap the ledger secret: the shares are not k shares of this record, or
    /// the record was altered. Never a wrong secret.
    #[error("recovery: the shares do not unwrap the latest ledger secret: {0}")]
    Unwrap(#[source] AeadError),
}

/// Why a member's submitted share was refused (before any combination, so a bad share never counts).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ShareRefusal {
    /// The member has no share in the record: not a recovery member (or not one when the shares were issued).
    #[error("member {member_id} is not a recovery member")]
    NotRecoveryMember {
        /// The member.
        member_id: String,
    },
    /// The record has no digest for the member's share, so it cannot be checked (a record Consort did not write).
    #[error("no digest of the share of member {member_id} to check it against")]
    NoDigest {
        /// The member.
        member_id: String,
    },
    /// Bytes that are not a share at all.
    #[error("the share of member {member_id} is malformed: {source}")]
    Malformed {
        /// The member.
        member_id: String,
        /// Why it does not parse.
        #[source]
        source: ShamirError,
    },
    /// A well-formed share that is not the one issued to this member: wrong (another member's, an old one) or
    /// corrupted.
    #[error("the share of member {member_id} is wrong or corrupted (its digest does not match)")]
    DigestMismatch {
        /// The member.
        member_id: String,
    },
}

/// Issues recovery shares of `latest` to `members`, any `threshold` of whom can restore it; see the module
/// documentation for what the record holds. Refuses no members, threshold 0, a threshold above the number of
/// members, more than 255 members, a member listed twice and a key that cannot encrypt.
pub fn issue(
    latest: &LedgerSecret,
    members: &[RecoveryMember<'_>],
    threshold: usize,
    previous_secret_stored_version: Option<u64>,
    rng: &mut impl CryptoRngCore,
) -> Result<RecoverySharesInfo, SharesError> {
    check_issue_parameters(members, threshold)?;
    let mut wrapping_key = [0u8; SECRET_SIZE_BYTES];
    rng.fill_bytes(&mut wrapping_key);
    let wrapped_latest_ledger_secret = wrap(&wrapping_key, latest, rng);
    let shares = shamir::split(&wrapping_key, members.len(), threshold, rng).map_err(SharesError::Sharing)?;
    let mut encrypted_shares = BTreeMap::new();
    let mut share_digests = BTreeMap::new();
    for (member, share) in members.iter().zip(&shares) {
        let plain = share.to_bytes();
        let encrypted =
            oaep::encrypt(member.encryption_key_pem, &plain, rng).map_err(|source| SharesError::EncryptShare {
                member_id: member.member_id.to_string(),
                source,
            })?;
        encrypted_shares.insert(member.member_id.to_string(), encrypted);
        share_digests.insert(member.member_id.to_string(), share_digest(&plain));
    }
    Ok(RecoverySharesInfo {
        wrapped_latest_ledger_secret,
        encrypted_shares,
        previous_secret_stored_version,
        share_digests,
    })
}

/// The refusals of [`issue`] that do not need the keys.
fn check_issue_parameters(members: &[RecoveryMember<'_>], threshold: usize) -> Result<(), SharesError> {
    if members.is_empty() {
        return Err(SharesError::NoRecoveryMembers);
    }
    if threshold == 0 {
        return Err(SharesError::ThresholdZero);
    }
    if members.len() > MAX_SHARES {
        return Err(SharesError::TooManyMembers { members: members.len() });
    }
    if threshold > members.len() {
        return Err(SharesError::ThresholdAboveMembers {
            threshold,
            members: members.len(),
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    for member in members {
        if !seen.insert(member.member_id) {
            return Err(SharesError::DuplicateMember {
                member_id: member.member_id.to_string(),
            });
        }
    }
    Ok(())
}

/// Checks one member's decrypted share against the record, on its own: the member must have a share in it, and
/// the bytes must be a share whose digest is the one issued to them.
pub fn check_share(info: &RecoverySharesInfo, member_id: &str, share: &[u8]) -> Result<(), ShareRefusal> {
    let member = || member_id.to_string();
    if !info.encrypted_shares.contains_key(member_id) {
        return Err(ShareRefusal::NotRecoveryMember { member_id: member() });
    }
    let expected = info
        .share_digests
        .get(member_id)
        .ok_or_else(|| ShareRefusal::NoDigest { member_id: member() })?;
    Share::from_bytes(share).map_err(|source| ShareRefusal::Malformed {
        member_id: member(),
        source,
    })?;
    if share_digest(share) != *expected {
        return Err(ShareRefusal::DigestMismatch { member_id: member() });
    }
    Ok(())
}

/// Restores the latest ledger secret from `shares` (decrypted shares, each checked with [`check_share`] when it
/// was submitted), given the service's recovery `threshold`. Refuses fewer shares than the threshold, more than
/// 255, a share not issued with this record and duplicates; a wrapping key that does not unwrap the secret is an error, never
/// a wrong secret.
pub fn restore(info: &RecoverySharesInfo, shares: &[Vec<u8>], threshold: usize) -> Result<LedgerSecret, SharesError> {
    if shares.len() < threshold.max(1) {
        return Err(SharesError::NotEnoughShares {
            submitted: shares.len(),
            threshold,
        });
    }
    if shares.len() > MAX_SHARES {
        return Err(SharesError::TooManyShares {
            submitted: shares.len(),
        });
    }
    let mut parsed = Vec::with_capacity(shares.len());
    for (index, bytes) in shares.iter().enumerate() {
        let share = Share::from_bytes(bytes).map_err(|source| SharesError::MalformedShare { index, source })?;
        let digest = share_digest(bytes);
        if !info.share_digests.values().any(|d| *d == digest) {
            return Err(SharesError::UnknownShare { index });
        }
        parsed.push(share);
    }
    let wrapping_key = shamir::combine(&parsed).map_err(SharesError::Sharing)?;
    unwrap(&wrapping_key, &info.wrapped_latest_ledger_secret)
}

/// Hex SHA-256 of a share's bytes, as `share_digests` holds it.
pub fn share_digest(share: &[u8]) -> String {
    hex::encode(sha256(share))
}

/// `tag ‖ iv ‖ AES-256-GCM(wrapping key, iv, latest)` with a fresh IV.
fn wrap(wrapping_key: &[u8; SECRET_SIZE_BYTES], latest: &LedgerSecret, rng: &mut impl CryptoRngCore) -> Vec<u8> {
    let mut iv = [0u8; GCM_IV_SIZE];
    rng.fill_bytes(&mut iv);
    let (ciphertext, tag) = Aes256GcmKey::from_bytes(*wrapping_key).encrypt(&iv, latest.raw(), &[]);
    let mut out = Vec::with_capacity(WRAPPED_SECRET_SIZE_BYTES);
    out.extend_from_slice(&tag);
    out.extend_from_slice(&iv);
    out.extend_from_slice(&ciphertext);
    out
}

/// The inverse of [`wrap`]; fails on another length or when the tag does not verify.
fn unwrap(wrapping_key: &[u8; SECRET_SIZE_BYTES], wrapped: &[u8]) -> Result<LedgerSecret, SharesError> {
    let length_error = || SharesError::WrappedSecretLength { found: wrapped.len() };
    if wrapped.len() != WRAPPED_SECRET_SIZE_BYTES {
        return Err(length_error());
    }
    let (tag, rest) = wrapped.split_at(GCM_TAG_SIZE);
    let (iv, ciphertext) = rest.split_at(GCM_IV_SIZE);
    let tag: &[u8; GCM_TAG_SIZE] = tag.try_into().map_err(|_| length_error())?;
    let iv: &[u8; GCM_IV_SIZE] = iv.try_into().map_err(|_| length_error())?;
    let plain = Aes256GcmKey::from_bytes(*wrapping_key)
        .decrypt(iv, ciphertext, tag, &[])
        .map_err(SharesError::Unwrap)?;
    let raw: [u8; SECRET_SIZE_BYTES] = plain.as_slice().try_into().map_err(|_| length_error())?;
    Ok(LedgerSecret::from_bytes(raw))
}

/// Bytes as a base64 (standard alphabet, padded) JSON string, as CCF writes byte vectors.
mod base64_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

/// A map of member id to bytes, each as a base64 JSON string.
mod base64_map {
    use base64::Engine;
    use serde::ser::SerializeMap;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::collections::BTreeMap;

    pub(super) fn serialize<S: Serializer>(map: &BTreeMap<String, Vec<u8>>, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_map(Some(map.len()))?;
        for (key, bytes) in map {
            out.serialize_entry(key, &base64::engine::general_purpose::STANDARD.encode(bytes))?;
        }
        out.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<String, Vec<u8>>, D::Error> {
        let texts = BTreeMap::<String, String>::deserialize(deserializer)?;
        texts
            .into_iter()
            .map(|(key, text)| {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(&text)
                    .map_err(|e| serde::de::Error::custom(format!("encrypted share of {key}: {e}")))?;
                Ok((key, bytes))
            })
            .collect()
    }
}
