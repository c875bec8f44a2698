//! The native half of the `ccf` global: KV access over the request's transaction, codecs, crypto, `ccf.rpc` and
//! `ccf.consensus`, installed as functions on a private host object that prelude.js wraps.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use consort_kv::Tx;
use rquickjs::{Array, ArrayBuffer, Ctx, Exception, Function, Object, Value};

use crate::crypto;
use crate::interpreter::{KvAccess, NodeView};

/// Prefix of maps apps may not read (the node's own bookkeeping).
pub(crate) const INTERNAL_PREFIX: &str = "public:ccf.internal.";
/// Prefix of maps apps may read but not write (governance and the node).
pub(crate) const RESERVED_PREFIX: &str = "public:ccf.";
/// Most log lines one call keeps.
pub(crate) const MAX_LOG_LINES: usize = 64;
/// Most seqnos one `ccf.historical.getStateRange` call may ask for.
pub const MAX_STATE_RANGE_SEQNOS: u64 = 10_000;
/// The slot number JS passes for the request's own transaction (others index [`HostState::range`]).
const REQUEST_SLOT: i32 = -1;

/// What the host functions share with the interpreter for the call in progress.
pub(crate) struct HostState {
    pub(crate) tx: RefCell<Option<Tx<'static>>>,
    pub(crate) access: Cell<KvAccess>,
    pub(crate) apply_writes: Cell<bool>,
    pub(crate) claims_digest: Cell<Option<[u8; 32]>>,
    pub(crate) node: RefCell<Option<Box<dyn NodeView>>>,
    pub(crate) interrupt: RefCell<Option<Box<dyn FnMut() -> bool>>>,
    pub(crate) interrupted: Cell<bool>,
    pub(crate) logs: RefCell<Vec<String>>,
    /// Read-only transactions over the historical states `getStateRange` handed out during this call (the JS
    /// side names them by index).
    pub(crate) range: RefCell<Vec<Tx<'static>>>,
}

impl HostState {
    pub(crate) fn new() -> Self {
        HostState {
            tx: RefCell::new(None),
            access: Cell::new(KvAccess::ReadOnly),
            apply_writes: Cell::new(false),
            claims_digest: Cell::new(None),
            node: RefCell::new(None),
            interrupt: RefCell::new(None),
            interrupted: Cell::new(false),
            logs: RefCell::new(Vec::new()),
            range: RefCell::new(Vec::new()),
        }
    }
}

pub(crate) type Shared = Rc<HostState>;

fn throw(ctx: &Ctx<'_>, msg: &str) -> rquickjs::Error {
    Exception::throw_type(ctx, msg)
}

/// A binary string (one char per byte) back to bytes.
pub(crate) fn bin(s: &str) -> Result<Vec<u8>, String> {
    s.chars()
        .map(|c| u8::try_from(u32::from(c)).map_err(|_| "byte string holds a non-byte character".to_owned()))
        .collect()
}

/// Bytes as a binary string (one char per byte).
pub(crate) fn to_bin(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

pub(crate) fn buffer<'js>(ctx: &Ctx<'js>, bytes: Vec<u8>) -> rquickjs::Result<Value<'js>> {
    Ok(ArrayBuffer::new(ctx.clone(), bytes)?.into_value())
}

fn readable(map: &str) -> Result<(), String> {
    if map.is_empty() {
        return Err("a map name must not be empty".into());
    }
    if map.starts_with(INTERNAL_PREFIX) {
        return Err(format!("map {map} is not readable by applications"));
    }
    Ok(())
}

fn writable(state: &HostState, map: &str) -> Result<(), String> {
    readable(map)?;
    if state.access.get() == KvAccess::ReadOnly {
        return Err(format!("cannot write to {map}: this endpoint is read-only"));
    }
    if map.starts_with(RESERVED_PREFIX) {
        return Err(format!("map {map} is read-only for applications"));
    }
    Ok(())
}

/// Runs `f` on the call's transaction; a JS exception if there is none or `f` refuses.
fn with_tx<'js, T>(
    ctx: &Ctx<'js>,
    state: &Shared,
    f: impl FnOnce(&HostState, &mut Tx<'static>) -> Result<T, String>,
) -> rquickjs::Result<T> {
    let mut slot = state.tx.borrow_mut();
    let r = match slot.as_mut() {
        Some(tx) => f(state, tx),
        None => Err("no transaction: the KV is only available while a request runs".into()),
    };
    drop(slot);
    r.map_err(|e| throw(ctx, &e))
}

/// Runs `f` on the transaction a read names: the request's ([`REQUEST_SLOT`]) or a historical state's.
fn with_read<'js, T>(
    ctx: &Ctx<'js>,
    state: &Shared,
    slot: i32,
    f: impl FnOnce(&mut Tx<'static>) -> Result<T, String>,
) -> rquickjs::Result<T> {
    if slot == REQUEST_SLOT {
        return with_tx(ctx, state, |_, tx| f(tx));
    }
    let mut range = state.range.borrow_mut();
    let r = match usize::try_from(slot).ok().and_then(|i| range.get_mut(i)) {
        Some(tx) => f(tx),
        None => Err("this historical state is no longer available: states last for the call that fetched them".into()),
    };
    drop(range);
    r.map_err(|e| throw(ctx, &e))
}

/// Installs the native functions on a fresh object and returns it.
pub(crate) fn install<'js>(ctx: &Ctx<'js>, state: &Shared) -> rquickjs::Result<Object<'js>> {
    let obj = Object::new(ctx.clone())?;
    install_kv_reads(ctx, state, &obj)?;
    install_kv_writes(ctx, state, &obj)?;
    install_codecs(ctx, &obj)?;
    crypto::install(ctx, &obj)?;
    install_rpc(ctx, state, &obj)?;
    Ok(obj)
}

fn install_kv_reads<'js>(ctx: &Ctx<'js>, state: &Shared, obj: &Object<'js>) -> rquickjs::Result<()> {
    let s = state.clone();
    let f = move |ctx: Ctx<'js>, slot: i32, map: String, key: String| -> rquickjs::Result<Value<'js>> {
        let value = with_read(&ctx, &s, slot, |tx| {
            readable(&map)?;
            Ok(tx.get(&map, &bin(&key)?))
        })?;
        match value {
            Some(v) => buffer(&ctx, v.to_vec()),
            None => Ok(Value::new_undefined(ctx.clone())),
        }
    };
    obj.set("kvGet", Function::new(ctx.clone(), f)?)?;

    let s = state.clone();
    let f = move |ctx: Ctx<'js>, slot: i32, map: String, key: String| -> rquickjs::Result<bool> {
        with_read(&ctx, &s, slot, |tx| {
            readable(&map)?;
            Ok(tx.has(&map, &bin(&key)?))
        })
    };
    obj.set("kvHas", Function::new(ctx.clone(), f)?)?;

    let s = state.clone();
    let f = move |ctx: Ctx<'js>, slot: i32, map: String, key: String| -> rquickjs::Result<Option<f64>> {
        with_read(&ctx, &s, slot, |tx| {
            readable(&map)?;
            // Versions are seqnos, far below 2^53.
            Ok(tx.version_of(&map, &bin(&key)?).map(|v| v as f64))
        })
    };
    obj.set("kvVersion", Function::new(ctx.clone(), f)?)?;

    let s = state.clone();
    let f = move |ctx: Ctx<'js>, slot: i32, map: String| -> rquickjs::Result<f64> {
        with_read(&ctx, &s, slot, |tx| {
            readable(&map)?;
            let mut n = 0u64;
            tx.foreach(&map, |_, _| {
                n += 1;
                true
            });
            Ok(n as f64)
        })
    };
    obj.set("kvSize", Function::new(ctx.clone(), f)?)?;

    let s = state.clone();
    let f = move |ctx: Ctx<'js>, slot: i32, map: String| -> rquickjs::Result<Array<'js>> {
        let mut entries = Vec::new();
        with_read(&ctx, &s, slot, |tx| {
            readable(&map)?;
            tx.foreach(&map, |k, v| {
                entries.push((k.to_vec(), v.to_vec()));
                true
            });
            Ok(())
        })?;
        let out = Array::new(ctx.clone())?;
        for (i, (k, v)) in entries.into_iter().enumerate() {
            let pair = Array::new(ctx.clone())?;
            pair.set(0, buffer(&ctx, k)?)?;
            pair.set(1, buffer(&ctx, v)?)?;
            out.set(i, pair)?;
        }
        Ok(out)
    };
    obj.set("kvEntries", Function::new(ctx.clone(), f)?)?;
    Ok(())
}

fn install_kv_writes<'js>(ctx: &Ctx<'js>, state: &Shared, obj: &Object<'js>) -> rquickjs::Result<()> {
    let s = state.clone();
    let f = move |ctx: Ctx<'js>, map: String, key: String, value: String| -> rquickjs::Result<()> {
        with_tx(&ctx, &s, |st, tx| {
            writable(st, &map)?;
            tx.put(&map, &bin(&key)?, &bin(&value)?);
            Ok(())
        })
    };
    obj.set("kvSet", Function::new(ctx.clone(), f)?)?;

    let s = state.clone();
    let f = move |ctx: Ctx<'js>, map: String, key: String| -> rquickjs::Result<bool> {
        with_tx(&ctx, &s, |st, tx| {
            writable(st, &map)?;
            let key = bin(&key)?;
            let had = tx.has(&map, &key);
            tx.remove(&map, &key);
            Ok(had)
        })
    };
    obj.set("kvDelete", Function::new(ctx.clone(), f)?)?;

    let s = state.clone();
    let f = move |ctx: Ctx<'js>, map: String| -> rquickjs::Result<()> {
        with_tx(&ctx, &s, |st, tx| {
            writable(st, &map)?;
            let mut keys = Vec::new();
            tx.foreach(&map, |k, _| {
                keys.push(k.to_vec());
                true
            });
            for k in keys {
                tx.remove(&map, &k);
            }
            Ok(())
        })
    };
    obj.set("kvClear", Function::new(ctx.clone(), f)?)?;
    Ok(())
}

fn install_codecs<'js>(ctx: &Ctx<'js>, obj: &Object<'js>) -> rquickjs::Result<()> {
    let f = |ctx: Ctx<'js>, s: String| -> rquickjs::Result<Value<'js>> { buffer(&ctx, s.into_bytes()) };
    obj.set("utf8Encode", Function::new(ctx.clone(), f)?)?;
    let f = |ctx: Ctx<'js>, b: String| -> rquickjs::Result<String> {
        let bytes = bin(&b).map_err(|e| throw(&ctx, &e))?;
        String::from_utf8(bytes).map_err(|_| throw(&ctx, "the buffer is not valid UTF-8"))
    };
    obj.set("utf8Decode", Function::new(ctx.clone(), f)?)?;
    let f = |ctx: Ctx<'js>, b: String| -> rquickjs::Result<Value<'js>> {
        let bytes = bin(&b).map_err(|e| throw(&ctx, &e))?;
        buffer(&ctx, bytes)
    };
    obj.set("binToBuf", Function::new(ctx.clone(), f)?)?;
    Ok(())
}

fn install_rpc<'js>(ctx: &Ctx<'js>, state: &Shared, obj: &Object<'js>) -> rquickjs::Result<()> {
    let s = state.clone();
    obj.set(
        "setApplyWrites",
        Function::new(ctx.clone(), move |apply: bool| s.apply_writes.set(apply))?,
    )?;
    let s = state.clone();
    let f = move |ctx: Ctx<'js>, digest: String| -> rquickjs::Result<()> {
        let bytes = bin(&digest).map_err(|e| throw(&ctx, &e))?;
        let d: [u8; 32] = bytes
            .try_into()
            .map_err(|_| throw(&ctx, "a claims digest is a SHA-256 digest: 32 bytes"))?;
        s.claims_digest.set(Some(d));
        Ok(())
    };
    obj.set("setClaimsDigest", Function::new(ctx.clone(), f)?)?;

    let s = state.clone();
    let f = move |ctx: Ctx<'js>| -> rquickjs::Result<String> {
        let node = s.node.borrow();
        let node = node.as_ref().ok_or_else(|| throw(&ctx, "no node view"))?;
        let (view, seqno) = node.last_committed();
        Ok(serde_json::json!({"view": view, "seqno": seqno}).to_string())
    };
    obj.set("lastCommitted", Function::new(ctx.clone(), f)?)?;
    let s = state.clone();
    let f = move |ctx: Ctx<'js>, view: f64, seqno: f64| -> rquickjs::Result<String> {
        let node = s.node.borrow();
        let node = node.as_ref().ok_or_else(|| throw(&ctx, "no node view"))?;
        Ok(node.status(view as u64, seqno as u64))
    };
    obj.set("txStatus", Function::new(ctx.clone(), f)?)?;
    let s = state.clone();
    let f = move |ctx: Ctx<'js>, seqno: f64| -> rquickjs::Result<Option<f64>> {
        let node = s.node.borrow();
        let node = node.as_ref().ok_or_else(|| throw(&ctx, "no node view"))?;
        Ok(node.view_of(seqno as u64).map(|v| v as f64))
    };
    obj.set("viewOf", Function::new(ctx.clone(), f)?)?;

    install_state_range(ctx, state, obj)?;

    let s = state.clone();
    let f = move |line: String| {
        let mut logs = s.logs.borrow_mut();
        if logs.len() < MAX_LOG_LINES {
            logs.push(line);
        }
    };
    obj.set("log", Function::new(ctx.clone(), f)?)?;
    Ok(())
}

/// `stateRange(from, to)`: `null` while the states are being fetched, else a JSON array of `{view, seqno, slot}`,
/// one per seqno, whose `slot` the KV reads then name.
fn install_state_range<'js>(ctx: &Ctx<'js>, state: &Shared, obj: &Object<'js>) -> rquickjs::Result<()> {
    let s = state.clone();
    let f = move |ctx: Ctx<'js>, from: f64, to: f64| -> rquickjs::Result<Option<String>> {
        let fail = |msg: String| throw(&ctx, &msg);
        if !(from >= 1.0 && to >= from && to < 2f64.powi(53)) || from.fract() != 0.0 || to.fract() != 0.0 {
            return Err(fail(format!("invalid seqno range {from}..{to}")));
        }
        let (from, to) = (from as u64, to as u64);
        if to - from + 1 > MAX_STATE_RANGE_SEQNOS {
            return Err(fail(format!(
                "a state range holds at most {MAX_STATE_RANGE_SEQNOS} seqnos; {from}..{to} holds {}",
                to - from + 1
            )));
        }
        let node = s.node.borrow();
        let node = node.as_ref().ok_or_else(|| throw(&ctx, "no node view"))?;
        let states = match node.state_range(from, to) {
            crate::StateRange::Ready(states) => states,
            crate::StateRange::Pending => return Ok(None),
            crate::StateRange::Failed(e) => return Err(fail(e)),
        };
        let mut range = s.range.borrow_mut();
        let mut out = Vec::with_capacity(states.len());
        for (seqno, store) in states {
            let view = node.view_of(seqno).unwrap_or(0);
            out.push(serde_json::json!({"view": view, "seqno": seqno, "slot": range.len()}));
            range.push(Tx::shared(store));
        }
        Ok(Some(serde_json::Value::Array(out).to_string()))
    };
    obj.set("stateRange", Function::new(ctx.clone(), f)?)?;
    Ok(())
}
