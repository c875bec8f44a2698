//! Ledger secrets: how the ledger secret is kept, handed over and recovered; [`shares`] holds the recovery shares
//! that let k members restore it.

pub mod shares;
