//! Shared helpers of the consort-evm tests: a chain over a KV store, keys that sign, hand-assembled contracts.
#![allow(dead_code)] // reason: each test file uses a part of the helpers

use alloy_consensus::{SignableTransaction, TxEip1559, TxEip2930, TxEnvelope, TxLegacy};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, Bytes, Signature, TxKind, U256};
use consort_evm::{CodeCache, ConfigCache, Session};
use consort_kv::{Store, Tx};
use k256::ecdsa::SigningKey;
use serde_json::{json, Value};
use std::sync::Arc;

pub const USER: &str = "user-a";
pub const OTHER: &str = "user-b";

/// A chain: one store, committing each request as one Consort transaction.
pub struct Chain {
    pub store: Arc<Store>,
    pub codes: CodeCache,
    pub config: ConfigCache,
    /// What the host says is committed (None: everything stored).
    pub committed: Option<u64>,
    next_id: u64,
}

impl Chain {
    pub fn new() -> Self {
        Chain {
            store: Arc::new(Store::new()),
            codes: CodeCache::default(),
            config: ConfigCache::default(),
            committed: None,
            next_id: 1,
        }
    }

    /// Runs `body` as `user`, commits what it wrote; the reply body as JSON, and whether anything was written.
    pub fn raw(&mut self, user: &str, body: &[u8]) -> (Value, bool, Option<[u8; 32]>) {
        let mut tx = Tx::shared(self.store.clone());
        let config = self.config.load(&mut tx).unwrap();
        let session = Session {
            user,
            now_s: 1_700_000_000,
            config: &config,
            codes: &self.codes,
            committed: self.committed,
        };
        let reply = consort_evm::handle(&mut tx, body, &session);
        let wrote = tx.has_writes();
        self.store.commit(tx, |_, _| ()).unwrap();
        let v = if reply.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&reply.body).unwrap()
        };
        (v, wrote, reply.claims_digest())
    }

    pub fn rpc(&mut self, user: &str, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let (v, _, _) = self.raw(user, body.to_string().as_bytes());
        assert_eq!(v["id"], json!(id));
        v
    }

    pub fn ok(&mut self, user: &str, method: &str, params: Value) -> Value {
        let v = self.rpc(user, method, params);
        assert!(v.get("error").is_none(), "{method}: {v}");
        v["result"].clone()
    }

    /// Sends `raw` and returns (response, wrote anything).
    pub fn send(&mut self, user: &str, raw: &[u8]) -> (Value, bool) {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction", "params": [hex0x(raw)]});
        let (v, wrote, _) = self.raw(user, body.to_string().as_bytes());
        (v, wrote)
    }

    pub fn receipt(&mut self, user: &str, hash: &Value) -> Value {
        self.ok(user, "eth_getTransactionReceipt", json!([hash]))
    }

    /// Puts a configuration as governance would.
    pub fn configure(&mut self, config: Value) {
        let mut tx = Tx::shared(self.store.clone());
        tx.put(
            consort_evm::config::CONFIG_MAP,
            &consort_evm::config::CONFIG_KEY,
            config.to_string().as_bytes(),
        );
        self.store.commit(tx, |_, _| ()).unwrap();
    }
}

pub fn hex0x(b: &[u8]) -> String {
    format!("0x{}", hex::encode(b))
}

/// A key and its address.
pub struct Key {
    pub sk: SigningKey,
    pub address: Address,
}

impl Key {
    pub fn new(seed: u8) -> Self {
        let sk = SigningKey::from_slice(&[seed; 32]).unwrap();
        let address = Address::from_public_key(sk.verifying_key());
        Key { sk, address }
    }

    fn sign<T: SignableTransaction<Signature>>(&self, t: T) -> Vec<u8>
    where
        TxEnvelope: From<alloy_consensus::Signed<T>>,
    {
        let hash = t.signature_hash();
        let (sig, rec) = self.sk.sign_prehash_recoverable(hash.as_slice()).unwrap();
        let signature = Signature::from((sig, rec));
        TxEnvelope::from(t.into_signed(signature)).encoded_2718()
    }

    pub fn legacy(&self, chain_id: u64, nonce: u64, to: Option<Address>, input: &[u8]) -> Vec<u8> {
        self.sign(TxLegacy {
            chain_id: Some(chain_id),
            nonce,
            gas_price: 0,
            gas_limit: 1_000_000,
            to: to.map_or(TxKind::Create, TxKind::Call),
            value: U256::ZERO,
            input: Bytes::copy_from_slice(input),
        })
    }

    pub fn eip2930(&self, chain_id: u64, nonce: u64, to: Option<Address>, input: &[u8]) -> Vec<u8> {
        self.sign(TxEip2930 {
            chain_id,
            nonce,
            gas_price: 0,
            gas_limit: 1_000_000,
            to: to.map_or(TxKind::Create, TxKind::Call),
            value: U256::ZERO,
            access_list: Default::default(),
            input: Bytes::copy_from_slice(input),
        })
    }

    /// A legacy transfer to `to` with the given gas limit.
    pub fn legacy_gas(&self, chain_id: u64, nonce: u64, to: Address, gas_limit: u64) -> Vec<u8> {
        self.sign(TxLegacy {
            chain_id: Some(chain_id),
            nonce,
            gas_price: 0,
            gas_limit,
            to: TxKind::Call(to),
            value: U256::ZERO,
            input: Bytes::new(),
        })
    }

    pub fn eip1559(
        &self,
        chain_id: u64,
        nonce: u64,
        to: Option<Address>,
        input: &[u8],
        fee: u128,
        value: U256,
    ) -> Vec<u8> {
        self.sign(TxEip1559 {
            chain_id,
            nonce,
            gas_limit: 1_000_000,
            max_fee_per_gas: fee,
            max_priority_fee_per_gas: 0,
            to: to.map_or(TxKind::Create, TxKind::Call),
            value,
            access_list: Default::default(),
            input: Bytes::copy_from_slice(input),
        })
    }
}

/// Init code that deploys `runtime` (CODECOPY it to memory, RETURN it).
pub fn deploy(runtime: &[u8]) -> Vec<u8> {
    let len = u8::try_from(runtime.len()).unwrap();
    let mut code = vec![0x60, len, 0x60, 12, 0x60, 0, 0x39, 0x60, len, 0x60, 0, 0xf3];
    code.extend(runtime);
    code
}

/// Stores the first calldata word at slot 0.
pub const STORE_RUNTIME: [u8; 7] = [0x60, 0, 0x35, 0x60, 0, 0x55, 0x00];

/// Reverts with `Error("nope")`.
pub fn revert_runtime() -> Vec<u8> {
    let mut payload = vec![0x08, 0xc3, 0x79, 0xa0];
    payload.extend([0u8; 31]);
    payload.push(0x20);
    payload.extend([0u8; 31]);
    payload.push(4);
    payload.extend(b"nope");
    payload.extend([0u8; 28]);
    let mut code = vec![0x60, 100, 0x60, 12, 0x60, 0, 0x39, 0x60, 100, 0x60, 0, 0xfd];
    code.extend(payload);
    code
}

/// Emits LOG2(data = first calldata word, topics = [0xbb, `who` as an address topic]).
pub fn log_runtime(who: Address) -> Vec<u8> {
    let mut code = vec![0x60, 0, 0x35, 0x60, 0, 0x52, 0x73];
    code.extend(who.as_slice());
    code.extend([0x60, 0xbb, 0x60, 0x20, 0x60, 0, 0xa2, 0x00]);
    code
}

pub fn word(n: u8) -> Vec<u8> {
    let mut w = vec![0u8; 32];
    w[31] = n;
    w
}
