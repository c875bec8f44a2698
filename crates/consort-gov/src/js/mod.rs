//! The constitution runtime: runs one exported function of a JS module (the constitution, or a ballot) in a
//! fresh QuickJS runtime with a heap limit, a stack limit and a deterministic time budget, against a view of
//! the KV.
//!
//! KV access without sharing the transaction with the engine: the engine's callbacks must be `'static`, so
//! they cannot borrow the [`Tx`]. Instead each call runs against an in-memory copy of the maps it touches.
//! When a call touches a map that is not loaded yet, the host records its name, makes every further host call
//! throw, and — once the call has returned — loads the map from the transaction and runs the call again from
//! the start in a fresh runtime. The call is deterministic (no clock, no `Date`, seeded `Math.random`, a
//! time budget counted in interrupt polls), so the rerun takes the same path and gets further. Writes (only in
//! `apply`, only to `public:ccf.gov.*` maps) are buffered and applied to the transaction when the call
//! succeeds; a failed call writes nothing.

mod bundle;
mod effects;
mod host;
mod jwt;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use consort_kv::Tx;
use rquickjs::context::intrinsic;
use rquickjs::{CatchResultExt, CaughtError, Context, Function, Module, Object, Runtime, Value};

use crate::limits::{JsLimits, MAX_JS_CERTIFICATES_PER_CALL, MAX_JS_MAPS_PER_CALL};
use crate::model::Failure;

pub use bundle::{endpoint_key, stored_module_name, AUTHN_POLICIES};
pub use host::HostAction;
pub use jwt::JwtSigningKey;

use host::CertRequest;

/// Reason CCF gives when a call exceeds its time budget.
pub const TIMEOUT_REASON: &str = "Operation took too long to complete.";

const PRELUDE: &str = include_str!("prelude.js");

/// What a JS call may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// validate, resolve and ballots: read `public:` maps only; no writes, no host actions.
    ReadOnly,
    /// apply: also write `public:ccf.gov.*` maps and record host actions.
    Apply,
}

/// One call: `function(...args)` exported by the module `source`.
pub(crate) struct JsCall<'a> {
    pub source: &'a str,
    pub module_name: &'a str,
    pub function: &'a str,
    pub args: serde_json::Value,
    pub access: Access,
}

/// What a successful call returned and did.
#[derive(Debug, Default)]
pub(crate) struct JsOutput {
    /// The return value as JSON (`None` for `undefined`).
    pub result: Option<serde_json::Value>,
    pub actions: Vec<HostAction>,
    pub logs: Vec<String>,
}

/// Certificates signed with the service key, which only the node holds. A constitution asks for them through
/// `ccf.network.generateEndorsedCertificate` and `ccf.network.generateNetworkCertificate` (CCF's names); governance
/// passes the request here and hands the PEM back to the JavaScript. Errors are messages for the proposal's
/// failure reason.
pub trait CertificateIssuer {
    /// `generateEndorsedCertificate(csr, validFrom, validityPeriodDays)`: a certificate for the key and subject of
    /// the PEM certificate signing request `csr`, issued by the service certificate, valid from `valid_from`
    /// (CCF's time string, `"YYYYMMDDhhmmssZ"` or an ISO 8601 date) for `validity_period_days` days; PEM.
    fn endorse_csr(&self, csr_pem: &str, valid_from: &str, validity_period_days: u64) -> Result<String, String>;
    /// `generateNetworkCertificate(validFrom, validityPeriodDays)`: the service certificate re-issued over the
    /// same service key with the given validity; PEM.
    fn renew_service_certificate(&self, valid_from: &str, validity_period_days: u64) -> Result<String, String>;
}

/// What the node passes with every governance operation that runs JavaScript: the limits of each JS call and
/// the host facts and services a constitution may ask for.
#[derive(Clone, Copy)]
pub struct GovEnv<'a> {
    /// Limits of each JS call (each ballot, validate, resolve and apply is one call).
    pub limits: JsLimits,
    /// Answer of `ccf.network.getLatestLedgerSecretSeqno()`.
    pub latest_ledger_secret_seqno: u64,
    /// Who signs certificates with the service key; without one, `ccf.network.generate*Certificate` fail the
    /// call with "this node cannot issue certificates".
    pub certificates: Option<&'a dyn CertificateIssuer>,
}

impl std::fmt::Debug for GovEnv<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GovEnv")
            .field("limits", &self.limits)
            .field("latest_ledger_secret_seqno", &self.latest_ledger_secret_seqno)
            .field("certificates", &self.certificates.is_some())
            .finish()
    }
}

impl Default for GovEnv<'_> {
    fn default() -> Self {
        GovEnv {
            limits: crate::limits::DEFAULT_JS_LIMITS,
            latest_ledger_secret_seqno: 0,
            certificates: None,
        }
    }
}

fn issue(env: &GovEnv<'_>, request: &CertRequest) -> Result<String, String> {
    let Some(issuer) = env.certificates else {
        return Err("this node cannot issue certificates".into());
    };
    match request {
        CertRequest::Endorse {
            csr,
            valid_from,
            validity_period_days,
        } => issuer.endorse_csr(csr, valid_from, *validity_period_days),
        CertRequest::Renew {
            valid_from,
            validity_period_days,
        } => issuer.renew_service_certificate(valid_from, *validity_period_days),
    }
}

type MapData = BTreeMap<Vec<u8>, Vec<u8>>;

/// Runs `call` against `tx`; on success applies its buffered writes to `tx`.
pub(crate) fn run(tx: &mut Tx<'_>, call: &JsCall<'_>, env: &GovEnv<'_>) -> Result<JsOutput, Failure> {
    let args_json = serde_json::to_string(&call.args).map_err(|e| Failure {
        reason: format!("arguments do not serialise: {e}"),
        trace: None,
    })?;
    let seed = {
        let mut h = consort_crypto::Sha256Hasher::new();
        h.update(call.source.as_bytes());
        h.update(call.function.as_bytes());
        h.update(args_json.as_bytes());
        let d = h.finish();
        u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]) | 1
    };
    let mut loaded: HashMap<String, MapData> = HashMap::new();
    let mut certs: HashMap<CertRequest, Result<String, String>> = HashMap::new();
    for _ in 0..=MAX_JS_MAPS_PER_CALL + MAX_JS_CERTIFICATES_PER_CALL {
        let host = Rc::new(RefCell::new(host::Host::new(
            call.access,
            loaded.clone(),
            certs.clone(),
            seed,
            env,
        )));
        let outcome = run_once(call, &args_json, &host, env);
        let mut host = Rc::try_unwrap(host).map(RefCell::into_inner).map_err(|_| Failure {
            reason: "internal error: JS runtime outlived its call".into(),
            trace: None,
        })?;
        if let Some(map) = host.missing.take() {
            let mut data = MapData::new();
            tx.foreach(&map, |k, v| {
                data.insert(k.to_vec(), v.to_vec());
                true
            });
            if loaded.len() > MAX_JS_MAPS_PER_CALL {
                break;
            }
            loaded.insert(map, data);
            continue;
        }
        if let Some(request) = host.missing_cert.take() {
            if certs.len() >= MAX_JS_CERTIFICATES_PER_CALL {
                return Err(failure(format!(
                    "the call asked for more than {MAX_JS_CERTIFICATES_PER_CALL} certificates"
                )));
            }
            let answer = issue(env, &request);
            certs.insert(request, answer);
            continue;
        }
        let result = outcome?;
        for (map, key, value) in host.writes {
            match value {
                Some(v) => tx.put(&map, &key, &v),
                None => tx.remove(&map, &key),
            }
        }
        return Ok(JsOutput {
            result,
            actions: host.actions,
            logs: host.logs,
        });
    }
    Err(Failure {
        reason: format!("the call touched more than {MAX_JS_MAPS_PER_CALL} KV maps"),
        trace: None,
    })
}

fn failure(reason: impl Into<String>) -> Failure {
    Failure {
        reason: reason.into(),
        trace: None,
    }
}

/// Deterministic intrinsics only: no `Date`, `performance` or `WeakRef` (their results depend on the clock or
/// the garbage collector).
type Intrinsics = (
    intrinsic::Eval,
    intrinsic::RegExpCompiler,
    intrinsic::RegExp,
    intrinsic::Json,
    intrinsic::Proxy,
    intrinsic::MapSet,
    intrinsic::TypedArrays,
    intrinsic::Promise,
);

fn run_once(
    call: &JsCall<'_>,
    args_json: &str,
    host: &Rc<RefCell<host::Host>>,
    env: &GovEnv<'_>,
) -> Result<Option<serde_json::Value>, Failure> {
    let runtime = Runtime::new().map_err(|e| failure(format!("cannot create a JS runtime: {e}")))?;
    runtime.set_memory_limit(env.limits.max_heap_bytes);
    runtime.set_max_stack_size(env.limits.max_stack_bytes);
    let polls = Rc::new(Cell::new(0u64));
    {
        let polls = polls.clone();
        let max = env.limits.max_interrupt_polls;
        runtime.set_interrupt_handler(Some(Box::new(move || {
            polls.set(polls.get().saturating_add(1));
            polls.get() > max
        })));
    }
    let context =
        Context::custom::<Intrinsics>(&runtime).map_err(|e| failure(format!("cannot create a JS context: {e}")))?;
    let result = context.with(|ctx| -> Result<Option<String>, Failure> {
        let describe = |e: CaughtError<'_>| -> Failure {
            match e {
                CaughtError::Exception(ex) => Failure {
                    reason: ex.message().unwrap_or_else(|| "exception without a message".into()),
                    trace: ex.stack().filter(|s| !s.is_empty()),
                },
                CaughtError::Value(v) => {
                    let text = v
                        .as_string()
                        .and_then(|s| s.to_string().ok())
                        .unwrap_or_else(|| format!("{:?}", v.type_of()));
                    failure(format!("uncaught value: {text}"))
                }
                CaughtError::Error(e) => failure(e.to_string()),
            }
        };
        let host_obj: Object<'_> = host::install(&ctx, host).catch(&ctx).map_err(describe)?;
        let prelude: Function<'_> = ctx.eval(PRELUDE).catch(&ctx).map_err(describe)?;
        let call_helper: Function<'_> = prelude.call((host_obj,)).catch(&ctx).map_err(describe)?;
        let declared = Module::declare(ctx.clone(), call.module_name, call.source)
            .catch(&ctx)
            .map_err(describe)?;
        let (module, promise) = declared.eval().catch(&ctx).map_err(describe)?;
        promise.finish::<()>().catch(&ctx).map_err(describe)?;
        let namespace = module.namespace().catch(&ctx).map_err(describe)?;
        let export: Value<'_> = namespace.get(call.function).catch(&ctx).map_err(describe)?;
        let Some(function) = export.as_function().cloned() else {
            return Err(failure(format!(
                "{} does not export a function {}",
                call.module_name, call.function
            )));
        };
        call_helper
            .call::<_, Option<String>>((function, args_json))
            .catch(&ctx)
            .map_err(describe)
    });
    let timed_out = polls.get() > env.limits.max_interrupt_polls;
    drop(context);
    drop(runtime);
    match result {
        Err(mut f) => {
            if timed_out {
                f = Failure {
                    reason: TIMEOUT_REASON.into(),
                    trace: None,
                };
            }
            Err(f)
        }
        Ok(None) => Ok(None),
        Ok(Some(json)) => serde_json::from_str(&json)
            .map(Some)
            .map_err(|e| failure(format!("{} returned a value that is not JSON: {e}", call.function))),
    }
}
