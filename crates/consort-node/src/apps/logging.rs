//! CCF's logging sample app: private and public messages keyed by a u64 id (`/app/log/private|public`), and its
//! historical endpoints: the value a past transaction wrote (`/historical`, `/historical_receipt`) and every write
//! to one id over a seqno range (`/historical/range`).

use super::{App, AppRequest, AppResponse, EndpointInfo, History, HistoryRange, Mode, RawBody};
use consort_kv::Tx;
use serde::Deserialize;
use std::sync::{Arc, OnceLock};

/// Private (encrypted in the ledger) messages.
pub const PRIVATE_MAP: &str = "records";
/// Public (clear in the ledger) messages.
pub const PUBLIC_MAP: &str = "public:records";
/// Longest accepted message, in bytes (the body limit bounds it too; this keeps entries small).
pub const MAX_MSG_BYTES: usize = 64 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogEntry {
    id: u64,
    msg: String,
}

/// The logging app. Its range queries read the node's past states, which the node attaches when it starts.
#[derive(Default)]
pub struct LoggingApp {
    history: OnceLock<Arc<dyn History>>,
}

impl std::fmt::Debug for LoggingApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoggingApp")
            .field("history", &self.history.get().is_some())
            .finish()
    }
}

/// What an endpoint of the app does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// `POST`/`GET /log/{private,public}`: write or read the current value.
    Current,
    /// `GET .../historical`: the value the transaction named by the request wrote.
    Historical,
    /// `GET .../historical_receipt`: the same, with the transaction's receipt.
    HistoricalReceipt,
    /// `GET .../historical/range`: every write to the id over a seqno range.
    Range,
}

/// The endpoint at `path`: its map, its kind, and its path for links.
fn route(path: &str) -> Option<(&'static str, Op)> {
    let (map, rest) = if let Some(rest) = path.strip_prefix("/log/private") {
        (PRIVATE_MAP, rest)
    } else {
        (PUBLIC_MAP, path.strip_prefix("/log/public")?)
    };
    let op = match rest {
        "" => Op::Current,
        "/historical" => Op::Historical,
        "/historical_receipt" => Op::HistoricalReceipt,
        "/historical/range" => Op::Range,
        _ => return None,
    };
    Some((map, op))
}

impl App for LoggingApp {
    fn endpoint(&self, method: &str, path: &str) -> Option<EndpointInfo> {
        match (route(path)?.1, method) {
            (Op::Current, "POST") => Some(EndpointInfo::user(Mode::ReadWrite)),
            (Op::Current, "GET") | (Op::Range, "GET") => Some(EndpointInfo::user(Mode::ReadOnly)),
            (Op::Historical | Op::HistoricalReceipt, "GET") => Some(EndpointInfo::user(Mode::Historical)),
            _ => None,
        }
    }

    fn handle(&self, req: &AppRequest<'_>, tx: &mut Tx<'static>) -> AppResponse {
        let Some((map, op)) = route(req.path) else {
            return AppResponse::error(404, "ResourceNotFound", format!("unknown path /app{}", req.path));
        };
        match (op, req.method) {
            (Op::Current, _) => {}
            (Op::Historical | Op::HistoricalReceipt, "GET") => return historical(req, tx, map, op),
            (Op::Range, "GET") => return self.range(req, map),
            _ => return AppResponse::error(405, "MethodNotAllowed", "use GET"),
        }
        match req.method {
            "POST" => {
                let entry: LogEntry = match serde_json::from_slice(req.body) {
                    Ok(e) => e,
                    Err(e) => {
                        return AppResponse::error(
                            400,
                            "InvalidInput",
                            format!("expected {{\"id\": u64, \"msg\": string}}: {e}"),
                        )
                    }
                };
                if entry.msg.len() > MAX_MSG_BYTES {
                    return AppResponse::error(400, "InvalidInput", format!("msg longer than {MAX_MSG_BYTES} bytes"));
                }
                tx.put(map, &entry.id.to_le_bytes(), entry.msg.as_bytes());
                AppResponse::ok(serde_json::Value::Bool(true))
            }
            "GET" => {
                let id = match id_param(req.query) {
                    Ok(id) => id,
                    Err(resp) => return resp,
                };
                match tx.get(map, &id.to_le_bytes()) {
                    Some(v) => AppResponse::ok(serde_json::json!({"msg": String::from_utf8_lossy(&v)})),
                    None => AppResponse::error(404, "ResourceNotFound", format!("No such record: {id}.")),
                }
            }
            _ => AppResponse::error(405, "MethodNotAllowed", "use GET or POST"),
        }
    }

    fn openapi_paths(&self) -> serde_json::Value {
        let op = |summary: &str| {
            serde_json::json!({
                "post": {"summary": format!("Write a {summary} message"), "requestBody": {"content": {"application/json": {"schema": {"type": "object", "properties": {"id": {"type": "integer", "format": "uint64"}, "msg": {"type": "string"}}, "required": ["id", "msg"]}}}}, "responses": {"200": {"description": "written; x-ms-ccf-transaction-id names the transaction"}}},
                "get": {"summary": format!("Read a {summary} message"), "parameters": [{"name": "id", "in": "query", "required": true, "schema": {"type": "integer"}}], "responses": {"200": {"description": "{\"msg\": ...}"}, "404": {"description": "no such record"}}}
            })
        };
        let mut paths = serde_json::json!({"/app/log/private": op("private"), "/app/log/public": op("public")});
        for kind in ["private", "public"] {
            for (suffix, doc) in HISTORICAL_DOCS {
                paths[format!("/app/log/{kind}{suffix}")] = historical_doc(kind, doc, *suffix == "/historical/range");
            }
        }
        paths
    }

    fn attach_history(&self, history: Arc<dyn History>) {
        let _ = self.history.set(history);
    }
}

/// The `id` query parameter (400 if missing or not a u64).
fn id_param(query: &str) -> Result<u64, AppResponse> {
    u64_param(query, "id")?
        .ok_or_else(|| AppResponse::error(400, "InvalidQueryParameterValue", "query parameter id must be a u64"))
}

/// An optional u64 query parameter (400 if present but not a u64).
fn u64_param(query: &str, name: &str) -> Result<Option<u64>, AppResponse> {
    match super::query_param(query, name) {
        None => Ok(None),
        Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
            AppResponse::error(
                400,
                "InvalidQueryParameterValue",
                format!("query parameter {name} must be a u64"),
            )
        }),
    }
}

/// `204 No Content`: what CCF's sample answers when the transaction did not write the id.
fn no_content() -> AppResponse {
    let mut resp = AppResponse::json(204, serde_json::Value::Null);
    resp.raw = Some(Box::new(RawBody {
        content_type: "text/plain".into(),
        bytes: vec![],
    }));
    resp
}

/// `GET .../historical[_receipt]?id=N`: runs over the store of what the transaction wrote (the node checked the
/// TxID, fetched that store and made the receipt).
fn historical(req: &AppRequest<'_>, tx: &mut Tx<'static>, map: &str, op: Op) -> AppResponse {
    let Some(ctx) = req.historical else {
        return AppResponse::error(
            500,
            "InternalError",
            "a historical endpoint ran without its historical state",
        );
    };
    let id = match id_param(req.query) {
        Ok(id) => id,
        Err(resp) => return resp,
    };
    let Some(v) = tx.get(map, &id.to_le_bytes()) else {
        return no_content();
    };
    let msg = String::from_utf8_lossy(&v);
    match op {
        Op::HistoricalReceipt => AppResponse::ok(serde_json::json!({"msg": msg, "receipt": ctx.receipt})),
        _ => AppResponse::ok(serde_json::json!({"msg": msg})),
    }
}

impl LoggingApp {
    /// `GET .../historical/range?id=N[&from_seqno=A][&to_seqno=B]`: every write to `id` by the committed
    /// transactions `A..=B` (A defaults to 1, B to the commit point), a page at a time: CCF's answer shape,
    /// `{"entries": [{"seqno", "id", "msg"}], "@nextLink": ...}`, the link present while the range goes on.
    fn range(&self, req: &AppRequest<'_>, map: &str) -> AppResponse {
        let Some(history) = self.history.get() else {
            return AppResponse::error(
                503,
                "HistoricalQueriesUnavailable",
                "this node serves no historical state",
            );
        };
        let params = id_param(req.query).and_then(|id| {
            let from = u64_param(req.query, "from_seqno")?.unwrap_or(1);
            let to = u64_param(req.query, "to_seqno")?.unwrap_or_else(|| history.committed_seqno());
            Ok((id, from, to))
        });
        let (id, from, to) = match params {
            Ok(p) => p,
            Err(resp) => return resp,
        };
        if from == 0 || to < from {
            let msg = format!("Invalid range: Starts at {from} but ends at {to}");
            return AppResponse::error(400, "InvalidInput", msg);
        }
        let (states, through) = match history.range(from, to) {
            HistoryRange::Ready { states, through } => (states, through),
            HistoryRange::Pending => {
                return still_fetching(format!(
                    "Historical transactions from {from} to {to} are not yet available, fetching now"
                ))
            }
            HistoryRange::NotCommitted(status) => {
                let msg = format!("Only committed transactions can be queried. Transaction at seqno {to} is {status}");
                return AppResponse::error(400, "InvalidInput", msg);
            }
            HistoryRange::Failed(why) => return AppResponse::error(500, "InternalError", why),
        };
        let key = id.to_le_bytes();
        let entries: Vec<serde_json::Value> = states
            .iter()
            .filter_map(|(seqno, store)| {
                let v = store.read_only().get(map, &key)?;
                Some(serde_json::json!({"seqno": seqno, "id": id, "msg": String::from_utf8_lossy(&v)}))
            })
            .collect();
        let mut out = serde_json::json!({ "entries": entries });
        if through < to {
            let kind = if map == PRIVATE_MAP { "private" } else { "public" };
            out["@nextLink"] = serde_json::Value::String(format!(
                "/app/log/{kind}/historical/range?from_seqno={}&to_seqno={to}&id={id}",
                through + 1
            ));
        }
        AppResponse::ok(out)
    }
}

/// `202 Accepted` with `Retry-After`, as CCF answers while it fetches historical state.
fn still_fetching(message: String) -> AppResponse {
    let mut resp = AppResponse::json(202, serde_json::Value::Null);
    resp.raw = Some(Box::new(RawBody {
        content_type: "text/plain".into(),
        bytes: message.into_bytes(),
    }));
    resp.headers = vec![("retry-after".into(), super::HISTORICAL_RETRY_AFTER_S.to_string())];
    resp
}

/// The historical endpoints under `/app/log/{private,public}`, for `/app/api`.
const HISTORICAL_DOCS: &[(&str, &str)] = &[
    (
        "/historical",
        "The message the transaction named by x-ms-ccf-transaction-id wrote for id (204 if none)",
    ),
    ("/historical_receipt", "The same, with the transaction's receipt"),
    (
        "/historical/range",
        "Every write to id by the committed transactions from_seqno..=to_seqno, paged by @nextLink",
    ),
];

fn historical_doc(kind: &str, summary: &str, range: bool) -> serde_json::Value {
    let mut params =
        vec![serde_json::json!({"name": "id", "in": "query", "required": true, "schema": {"type": "integer"}})];
    if range {
        for name in ["from_seqno", "to_seqno"] {
            params.push(
                serde_json::json!({"name": name, "in": "query", "required": false, "schema": {"type": "integer"}}),
            );
        }
    } else {
        params.push(serde_json::json!({"name": "x-ms-ccf-transaction-id", "in": "header", "required": true, "schema": {"type": "string"}}));
    }
    serde_json::json!({"get": {
        "summary": format!("{summary} ({kind} records)"),
        "parameters": params,
        "responses": {"200": {"description": "found"}, "202": {"description": "the node is fetching the state; retry after Retry-After seconds"}}
    }})
}
