//! Rekeys as the replica sees them: a transaction that writes `public:ccf.internal.encrypted_ledger_secrets`
//! carries a new ledger secret, encrypted to each trusted node, that encrypts every transaction after it. The
//! replica learns it when it takes the transaction (proposed as primary, received as backup, or replayed), in log
//! order, so the next entry is already read and written with it; a rollback forgets it again.

use crate::error::ConsensusError;
use consort_kv::WriteSet;
use consort_ledger::secrets::ENCRYPTED_LEDGER_SECRETS_TABLE;
use consort_ledger::{KeyringError, LedgerSecret, LedgerSecrets, SINGLETON_KEY};

/// Why this node could not take the secret a rekey gave it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RekeyFault {
    /// The node's own slot is there but does not open (wrong key, altered bytes, malformed JSON).
    #[error("this node's copy does not open: {0}")]
    Unreadable(String),
    /// The keyring refused it.
    #[error(transparent)]
    Keyring(#[from] KeyringError),
}

/// Opens this node's copy of a new ledger secret. The node implements it with its encryption key; the cores never
/// see that key.
pub trait SecretOpener: Send + Sync {
    /// This node's new ledger secret in `value`, a write of [`ENCRYPTED_LEDGER_SECRETS_TABLE`] (its JSON), or
    /// `Ok(None)` when the write holds no copy for this node (it was not trusted yet; its keyring came with its
    /// join).
    fn open(&self, value: &[u8]) -> Result<Option<LedgerSecret>, String>;
}

/// The new ledger secret that transaction `seqno`'s public write set `public` gives this node, added to `secrets`
/// from `seqno + 1` on. Returns whether the keyring changed. Without an opener (tests, tools) rekeys are not
/// followed. A secret already known at that version is replaced: the ledger is what decides which secret a seqno
/// uses, and a keyring restored from disk may still hold a rekey that was later rolled back.
pub(crate) fn learn(
    secrets: &mut LedgerSecrets,
    opener: Option<&dyn SecretOpener>,
    seqno: u64,
    public: &WriteSet,
) -> Result<bool, ConsensusError> {
    let Some(value) = public
        .maps
        .get(ENCRYPTED_LEDGER_SECRETS_TABLE)
        .and_then(|m| m.writes.get(&SINGLETON_KEY[..]))
        .and_then(|v| v.as_deref())
    else {
        return Ok(false);
    };
    let Some(opener) = opener else {
        return Ok(false);
    };
    let fault = |f: RekeyFault| ConsensusError::Rekey {
        seqno,
        source: Box::new(f),
    };
    let Some(secret) = opener.open(value).map_err(|e| fault(RekeyFault::Unreadable(e)))? else {
        return Ok(false);
    };
    let version = seqno + 1;
    if secrets.iter().any(|(v, s)| v == version && s.raw() == secret.raw()) {
        return Ok(false);
    }
    // What a rekey at or after this seqno introduced is replaced by what the ledger says here.
    secrets.truncate(seqno.saturating_sub(1));
    secrets.insert(version, secret).map_err(|e| fault(e.into()))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use consort_kv::MapWrites;

    struct Plain;
    impl SecretOpener for Plain {
        fn open(&self, value: &[u8]) -> Result<Option<LedgerSecret>, String> {
            match value {
                [] => Ok(None),
                [b] => Ok(Some(LedgerSecret::from_bytes([*b; 32]))),
                _ => Err("bad".into()),
            }
        }
    }

    fn rekey_ws(value: &[u8]) -> WriteSet {
        let mut ws = WriteSet::default();
        let mut m = MapWrites::default();
        m.writes.insert(SINGLETON_KEY.to_vec(), Some(value.to_vec()));
        ws.maps.insert(ENCRYPTED_LEDGER_SECRETS_TABLE.into(), m);
        ws
    }

    #[test]
    fn a_rekey_adds_the_secret_from_the_next_seqno() {
        let mut k = LedgerSecrets::new(LedgerSecret::from_bytes([1; 32]));
        assert!(learn(&mut k, Some(&Plain), 10, &rekey_ws(&[2])).unwrap());
        assert_eq!(k.for_seqno(10).raw(), &[1; 32]);
        assert_eq!(k.for_seqno(11).raw(), &[2; 32]);
        // Learning it again (replay) changes nothing.
        assert!(!learn(&mut k, Some(&Plain), 10, &rekey_ws(&[2])).unwrap());
        // A different rekey at the same seqno (the first was rolled back) replaces it, and drops later ones.
        assert!(learn(&mut k, Some(&Plain), 20, &rekey_ws(&[3])).unwrap());
        assert!(learn(&mut k, Some(&Plain), 10, &rekey_ws(&[4])).unwrap());
        assert_eq!(k.len(), 2);
        assert_eq!(k.for_seqno(100).raw(), &[4; 32]);
    }

    #[test]
    fn no_copy_no_opener_or_other_tables_change_nothing() {
        let mut k = LedgerSecrets::new(LedgerSecret::from_bytes([1; 32]));
        assert!(!learn(&mut k, Some(&Plain), 10, &rekey_ws(&[])).unwrap());
        assert!(!learn(&mut k, None, 10, &rekey_ws(&[2])).unwrap());
        assert!(!learn(&mut k, Some(&Plain), 10, &WriteSet::default()).unwrap());
        assert_eq!(k.len(), 1);
    }

    #[test]
    fn an_unreadable_copy_is_an_error_naming_the_transaction() {
        let mut k = LedgerSecrets::new(LedgerSecret::from_bytes([1; 32]));
        let err = learn(&mut k, Some(&Plain), 10, &rekey_ws(&[2, 3])).unwrap_err();
        assert!(err.to_string().contains("10"), "{err}");
        assert_eq!(k.len(), 1);
    }
}
