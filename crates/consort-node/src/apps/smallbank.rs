//! The SmallBank benchmark as a built-in app (`/app/smallbank/*`): accounts with a checking and a savings balance.
//!
//! Operations follow the benchmark (Alomari et al., as in CCF's sample): create account, balance (read-only),
//! deposit checking, transact savings, amalgamate, write check and send payment. Amounts are integers. A
//! transaction that would overdraw returns 400 `InsufficientFunds` and writes nothing (the node discards the
//! writes of every non-success response). All three maps are private: encrypted in the ledger.

use super::{App, AppRequest, AppResponse, EndpointInfo, Mode};
use consort_kv::Tx;
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// Account id -> name (UTF-8). Private.
pub const ACCOUNTS_MAP: &str = "smallbank.accounts";
/// Account id -> checking balance (i64 LE). Private.
pub const CHECKING_MAP: &str = "smallbank.checking";
/// Account id -> savings balance (i64 LE). Private.
pub const SAVINGS_MAP: &str = "smallbank.savings";
/// Longest accepted account name, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Largest absolute amount of one operation or initial balance (keeps sums far from i64 overflow).
pub const MAX_AMOUNT: i64 = 1 << 48;

/// The path prefix this app serves (relative to `/app`).
pub const PREFIX: &str = "/smallbank";

/// Error code of the business-rule refusal (overdraft); benchmarks count it apart from failures.
pub const INSUFFICIENT_FUNDS: &str = "InsufficientFunds";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateAccount {
    id: u64,
    #[serde(default)]
    name: Option<String>,
    checking: i64,
    savings: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountRef {
    id: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Amount {
    id: u64,
    amount: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Amalgamate {
    from: u64,
    to: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Payment {
    from: u64,
    to: u64,
    amount: i64,
}

/// The SmallBank operations, one per endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Create,
    Balance,
    DepositChecking,
    TransactSavings,
    Amalgamate,
    WriteCheck,
    SendPayment,
}

impl Op {
    const ALL: [(Op, &'static str); 7] = [
        (Op::Create, "/smallbank/account"),
        (Op::Balance, "/smallbank/balance"),
        (Op::DepositChecking, "/smallbank/deposit_checking"),
        (Op::TransactSavings, "/smallbank/transact_savings"),
        (Op::Amalgamate, "/smallbank/amalgamate"),
        (Op::WriteCheck, "/smallbank/write_check"),
        (Op::SendPayment, "/smallbank/send_payment"),
    ];

    fn from_path(path: &str) -> Option<Op> {
        Op::ALL.iter().find(|(_, p)| *p == path).map(|(op, _)| *op)
    }
}

/// The SmallBank app.
#[derive(Debug, Default)]
pub struct SmallBankApp;

/// Why an operation was refused; turned into the node's JSON error shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum BankError {
    #[error("{0}")]
    InvalidInput(String),
    #[error("no such account: {0}")]
    NotFound(u64),
    #[error("account {0} already exists")]
    Exists(u64),
    #[error("insufficient funds in account {0}")]
    InsufficientFunds(u64),
    #[error("stored balance of account {0} is malformed")]
    Corrupt(u64),
}

impl From<BankError> for AppResponse {
    fn from(e: BankError) -> Self {
        let (status, code) = match &e {
            BankError::InvalidInput(_) => (400, "InvalidInput"),
            BankError::NotFound(_) => (404, "AccountNotFound"),
            BankError::Exists(_) => (400, "AccountExists"),
            BankError::InsufficientFunds(_) => (400, INSUFFICIENT_FUNDS),
            BankError::Corrupt(_) => (500, "InternalError"),
        };
        AppResponse::error(status, code, e.to_string())
    }
}

fn parse<T: DeserializeOwned>(body: &[u8], shape: &str) -> Result<T, BankError> {
    serde_json::from_slice(body).map_err(|e| BankError::InvalidInput(format!("expected {shape}: {e}")))
}

fn check_amount(amount: i64, positive: bool) -> Result<i64, BankError> {
    if amount.unsigned_abs() > MAX_AMOUNT.unsigned_abs() {
        return Err(BankError::InvalidInput(format!(
            "|amount| must be at most {MAX_AMOUNT}"
        )));
    }
    if positive && amount <= 0 {
        return Err(BankError::InvalidInput("amount must be positive".into()));
    }
    if amount == 0 {
        return Err(BankError::InvalidInput("amount must not be zero".into()));
    }
    Ok(amount)
}

fn read_balance(tx: &mut Tx<'_>, map: &str, id: u64) -> Result<Option<i64>, BankError> {
    match tx.get(map, &id.to_le_bytes()) {
        None => Ok(None),
        Some(v) => {
            let bytes: [u8; 8] = v.as_slice().try_into().map_err(|_| BankError::Corrupt(id))?;
            Ok(Some(i64::from_le_bytes(bytes)))
        }
    }
}

/// Both balances of an existing account.
fn balances(tx: &mut Tx<'_>, id: u64) -> Result<(i64, i64), BankError> {
    let checking = read_balance(tx, CHECKING_MAP, id)?.ok_or(BankError::NotFound(id))?;
    let savings = read_balance(tx, SAVINGS_MAP, id)?.ok_or(BankError::NotFound(id))?;
    Ok((checking, savings))
}

fn put_balance(tx: &mut Tx<'_>, map: &str, id: u64, value: i64) {
    tx.put(map, &id.to_le_bytes(), &value.to_le_bytes());
}

/// `a + b` on balances; balances are bounded by the amount limit times the operations applied, so overflow
/// means a corrupt or adversarial store: refuse rather than wrap.
fn add(id: u64, a: i64, b: i64) -> Result<i64, BankError> {
    a.checked_add(b)
        .ok_or_else(|| BankError::InvalidInput(format!("balance of account {id} would overflow")))
}

fn balance_json(id: u64, checking: i64, savings: i64) -> serde_json::Value {
    serde_json::json!({"id": id, "checking": checking, "savings": savings, "total": i128::from(checking) + i128::from(savings)})
}

fn run(op: Op, req: &AppRequest<'_>, tx: &mut Tx<'_>) -> Result<serde_json::Value, BankError> {
    match op {
        Op::Create => {
            let a: CreateAccount = parse(
                req.body,
                r#"{"id": u64, "name"?: string, "checking": i64, "savings": i64}"#,
            )?;
            let name = a.name.unwrap_or_default();
            if name.len() > MAX_NAME_BYTES {
                return Err(BankError::InvalidInput(format!(
                    "name longer than {MAX_NAME_BYTES} bytes"
                )));
            }
            for v in [a.checking, a.savings] {
                if !(0..=MAX_AMOUNT).contains(&v) {
                    return Err(BankError::InvalidInput(format!(
                        "initial balances must be in 0..={MAX_AMOUNT}"
                    )));
                }
            }
            if tx.has(ACCOUNTS_MAP, &a.id.to_le_bytes()) {
                return Err(BankError::Exists(a.id));
            }
            tx.put(ACCOUNTS_MAP, &a.id.to_le_bytes(), name.as_bytes());
            put_balance(tx, CHECKING_MAP, a.id, a.checking);
            put_balance(tx, SAVINGS_MAP, a.id, a.savings);
            Ok(balance_json(a.id, a.checking, a.savings))
        }
        Op::Balance => {
            let id = if req.method == "GET" {
                super::query_param(req.query, "id")
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| BankError::InvalidInput("query parameter id must be a u64".into()))?
            } else {
                parse::<AccountRef>(req.body, r#"{"id": u64}"#)?.id
            };
            let (checking, savings) = balances(tx, id)?;
            Ok(balance_json(id, checking, savings))
        }
        Op::DepositChecking => {
            let a: Amount = parse(req.body, r#"{"id": u64, "amount": i64}"#)?;
            let amount = check_amount(a.amount, true)?;
            let (checking, savings) = balances(tx, a.id)?;
            let checking = add(a.id, checking, amount)?;
            put_balance(tx, CHECKING_MAP, a.id, checking);
            Ok(balance_json(a.id, checking, savings))
        }
        Op::TransactSavings => {
            // A deposit (amount > 0) or a withdrawal (amount < 0); savings may not go negative.
            let a: Amount = parse(req.body, r#"{"id": u64, "amount": i64}"#)?;
            let amount = check_amount(a.amount, false)?;
            let (checking, savings) = balances(tx, a.id)?;
            let savings = add(a.id, savings, amount)?;
            if savings < 0 {
                return Err(BankError::InsufficientFunds(a.id));
            }
            put_balance(tx, SAVINGS_MAP, a.id, savings);
            Ok(balance_json(a.id, checking, savings))
        }
        Op::Amalgamate => {
            // Moves everything in `from` (savings and checking) into `to`'s checking.
            let a: Amalgamate = parse(req.body, r#"{"from": u64, "to": u64}"#)?;
            if a.from == a.to {
                return Err(BankError::InvalidInput("from and to must differ".into()));
            }
            let (from_checking, from_savings) = balances(tx, a.from)?;
            let (to_checking, to_savings) = balances(tx, a.to)?;
            let moved = add(a.from, from_checking, from_savings)?;
            let to_checking = add(a.to, to_checking, moved)?;
            put_balance(tx, CHECKING_MAP, a.from, 0);
            put_balance(tx, SAVINGS_MAP, a.from, 0);
            put_balance(tx, CHECKING_MAP, a.to, to_checking);
            Ok(balance_json(a.to, to_checking, to_savings))
        }
        Op::WriteCheck => {
            // A check may overdraw checking as long as checking and savings together cover it.
            let a: Amount = parse(req.body, r#"{"id": u64, "amount": i64}"#)?;
            let amount = check_amount(a.amount, true)?;
            let (checking, savings) = balances(tx, a.id)?;
            if add(a.id, checking, savings)? < amount {
                return Err(BankError::InsufficientFunds(a.id));
            }
            let checking = add(a.id, checking, -amount)?;
            put_balance(tx, CHECKING_MAP, a.id, checking);
            Ok(balance_json(a.id, checking, savings))
        }
        Op::SendPayment => {
            let a: Payment = parse(req.body, r#"{"from": u64, "to": u64, "amount": i64}"#)?;
            let amount = check_amount(a.amount, true)?;
            if a.from == a.to {
                return Err(BankError::InvalidInput("from and to must differ".into()));
            }
            let (from_checking, from_savings) = balances(tx, a.from)?;
            let (to_checking, _) = balances(tx, a.to)?;
            if from_checking < amount {
                return Err(BankError::InsufficientFunds(a.from));
            }
            let from_checking = add(a.from, from_checking, -amount)?;
            let to_checking = add(a.to, to_checking, amount)?;
            put_balance(tx, CHECKING_MAP, a.from, from_checking);
            put_balance(tx, CHECKING_MAP, a.to, to_checking);
            Ok(balance_json(a.from, from_checking, from_savings))
        }
    }
}

impl App for SmallBankApp {
    fn endpoint(&self, method: &str, path: &str) -> Option<EndpointInfo> {
        let op = Op::from_path(path)?;
        let read_only = match (op, method) {
            (Op::Balance, "GET" | "POST") => true,
            (_, "POST") => false,
            _ => return None,
        };
        Some(EndpointInfo::user(if read_only {
            Mode::ReadOnly
        } else {
            Mode::ReadWrite
        }))
    }

    fn handle(&self, req: &AppRequest<'_>, tx: &mut Tx<'static>) -> AppResponse {
        let Some(op) = Op::from_path(req.path) else {
            return AppResponse::error(404, "ResourceNotFound", format!("unknown path /app{}", req.path));
        };
        match run(op, req, tx) {
            Ok(body) => AppResponse::ok(body),
            Err(e) => e.into(),
        }
    }

    fn openapi_paths(&self) -> serde_json::Value {
        let body = |props: serde_json::Value| serde_json::json!({"content": {"application/json": {"schema": {"type": "object", "properties": props}}}});
        let int = serde_json::json!({"type": "integer"});
        let amount = body(serde_json::json!({"id": int, "amount": int}));
        let post = |summary: &str, body: serde_json::Value| serde_json::json!({"post": {"summary": summary, "requestBody": body, "responses": {"200": {"description": "the account's balances"}, "400": {"description": "invalid input or InsufficientFunds (nothing written)"}, "404": {"description": "no such account"}}}});
        let mut balance = post(
            "Balances of an account (read-only)",
            body(serde_json::json!({"id": int})),
        );
        balance["get"] = serde_json::json!({"summary": "Balances of an account (read-only)", "parameters": [{"name": "id", "in": "query", "required": true, "schema": int}], "responses": {"200": {"description": "{\"checking\", \"savings\", \"total\"}"}}});
        serde_json::json!({
            "/app/smallbank/account": post("Create an account with initial balances", body(serde_json::json!({"id": int, "name": {"type": "string"}, "checking": int, "savings": int}))),
            "/app/smallbank/balance": balance,
            "/app/smallbank/deposit_checking": post("Deposit into checking", amount.clone()),
            "/app/smallbank/transact_savings": post("Deposit into (amount > 0) or withdraw from (amount < 0) savings", amount.clone()),
            "/app/smallbank/amalgamate": post("Move all of from's funds into to's checking", body(serde_json::json!({"from": int, "to": int}))),
            "/app/smallbank/write_check": post("Write a check against checking (covered by checking + savings)", amount),
            "/app/smallbank/send_payment": post("Pay from one checking account into another", body(serde_json::json!({"from": int, "to": int, "amount": int}))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::Caller;
    use consort_kv::{CommitOutcome, Store};

    const USER: Caller = Caller::Anonymous;

    /// Runs one request in its own transaction and commits it if it succeeded (as the node does).
    fn call(store: &std::sync::Arc<Store>, method: &str, path: &str, body: serde_json::Value) -> AppResponse {
        let body = body.to_string();
        let req = AppRequest {
            method,
            path,
            query: "",
            headers: &[],
            body: body.as_bytes(),
            caller: &USER,
            historical: None,
        };
        let mut tx = consort_kv::Tx::shared(store.clone());
        let resp = SmallBankApp.handle(&req, &mut tx);
        if resp.is_success() {
            store
                .commit(tx, |_, _| ())
                .expect("no concurrent transactions in these tests");
        }
        resp
    }

    fn post(store: &std::sync::Arc<Store>, op: &str, body: serde_json::Value) -> AppResponse {
        call(store, "POST", &format!("/smallbank/{op}"), body)
    }

    fn create(store: &std::sync::Arc<Store>, id: u64, checking: i64, savings: i64) {
        let r = post(
            store,
            "account",
            serde_json::json!({"id": id, "name": format!("a{id}"), "checking": checking, "savings": savings}),
        );
        assert_eq!(r.status, 200, "{:?}", r.body);
    }

    fn balance(store: &std::sync::Arc<Store>, id: u64) -> (i64, i64) {
        let r = post(store, "balance", serde_json::json!({"id": id}));
        assert_eq!(r.status, 200, "{:?}", r.body);
        (
            r.body["checking"].as_i64().expect("checking"),
            r.body["savings"].as_i64().expect("savings"),
        )
    }

    fn total(store: &std::sync::Arc<Store>, ids: &[u64]) -> i64 {
        ids.iter().map(|&id| balance(store, id)).map(|(c, s)| c + s).sum()
    }

    fn code(r: &AppResponse) -> &str {
        r.body["error"]["code"].as_str().unwrap_or("")
    }

    #[test]
    fn create_and_balance() {
        let store = std::sync::Arc::new(Store::new());
        create(&store, 1, 100, 50);
        assert_eq!(balance(&store, 1), (100, 50));
        let v = store.current_version();
        let r = post(
            &store,
            "account",
            serde_json::json!({"id": 1, "checking": 1, "savings": 1}),
        );
        assert_eq!((r.status, code(&r)), (400, "AccountExists"));
        let r = post(
            &store,
            "account",
            serde_json::json!({"id": 2, "checking": -1, "savings": 1}),
        );
        assert_eq!(r.status, 400);
        assert_eq!(store.current_version(), v, "refusals write nothing");
        // GET with a query parameter, and the read-only endpoint flags.
        let req = AppRequest {
            method: "GET",
            path: "/smallbank/balance",
            query: "id=1",
            headers: &[],
            body: b"",
            caller: &USER,
            historical: None,
        };
        let mut tx = consort_kv::Tx::shared(store.clone());
        let r = SmallBankApp.handle(&req, &mut tx);
        assert_eq!(r.body["total"], 150);
        assert!(!tx.has_writes());
        assert!(SmallBankApp
            .endpoint("GET", "/smallbank/balance")
            .is_some_and(|e| e.read_only()));
        assert!(SmallBankApp
            .endpoint("POST", "/smallbank/balance")
            .is_some_and(|e| e.read_only()));
        assert!(SmallBankApp
            .endpoint("POST", "/smallbank/amalgamate")
            .is_some_and(|e| !e.read_only()));
        assert!(SmallBankApp.endpoint("GET", "/smallbank/amalgamate").is_none());
        let r = post(&store, "balance", serde_json::json!({"id": 9}));
        assert_eq!((r.status, code(&r)), (404, "AccountNotFound"));
    }

    #[test]
    fn deposit_checking_adds_and_rejects_non_positive() {
        let store = std::sync::Arc::new(Store::new());
        create(&store, 1, 10, 0);
        assert_eq!(
            post(&store, "deposit_checking", serde_json::json!({"id": 1, "amount": 5})).status,
            200
        );
        assert_eq!(balance(&store, 1), (15, 0));
        for bad in [0, -5] {
            let r = post(&store, "deposit_checking", serde_json::json!({"id": 1, "amount": bad}));
            assert_eq!(r.status, 400);
        }
        let r = post(
            &store,
            "deposit_checking",
            serde_json::json!({"id": 1, "amount": MAX_AMOUNT + 1}),
        );
        assert_eq!(r.status, 400);
        let r = post(&store, "deposit_checking", serde_json::json!({"id": 1, "amount": "5"}));
        assert_eq!(r.status, 400, "amounts are integers");
        let r = post(&store, "deposit_checking", serde_json::json!({"id": 1, "amount": 1.5}));
        assert_eq!(r.status, 400, "amounts are integers");
        let r = post(&store, "deposit_checking", serde_json::json!({"id": 7, "amount": 1}));
        assert_eq!(r.status, 404);
        assert_eq!(balance(&store, 1), (15, 0));
    }

    #[test]
    fn transact_savings_never_goes_negative() {
        let store = std::sync::Arc::new(Store::new());
        create(&store, 1, 0, 30);
        assert_eq!(
            post(&store, "transact_savings", serde_json::json!({"id": 1, "amount": -30})).status,
            200
        );
        assert_eq!(balance(&store, 1), (0, 0));
        let v = store.current_version();
        let r = post(&store, "transact_savings", serde_json::json!({"id": 1, "amount": -1}));
        assert_eq!((r.status, code(&r)), (400, INSUFFICIENT_FUNDS));
        assert_eq!(store.current_version(), v);
        assert_eq!(
            post(&store, "transact_savings", serde_json::json!({"id": 1, "amount": 12})).status,
            200
        );
        assert_eq!(balance(&store, 1), (0, 12));
    }

    #[test]
    fn amalgamate_moves_everything_and_conserves_money() {
        let store = std::sync::Arc::new(Store::new());
        create(&store, 1, 70, 30);
        create(&store, 2, 5, 6);
        let before = total(&store, &[1, 2]);
        assert_eq!(
            post(&store, "amalgamate", serde_json::json!({"from": 1, "to": 2})).status,
            200
        );
        assert_eq!(balance(&store, 1), (0, 0));
        assert_eq!(balance(&store, 2), (105, 6));
        assert_eq!(total(&store, &[1, 2]), before);
        let r = post(&store, "amalgamate", serde_json::json!({"from": 2, "to": 2}));
        assert_eq!(r.status, 400);
        let r = post(&store, "amalgamate", serde_json::json!({"from": 2, "to": 3}));
        assert_eq!(r.status, 404);
        assert_eq!(
            balance(&store, 2),
            (105, 6),
            "a failed amalgamate leaves both accounts alone"
        );
    }

    #[test]
    fn write_check_is_covered_by_both_balances() {
        let store = std::sync::Arc::new(Store::new());
        create(&store, 1, 10, 20);
        assert_eq!(
            post(&store, "write_check", serde_json::json!({"id": 1, "amount": 25})).status,
            200
        );
        assert_eq!(
            balance(&store, 1),
            (-15, 20),
            "checking may go negative while savings covers it"
        );
        let v = store.current_version();
        let r = post(&store, "write_check", serde_json::json!({"id": 1, "amount": 6}));
        assert_eq!((r.status, code(&r)), (400, INSUFFICIENT_FUNDS));
        assert_eq!(store.current_version(), v);
        assert_eq!(
            post(&store, "write_check", serde_json::json!({"id": 1, "amount": 5})).status,
            200
        );
        assert_eq!(balance(&store, 1), (-20, 20));
    }

    #[test]
    fn send_payment_conserves_money_and_refuses_overdraft() {
        let store = std::sync::Arc::new(Store::new());
        create(&store, 1, 50, 1000);
        create(&store, 2, 0, 0);
        let before = total(&store, &[1, 2]);
        assert_eq!(
            post(
                &store,
                "send_payment",
                serde_json::json!({"from": 1, "to": 2, "amount": 50})
            )
            .status,
            200
        );
        assert_eq!(balance(&store, 1), (0, 1000));
        assert_eq!(balance(&store, 2), (50, 0));
        assert_eq!(total(&store, &[1, 2]), before);
        let v = store.current_version();
        let r = post(
            &store,
            "send_payment",
            serde_json::json!({"from": 1, "to": 2, "amount": 1}),
        );
        assert_eq!(
            (r.status, code(&r)),
            (400, INSUFFICIENT_FUNDS),
            "savings does not cover payments"
        );
        let r = post(
            &store,
            "send_payment",
            serde_json::json!({"from": 2, "to": 9, "amount": 1}),
        );
        assert_eq!(r.status, 404);
        let r = post(
            &store,
            "send_payment",
            serde_json::json!({"from": 2, "to": 2, "amount": 1}),
        );
        assert_eq!(r.status, 400);
        assert_eq!(store.current_version(), v);
        assert_eq!(total(&store, &[1, 2]), before);
    }

    /// A deterministic random mix: transfers conserve the total; deposits, savings transactions and checks change
    /// it by exactly their acknowledged amounts; refused operations change nothing.
    #[test]
    fn random_mix_conserves_total_given_acknowledged_flows() {
        let store = std::sync::Arc::new(Store::new());
        let ids: Vec<u64> = (0..8).collect();
        for &id in &ids {
            create(&store, id, 100, 100);
        }
        let mut expected = total(&store, &ids);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let (mut refused, mut applied) = (0, 0);
        for _ in 0..2000 {
            let (a, b) = (next(8), next(8));
            let amount = next(150) as i64 + 1;
            let (op, body, flow) = match next(6) {
                0 => (
                    "deposit_checking",
                    serde_json::json!({"id": a, "amount": amount}),
                    amount,
                ),
                1 => (
                    "transact_savings",
                    serde_json::json!({"id": a, "amount": amount - 75}),
                    amount - 75,
                ),
                2 => ("amalgamate", serde_json::json!({"from": a, "to": b}), 0),
                3 => ("write_check", serde_json::json!({"id": a, "amount": amount}), -amount),
                4 => (
                    "send_payment",
                    serde_json::json!({"from": a, "to": b, "amount": amount}),
                    0,
                ),
                _ => ("balance", serde_json::json!({"id": a}), 0),
            };
            let r = post(&store, op, body);
            if r.is_success() {
                expected += flow;
                applied += 1;
            } else {
                assert_eq!(r.status, 400, "{op}: {:?}", r.body);
                refused += 1;
            }
            assert_eq!(total(&store, &ids), expected, "after {op}");
        }
        assert!(
            applied > 0 && refused > 0,
            "the mix exercises both paths ({applied} applied, {refused} refused)"
        );
    }

    #[test]
    fn malformed_input_is_refused() {
        let store = std::sync::Arc::new(Store::new());
        create(&store, 1, 1, 1);
        for (op, body) in [
            ("account", serde_json::json!({"id": 3})),
            (
                "account",
                serde_json::json!({"id": 3, "checking": 1, "savings": 1, "extra": 1}),
            ),
            (
                "account",
                serde_json::json!({"id": 3, "name": "x".repeat(MAX_NAME_BYTES + 1), "checking": 1, "savings": 1}),
            ),
            ("balance", serde_json::json!({"id": -1})),
            ("send_payment", serde_json::json!({"from": 1})),
            ("transact_savings", serde_json::json!({"id": 1, "amount": 0})),
        ] {
            let r = post(&store, op, body);
            assert_eq!(r.status, 400, "{op}: {:?}", r.body);
        }
        let req = AppRequest {
            method: "POST",
            path: "/smallbank/balance",
            query: "",
            headers: &[],
            body: b"\xff{",
            caller: &USER,
            historical: None,
        };
        assert_eq!(
            SmallBankApp
                .handle(&req, &mut consort_kv::Tx::shared(store.clone()))
                .status,
            400
        );
        assert!(matches!(
            store.commit(store.begin(), |_, _| ()),
            Ok(CommitOutcome::ReadOnly)
        ));
    }
}
