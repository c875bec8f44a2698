//! What is stored per EVM transaction in [`TXS_MAP`]: the signed transaction, its Ethereum receipt and who sent it.
//!
//! Layout (all integers big-endian): format byte 1; user id length (u16) and bytes; sender (20); index in its
//! block (u32); timestamp (u64, seconds); gas used (u64); effective gas price (u128); contract address flag (u8)
//! and address (20, when the flag is 1); raw transaction length (u32) and its EIP-2718 bytes; receipt length
//! (u32) and the EIP-2718 encoding of the receipt (status, cumulative gas, bloom, logs).

use alloy_consensus::{ReceiptEnvelope, TxEnvelope};
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::{Address, B256};

/// Ethereum transaction hash (32 bytes) -> [`TxRecord`]. Private. Its key's version is the block number.
pub const TXS_MAP: &str = "eth.txs";
/// Address (20 bytes) -> the Consort user id it is bound to (the first user that sent a transaction signed by
/// it). Private.
pub const OWNERS_MAP: &str = "eth.owners";

const FORMAT: u8 = 1;

/// One stored EVM transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxRecord {
    /// The Consort user that submitted it.
    pub user: String,
    /// Recovered sender.
    pub sender: Address,
    /// Position in its block (its Consort transaction).
    pub index: u32,
    /// Block timestamp, seconds.
    pub timestamp: u64,
    /// Gas used by this transaction.
    pub gas_used: u64,
    /// Price paid per gas.
    pub effective_gas_price: u128,
    /// Address of the contract it created.
    pub contract: Option<Address>,
    /// The signed transaction, EIP-2718 bytes.
    pub raw: Vec<u8>,
    /// The Ethereum receipt, EIP-2718 bytes.
    pub receipt: Vec<u8>,
}

impl TxRecord {
    /// The stored bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(100 + self.user.len() + self.raw.len() + self.receipt.len());
        out.push(FORMAT);
        let user_len = u16::try_from(self.user.len()).unwrap_or(u16::MAX);
        out.extend(user_len.to_be_bytes());
        out.extend(&self.user.as_bytes()[..usize::from(user_len)]);
        out.extend(self.sender.as_slice());
        out.extend(self.index.to_be_bytes());
        out.extend(self.timestamp.to_be_bytes());
        out.extend(self.gas_used.to_be_bytes());
        out.extend(self.effective_gas_price.to_be_bytes());
        match self.contract {
            Some(a) => {
                out.push(1);
                out.extend(a.as_slice());
            }
            None => out.push(0),
        }
        for part in [&self.raw, &self.receipt] {
            out.extend(u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend(part.iter());
        }
        out
    }

    /// Parses stored bytes (None if malformed).
    pub fn decode(bytes: &[u8]) -> Option<TxRecord> {
        let mut r = Reader(bytes);
        if r.take(1)? != [FORMAT] {
            return None;
        }
        let user_len = usize::from(u16::from_be_bytes(r.array()?));
        let user = String::from_utf8(r.take(user_len)?.to_vec()).ok()?;
        let sender = Address::from_slice(r.take(20)?);
        let index = u32::from_be_bytes(r.array()?);
        let timestamp = u64::from_be_bytes(r.array()?);
        let gas_used = u64::from_be_bytes(r.array()?);
        let effective_gas_price = u128::from_be_bytes(r.array()?);
        let contract = match r.take(1)? {
            [0] => None,
            [1] => Some(Address::from_slice(r.take(20)?)),
            _ => return None,
        };
        let raw_len = usize::try_from(u32::from_be_bytes(r.array()?)).ok()?;
        let raw = r.take(raw_len)?.to_vec();
        let receipt_len = usize::try_from(u32::from_be_bytes(r.array()?)).ok()?;
        let receipt = r.take(receipt_len)?.to_vec();
        r.0.is_empty().then_some(TxRecord {
            user,
            sender,
            index,
            timestamp,
            gas_used,
            effective_gas_price,
            contract,
            raw,
            receipt,
        })
    }

    /// The signed transaction.
    pub fn envelope(&self) -> Option<TxEnvelope> {
        TxEnvelope::decode_2718(&mut self.raw.as_slice()).ok()
    }

    /// The Ethereum receipt.
    pub fn receipt_envelope(&self) -> Option<ReceiptEnvelope> {
        ReceiptEnvelope::decode_2718(&mut self.receipt.as_slice()).ok()
    }
}

/// Reads the record of `hash` and the version (block number) that wrote it.
pub fn read_record(tx: &mut consort_kv::Tx<'_>, hash: &B256) -> Option<(u64, Option<TxRecord>)> {
    let version = tx.version_of(TXS_MAP, hash.as_slice())?;
    let bytes = tx.get(TXS_MAP, hash.as_slice())?;
    Some((version, TxRecord::decode(&bytes)))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_refuse_truncation() {
        let r = TxRecord {
            user: "u".repeat(64),
            sender: Address::repeat_byte(7),
            index: 2,
            timestamp: 1_700_000_000,
            gas_used: 21_000,
            effective_gas_price: 5,
            contract: Some(Address::repeat_byte(9)),
            raw: vec![1, 2, 3],
            receipt: vec![4, 5],
        };
        let bytes = r.encode();
        assert_eq!(TxRecord::decode(&bytes), Some(r.clone()));
        assert_eq!(TxRecord::decode(&bytes[..bytes.len() - 1]), None);
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(TxRecord::decode(&longer), None);
        assert_eq!(
            TxRecord::decode(
                &TxRecord {
                    contract: None,
                    ..r.clone()
                }
                .encode()
            )
            .unwrap()
            .contract,
            None
        );
    }
}
