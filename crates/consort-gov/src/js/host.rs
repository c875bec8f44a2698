//! The native side of the `ccf` global: KV map views, converters, crypto helpers and recorded host actions.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use rquickjs::{Array, ArrayBuffer, Ctx, Exception, Function, Object, Value};
use serde::{Deserialize, Serialize};

use super::{Access, GovEnv, MapData};
use crate::limits::{MAX_JS_LOG_LINES, MAX_JS_LOG_LINE_BYTES};
use crate::tables::GOV_MAP_PREFIX;

/// Something a constitution's `apply` asked the node to do (`ccf.node.*`). Governance records them; the node
/// performs them in the same transaction before committing it (or drops the transaction if it cannot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum HostAction {
    /// `ccf.node.triggerLedgerRekey()`: start a new ledger secret and re-issue recovery shares.
    TriggerLedgerRekey,
    /// `ccf.node.triggerRecoverySharesRefresh()`: re-issue recovery shares (recovery members or threshold
    /// changed).
    TriggerRecoverySharesRefresh,
    /// `ccf.node.triggerSnapshot()`: write a snapshot at the next signature.
    TriggerSnapshot,
    /// `ccf.node.triggerLedgerChunk()`: end the current ledger chunk at the next signature.
    TriggerLedgerChunk,
    /// `ccf.node.transitionServiceToOpen(previous, next)`: open the service (see [`crate::open_service`]);
    /// after a recovery, also restore the private state.
    TransitionServiceToOpen {
        /// The previous service certificate (PEM), after a recovery.
        previous_service_identity: Option<String>,
        /// The new service certificate (PEM), after a recovery.
        next_service_identity: Option<String>,
    },
    /// `ccf.node.endorseNodeCertificate(nodeId, validFrom, validityPeriodDays)` (Consort extension): issue the
    /// node's certificate signed by the service key into `public:ccf.gov.nodes.endorsed_certificates`.
    EndorseNodeCertificate {
        /// The node whose certificate to endorse.
        node_id: String,
        /// Start of validity as the proposal gave it (CCF's time string), if it did.
        valid_from: Option<String>,
        /// Validity in days, or the service default.
        validity_period_days: Option<u64>,
    },
}

impl HostAction {
    fn parse(name: &str, args_json: &str) -> Result<Self, String> {
        let args: serde_json::Value = serde_json::from_str(args_json).map_err(|e| e.to_string())?;
        let tagged = match args {
            serde_json::Value::Object(mut m) => {
                m.insert("action".into(), serde_json::Value::String(name.into()));
                serde_json::Value::Object(m)
            }
            _ => serde_json::json!({ "action": name }),
        };
        serde_json::from_value(tagged).map_err(|e| format!("invalid host action {name}: {e}"))
    }
}

/// A certificate a JS call asked the node to issue (`ccf.network.generate*Certificate`). The call is answered by
/// re-running it once the node issued the certificate (see [`super::CertificateIssuer`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum CertRequest {
    /// `generateEndorsedCertificate(csr, validFrom, validityPeriodDays)`.
    Endorse {
        csr: String,
        valid_from: String,
        validity_period_days: u64,
    },
    /// `generateNetworkCertificate(validFrom, validityPeriodDays)`.
    Renew {
        valid_from: String,
        validity_period_days: u64,
    },
}

pub(super) struct Host {
    pub(super) access: Access,
    maps: HashMap<String, MapData>,
    /// The first map the call needed but was not loaded; the call is rerun once it is.
    pub(super) missing: Option<String>,
    /// Certificates issued so far for this call, by request.
    pub(super) certs: HashMap<CertRequest, Result<String, String>>,
    /// The first certificate the call asked for that is not issued yet; the call is rerun once it is.
    pub(super) missing_cert: Option<CertRequest>,
    pub(super) writes: Vec<(String, Vec<u8>, Option<Vec<u8>>)>,
    pub(super) actions: Vec<HostAction>,
    pub(super) logs: Vec<String>,
    rng: u64,
    latest_ledger_secret_seqno: u64,
}

impl Host {
    pub(super) fn new(
        access: Access,
        maps: HashMap<String, MapData>,
        certs: HashMap<CertRequest, Result<String, String>>,
        seed: u64,
        env: &GovEnv<'_>,
    ) -> Self {
        Host {
            access,
            maps,
            missing: None,
            certs,
            missing_cert: None,
            writes: Vec::new(),
            actions: Vec::new(),
            logs: Vec::new(),
            rng: seed,
            latest_ledger_secret_seqno: env.latest_ledger_secret_seqno,
        }
    }

    /// Why host calls are cut short now, if they are: the call waits for a map or a certificate and will rerun.
    fn pending(&self) -> Option<String> {
        if let Some(m) = &self.missing {
            return Some(format!("map {m} is being loaded"));
        }
        self.missing_cert
            .as_ref()
            .map(|_| "a certificate is being issued".to_owned())
    }

    /// Writes (or with `None` removes) one entry of a writable map from the host side.
    pub(super) fn put(&mut self, map: &str, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<(), String> {
        let data = self.writable(map)?;
        match &value {
            Some(v) => data.insert(key.clone(), v.clone()),
            None => data.remove(&key),
        };
        self.writes.push((map.to_owned(), key, value));
        Ok(())
    }

    /// Removes every entry of a writable map.
    pub(super) fn clear(&mut self, map: &str) -> Result<(), String> {
        let keys: Vec<Vec<u8>> = std::mem::take(self.writable(map)?).into_keys().collect();
        for key in keys {
            self.writes.push((map.to_owned(), key, None));
        }
        Ok(())
    }

    /// Fails unless the call is an `apply`.
    pub(super) fn expect_apply(&self, what: &str) -> Result<(), String> {
        if self.access == Access::Apply {
            Ok(())
        } else {
            Err(format!("{what} is only available in apply"))
        }
    }

    pub(super) fn map(&mut self, name: &str) -> Result<&mut MapData, String> {
        if !consort_kv::is_public_map(name) {
            return Err(format!(
                "map {name} is not accessible to governance: only public maps are"
            ));
        }
        if !self.maps.contains_key(name) {
            if self.missing.is_none() {
                self.missing = Some(name.to_owned());
            }
            return Err(format!("map {name} is being loaded"));
        }
        // invariant: presence checked just above.
        Ok(self.maps.get_mut(name).expect("checked above"))
    }

    pub(super) fn writable(&mut self, name: &str) -> Result<&mut MapData, String> {
        if self.access != Access::Apply {
            return Err(format!("map {name} is read-only here: only apply may write"));
        }
        if !name.starts_with(GOV_MAP_PREFIX) {
            return Err(format!(
                "map {name} is not writable by governance: only {GOV_MAP_PREFIX}* maps are"
            ));
        }
        self.map(name)
    }

    /// xorshift64*: deterministic `Math.random`, seeded from the call.
    fn next_random(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

pub(super) type Shared = Rc<RefCell<Host>>;

/// Binary string (one char per byte, as the prelude's `toBin` makes) to bytes.
pub(super) fn bin(s: &str) -> Result<Vec<u8>, String> {
    s.chars()
        .map(|c| u8::try_from(u32::from(c)).map_err(|_| "byte string holds a non-byte character".to_owned()))
        .collect()
}

pub(super) fn throw(ctx: &Ctx<'_>, msg: &str) -> rquickjs::Error {
    Exception::throw_type(ctx, msg)
}

/// Runs `f` on the host, unless an earlier host call asked for a map to be loaded: then the call is going to be
/// rerun, and cutting it short now saves the work.
pub(super) fn with_host<'js, T>(
    ctx: &Ctx<'js>,
    host: &Shared,
    f: impl FnOnce(&mut Host) -> Result<T, String>,
) -> rquickjs::Result<T> {
    let mut h = host.borrow_mut();
    if let Some(msg) = h.pending() {
        drop(h);
        return Err(throw(ctx, &msg));
    }
    let r = f(&mut h);
    drop(h);
    r.map_err(|e| throw(ctx, &e))
}

fn buffer<'js>(ctx: &Ctx<'js>, bytes: Vec<u8>) -> rquickjs::Result<Value<'js>> {
    Ok(ArrayBuffer::new(ctx.clone(), bytes)?.into_value())
}

fn is_valid_cert_bundle(pem: &str) -> bool {
    matches!(consort_crypto::ParsedCert::all_from_pem(pem), Ok(certs) if !certs.is_empty())
}

fn is_valid_cert_chain(chain: &str, trusted: &str) -> bool {
    let (Ok(chain), Ok(trusted)) = (
        consort_crypto::ParsedCert::all_from_pem(chain),
        consort_crypto::ParsedCert::all_from_pem(trusted),
    ) else {
        return false;
    };
    if chain.is_empty() || trusted.is_empty() {
        return false;
    }
    // Each certificate must be signed by the next; the last by one of the trusted certificates.
    for pair in chain.windows(2) {
        match pair[1].public_key() {
            Ok(k) if pair[0].verify_signed_by(&k).is_ok() => {}
            _ => return false,
        }
    }
    let last = &chain[chain.len() - 1];
    trusted
        .iter()
        .any(|t| t.public_key().is_ok_and(|k| last.verify_signed_by(&k).is_ok()))
}

pub(super) fn pub_pem_to_jwk(pem: &str, kid: &str) -> Result<String, String> {
    use base64::Engine;
    let key = consort_crypto::VerifyingKey::from_pem(pem).map_err(|e| e.to_string())?;
    let (crv, size) = match key.curve() {
        consort_crypto::Curve::P256 => ("P-256", 32),
        consort_crypto::Curve::P384 => ("P-384", 48),
    };
    // An EC SubjectPublicKeyInfo ends with the uncompressed point 0x04 ‖ x ‖ y.
    let spki = key.to_spki_der();
    let point = spki
        .get(spki.len().saturating_sub(2 * size + 1)..)
        .filter(|p| p.len() == 2 * size + 1 && p[0] == 4)
        .ok_or("unexpected public key encoding")?;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut jwk = serde_json::json!({
        "kty": "EC",
        "crv": crv,
        "x": b64.encode(&point[1..=size]),
        "y": b64.encode(&point[size + 1..]),
    });
    if !kid.is_empty() {
        jwk["kid"] = serde_json::Value::String(kid.into());
    }
    Ok(jwk.to_string())
}

/// Builds the native host object the prelude closes over.
pub(super) fn install<'js>(ctx: &Ctx<'js>, host: &Shared) -> rquickjs::Result<Object<'js>> {
    let obj = Object::new(ctx.clone())?;
    install_kv(ctx, host, &obj)?;
    install_codecs(ctx, &obj)?;
    install_node(ctx, host, &obj)?;
    super::effects::install(ctx, host, &obj)?;
    Ok(obj)
}

/// The map accessors: `kvGet`, `kvHas`, `kvSet`, `kvDelete`, `kvClear`, `kvSize`, `kvEntries`.
fn install_kv<'js>(ctx: &Ctx<'js>, host: &Shared, obj: &Object<'js>) -> rquickjs::Result<()> {
    let h = host.clone();
    let f = Function::new(
        ctx.clone(),
        move |ctx: Ctx<'js>, map: String, key: String| -> rquickjs::Result<Value<'js>> {
            let value = with_host(&ctx, &h, |host| {
                let key = bin(&key)?;
                Ok(host.map(&map)?.get(&key).cloned())
            })?;
            match value {
                Some(v) => buffer(&ctx, v),
                None => Ok(Value::new_undefined(ctx.clone())),
            }
        },
    )?;
    obj.set("kvGet", f)?;

    let h = host.clone();
    let f = Function::new(
        ctx.clone(),
        move |ctx: Ctx<'js>, map: String, key: String| -> rquickjs::Result<bool> {
            with_host(&ctx, &h, |host| {
                let key = bin(&key)?;
                Ok(host.map(&map)?.contains_key(&key))
            })
        },
    )?;
    obj.set("kvHas", f)?;

    let h = host.clone();
    let f = Function::new(
        ctx.clone(),
        move |ctx: Ctx<'js>, map: String, key: String, value: String| -> rquickjs::Result<()> {
            with_host(&ctx, &h, |host| {
                let (key, value) = (bin(&key)?, bin(&value)?);
                host.writable(&map)?.insert(key.clone(), value.clone());
                host.writes.push((map, key, Some(value)));
                Ok(())
            })
        },
    )?;
    obj.set("kvSet", f)?;

    let h = host.clone();
    let f = Function::new(
        ctx.clone(),
        move |ctx: Ctx<'js>, map: String, key: String| -> rquickjs::Result<bool> {
            with_host(&ctx, &h, |host| {
                let key = bin(&key)?;
                let existed = host.writable(&map)?.remove(&key).is_some();
                host.writes.push((map, key, None));
                Ok(existed)
            })
        },
    )?;
    obj.set("kvDelete", f)?;

    let h = host.clone();
    let f = Function::new(ctx.clone(), move |ctx: Ctx<'js>, map: String| -> rquickjs::Result<()> {
        with_host(&ctx, &h, |host| host.clear(&map))
    })?;
    obj.set("kvClear", f)?;

    let h = host.clone();
    let f = Function::new(
        ctx.clone(),
        move |ctx: Ctx<'js>, map: String| -> rquickjs::Result<f64> {
            with_host(&ctx, &h, |host| Ok(host.map(&map)?.len() as f64))
        },
    )?;
    obj.set("kvSize", f)?;

    let h = host.clone();
    let f = Function::new(
        ctx.clone(),
        move |ctx: Ctx<'js>, map: String| -> rquickjs::Result<Array<'js>> {
            let entries: Vec<(Vec<u8>, Vec<u8>)> = with_host(&ctx, &h, |host| {
                Ok(host.map(&map)?.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            })?;
            let out = Array::new(ctx.clone())?;
            for (i, (k, v)) in entries.into_iter().enumerate() {
                let pair = Array::new(ctx.clone())?;
                pair.set(0, buffer(&ctx, k)?)?;
                pair.set(1, buffer(&ctx, v)?)?;
                out.set(i, pair)?;
            }
            Ok(out)
        },
    )?;
    obj.set("kvEntries", f)?;
    Ok(())
}

/// The stateless helpers: buffer/string conversion, digests, certificate checks, ids and JWKs.
fn install_codecs<'js>(ctx: &Ctx<'js>, obj: &Object<'js>) -> rquickjs::Result<()> {
    let f = Function::new(
        ctx.clone(),
        move |ctx: Ctx<'js>, s: String| -> rquickjs::Result<Value<'js>> { buffer(&ctx, s.into_bytes()) },
    )?;
    obj.set("strToBuf", f)?;

    let f = Function::new(
        ctx.clone(),
        move |ctx: Ctx<'js>, b: String| -> rquickjs::Result<String> {
            // Bytes that are not UTF-8 (a digest, say) become U+FFFD, as in CCF, rather than failing the call.
            let bytes = bin(&b).map_err(|e| throw(&ctx, &e))?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        },
    )?;
    obj.set("bufToStr", f)?;

    let f = Function::new(
        ctx.clone(),
        move |ctx: Ctx<'js>, alg: String, b: String| -> rquickjs::Result<Value<'js>> {
            let bytes = bin(&b).map_err(|e| throw(&ctx, &e))?;
            match alg.as_str() {
                "SHA-256" => buffer(&ctx, consort_crypto::sha256(&bytes).to_vec()),
                "SHA-384" => buffer(&ctx, consort_crypto::sha384(&bytes).to_vec()),
                other => Err(throw(&ctx, &format!("unsupported digest algorithm {other}"))),
            }
        },
    )?;
    obj.set("digest", f)?;

    let f = Function::new(ctx.clone(), move |pem: String| -> bool { is_valid_cert_bundle(&pem) })?;
    obj.set("isValidX509CertBundle", f)?;

    let f = Function::new(ctx.clone(), move |chain: String, trusted: String| -> bool {
        is_valid_cert_chain(&chain, &trusted)
    })?;
    obj.set("isValidX509CertChain", f)?;

    let f = Function::new(
        ctx.clone(),
        move |ctx: Ctx<'js>, pem: String| -> rquickjs::Result<String> {
            consort_crypto::ParsedCert::from_pem(&pem)
                .map(|c| c.cert_id())
                .map_err(|e| throw(&ctx, &format!("invalid certificate: {e}")))
        },
    )?;
    obj.set("pemToId", f)?;

    let f = Function::new(
        ctx.clone(),
        move |ctx: Ctx<'js>, pem: String, kid: String| -> rquickjs::Result<String> {
            pub_pem_to_jwk(&pem, &kid).map_err(|e| throw(&ctx, &format!("invalid public key: {e}")))
        },
    )?;
    obj.set("pubPemToJwk", f)?;
    Ok(())
}

/// The node-facing calls: recorded `ccf.node` actions, the ledger secret seqno, `console.log` and the seeded
/// `Math.random`.
fn install_node<'js>(ctx: &Ctx<'js>, host: &Shared, obj: &Object<'js>) -> rquickjs::Result<()> {
    let h = host.clone();
    let f = Function::new(
        ctx.clone(),
        move |ctx: Ctx<'js>, name: String, args: String| -> rquickjs::Result<()> {
            with_host(&ctx, &h, |host| {
                if host.access != Access::Apply {
                    return Err(format!(
                        "ccf.node actions are only available in apply, not here ({name})"
                    ));
                }
                let action = HostAction::parse(&name, &args)?;
                host.actions.push(action);
                Ok(())
            })
        },
    )?;
    obj.set("action", f)?;

    let h = host.clone();
    let f = Function::new(ctx.clone(), move |ctx: Ctx<'js>| -> rquickjs::Result<f64> {
        with_host(&ctx, &h, |host| Ok(host.latest_ledger_secret_seqno as f64))
    })?;
    obj.set("latestLedgerSecretSeqno", f)?;

    let h = host.clone();
    let f = Function::new(ctx.clone(), move |line: String| {
        let mut host = h.borrow_mut();
        if host.logs.len() < MAX_JS_LOG_LINES {
            let mut end = line.len().min(MAX_JS_LOG_LINE_BYTES);
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            host.logs.push(line[..end].to_owned());
        }
    })?;
    obj.set("log", f)?;

    let h = host.clone();
    let f = Function::new(ctx.clone(), move || -> f64 { h.borrow_mut().next_random() })?;
    obj.set("random", f)?;
    Ok(())
}
