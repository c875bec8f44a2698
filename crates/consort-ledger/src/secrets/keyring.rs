//! [`LedgerSecrets`]: every ledger secret of the service by version, and the choice of secret for a seqno.

use crate::entry::LedgerSecret;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Why a secret was not added to the keyring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// Version 0 encrypts nothing (seqnos start at 1).
    #[error("a ledger secret cannot start at version 0")]
    VersionZero,
    /// A different secret is already known at this version: two rekeys at one seqno would fork the ledger.
    #[error("a different ledger secret is already known at version {0}")]
    Conflict(u64),
    /// The keyring starts later (it was restored from that point): an older secret cannot be slotted in.
    #[error("ledger secret version {0} is before the oldest known one, {1}")]
    BeforeOldest(u64, u64),
    /// Secrets to add before the oldest one reach up to or past it.
    #[error("restored ledger secret version {older} is not before the oldest known one, {first}")]
    OlderNotBefore {
        /// The newest version among the secrets to add.
        older: u64,
        /// The keyring's oldest version.
        first: u64,
    },
}

/// The ledger secrets by version (the first seqno each encrypts). Never empty: the oldest secret is held apart from
/// the later ones. Cloning is cheap (the later secrets are shared until one copy changes), so a snapshot build or a
/// reader thread can hold the keyring of the moment.
#[derive(Clone)]
pub struct LedgerSecrets {
    first_version: u64,
    first: LedgerSecret,
    /// Secrets added by rekeys, by version; every key is above `first_version`.
    later: Arc<BTreeMap<u64, LedgerSecret>>,
}

impl std::fmt::Debug for LedgerSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let versions: Vec<u64> = self.iter().map(|(v, _)| v).collect();
        f.debug_struct("LedgerSecrets").field("versions", &versions).finish()
    }
}

/// A service's first secret is a keyring of one.
impl From<LedgerSecret> for LedgerSecrets {
    fn from(first: LedgerSecret) -> Self {
        LedgerSecrets::new(first)
    }
}

impl LedgerSecrets {
    /// A keyring holding the service's first secret, at version 1.
    pub fn new(first: LedgerSecret) -> Self {
        LedgerSecrets {
            first_version: 1,
            first,
            later: Arc::default(),
        }
    }

    /// The secret that encrypts `seqno`: the one with the highest version at or below it. Seqno 0 (no entry) and
    /// seqnos before the first known version (a keyring restored from a later point) get the oldest secret.
    pub fn for_seqno(&self, seqno: u64) -> &LedgerSecret {
        match self.later.range(..=seqno).next_back() {
            Some((_, secret)) => secret,
            None => &self.first,
        }
    }

    /// The newest secret and its version: what the next transactions are written under.
    pub fn latest(&self) -> (u64, &LedgerSecret) {
        match self.later.iter().next_back() {
            Some((version, secret)) => (*version, secret),
            None => (self.first_version, &self.first),
        }
    }

    /// Adds `secret` from `version` on. Adding the same secret again is a no-op (replay learns each rekey again);
    /// a different secret at a known version, or a version at or below the oldest one's, is refused.
    pub fn insert(&mut self, version: u64, secret: LedgerSecret) -> Result<(), KeyringError> {
        if version == 0 {
            return Err(KeyringError::VersionZero);
        }
        let known = if version == self.first_version {
            Some(&self.first)
        } else {
            self.later.get(&version)
        };
        match known {
            Some(known) if known.raw() == secret.raw() => Ok(()),
            Some(_) => Err(KeyringError::Conflict(version)),
            None if version < self.first_version => Err(KeyringError::BeforeOldest(version, self.first_version)),
            None => {
                Arc::make_mut(&mut self.later).insert(version, secret);
                Ok(())
            }
        }
    }

    /// Forgets the secrets that rekeys after `last_seqno` introduced (their rekey transactions were rolled back):
    /// every version above `last_seqno + 1`. The oldest secret is always kept.
    pub fn truncate(&mut self, last_seqno: u64) {
        let cut = last_seqno.saturating_add(2);
        if self.later.range(cut..).next().is_some() {
            Arc::make_mut(&mut self.later).split_off(&cut);
        }
    }

    /// The version of the oldest secret: seqnos before it cannot be read with this keyring.
    pub fn first_version(&self) -> u64 {
        self.first_version
    }

    /// Whether this keyring holds the secret of `seqno` (it does not for seqnos before its oldest version: a
    /// recovered service's keyring before the old secrets are restored).
    pub fn covers(&self, seqno: u64) -> bool {
        seqno >= self.first_version
    }

    /// This keyring with `older`'s secrets added before its oldest one: every version of `older` must be below
    /// [`Self::first_version`] (disaster recovery restores the old service's secrets under the recovered service's
    /// newer ones).
    pub fn with_older(&self, older: &LedgerSecrets) -> Result<LedgerSecrets, KeyringError> {
        let (newest_older, _) = older.latest();
        if newest_older >= self.first_version {
            return Err(KeyringError::OlderNotBefore {
                older: newest_older,
                first: self.first_version,
            });
        }
        let pairs = older.iter().chain(self.iter()).map(|(v, s)| (v, s.clone()));
        LedgerSecrets::from_versions(pairs).ok_or(KeyringError::VersionZero)
    }

    /// Every (version, secret), oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &LedgerSecret)> {
        std::iter::once((self.first_version, &self.first)).chain(self.later.iter().map(|(v, s)| (*v, s)))
    }

    /// How many secrets the keyring holds (at least one).
    pub fn len(&self) -> usize {
        1 + self.later.len()
    }

    /// Always false: a keyring holds at least its first secret.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// A keyring from (version, secret) pairs, as a joiner receives or a node unseals them; `None` if empty or a
    /// version is 0 or repeated with different secrets.
    pub fn from_versions(pairs: impl IntoIterator<Item = (u64, LedgerSecret)>) -> Option<Self> {
        let mut map = BTreeMap::new();
        for (version, secret) in pairs {
            if version == 0 {
                return None;
            }
            if let Some(known) = map.insert(version, secret.clone()) {
                if known.raw() != secret.raw() {
                    return None;
                }
            }
        }
        let (first_version, first) = map.pop_first()?;
        Some(LedgerSecrets {
            first_version,
            first,
            later: Arc::new(map),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(b: u8) -> LedgerSecret {
        LedgerSecret::from_bytes([b; 32])
    }

    #[test]
    fn picks_the_newest_secret_at_or_below_the_seqno() {
        let mut k = LedgerSecrets::new(s(1));
        k.insert(11, s(2)).unwrap();
        k.insert(31, s(3)).unwrap();
        for (seqno, want) in [(0, 1), (1, 1), (10, 1), (11, 2), (30, 2), (31, 3), (1000, 3)] {
            assert_eq!(k.for_seqno(seqno).raw(), &[want; 32], "seqno {seqno}");
        }
        assert_eq!(k.latest().0, 31);
        assert_eq!(k.len(), 3);
    }

    #[test]
    fn insert_is_idempotent_and_refuses_a_conflict() {
        let mut k = LedgerSecrets::new(s(1));
        k.insert(5, s(2)).unwrap();
        k.insert(5, s(2)).unwrap();
        assert_eq!(k.insert(5, s(9)), Err(KeyringError::Conflict(5)));
        assert_eq!(k.insert(0, s(9)), Err(KeyringError::VersionZero));
        assert_eq!(k.insert(1, s(9)), Err(KeyringError::Conflict(1)));
        let mut late = LedgerSecrets::from_versions([(40, s(4))]).unwrap();
        assert_eq!(late.insert(7, s(9)), Err(KeyringError::BeforeOldest(7, 40)));
        assert_eq!(k.for_seqno(5).raw(), &[2; 32]);
    }

    #[test]
    fn truncate_forgets_rekeys_that_were_rolled_back() {
        let mut k = LedgerSecrets::new(s(1));
        k.insert(11, s(2)).unwrap(); // rekey at 10
        k.insert(21, s(3)).unwrap(); // rekey at 20
        let before = k.clone();
        k.truncate(20); // entry 20 survives: its secret stays
        assert_eq!(k.len(), 3);
        k.truncate(19); // the rekey at 20 is gone
        assert_eq!(k.latest().0, 11);
        k.truncate(0);
        assert_eq!(k.len(), 1);
        assert_eq!(k.latest().1.raw(), &[1; 32]);
        // The clone taken before is unchanged.
        assert_eq!(before.len(), 3);
    }

    #[test]
    fn truncate_keeps_the_oldest_of_a_restored_keyring() {
        let mut k = LedgerSecrets::from_versions([(40, s(4)), (60, s(6))]).unwrap();
        k.truncate(3);
        assert_eq!(k.len(), 1);
        assert_eq!(k.for_seqno(100).raw(), &[4; 32]);
    }

    #[test]
    fn from_versions_refuses_empty_zero_and_conflicts() {
        assert!(LedgerSecrets::from_versions([]).is_none());
        assert!(LedgerSecrets::from_versions([(0, s(1))]).is_none());
        assert!(LedgerSecrets::from_versions([(3, s(1)), (3, s(2))]).is_none());
        assert_eq!(LedgerSecrets::from_versions([(3, s(1)), (3, s(1))]).unwrap().len(), 1);
    }

    #[test]
    fn older_secrets_go_before_the_oldest_and_only_there() {
        let recovered = LedgerSecrets::from_versions([(101, s(9))]).unwrap();
        assert!(!recovered.covers(100) && recovered.covers(101));
        let old = LedgerSecrets::from_versions([(1, s(1)), (40, s(2))]).unwrap();
        let all = recovered.with_older(&old).unwrap();
        assert_eq!(all.first_version(), 1);
        assert!(all.covers(1));
        assert_eq!(all.for_seqno(39).raw(), &[1; 32]);
        assert_eq!(all.for_seqno(100).raw(), &[2; 32]);
        assert_eq!(all.for_seqno(101).raw(), &[9; 32]);
        let overlapping = LedgerSecrets::from_versions([(1, s(1)), (101, s(3))]).unwrap();
        assert_eq!(
            recovered.with_older(&overlapping).unwrap_err(),
            KeyringError::OlderNotBefore { older: 101, first: 101 }
        );
    }
}
