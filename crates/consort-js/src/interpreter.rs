//! One QuickJS interpreter with the app's modules loaded: runs an endpoint's function on a request inside the
//! request's KV transaction, under the runtime options' heap, stack and time limits.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use consort_kv::Tx;
use rquickjs::convert::List;
use rquickjs::loader::{Loader, Resolver};
use rquickjs::module::Declared;
use rquickjs::{CatchResultExt, CaughtError, Context, Ctx, Function, Module, Object, Persistent, Runtime};

use crate::host::{self, HostState};
use crate::options::RuntimeOptions;

const PRELUDE: &str = include_str!("prelude.js");

/// Whether a call may write the KV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvAccess {
    /// Reads and writes (read-write endpoints).
    ReadWrite,
    /// Reads only: a write throws (read-only and historical endpoints).
    ReadOnly,
}

/// What the node tells the app of consensus (`ccf.consensus`).
pub trait NodeView {
    /// The last committed transaction, `(view, seqno)`.
    fn last_committed(&self) -> (u64, u64);
    /// CCF's status of a transaction: "Unknown", "Pending", "Committed" or "Invalid".
    fn status(&self, view: u64, seqno: u64) -> String;
    /// The view in which `seqno` was written, if known.
    fn view_of(&self, seqno: u64) -> Option<u64>;
    /// `ccf.historical.getStateRange`: what each committed transaction `from..=to` wrote, one store per seqno.
    fn state_range(&self, _from: u64, _to: u64) -> StateRange {
        StateRange::Failed("this node keeps no historical states".into())
    }
}

/// The answer of [`NodeView::state_range`].
#[derive(Debug)]
pub enum StateRange {
    /// `(seqno, what it wrote)` for every seqno of the range, in order.
    Ready(Vec<(u64, std::sync::Arc<consort_kv::Store>)>),
    /// Still being fetched: `getStateRange` returns `null` and the app asks again later.
    Pending,
    /// Why the range cannot be served (not committed, too long, unreadable); `getStateRange` throws it.
    Failed(String),
}

/// One call of an endpoint function.
#[derive(Debug)]
pub struct CallInput<'a> {
    /// Module name as stored (leading `/`), and the exported function.
    pub module: &'a str,
    /// The exported function to call.
    pub function: &'a str,
    /// The request object without its body, as JSON (`method`, `url`, `route`, `path`, `query`, `params`,
    /// `headers`, `caller`, `hostname`).
    pub request_json: String,
    /// The request body.
    pub body: &'a [u8],
    /// Whether the call may write.
    pub access: KvAccess,
    /// For historical endpoints: `{"transactionId", "receipt"}` as JSON.
    pub historical_json: Option<String>,
}

/// The body of an app's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseBody {
    /// No body.
    None,
    /// A JSON value (serialised).
    Json(String),
    /// A string, sent as text.
    Text(String),
    /// An ArrayBuffer or typed array, sent as bytes.
    Bytes(Vec<u8>),
}

/// What a successful call returned and asked for.
#[derive(Debug)]
pub struct CallOutput {
    /// The HTTP status (`statusCode`, default 200).
    pub status: u16,
    /// Response headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The response body.
    pub body: ResponseBody,
    /// `ccf.rpc.setApplyWrites`: whether writes should be kept even if the status is not a success.
    pub apply_writes: Option<bool>,
    /// `ccf.rpc.setClaimsDigest`: the digest to bind into the transaction's receipt.
    pub claims_digest: Option<[u8; 32]>,
    /// What the call wrote with `console.log` (at most a bounded number of lines).
    pub logs: Vec<String>,
}

/// Why a call failed. The transaction's writes must be dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsError {
    /// The app threw (or a native function threw for it).
    #[error("{message}")]
    Exception {
        /// The exception's message.
        message: String,
        /// Its stack trace, if it has one.
        stack: Option<String>,
    },
    /// The call ran past `max_execution_time_ms`.
    #[error("Operation took too long to complete.")]
    Timeout,
    /// The call allocated past `max_heap_bytes`.
    #[error("out of memory: the call exceeded the heap limit")]
    OutOfMemory,
    /// The call recursed past `max_stack_bytes`.
    #[error("stack overflow: the call exceeded the stack limit")]
    StackOverflow,
    /// The app returned something that is not a response.
    #[error("the app's response is malformed: {0}")]
    BadResponse(String),
    /// The interpreter could not be made.
    #[error("cannot run the app: {0}")]
    Setup(String),
}

impl JsError {
    /// Whether the interpreter must be thrown away after this error (its state may be half-changed).
    pub fn poisons_interpreter(&self) -> bool {
        !matches!(self, JsError::Exception { .. } | JsError::BadResponse(_))
    }
}

/// Resolves module specifiers against the importing module's path (`./x.js`, `../y.js`, `/abs.js`).
struct AppResolver;

impl Resolver for AppResolver {
    fn resolve<'js>(
        &mut self,
        _ctx: &Ctx<'js>,
        base: &str,
        name: &str,
        _attributes: Option<rquickjs::loader::ImportAttributes<'js>>,
    ) -> rquickjs::Result<String> {
        Ok(resolve_path(base, name))
    }
}

pub(crate) fn resolve_path(base: &str, name: &str) -> String {
    if !name.starts_with('.') {
        return if name.starts_with('/') {
            name.to_string()
        } else {
            format!("/{name}")
        };
    }
    let mut parts: Vec<&str> = base.split('/').filter(|s| !s.is_empty()).collect();
    parts.pop(); // the importing module's own file name
    for seg in name.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Loads modules from the deployed bundle.
struct AppLoader {
    modules: Arc<BTreeMap<String, String>>,
}

impl Loader for AppLoader {
    fn load<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        name: &str,
        _attributes: Option<rquickjs::loader::ImportAttributes<'js>>,
    ) -> rquickjs::Result<Module<'js, Declared>> {
        let source = self
            .modules
            .get(name)
            .ok_or_else(|| rquickjs::Error::new_loading_message(name, "no such module in the app bundle"))?;
        Module::declare(ctx.clone(), name, source.as_str())
    }
}

/// A QuickJS runtime and context with the app's modules available and the `ccf` global installed.
pub struct Interpreter {
    state: Rc<HostState>,
    helper: Persistent<Function<'static>>,
    context: Context,
    runtime: Runtime,
}

impl std::fmt::Debug for Interpreter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interpreter").finish_non_exhaustive()
    }
}

fn describe(e: CaughtError<'_>) -> JsError {
    match e {
        CaughtError::Exception(ex) => {
            let message = ex.message().unwrap_or_else(|| "exception without a message".into());
            let stack = ex.stack().filter(|s| !s.is_empty());
            if message.contains("out of memory") {
                JsError::OutOfMemory
            } else if message.contains("stack overflow") || message.contains("call stack size") {
                JsError::StackOverflow
            } else {
                JsError::Exception { message, stack }
            }
        }
        CaughtError::Value(v) => {
            let text = v
                .as_string()
                .and_then(|s| s.to_string().ok())
                .unwrap_or_else(|| format!("{:?}", v.type_of()));
            JsError::Exception {
                message: format!("uncaught value: {text}"),
                stack: None,
            }
        }
        CaughtError::Error(rquickjs::Error::Allocation) => JsError::OutOfMemory,
        CaughtError::Error(e) => JsError::Exception {
            message: e.to_string(),
            stack: None,
        },
    }
}

impl Interpreter {
    /// A fresh interpreter for the bundle's `modules` under `options`.
    pub fn new(modules: Arc<BTreeMap<String, String>>, options: &RuntimeOptions) -> Result<Self, JsError> {
        let runtime = Runtime::new().map_err(|e| JsError::Setup(e.to_string()))?;
        runtime.set_memory_limit(options.max_heap_bytes);
        runtime.set_max_stack_size(options.max_stack_bytes);
        runtime.set_loader(AppResolver, AppLoader { modules });
        let state = Rc::new(HostState::new());
        {
            let state = state.clone();
            runtime.set_interrupt_handler(Some(Box::new(move || {
                let stop = state.interrupt.borrow_mut().as_mut().is_some_and(|f| f());
                if stop {
                    state.interrupted.set(true);
                }
                stop
            })));
        }
        let context = Context::full(&runtime).map_err(|e| JsError::Setup(e.to_string()))?;
        let helper = context.with(|ctx| -> Result<Persistent<Function<'static>>, JsError> {
            let host_obj: Object<'_> = host::install(&ctx, &state).catch(&ctx).map_err(describe)?;
            let prelude: Function<'_> = ctx.eval(PRELUDE).catch(&ctx).map_err(describe)?;
            let helper: Function<'_> = prelude.call((host_obj,)).catch(&ctx).map_err(describe)?;
            Ok(Persistent::save(&ctx, helper))
        })?;
        Ok(Interpreter {
            state,
            helper,
            context,
            runtime,
        })
    }

    /// Runs `input` inside `tx` and gives the transaction back with the outcome. `interrupt` is polled while
    /// JavaScript runs; when it returns true the call stops with [`JsError::Timeout`].
    pub fn call(
        &mut self,
        tx: Tx<'static>,
        node: Box<dyn NodeView>,
        interrupt: Box<dyn FnMut() -> bool>,
        input: &CallInput<'_>,
    ) -> (Tx<'static>, Result<CallOutput, JsError>) {
        let st = &self.state;
        *st.tx.borrow_mut() = Some(tx);
        *st.node.borrow_mut() = Some(node);
        *st.interrupt.borrow_mut() = Some(interrupt);
        st.interrupted.set(false);
        st.access.set(input.access);
        st.apply_writes.set(false);
        st.claims_digest.set(None);
        st.logs.borrow_mut().clear();
        st.range.borrow_mut().clear();
        let applied = std::cell::Cell::new(None);
        let result = self.context.with(|ctx| {
            let helper = self
                .helper
                .clone()
                .restore(&ctx)
                .map_err(|e| JsError::Setup(e.to_string()))?;
            let run = || -> rquickjs::Result<List<(i32, String, String, String)>> {
                let ns: Object<'_> = Module::import(&ctx, input.module)?.finish()?;
                let f: Function<'_> = ns.get(input.function)?;
                let historical = input.historical_json.clone().unwrap_or_default();
                helper.call((f, input.request_json.as_str(), host::to_bin(input.body), historical))
            };
            let out = run().catch(&ctx).map_err(describe);
            applied.set(Some(st.apply_writes.get()));
            out
        });
        let result = if st.interrupted.get() {
            Err(JsError::Timeout)
        } else {
            result.and_then(|List((status, headers, kind, payload))| {
                output(status, &headers, &kind, payload, applied.get(), st)
            })
        };
        *st.interrupt.borrow_mut() = None;
        *st.node.borrow_mut() = None;
        // Historical states fetched for this call are the cache's to keep, not the interpreter's.
        st.range.borrow_mut().clear();
        let tx = st.tx.borrow_mut().take();
        // invariant: the transaction was put in above and only this function takes it out.
        #[allow(clippy::expect_used)] // reason: see the invariant on the line above
        let tx = tx.expect("the call's transaction is still in the host");
        if result.as_ref().is_err_and(JsError::poisons_interpreter) {
            self.runtime.run_gc();
        }
        (tx, result)
    }
}

fn output(
    status: i32,
    headers: &str,
    kind: &str,
    payload: String,
    apply_writes: Option<bool>,
    st: &HostState,
) -> Result<CallOutput, JsError> {
    let status = u16::try_from(status)
        .ok()
        .filter(|s| (100..600).contains(s))
        .ok_or_else(|| JsError::BadResponse(format!("statusCode {status} is not an HTTP status")))?;
    let headers: BTreeMap<String, String> =
        serde_json::from_str(headers).map_err(|e| JsError::BadResponse(format!("headers: {e}")))?;
    let body = match kind {
        "none" => ResponseBody::None,
        "text" => ResponseBody::Text(payload),
        "json" => ResponseBody::Json(payload),
        "bytes" => ResponseBody::Bytes(host::bin(&payload).map_err(JsError::BadResponse)?),
        other => return Err(JsError::BadResponse(format!("body kind {other}"))),
    };
    Ok(CallOutput {
        status,
        headers: headers.into_iter().collect(),
        body,
        apply_writes: apply_writes.filter(|&a| a),
        claims_digest: st.claims_digest.get(),
        logs: st.logs.borrow().clone(),
    })
}
