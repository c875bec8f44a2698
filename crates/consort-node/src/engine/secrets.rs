//! The node's side of ledger secrets: opening its own copy of a rekey's new secret with its encryption key,
//! writing a rekey (the new secret encrypted to every trusted node, the previous one encrypted under the new one so
//! that the latest secret unlocks all of history), and keeping the sealed keyring file and the engine's mirror in
//! step with the replica's keyring.

use super::{fatal, Engine, Locked};
use crate::identity::{save_ledger_secrets, Identities};
use base64::Engine as _;
use consort_consensus::SecretOpener;
use consort_crypto::Aes256GcmKey;
use consort_gov::tables::{MEMBERS_ENCRYPTION_PUBLIC_KEYS, MEMBERS_INFO, SERVICE_CONFIG};
use consort_kv::Tx;
use consort_ledger::secrets::shares::{self, RecoveryMember, RecoverySharesInfo, SharesError, RECOVERY_SHARES_TABLE};
use consort_ledger::secrets::{
    EncryptedLedgerSecret, EncryptedSecretsForNodes, HistoricalLedgerSecret, PreviousLedgerSecret,
    ENCRYPTED_LEDGER_SECRETS_TABLE, HISTORICAL_ENCRYPTED_LEDGER_SECRET_TABLE,
};
use consort_ledger::{LedgerSecret, LedgerSecrets, NODES_INFO_TABLE, SINGLETON_KEY};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Opens this node's copy of a rekey's secret: its entry in the table, RSA-OAEP under its encryption key.
pub struct NodeSecretOpener {
    node_id: String,
    enc_key_pem: String,
}

impl NodeSecretOpener {
    /// The opener of the node whose identity is `ids`.
    pub fn new(ids: &Identities) -> Self {
        NodeSecretOpener {
            node_id: ids.node_id.to_string(),
            enc_key_pem: ids.node_enc_key_pem.clone(),
        }
    }
}

impl SecretOpener for NodeSecretOpener {
    fn open(&self, value: &[u8]) -> Result<Option<LedgerSecret>, String> {
        let table: EncryptedSecretsForNodes = serde_json::from_slice(value).map_err(|e| e.to_string())?;
        let Some(mine) = table.get(&self.node_id).and_then(|copies| copies.last()) else {
            return Ok(None);
        };
        let sealed = B64.decode(&mine.encrypted_secret).map_err(|e| e.to_string())?;
        let raw = consort_crypto::oaep::decrypt(&self.enc_key_pem, &sealed).map_err(|e| e.to_string())?;
        let raw: [u8; 32] = raw.try_into().map_err(|_| "the secret is not 32 bytes".to_string())?;
        Ok(Some(LedgerSecret::from_bytes(raw)))
    }
}

/// Why a rekey could not be written.
#[derive(Debug, thiserror::Error)]
pub enum RekeyError {
    /// A trusted node's encryption key is missing or unusable: it could not read what follows.
    #[error("node {node_id} has no usable encryption key: {reason}")]
    NodeKey {
        /// The node.
        node_id: String,
        /// What was wrong.
        reason: String,
    },
    /// No trusted node to give the secret to (cannot happen on a primary).
    #[error("no trusted node to share a new ledger secret with")]
    NoTrustedNode,
}

/// The trusted nodes and their encryption public keys, from the nodes table as `tx` sees it.
fn trusted_node_keys(tx: &mut Tx<'_>) -> Result<Vec<(String, String)>, RekeyError> {
    let mut keys = Vec::new();
    let mut missing = None;
    tx.foreach(NODES_INFO_TABLE, |k, v| {
        let node_id = String::from_utf8_lossy(k).into_owned();
        let info: serde_json::Value = serde_json::from_slice(v).unwrap_or_default();
        if info["status"] != "Trusted" {
            return true;
        }
        match info["encryption_pub_key"].as_str() {
            Some(pem) => keys.push((node_id, pem.to_string())),
            None => missing = Some(node_id),
        }
        missing.is_none()
    });
    if let Some(node_id) = missing {
        return Err(RekeyError::NodeKey {
            node_id,
            reason: "not recorded".into(),
        });
    }
    if keys.is_empty() {
        return Err(RekeyError::NoTrustedNode);
    }
    Ok(keys)
}

/// Writes a rekey into `tx`: a fresh secret encrypted to every trusted node, and `current` (the newest secret and
/// its version) encrypted under it. The replica starts using the new secret from the transaction after `tx`.
pub fn write_rekey(tx: &mut Tx<'_>, current: (u64, &LedgerSecret)) -> Result<LedgerSecret, RekeyError> {
    let new = LedgerSecret::generate();
    let mut copies = EncryptedSecretsForNodes::new();
    for (node_id, pem) in trusted_node_keys(tx)? {
        let sealed =
            consort_crypto::oaep::encrypt(&pem, new.raw(), &mut rand_core::OsRng).map_err(|e| RekeyError::NodeKey {
                node_id: node_id.clone(),
                reason: e.to_string(),
            })?;
        copies.insert(
            node_id,
            vec![EncryptedLedgerSecret {
                version: None,
                encrypted_secret: B64.encode(sealed),
                previous_secret_stored_version: None,
            }],
        );
    }
    let (previous_version, previous) = current;
    let historical = HistoricalLedgerSecret {
        previous_ledger_secret: Some(PreviousLedgerSecret {
            encrypted_data: B64.encode(wrap_previous(&new, previous)),
            version: previous_version,
            previous_secret_stored_version: None,
        }),
        next_version: None,
    };
    tx.put(
        ENCRYPTED_LEDGER_SECRETS_TABLE,
        &SINGLETON_KEY,
        &serde_json::to_vec(&copies).unwrap_or_default(),
    );
    tx.put(
        HISTORICAL_ENCRYPTED_LEDGER_SECRET_TABLE,
        &SINGLETON_KEY,
        &serde_json::to_vec(&historical).unwrap_or_default(),
    );
    Ok(new)
}

/// The active recovery members (member id, RSA encryption public key PEM) and the recovery threshold, as `tx`
/// sees them.
fn recovery_members(tx: &mut Tx<'_>) -> (Vec<(String, String)>, usize) {
    let mut keyed = Vec::new();
    tx.foreach(MEMBERS_ENCRYPTION_PUBLIC_KEYS, |k, v| {
        keyed.push((
            String::from_utf8_lossy(k).into_owned(),
            String::from_utf8_lossy(v).into_owned(),
        ));
        true
    });
    let active: Vec<(String, String)> = keyed
        .into_iter()
        .filter(|(id, _)| {
            tx.get(MEMBERS_INFO, id.as_bytes())
                .and_then(|raw| serde_json::from_slice::<serde_json::Value>(&raw).ok())
                .is_some_and(|info| info["status"] == "Active")
        })
        .collect();
    let threshold = tx
        .get(SERVICE_CONFIG, &SINGLETON_KEY)
        .and_then(|raw| serde_json::from_slice::<serde_json::Value>(&raw).ok())
        .and_then(|c| c["recovery_threshold"].as_u64())
        .unwrap_or(0) as usize;
    (active, threshold)
}

/// Issues fresh recovery shares of `latest` to the active recovery members into
/// `public:ccf.internal.recovery_shares` (any `recovery_threshold` of them can restore it). Returns how many members
/// got one; a service without recovery members gets none (it cannot be recovered from shares).
pub fn issue_recovery_shares(tx: &mut Tx<'_>, latest: &LedgerSecret) -> Result<usize, SharesError> {
    let (members, threshold) = recovery_members(tx);
    if members.is_empty() {
        return Ok(0);
    }
    let list: Vec<RecoveryMember<'_>> = members
        .iter()
        .map(|(id, pem)| RecoveryMember {
            member_id: id,
            encryption_key_pem: pem,
        })
        .collect();
    let info = shares::issue(latest, &list, threshold, None, &mut rand_core::OsRng)?;
    tx.put(
        RECOVERY_SHARES_TABLE,
        &SINGLETON_KEY,
        &serde_json::to_vec(&info).unwrap_or_default(),
    );
    Ok(list.len())
}

/// `GET /gov/recovery/encrypted-shares/{memberId}`: the member's current encrypted share, base64, as
/// `submit_recovery_share.sh` reads it; `None` if the member has none.
pub fn encrypted_share(tx: &consort_kv::ReadTx<'_>, member_id: &str) -> Option<String> {
    let raw = tx.get(RECOVERY_SHARES_TABLE, &SINGLETON_KEY)?;
    let info: RecoverySharesInfo = serde_json::from_slice(&raw).ok()?;
    info.encrypted_shares.get(member_id).map(|s| B64.encode(s))
}

/// `previous` encrypted under `new` (AES-256-GCM, random IV): iv ‖ ciphertext ‖ tag.
fn wrap_previous(new: &LedgerSecret, previous: &LedgerSecret) -> Vec<u8> {
    let iv: [u8; consort_crypto::GCM_IV_SIZE] = consort_crypto::random_array();
    let (cipher, tag) = Aes256GcmKey::from_bytes(*new.raw()).encrypt(&iv, previous.raw(), b"");
    [&iv[..], &cipher, &tag].concat()
}

impl Engine {
    /// The ledger secrets as the replica last had them (the primary's include rekeys not yet committed).
    pub fn ledger_secrets(&self) -> LedgerSecrets {
        self.secrets.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Mirrors the replica's keyring when a rekey (or a rollback) changed it, and saves it sealed, so that a
    /// restarted node reads what it wrote before.
    pub(super) fn keep_secrets(&self, e: &mut Locked) {
        let mark = super::replica_secrets_mark(&e.replica);
        if mark == e.secrets_saved {
            return;
        }
        let secrets = e.replica.ledger_secrets().clone();
        if let Some(platform) = &self.platform {
            if let Err(err) = save_ledger_secrets(platform.as_ref(), &self.cfg.storage.secrets_dir, &secrets) {
                fatal("ledger secrets write", err);
            }
        }
        tracing::info!(secrets = mark.0, newest_version = mark.1, "ledger secrets changed");
        *self.secrets.write().unwrap_or_else(|e| e.into_inner()) = secrets;
        e.secrets_saved = mark;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use consort_kv::Store;

    fn node(tx: &mut Tx<'_>, id: &str, status: &str, key: Option<&str>) {
        let info = serde_json::json!({"status": status, "encryption_pub_key": key});
        tx.put(NODES_INFO_TABLE, id.as_bytes(), info.to_string().as_bytes());
    }

    fn opener(id: &str, key: &str) -> NodeSecretOpener {
        NodeSecretOpener {
            node_id: id.into(),
            enc_key_pem: key.into(),
        }
    }

    #[test]
    fn a_rekey_opens_for_every_trusted_node_and_chains_the_previous_secret() {
        let (a_key, a_pub) = consort_crypto::rsa_keys::generate_pem(2048).unwrap();
        let (b_key, b_pub) = consort_crypto::rsa_keys::generate_pem(2048).unwrap();
        let store = Store::new();
        let mut tx = store.begin();
        node(&mut tx, "a", "Trusted", Some(&a_pub));
        node(&mut tx, "b", "Trusted", Some(&b_pub));
        node(&mut tx, "c", "Pending", None);
        let old = LedgerSecret::from_bytes([7; 32]);
        let new = write_rekey(&mut tx, (12, &old)).unwrap();
        let copies = tx.get(ENCRYPTED_LEDGER_SECRETS_TABLE, &SINGLETON_KEY).unwrap();
        for (id, key) in [("a", &a_key), ("b", &b_key)] {
            let got = opener(id, key).open(&copies).unwrap().unwrap();
            assert_eq!(got.raw(), new.raw(), "node {id}");
        }
        // A node with no copy gets none; a node with another's key cannot open its copy.
        assert!(opener("c", &a_key).open(&copies).unwrap().is_none());
        assert!(opener("a", &b_key).open(&copies).is_err());
        // The chain entry holds the old secret under the new one, from where the old one started.
        let raw = tx
            .get(HISTORICAL_ENCRYPTED_LEDGER_SECRET_TABLE, &SINGLETON_KEY)
            .unwrap();
        let h: HistoricalLedgerSecret = serde_json::from_slice(&raw).unwrap();
        let prev = h.previous_ledger_secret.unwrap();
        assert_eq!(prev.version, 12);
        let data = B64.decode(prev.encrypted_data).unwrap();
        let (iv, rest) = data.split_at(consort_crypto::GCM_IV_SIZE);
        let (cipher, tag) = rest.split_at(rest.len() - consort_crypto::GCM_TAG_SIZE);
        let key = Aes256GcmKey::from_bytes(*new.raw());
        let plain = key
            .decrypt(iv.try_into().unwrap(), cipher, tag.try_into().unwrap(), b"")
            .unwrap();
        assert_eq!(plain, old.raw());
    }

    #[test]
    fn a_trusted_node_without_an_encryption_key_stops_the_rekey() {
        let store = Store::new();
        let mut tx = store.begin();
        node(&mut tx, "a", "Trusted", None);
        let err = write_rekey(&mut tx, (1, &LedgerSecret::from_bytes([1; 32]))).unwrap_err();
        assert!(err.to_string().contains("node a"), "{err}");
        let store = Store::new();
        let mut tx = store.begin();
        assert!(matches!(
            write_rekey(&mut tx, (1, &LedgerSecret::from_bytes([1; 32]))),
            Err(RekeyError::NoTrustedNode)
        ));
    }

    fn member(tx: &mut Tx<'_>, id: &str, status: &str, key: Option<&str>) {
        let info = serde_json::json!({"status": status});
        tx.put(MEMBERS_INFO, id.as_bytes(), info.to_string().as_bytes());
        if let Some(pem) = key {
            tx.put(MEMBERS_ENCRYPTION_PUBLIC_KEYS, id.as_bytes(), pem.as_bytes());
        }
    }

    #[test]
    fn recovery_shares_go_to_active_recovery_members_and_any_threshold_of_them_restores_the_secret() {
        let keys: Vec<(String, String)> = (0..3)
            .map(|_| consort_crypto::rsa_keys::generate_pem(2048).unwrap())
            .collect();
        let store = Store::new();
        let mut tx = store.begin();
        // No recovery member yet: nothing is issued.
        let secret = LedgerSecret::from_bytes([9; 32]);
        assert_eq!(issue_recovery_shares(&mut tx, &secret).unwrap(), 0);
        member(&mut tx, "m0", "Active", Some(&keys[0].1));
        member(&mut tx, "m1", "Active", Some(&keys[1].1));
        member(&mut tx, "m2", "Accepted", Some(&keys[2].1)); // not active yet: no share
        member(&mut tx, "m3", "Active", None); // no encryption key: not a recovery member
        tx.put(SERVICE_CONFIG, &SINGLETON_KEY, br#"{"recovery_threshold": 2}"#);
        assert_eq!(issue_recovery_shares(&mut tx, &secret).unwrap(), 2);
        let (_, write_set) = match store.commit(tx, |v, ws| (v, ws.clone())) {
            Ok(consort_kv::CommitOutcome::Committed { result, .. }) => result,
            other => panic!("{other:?}"),
        };
        assert!(!write_set.maps.is_empty());
        let read = store.read_only();
        assert!(encrypted_share(&read, "m2").is_none() && encrypted_share(&read, "m3").is_none());
        let mut plain = Vec::new();
        for (id, (private, _)) in ["m0", "m1"].iter().zip(&keys) {
            let b64 = encrypted_share(&read, id).unwrap();
            let share = consort_crypto::oaep::decrypt(private, &B64.decode(b64).unwrap()).unwrap();
            plain.push(share);
        }
        let info: RecoverySharesInfo =
            serde_json::from_slice(&read.get(RECOVERY_SHARES_TABLE, &SINGLETON_KEY).unwrap()).unwrap();
        assert_eq!(shares::restore(&info, &plain, 2).unwrap().raw(), secret.raw());
        assert!(shares::restore(&info, &plain[..1], 2).is_err());
    }

    #[test]
    fn malformed_tables_are_errors_not_panics() {
        let (key, _) = consort_crypto::rsa_keys::generate_pem(2048).unwrap();
        let o = opener("a", &key);
        for bad in [
            &b"not json"[..],
            br#"{"a": [{"version": null, "encrypted_secret": "!!"}]}"#,
            br#"{"a": 3}"#,
        ] {
            assert!(o.open(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(o.open(br#"{"a": []}"#).unwrap().is_none());
    }
}
