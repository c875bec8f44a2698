//! The governed configuration (`set_evm_config`): chain id, base fee, genesis balances and visibility policy.
//!
//! Governance stores it as JSON at the singleton key of [`CONFIG_MAP`]; without it the defaults apply
//! ([`DEFAULT_CHAIN_ID`], base fee 0, visibility [`Visibility::Own`]), so a fresh account can deploy with gas price
//! 0, as on a private consortium chain.

use crate::error::RpcError;
use crate::hexfmt::{parse_address, parse_u256};
use crate::limits::MAX_GENESIS_ACCOUNTS;
use alloy_primitives::{Address, U256};
use consort_kv::{Tx, Version};
use std::collections::HashMap;

/// The governance table holding the configuration (written only by the constitution's `set_evm_config`).
pub const CONFIG_MAP: &str = "public:ccf.gov.evm.config";
/// Its one key (as for CCF's other singleton tables: eight zero bytes).
pub const CONFIG_KEY: [u8; 8] = [0; 8];
/// The chain id when governance has set none: 0x4353, "CS".
pub const DEFAULT_CHAIN_ID: u64 = 0x4353;

/// Who sees which transactions, receipts and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Visibility {
    /// A user sees the transactions it submitted and those naming one of its addresses (the default).
    #[default]
    Own,
    /// Every authenticated user sees every transaction.
    All,
}

/// The configuration in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvmConfig {
    /// EIP-155 chain id: transactions must carry it.
    pub chain_id: u64,
    /// Base fee per gas, in wei (burned, like the priority fee: there is no miner).
    pub base_fee: u64,
    /// Visibility policy.
    pub visibility: Visibility,
    /// Balances credited once per `set_evm_config` (see [`crate::state`]), by address.
    pub genesis: HashMap<Address, U256>,
    /// Store version of the configuration (0 without one); genesis credits are applied once per version.
    pub version: Version,
}

impl Default for EvmConfig {
    fn default() -> Self {
        EvmConfig {
            chain_id: DEFAULT_CHAIN_ID,
            base_fee: 0,
            visibility: Visibility::Own,
            genesis: HashMap::new(),
            version: 0,
        }
    }
}

/// The store version of the configuration in force (None: defaults), recorded in `tx`'s read set so that a
/// transaction running under a configuration that changes meanwhile is re-run.
pub fn config_version(tx: &mut Tx<'_>) -> Option<Version> {
    tx.version_of(CONFIG_MAP, &CONFIG_KEY)
}

impl EvmConfig {
    /// Reads the configuration from `tx` (the defaults without one).
    pub fn load(tx: &mut Tx<'_>) -> Result<EvmConfig, RpcError> {
        let Some(version) = config_version(tx) else {
            return Ok(EvmConfig::default());
        };
        let bytes = tx.get(CONFIG_MAP, &CONFIG_KEY).unwrap_or_default();
        EvmConfig::parse(&bytes, version).map_err(|e| RpcError::internal(format!("stored EVM configuration: {e}")))
    }

    /// Parses the JSON governance stored (`{"chain_id", "base_fee", "visibility", "genesis"}`, all optional).
    pub fn parse(bytes: &[u8], version: Version) -> Result<EvmConfig, String> {
        let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let obj = v.as_object().ok_or("not an object")?;
        let mut cfg = EvmConfig {
            version,
            ..EvmConfig::default()
        };
        if let Some(c) = obj.get("chain_id") {
            cfg.chain_id = c.as_u64().filter(|c| *c > 0).ok_or("chain_id: a positive integer")?;
        }
        if let Some(f) = obj.get("base_fee") {
            let fee = json_u256(f, "base_fee")?;
            cfg.base_fee = u64::try_from(fee).map_err(|_| "base_fee: at most 2^64-1 wei")?;
        }
        if let Some(vis) = obj.get("visibility") {
            cfg.visibility = match vis.as_str() {
                Some("own") => Visibility::Own,
                Some("all") => Visibility::All,
                _ => return Err("visibility: \"own\" or \"all\"".into()),
            };
        }
        if let Some(g) = obj.get("genesis") {
            let g = g.as_object().ok_or("genesis: an object {address: wei}")?;
            if g.len() > MAX_GENESIS_ACCOUNTS {
                return Err(format!("genesis: at most {MAX_GENESIS_ACCOUNTS} accounts"));
            }
            for (addr, wei) in g {
                let a = parse_address(addr, "genesis address").map_err(|e| e.message)?;
                cfg.genesis.insert(a, json_u256(wei, "genesis balance")?);
            }
        }
        Ok(cfg)
    }
}

/// The last configuration parsed, by version: parsing (with its genesis balances) happens once per
/// `set_evm_config`, not once per request.
#[derive(Debug, Default)]
pub struct ConfigCache(std::sync::Mutex<Option<std::sync::Arc<EvmConfig>>>);

impl ConfigCache {
    /// The configuration in force in `tx` (its version is recorded in the read set).
    pub fn load(&self, tx: &mut Tx<'_>) -> Result<std::sync::Arc<EvmConfig>, RpcError> {
        let version = config_version(tx).unwrap_or(0);
        if let Ok(cached) = self.0.lock() {
            if let Some(c) = cached.as_ref().filter(|c| c.version == version) {
                return Ok(c.clone());
            }
        }
        let fresh = std::sync::Arc::new(EvmConfig::load(tx)?);
        if let Ok(mut cached) = self.0.lock() {
            *cached = Some(fresh.clone());
        }
        Ok(fresh)
    }
}

/// A wei amount as a JSON number or a decimal/hex string.
fn json_u256(v: &serde_json::Value, what: &str) -> Result<U256, String> {
    match v {
        serde_json::Value::Number(n) => n
            .as_u64()
            .map(U256::from)
            .ok_or(format!("{what}: a non-negative integer")),
        serde_json::Value::String(s) => parse_u256(s, what).map_err(|e| e.message),
        _ => Err(format!("{what}: a number or a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_parses_and_refuses_bad_fields() {
        let c = EvmConfig::parse(
            br#"{"chain_id": 7, "base_fee": "0x10", "visibility": "all",
                 "genesis": {"0x00000000000000000000000000000000000000aa": "1000000000000000000"}}"#,
            3,
        )
        .unwrap();
        assert_eq!(
            (c.chain_id, c.base_fee, c.visibility, c.version),
            (7, 16, Visibility::All, 3)
        );
        assert_eq!(c.genesis.values().next(), Some(&U256::from(10u64.pow(18))));
        assert_eq!(EvmConfig::parse(b"{}", 1).unwrap().chain_id, DEFAULT_CHAIN_ID);
        for bad in [
            &br#"{"chain_id": 0}"#[..],
            br#"{"visibility": "some"}"#,
            br#"{"genesis": {"0x12": 1}}"#,
            br#"{"base_fee": -1}"#,
            b"[]",
        ] {
            assert!(EvmConfig::parse(bad, 1).is_err());
        }
    }
}
