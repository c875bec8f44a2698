//! Running transactions: decoding and checking a signed one, executing it with revm over [`KvDb`], storing its
//! state changes, receipt and record; and read-only calls (`eth_call`, `eth_estimateGas`).

use crate::config::EvmConfig;
use crate::error::RpcError;
use crate::limits::{BLOCK_GAS_LIMIT, MAX_CALL_GAS_PER_REQUEST, MAX_RAW_TX_BYTES};
use crate::record::{TxRecord, OWNERS_MAP, TXS_MAP};
use crate::state::{CodeCache, KvDb, StateError};
use alloy_consensus::{Receipt, ReceiptEnvelope, Transaction, TxEnvelope, TxType};
use alloy_eips::eip2718::{Decodable2718, Encodable2718};
use alloy_primitives::{keccak256, Address, Bytes, TxKind, B256, U256};
use consort_kv::Tx;
use revm::context::result::{EVMError, ExecutionResult, InvalidTransaction, Output};
use revm::context::Journal;
use revm::context::{BlockEnv, CfgEnv, Context, TxEnv};
use revm::handler::{ExecuteEvm, MainBuilder, MainContext, MainnetEvm};

/// A decoded signed transaction with its recovered sender.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The signed transaction.
    pub envelope: TxEnvelope,
    /// Its hash.
    pub hash: B256,
    /// The address that signed it.
    pub sender: Address,
    /// Its EIP-2718 bytes.
    pub raw: Vec<u8>,
}

/// Decodes `raw` (EIP-2718: legacy, EIP-2930 or EIP-1559) and recovers its sender. Legacy transactions must be
/// EIP-155 (carry a chain id), as geth requires over RPC by default.
pub fn decode_raw(raw: &[u8]) -> Result<Decoded, RpcError> {
    if raw.len() > MAX_RAW_TX_BYTES {
        return Err(RpcError::rejected(format!(
            "oversized data: transaction size {}, limit {MAX_RAW_TX_BYTES}",
            raw.len()
        )));
    }
    // Exact: trailing bytes after the envelope would be stored with it without paying for them.
    let envelope = TxEnvelope::decode_2718_exact(raw).map_err(|e| RpcError::rejected(format!("rlp: {e}")))?;
    match envelope.tx_type() {
        TxType::Legacy | TxType::Eip2930 | TxType::Eip1559 => {}
        _ => return Err(RpcError::rejected("transaction type not supported")),
    }
    if envelope.chain_id().is_none() {
        return Err(RpcError::rejected(
            "only replay-protected (EIP-155) transactions allowed over RPC",
        ));
    }
    let sender = recover_sender(&envelope).ok_or_else(|| RpcError::rejected("invalid sender"))?;
    Ok(Decoded {
        hash: *envelope.tx_hash(),
        envelope,
        sender,
        raw: raw.to_vec(),
    })
}

/// The signer of `envelope`, or None. EIP-2's low `s` is required (a high-`s` twin of a valid signature is
/// refused, as geth does); the key is then recovered by alloy-primitives' libsecp256k1 backend, one recovery and no
/// second verification: it was 44% of the primary's time with k256 under the erc20 benchmark.
fn recover_sender(envelope: &TxEnvelope) -> Option<Address> {
    let signature = envelope.signature();
    if signature.normalize_s().is_some() {
        return None;
    }
    signature.recover_address_from_prehash(&envelope.signature_hash()).ok()
}

/// The block an execution runs in.
#[derive(Debug, Clone, Copy)]
pub struct BlockCtx {
    /// Block number seen by `NUMBER`: the store version the execution began at plus one (the real seqno, assigned
    /// at commit, may be higher).
    pub number: u64,
    /// Seconds since the Unix epoch (the node's clock).
    pub timestamp: u64,
}

type Evm<'a, 't> = MainnetEvm<Context<BlockEnv, TxEnv, CfgEnv, KvDb<'a, 't>, Journal<KvDb<'a, 't>>, ()>>;

fn build_evm<'a, 't>(db: KvDb<'a, 't>, config: &EvmConfig, block: BlockCtx, base_fee: u64) -> Evm<'a, 't> {
    let chain_id = config.chain_id;
    Context::mainnet()
        .with_db(db)
        .modify_cfg_chained(|c| {
            c.chain_id = chain_id;
            c.tx_gas_limit_cap = Some(BLOCK_GAS_LIMIT);
        })
        .modify_block_chained(|b| {
            b.number = U256::from(block.number);
            b.timestamp = U256::from(block.timestamp);
            b.gas_limit = BLOCK_GAS_LIMIT;
            b.basefee = base_fee;
            b.beneficiary = Address::ZERO;
            b.prevrandao = Some(B256::ZERO);
        })
        .build_mainnet()
}

fn tx_env(d: &Decoded) -> TxEnv {
    let t = &d.envelope;
    TxEnv {
        tx_type: t.tx_type() as u8,
        caller: d.sender,
        gas_limit: t.gas_limit(),
        gas_price: t.max_fee_per_gas(),
        kind: t.kind(),
        value: t.value(),
        data: t.input().clone(),
        nonce: t.nonce(),
        chain_id: t.chain_id(),
        access_list: t.access_list().cloned().unwrap_or_default(),
        gas_priority_fee: t.max_priority_fee_per_gas(),
        ..TxEnv::default()
    }
}

/// Who submits a transaction and where it goes in its block.
#[derive(Debug, Clone, Copy)]
pub struct SendCtx<'a> {
    /// The Consort user submitting it.
    pub user: &'a str,
    /// The block.
    pub block: BlockCtx,
    /// Its position in the block.
    pub index: u32,
    /// Gas used by the block's earlier transactions.
    pub cumulative_gas: u64,
}

/// What an included transaction left: its hash, the Keccak-256 of its receipt's EIP-2718 bytes, and its gas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Included {
    /// Transaction hash.
    pub hash: B256,
    /// Keccak-256 of the receipt (EIP-2718 encoding).
    pub receipt_hash: B256,
    /// Gas it used.
    pub gas_used: u64,
}

/// Checks `d` against the state and executes it, storing the state changes, the owner binding, the receipt and
/// the record. A refused transaction (chain id, owner, nonce, funds, fees, gas) writes nothing; an included one
/// that reverts or halts is stored with status 0, as on Ethereum.
pub fn send(
    tx: &mut Tx<'_>,
    config: &EvmConfig,
    codes: &CodeCache,
    ctx: &SendCtx<'_>,
    d: &Decoded,
) -> Result<Included, RpcError> {
    let t = &d.envelope;
    let want = config.chain_id;
    if t.chain_id() != Some(want) {
        let have = t.chain_id().unwrap_or(0);
        return Err(RpcError::rejected(format!(
            "invalid chain id for signer: have {have} want {want}"
        )));
    }
    if tx.has(TXS_MAP, d.hash.as_slice()) {
        return Err(RpcError::rejected("already known"));
    }
    let owner = tx.get(OWNERS_MAP, d.sender.as_slice());
    if owner.as_deref().is_some_and(|o| o != ctx.user.as_bytes()) {
        return Err(RpcError::rejected(format!(
            "invalid sender: address {} is bound to another user",
            d.sender
        )));
    }
    let mut db = KvDb::new(tx, config, codes);
    precheck(&mut db, config, d)?;
    let mut evm = build_evm(db, config, ctx.block, config.base_fee);
    let out = evm.transact(tx_env(d)).map_err(|e| refusal(e, d))?;
    let mut db = evm.ctx.journaled_state.database;
    db.commit_changes(out.state, Address::ZERO);
    let tx = db.tx();
    if owner.is_none() {
        tx.put(OWNERS_MAP, d.sender.as_slice(), ctx.user.as_bytes());
    }
    let (success, gas_used, logs, contract) = match out.result {
        ExecutionResult::Success { gas, logs, output, .. } => {
            let contract = match output {
                Output::Create(_, addr) => addr,
                Output::Call(_) => None,
            };
            (true, gas.tx_gas_used(), logs, contract)
        }
        ExecutionResult::Revert { gas, logs, .. } | ExecutionResult::Halt { gas, logs, .. } => {
            (false, gas.tx_gas_used(), logs, None)
        }
    };
    let receipt = Receipt {
        status: success.into(),
        cumulative_gas_used: ctx.cumulative_gas.saturating_add(gas_used),
        logs,
    }
    .with_bloom();
    let envelope = match t.tx_type() {
        TxType::Eip2930 => ReceiptEnvelope::Eip2930(receipt),
        TxType::Eip1559 => ReceiptEnvelope::Eip1559(receipt),
        _ => ReceiptEnvelope::Legacy(receipt),
    };
    let receipt_bytes = envelope.encoded_2718();
    let record = TxRecord {
        user: ctx.user.to_string(),
        sender: d.sender,
        index: ctx.index,
        timestamp: ctx.block.timestamp,
        gas_used,
        effective_gas_price: t.effective_gas_price(Some(config.base_fee)),
        contract,
        raw: d.raw.clone(),
        receipt: receipt_bytes,
    };
    tx.put(TXS_MAP, d.hash.as_slice(), &record.encode());
    Ok(Included {
        hash: d.hash,
        receipt_hash: keccak256(&record.receipt),
        gas_used,
    })
}

/// The checks geth's pool makes, with its messages: gas limit, fee against the base fee, nonce, funds.
fn precheck(db: &mut KvDb<'_, '_>, config: &EvmConfig, d: &Decoded) -> Result<(), RpcError> {
    let t = &d.envelope;
    if t.gas_limit() > BLOCK_GAS_LIMIT {
        return Err(RpcError::rejected("exceeds block gas limit"));
    }
    if t.max_fee_per_gas() < u128::from(config.base_fee) {
        return Err(RpcError::rejected(format!(
            "max fee per gas less than block base fee: address {}, maxFeePerGas: {}, baseFee: {}",
            d.sender,
            t.max_fee_per_gas(),
            config.base_fee
        )));
    }
    let (acc, _) = db.account(&d.sender).map_err(internal)?;
    let acc = acc.unwrap_or_default();
    if t.nonce() < acc.nonce {
        return Err(RpcError::rejected(format!(
            "nonce too low: address {}, tx: {} state: {}",
            d.sender,
            t.nonce(),
            acc.nonce
        )));
    }
    if t.nonce() > acc.nonce {
        return Err(RpcError::rejected(format!(
            "nonce too high: address {}, tx: {} state: {}",
            d.sender,
            t.nonce(),
            acc.nonce
        )));
    }
    let cost = U256::from(t.gas_limit())
        .saturating_mul(U256::from(t.max_fee_per_gas()))
        .saturating_add(t.value());
    if acc.balance < cost {
        return Err(RpcError::rejected(format!(
            "insufficient funds for gas * price + value: address {} have {} want {}",
            d.sender, acc.balance, cost
        )));
    }
    Ok(())
}

fn internal(e: StateError) -> RpcError {
    RpcError::internal(e.to_string())
}

/// A refusal by revm's own validation, in geth's words where clients match on them.
fn refusal(e: EVMError<StateError>, d: &Decoded) -> RpcError {
    match e {
        EVMError::Transaction(InvalidTransaction::CallGasCostMoreThanGasLimit { .. })
        | EVMError::Transaction(InvalidTransaction::GasFloorMoreThanGasLimit { .. }) => {
            RpcError::rejected("intrinsic gas too low")
        }
        EVMError::Transaction(InvalidTransaction::NonceTooLow { tx, state }) => {
            RpcError::rejected(format!("nonce too low: address {}, tx: {tx} state: {state}", d.sender))
        }
        EVMError::Transaction(InvalidTransaction::NonceTooHigh { tx, state }) => {
            RpcError::rejected(format!("nonce too high: address {}, tx: {tx} state: {state}", d.sender))
        }
        EVMError::Transaction(InvalidTransaction::LackOfFundForMaxFee { fee, balance }) => RpcError::rejected(format!(
            "insufficient funds for gas * price + value: address {} have {balance} want {fee}",
            d.sender
        )),
        EVMError::Transaction(InvalidTransaction::InvalidChainId) => RpcError::rejected("invalid chain id for signer"),
        EVMError::Transaction(other) => RpcError::rejected(other.to_string()),
        EVMError::Database(db) => internal(db),
        other => RpcError::internal(other.to_string()),
    }
}

/// A call that is not a transaction (`eth_call`, `eth_estimateGas`).
#[derive(Debug, Clone, Default)]
pub struct CallRequest {
    /// Caller (the zero address if absent).
    pub from: Option<Address>,
    /// Callee; None creates a contract.
    pub to: Option<Address>,
    /// Gas limit (default [`BLOCK_GAS_LIMIT`]).
    pub gas: Option<u64>,
    /// Value sent.
    pub value: U256,
    /// Calldata.
    pub data: Bytes,
    /// EIP-2930 access list (its addresses and slots start warm, and each costs intrinsic gas, as for a sent
    /// EIP-2930 or EIP-1559 transaction, so an estimate covers it).
    pub access_list: alloy_eips::eip2930::AccessList,
}

/// The outcome of a call: success with its output and gas, or a refusal or revert as an RPC error.
#[derive(Debug, Clone)]
pub struct CallOutcome {
    /// Output bytes.
    pub output: Bytes,
    /// Gas used (after refunds).
    pub gas_used: u64,
    /// Gas spent before refunds (the limit the call needs is at least this).
    pub gas_spent: u64,
}

/// Runs `req` against the state of `tx` and writes nothing. Calls pay no gas (price 0, no base fee) and skip
/// the nonce check, as geth's `eth_call` does.
pub fn call(
    tx: &mut Tx<'_>,
    config: &EvmConfig,
    codes: &CodeCache,
    block: BlockCtx,
    req: &CallRequest,
    gas_left: &mut u64,
) -> Result<CallOutcome, RpcError> {
    let limit = req.gas.unwrap_or(BLOCK_GAS_LIMIT).min(BLOCK_GAS_LIMIT);
    if *gas_left < limit {
        return Err(RpcError::new(
            crate::error::LIMIT_EXCEEDED,
            format!("request exceeds its call gas budget ({MAX_CALL_GAS_PER_REQUEST} gas for all its calls)"),
        ));
    }
    // Charged the whole limit unless the call succeeds (then what it spent is refunded below).
    *gas_left -= limit;
    let db = KvDb::new(tx, config, codes);
    let mut evm = build_evm(db, config, block, 0);
    evm.ctx.cfg.disable_nonce_check = true;
    let env = TxEnv {
        // A listed access list makes it an EIP-2930 call, so revm charges and warms what it names.
        tx_type: if req.access_list.0.is_empty() { 0 } else { 1 },
        access_list: req.access_list.clone(),
        caller: req.from.unwrap_or(Address::ZERO),
        gas_limit: limit,
        gas_price: 0,
        kind: req.to.map_or(TxKind::Create, TxKind::Call),
        value: req.value,
        data: req.data.clone(),
        chain_id: Some(config.chain_id),
        ..TxEnv::default()
    };
    let out = evm.transact(env).map_err(|e| match e {
        EVMError::Transaction(InvalidTransaction::LackOfFundForMaxFee { fee, balance }) => RpcError::rejected(format!(
            "insufficient funds for gas * price + value: address {} have {balance} want {fee}",
            req.from.unwrap_or(Address::ZERO)
        )),
        EVMError::Transaction(InvalidTransaction::CallGasCostMoreThanGasLimit { .. }) => {
            RpcError::rejected("intrinsic gas too low")
        }
        EVMError::Transaction(other) => RpcError::rejected(other.to_string()),
        EVMError::Database(db) => internal(db),
        other => RpcError::internal(other.to_string()),
    })?;
    match out.result {
        ExecutionResult::Success { gas, output, .. } => {
            *gas_left += limit.saturating_sub(gas.total_gas_spent());
            Ok(CallOutcome {
                output: output.into_data(),
                gas_used: gas.tx_gas_used(),
                gas_spent: gas.total_gas_spent(),
            })
        }
        ExecutionResult::Revert { output, .. } => Err(RpcError::reverted(&output)),
        ExecutionResult::Halt { reason, .. } => Err(RpcError::rejected(format!("execution halted: {reason:?}"))),
    }
}

/// The least gas limit with which `req` succeeds (geth's binary search, from the gas spent up to the cap).
pub fn estimate_gas(
    tx: &mut Tx<'_>,
    config: &EvmConfig,
    codes: &CodeCache,
    block: BlockCtx,
    req: &CallRequest,
    gas_left: &mut u64,
) -> Result<u64, RpcError> {
    let cap = req.gas.unwrap_or(BLOCK_GAS_LIMIT).min(BLOCK_GAS_LIMIT);
    let mut run = |tx: &mut Tx<'_>, gas: u64| {
        let r = CallRequest {
            gas: Some(gas),
            ..req.clone()
        };
        call(tx, config, codes, block, &r, gas_left)
    };
    let first = run(tx, cap)?;
    // Whether `gas` suffices; a spent budget ends the search with its error rather than a wrong answer.
    let mut fits = |tx: &mut Tx<'_>, gas: u64| match run(tx, gas) {
        Ok(_) => Ok(true),
        Err(e) if e.code == crate::error::LIMIT_EXCEEDED => Err(e),
        Err(_) => Ok(false),
    };
    let mut lo = first.gas_used.saturating_sub(1);
    let mut hi = cap;
    // Most calls succeed with what they spent plus the 1/64 kept back by each nested call: try that first.
    let guess = first.gas_spent.max(first.gas_used).saturating_mul(64) / 63 + 2_300;
    if guess < hi && fits(tx, guess)? {
        hi = guess;
    }
    while lo + 1 < hi {
        let mid = lo + (hi - lo) / 2;
        if fits(tx, mid)? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi)
}
