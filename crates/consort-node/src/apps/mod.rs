//! The application seam: built-in apps implement [`App`] and run inside a KV transaction the node provides.
//!
//! Later app kinds (JavaScript bundles, the EVM app) plug in here; the node owns authentication, transactions,
//! commit and the ledger, the app owns its endpoints and maps. [`Apps`] composes several apps by path prefix.

#[cfg(feature = "evm")]
pub mod evm;
pub mod js;
pub mod kv;
pub mod logging;
pub mod multi_auth;
pub mod smallbank;

use consort_kv::Tx;

/// Who is calling, as established by the node's authentication policies (see [`crate::auth`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Caller {
    /// `no_auth`: nobody in particular.
    Anonymous,
    /// `user_cert`: a registered user (id = hex SHA-256 of the certificate DER).
    User(String),
    /// `member_cert`: a registered member (id as for users).
    Member(String),
    /// `any_cert`: any TLS client certificate, registered or not (its id).
    AnyCert(String),
    /// `jwt`: a bearer token validated against a governed issuer's keys.
    Jwt(Box<JwtCaller>),
    /// `user_cose_sign1`: a request body signed by a registered user as COSE Sign1.
    UserCose(Box<CoseCaller>),
}

impl Caller {
    /// The policy that produced this caller.
    pub fn policy(&self) -> AuthPolicy {
        match self {
            Caller::Anonymous => AuthPolicy::NoAuth,
            Caller::User(_) => AuthPolicy::UserCert,
            Caller::Member(_) => AuthPolicy::MemberCert,
            Caller::AnyCert(_) => AuthPolicy::AnyCert,
            Caller::Jwt(_) => AuthPolicy::Jwt,
            Caller::UserCose(_) => AuthPolicy::UserCoseSign1,
        }
    }

    /// The user id, for callers that are registered users (by certificate or by COSE signature).
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Caller::User(id) => Some(id),
            Caller::UserCose(c) => Some(&c.user_id),
            _ => None,
        }
    }
}

/// A caller authenticated by a JSON Web Token.
#[derive(Debug, Clone, PartialEq)]
pub struct JwtCaller {
    /// The governed issuer whose key verified the token (`public:ccf.gov.jwt.issuers` key).
    pub key_issuer: String,
    /// The token's JOSE header.
    pub header: serde_json::Value,
    /// The token's claims.
    pub payload: serde_json::Value,
}

/// A caller authenticated by a COSE Sign1 request body.
#[derive(Debug, Clone, PartialEq)]
pub struct CoseCaller {
    /// The signing user's id.
    pub user_id: String,
    /// The signed payload (what the app should treat as the request body).
    pub content: Vec<u8>,
    /// The protected header parameters, as JSON (CCF's `ccf.gov.msg.*` and others by name).
    pub protected: serde_json::Value,
}

/// CCF's authentication policies, by the names bundles and OpenAPI use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthPolicy {
    NoAuth,
    UserCert,
    MemberCert,
    AnyCert,
    Jwt,
    UserCoseSign1,
}

impl AuthPolicy {
    /// Every policy, in the order the node tries them when an endpoint accepts several.
    pub const ALL: [AuthPolicy; 6] = [
        AuthPolicy::UserCert,
        AuthPolicy::MemberCert,
        AuthPolicy::AnyCert,
        AuthPolicy::UserCoseSign1,
        AuthPolicy::Jwt,
        AuthPolicy::NoAuth,
    ];

    /// CCF's name of the policy (`user_cert`, `jwt`, ...).
    pub fn name(self) -> &'static str {
        match self {
            AuthPolicy::NoAuth => "no_auth",
            AuthPolicy::UserCert => "user_cert",
            AuthPolicy::MemberCert => "member_cert",
            AuthPolicy::AnyCert => "any_cert",
            AuthPolicy::Jwt => "jwt",
            AuthPolicy::UserCoseSign1 => "user_cose_sign1",
        }
    }

    /// The policy of that name.
    pub fn from_name(name: &str) -> Option<Self> {
        AuthPolicy::ALL.into_iter().find(|p| p.name() == name)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// The set of policies an endpoint accepts: a request is served if any one of them authenticates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuthPolicies(u8);

impl AuthPolicies {
    /// No policy: nobody can call (an endpoint must name at least one; `no_auth` lets everyone in).
    pub const NONE: AuthPolicies = AuthPolicies(0);

    /// Just `policy`.
    pub const fn only(policy: AuthPolicy) -> Self {
        AuthPolicies(1 << (policy as u8))
    }

    /// These policies plus `policy`.
    pub fn with(self, policy: AuthPolicy) -> Self {
        AuthPolicies(self.0 | policy.bit())
    }

    /// Whether `policy` is accepted.
    pub fn contains(self, policy: AuthPolicy) -> bool {
        self.0 & policy.bit() != 0
    }

    /// Whether no policy is accepted.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The accepted policies, in the order the node tries them.
    pub fn iter(self) -> impl Iterator<Item = AuthPolicy> {
        AuthPolicy::ALL.into_iter().filter(move |p| self.contains(*p))
    }
}

impl FromIterator<AuthPolicy> for AuthPolicies {
    fn from_iter<I: IntoIterator<Item = AuthPolicy>>(iter: I) -> Self {
        iter.into_iter().fold(AuthPolicies::NONE, AuthPolicies::with)
    }
}

/// How an endpoint runs (CCF's `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A write transaction on the primary (backups forward it).
    ReadWrite,
    /// A read on the node that receives the request; never writes.
    ReadOnly,
    /// A read of the state as of a past transaction (named by the request), answered with that transaction's
    /// receipt once the node has fetched and verified it.
    Historical,
}

/// The past transaction a historical request reads, once the node has fetched and verified it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoricalContext {
    /// The transaction, `view.seqno`.
    pub transaction_id: String,
    /// Its receipt (CCF's JSON shape, as `/app/receipt` gives it).
    pub receipt: serde_json::Value,
}

/// Seconds a client is told to wait (`Retry-After`) before asking again for historical state the node is still
/// fetching (CCF's historical adapter and logging sample answer 3).
pub const HISTORICAL_RETRY_AFTER_S: u64 = 3;

/// Committed past states, for endpoints that read many of them (range queries). The node hands it to its apps once
/// ([`App::attach_history`]); each state is a store holding what one transaction wrote.
pub trait History: Send + Sync {
    /// Seqno of the latest committed transaction.
    fn committed_seqno(&self) -> u64;
    /// What the committed transactions `from..=to` wrote (a first part of them when the range is long: see
    /// [`HistoryRange::Ready`]), or why not (yet).
    fn range(&self, from: u64, to: u64) -> HistoryRange;
}

/// The answer of [`History::range`].
#[derive(Debug)]
pub enum HistoryRange {
    /// (seqno, what it wrote) for each transaction `from..=through`, in order; `through` is the asked end, or
    /// earlier when the range did not fit in one fetch (the rest is the next page's).
    Ready {
        /// The states, one per seqno.
        states: Vec<(u64, std::sync::Arc<consort_kv::Store>)>,
        /// The last seqno covered.
        through: u64,
    },
    /// Being fetched (or the node is busy fetching others): ask again after [`HISTORICAL_RETRY_AFTER_S`].
    Pending,
    /// The end of the range is not committed; its status (`Pending`, `Unknown` or `Invalid`).
    NotCommitted(&'static str),
    /// The node could not produce it; why.
    Failed(String),
}

/// An HTTP request as the app sees it; `path` is relative to `/app` (e.g. `/log/private`).
#[derive(Debug)]
pub struct AppRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    /// Request headers, names in lower case.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
    pub caller: &'a Caller,
    /// For historical endpoints: the transaction whose state the request's transaction reads.
    pub historical: Option<&'a HistoricalContext>,
}

/// A body that is not JSON (JavaScript apps may answer text or bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawBody {
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// The app's answer: a status and a JSON body (or a raw one), and extra headers. Errors use the node's error shape
/// via [`AppResponse::error`].
#[derive(Debug, Clone, PartialEq)]
pub struct AppResponse {
    pub status: u16,
    pub body: serde_json::Value,
    /// When set, sent instead of `body`.
    pub raw: Option<Box<RawBody>>,
    /// Extra response headers the app set.
    pub headers: Vec<(String, String)>,
    /// The app's choice to keep (`Some(true)`) or drop (`Some(false)`) its writes whatever the status; `None`:
    /// keep them on a success, drop them otherwise (CCF's `ccf.rpc.setApplyWrites`).
    pub keep_writes: Option<bool>,
    /// A digest of application claims to bind into the transaction's receipt (CCF's `setClaimsDigest`).
    pub claims_digest: Option<Box<[u8; 32]>>,
}

impl AppResponse {
    pub fn ok(body: serde_json::Value) -> Self {
        Self::json(200, body)
    }
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Self {
            status,
            body,
            raw: None,
            headers: vec![],
            keep_writes: None,
            claims_digest: None,
        }
    }
    pub fn error(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self::json(
            status,
            serde_json::json!({"error": {"code": code, "message": message.into()}}),
        )
    }
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
    /// Whether the node commits the transaction's writes with this answer.
    pub fn keeps_writes(&self) -> bool {
        self.keep_writes.unwrap_or(self.is_success())
    }
}

/// What an endpoint lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointInfo {
    /// The policies that may authenticate a caller; the node enforces them before calling the app.
    pub auth: AuthPolicies,
    pub mode: Mode,
}

impl EndpointInfo {
    /// An endpoint that only registered users (by TLS certificate) may call.
    pub fn user(mode: Mode) -> Self {
        EndpointInfo {
            auth: AuthPolicies::only(AuthPolicy::UserCert),
            mode,
        }
    }

    /// Whether the endpoint never writes (read-only and historical endpoints).
    pub fn read_only(&self) -> bool {
        self.mode != Mode::ReadWrite
    }
}

/// An application: built in (Rust) or deployed by governance (JavaScript).
pub trait App: Send + Sync {
    /// Endpoint metadata for (method, path), or None if the app has no such endpoint.
    fn endpoint(&self, method: &str, path: &str) -> Option<EndpointInfo>;
    /// Runs the request inside `tx` (a `'static` transaction, so that a runtime whose callbacks must own what they
    /// use can take it for the call: see [`Tx::take`]). The node commits the transaction if the response is a
    /// success and the transaction wrote something; otherwise the writes are discarded.
    fn handle(&self, req: &AppRequest<'_>, tx: &mut Tx<'static>) -> AppResponse;
    /// OpenAPI `paths` object for `/app/api`.
    fn openapi_paths(&self) -> serde_json::Value;
    /// How this request runs, given its body: `declared` (the endpoint's mode) unless the app knows the body
    /// needs less (a read-only request to a read-write endpoint, as JSON-RPC puts the method in the body). An app
    /// may only lower a write to a read: a read-only request that writes is refused by the node.
    fn request_mode(&self, _method: &str, _path: &str, _body: &[u8], declared: Mode) -> Mode {
        declared
    }
    /// Whether this request may compute for long (an EVM call at its gas budget, a scan of many stored
    /// transactions): the node then runs it on a thread of its own, a bounded number at once
    /// ([`crate::node::MAX_CONCURRENT_LONG_REQUESTS`]), so that it cannot hold up the async workers.
    fn runs_long(&self, _method: &str, _path: &str, _body: &[u8]) -> bool {
        false
    }
    /// Gives the app the node's past states (called once, when the node starts); apps without range queries
    /// ignore it.
    fn attach_history(&self, _history: std::sync::Arc<dyn History>) {}
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
    /// Serves paths no prefix claims (the governed JavaScript app).
    fallback: Option<Box<dyn App>>,
}

impl std::fmt::Debug for Apps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.routes.iter().map(|(p, _)| p)).finish()
    }
}

impl Apps {
    /// No apps yet: every path is unknown.
    pub fn new() -> Self {
        Apps {
            routes: vec![],
            fallback: None,
        }
    }

    /// The built-in apps, then the JavaScript app governance deploys for every other path.
    pub fn standard(engine: std::sync::Arc<dyn js::JsHost>) -> Self {
        Apps::builtin().with_fallback(Box::new(js::JsApp::new(engine)))
    }

    /// Routes every path no prefix claims to `app`.
    pub fn with_fallback(mut self, app: Box<dyn App>) -> Self {
        self.fallback = Some(app);
        self
    }

    /// Routes `prefix` (e.g. `/log`, no trailing slash) and everything under it to `app`.
    pub fn with(mut self, prefix: &'static str, app: Box<dyn App>) -> Self {
        self.routes.push((prefix, app));
        self
    }

    /// The built-in apps: CCF's logging app under `/log`, SmallBank under `/smallbank`, the kv register under `/kv`,
    /// and with the `evm` feature the EVM app under `/eth`.
    pub fn builtin() -> Self {
        Apps::new()
            .with("/log", Box::new(logging::LoggingApp::default()))
            .with(smallbank::PREFIX, Box::new(smallbank::SmallBankApp))
            .with(kv::PREFIX, Box::new(kv::KvApp))
            .with(multi_auth::MULTI_AUTH_PATH, Box::new(multi_auth::MultiAuthApp))
            .with(multi_auth::JWT_PATH, Box::new(multi_auth::MultiAuthApp))
            .with_evm()
    }

    /// Adds the EVM app under `/eth` (with the `evm` feature).
    fn with_evm(self) -> Self {
        #[cfg(feature = "evm")]
        return self.with(evm::PREFIX, Box::new(evm::EvmApp::default()));
        #[cfg(not(feature = "evm"))]
        self
    }

    fn route(&self, path: &str) -> Option<&dyn App> {
        self.routes
            .iter()
            .find(|(prefix, _)| {
                path.strip_prefix(prefix)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
            .map(|(_, app)| app.as_ref())
            .or(self.fallback.as_deref())
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

    fn request_mode(&self, method: &str, path: &str, body: &[u8], declared: Mode) -> Mode {
        match self.route(path) {
            Some(app) => app.request_mode(method, path, body, declared),
            None => declared,
        }
    }

    fn runs_long(&self, method: &str, path: &str, body: &[u8]) -> bool {
        self.route(path).is_some_and(|app| app.runs_long(method, path, body))
    }

    fn handle(&self, req: &AppRequest<'_>, tx: &mut Tx<'static>) -> AppResponse {
        match self.route(req.path) {
            Some(app) => app.handle(req, tx),
            None => AppResponse::error(404, "ResourceNotFound", format!("unknown path /app{}", req.path)),
        }
    }

    fn openapi_paths(&self) -> serde_json::Value {
        let mut all = serde_json::Map::new();
        for app in self.routes.iter().map(|(_, a)| a).chain(self.fallback.iter()) {
            if let serde_json::Value::Object(paths) = app.openapi_paths() {
                all.extend(paths);
            }
        }
        serde_json::Value::Object(all)
    }

    fn attach_history(&self, history: std::sync::Arc<dyn History>) {
        for (_, app) in &self.routes {
            app.attach_history(history.clone());
        }
        if let Some(app) = &self.fallback {
            app.attach_history(history);
        }
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
            headers: &[],
            body: b"",
            caller: &Caller::Anonymous,
            historical: None,
        };
        assert_eq!(apps.handle(&req, &mut Tx::shared(store.into())).status, 404);
    }
}
