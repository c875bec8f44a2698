//! Governance effects beyond plain KV access, as CCF's constitution calls them: deploying and removing a JS
//! application (`ccf.node.setJsApp`, `ccf.node.removeJsApp`, `ccf.refreshAppBytecodeCache`), JWT signing keys
//! (`ccf.setJwtPublicSigningKeys`, `ccf.removeJwtPublicSigningKeys`) and certificates signed with the service key
//! (`ccf.network.generateEndorsedCertificate`, `ccf.network.generateNetworkCertificate`). Each checks its input
//! completely before it writes anything, so a refused bundle or key set leaves the transaction untouched.

use rquickjs::{Ctx, Function, Object};
use serde_json::Value;

use super::bundle::check_bundle;
use super::host::{throw, with_host, CertRequest, Host, Shared};
use super::jwt::{check_jwks, remove_issuer_keys, set_issuer_keys};
use crate::tables::{
    ENDPOINTS, INTERPRETER_FLUSH, JWT_PUBLIC_SIGNING_KEYS_METADATA, MODULES, MODULES_QUICKJS_BYTECODE,
    MODULES_QUICKJS_VERSION, SINGLETON_KEY,
};

/// What `refreshAppBytecodeCache` records as the cache's QuickJS version: Consort compiles no bytecode, so the
/// cache stays empty and this names why.
const BYTECODE_CACHE_VERSION: &str = "consort: no bytecode cache";

fn parse(json: &str, what: &str) -> Result<Value, String> {
    serde_json::from_str(json).map_err(|e| format!("{what} is not JSON: {e}"))
}

fn set_js_app(host: &mut Host, bundle_json: &str, disable_bytecode_cache: bool) -> Result<(), String> {
    host.expect_apply("ccf.node.setJsApp")?;
    let rows = check_bundle(&parse(bundle_json, "bundle")?, bundle_json.len())?;
    host.clear(MODULES)?;
    host.clear(ENDPOINTS)?;
    for (name, source) in rows.modules {
        host.put(MODULES, name.into_bytes(), Some(source.into_bytes()))?;
    }
    if disable_bytecode_cache {
        host.clear(MODULES_QUICKJS_BYTECODE)?;
        host.clear(MODULES_QUICKJS_VERSION)?;
    } else {
        refresh_bytecode_cache(host)?;
    }
    host.put(INTERPRETER_FLUSH, SINGLETON_KEY.to_vec(), Some(b"true".to_vec()))?;
    for (key, value) in rows.endpoints {
        host.put(ENDPOINTS, key.into_bytes(), Some(value.into_bytes()))?;
    }
    Ok(())
}

fn remove_js_app(host: &mut Host) -> Result<(), String> {
    host.expect_apply("ccf.node.removeJsApp")?;
    for map in [
        MODULES,
        MODULES_QUICKJS_BYTECODE,
        MODULES_QUICKJS_VERSION,
        INTERPRETER_FLUSH,
        ENDPOINTS,
    ] {
        host.clear(map)?;
    }
    Ok(())
}

fn refresh_bytecode_cache(host: &mut Host) -> Result<(), String> {
    host.expect_apply("ccf.refreshAppBytecodeCache")?;
    let version = serde_json::to_vec(BYTECODE_CACHE_VERSION).map_err(|e| e.to_string())?;
    host.put(MODULES_QUICKJS_VERSION, SINGLETON_KEY.to_vec(), Some(version))?;
    host.clear(MODULES_QUICKJS_BYTECODE)
}

fn set_jwt_keys(host: &mut Host, issuer: &str, metadata_json: &str, jwks_json: &str) -> Result<(), String> {
    host.expect_apply("ccf.setJwtPublicSigningKeys")?;
    let metadata = parse(metadata_json, "metadata")?;
    if !metadata.is_object() {
        return Err("metadata must be an object".into());
    }
    let keys = check_jwks(issuer, &parse(jwks_json, "jwks")?)?;
    let writes = set_issuer_keys(host.map(JWT_PUBLIC_SIGNING_KEYS_METADATA)?, issuer, &keys);
    for (kid, value) in writes {
        host.put(JWT_PUBLIC_SIGNING_KEYS_METADATA, kid, value)?;
    }
    Ok(())
}

fn remove_jwt_keys(host: &mut Host, issuer: &str) -> Result<(), String> {
    host.expect_apply("ccf.removeJwtPublicSigningKeys")?;
    let writes = remove_issuer_keys(host.map(JWT_PUBLIC_SIGNING_KEYS_METADATA)?, issuer);
    for (kid, value) in writes {
        host.put(JWT_PUBLIC_SIGNING_KEYS_METADATA, kid, value)?;
    }
    Ok(())
}

/// A certificate the node issues: answered from this call's issued certificates, or recorded as missing (the
/// call then fails now and is run again once the node has issued it).
fn certificate(host: &mut Host, request: CertRequest) -> Result<String, String> {
    host.expect_apply("ccf.network certificate generation")?;
    match host.certs.get(&request) {
        Some(answer) => answer.clone(),
        None => {
            host.missing_cert = Some(request);
            Err("a certificate is being issued".into())
        }
    }
}

fn days(value: f64) -> Result<u64, String> {
    if value.is_finite() && value >= 0.0 && value.fract() == 0.0 && value <= u32::MAX as f64 {
        Ok(value as u64)
    } else {
        Err(format!("validity period must be a whole number of days, not {value}"))
    }
}

/// Adds the effect functions to the native host object the prelude closes over.
pub(super) fn install<'js>(ctx: &Ctx<'js>, host: &Shared, obj: &Object<'js>) -> rquickjs::Result<()> {
    let f = Function::new(
        ctx.clone(),
        move |ctx: Ctx<'js>, bundle: String| -> rquickjs::Result<()> {
            let value = parse(&bundle, "bundle").map_err(|e| throw(&ctx, &e))?;
            check_bundle(&value, bundle.len())
                .map(|_| ())
                .map_err(|e| throw(&ctx, &e))
        },
    )?;
    obj.set("checkJsApp", f)?;

    let h = host.clone();
    let f = Function::new(
        ctx.clone(),
        move |ctx: Ctx<'js>, bundle: String, disable: bool| -> rquickjs::Result<()> {
            with_host(&ctx, &h, |host| set_js_app(host, &bundle, disable))
        },
    )?;
    obj.set("setJsApp", f)?;

    let h = host.clone();
    let f = Function::new(ctx.clone(), move |ctx: Ctx<'js>| -> rquickjs::Result<()> {
        with_host(&ctx, &h, remove_js_app)
    })?;
    obj.set("removeJsApp", f)?;

    let h = host.clone();
    let f = Function::new(ctx.clone(), move |ctx: Ctx<'js>| -> rquickjs::Result<()> {
        with_host(&ctx, &h, refresh_bytecode_cache)
    })?;
    obj.set("refreshAppBytecodeCache", f)?;

    let f = Function::new(
        ctx.clone(),
        move |ctx: Ctx<'js>, issuer: String, jwks: String| -> rquickjs::Result<()> {
            let value = parse(&jwks, "jwks").map_err(|e| throw(&ctx, &e))?;
            check_jwks(&issuer, &value).map(|_| ()).map_err(|e| throw(&ctx, &e))
        },
    )?;
    obj.set("checkJwks", f)?;

    let h = host.clone();
    let f = Function::new(
        ctx.clone(),
        move |ctx: Ctx<'js>, issuer: String, metadata: String, jwks: String| -> rquickjs::Result<()> {
            with_host(&ctx, &h, |host| set_jwt_keys(host, &issuer, &metadata, &jwks))
        },
    )?;
    obj.set("setJwtPublicSigningKeys", f)?;

    let h = host.clone();
    let f = Function::new(
        ctx.clone(),
        move |ctx: Ctx<'js>, issuer: String| -> rquickjs::Result<()> {
            with_host(&ctx, &h, |host| remove_jwt_keys(host, &issuer))
        },
    )?;
    obj.set("removeJwtPublicSigningKeys", f)?;

    let h = host.clone();
    let f = Function::new(
        ctx.clone(),
        move |ctx: Ctx<'js>, csr: String, valid_from: String, period: f64| -> rquickjs::Result<String> {
            with_host(&ctx, &h, |host| {
                let validity_period_days = days(period)?;
                let request = CertRequest::Endorse {
                    csr,
                    valid_from,
                    validity_period_days,
                };
                certificate(host, request)
            })
        },
    )?;
    obj.set("generateEndorsedCertificate", f)?;

    let h = host.clone();
    let f = Function::new(
        ctx.clone(),
        move |ctx: Ctx<'js>, valid_from: String, period: f64| -> rquickjs::Result<String> {
            with_host(&ctx, &h, |host| {
                let validity_period_days = days(period)?;
                certificate(
                    host,
                    CertRequest::Renew {
                        valid_from,
                        validity_period_days,
                    },
                )
            })
        },
    )?;
    obj.set("generateNetworkCertificate", f)?;
    Ok(())
}
