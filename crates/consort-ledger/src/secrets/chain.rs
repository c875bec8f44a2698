//! The chain of ledger secrets: each secret after the first is written with its predecessor encrypted under it
//! (the historical table), so the latest secret, which recovery shares restore, unlocks every older one. This
//! walks the chain back from the latest secret over the historical table's writes, read from the ledger's public
//! domains.
//!
//! A write of [`super::HISTORICAL_ENCRYPTED_LEDGER_SECRET_TABLE`] at seqno `s` holds the previous secret encrypted
//! under the secret of version `next_version` if it is set (a recovery: the recovered service's secret started
//! before the write), else `s + 1` (a rekey: the new secret starts at the next transaction). The previous secret is
//! AES-256-GCM encrypted, no additional data: `iv (12) ‖ ciphertext (32) ‖ tag (16)`, base64.

use super::{HistoricalLedgerSecret, KeyringError, LedgerSecrets};
use crate::entry::LedgerSecret;
use base64::Engine as _;
use consort_crypto::{Aes256GcmKey, GCM_IV_SIZE, GCM_TAG_SIZE};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// One write of the historical table, as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoricalWrite {
    /// The transaction that wrote it.
    pub seqno: u64,
    /// What it wrote.
    pub entry: HistoricalLedgerSecret,
}

impl HistoricalWrite {
    /// The version of the secret the previous one is encrypted under.
    pub fn encrypting_version(&self) -> u64 {
        self.entry.next_version.unwrap_or(self.seqno + 1)
    }
}

/// Why the chain could not be followed back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// A previous secret that is not base64 of `iv ‖ ciphertext ‖ tag` of a 32-byte secret.
    #[error("the previous secret of version {version} (written at seqno {seqno}) is malformed")]
    Malformed {
        /// The previous secret's version.
        version: u64,
        /// The write holding it.
        seqno: u64,
    },
    /// A previous secret that does not decrypt under its successor: the successor is wrong or the write altered.
    #[error("the previous secret of version {version} (written at seqno {seqno}) does not decrypt")]
    Decrypt {
        /// The previous secret's version.
        version: u64,
        /// The write holding it.
        seqno: u64,
    },
    /// A chain whose versions do not go strictly back.
    #[error("the chain does not go back: version {version} follows {after}")]
    NotBackwards {
        /// The version found.
        version: u64,
        /// The version it should precede.
        after: u64,
    },
    /// The keyring refused the secrets.
    #[error(transparent)]
    Keyring(#[from] KeyringError),
}

/// `previous` encrypted under `new` with `iv` (draw it at random, once per wrap): `iv ‖ ciphertext ‖ tag`.
pub fn wrap_previous(new: &LedgerSecret, previous: &LedgerSecret, iv: &[u8; GCM_IV_SIZE]) -> Vec<u8> {
    let (cipher, tag) = Aes256GcmKey::from_bytes(*new.raw()).encrypt(iv, previous.raw(), b"");
    [&iv[..], &cipher, &tag].concat()
}

/// The secret [`wrap_previous`] wrapped under `new`, or `None` if `data` is not such a wrap under `new`.
pub fn unwrap_previous(new: &LedgerSecret, data: &[u8]) -> Option<LedgerSecret> {
    if data.len() != GCM_IV_SIZE + 32 + GCM_TAG_SIZE {
        return None;
    }
    let (iv, rest) = data.split_at(GCM_IV_SIZE);
    let (cipher, tag) = rest.split_at(rest.len() - GCM_TAG_SIZE);
    let plain = Aes256GcmKey::from_bytes(*new.raw())
        .decrypt(iv.try_into().ok()?, cipher, tag.try_into().ok()?, b"")
        .ok()?;
    Some(LedgerSecret::from_bytes(plain.try_into().ok()?))
}

/// The version of the newest secret of a ledger whose last rekey was at `last_rekey` (a write of the encrypted
/// ledger secrets table) and whose historical writes are `historical`: one past the last rekey, or the version a
/// recovery started (`next_version`), whichever is later; 1 for a ledger that never changed its secret.
pub fn latest_version(last_rekey: Option<u64>, historical: &[HistoricalWrite]) -> u64 {
    let after_rekey = last_rekey.map_or(1, |s| s + 1);
    let after_recovery = historical
        .iter()
        .filter_map(|w| w.entry.next_version)
        .max()
        .unwrap_or(1);
    after_rekey.max(after_recovery)
}

/// Every secret of the chain that ends with `latest` (its version and secret), following `historical` back: the
/// write encrypted under the current secret gives the one before it, until no write is. The result is checked only
/// by each decryption (AES-GCM authenticates it); reading the entries with it checks the rest.
pub fn restore_chain(latest: (u64, LedgerSecret), historical: &[HistoricalWrite]) -> Result<LedgerSecrets, ChainError> {
    let mut found = vec![latest.clone()];
    let (mut version, mut secret) = latest;
    while let Some(w) = historical.iter().rev().find(|w| w.encrypting_version() == version) {
        let Some(previous) = &w.entry.previous_ledger_secret else {
            break;
        };
        if previous.version >= version {
            return Err(ChainError::NotBackwards {
                version: previous.version,
                after: version,
            });
        }
        let malformed = || ChainError::Malformed {
            version: previous.version,
            seqno: w.seqno,
        };
        let data = B64.decode(&previous.encrypted_data).map_err(|_| malformed())?;
        if data.len() != GCM_IV_SIZE + 32 + GCM_TAG_SIZE {
            return Err(malformed());
        }
        let older = unwrap_previous(&secret, &data).ok_or(ChainError::Decrypt {
            version: previous.version,
            seqno: w.seqno,
        })?;
        found.push((previous.version, older.clone()));
        (version, secret) = (previous.version, older);
    }
    LedgerSecrets::from_versions(found).ok_or(ChainError::Keyring(KeyringError::VersionZero))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::PreviousLedgerSecret;

    fn s(b: u8) -> LedgerSecret {
        LedgerSecret::from_bytes([b; 32])
    }

    fn write(
        seqno: u64,
        next_version: Option<u64>,
        under: &LedgerSecret,
        prev: (u64, &LedgerSecret),
    ) -> HistoricalWrite {
        HistoricalWrite {
            seqno,
            entry: HistoricalLedgerSecret {
                previous_ledger_secret: Some(PreviousLedgerSecret {
                    encrypted_data: B64.encode(wrap_previous(under, prev.1, &[seqno as u8; GCM_IV_SIZE])),
                    version: prev.0,
                    previous_secret_stored_version: None,
                }),
                next_version,
            },
        }
    }

    #[test]
    fn the_latest_secret_unlocks_rekeys_and_an_earlier_recovery() {
        // Version 1; rekey at 10 (v11); a recovery at base 20 starting v21, whose open at 25 chains v11; rekey at 30.
        let h = vec![
            write(10, None, &s(2), (1, &s(1))),
            write(25, Some(21), &s(3), (11, &s(2))),
            write(30, None, &s(4), (21, &s(3))),
        ];
        assert_eq!(latest_version(Some(30), &h), 31);
        let keyring = restore_chain((31, s(4)), &h).unwrap();
        let versions: Vec<(u64, u8)> = keyring.iter().map(|(v, k)| (v, k.raw()[0])).collect();
        assert_eq!(versions, vec![(1, 1), (11, 2), (21, 3), (31, 4)]);
        // A ledger that never rekeyed: the secret alone.
        assert_eq!(latest_version(None, &[]), 1);
        assert_eq!(restore_chain((1, s(1)), &[]).unwrap().len(), 1);
        // After a recovery with no rekey since, the recovery's version is the latest.
        assert_eq!(latest_version(Some(10), &h[..2]), 21);
    }

    #[test]
    fn a_wrong_latest_secret_or_an_altered_write_is_an_error() {
        let h = vec![write(10, None, &s(2), (1, &s(1)))];
        assert_eq!(
            restore_chain((11, s(9)), &h).unwrap_err(),
            ChainError::Decrypt { version: 1, seqno: 10 }
        );
        let mut bad = h.clone();
        if let Some(p) = bad[0].entry.previous_ledger_secret.as_mut() {
            p.encrypted_data = "!!".into();
        }
        assert_eq!(
            restore_chain((11, s(2)), &bad).unwrap_err(),
            ChainError::Malformed { version: 1, seqno: 10 }
        );
        let mut forward = h.clone();
        if let Some(p) = forward[0].entry.previous_ledger_secret.as_mut() {
            p.version = 11;
        }
        assert!(matches!(
            restore_chain((11, s(2)), &forward).unwrap_err(),
            ChainError::NotBackwards { .. }
        ));
        assert!(unwrap_previous(&s(2), b"short").is_none());
    }
}
