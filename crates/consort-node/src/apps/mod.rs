//! The application seam: built-in apps implement [`App`] and run inside a KV transaction the node provides.
//!
//! Later app kinds (JavaScript bundles, the EVM app, SmallBank) plug in here; the node owns authentication,
//! transactions, commit and the ledger, the app owns its endpoints and maps.

pub mod logging;

use consort_kv::Tx;

/// Who is calling, as established by the node from the TLS client certificate and the KV tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No client certificate, or one that is not registered.
    Anonymous,
    /// A registered user (id = hex SHA-256 of the certificate DER).
    User(String),
}

/// Authentication an endpoint requires; the node enforces it before calling the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthPolicy {
    NoAuth,
    UserCert,
}

/// An HTTP request as the app sees it; `path` is relative to `/app` (e.g. `/log/private`).
#[derive(Debug)]
pub struct AppRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub body: &'a [u8],
    pub caller: &'a Caller,
}

/// The app's answer: a status and a JSON body. Errors use the node's error shape via [`AppResponse::error`].
#[derive(Debug, Clone, PartialEq)]
pub struct AppResponse {
    pub status: u16,
    pub body: serde_json::Value,
}

impl AppResponse {
    pub fn ok(body: serde_json::Value) -> Self {
        Self { status: 200, body }
    }
    pub fn error(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: serde_json::json!({"error": {"code": code, "message": message.into()}}),
        }
    }
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// What an endpoint lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointInfo {
    pub auth: AuthPolicy,
    /// Read-only endpoints never write; the node runs them without committing.
    pub read_only: bool,
}

/// A built-in application.
pub trait App: Send + Sync {
    /// Endpoint metadata for (method, path), or None if the app has no such endpoint.
    fn endpoint(&self, method: &str, path: &str) -> Option<EndpointInfo>;
    /// Runs the request inside `tx`. The node commits the transaction if the response is a success and the
    /// transaction wrote something; otherwise the writes are discarded.
    fn handle(&self, req: &AppRequest<'_>, tx: &mut Tx<'_>) -> AppResponse;
    /// OpenAPI `paths` object for `/app/api`.
    fn openapi_paths(&self) -> serde_json::Value;
}

/// Parses `name=value` from a query string (no percent-decoding needed for the numeric ids used here).
pub fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then_some(v)
    })
}
