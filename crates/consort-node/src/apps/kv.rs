//! A small key-value register app (`/app/kv/{key}`): put, local get, and consensus-ordered read and compare-and-swap.
//!
//! Built for linearizability checking (`consort chaos`). A plain `GET` is served from the local store of whichever
//! node receives it, so on a backup or a deposed primary it can be stale: by design not linearizable. The checked
//! operations are the ones consensus orders: `PUT`, `POST .../cas` and `POST .../read`. The last two always write a
//! marker, so even a read or a failed swap is a transaction with its own TxID that the client can resolve to
//! Committed or Invalid; the node discards the writes of non-success answers, so a failed swap answers 200 with
//! `"swapped": false`.

use super::{App, AppRequest, AppResponse, EndpointInfo, Mode};
use consort_kv::Tx;
use serde::Deserialize;

/// The path prefix this app serves (relative to `/app`).
pub const PREFIX: &str = "/kv";
/// Key -> value (UTF-8). Private: encrypted in the ledger.
pub const VALUES_MAP: &str = "kv.values";
/// Key -> kind of the last ordered read or swap of it (`read`, `cas`). Private. Written only so that those
/// operations are transactions of their own.
pub const MARKERS_MAP: &str = "kv.markers";
/// Longest accepted key, in bytes (keys are `[A-Za-z0-9_.-]+`).
pub const MAX_KEY_BYTES: usize = 64;
/// Longest accepted value, in bytes.
pub const MAX_VALUE_BYTES: usize = 4096;

/// The kv app.
#[derive(Debug, Default)]
pub struct KvApp;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Put {
    value: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Cas {
    /// The value the key must hold for the swap; null: the key must be absent.
    expected: Option<String>,
    new: String,
}

/// What a path under `/kv` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target<'p> {
    /// `/kv/{key}`
    Value(&'p str),
    /// `/kv/{key}/cas`
    Cas(&'p str),
    /// `/kv/{key}/read`
    OrderedRead(&'p str),
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_BYTES
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn parse_target(path: &str) -> Option<Target<'_>> {
    let rest = path.strip_prefix(PREFIX)?.strip_prefix('/')?;
    let (key, target) = match rest.split_once('/') {
        None => (rest, Target::Value(rest)),
        Some((key, "cas")) => (key, Target::Cas(key)),
        Some((key, "read")) => (key, Target::OrderedRead(key)),
        Some(_) => return None,
    };
    valid_key(key).then_some(target)
}

fn value_json(tx: &mut Tx<'_>, key: &str) -> serde_json::Value {
    match tx.get(VALUES_MAP, key.as_bytes()) {
        Some(v) => serde_json::Value::String(String::from_utf8_lossy(&v).into_owned()),
        None => serde_json::Value::Null,
    }
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8], shape: &str) -> Result<T, AppResponse> {
    serde_json::from_slice(body).map_err(|e| AppResponse::error(400, "InvalidInput", format!("expected {shape}: {e}")))
}

fn check_value_len(value: &str) -> Result<(), AppResponse> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(AppResponse::error(
            400,
            "InvalidInput",
            format!("value longer than MAX_VALUE_BYTES ({MAX_VALUE_BYTES})"),
        ));
    }
    Ok(())
}

fn put(tx: &mut Tx<'_>, key: &str, body: &[u8]) -> Result<AppResponse, AppResponse> {
    let p: Put = parse_body(body, "{\"value\": string}")?;
    check_value_len(&p.value)?;
    tx.put(VALUES_MAP, key.as_bytes(), p.value.as_bytes());
    Ok(AppResponse::ok(serde_json::Value::Bool(true)))
}

fn cas(tx: &mut Tx<'_>, key: &str, body: &[u8]) -> Result<AppResponse, AppResponse> {
    let c: Cas = parse_body(body, "{\"expected\": string|null, \"new\": string}")?;
    check_value_len(&c.new)?;
    let current = value_json(tx, key);
    let swapped = current.as_str() == c.expected.as_deref();
    if swapped {
        tx.put(VALUES_MAP, key.as_bytes(), c.new.as_bytes());
    }
    tx.put(MARKERS_MAP, key.as_bytes(), b"cas");
    Ok(AppResponse::ok(
        serde_json::json!({"swapped": swapped, "value": current}),
    ))
}

fn ordered_read(tx: &mut Tx<'_>, key: &str) -> AppResponse {
    let value = value_json(tx, key);
    tx.put(MARKERS_MAP, key.as_bytes(), b"read");
    AppResponse::ok(serde_json::json!({ "value": value }))
}

fn local_get(tx: &mut Tx<'_>, key: &str) -> AppResponse {
    match value_json(tx, key) {
        serde_json::Value::Null => AppResponse::error(404, "ResourceNotFound", format!("No such key: {key}.")),
        value => AppResponse::ok(serde_json::json!({ "value": value })),
    }
}

impl App for KvApp {
    fn endpoint(&self, method: &str, path: &str) -> Option<EndpointInfo> {
        let read_only = match (method, parse_target(path)?) {
            ("GET", Target::Value(_)) => true,
            ("PUT", Target::Value(_)) | ("POST", Target::Cas(_)) | ("POST", Target::OrderedRead(_)) => false,
            _ => return None,
        };
        Some(EndpointInfo::user(if read_only {
            Mode::ReadOnly
        } else {
            Mode::ReadWrite
        }))
    }

    fn handle(&self, req: &AppRequest<'_>, tx: &mut Tx<'static>) -> AppResponse {
        let answer = match (req.method, parse_target(req.path)) {
            ("GET", Some(Target::Value(key))) => Ok(local_get(tx, key)),
            ("PUT", Some(Target::Value(key))) => put(tx, key, req.body),
            ("POST", Some(Target::Cas(key))) => cas(tx, key, req.body),
            ("POST", Some(Target::OrderedRead(key))) => Ok(ordered_read(tx, key)),
            _ => Err(AppResponse::error(
                404,
                "ResourceNotFound",
                format!("unknown path or method {} /app{}", req.method, req.path),
            )),
        };
        answer.unwrap_or_else(|e| e)
    }

    fn openapi_paths(&self) -> serde_json::Value {
        let key = serde_json::json!([{"name": "key", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"}}]);
        let value_schema = serde_json::json!({"type": "object", "properties": {"value": {"type": ["string", "null"]}}});
        serde_json::json!({
            "/app/kv/{key}": {
                "parameters": key,
                "get": {"summary": "Read a key from this node's local state (may be stale on a backup)", "responses": {"200": {"description": "{\"value\": string}", "content": {"application/json": {"schema": value_schema}}}, "404": {"description": "no such key"}}},
                "put": {"summary": "Write a key", "requestBody": {"content": {"application/json": {"schema": {"type": "object", "properties": {"value": {"type": "string"}}, "required": ["value"]}}}}, "responses": {"200": {"description": "written; x-ms-ccf-transaction-id names the transaction"}}}
            },
            "/app/kv/{key}/cas": {
                "parameters": key,
                "post": {"summary": "Compare and swap, ordered by consensus (a failed swap is a transaction too)", "requestBody": {"content": {"application/json": {"schema": {"type": "object", "properties": {"expected": {"type": ["string", "null"]}, "new": {"type": "string"}}, "required": ["expected", "new"]}}}}, "responses": {"200": {"description": "{\"swapped\": bool, \"value\": previous value or null}"}}}
            },
            "/app/kv/{key}/read": {
                "parameters": key,
                "post": {"summary": "Read a key in a transaction ordered by consensus (executed on the primary)", "responses": {"200": {"description": "{\"value\": string or null}", "content": {"application/json": {"schema": value_schema}}}}}
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::Caller;

    fn call(store: &std::sync::Arc<consort_kv::Store>, method: &str, path: &str, body: &str) -> (AppResponse, bool) {
        let mut tx = consort_kv::Tx::shared(store.clone());
        let req = AppRequest {
            method,
            path,
            query: "",
            headers: &[],
            body: body.as_bytes(),
            caller: &Caller::User("u".into()),
            historical: None,
        };
        let resp = KvApp.handle(&req, &mut tx);
        let wrote = tx.has_writes();
        if resp.is_success() && wrote {
            store.commit(tx, |_, _| ()).expect("commit");
        }
        (resp, wrote)
    }

    #[test]
    fn put_get_cas_and_ordered_read() {
        let store = std::sync::Arc::new(consort_kv::Store::new());
        assert_eq!(call(&store, "GET", "/kv/a", "").0.status, 404);
        let (r, _) = call(&store, "POST", "/kv/a/read", "");
        assert_eq!(r.body, serde_json::json!({"value": null}));
        assert!(call(&store, "PUT", "/kv/a", r#"{"value": "1"}"#).0.is_success());
        assert_eq!(
            call(&store, "GET", "/kv/a", "").0.body,
            serde_json::json!({"value": "1"})
        );

        let (r, wrote) = call(&store, "POST", "/kv/a/cas", r#"{"expected": "0", "new": "2"}"#);
        assert_eq!(r.body, serde_json::json!({"swapped": false, "value": "1"}));
        assert!(wrote, "a failed swap still writes its marker");
        let (r, _) = call(&store, "POST", "/kv/a/cas", r#"{"expected": "1", "new": "2"}"#);
        assert_eq!(r.body, serde_json::json!({"swapped": true, "value": "1"}));
        let (r, wrote) = call(&store, "POST", "/kv/a/read", "");
        assert_eq!(r.body, serde_json::json!({"value": "2"}));
        assert!(wrote, "an ordered read writes its marker");
        let (r, _) = call(&store, "POST", "/kv/b/cas", r#"{"expected": null, "new": "x"}"#);
        assert_eq!(r.body, serde_json::json!({"swapped": true, "value": null}));
    }

    #[test]
    fn refuses_bad_keys_bodies_and_methods() {
        let store = std::sync::Arc::new(consort_kv::Store::new());
        assert_eq!(call(&store, "PUT", "/kv/a", r#"{"value": 1}"#).0.status, 400);
        assert_eq!(call(&store, "PUT", "/kv/a", r#"{"value": "1", "x": 2}"#).0.status, 400);
        assert_eq!(call(&store, "POST", "/kv/a/cas", r#"{"new": 1}"#).0.status, 400);
        let long = format!(r#"{{"value": "{}"}}"#, "v".repeat(MAX_VALUE_BYTES + 1));
        assert_eq!(call(&store, "PUT", "/kv/a", &long).0.status, 400);
        assert!(call(&store, "GET", "/kv/a", "").0.status == 404, "nothing was written");

        let long_key = format!("/kv/{}", "k".repeat(MAX_KEY_BYTES + 1));
        for (method, path) in [
            ("PUT", long_key.as_str()),
            ("PUT", "/kv/a b"),
            ("PUT", "/kv/"),
            ("PUT", "/kv"),
            ("GET", "/kv/a/cas"),
            ("POST", "/kv/a"),
            ("DELETE", "/kv/a"),
            ("POST", "/kv/a/other"),
            ("PUT", "/kv/a/b/c"),
        ] {
            assert!(KvApp.endpoint(method, path).is_none(), "{method} {path}");
            assert_eq!(call(&store, method, path, "{}").0.status, 404, "{method} {path}");
        }
        let get = KvApp.endpoint("GET", "/kv/a").expect("GET endpoint");
        assert!(get.read_only() && get == EndpointInfo::user(Mode::ReadOnly));
        let read = KvApp.endpoint("POST", "/kv/a/read").expect("ordered read endpoint");
        assert!(
            !read.read_only(),
            "the ordered read runs as a write transaction on the primary"
        );
    }

    #[test]
    fn openapi_names_every_endpoint() {
        let paths = KvApp.openapi_paths();
        assert!(paths["/app/kv/{key}"]["put"].is_object() && paths["/app/kv/{key}"]["get"].is_object());
        assert!(paths["/app/kv/{key}/cas"]["post"].is_object());
        assert!(paths["/app/kv/{key}/read"]["post"].is_object());
    }
}
