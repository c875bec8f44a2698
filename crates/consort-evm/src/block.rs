//! Blocks: each Consort transaction is one block, numbered by its seqno, with a hash that is a fixed function of
//! that number.
//!
//! Block hash of seqno n: the 12 ASCII bytes `ConsortBlock`, 12 zero bytes, then n as 8 bytes big-endian. It
//! is not a digest of the block's content (the Consort receipt and its claims digest are what bind content to the
//! signed ledger), but it is unique per seqno and [`block_number_of`] inverts it.

use crate::hexfmt::{data, qty};
use alloy_primitives::{Bloom, B256};
use serde_json::{json, Value};

const TAG: &[u8; 12] = b"ConsortBlock";

/// The hash of block `number`.
pub fn block_hash(number: u64) -> B256 {
    let mut h = [0u8; 32];
    h[..12].copy_from_slice(TAG);
    h[24..].copy_from_slice(&number.to_be_bytes());
    B256::from(h)
}

/// The block number whose hash is `hash`, if it is one.
pub fn block_number_of(hash: &B256) -> Option<u64> {
    let h = hash.as_slice();
    if &h[..12] != TAG || h[12..24].iter().any(|b| *b != 0) {
        return None;
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&h[24..]);
    Some(u64::from_be_bytes(n))
}

/// Keccak-256 of the RLP of an empty list (no uncles).
const EMPTY_UNCLES: &str = "0x1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347";
/// Root of an empty Merkle-Patricia trie.
const EMPTY_ROOT: &str = "0x56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421";

/// What a block JSON needs beyond its number.
#[derive(Debug, Clone)]
pub struct BlockView {
    /// Block number (seqno).
    pub number: u64,
    /// Seconds since the epoch.
    pub timestamp: u64,
    /// Base fee per gas.
    pub base_fee: u64,
    /// Gas used by its (visible) transactions.
    pub gas_used: u64,
    /// Bloom of their logs.
    pub bloom: Bloom,
    /// Transaction hashes, or full objects.
    pub transactions: Vec<Value>,
}

/// The block as `eth_getBlockByNumber` returns it (the fields web3.py and ethers read, with fixed values for
/// those a Consort block does not have: no uncles, no proof of work, state and trie roots left empty).
pub fn block_json(b: &BlockView) -> Value {
    json!({
        "number": qty(b.number),
        "hash": block_hash(b.number).to_string(),
        "parentHash": block_hash(b.number.saturating_sub(1)).to_string(),
        "nonce": "0x0000000000000000",
        "sha3Uncles": EMPTY_UNCLES,
        "logsBloom": data(b.bloom.as_slice()),
        "transactionsRoot": EMPTY_ROOT,
        "stateRoot": B256::ZERO.to_string(),
        "receiptsRoot": EMPTY_ROOT,
        "miner": "0x0000000000000000000000000000000000000000",
        "difficulty": "0x0",
        "totalDifficulty": "0x0",
        "extraData": "0x",
        "size": "0x0",
        "gasLimit": qty(crate::limits::BLOCK_GAS_LIMIT),
        "gasUsed": qty(b.gas_used),
        "timestamp": qty(b.timestamp),
        "transactions": b.transactions,
        "uncles": [],
        "baseFeePerGas": qty(b.base_fee),
        "mixHash": B256::ZERO.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_hashes_invert() {
        for n in [0, 1, 42, u64::MAX] {
            assert_eq!(block_number_of(&block_hash(n)), Some(n));
        }
        assert_eq!(block_number_of(&B256::repeat_byte(1)), None);
        assert_ne!(block_hash(1), block_hash(2));
    }
}
