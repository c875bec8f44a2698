//! consort-evm end to end over a KV store: contracts hand-assembled, transactions signed here with k256.

mod common;

use alloy_primitives::{keccak256, Address, U256};
use common::*;
use consort_evm::config::DEFAULT_CHAIN_ID;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const CHAIN: u64 = DEFAULT_CHAIN_ID;

fn deployed(chain: &mut Chain, key: &Key, nonce: u64, runtime: &[u8]) -> (Value, Address) {
    let (resp, wrote) = chain.send(USER, &key.legacy(CHAIN, nonce, None, &deploy(runtime)));
    assert!(wrote, "{resp}");
    let hash = resp["result"].clone();
    let receipt = chain.receipt(USER, &hash);
    assert_eq!(receipt["status"], "0x1", "{receipt}");
    let addr: Address = receipt["contractAddress"].as_str().unwrap().parse().unwrap();
    (hash, addr)
}

#[test]
fn a_contract_stores_calldata_for_each_transaction_type() {
    let mut chain = Chain::new();
    let key = Key::new(1);
    assert_eq!(chain.ok(USER, "eth_chainId", json!([])), json!(format!("{CHAIN:#x}")));
    let (_, contract) = deployed(&mut chain, &key, 0, &STORE_RUNTIME);
    assert_eq!(
        chain.ok(USER, "eth_getCode", json!([contract.to_string(), "latest"])),
        json!(hex0x(&STORE_RUNTIME))
    );
    let raws = [
        key.legacy(CHAIN, 1, Some(contract), &word(7)),
        key.eip2930(CHAIN, 2, Some(contract), &word(8)),
        key.eip1559(CHAIN, 3, Some(contract), &word(9), 0, U256::ZERO),
    ];
    for (i, raw) in raws.iter().enumerate() {
        let (resp, _) = chain.send(USER, raw);
        let hash = resp["result"].clone();
        assert_eq!(hash, json!(keccak256(raw).to_string()));
        let receipt = chain.receipt(USER, &hash);
        assert_eq!(
            (receipt["status"].as_str(), receipt["type"].as_str()),
            (Some("0x1"), Some(["0x0", "0x1", "0x2"][i]))
        );
        let slot = chain.ok(USER, "eth_getStorageAt", json!([contract.to_string(), "0x0", "latest"]));
        assert_eq!(slot, json!(hex0x(&word(7 + i as u8))));
        let t = chain.ok(USER, "eth_getTransactionByHash", json!([hash]));
        assert_eq!(
            t["from"].as_str().unwrap().to_lowercase(),
            key.address.to_string().to_lowercase()
        );
        assert_eq!(t["blockNumber"], receipt["blockNumber"]);
    }
    assert_eq!(
        chain.ok(
            USER,
            "eth_getTransactionCount",
            json!([key.address.to_string(), "latest"])
        ),
        json!("0x4")
    );
    // eth_call reads the slot through the contract? It has no getter: the call just succeeds with no output.
    let out = chain.ok(
        USER,
        "eth_call",
        json!([{"to": contract.to_string(), "data": hex0x(&word(1))}, "latest"]),
    );
    assert_eq!(out, json!("0x"));
    let slot = chain.ok(USER, "eth_getStorageAt", json!([contract.to_string(), "0x0", "latest"]));
    assert_eq!(slot, json!(hex0x(&word(9))), "eth_call wrote nothing");
    let gas = chain.ok(
        USER,
        "eth_estimateGas",
        json!([{"from": key.address.to_string(), "to": contract.to_string(), "data": hex0x(&word(5))}]),
    );
    let gas = u64::from_str_radix(gas.as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
    assert!((21_000..100_000).contains(&gas), "{gas}");
    // An access list costs what a sent EIP-2930 transaction pays for it (2,400 per address, 1,900 per slot, less
    // the warm discount on the slot the call then touches), so an estimate that names one covers it.
    let listed = chain.ok(
        USER,
        "eth_estimateGas",
        json!([{"from": key.address.to_string(), "to": contract.to_string(), "data": hex0x(&word(5)),
                "accessList": [{"address": key.address.to_string(), "storageKeys": []}]}]),
    );
    let listed = u64::from_str_radix(listed.as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
    assert_eq!(listed, gas + 2_400, "one listed address");
    let e = chain.rpc(
        USER,
        "eth_estimateGas",
        json!([{"to": contract.to_string(), "accessList": 5}]),
    );
    assert_eq!(e["error"]["code"], -32602, "{e}");
}

#[test]
fn a_revert_is_included_with_status_0_and_eth_call_reports_its_reason() {
    let mut chain = Chain::new();
    let key = Key::new(2);
    let (_, contract) = deployed(&mut chain, &key, 0, &revert_runtime());
    let (resp, wrote) = chain.send(USER, &key.eip1559(CHAIN, 1, Some(contract), b"", 0, U256::ZERO));
    assert!(wrote);
    let receipt = chain.receipt(USER, &resp["result"]);
    assert_eq!(receipt["status"], "0x0");
    let e = chain.rpc(USER, "eth_call", json!([{"to": contract.to_string()}, "latest"]));
    assert_eq!(e["error"]["code"], 3);
    assert_eq!(e["error"]["message"], "execution reverted: nope");
    assert!(e["error"]["data"].as_str().unwrap().starts_with("0x08c379a0"));
    let e = chain.rpc(USER, "eth_estimateGas", json!([{"to": contract.to_string()}]));
    assert_eq!(e["error"]["code"], 3);
}

#[test]
fn logs_are_in_receipts_and_found_by_address_and_topics_and_hidden_from_others() {
    let mut chain = Chain::new();
    let key = Key::new(3);
    let bystander = Key::new(4);
    let named = Key::new(5);
    let (_, contract) = deployed(&mut chain, &key, 0, &log_runtime(named.address));
    let (resp, _) = chain.send(USER, &key.legacy(CHAIN, 1, Some(contract), &word(42)));
    let hash = resp["result"].clone();
    let receipt = chain.receipt(USER, &hash);
    let log = &receipt["logs"][0];
    assert_eq!(log["data"], json!(hex0x(&word(42))));
    assert_eq!(log["topics"][0], json!(hex0x(&word(0xbb))));
    assert_ne!(receipt["logsBloom"], json!(hex0x(&[0u8; 256])));
    let block = receipt["blockNumber"].clone();

    let found = chain.ok(
        USER,
        "eth_getLogs",
        json!([{"fromBlock": "0x0", "toBlock": "latest", "address": contract.to_string()}]),
    );
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(found[0]["transactionHash"], hash);
    let by_topic = chain.ok(
        USER,
        "eth_getLogs",
        json!([{"fromBlock": block, "toBlock": block, "topics": [hex0x(&word(0xbb))]}]),
    );
    assert_eq!(by_topic.as_array().unwrap().len(), 1);
    let none = chain.ok(
        USER,
        "eth_getLogs",
        json!([{"fromBlock": "0x0", "topics": [hex0x(&word(0xcc))]}]),
    );
    assert_eq!(none, json!([]));
    let blk = chain.ok(USER, "eth_getBlockByNumber", json!([block, false]));
    assert_eq!(blk["transactions"], json!([hash]));
    let by_hash = chain.ok(USER, "eth_getBlockByHash", json!([blk["hash"], false]));
    assert_eq!(by_hash["number"], block);

    // Another user sees nothing of it until one of its addresses is named in it.
    assert_eq!(chain.receipt(OTHER, &hash), Value::Null);
    assert_eq!(chain.ok(OTHER, "eth_getLogs", json!([{"fromBlock": "0x0"}])), json!([]));
    let (r, _) = chain.send(OTHER, &bystander.legacy(CHAIN, 0, Some(contract), &word(1)));
    assert!(r.get("result").is_some(), "{r}");
    assert_eq!(
        chain.receipt(OTHER, &hash),
        Value::Null,
        "the bystander is not named in the first transaction"
    );
    // `named`'s address is the log's second topic: once bound to OTHER, OTHER sees the transaction.
    let (r, _) = chain.send(OTHER, &named.legacy(CHAIN, 0, None, &deploy(&STORE_RUNTIME)));
    assert!(r.get("result").is_some(), "{r}");
    assert_eq!(chain.receipt(OTHER, &hash)["transactionHash"], hash);
    // An address bound to USER cannot be used by OTHER.
    let (r, wrote) = chain.send(OTHER, &key.legacy(CHAIN, 2, Some(contract), &word(1)));
    assert_eq!(r["error"]["code"], -32000);
    assert!(!wrote);
    // Under visibility "all", everyone sees everything.
    chain.configure(json!({"visibility": "all"}));
    let (r, _) = chain.send(USER, &key.legacy(CHAIN, 2, Some(contract), &word(3)));
    assert_eq!(chain.receipt(OTHER, &r["result"])["status"], "0x1");
}

fn assert_rejected(chain: &mut Chain, raw: &[u8], code: i64, message: &str) {
    let before = chain.store.current_version();
    let (resp, wrote) = chain.send(USER, raw);
    assert_eq!(resp["error"]["code"], code, "{resp}");
    assert!(resp["error"]["message"].as_str().unwrap().contains(message), "{resp}");
    assert!(!wrote, "a rejected transaction writes nothing");
    assert_eq!(chain.store.current_version(), before);
}

#[test]
fn bad_transactions_are_rejected_with_geths_codes_and_change_nothing() {
    let mut chain = Chain::new();
    let key = Key::new(6);
    let (_, contract) = deployed(&mut chain, &key, 0, &STORE_RUNTIME);
    assert_rejected(
        &mut chain,
        &key.legacy(CHAIN + 1, 1, Some(contract), &word(1)),
        -32000,
        "invalid chain id",
    );
    assert_rejected(
        &mut chain,
        &key.legacy(CHAIN, 0, Some(contract), &word(1)),
        -32000,
        "nonce too low",
    );
    assert_rejected(
        &mut chain,
        &key.legacy(CHAIN, 5, Some(contract), &word(1)),
        -32000,
        "nonce too high",
    );
    let rich = key.eip1559(CHAIN, 1, Some(contract), &word(1), 0, U256::from(1));
    assert_rejected(&mut chain, &rich, -32000, "insufficient funds for gas * price + value");
    // A signature whose r is zero recovers no sender.
    let mut raw = key.legacy(CHAIN, 1, Some(contract), &word(1));
    let n = raw.len();
    let r_at = n - 66; // r (0xa0 + 32 bytes) and s (0xa0 + 32 bytes) end the legacy RLP list
    assert_eq!(raw[r_at], 0xa0);
    raw[r_at + 1..r_at + 33].fill(0);
    let (resp, wrote) = chain.send(USER, &raw);
    assert_eq!(resp["error"]["code"], -32000, "{resp}");
    assert!(!wrote);
    assert_rejected(&mut chain, b"\x02\xc0", -32000, "rlp");
    // The same transaction twice: the second is known (or its nonce is used).
    let good = key.legacy(CHAIN, 1, Some(contract), &word(1));
    assert!(chain.send(USER, &good).0.get("result").is_some());
    assert_rejected(&mut chain, &good, -32000, "already known");
    // Base fee: a price under it is refused; an account without funds cannot pay it.
    chain.configure(json!({"base_fee": 10}));
    assert_rejected(
        &mut chain,
        &key.eip1559(CHAIN, 2, Some(contract), &word(1), 5, U256::ZERO),
        -32000,
        "less than block base fee",
    );
    assert_rejected(
        &mut chain,
        &key.eip1559(CHAIN, 2, Some(contract), &word(1), 10, U256::ZERO),
        -32000,
        "insufficient funds",
    );
    assert_eq!(chain.ok(USER, "eth_gasPrice", json!([])), json!("0xa"));
}

#[test]
fn genesis_balances_are_credited_once_and_pay_for_transfers() {
    let mut chain = Chain::new();
    let rich = Key::new(7);
    let poor = Key::new(8);
    chain.configure(json!({"chain_id": 99, "base_fee": 1, "genesis": {rich.address.to_string(): "1000000000"}}));
    let bal = |c: &mut Chain, a: Address| c.ok(USER, "eth_getBalance", json!([a.to_string(), "latest"]));
    assert_eq!(bal(&mut chain, rich.address), json!("0x3b9aca00"));
    let raw = rich.eip1559(99, 0, Some(poor.address), b"", 1, U256::from(1000));
    let (resp, _) = chain.send(USER, &raw);
    let receipt = chain.receipt(USER, &resp["result"]);
    assert_eq!(
        (receipt["gasUsed"].as_str(), receipt["status"].as_str()),
        (Some("0x5208"), Some("0x1"))
    );
    assert_eq!(bal(&mut chain, poor.address), json!("0x3e8"));
    // 1e9 - 1000 - 21000 * 1 (the fee is burned), and the credit is not applied a second time.
    assert_eq!(
        bal(&mut chain, rich.address),
        json!(format!("{:#x}", 1_000_000_000u64 - 1000 - 21000))
    );
    let raw = rich.eip1559(99, 1, Some(poor.address), b"", 1, U256::from(1));
    chain.send(USER, &raw);
    assert_eq!(
        bal(&mut chain, rich.address),
        json!(format!("{:#x}", 1_000_000_000u64 - 1001 - 42000))
    );
}

#[test]
fn the_claims_digest_commits_to_the_hash_and_the_receipt() {
    let mut chain = Chain::new();
    let key = Key::new(9);
    let raw = key.legacy(CHAIN, 0, None, &deploy(&STORE_RUNTIME));
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction", "params": [hex0x(&raw)]});
    let (resp, _, digest) = chain.raw(USER, body.to_string().as_bytes());
    let hash = keccak256(&raw);
    assert_eq!(resp["result"], json!(hash.to_string()));
    // The client's side: the receipt's EIP-2718 bytes from what eth_getTransactionReceipt shows.
    let receipt = chain.receipt(USER, &resp["result"]);
    let logs: Vec<alloy_primitives::Log> = vec![];
    let cumulative = u64::from_str_radix(
        receipt["cumulativeGasUsed"].as_str().unwrap().trim_start_matches("0x"),
        16,
    )
    .unwrap();
    let r = alloy_consensus::Receipt {
        status: true.into(),
        cumulative_gas_used: cumulative,
        logs,
    }
    .with_bloom();
    let encoded = alloy_eips::eip2718::Encodable2718::encoded_2718(&alloy_consensus::ReceiptEnvelope::Legacy(r));
    let mut h = Sha256::new();
    h.update(hash.as_slice());
    h.update(keccak256(&encoded).as_slice());
    assert_eq!(digest, Some(<[u8; 32]>::from(h.finalize())));
    // A read sets none.
    let (_, _, none) = chain.raw(USER, br#"{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"}"#);
    assert_eq!(none, None);
}

#[test]
fn json_rpc_envelopes_batches_and_errors() {
    let mut chain = Chain::new();
    let (v, _, _) = chain.raw(USER, b"{not json");
    assert_eq!(v["error"]["code"], -32700);
    let (v, _, _) = chain.raw(USER, br#"{"id": 1, "method": "eth_chainId"}"#);
    assert_eq!(v["error"]["code"], -32600);
    let (v, _, _) = chain.raw(USER, br#"{"jsonrpc":"2.0","id":1,"method":"eth_mine"}"#);
    assert_eq!(v["error"]["code"], -32601);
    let (v, _, _) = chain.raw(
        USER,
        br#"{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0x12"]}"#,
    );
    assert_eq!(v["error"]["code"], -32602);
    let (v, _, _) = chain.raw(USER, br#"[]"#);
    assert_eq!(v["error"]["code"], -32600);
    let batch = br#"[{"jsonrpc":"2.0","id":"a","method":"eth_chainId"},{"jsonrpc":"2.0","method":"eth_chainId"},
                    {"jsonrpc":"2.0","id":7,"method":"net_version"}]"#;
    let (v, _, _) = chain.raw(USER, batch);
    assert_eq!(v.as_array().unwrap().len(), 2, "the notification gets no answer");
    assert_eq!(
        (v[0]["id"].clone(), v[1]["result"].clone()),
        (json!("a"), json!(CHAIN.to_string()))
    );
    let too_many: Vec<Value> = (0..=consort_evm::limits::MAX_BATCH_REQUESTS)
        .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "eth_chainId"}))
        .collect();
    let (v, _, _) = chain.raw(USER, json!(too_many).to_string().as_bytes());
    assert_eq!(v["error"]["code"], -32600);
    // A send whose method name is escaped is refused rather than run where writes are not expected.
    assert!(!consort_evm::needs_write(
        br#"{"method":"eth_sendRaw\u0054ransaction"}"#
    ));
    let (v, wrote, _) = chain.raw(
        USER,
        br#"{"jsonrpc":"2.0","id":1,"method":"eth_sendRaw\u0054ransaction","params":["0x00"]}"#,
    );
    assert_eq!((v["error"]["code"].clone(), wrote), (json!(-32600), false));
    let fees = chain.ok(USER, "eth_feeHistory", json!(["0x2", "latest", [50]]));
    assert_eq!(
        fees["reward"].as_array().unwrap().len(),
        fees["gasUsedRatio"].as_array().unwrap().len()
    );
    assert_eq!(
        chain.ok(USER, "eth_getBlockByNumber", json!(["latest", false]))["baseFeePerGas"],
        "0x0"
    );
    assert_eq!(
        chain.ok(USER, "eth_getBlockByNumber", json!(["0xffff", false])),
        Value::Null
    );
}

#[test]
fn requests_stay_within_their_limits() {
    let mut chain = Chain::new();
    let key = Key::new(9);
    let (_, reverter) = deployed(&mut chain, &key, 0, &revert_runtime());
    // eth_feeHistory's answer is blocks × percentiles: the percentiles are bounded and checked as geth does.
    let many: Vec<u32> = vec![0; consort_evm::limits::MAX_FEE_HISTORY_PERCENTILES + 1];
    for bad in [json!(many), json!([50, 10]), json!([101]), json!("x")] {
        let e = chain.rpc(USER, "eth_feeHistory", json!([4, "latest", bad]));
        assert_eq!(e["error"]["code"], -32602, "{e}");
    }
    let ok = chain.ok(USER, "eth_feeHistory", json!([1, "latest", [10, 50]]));
    assert_eq!(ok["reward"], json!([["0x0", "0x0"]]));
    // Bytes after a signed envelope are refused, not stored for free with it.
    let mut raw = key.legacy(CHAIN, 1, Some(reverter), b"");
    raw.push(0);
    assert_rejected(&mut chain, &raw, -32000, "rlp");
    // One request is one block: as in geth's block building, a send fits if its gas limit fits in what the
    // request's earlier sends left of the block gas limit.
    let limit = consort_evm::limits::BLOCK_GAS_LIMIT;
    let to = Key::new(10).address;
    let sends: Vec<Value> = [(1, 21_000), (2, limit - 21_000), (3, limit - 21_000 + 1)]
        .iter()
        .map(|&(n, gas)| {
            let raw = key.legacy_gas(CHAIN, n, to, gas);
            json!({"jsonrpc": "2.0", "id": n, "method": "eth_sendRawTransaction", "params": [hex0x(&raw)]})
        })
        .collect();
    let (v, wrote, _) = chain.raw(USER, json!([sends[0], sends[2]]).to_string().as_bytes());
    assert!(wrote);
    assert!(v[0]["result"].is_string(), "{v}");
    assert_eq!(v[1]["error"]["message"], "exceeds block gas limit", "{v}");
    let (v, _, _) = chain.raw(USER, json!([sends[1]]).to_string().as_bytes());
    assert!(
        v[0]["result"].is_string(),
        "a send at the limit in a request of its own fits: {v}"
    );
    // Calls share one gas budget per request: a failed call is charged its whole limit.
    let calls: Vec<Value> = (0..6)
        .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "eth_call", "params": [{"to": reverter.to_string()}]}))
        .collect();
    let (v, _, _) = chain.raw(USER, json!(calls).to_string().as_bytes());
    let codes: Vec<i64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["error"]["code"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, vec![3, 3, 3, 3, 3, -32005], "{v}");
    // Successful calls are charged what they spent, so many of them fit.
    let calls: Vec<Value> = (0..50)
        .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "eth_getBalance", "params": [key.address.to_string()]}))
        .chain((0..20).map(|i| {
            json!({"jsonrpc": "2.0", "id": 100 + i, "method": "eth_estimateGas",
                                       "params": [{"to": Key::new(10).address.to_string()}]})
        }))
        .collect();
    let (v, _, _) = chain.raw(USER, json!(calls).to_string().as_bytes());
    assert!(v.as_array().unwrap().iter().all(|a| a["result"].is_string()), "{v}");
}

#[test]
fn responses_stay_within_the_response_byte_limit() {
    let mut chain = Chain::new();
    let key = Key::new(11);
    // LOG0 over 2,000,000 bytes of (zero) memory: 4 MB of hex in the receipt, the log query and the batch.
    let runtime = [0x62, 0x1e, 0x84, 0x80, 0x60, 0x00, 0xa0, 0x00];
    let (_, big) = deployed(&mut chain, &key, 0, &runtime);
    let hashes: Vec<Value> = (1..=7)
        .map(|n| {
            let (r, wrote) = chain.send(USER, &key.legacy_gas(CHAIN, n, big, 29_000_000));
            assert!(wrote, "{r}");
            r["result"].clone()
        })
        .collect();
    let one = chain.receipt(USER, &hashes[0]);
    assert_eq!(one["status"], "0x1", "{}", one["status"]);
    assert_eq!(one["logs"][0]["data"].as_str().unwrap().len(), 2 + 4_000_000);

    // Seven logs of 4 MB each cross the 25 MB budget: the query stops with -32005 instead of building them.
    let e = chain.rpc(
        USER,
        "eth_getLogs",
        json!([{"fromBlock": "0x0", "address": big.to_string()}]),
    );
    assert_eq!(e["error"]["code"], -32005, "{}", e["error"]);
    assert!(e["error"]["message"].as_str().unwrap().contains("bytes of logs"));
    let block = one["blockNumber"].clone();
    let fits = chain.ok(USER, "eth_getLogs", json!([{"fromBlock": block, "toBlock": block}]));
    assert_eq!(fits.as_array().unwrap().len(), 1);

    // A batch answers -32003 for the receipt that would cross the budget and everything after it.
    let mut batch: Vec<Value> = hashes
        .iter()
        .enumerate()
        .map(|(i, h)| json!({"jsonrpc": "2.0", "id": i, "method": "eth_getTransactionReceipt", "params": [h]}))
        .collect();
    batch.push(json!({"jsonrpc": "2.0", "id": "last", "method": "eth_chainId"}));
    let (v, wrote, _) = chain.raw(USER, json!(batch).to_string().as_bytes());
    assert!(!wrote);
    let answers = v.as_array().unwrap();
    assert_eq!(answers.len(), 8);
    for a in &answers[..6] {
        assert_eq!(a["result"]["status"], "0x1");
    }
    for (a, id) in answers[6..].iter().zip([json!(6), json!("last")]) {
        assert_eq!(a["id"], id);
        assert_eq!(a["error"]["code"], -32003, "{}", a["error"]);
        assert_eq!(a["error"]["message"], "response too large");
    }
}

#[test]
fn transactions_above_the_committed_seqno_are_not_shown_as_mined() {
    let mut chain = Chain::new();
    let key = Key::new(12);
    let named = Key::new(13);
    let (_, contract) = deployed(&mut chain, &key, 0, &log_runtime(named.address));
    let before = chain.store.current_version();
    chain.committed = Some(before);
    let (resp, wrote) = chain.send(USER, &key.legacy(CHAIN, 1, Some(contract), &word(7)));
    assert!(wrote, "{resp}");
    let hash = resp["result"].clone();
    let block = chain.store.current_version();
    assert!(block > before);
    // Executed and stored, not committed: no receipt, no transaction, no log, no block, and the chain's height is
    // the committed seqno. The state already has it (the nonce moved), as a pending transaction's sender sees.
    assert_eq!(chain.receipt(USER, &hash), Value::Null);
    assert_eq!(chain.ok(USER, "eth_getTransactionByHash", json!([hash])), Value::Null);
    assert_eq!(
        chain.ok(USER, "eth_blockNumber", json!([])),
        json!(format!("{before:#x}"))
    );
    let logs = json!([{"fromBlock": "0x0", "toBlock": format!("{block:#x}"), "address": contract.to_string()}]);
    assert_eq!(chain.ok(USER, "eth_getLogs", logs.clone()), json!([]));
    let by_hash = json!([{"blockHash": consort_evm::block::block_hash(block).to_string()}]);
    assert_eq!(chain.ok(USER, "eth_getLogs", by_hash.clone()), json!([]));
    assert_eq!(
        chain.ok(USER, "eth_getBlockByNumber", json!([format!("{block:#x}"), false])),
        Value::Null
    );
    assert_eq!(
        chain.ok(USER, "eth_getTransactionCount", json!([key.address.to_string()])),
        "0x2"
    );
    // Once the host commits it, it is mined.
    chain.committed = Some(block);
    assert_eq!(chain.receipt(USER, &hash)["blockNumber"], json!(format!("{block:#x}")));
    assert_eq!(
        chain.ok(USER, "eth_blockNumber", json!([])),
        json!(format!("{block:#x}"))
    );
    assert_eq!(chain.ok(USER, "eth_getLogs", logs).as_array().unwrap().len(), 1);
    assert_eq!(chain.ok(USER, "eth_getLogs", by_hash).as_array().unwrap().len(), 1);
    let blk = chain.ok(USER, "eth_getBlockByNumber", json!([format!("{block:#x}"), false]));
    assert_eq!(blk["transactions"], json!([hash]));
}
