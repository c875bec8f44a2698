//! The EVM's state in Consort KV maps: a revm [`Database`] over a [`Tx`], and the commit of a transaction's
//! state changes back into it.
//!
//! Every map is private (no `public:` prefix), so balances, code and storage are encrypted in the ledger. Keys are
//! per account and per slot, so transactions touching different accounts do not conflict under the node's
//! optimistic concurrency; nothing global is written per transaction.
//!
//! Genesis balances of the configuration are credited lazily and once per configuration version: a read of an
//! account includes a credit not yet applied, and the first write of the account stores it and records the
//! version in [`GENESIS_MAP`].

use crate::block::block_hash;
use crate::config::EvmConfig;
use crate::limits::MAX_CACHED_CODES;
use alloy_primitives::{Address, B256, U256};
use consort_kv::Tx;
use revm::bytecode::Bytecode;
use revm::database_interface::DBErrorMarker;
use revm::primitives::{AddressMap, KECCAK_EMPTY};
use revm::state::{Account, AccountInfo};
use revm::Database;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Address (20 bytes) -> balance (32 bytes BE) ‖ nonce (8 bytes BE) ‖ code hash (32 bytes). Private.
pub const ACCOUNTS_MAP: &str = "eth.accounts";
/// Code hash (32 bytes) -> bytecode. Private.
pub const CODE_MAP: &str = "eth.code";
/// Address (20 bytes) ‖ slot (32 bytes BE) -> value (32 bytes BE); a zero value is removed. Private.
pub const STORAGE_MAP: &str = "eth.storage";
/// Address -> the configuration version whose genesis credit the account holds (8 bytes BE). Private.
pub const GENESIS_MAP: &str = "eth.genesis_applied";

const ACCOUNT_BYTES: usize = 72;

/// Why the state could not be read: a stored record is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {map} record")]
pub struct StateError {
    /// The map holding it.
    pub map: &'static str,
}

impl DBErrorMarker for StateError {}

/// An account as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoredAccount {
    /// Balance in wei.
    pub balance: U256,
    /// Nonce.
    pub nonce: u64,
    /// Keccak-256 of the code ([`KECCAK_EMPTY`] for none).
    pub code_hash: B256,
}

impl StoredAccount {
    fn encode(&self) -> [u8; ACCOUNT_BYTES] {
        let mut out = [0u8; ACCOUNT_BYTES];
        out[..32].copy_from_slice(&self.balance.to_be_bytes::<32>());
        out[32..40].copy_from_slice(&self.nonce.to_be_bytes());
        out[40..].copy_from_slice(self.code_hash.as_slice());
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        let bad = || StateError { map: ACCOUNTS_MAP };
        if bytes.len() != ACCOUNT_BYTES {
            return Err(bad());
        }
        let mut nonce = [0u8; 8];
        nonce.copy_from_slice(&bytes[32..40]);
        Ok(StoredAccount {
            balance: U256::from_be_slice(&bytes[..32]),
            nonce: u64::from_be_bytes(nonce),
            code_hash: B256::from_slice(&bytes[40..]),
        })
    }
}

/// Reads the stored account at `address` (without genesis credits).
pub fn read_account(tx: &mut Tx<'_>, address: &Address) -> Result<Option<StoredAccount>, StateError> {
    tx.get(ACCOUNTS_MAP, address.as_slice())
        .map(|v| StoredAccount::decode(&v))
        .transpose()
}

/// The storage key of `slot` of `address`.
pub fn storage_key(address: &Address, slot: &U256) -> [u8; 52] {
    let mut k = [0u8; 52];
    k[..20].copy_from_slice(address.as_slice());
    k[20..].copy_from_slice(&slot.to_be_bytes::<32>());
    k
}

/// Analysed bytecode by code hash, shared across transactions: code is content-addressed and never changes, so a
/// cached entry needs no read of [`CODE_MAP`] (at most [`MAX_CACHED_CODES`], then it stops growing).
#[derive(Debug, Default, Clone)]
pub struct CodeCache(Arc<RwLock<HashMap<B256, Bytecode>>>);

impl CodeCache {
    fn get(&self, hash: &B256) -> Option<Bytecode> {
        self.0.read().ok()?.get(hash).cloned()
    }
    fn put(&self, hash: B256, code: Bytecode) {
        if let Ok(mut m) = self.0.write() {
            if m.len() < MAX_CACHED_CODES {
                m.insert(hash, code);
            }
        }
    }
}

/// A revm database over a KV transaction. Remembers what it read of each account, so that
/// [`KvDb::commit_changes`] writes only what changed.
pub struct KvDb<'a, 't> {
    tx: &'a mut Tx<'t>,
    config: &'a EvmConfig,
    codes: &'a CodeCache,
    /// What `basic` returned per address (None: no account), and whether it included a pending genesis credit.
    loaded: HashMap<Address, (Option<StoredAccount>, bool)>,
}

impl std::fmt::Debug for KvDb<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvDb").field("loaded", &self.loaded.len()).finish()
    }
}

impl<'a, 't> KvDb<'a, 't> {
    /// A database reading `tx` under `config`.
    pub fn new(tx: &'a mut Tx<'t>, config: &'a EvmConfig, codes: &'a CodeCache) -> Self {
        KvDb {
            tx,
            config,
            codes,
            loaded: HashMap::new(),
        }
    }

    /// The account at `address` with any genesis credit not yet applied, and whether there was one.
    pub fn account(&mut self, address: &Address) -> Result<(Option<StoredAccount>, bool), StateError> {
        let stored = read_account(self.tx, address)?;
        let Some(credit) = self.config.genesis.get(address) else {
            return Ok((stored, false));
        };
        let applied = self
            .tx
            .get(GENESIS_MAP, address.as_slice())
            .is_some_and(|v| v.as_slice() == self.config.version.to_be_bytes());
        if applied {
            return Ok((stored, false));
        }
        let mut acc = stored.unwrap_or(StoredAccount {
            code_hash: KECCAK_EMPTY,
            ..StoredAccount::default()
        });
        acc.balance = acc.balance.saturating_add(*credit);
        Ok((Some(acc), true))
    }

    /// Writes the changes of one executed transaction. Accounts whose balance, nonce and code are unchanged are
    /// not written (revm touches the block's beneficiary and callees without changing them); `skip` (the fee
    /// beneficiary, whose credits are burned) is never written.
    pub fn commit_changes(&mut self, changes: AddressMap<Account>, skip: Address) {
        for (address, account) in changes {
            if address == skip || !account.is_touched() {
                continue;
            }
            let (before, credited) = self.loaded.get(&address).copied().unwrap_or((None, false));
            if account.is_selfdestructed() {
                // A destroyed account's genesis credit is spent: record it, or a redeploy at the same address
                // would collect it again.
                if credited {
                    self.tx
                        .put(GENESIS_MAP, address.as_slice(), &self.config.version.to_be_bytes());
                }
                self.tx.remove(ACCOUNTS_MAP, address.as_slice());
                for slot in account.storage.keys() {
                    self.tx.remove(STORAGE_MAP, &storage_key(&address, slot));
                }
                continue;
            }
            let after = StoredAccount {
                balance: account.info.balance,
                nonce: account.info.nonce,
                code_hash: account.info.code_hash,
            };
            let unchanged = before.map_or(
                after
                    == StoredAccount {
                        code_hash: KECCAK_EMPTY,
                        ..Default::default()
                    },
                |b| b == after,
            );
            if !unchanged || credited {
                self.tx.put(ACCOUNTS_MAP, address.as_slice(), &after.encode());
                if credited {
                    self.tx
                        .put(GENESIS_MAP, address.as_slice(), &self.config.version.to_be_bytes());
                }
            }
            if after.code_hash != KECCAK_EMPTY && before.is_none_or(|b| b.code_hash != after.code_hash) {
                if let Some(code) = &account.info.code {
                    self.tx
                        .put(CODE_MAP, after.code_hash.as_slice(), code.original_byte_slice());
                }
            }
            for (slot, value) in account.changed_storage_slots() {
                let key = storage_key(&address, slot);
                if value.present_value.is_zero() {
                    self.tx.remove(STORAGE_MAP, &key);
                } else {
                    self.tx.put(STORAGE_MAP, &key, &value.present_value.to_be_bytes::<32>());
                }
            }
        }
    }

    /// The transaction underneath.
    pub fn tx(&mut self) -> &mut Tx<'t> {
        self.tx
    }
}

impl Database for KvDb<'_, '_> {
    type Error = StateError;

    fn basic(&mut self, address: Address) -> Result<Option<AccountInfo>, StateError> {
        let (acc, credited) = self.account(&address)?;
        self.loaded.insert(address, (acc, credited));
        Ok(acc.map(|a| {
            let mut info = AccountInfo::new(a.balance, a.nonce, a.code_hash, Bytecode::default());
            if a.code_hash != KECCAK_EMPTY {
                info.code = self.codes.get(&a.code_hash);
            }
            info
        }))
    }

    fn code_by_hash(&mut self, code_hash: B256) -> Result<Bytecode, StateError> {
        if code_hash == KECCAK_EMPTY {
            return Ok(Bytecode::default());
        }
        if let Some(code) = self.codes.get(&code_hash) {
            return Ok(code);
        }
        let bytes = self
            .tx
            .get(CODE_MAP, code_hash.as_slice())
            .ok_or(StateError { map: CODE_MAP })?;
        let code = Bytecode::new_raw_checked(bytes.into()).map_err(|_| StateError { map: CODE_MAP })?;
        self.codes.put(code_hash, code.clone());
        Ok(code)
    }

    fn storage(&mut self, address: Address, index: U256) -> Result<U256, StateError> {
        Ok(match self.tx.get(STORAGE_MAP, &storage_key(&address, &index)) {
            Some(v) if v.len() == 32 => U256::from_be_slice(&v),
            Some(_) => return Err(StateError { map: STORAGE_MAP }),
            None => U256::ZERO,
        })
    }

    fn block_hash(&mut self, number: u64) -> Result<B256, StateError> {
        Ok(block_hash(number))
    }
}
