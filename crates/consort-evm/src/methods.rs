//! The JSON-RPC methods: parameters in, Ethereum's JSON out.

use crate::block::{block_json, block_number_of, BlockView};
use crate::error::{RpcError, INVALID_REQUEST};
use crate::exec::{self, BlockCtx, CallRequest, Included, SendCtx};
use crate::hexfmt::{data, parse_address, parse_b256, parse_data, parse_u256, parse_u64, qty, qty_u256};
use crate::limits::{BLOCK_GAS_LIMIT, MAX_FEE_HISTORY_BLOCKS, MAX_FEE_HISTORY_PERCENTILES, MAX_FILTER_ITEMS};
use crate::query::{logs_matching, transactions_in, LogFilter};
use crate::record::read_record;
use crate::rpc::{not_found, Session, SEND_RAW_TRANSACTION};
use crate::state::{storage_key, KvDb, STORAGE_MAP};
use crate::views::{receipt_json, tx_json, visible, Position};
use alloy_primitives::{Bloom, B256, U256};
use consort_kv::Tx;
use revm::Database;
use serde_json::{json, Value};

/// What the requests of one body share: whether it may write, and the transactions included so far.
#[derive(Debug)]
pub struct Batch {
    writable: bool,
    /// Included transactions, in order.
    pub included: Vec<Included>,
    cumulative_gas: u64,
    /// Gas the request's calls may still spend ([`crate::limits::MAX_CALL_GAS_PER_REQUEST`]).
    call_gas_left: u64,
}

impl Batch {
    /// A batch whose body may (`writable`) or may not write.
    pub fn new(writable: bool) -> Self {
        Batch {
            writable,
            included: vec![],
            cumulative_gas: 0,
            call_gas_left: crate::limits::MAX_CALL_GAS_PER_REQUEST,
        }
    }
}

/// Runs `method`.
pub fn call(tx: &mut Tx<'_>, method: &str, p: &[Value], s: &Session<'_>, batch: &mut Batch) -> Result<Value, RpcError> {
    let latest = tx.start_version();
    let mined = mined(tx, s);
    let cfg = s.config;
    Ok(match method {
        "eth_chainId" => json!(qty(cfg.chain_id)),
        "net_version" => json!(cfg.chain_id.to_string()),
        "net_listening" => json!(true),
        "web3_clientVersion" => json!(concat!("Consort/v", env!("CARGO_PKG_VERSION"), "/revm")),
        "eth_syncing" => json!(false),
        "eth_accounts" => json!([]),
        "eth_blockNumber" => json!(qty(mined)),
        "eth_gasPrice" => json!(qty(cfg.base_fee)),
        "eth_maxPriorityFeePerGas" => json!("0x0"),
        "eth_feeHistory" => fee_history(p, mined, cfg.base_fee)?,
        "eth_getBalance" => {
            let a = parse_address(str_param(p, 0, "address")?, "address")?;
            let acc = KvDb::new(tx, cfg, s.codes)
                .account(&a)
                .map_err(|e| RpcError::internal(e.to_string()))?
                .0;
            json!(qty_u256(acc.map_or(U256::ZERO, |a| a.balance)))
        }
        "eth_getTransactionCount" => {
            let a = parse_address(str_param(p, 0, "address")?, "address")?;
            let acc = crate::state::read_account(tx, &a).map_err(|e| RpcError::internal(e.to_string()))?;
            json!(qty(acc.map_or(0, |a| a.nonce)))
        }
        "eth_getCode" => {
            let a = parse_address(str_param(p, 0, "address")?, "address")?;
            json!(data(&code_of(tx, s, &a)?))
        }
        "eth_getStorageAt" => {
            let a = parse_address(str_param(p, 0, "address")?, "address")?;
            let slot = parse_u256(str_param(p, 1, "slot")?, "slot")?;
            let v = tx
                .get(STORAGE_MAP, &storage_key(&a, &slot))
                .unwrap_or_else(|| vec![0; 32]);
            json!(data(&v))
        }
        "eth_call" => {
            let req = call_request(p.first())?;
            let out = exec::call(tx, cfg, s.codes, block_ctx(latest, s), &req, &mut batch.call_gas_left)?;
            json!(data(&out.output))
        }
        "eth_estimateGas" => {
            let req = call_request(p.first())?;
            json!(qty(exec::estimate_gas(
                tx,
                cfg,
                s.codes,
                block_ctx(latest, s),
                &req,
                &mut batch.call_gas_left
            )?))
        }
        SEND_RAW_TRANSACTION => send_raw(tx, p, s, batch)?,
        "eth_getTransactionByHash" => by_hash(tx, p, s, tx_json)?,
        "eth_getTransactionReceipt" => by_hash(tx, p, s, receipt_json)?,
        "eth_getBlockByNumber" => {
            let tag = p.first().ok_or_else(|| RpcError::params("missing block"))?;
            let full = p.get(1).and_then(Value::as_bool).unwrap_or(false);
            match tag.as_str() {
                Some("latest" | "pending" | "safe" | "finalized") => block(tx, s, mined, mined, full, false)?,
                _ => block(tx, s, block_param(Some(tag), mined)?, mined, full, true)?,
            }
        }
        "eth_getBlockByHash" => {
            let h = parse_b256(str_param(p, 0, "block hash")?, "block hash")?;
            let full = p.get(1).and_then(Value::as_bool).unwrap_or(false);
            match block_number_of(&h) {
                Some(n) => block(tx, s, n, mined, full, true)?,
                None => Value::Null,
            }
        }
        "eth_getLogs" => get_logs(tx, p, s, mined)?,
        other => return Err(not_found(other)),
    })
}

fn block_ctx(latest: u64, s: &Session<'_>) -> BlockCtx {
    BlockCtx {
        number: latest.saturating_add(1),
        timestamp: s.now_s,
    }
}

fn str_param<'p>(p: &'p [Value], i: usize, what: &str) -> Result<&'p str, RpcError> {
    p.get(i)
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::params(format!("missing or non-string {what}")))
}

/// The last block clients see as mined: the state's version, or the host's committed seqno when it is lower
/// ([`Session::committed`]), so that no receipt, log or block is shown before its transaction is committed.
fn mined(tx: &Tx<'_>, s: &Session<'_>) -> u64 {
    let latest = tx.start_version();
    s.committed.map_or(latest, |c| c.min(latest))
}

/// A block parameter: a tag, a number, or an EIP-1898 object; tags name the latest block.
fn block_param(v: Option<&Value>, latest: u64) -> Result<u64, RpcError> {
    match v {
        None | Some(Value::Null) => Ok(latest),
        Some(Value::String(t)) => match t.as_str() {
            "latest" | "pending" | "safe" | "finalized" => Ok(latest),
            "earliest" => Ok(0),
            n => parse_u64(n, "block number"),
        },
        Some(Value::Object(o)) => match (o.get("blockNumber"), o.get("blockHash")) {
            (Some(n), _) => block_param(Some(n), latest),
            (None, Some(Value::String(h))) => {
                block_number_of(&parse_b256(h, "blockHash")?).ok_or_else(|| RpcError::params("unknown block hash"))
            }
            _ => Err(RpcError::params("block: blockNumber or blockHash")),
        },
        Some(_) => Err(RpcError::params("block: a tag or a number")),
    }
}

fn code_of(tx: &mut Tx<'_>, s: &Session<'_>, a: &alloy_primitives::Address) -> Result<Vec<u8>, RpcError> {
    let mut db = KvDb::new(tx, s.config, s.codes);
    let Some(acc) = db.account(a).map_err(|e| RpcError::internal(e.to_string()))?.0 else {
        return Ok(vec![]);
    };
    let code = db
        .code_by_hash(acc.code_hash)
        .map_err(|e| RpcError::internal(e.to_string()))?;
    Ok(code.original_byte_slice().to_vec())
}

/// `eth_call`'s transaction object.
fn call_request(v: Option<&Value>) -> Result<CallRequest, RpcError> {
    let o = v
        .and_then(Value::as_object)
        .ok_or_else(|| RpcError::params("missing call object"))?;
    let s = |k: &str| o.get(k).and_then(Value::as_str);
    let input = s("input").or_else(|| s("data"));
    Ok(CallRequest {
        from: s("from").map(|a| parse_address(a, "from")).transpose()?,
        to: s("to").map(|a| parse_address(a, "to")).transpose()?,
        gas: s("gas").map(|g| parse_u64(g, "gas")).transpose()?,
        value: s("value")
            .map(|v| parse_u256(v, "value"))
            .transpose()?
            .unwrap_or_default(),
        data: input
            .map(|d| parse_data(d, "input"))
            .transpose()?
            .unwrap_or_default()
            .into(),
        access_list: access_list(o.get("accessList"))?,
    })
}

/// A call object's `accessList`: `[{address, storageKeys: [slot, ...]}, ...]`, bounded like a log filter.
fn access_list(v: Option<&Value>) -> Result<alloy_eips::eip2930::AccessList, RpcError> {
    use alloy_eips::eip2930::{AccessList, AccessListItem};
    let items = match v {
        None | Some(Value::Null) => return Ok(AccessList::default()),
        Some(Value::Array(items)) if items.len() <= MAX_FILTER_ITEMS => items,
        Some(_) => {
            return Err(RpcError::params(format!(
                "accessList: an array of at most {MAX_FILTER_ITEMS} items"
            )))
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let address = item
            .get("address")
            .and_then(Value::as_str)
            .ok_or_else(|| RpcError::params("accessList item: address"))?;
        let keys = match item.get("storageKeys") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(k)) if k.len() <= MAX_FILTER_ITEMS => &k[..],
            Some(_) => {
                return Err(RpcError::params(format!(
                    "storageKeys: an array of at most {MAX_FILTER_ITEMS} slots"
                )))
            }
        };
        let storage_keys = keys
            .iter()
            .map(|k| parse_b256(k.as_str().unwrap_or_default(), "storage key"))
            .collect::<Result<Vec<_>, _>>()?;
        out.push(AccessListItem {
            address: parse_address(address, "accessList address")?,
            storage_keys,
        });
    }
    Ok(AccessList(out))
}

fn send_raw(tx: &mut Tx<'_>, p: &[Value], s: &Session<'_>, batch: &mut Batch) -> Result<Value, RpcError> {
    if !batch.writable {
        return Err(RpcError::new(INVALID_REQUEST, "method names must not be escaped"));
    }
    let raw = parse_data(str_param(p, 0, "raw transaction")?, "raw transaction")?;
    let decoded = exec::decode_raw(&raw)?;
    // One request is one block: its transactions together stay within the block gas limit.
    if batch
        .cumulative_gas
        .saturating_add(alloy_consensus::Transaction::gas_limit(&decoded.envelope))
        > BLOCK_GAS_LIMIT
    {
        return Err(RpcError::rejected("exceeds block gas limit"));
    }
    let ctx = SendCtx {
        user: s.user,
        block: block_ctx(tx.start_version(), s),
        index: u32::try_from(batch.included.len()).unwrap_or(u32::MAX),
        cumulative_gas: batch.cumulative_gas,
    };
    let inc = exec::send(tx, s.config, s.codes, &ctx, &decoded)?;
    batch.cumulative_gas = batch.cumulative_gas.saturating_add(inc.gas_used);
    batch.included.push(inc);
    Ok(json!(inc.hash.to_string()))
}

/// A stored transaction by hash, rendered by `f`, or null if unknown, not yet in the store, or not visible.
fn by_hash(
    tx: &mut Tx<'_>,
    p: &[Value],
    s: &Session<'_>,
    f: impl Fn(Position, &crate::record::TxRecord) -> Value,
) -> Result<Value, RpcError> {
    let hash = parse_b256(str_param(p, 0, "transaction hash")?, "transaction hash")?;
    let Some((block, rec)) = read_record(tx, &hash) else {
        return Ok(Value::Null);
    };
    if block > mined(tx, s) {
        // Executed, not committed yet: as a pending transaction, it has no receipt (and is not shown).
        return Ok(Value::Null);
    }
    let rec = rec.ok_or_else(|| RpcError::internal("malformed stored transaction"))?;
    if !visible(tx, s.config, s.user, &rec) {
        return Ok(Value::Null);
    }
    Ok(f(Position { block, hash }, &rec))
}

/// Block `n` (null past the latest). `list`: look for its transactions (a scan); blocks named by a tag are
/// returned without them.
fn block(tx: &mut Tx<'_>, s: &Session<'_>, n: u64, latest: u64, full: bool, list: bool) -> Result<Value, RpcError> {
    if n > latest {
        return Ok(Value::Null);
    }
    let mut view = BlockView {
        number: n,
        timestamp: s.now_s,
        base_fee: s.config.base_fee,
        gas_used: 0,
        bloom: Bloom::ZERO,
        transactions: vec![],
    };
    if list {
        for (pos, rec) in transactions_in(tx, n, n, |_| true)? {
            if !visible(tx, s.config, s.user, &rec) {
                continue;
            }
            view.timestamp = rec.timestamp;
            view.gas_used = view.gas_used.saturating_add(rec.gas_used);
            if let Some(r) = rec.receipt_envelope() {
                view.bloom.accrue_bloom(r.logs_bloom());
            }
            view.transactions.push(if full {
                tx_json(pos, &rec)
            } else {
                json!(pos.hash.to_string())
            });
        }
    }
    Ok(block_json(&view))
}

fn fee_history(p: &[Value], latest: u64, base_fee: u64) -> Result<Value, RpcError> {
    let count = match p.first() {
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| RpcError::params("blockCount"))?,
        Some(Value::String(c)) => parse_u64(c, "blockCount")?,
        _ => return Err(RpcError::params("missing blockCount")),
    }
    .min(MAX_FEE_HISTORY_BLOCKS);
    let newest = block_param(p.get(1), latest)?.min(latest);
    let count = count.min(newest.saturating_add(1));
    let oldest = newest.saturating_add(1).saturating_sub(count);
    let usize_count = usize::try_from(count).unwrap_or(0);
    let mut out = json!({
        "oldestBlock": qty(oldest),
        "baseFeePerGas": vec![qty(base_fee); usize_count + 1],
        "gasUsedRatio": vec![0.0; usize_count],
    });
    match p.get(2) {
        None | Some(Value::Null) => {}
        Some(Value::Array(percentiles)) => {
            reward_percentiles(percentiles)?;
            out["reward"] = json!(vec![vec!["0x0"; percentiles.len()]; usize_count]);
        }
        Some(_) => return Err(RpcError::params("rewardPercentiles: an array")),
    }
    Ok(out)
}

/// Checks `eth_feeHistory`'s reward percentiles as geth does: at most [`MAX_FEE_HISTORY_PERCENTILES`], each in
/// 0..=100, non-decreasing (the answer is blocks × percentiles, so an unbounded list would be unbounded memory).
fn reward_percentiles(percentiles: &[Value]) -> Result<(), RpcError> {
    if percentiles.len() > MAX_FEE_HISTORY_PERCENTILES {
        return Err(RpcError::params(format!(
            "rewardPercentiles: at most {MAX_FEE_HISTORY_PERCENTILES}, got {}",
            percentiles.len()
        )));
    }
    let mut last = 0.0;
    for p in percentiles {
        let v = p
            .as_f64()
            .filter(|v| (0.0..=100.0).contains(v) && *v >= last)
            .ok_or_else(|| RpcError::params("rewardPercentiles: numbers in 0..=100, non-decreasing"))?;
        last = v;
    }
    Ok(())
}

fn get_logs(tx: &mut Tx<'_>, p: &[Value], s: &Session<'_>, latest: u64) -> Result<Value, RpcError> {
    let o = p
        .first()
        .and_then(Value::as_object)
        .ok_or_else(|| RpcError::params("missing filter object"))?;
    let mut f = LogFilter::default();
    if let Some(Value::String(h)) = o.get("blockHash") {
        let n = block_number_of(&parse_b256(h, "blockHash")?).ok_or_else(|| RpcError::params("unknown block hash"))?;
        (f.from, f.to) = (n, n.min(latest));
    } else {
        f.from = block_param(o.get("fromBlock"), latest)?;
        f.to = block_param(o.get("toBlock"), latest)?.min(latest);
    }
    f.addresses = match o.get("address") {
        None | Some(Value::Null) => vec![],
        Some(Value::String(a)) => vec![parse_address(a, "address")?],
        Some(Value::Array(list)) if list.len() <= MAX_FILTER_ITEMS => list
            .iter()
            .map(|a| parse_address(a.as_str().unwrap_or_default(), "address"))
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(RpcError::params(format!(
                "address: a string or at most {MAX_FILTER_ITEMS} strings"
            )))
        }
    };
    if let Some(Value::Array(topics)) = o.get("topics") {
        for t in topics.iter().take(4) {
            f.topics.push(match t {
                Value::Null => vec![],
                Value::String(h) => vec![parse_b256(h, "topic")?],
                Value::Array(alts) if alts.len() <= MAX_FILTER_ITEMS => alts
                    .iter()
                    .map(|h| parse_b256(h.as_str().unwrap_or_default(), "topic"))
                    .collect::<Result<Vec<B256>, _>>()?,
                _ => return Err(RpcError::params("topics: null, a hash or a list of hashes")),
            });
        }
    }
    if f.from > f.to {
        return Ok(json!([]));
    }
    let mut txs = transactions_in(tx, f.from, f.to, |rec| f.matches_any(rec))?;
    txs.retain(|(_, rec)| visible(tx, s.config, s.user, rec));
    Ok(Value::Array(logs_matching(&txs, &f)?))
}
