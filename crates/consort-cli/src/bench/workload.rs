//! What the bench sends: the seedable random generator, the kinds of request, and the request generators of each
//! workload's setup and load phases (logging writes and reads, the SmallBank mix, etcd puts).

use super::args::{BenchArgs, Workload};
use super::{ETCD_PUT_PATH, MAX_OP_AMOUNT};
use std::sync::Arc;

/// A small, fast, seedable generator (SplitMix64) for the workload's random choices; not for cryptography.
#[derive(Debug, Clone)]
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-enough in 0..n (n > 0); the modulo bias is negligible for the small n used here.
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// The kinds of request, for per-operation counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Op {
    LogWrite,
    LogRead,
    Create,
    Balance,
    DepositChecking,
    TransactSavings,
    Amalgamate,
    WriteCheck,
    SendPayment,
    EtcdPut,
    Erc20Transfer,
}

impl Op {
    pub(super) fn name(self) -> &'static str {
        match self {
            Op::LogWrite => "log_write",
            Op::LogRead => "log_read",
            Op::Create => "create_account",
            Op::Balance => "balance",
            Op::DepositChecking => "deposit_checking",
            Op::TransactSavings => "transact_savings",
            Op::Amalgamate => "amalgamate",
            Op::WriteCheck => "write_check",
            Op::SendPayment => "send_payment",
            Op::EtcdPut => "etcd_put",
            Op::Erc20Transfer => "erc20_transfer",
        }
    }
}

/// What a successful request does to the service, which decides how its commit is tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Effect {
    /// Commits nothing.
    Read,
    /// Commits a transaction, whose TxID can be waited for.
    Write,
    /// Commits a write that is already committed when it is acknowledged (etcd puts).
    WriteCommittedOnAck,
}

/// One request to send.
#[derive(Debug)]
pub(super) struct Call {
    pub(super) op: Op,
    pub(super) method: &'static str,
    pub(super) path: String,
    pub(super) body: Option<Vec<u8>>,
    pub(super) effect: Effect,
    /// SmallBank: money this request adds to (or, negative, removes from) all accounts together if it succeeds.
    pub(super) flow: i64,
}

impl Call {
    fn post(op: Op, path: &str, body: serde_json::Value, flow: i64) -> Call {
        Call {
            op,
            method: "POST",
            path: path.to_string(),
            body: Some(body.to_string().into_bytes()),
            effect: if op == Op::Balance { Effect::Read } else { Effect::Write },
            flow,
        }
    }

    /// An etcd put through the JSON gateway (keys and values are base64 in its JSON) at `uri`, an absolute URI:
    /// over HTTP/2 that sends the `:scheme` and `:authority` pseudo-headers, which etcd's Go server requires.
    fn etcd_put(uri: &str, key: &str, value: &str) -> Call {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        Call {
            op: Op::EtcdPut,
            method: "POST",
            path: uri.to_string(),
            body: Some(
                serde_json::json!({"key": b64(key), "value": b64(value)})
                    .to_string()
                    .into_bytes(),
            ),
            effect: Effect::WriteCommittedOnAck,
            flow: 0,
        }
    }

    /// A write whose body is already serialised (the erc20 workload's pre-signed JSON-RPC requests).
    pub(super) fn post_raw(op: Op, path: &str, body: Vec<u8>) -> Call {
        Call {
            op,
            method: "POST",
            path: path.to_string(),
            body: Some(body),
            effect: Effect::Write,
            flow: 0,
        }
    }

    pub(super) fn get(op: Op, path: String) -> Call {
        Call {
            op,
            method: "GET",
            path,
            body: None,
            effect: Effect::Read,
            flow: 0,
        }
    }

    /// Whether a success commits a transaction.
    #[cfg(test)]
    fn is_write(&self) -> bool {
        self.effect != Effect::Read
    }
}

/// Builds the `i`th request of a phase, for the worker of the given index (`0..connections × window`).
pub(super) type Generator = dyn Fn(u64, usize, &mut Rng) -> Call + Send + Sync;

/// The unmeasured setup phase of a workload: what it is called, how many requests, and their generator. Mixed
/// preloads the keys it reads; SmallBank creates its accounts from `account_base` on.
pub(super) fn setup_generator(args: &BenchArgs, account_base: u64) -> Option<(&'static str, u64, Arc<Generator>)> {
    match args.workload {
        Workload::Mixed => Some((
            "preload keys",
            args.keys.max(1),
            Arc::new(|i, _, _| {
                let body = serde_json::json!({"id": i, "msg": format!("bench message {i}")});
                Call::post(Op::LogWrite, "/app/log/private", body, 0)
            }),
        )),
        Workload::Smallbank => {
            let balance = args.initial_balance;
            Some((
                "create accounts",
                args.accounts,
                Arc::new(move |i, _, _| {
                    let id = account_base + i;
                    let body = serde_json::json!({"id": id, "name": format!("bench{id}"), "checking": balance, "savings": balance});
                    Call::post(Op::Create, "/app/smallbank/account", body, 0)
                }),
            ))
        }
        Workload::Private | Workload::Public | Workload::Js | Workload::Erc20 => None,
    }
}

/// The load phase's request generator for `args.workload`; `account_base` is the first SmallBank account id. (The
/// erc20 workload's generator comes from its setup: [`super::erc20::Erc20::load_generator`].)
pub(super) fn load_generator(args: &BenchArgs, account_base: u64) -> Arc<Generator> {
    let (keys, reads, accounts) = (args.keys.max(1), u64::from(args.read_percent), args.accounts);
    match args.workload {
        Workload::Private | Workload::Public | Workload::Js | Workload::Erc20 => {
            let path = match args.workload {
                Workload::Private => "/app/log/private",
                Workload::Public => "/app/log/public",
                _ => "/app/js/log/private",
            };
            Arc::new(move |i, _, _| {
                let body = serde_json::json!({"id": i, "msg": format!("bench message {i}")});
                Call::post(Op::LogWrite, path, body, 0)
            })
        }
        Workload::Mixed => Arc::new(move |i, _, rng| {
            let id = rng.below(keys);
            if rng.below(100) < reads {
                Call::get(Op::LogRead, format!("/app/log/private?id={id}"))
            } else {
                let body = serde_json::json!({"id": id, "msg": format!("bench message {i}")});
                Call::post(Op::LogWrite, "/app/log/private", body, 0)
            }
        }),
        Workload::Smallbank => Arc::new(move |_, _, rng| smallbank_call(rng, account_base, accounts)),
    }
}

/// The etcd load: the private-write workload's messages as puts to etcd at `address`, under `prefix`.
pub(super) fn etcd_generator(address: &str, prefix: String) -> Arc<Generator> {
    let uri = format!("https://{address}{ETCD_PUT_PATH}");
    Arc::new(move |i, _, _: &mut Rng| Call::etcd_put(&uri, &format!("{prefix}{i}"), &format!("bench message {i}")))
}

/// One request of the standard SmallBank mix: amalgamate 15%, balance 15%, deposit checking 15%, send payment
/// 25%, transact savings 15%, write check 15%.
fn smallbank_call(rng: &mut Rng, base: u64, accounts: u64) -> Call {
    let a = rng.below(accounts);
    // A second, different account (accounts >= 2 is checked up front).
    let b = (a + 1 + rng.below(accounts.saturating_sub(1).max(1))) % accounts.max(1);
    let (a, b) = (base + a, base + b);
    // Both at most MAX_OP_AMOUNT, so the conversions are lossless.
    let amount = (rng.below(MAX_OP_AMOUNT) + 1) as i64;
    let p = "/app/smallbank/";
    match rng.below(100) {
        0..=14 => Call::post(
            Op::Amalgamate,
            &format!("{p}amalgamate"),
            serde_json::json!({"from": a, "to": b}),
            0,
        ),
        15..=29 => Call::post(Op::Balance, &format!("{p}balance"), serde_json::json!({"id": a}), 0),
        30..=44 => Call::post(
            Op::DepositChecking,
            &format!("{p}deposit_checking"),
            serde_json::json!({"id": a, "amount": amount}),
            amount,
        ),
        45..=69 => Call::post(
            Op::SendPayment,
            &format!("{p}send_payment"),
            serde_json::json!({"from": a, "to": b, "amount": amount}),
            0,
        ),
        70..=84 => {
            let amount = if rng.below(2) == 0 { amount } else { -amount };
            Call::post(
                Op::TransactSavings,
                &format!("{p}transact_savings"),
                serde_json::json!({"id": a, "amount": amount}),
                amount,
            )
        }
        _ => Call::post(
            Op::WriteCheck,
            &format!("{p}write_check"),
            serde_json::json!({"id": a, "amount": amount}),
            -amount,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn smallbank_mix_uses_two_distinct_accounts_and_signed_flows() {
        let mut rng = Rng(1);
        let mut seen = BTreeMap::new();
        for _ in 0..10_000 {
            let call = smallbank_call(&mut rng, 1000, 2);
            *seen.entry(call.op).or_insert(0u32) += 1;
            let body: serde_json::Value = serde_json::from_slice(call.body.as_deref().unwrap_or_default()).unwrap();
            if let (Some(from), Some(to)) = (body["from"].as_u64(), body["to"].as_u64()) {
                assert_ne!(from, to);
                assert!((1000..1002).contains(&from) && (1000..1002).contains(&to));
            }
            let amount = body["amount"].as_i64().unwrap_or(0);
            match call.op {
                Op::DepositChecking | Op::TransactSavings => assert_eq!(call.flow, amount),
                Op::WriteCheck => assert_eq!(call.flow, -amount),
                _ => assert_eq!(call.flow, 0),
            }
            assert!(amount.unsigned_abs() <= MAX_OP_AMOUNT);
            assert_eq!(call.is_write(), call.op != Op::Balance);
        }
        assert_eq!(seen.len(), 6, "every operation of the mix occurs: {seen:?}");
        assert!(
            seen[&Op::SendPayment] > seen[&Op::Balance],
            "send payment is 25%, balance 15%"
        );
    }
}
