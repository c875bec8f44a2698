//! CCF's logging sample app: private and public messages keyed by a u64 id (`/app/log/private|public`).

use super::{App, AppRequest, AppResponse, EndpointInfo, Mode};
use consort_kv::Tx;
use serde::Deserialize;

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

/// The logging app.
#[derive(Debug, Default)]
pub struct LoggingApp;

fn map_for(path: &str) -> Option<&'static str> {
    match path {
        "/log/private" => Some(PRIVATE_MAP),
        "/log/public" => Some(PUBLIC_MAP),
        _ => None,
    }
}

impl App for LoggingApp {
    fn endpoint(&self, method: &str, path: &str) -> Option<EndpointInfo> {
        map_for(path)?;
        match method {
            "POST" => Some(EndpointInfo::user(Mode::ReadWrite)),
            "GET" => Some(EndpointInfo::user(Mode::ReadOnly)),
            _ => None,
        }
    }

    fn handle(&self, req: &AppRequest<'_>, tx: &mut Tx<'static>) -> AppResponse {
        let Some(map) = map_for(req.path) else {
            return AppResponse::error(404, "ResourceNotFound", format!("unknown path /app{}", req.path));
        };
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
                let Some(id) = super::query_param(req.query, "id").and_then(|v| v.parse::<u64>().ok()) else {
                    return AppResponse::error(400, "InvalidQueryParameterValue", "query parameter id must be a u64");
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
        serde_json::json!({"/app/log/private": op("private"), "/app/log/public": op("public")})
    }
}
