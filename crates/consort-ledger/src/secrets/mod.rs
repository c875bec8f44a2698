//! Ledger secrets: the versioned keyring that encrypts private domains, and (in [`shares`]) the recovery shares
//! that let a quorum of members bring the latest secret back after every node is lost.
//!
//! A secret's *version* is the first seqno it encrypts. The service starts with one secret at version 1; a rekey at
//! seqno `r` adds a secret at version `r + 1`, so the rekey transaction itself is still written under the old one.

pub mod keyring;
pub mod shares;

/// Where a rekey writes the new ledger secret, encrypted to each trusted node (CCF's table name; JSON at the
/// singleton key).
pub const ENCRYPTED_LEDGER_SECRETS_TABLE: &str = "public:ccf.internal.encrypted_ledger_secrets";
/// Where a rekey writes the previous ledger secret encrypted under the new one, so that the latest secret unlocks
/// all of history (CCF's table name; JSON at the singleton key).
pub const HISTORICAL_ENCRYPTED_LEDGER_SECRET_TABLE: &str = "public:ccf.internal.historical_encrypted_ledger_secret";

pub use keyring::{KeyringError, LedgerSecrets};
