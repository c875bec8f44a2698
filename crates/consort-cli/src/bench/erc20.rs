//! The erc20 workload over the EVM app's JSON-RPC (`POST /app/eth`): deploys examples/erc20's token from the
//! embedded creation bytecode, funds `--accounts` accounts by transfers from the deployer (sent one after another,
//! since one account's nonces must arrive in order), pre-signs the load's transfers, and hands each worker of the load
//! phase its own accounts, so that no two requests of one account are ever in flight at once and every nonce is the
//! next one. Transactions are EIP-155 legacy transfers at the node's gas price (0 on the sandbox), signed with k256.
//! After the load, the funded accounts' balances must still add up to what they were given (transfers only move
//! tokens between them).

use super::args::BenchArgs;
use super::workload::{Call, Generator, Op, Rng};
use super::BenchError;
use alloy_consensus::transaction::RlpEcdsaEncodableTx;
use alloy_consensus::{SignableTransaction, TxLegacy};
use alloy_primitives::{Address, Signature, TxKind, U256};
use consort_node::net::client::Connection;
use k256::ecdsa::SigningKey;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The EVM app's JSON-RPC endpoint.
pub(super) const ETH_PATH: &str = "/app/eth";
/// The token's creation bytecode, compiled from examples/erc20/Token.sol by its compile.js (tests/evm_tooling.rs
/// checks that a fresh compile gives these bytes).
const TOKEN_CREATION_HEX: &str = include_str!("../../../../examples/erc20/Token.bin.hex");
/// Gas limit of a deployment and of a transfer (a transfer to an empty balance slot costs about 52,000).
const DEPLOY_GAS: u64 = 3_000_000;
const TRANSFER_GAS: u64 = 100_000;
/// Tokens each funded account receives; transfers move 1..=MAX_TRANSFER of them, so none runs dry.
const FUNDING: u64 = 1_000_000_000;
const MAX_TRANSFER: u64 = 100;
/// Longest the setup waits for a receipt.
const RECEIPT_WAIT: Duration = Duration::from_secs(60);
/// With --duration-s, transfers pre-signed per second of load (beyond them, workers sign as they go).
const PRESIGN_PER_S: f64 = 15_000.0;
/// Most transfers pre-signed in all.
const MAX_PRESIGNED: u64 = 2_000_000;

/// An account the bench signs for, with its next nonce.
struct Account {
    key: SigningKey,
    address: Address,
    nonce: u64,
}

impl Account {
    fn random(rng: &mut Rng) -> Account {
        loop {
            let mut secret = [0u8; 32];
            for chunk in secret.chunks_mut(8) {
                chunk.copy_from_slice(&rng.next_u64().to_be_bytes());
            }
            if let Ok(key) = SigningKey::from_slice(&secret) {
                let address = Address::from_private_key(&key);
                return Account { key, address, nonce: 0 };
            }
        }
    }

    /// Signs a legacy EIP-155 transaction with this account's next nonce; returns its raw bytes.
    fn sign(&mut self, chain: &Chain, to: TxKind, gas_limit: u64, input: Vec<u8>) -> Result<Vec<u8>, BenchError> {
        let tx = TxLegacy {
            chain_id: Some(chain.id),
            nonce: self.nonce,
            gas_price: chain.gas_price,
            gas_limit,
            to,
            value: U256::ZERO,
            input: input.into(),
        };
        let hash = tx.signature_hash();
        let (sig, recid) = self
            .key
            .sign_prehash_recoverable(hash.as_slice())
            .map_err(|e| BenchError::Erc20(format!("signing: {e}")))?;
        let mut raw = Vec::with_capacity(200);
        tx.rlp_encode_signed(&Signature::from((sig, recid)), &mut raw);
        self.nonce += 1;
        Ok(raw)
    }
}

/// What transactions need to know of the chain.
#[derive(Debug, Clone, Copy)]
struct Chain {
    id: u64,
    gas_price: u128,
}

/// The deployed token and its funded accounts, ready for the load.
pub(super) struct Erc20 {
    chain: Chain,
    token: Address,
    accounts: Vec<Account>,
}

/// `transfer(to, amount)` calldata.
fn transfer_calldata(to: Address, amount: u64) -> Vec<u8> {
    let mut data = Vec::with_capacity(68);
    data.extend_from_slice(&[0xa9, 0x05, 0x9c, 0xbb]);
    data.extend_from_slice(&[0; 12]);
    data.extend_from_slice(to.as_slice());
    data.extend_from_slice(&U256::from(amount).to_be_bytes::<32>());
    data
}

/// `balanceOf(owner)` calldata.
fn balance_of_calldata(owner: Address) -> String {
    format!("0x70a08231{:0>64}", hex::encode(owner.as_slice()))
}

/// The creation code with the constructor's arguments `(string name, string symbol, uint256 supply)` ABI-encoded
/// (both strings under 32 bytes).
fn creation_code(name: &str, symbol: &str, supply: U256) -> Result<Vec<u8>, BenchError> {
    let mut code = hex::decode(TOKEN_CREATION_HEX.trim()).map_err(|e| BenchError::Erc20(format!("bytecode: {e}")))?;
    let word = |n: usize| U256::from(n).to_be_bytes::<32>();
    let string = |s: &str| {
        let mut w = [0u8; 32];
        w[..s.len()].copy_from_slice(s.as_bytes());
        w
    };
    for w in [word(0x60), word(0xa0), supply.to_be_bytes::<32>()] {
        code.extend_from_slice(&w);
    }
    for s in [name, symbol] {
        code.extend_from_slice(&word(s.len()));
        code.extend_from_slice(&string(s));
    }
    Ok(code)
}

/// One JSON-RPC call; its `result`, or its error as a [`BenchError`].
async fn rpc(conn: &Connection, method: &str, params: Value) -> Result<Value, BenchError> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let reply = conn
        .post_json(ETH_PATH, &body)
        .await
        .map_err(|e| BenchError::Erc20(format!("{method}: {e}")))?;
    let v = reply
        .json()
        .map_err(|e| BenchError::Erc20(format!("{method}: HTTP {}: {e}", reply.status)))?;
    match (v.get("result"), v.get("error")) {
        (Some(r), None) => Ok(r.clone()),
        _ => Err(BenchError::Erc20(format!("{method}: HTTP {}: {v}", reply.status))),
    }
}

fn quantity(v: &Value, what: &str) -> Result<u128, BenchError> {
    v.as_str()
        .and_then(|s| u128::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .ok_or_else(|| BenchError::Erc20(format!("{what}: not a quantity: {v}")))
}

async fn send_raw(conn: &Connection, raw: &[u8]) -> Result<Value, BenchError> {
    rpc(
        conn,
        "eth_sendRawTransaction",
        json!([format!("0x{}", hex::encode(raw))]),
    )
    .await
}

/// Waits (bounded) for the receipt of `hash`; fails unless its status is 1.
async fn succeeded(conn: &Connection, hash: &Value, what: &str) -> Result<(), BenchError> {
    let deadline = Instant::now() + RECEIPT_WAIT;
    loop {
        let receipt = rpc(conn, "eth_getTransactionReceipt", json!([hash])).await?;
        if !receipt.is_null() {
            return match receipt["status"].as_str() {
                Some("0x1") => Ok(()),
                _ => Err(BenchError::Erc20(format!("{what} failed: {receipt}"))),
            };
        }
        if Instant::now() > deadline {
            return Err(BenchError::Erc20(format!("{what}: no receipt within {RECEIPT_WAIT:?}")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Deploys the token from a fresh account and funds `args.accounts` fresh accounts with [`FUNDING`] tokens each.
pub(super) async fn setup(conn: &Connection, args: &BenchArgs, seed: u64) -> Result<Erc20, BenchError> {
    let mut rng = Rng(seed);
    let chain = Chain {
        id: u64::try_from(quantity(&rpc(conn, "eth_chainId", json!([])).await?, "eth_chainId")?)
            .map_err(|_| BenchError::Erc20("chain id beyond u64".into()))?,
        gas_price: quantity(&rpc(conn, "eth_gasPrice", json!([])).await?, "eth_gasPrice")?,
    };
    let mut deployer = Account::random(&mut rng);
    let supply = U256::from(FUNDING) * U256::from(args.accounts);
    let code = creation_code("Bench Token", "BENCH", supply)?;
    let token = deployer.address.create(deployer.nonce);
    let raw = deployer.sign(&chain, TxKind::Create, DEPLOY_GAS, code)?;
    succeeded(conn, &send_raw(conn, &raw).await?, "deployment").await?;
    let accounts: Vec<Account> = (0..args.accounts).map(|_| Account::random(&mut rng)).collect();
    let mut last = Value::Null;
    for a in &accounts {
        let raw = deployer.sign(
            &chain,
            TxKind::Call(token),
            TRANSFER_GAS,
            transfer_calldata(a.address, FUNDING),
        )?;
        last = send_raw(conn, &raw).await?;
    }
    succeeded(conn, &last, "funding").await?;
    Ok(Erc20 { chain, token, accounts })
}

/// One worker's accounts (taken in turn) and its pre-signed request bodies.
struct WorkerTxs {
    accounts: Vec<Account>,
    turn: usize,
    presigned: VecDeque<Vec<u8>>,
}

/// What a transfer needs besides its sender.
struct Shared {
    chain: Chain,
    token: Address,
    recipients: Vec<Address>,
}

impl Shared {
    /// The next transfer of `w`'s next account to a random funded account, as a JSON-RPC request body.
    fn next_body(&self, w: &mut WorkerTxs, rng: &mut Rng) -> Result<Vec<u8>, BenchError> {
        let n = w.accounts.len();
        let sender = &mut w.accounts[w.turn % n];
        w.turn = w.turn.wrapping_add(1);
        let mut to = self.recipients[rng.below(self.recipients.len() as u64) as usize];
        if to == sender.address {
            to = self.recipients[0];
        }
        let amount = rng.below(MAX_TRANSFER) + 1;
        let raw = sender.sign(
            &self.chain,
            TxKind::Call(self.token),
            TRANSFER_GAS,
            transfer_calldata(to, amount),
        )?;
        Ok(format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":["0x{}"]}}"#,
            hex::encode(raw)
        )
        .into_bytes())
    }
}

impl Erc20 {
    /// The load's generator: worker `w` of `workers` sends from accounts w, w + workers, ...; `total` transfers are
    /// pre-signed (on two threads, before the load), and any beyond them are signed as they are sent.
    pub(super) fn load_generator(self, workers: usize, total: u64, seed: u64) -> Result<Arc<Generator>, BenchError> {
        if self.accounts.len() < workers {
            return Err(BenchError::Args(format!(
                "--workload erc20 needs --accounts >= connections x window ({workers}), one sender per worker at least"
            )));
        }
        let shared = Arc::new(Shared {
            chain: self.chain,
            token: self.token,
            recipients: self.accounts.iter().map(|a| a.address).collect(),
        });
        let mut per_worker: Vec<WorkerTxs> = (0..workers)
            .map(|_| WorkerTxs {
                accounts: vec![],
                turn: 0,
                presigned: VecDeque::new(),
            })
            .collect();
        for (i, a) in self.accounts.into_iter().enumerate() {
            per_worker[i % workers].accounts.push(a);
        }
        let each = total.min(MAX_PRESIGNED).div_ceil(workers as u64);
        presign(&shared, &mut per_worker, each, seed)?;
        let states: Arc<Vec<Mutex<(WorkerTxs, Rng)>>> = Arc::new(
            per_worker
                .into_iter()
                .enumerate()
                .map(|(w, txs)| Mutex::new((txs, Rng(seed ^ (w as u64).wrapping_mul(0x9e37_79b9)))))
                .collect(),
        );
        Ok(Arc::new(move |_, worker, _| {
            let Ok(mut guard) = states[worker % states.len()].lock() else {
                return Call::post_raw(Op::Erc20Transfer, ETH_PATH, vec![]);
            };
            let (txs, rng) = &mut *guard;
            let body = match txs.presigned.pop_front() {
                Some(b) => b,
                // Signing cannot fail for a valid key; an empty body would be refused and counted as an error.
                None => shared.next_body(txs, rng).unwrap_or_default(),
            };
            Call::post_raw(Op::Erc20Transfer, ETH_PATH, body)
        }))
    }
}

/// Pre-signs `each` transfers for every worker, on two threads.
fn presign(shared: &Shared, workers: &mut [WorkerTxs], each: u64, seed: u64) -> Result<(), BenchError> {
    let half = workers.len().div_ceil(2);
    let results: Vec<Result<(), BenchError>> = std::thread::scope(|s| {
        let handles: Vec<_> = workers
            .chunks_mut(half.max(1))
            .enumerate()
            .map(|(c, chunk)| {
                s.spawn(move || {
                    let mut rng = Rng(seed ^ 0x5eed ^ c as u64);
                    for w in chunk.iter_mut() {
                        for _ in 0..each {
                            let body = shared.next_body(w, &mut rng)?;
                            w.presigned.push_back(body);
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(BenchError::Erc20("a signing thread panicked".into())))
            })
            .collect()
    });
    results.into_iter().collect()
}

/// How many transfers to pre-sign for the load: --requests, or --duration-s at [`PRESIGN_PER_S`].
pub(super) fn presign_count(args: &BenchArgs, default_requests: u64) -> u64 {
    match (args.requests, args.duration_s) {
        (Some(n), _) => n,
        (None, Some(d)) => (d * PRESIGN_PER_S) as u64,
        (None, None) => default_requests,
    }
}

/// The funded accounts' balances added up (read with eth_call after the load), and what they should add up to.
pub(super) async fn balances(
    conn: &Connection,
    token: Address,
    owners: &[Address],
) -> Result<(i128, i128), BenchError> {
    let mut sum: i128 = 0;
    for owner in owners {
        let call = json!([{"to": token.to_string(), "data": balance_of_calldata(*owner)}, "latest"]);
        sum += i128::try_from(quantity(&rpc(conn, "eth_call", call).await?, "balanceOf")?)
            .map_err(|_| BenchError::Erc20("a balance beyond i128".into()))?;
    }
    let expected = i128::from(FUNDING) * owners.len() as i128;
    Ok((expected, sum))
}

impl Erc20 {
    /// The token and the funded accounts' addresses, for [`balances`] after the load.
    pub(super) fn book(&self) -> (Address, Vec<Address>) {
        (self.token, self.accounts.iter().map(|a| a.address).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_consensus::transaction::RlpEcdsaDecodableTx;
    use alloy_consensus::Signed;

    #[test]
    fn a_signed_transfer_recovers_to_its_sender_and_carries_the_transfer() {
        let chain = Chain { id: 4242, gas_price: 0 };
        let mut a = Account::random(&mut Rng(7));
        let to = Address::repeat_byte(0x11);
        let raw = a
            .sign(
                &chain,
                TxKind::Call(Address::ZERO),
                TRANSFER_GAS,
                transfer_calldata(to, 5),
            )
            .unwrap();
        let signed: Signed<TxLegacy> = TxLegacy::rlp_decode_signed(&mut raw.as_slice()).unwrap();
        assert_eq!(signed.recover_signer().unwrap(), a.address);
        assert_eq!(signed.tx().chain_id, Some(4242));
        assert_eq!(a.nonce, 1);
        let input = &signed.tx().input;
        assert_eq!(&input[..4], &[0xa9, 0x05, 0x9c, 0xbb]);
        assert_eq!(&input[16..36], to.as_slice());
        assert_eq!(input[67], 5);
    }

    #[test]
    fn the_embedded_bytecode_and_constructor_arguments_encode() {
        let code = creation_code("Bench Token", "BENCH", U256::from(10)).unwrap();
        let base = TOKEN_CREATION_HEX.trim().len() / 2;
        assert_eq!(code.len(), base + 7 * 32);
        assert_eq!(code[base + 95], 10);
        assert_eq!(&code[base + 128..base + 139], b"Bench Token");
    }
}
