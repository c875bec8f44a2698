//! The bench's TLS connections: opening them (bounded in time), sharing each between its workers, re-establishing
//! it after a failure, and sending one request over it with its outcome classified.

use super::workload::{Call, Op};
use super::{BenchError, CONNECT_TIMEOUT, RECONNECT_BACKOFF};
use consort_node::engine::TxId;
use consort_node::net::client::{Connection, Protocol, Reply, TlsConfig};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::RwLock;

/// A connection that workers share and re-establish after a failure.
pub(super) struct Slot {
    address: String,
    tls: TlsConfig,
    /// (generation, connection): a reconnection bumps the generation, so concurrent failures reconnect once.
    conn: RwLock<(u64, Connection)>,
}

/// Opens one HTTP/2 connection within [`CONNECT_TIMEOUT`].
pub(super) async fn connect(address: &str, tls: &TlsConfig) -> Result<Connection, BenchError> {
    match tokio::time::timeout(
        CONNECT_TIMEOUT,
        Connection::connect(address, tls.clone(), Protocol::Http2),
    )
    .await
    {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(source)) => Err(BenchError::Connect {
            address: address.to_string(),
            source,
        }),
        Err(_) => Err(BenchError::ConnectTimeout {
            address: address.to_string(),
        }),
    }
}

/// Opens `n` connections concurrently.
pub(super) async fn open_slots(address: &str, tls: &TlsConfig, n: usize) -> Result<Vec<Arc<Slot>>, BenchError> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (address, tls) = (address.to_string(), tls.clone());
        tasks.spawn(async move { Slot::open(&address, &tls).await });
    }
    let mut slots = vec![];
    while let Some(r) = tasks.join_next().await {
        slots.push(Arc::new(r??));
    }
    Ok(slots)
}

impl Slot {
    async fn open(address: &str, tls: &TlsConfig) -> Result<Slot, BenchError> {
        let conn = connect(address, tls).await?;
        Ok(Slot {
            address: address.to_string(),
            tls: tls.clone(),
            conn: RwLock::new((0, conn)),
        })
    }

    async fn current(&self) -> (u64, Connection) {
        self.conn.read().await.clone()
    }

    /// Replaces the connection of generation `generation` (unless another worker already did).
    async fn reconnect(&self, generation: u64) {
        let mut guard = self.conn.write().await;
        if guard.0 != generation {
            return;
        }
        match connect(&self.address, &self.tls).await {
            Ok(c) => *guard = (generation + 1, c),
            Err(e) => {
                tracing::warn!("{e}");
                tokio::time::sleep(RECONNECT_BACKOFF).await;
            }
        }
    }
}

/// Whether a failed request may still have taken effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Applied {
    /// Certainly not: the server refused it (4xx).
    No,
    /// Perhaps: a timeout, a lost connection or a server error.
    Unknown,
}

/// How one request ended.
#[derive(Debug)]
pub(super) enum Outcome {
    /// 2xx; the TxID header if it parsed; the reply.
    Ok(Option<TxId>, Reply),
    /// Refused by a business rule (SmallBank `InsufficientFunds`): a definite answer that wrote nothing.
    Rejected,
    /// A failure: its kind, and whether the request certainly wrote nothing or its effect is unknown.
    Error { kind: String, applied: Applied },
}

/// Sends `call` on `slot` within `timeout`; a failed connection is re-established for the next request.
pub(super) async fn send(slot: &Slot, call: &Call, timeout: Duration) -> Outcome {
    let (generation, conn) = slot.current().await;
    let request = conn.request(call.method, &call.path, call.body.clone());
    match tokio::time::timeout(timeout, request).await {
        Ok(Ok(reply)) if (200..300).contains(&reply.status) => match rpc_error(call, &reply) {
            // A JSON-RPC error arrives with 200: the transaction was refused and wrote nothing.
            Some(code) => Outcome::Error {
                kind: format!("rpc_{code}"),
                applied: Applied::No,
            },
            None => Outcome::Ok(reply.txid.as_deref().and_then(|t| t.parse().ok()), reply),
        },
        Ok(Ok(reply)) => {
            let code = reply
                .json()
                .ok()
                .and_then(|j| j["error"]["code"].as_str().map(str::to_string));
            if reply.status == 400 && code.as_deref() == Some(consort_node::apps::smallbank::INSUFFICIENT_FUNDS) {
                Outcome::Rejected
            } else {
                Outcome::Error {
                    kind: format!("http_{}", reply.status),
                    applied: if reply.status < 500 {
                        Applied::No
                    } else {
                        Applied::Unknown
                    },
                }
            }
        }
        Ok(Err(e)) => {
            tracing::debug!("request failed: {e}");
            slot.reconnect(generation).await;
            Outcome::Error {
                kind: "connection".into(),
                applied: Applied::Unknown,
            }
        }
        Err(_) => Outcome::Error {
            kind: "timeout".into(),
            applied: Applied::Unknown,
        },
    }
}

/// For a JSON-RPC call (the erc20 workload), the error code of an answer that carries an error.
fn rpc_error(call: &Call, reply: &Reply) -> Option<i64> {
    if call.op != Op::Erc20Transfer {
        return None;
    }
    let v = reply.json().ok()?;
    let error = v.get("error")?;
    Some(error["code"].as_i64().unwrap_or(0))
}

/// The revision in an etcd gateway reply (`{"header": {"revision": "123", ...}}`; int64s are JSON strings).
pub(super) fn etcd_revision(reply: &Reply) -> Option<u64> {
    let v = reply.json().ok()?;
    let r = &v["header"]["revision"];
    r.as_str().and_then(|s| s.parse().ok()).or_else(|| r.as_u64())
}
