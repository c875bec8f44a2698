//! The application seam: built-in apps implement [`App`] and run inside a KV transaction the node provides.
//!
//! Later app kinds (JavaScript bundles, the EVM app) plug in here; the node owns authentication, transactions,
//! commit and the ledger, the app owns its endpoints and maps. [`Apps`] composes several apps by path prefix.

pub mod kv;
pub mod logging;
pub mod smallbank;

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

/// Several apps behind one [`App`], each owning a path prefix (`/log` → logging, `/smallbank` → SmallBank).
/// A request goes to the app whose prefix is the path's first segment; the app sees the full path.
pub struct Apps {
    routes: Vec<(&'static str, Box<dyn App>)>,
}

impl std::fmt::Debug for Apps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.routes.iter().map(|(p, _)| p)).finish()
    }
}

impl Apps {
    /// No apps yet: every path is unknown.
    pub fn new() -> Self {
        Apps { routes: vec![] }
    }

    /// Routes `prefix` (e.g. `/log`, no trailing slash) and everything under it to `app`.
    pub fn with(mut self, prefix: &'static str, app: Box<dyn App>) -> Self {
        self.routes.push((prefix, app));
        self
    }

    /// The built-in apps: CCF's logging app under `/log`, SmallBank under `/smallbank`, the kv register under `/kv`.
    pub fn builtin() -> Self {
        Apps::new()
            .with("/log", Box::new(logging::LoggingApp))
            .with(smallbank::PREFIX, Box::new(smallbank::SmallBankApp))
            .with(kv::PREFIX, Box::new(kv::KvApp))
    }

    fn route(&self, path: &str) -> Option<&dyn App> {
        self.routes
            .iter()
            .find(|(prefix, _)| {
                path.strip_prefix(prefix)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
            .map(|(_, app)| app.as_ref())
    }
}

impl Default for Apps {
    fn default() -> Self {
        Apps::builtin()
    }
}

impl App for Apps {
    fn endpoint(&self, method: &str, path: &str) -> Option<EndpointInfo> {
        self.route(path)?.endpoint(method, path)
    }

    fn handle(&self, req: &AppRequest<'_>, tx: &mut Tx<'_>) -> AppResponse {
        match self.route(req.path) {
            Some(app) => app.handle(req, tx),
            None => AppResponse::error(404, "ResourceNotFound", format!("unknown path /app{}", req.path)),
        }
    }

    fn openapi_paths(&self) -> serde_json::Value {
        let mut all = serde_json::Map::new();
        for (_, app) in &self.routes {
            if let serde_json::Value::Object(paths) = app.openapi_paths() {
                all.extend(paths);
            }
        }
        serde_json::Value::Object(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apps_route_by_first_path_segment() {
        let apps = Apps::builtin();
        assert!(apps.endpoint("POST", "/log/private").is_some());
        assert!(apps.endpoint("POST", "/smallbank/send_payment").is_some());
        assert!(apps.endpoint("POST", "/logx/private").is_none());
        assert!(apps.endpoint("POST", "/smallbankx/balance").is_none());
        assert!(apps.endpoint("POST", "/other").is_none());
        let paths = apps.openapi_paths();
        assert!(paths.get("/app/log/private").is_some() && paths.get("/app/smallbank/amalgamate").is_some());

        let store = consort_kv::Store::new();
        let req = AppRequest {
            method: "POST",
            path: "/nowhere",
            query: "",
            body: b"",
            caller: &Caller::Anonymous,
        };
        assert_eq!(apps.handle(&req, &mut store.begin()).status, 404);
    }
}
