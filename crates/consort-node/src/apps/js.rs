//! JavaScript apps deployed by governance (`set_js_app`): the bundle's endpoints, served under `/app` through
//! consort-js's interpreter, with the governed runtime limits (`set_js_runtime_options`).
//!
//! The endpoint tables are read once per change (their map versions are the cache key). Interpreters are kept
//! per worker thread for the bundle they were made for (at most `max_cached_interpreters`), so a request
//! normally pays no QuickJS start-up; one that hit a limit is thrown away.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use consort_js::{
    CallInput, Endpoint, EndpointMode, Endpoints, Interpreter, JsError, KvAccess, NodeView, ResponseBody,
    RuntimeOptions, StateRange, ENDPOINTS_TABLE, MODULES_TABLE, RUNTIME_OPTIONS_TABLE,
};
use consort_kv::Tx;

use super::{
    App, AppRequest, AppResponse, AuthPolicies, AuthPolicy, Caller, EndpointInfo, History, HistoryRange, Mode, RawBody,
};

/// CCF's singleton key (8 zero bytes) under which the runtime options are recorded.
const SINGLETON_KEY: [u8; 8] = [0; 8];

/// Map versions of the endpoint, module and runtime-options tables.
type TableVersions = (u64, u64, u64);

/// The deployed bundle as of one version of its tables.
#[derive(Debug)]
struct Loaded {
    /// Map versions of the endpoint, module and options tables it was read at.
    versions: (u64, u64, u64),
    endpoints: Endpoints,
    options: RuntimeOptions,
}

/// What the JavaScript app needs of its node: the current store, and what the node knows of consensus.
pub trait JsHost: Send + Sync {
    /// The store requests run against now.
    fn store(&self) -> Arc<consort_kv::Store>;
    /// The last committed transaction, `(view, seqno)`.
    fn last_committed(&self) -> (u64, u64);
    /// CCF's status name of a transaction ("Unknown", "Pending", "Committed", "Invalid").
    fn status(&self, view: u64, seqno: u64) -> String;
    /// The current view.
    fn current_view(&self) -> u64;
}

/// The app serving the bundle governance deployed (none deployed: it has no endpoints).
pub struct JsApp {
    engine: Arc<dyn JsHost>,
    loaded: Mutex<Option<Arc<Loaded>>>,
    /// The node's past states, for `ccf.historical.getStateRange` (attached when the node starts).
    history: OnceLock<Arc<dyn History>>,
}

impl std::fmt::Debug for JsApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsApp").finish_non_exhaustive()
    }
}

thread_local! {
    /// Interpreters this thread keeps, each for the bundle (table versions) it was made for.
    static INTERPRETERS: RefCell<Vec<(TableVersions, Interpreter)>> = const { RefCell::new(Vec::new()) };
}

impl JsApp {
    /// The JS app of the service `engine` runs.
    pub fn new(engine: Arc<dyn JsHost>) -> Self {
        JsApp {
            engine,
            loaded: Mutex::new(None),
            history: OnceLock::new(),
        }
    }

    /// The bundle as the tables hold it now (re-read only when they changed).
    fn current(&self) -> Arc<Loaded> {
        let store = self.engine.store();
        let read = store.read_only();
        let versions = (
            read.map_version(ENDPOINTS_TABLE),
            read.map_version(MODULES_TABLE),
            read.map_version(RUNTIME_OPTIONS_TABLE),
        );
        let mut slot = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(l) = slot.as_ref().filter(|l| l.versions == versions) {
            return l.clone();
        }
        let options = RuntimeOptions::from_table_value(read.get(RUNTIME_OPTIONS_TABLE, &SINGLETON_KEY).as_deref());
        let loaded = Arc::new(Loaded {
            versions,
            endpoints: Endpoints::read(&read),
            options,
        });
        *slot = Some(loaded.clone());
        loaded
    }
}

fn mode_of(m: EndpointMode) -> Mode {
    match m {
        EndpointMode::Readwrite => Mode::ReadWrite,
        EndpointMode::Readonly => Mode::ReadOnly,
        EndpointMode::Historical => Mode::Historical,
    }
}

fn info_of(e: &Endpoint) -> EndpointInfo {
    let auth: AuthPolicies = e
        .authn_policies
        .iter()
        .filter_map(|p| AuthPolicy::from_name(p))
        .collect();
    EndpointInfo {
        auth,
        mode: mode_of(e.mode),
    }
}

/// What the app sees of consensus and of past states.
struct EngineView(Arc<dyn JsHost>, Option<Arc<dyn History>>);

impl NodeView for EngineView {
    fn last_committed(&self) -> (u64, u64) {
        self.0.last_committed()
    }
    fn status(&self, view: u64, seqno: u64) -> String {
        self.0.status(view, seqno)
    }
    fn view_of(&self, seqno: u64) -> Option<u64> {
        let current = self.0.current_view();
        (1..=current)
            .rev()
            .find(|&v| matches!(self.0.status(v, seqno).as_str(), "Committed" | "Pending"))
    }
    fn state_range(&self, from: u64, to: u64) -> StateRange {
        let Some(history) = &self.1 else {
            return StateRange::Failed("this node keeps no historical states".into());
        };
        // The history hands long ranges out in pages; every page must be ready for the answer to be.
        let mut states = Vec::new();
        let mut next = from;
        while next <= to {
            match history.range(next, to) {
                HistoryRange::Ready { states: page, through } => {
                    states.extend(page);
                    if through < next {
                        return StateRange::Failed(format!("the history made no progress at seqno {next}"));
                    }
                    next = through + 1;
                }
                HistoryRange::Pending => return StateRange::Pending,
                HistoryRange::NotCommitted(status) => {
                    return StateRange::Failed(format!("seqno {to} is not committed (its status is {status})"))
                }
                HistoryRange::Failed(e) => return StateRange::Failed(e),
            }
        }
        StateRange::Ready(states)
    }
}

/// CCF's `caller` object for the request.
fn caller_json(engine: &dyn JsHost, caller: &Caller) -> serde_json::Value {
    let store = engine.store();
    let read = store.read_only();
    let described = |policy: &str, id: &str, certs: &str, info: &str| {
        let cert = read
            .get(certs, id.as_bytes())
            .map(|c| String::from_utf8_lossy(&c).into_owned());
        let data = read
            .get(info, id.as_bytes())
            .and_then(|v| serde_json::from_slice::<serde_json::Value>(&v).ok())
            .and_then(|v| v.get("user_data").or(v.get("member_data")).cloned())
            .unwrap_or(serde_json::Value::Null);
        serde_json::json!({"policy": policy, "id": id, "cert": cert, "data": data})
    };
    match caller {
        Caller::Anonymous => serde_json::json!({"policy": "no_auth"}),
        Caller::User(id) => described(
            "user_cert",
            id,
            crate::auth::USERS_CERTS_TABLE,
            "public:ccf.gov.users.info",
        ),
        Caller::Member(id) => described(
            "member_cert",
            id,
            crate::auth::MEMBERS_CERTS_TABLE,
            "public:ccf.gov.members.info",
        ),
        Caller::AnyCert(id) => serde_json::json!({"policy": "any_cert", "id": id}),
        Caller::Jwt(j) => serde_json::json!({"policy": "jwt", "jwt": {
            "keyIssuer": j.key_issuer, "header": j.header, "payload": j.payload}}),
        Caller::UserCose(c) => {
            let mut v = described(
                "user_cose_sign1",
                &c.user_id,
                crate::auth::USERS_CERTS_TABLE,
                "public:ccf.gov.users.info",
            );
            v["cose"] = serde_json::json!({"content": String::from_utf8_lossy(&c.content)});
            v
        }
    }
}

fn request_json(
    engine: &dyn JsHost,
    req: &AppRequest<'_>,
    endpoint: &Endpoint,
    params: &BTreeMap<String, String>,
) -> String {
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers
        .iter()
        .map(|(n, v)| (n.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let url = if req.query.is_empty() {
        format!("/app{}", req.path)
    } else {
        format!("/app{}?{}", req.path, req.query)
    };
    let hostname = crate::auth::header(req.headers, "host").unwrap_or("");
    serde_json::json!({
        "method": req.method,
        "url": url,
        "path": req.path,
        "route": endpoint.uri_path,
        "query": req.query,
        "params": params,
        "headers": headers,
        "hostname": hostname,
        "caller": caller_json(engine, req.caller),
    })
    .to_string()
}

fn error_response(e: &JsError, options: &RuntimeOptions) -> AppResponse {
    let message = match e {
        JsError::Exception { message, stack } if options.return_exception_details => match stack {
            Some(s) => format!("Exception thrown while executing: {message}\n{s}"),
            None => format!("Exception thrown while executing: {message}"),
        },
        JsError::Exception { .. } => "Exception thrown while executing.".to_string(),
        other => other.to_string(),
    };
    if options.log_exception_details {
        tracing::warn!(error = %e, "JavaScript endpoint failed");
    }
    AppResponse::error(500, "InternalError", message)
}

fn response_of(out: consort_js::CallOutput) -> AppResponse {
    let mut resp = AppResponse::json(out.status, serde_json::Value::Null);
    resp.raw = Some(Box::new(match out.body {
        ResponseBody::None => RawBody {
            content_type: "text/plain".into(),
            bytes: vec![],
        },
        ResponseBody::Json(j) => RawBody {
            content_type: "application/json".into(),
            bytes: j.into_bytes(),
        },
        ResponseBody::Text(t) => RawBody {
            content_type: "text/plain".into(),
            bytes: t.into_bytes(),
        },
        ResponseBody::Bytes(b) => RawBody {
            content_type: "application/octet-stream".into(),
            bytes: b,
        },
    }));
    if let Some(ct) = out.headers.iter().find(|(n, _)| n == "content-type") {
        if let Some(raw) = resp.raw.as_mut() {
            raw.content_type = ct.1.clone();
        }
    }
    resp.headers = out.headers.into_iter().filter(|(n, _)| n != "content-type").collect();
    resp.keep_writes = out.apply_writes;
    resp.claims_digest = out.claims_digest.map(Box::new);
    resp
}

impl JsApp {
    fn run(
        &self,
        loaded: &Loaded,
        endpoint: &Endpoint,
        input: &CallInput<'_>,
        tx: Tx<'static>,
    ) -> (Tx<'static>, Result<consort_js::CallOutput, JsError>) {
        let options = loaded.options;
        let mut interpreter = INTERPRETERS.with(|cell| {
            let mut kept = cell.borrow_mut();
            kept.retain(|(v, _)| *v == loaded.versions);
            kept.pop().map(|(_, i)| i)
        });
        if interpreter.is_none() {
            match Interpreter::new(loaded.endpoints.modules.clone(), &options) {
                Ok(i) => interpreter = Some(i),
                Err(e) => return (tx, Err(e)),
            }
        }
        let Some(mut interpreter) = interpreter else {
            return (tx, Err(JsError::Setup("no interpreter".into())));
        };
        let deadline = Instant::now() + Duration::from_millis(options.max_execution_time_ms);
        let view = Box::new(EngineView(self.engine.clone(), self.history.get().cloned()));
        let (tx, out) = interpreter.call(tx, view, Box::new(move || Instant::now() > deadline), input);
        let _ = endpoint;
        let poisoned = out.as_ref().is_err_and(JsError::poisons_interpreter);
        if !poisoned && options.max_cached_interpreters > 0 {
            INTERPRETERS.with(|cell| {
                let mut kept = cell.borrow_mut();
                if kept.len() < options.max_cached_interpreters {
                    kept.push((loaded.versions, interpreter));
                }
            });
        }
        (tx, out)
    }
}

impl App for JsApp {
    fn attach_history(&self, history: Arc<dyn History>) {
        // Attached once when the node starts; a second attach keeps the first.
        let _ = self.history.set(history);
    }

    fn endpoint(&self, method: &str, path: &str) -> Option<EndpointInfo> {
        let loaded = self.current();
        loaded.endpoints.find(method, path).map(|(e, _)| info_of(e))
    }

    fn handle(&self, req: &AppRequest<'_>, tx: &mut Tx<'static>) -> AppResponse {
        let loaded = self.current();
        let Some((endpoint, params)) = loaded.endpoints.find(req.method, req.path) else {
            return AppResponse::error(404, "ResourceNotFound", format!("Unknown path: /app{}.", req.path));
        };
        let historical_json = req
            .historical
            .map(|h| serde_json::json!({"transactionId": h.transaction_id, "receipt": h.receipt}).to_string());
        let input = CallInput {
            module: &endpoint.js_module,
            function: &endpoint.js_function,
            request_json: request_json(self.engine.as_ref(), req, endpoint, &params),
            body: req.body,
            access: if endpoint.mode == EndpointMode::Readwrite {
                KvAccess::ReadWrite
            } else {
                KvAccess::ReadOnly
            },
            historical_json,
        };
        let (returned, out) = self.run(&loaded, endpoint, &input, tx.take());
        *tx = returned;
        match out {
            Ok(out) => response_of(out),
            Err(e) => error_response(&e, &loaded.options),
        }
    }

    fn openapi_paths(&self) -> serde_json::Value {
        let loaded = self.current();
        let mut paths = serde_json::Map::new();
        for e in loaded.endpoints.iter().filter(|e| !e.openapi_hidden) {
            let op = if e.openapi.is_object() {
                e.openapi.clone()
            } else {
                serde_json::json!({})
            };
            let entry = paths
                .entry(format!("/app{}", e.uri_path))
                .or_insert_with(|| serde_json::json!({}));
            entry[e.verb.to_ascii_lowercase()] = op;
        }
        serde_json::Value::Object(paths)
    }
}
