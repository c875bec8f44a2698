//! What users see of stored transactions: the JSON of transactions, receipts and logs, and who may see them.

use crate::block::block_hash;
use crate::config::{EvmConfig, Visibility};
use crate::hexfmt::{data, qty, qty_u256};
use crate::record::{TxRecord, OWNERS_MAP};
use alloy_consensus::{Transaction, TxReceipt};
use alloy_primitives::{Address, Log, B256};
use consort_kv::Tx;
use serde_json::{json, Value};

/// Whether `user` may see `rec`: under [`Visibility::Own`], if it submitted it, or if the transaction names an
/// address bound to it (its sender, its recipient, the contract it created, a log's address, or a log topic
/// holding an address: ERC-20 and ERC-721 put sender and recipient there).
pub fn visible(tx: &mut Tx<'_>, config: &EvmConfig, user: &str, rec: &TxRecord) -> bool {
    if config.visibility == Visibility::All || rec.user == user {
        return true;
    }
    let mut owned = |a: &Address| tx.get(OWNERS_MAP, a.as_slice()).is_some_and(|u| u == user.as_bytes());
    if owned(&rec.sender) {
        return true;
    }
    let to = rec.envelope().and_then(|e| e.to());
    if to.iter().chain(rec.contract.iter()).any(&mut owned) {
        return true;
    }
    let Some(receipt) = rec.receipt_envelope() else {
        return false;
    };
    receipt.logs().iter().any(|log| {
        owned(&log.address)
            || log
                .data
                .topics()
                .iter()
                .any(|t| t.as_slice()[..12].iter().all(|b| *b == 0) && owned(&Address::from_slice(&t.as_slice()[12..])))
    })
}

/// Where a transaction sits: its block and hash.
#[derive(Debug, Clone, Copy)]
pub struct Position {
    /// Block number.
    pub block: u64,
    /// Transaction hash.
    pub hash: B256,
}

/// The transaction as `eth_getTransactionByHash` returns it.
pub fn tx_json(pos: Position, rec: &TxRecord) -> Value {
    let Some(env) = rec.envelope() else {
        return Value::Null;
    };
    let sig = env.signature();
    let mut v = json!({
        "hash": pos.hash.to_string(),
        "blockHash": block_hash(pos.block).to_string(),
        "blockNumber": qty(pos.block),
        "transactionIndex": qty(u64::from(rec.index)),
        "from": rec.sender.to_string(),
        "to": env.to().map(|a| a.to_string()),
        "gas": qty(env.gas_limit()),
        "gasPrice": format!("{:#x}", rec.effective_gas_price),
        "input": data(env.input()),
        "nonce": qty(env.nonce()),
        "value": qty_u256(env.value()),
        "type": qty(u64::from(env.tx_type() as u8)),
        "chainId": env.chain_id().map(qty),
        "r": qty_u256(sig.r()),
        "s": qty_u256(sig.s()),
    });
    let parity = u64::from(sig.v());
    if env.is_legacy() {
        let chain = env.chain_id().unwrap_or(0);
        v["v"] = json!(qty(parity + 35 + 2 * chain));
    } else {
        v["v"] = json!(qty(parity));
        v["yParity"] = json!(qty(parity));
        v["maxFeePerGas"] = json!(format!("{:#x}", env.max_fee_per_gas()));
        v["maxPriorityFeePerGas"] = json!(format!("{:#x}", env.max_priority_fee_per_gas().unwrap_or(0)));
        let list: Vec<Value> = env
            .access_list()
            .map(|l| {
                l.iter()
                    .map(|i| json!({"address": i.address.to_string(), "storageKeys": i.storage_keys.iter().map(|k| k.to_string()).collect::<Vec<_>>()}))
                    .collect()
            })
            .unwrap_or_default();
        v["accessList"] = json!(list);
    }
    v
}

/// A log as receipts and `eth_getLogs` show it (`logIndex`: its position within the transaction).
pub fn log_json(pos: Position, rec: &TxRecord, index: usize, log: &Log) -> Value {
    json!({
        "address": log.address.to_string(),
        "topics": log.data.topics().iter().map(|t| t.to_string()).collect::<Vec<_>>(),
        "data": data(&log.data.data),
        "blockNumber": qty(pos.block),
        "blockHash": block_hash(pos.block).to_string(),
        "transactionHash": pos.hash.to_string(),
        "transactionIndex": qty(u64::from(rec.index)),
        "logIndex": qty(index as u64),
        "removed": false,
    })
}

/// The receipt as `eth_getTransactionReceipt` returns it.
pub fn receipt_json(pos: Position, rec: &TxRecord) -> Value {
    let (Some(env), Some(receipt)) = (rec.envelope(), rec.receipt_envelope()) else {
        return Value::Null;
    };
    let logs: Vec<Value> = receipt
        .logs()
        .iter()
        .enumerate()
        .map(|(i, l)| log_json(pos, rec, i, l))
        .collect();
    json!({
        "transactionHash": pos.hash.to_string(),
        "transactionIndex": qty(u64::from(rec.index)),
        "blockHash": block_hash(pos.block).to_string(),
        "blockNumber": qty(pos.block),
        "from": rec.sender.to_string(),
        "to": env.to().map(|a| a.to_string()),
        "cumulativeGasUsed": qty(receipt.cumulative_gas_used()),
        "gasUsed": qty(rec.gas_used),
        "effectiveGasPrice": format!("{:#x}", rec.effective_gas_price),
        "contractAddress": rec.contract.map(|a| a.to_string()),
        "logs": logs,
        "logsBloom": data(receipt.bloom().as_slice()),
        "status": if receipt.status() { "0x1" } else { "0x0" },
        "type": qty(u64::from(env.tx_type() as u8)),
    })
}
