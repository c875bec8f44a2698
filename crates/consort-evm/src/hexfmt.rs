//! Ethereum's JSON encodings: quantities (`0x` hex without leading zeros) and data (`0x` hex bytes), both ways.

use crate::error::RpcError;
use alloy_primitives::{Address, B256, U256};

/// A quantity: `0x0`, `0x1a`.
pub fn qty(n: u64) -> String {
    format!("{n:#x}")
}

/// A 256-bit quantity.
pub fn qty_u256(n: U256) -> String {
    format!("{n:#x}")
}

/// Data: `0x` and two hex digits per byte.
pub fn data(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + 2 * bytes.len());
    s.push_str("0x");
    s.push_str(&hex::encode(bytes));
    s
}

/// Bytes from `0x`-prefixed hex (an odd number of digits is refused).
pub fn parse_data(s: &str, what: &str) -> Result<Vec<u8>, RpcError> {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .ok_or_else(|| RpcError::params(format!("{what}: hex string without 0x prefix")))?;
    hex::decode(digits).map_err(|e| RpcError::params(format!("{what}: invalid hex: {e}")))
}

/// An address (20 bytes of hex).
pub fn parse_address(s: &str, what: &str) -> Result<Address, RpcError> {
    let b = parse_data(s, what)?;
    if b.len() != 20 {
        return Err(RpcError::params(format!("{what}: an address has 20 bytes")));
    }
    Ok(Address::from_slice(&b))
}

/// A 32-byte hash.
pub fn parse_b256(s: &str, what: &str) -> Result<B256, RpcError> {
    let b = parse_data(s, what)?;
    if b.len() != 32 {
        return Err(RpcError::params(format!("{what}: a hash has 32 bytes")));
    }
    Ok(B256::from_slice(&b))
}

/// A quantity up to 256 bits (`0x` hex; a decimal string is accepted too, as some tools send one).
pub fn parse_u256(s: &str, what: &str) -> Result<U256, RpcError> {
    let bad = |e: String| RpcError::params(format!("{what}: invalid quantity: {e}"));
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some("") => Err(bad("empty".into())),
        Some(digits) => U256::from_str_radix(digits, 16).map_err(|e| bad(e.to_string())),
        None => U256::from_str_radix(s, 10).map_err(|e| bad(e.to_string())),
    }
}

/// A quantity that fits in 64 bits.
pub fn parse_u64(s: &str, what: &str) -> Result<u64, RpcError> {
    let n = parse_u256(s, what)?;
    u64::try_from(n).map_err(|_| RpcError::params(format!("{what}: quantity too large")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_and_data_round_trip() {
        assert_eq!(qty(0), "0x0");
        assert_eq!(qty(26), "0x1a");
        assert_eq!(data(&[0, 255]), "0x00ff");
        assert_eq!(parse_u64("0x1a", "n").unwrap(), 26);
        assert_eq!(parse_u64("26", "n").unwrap(), 26);
        assert!(parse_u64("0x", "n").is_err());
        assert!(parse_u64("0x1ffffffffffffffff", "n").is_err());
        assert_eq!(parse_data("0x00ff", "d").unwrap(), vec![0, 255]);
        assert!(parse_data("00ff", "d").is_err());
        assert!(parse_address("0x00", "a").is_err());
    }
}
