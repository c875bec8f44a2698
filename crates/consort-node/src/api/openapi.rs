//! OpenAPI documents for `/node/api` and `/app/api`.

use crate::apps::App;

fn get(summary: &str) -> serde_json::Value {
    serde_json::json!({"get": {"summary": summary, "responses": {"200": {"description": "OK"}}}})
}

fn tx_get(summary: &str) -> serde_json::Value {
    serde_json::json!({"get": {"summary": summary, "parameters": [{"name": "transaction_id", "in": "query", "required": true, "schema": {"type": "string", "pattern": "^[0-9]+\\.[0-9]+$"}}], "responses": {"200": {"description": "OK"}}}})
}

/// The node's own endpoints.
pub fn node_api() -> serde_json::Value {
    serde_json::json!({
        "openapi": "3.0.0",
        "info": {"title": "Consort node API", "version": env!("CARGO_PKG_VERSION")},
        "paths": {
            "/node/commit": get("Transaction id of the commit point"),
            "/node/tx": tx_get("Status of a transaction: Unknown, Pending, Committed or Invalid"),
            "/node/network": get("Service status, certificate and primary"),
            "/node/network/nodes": get("Nodes of the network"),
            "/node/state": get("This node's state"),
            "/node/metrics": get("Prometheus metrics"),
            "/node/api": get("This document"),
        }
    })
}

/// The application's endpoints plus the built-in ones under `/app`.
pub fn app_api(app: &dyn App) -> serde_json::Value {
    let mut paths = app.openapi_paths();
    if let Some(obj) = paths.as_object_mut() {
        obj.insert("/app/receipt".into(), tx_get("CCF receipt for a committed transaction"));
        obj.insert("/app/tx".into(), tx_get("Status of a transaction"));
        obj.insert("/app/commit".into(), get("Transaction id of the commit point"));
        obj.insert("/app/api".into(), get("This document"));
    }
    serde_json::json!({
        "openapi": "3.0.0",
        "info": {"title": "Consort application API", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
    })
}
