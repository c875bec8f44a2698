//! Ledger secrets: the versioned keyring that encrypts private domains, and (in [`shares`]) the recovery shares
//! that let a quorum of members bring the latest secret back after every node is lost.
//!
//! A secret's *version* is the first seqno it encrypts. The service starts with one secret at version 1; a rekey at
//! seqno `r` adds a secret at version `r + 1`, so the rekey transaction itself is still written under the old one.

pub mod chain;
pub mod keyring;
pub mod shares;

/// Where a rekey writes the new ledger secret, encrypted to each trusted node (CCF's table name; JSON at the
/// singleton key).
pub const ENCRYPTED_LEDGER_SECRETS_TABLE: &str = "public:ccf.internal.encrypted_ledger_secrets";
/// Where a rekey writes the previous ledger secret encrypted under the new one, so that the latest secret unlocks
/// all of history (CCF's table name; JSON at the singleton key).
pub const HISTORICAL_ENCRYPTED_LEDGER_SECRET_TABLE: &str = "public:ccf.internal.historical_encrypted_ledger_secret";

pub use keyring::{KeyringError, LedgerSecrets};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One node's copy of a ledger secret in [`ENCRYPTED_LEDGER_SECRETS_TABLE`] (CCF's `EncryptedLedgerSecret`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptedLedgerSecret {
    /// The version the secret starts at; unset for a rekey (it starts at the next transaction).
    pub version: Option<u64>,
    /// The raw secret, RSA-OAEP-SHA-256 encrypted to the node's encryption key, base64.
    pub encrypted_secret: String,
    /// Where the previous secret was stored, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_stored_version: Option<u64>,
}

/// The value of [`ENCRYPTED_LEDGER_SECRETS_TABLE`]: by node id, that node's copies (CCF's `LedgerSecretsForNodes`).
pub type EncryptedSecretsForNodes = BTreeMap<String, Vec<EncryptedLedgerSecret>>;

/// The previous ledger secret, encrypted under the one a rekey introduces (CCF's `PreviousLedgerSecretInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousLedgerSecret {
    /// AES-256-GCM under the new secret, `iv ‖ ciphertext ‖ tag`, base64.
    pub encrypted_data: String,
    /// The version the previous secret started at.
    pub version: u64,
    /// Where the secret before it was stored, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_stored_version: Option<u64>,
}

/// The value of [`HISTORICAL_ENCRYPTED_LEDGER_SECRET_TABLE`] (CCF's `EncryptedLedgerSecretInfo`), which CCF's
/// `verify_ledger_secrets_chain.py` reads: each rekey's `previous_ledger_secret.version` is one past the seqno of the
/// rekey before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoricalLedgerSecret {
    /// The secret the rekey replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_ledger_secret: Option<PreviousLedgerSecret>,
    /// Where the next secret starts, when it is not the next transaction (after a recovery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_version: Option<u64>,
}
