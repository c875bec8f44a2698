//! The application platform's governance under Consort's default constitution: `set_js_app`, `remove_js_app`,
//! `set_js_runtime_options`, `set_ca_cert_bundle` and `remove_ca_cert_bundle` write the shared tables in their
//! contract formats, and every refused bundle writes nothing.

mod common;

use common::*;
use consort_gov::{tables, GovError, DEFAULT_CONSTITUTION};
use serde_json::{json, Value};

fn key(path: &str, verb: &str) -> Vec<u8> {
    format!(r#"{{"uri_path":"{path}","verb":"{verb}"}}"#).into_bytes()
}

#[test]
fn set_js_app_writes_modules_and_endpoints_in_the_contract_format() {
    let c = Consortium::new(DEFAULT_CONSTITUTION);
    let mut post = endpoint("readwrite");
    post["authn_policies"] = json!(["jwt", {"all_of": ["user_cert", "user_cose_sign1"]}]);
    post["forwarding_required"] = json!("always");
    post.as_object_mut().unwrap().remove("openapi");
    let app = bundle(json!({
        "/records/{id}": {"get": endpoint("readonly"), "post": post},
        "/history": {"get": endpoint("historical")},
    }));
    c.must_pass("set_js_app", json!({"bundle": app}));

    assert_eq!(
        c.entries(tables::MODULES),
        vec![(
            b"/endpoints/all.js".to_vec(),
            b"export function get(r) { return {body: 1}; }".to_vec()
        )]
    );
    let rows = c.entries(tables::ENDPOINTS);
    assert_eq!(rows.len(), 3);
    let get = c.get_json(tables::ENDPOINTS, &key("/records/{id}", "GET")).unwrap();
    assert_eq!(
        get,
        json!({"js_module": "/endpoints/all.js", "js_function": "get", "mode": "readonly",
               "authn_policies": ["user_cert"], "forwarding_required": "sometimes", "openapi": {}, "openapi_hidden": false})
    );
    let post = c.get_json(tables::ENDPOINTS, &key("/records/{id}", "POST")).unwrap();
    assert_eq!(post["mode"], "readwrite");
    assert_eq!(post["forwarding_required"], "always");
    assert_eq!(
        post["authn_policies"][1],
        json!({"all_of": ["user_cert", "user_cose_sign1"]})
    );
    assert_eq!(post["openapi"], json!({}), "openapi defaults to an empty object");
    let history = c.get_json(tables::ENDPOINTS, &key("/history", "GET")).unwrap();
    assert_eq!(history["mode"], "historical");
    // Every key reads back through the public helper.
    for (k, _) in &rows {
        assert!(consort_gov::endpoint_from_key(k).is_some());
    }
    assert_eq!(
        c.get(tables::INTERPRETER_FLUSH, &tables::SINGLETON_KEY),
        Some(b"true".to_vec())
    );
}

#[test]
fn a_later_set_js_app_replaces_the_app_and_remove_js_app_clears_it() {
    let c = Consortium::new(DEFAULT_CONSTITUTION);
    c.must_pass(
        "set_js_app",
        json!({"bundle": bundle(json!({"/old": {"get": endpoint("readonly")}}))}),
    );
    let mut app = bundle(json!({"/new": {"put": endpoint("readwrite")}}));
    app["modules"][0]["name"] = json!("/endpoints/all.js"); // an explicit leading "/" is kept, not doubled
    c.must_pass("set_js_app", json!({"bundle": app, "disable_bytecode_cache": true}));
    let keys: Vec<Vec<u8>> = c.entries(tables::ENDPOINTS).into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, vec![key("/new", "PUT")]);
    assert_eq!(c.entries(tables::MODULES)[0].0, b"/endpoints/all.js".to_vec());

    c.must_pass("remove_js_app", Value::Null);
    assert!(c.entries(tables::ENDPOINTS).is_empty());
    assert!(c.entries(tables::MODULES).is_empty());
    assert!(c.entries(tables::INTERPRETER_FLUSH).is_empty());
}

fn refused(c: &Consortium, app: Value, expected: &str) {
    let err = c.must_fail("set_js_app", json!({ "bundle": app }));
    assert!(
        matches!(err, GovError::ProposalFailedToValidate(_)),
        "{expected}: {err:?}"
    );
    assert!(err.to_string().contains(expected), "expected {expected:?} in {err}");
}

#[test]
fn bad_bundles_are_refused_and_write_nothing() {
    let c = Consortium::new(DEFAULT_CONSTITUTION);
    // A deployed app that every refusal below must leave as it is.
    c.must_pass(
        "set_js_app",
        json!({"bundle": bundle(json!({"/kept": {"get": endpoint("readonly")}}))}),
    );
    let mut e = endpoint("readonly");
    e["js_module"] = json!("endpoints/missing.js");
    refused(&c, bundle(json!({"/x": {"get": e}})), "is not in the bundle");
    refused(
        &c,
        bundle(json!({"/x": {"get": endpoint("sometimes")}})),
        "mode must be one of",
    );
    let mut e = endpoint("readonly");
    e["authn_policies"] = json!(["password"]);
    refused(&c, bundle(json!({"/x": {"get": e}})), "not an authentication policy");
    let mut e = endpoint("readonly");
    e["authn_policies"] = json!([{"all_of": ["user_cert", "magic"]}]);
    refused(&c, bundle(json!({"/x": {"get": e}})), "not an authentication policy");
    let mut e = endpoint("readonly");
    e.as_object_mut().unwrap().remove("forwarding_required");
    refused(&c, bundle(json!({"/x": {"get": e}})), "forwarding_required is missing");
    refused(
        &c,
        bundle(json!({"/x": {"fetch": endpoint("readonly")}})),
        "not an HTTP method",
    );
    refused(
        &c,
        bundle(json!({"x": {"get": endpoint("readonly")}})),
        "must start with",
    );
    refused(
        &c,
        json!({"metadata": {"endpoints": {}}}),
        "bundle.modules must be an array",
    );
    let mut twice = bundle(json!({}));
    twice["modules"] = json!([{"name": "a.js", "module": ""}, {"name": "/a.js", "module": ""}]);
    refused(&c, twice, "appears twice");
    // Oversize: larger than the bundle limit, though within the proposal limit.
    let mut big = bundle(json!({"/x": {"get": endpoint("readonly")}}));
    big["modules"][0]["module"] = json!("x".repeat(consort_gov::limits::MAX_JS_APP_BUNDLE_BYTES));
    refused(&c, big, "more than");
    assert_eq!(c.entries(tables::ENDPOINTS).len(), 1);
}

#[test]
fn js_runtime_options_are_stored_at_the_singleton_key() {
    let c = Consortium::new(DEFAULT_CONSTITUTION);
    c.must_pass(
        "set_js_runtime_options",
        json!({"max_heap_bytes": 104857600, "max_stack_bytes": 1048576, "max_execution_time_ms": 1000,
               "return_exception_details": true}),
    );
    let options = c.get(tables::JS_RUNTIME_OPTIONS, &[0u8; 8]).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&options).unwrap(),
        json!({"max_heap_bytes": 104857600, "max_stack_bytes": 1048576, "max_execution_time_ms": 1000,
               "log_exception_details": false, "return_exception_details": true, "max_cached_interpreters": 10})
    );
    for bad in [
        json!({"max_heap_bytes": 1, "max_stack_bytes": 1}),
        json!({"max_heap_bytes": "big", "max_stack_bytes": 1, "max_execution_time_ms": 1}),
        json!({"max_heap_bytes": 1, "max_stack_bytes": 1, "max_execution_time_ms": 0}),
        json!({"max_heap_bytes": 1, "max_stack_bytes": 1, "max_execution_time_ms": 1, "max_threads": 2}),
    ] {
        c.must_fail("set_js_runtime_options", bad);
    }
}

#[test]
fn ca_cert_bundles_are_stored_as_pem_and_removed() {
    let c = Consortium::new(DEFAULT_CONSTITUTION);
    let pem = format!("{}{}", cert_pem("ca1"), cert_pem("ca2"));
    c.must_pass("set_ca_cert_bundle", json!({"name": "idp", "cert_bundle": pem}));
    assert_eq!(c.get_str(tables::CA_CERT_BUNDLES, "idp").unwrap(), pem);
    assert_eq!(
        consort_gov::ca_cert_bundle_pem(&c.get(tables::CA_CERT_BUNDLES, b"idp").unwrap()).unwrap(),
        pem
    );
    c.must_fail(
        "set_ca_cert_bundle",
        json!({"name": "bad", "cert_bundle": "not a certificate"}),
    );
    c.must_fail("set_ca_cert_bundle", json!({"name": "", "cert_bundle": pem}));
    c.must_pass("remove_ca_cert_bundle", json!({"name": "idp"}));
    assert!(c.entries(tables::CA_CERT_BUNDLES).is_empty());
}

#[test]
fn evm_config_is_stored_at_the_singleton_key_and_checked() {
    let c = Consortium::new(DEFAULT_CONSTITUTION);
    let config = json!({"chain_id": 1234, "base_fee": "1000000000", "visibility": "all",
                        "genesis": {"0x00000000000000000000000000000000000000aa": "0xde0b6b3a7640000"}});
    c.must_pass("set_evm_config", config.clone());
    let stored = c.get(tables::EVM_CONFIG, &[0u8; 8]).unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&stored).unwrap(), config);
    c.must_pass("set_evm_config", json!({}));
    // 2^256 - 1 wei is the most an account can hold; one more has as many digits and is refused.
    const U256_MAX_PLUS_ONE: &str = "115792089237316195423570985008687907853269984665640564039457584007913129639936";
    let max = "115792089237316195423570985008687907853269984665640564039457584007913129639935";
    c.must_pass(
        "set_evm_config",
        json!({"genesis": {"0x00000000000000000000000000000000000000aa": max}}),
    );
    for bad in [
        json!({"chain_id": 0}),
        json!({"chain_id": "1"}),
        json!({"base_fee": -1}),
        json!({"base_fee": "18446744073709551616"}),
        json!({"visibility": "some"}),
        json!({"genesis": {"0x12": 1}}),
        json!({"genesis": {"0x00000000000000000000000000000000000000aa": "ten"}}),
        json!({"genesis": {"0x00000000000000000000000000000000000000aa": U256_MAX_PLUS_ONE}}),
        json!({"gas_limit": 1}),
    ] {
        c.must_fail("set_evm_config", bad);
    }
}
