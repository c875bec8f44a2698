//! Ledger secrets: the versioned keyring that encrypts private domains, and (in [`shares`]) the recovery shares
//! that let a quorum of members bring the latest secret back after every node is lost.
//!
//! A secret's *version* is the first seqno it encrypts. The service starts with one secret at version 1; a rekey at
//! seqno `r` adds a secret at version `r + 1`, so the rekey transaction itself is still written under the old one.

pub mod keyring;

pub use keyring::{KeyringError, LedgerSecrets};
