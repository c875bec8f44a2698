//! Queries over many stored transactions: the transactions of a block range (for blocks and `eth_getLogs`).
//!
//! There is no index by block: writing one would put a shared key in every transaction, which serialises them
//! under optimistic concurrency. Instead a query scans [`TXS_MAP`] with each key's version (its block number), at
//! most [`MAX_SCANNED_TRANSACTIONS`] entries.

use crate::error::{RpcError, LIMIT_EXCEEDED};
use crate::limits::{MAX_RESPONSE_BYTES, MAX_RETURNED_LOGS, MAX_SCANNED_TRANSACTIONS};
use crate::record::{TxRecord, TXS_MAP};
use crate::views::{log_json, Position};
use alloy_primitives::{Address, B256};
use consort_kv::Tx;
use serde_json::Value;

/// The stored transactions of blocks `from..=to` that `keep` accepts, ordered by block and index (only those are
/// held in memory).
pub fn transactions_in(
    tx: &mut Tx<'_>,
    from: u64,
    to: u64,
    keep: impl Fn(&TxRecord) -> bool,
) -> Result<Vec<(Position, TxRecord)>, RpcError> {
    let mut found = vec![];
    let mut scanned = 0usize;
    let mut malformed = false;
    tx.foreach_committed_versioned(TXS_MAP, |version, key, value| {
        scanned += 1;
        if scanned > MAX_SCANNED_TRANSACTIONS {
            return false;
        }
        if (from..=to).contains(&version) && key.len() == 32 {
            match TxRecord::decode(value) {
                Some(rec) if !keep(&rec) => {}
                Some(rec) => found.push((
                    Position {
                        block: version,
                        hash: B256::from_slice(key),
                    },
                    rec,
                )),
                None => malformed = true,
            }
        }
        true
    });
    if scanned > MAX_SCANNED_TRANSACTIONS {
        return Err(RpcError::new(
            LIMIT_EXCEEDED,
            format!("query would scan more than {MAX_SCANNED_TRANSACTIONS} stored transactions"),
        ));
    }
    if malformed {
        return Err(RpcError::internal("malformed stored transaction"));
    }
    found.sort_by_key(|(p, r)| (p.block, r.index));
    Ok(found)
}

/// An `eth_getLogs` filter.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    /// First block.
    pub from: u64,
    /// Last block.
    pub to: u64,
    /// Emitting contracts (any, if empty).
    pub addresses: Vec<Address>,
    /// Per topic position, the accepted values (any, if empty).
    pub topics: Vec<Vec<B256>>,
}

impl LogFilter {
    /// Whether any log of `rec` matches (false for a malformed receipt, which the query then never sees).
    pub fn matches_any(&self, rec: &TxRecord) -> bool {
        rec.receipt_envelope()
            .is_some_and(|r| r.logs().iter().any(|l| self.matches(l)))
    }

    fn matches(&self, log: &alloy_primitives::Log) -> bool {
        if !self.addresses.is_empty() && !self.addresses.contains(&log.address) {
            return false;
        }
        let topics = log.data.topics();
        self.topics
            .iter()
            .enumerate()
            .all(|(i, accepted)| accepted.is_empty() || topics.get(i).is_some_and(|t| accepted.contains(t)))
    }
}

/// The logs matching `filter` among `txs` (already restricted to what the caller may see).
pub fn logs_matching(txs: &[(Position, TxRecord)], filter: &LogFilter) -> Result<Vec<Value>, RpcError> {
    let mut out = vec![];
    let mut bytes = 0usize;
    for (pos, rec) in txs {
        let Some(receipt) = rec.receipt_envelope() else {
            return Err(RpcError::internal("malformed stored receipt"));
        };
        for (i, log) in receipt.logs().iter().enumerate() {
            if filter.matches(log) {
                if out.len() == MAX_RETURNED_LOGS {
                    return Err(RpcError::new(
                        LIMIT_EXCEEDED,
                        format!("query returned more than {MAX_RETURNED_LOGS} results"),
                    ));
                }
                bytes = bytes.saturating_add(log_json_size(log));
                if bytes > MAX_RESPONSE_BYTES {
                    return Err(RpcError::new(
                        LIMIT_EXCEEDED,
                        format!("query returned more than {MAX_RESPONSE_BYTES} bytes of logs"),
                    ));
                }
                out.push(log_json(*pos, rec, i, log));
            }
        }
    }
    Ok(out)
}

/// About how many bytes a log takes in JSON: its hex data and topics, and the fixed fields around them.
fn log_json_size(log: &alloy_primitives::Log) -> usize {
    const FIXED: usize = 400;
    const PER_TOPIC: usize = 69;
    FIXED + PER_TOPIC * log.data.topics().len() + 2 * log.data.data.len()
}
