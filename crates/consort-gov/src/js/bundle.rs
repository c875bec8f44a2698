//! JavaScript application bundles (`set_js_app`): checking a bundle's shape and turning it into the rows of
//! `public:ccf.gov.modules` and `public:ccf.gov.endpoints` in the formats the node reads.
//!
//! A bundle is `{"metadata": {"endpoints": {"/path": {"get": {...}}}}, "modules": [{"name", "module"}]}`, as CCF's
//! tooling builds it. Module names are stored with a leading "/" (CCF's form); an endpoint is keyed by the JSON
//! `{"uri_path": "/path", "verb": "GET"}` and its value is the endpoint's properties with `js_module` in the stored
//! form and `openapi`/`openapi_hidden` filled in.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use crate::limits::{MAX_JS_APP_BUNDLE_BYTES, MAX_JS_APP_ENDPOINTS, MAX_JS_APP_MODULES};

/// The authentication policies an endpoint may name.
pub const AUTHN_POLICIES: [&str; 7] = [
    "user_cert",
    "member_cert",
    "any_cert",
    "jwt",
    "user_cose_sign1",
    "member_cose_sign1",
    "no_auth",
];
const MODES: [&str; 3] = ["readwrite", "readonly", "historical"];
const FORWARDING: [&str; 3] = ["sometimes", "always", "never"];
const REDIRECTION: [&str; 3] = ["none", "to_primary", "to_backup"];
const VERBS: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];

/// The rows one bundle becomes.
#[derive(Debug, Default)]
pub(crate) struct AppRows {
    /// (stored module name, source).
    pub modules: Vec<(String, String)>,
    /// (endpoint key JSON, endpoint properties JSON).
    pub endpoints: Vec<(String, String)>,
}

/// A module name as stored: with one leading "/".
pub fn stored_module_name(name: &str) -> String {
    if name.starts_with('/') {
        name.to_owned()
    } else {
        format!("/{name}")
    }
}

/// The key of an endpoint in [`ENDPOINTS`]: JSON `{"uri_path": path, "verb": VERB}`.
pub fn endpoint_key(uri_path: &str, verb: &str) -> String {
    json!({"uri_path": uri_path, "verb": verb.to_ascii_uppercase()}).to_string()
}

fn object<'a>(value: &'a Value, field: &str) -> Result<&'a Map<String, Value>, String> {
    value
        .as_object()
        .ok_or_else(|| format!("{field} must be an object, not {}", kind(value)))
}

fn string<'a>(value: Option<&'a Value>, field: &str) -> Result<&'a str, String> {
    match value {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!("{field} must be a string, not {}", kind(other))),
        None => Err(format!("{field} is missing")),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn one_of(value: Option<&Value>, allowed: &[&str], field: &str) -> Result<(), String> {
    let s = string(value, field)?;
    if allowed.contains(&s) {
        Ok(())
    } else {
        Err(format!("{field} must be one of {}, not {s:?}", allowed.join(", ")))
    }
}

/// Checks `bundle` (the `bundle` argument of `set_js_app`, `bundle_bytes` long as JSON) and returns its rows.
pub(crate) fn check_bundle(bundle: &Value, bundle_bytes: usize) -> Result<AppRows, String> {
    if bundle_bytes > MAX_JS_APP_BUNDLE_BYTES {
        return Err(format!(
            "bundle is {bundle_bytes} bytes, more than the {MAX_JS_APP_BUNDLE_BYTES} a bundle may hold"
        ));
    }
    let bundle = object(bundle, "bundle")?;
    let modules = check_modules(bundle.get("modules"))?;
    let names: BTreeSet<String> = modules.iter().map(|(n, _)| n.clone()).collect();
    let metadata = object(bundle.get("metadata").unwrap_or(&Value::Null), "bundle.metadata")?;
    let endpoints = object(
        metadata.get("endpoints").unwrap_or(&Value::Null),
        "bundle.metadata.endpoints",
    )?;
    let mut rows = AppRows {
        modules,
        endpoints: Vec::new(),
    };
    for (url, methods) in endpoints {
        let field = format!("bundle.metadata.endpoints[{url:?}]");
        if !url.starts_with('/') {
            return Err(format!("{field}: the path must start with \"/\""));
        }
        for (method, info) in object(methods, &field)? {
            let field = format!("{field}[{method:?}]");
            let verb = method.to_ascii_uppercase();
            if !VERBS.contains(&verb.as_str()) {
                return Err(format!(
                    "{field}: {method:?} is not an HTTP method ({})",
                    VERBS.join(", ")
                ));
            }
            let value = check_endpoint(info, &field, &names)?;
            rows.endpoints.push((endpoint_key(url, &verb), value.to_string()));
            if rows.endpoints.len() > MAX_JS_APP_ENDPOINTS {
                return Err(format!("bundle declares more than {MAX_JS_APP_ENDPOINTS} endpoints"));
            }
        }
    }
    Ok(rows)
}

fn check_modules(modules: Option<&Value>) -> Result<Vec<(String, String)>, String> {
    let Some(Value::Array(list)) = modules else {
        return Err("bundle.modules must be an array".into());
    };
    if list.len() > MAX_JS_APP_MODULES {
        return Err(format!(
            "bundle holds {} modules, more than {MAX_JS_APP_MODULES}",
            list.len()
        ));
    }
    let mut out = Vec::with_capacity(list.len());
    let mut seen = BTreeSet::new();
    for (i, module) in list.iter().enumerate() {
        let field = format!("bundle.modules[{i}]");
        let m = object(module, &field)?;
        let name = string(m.get("name"), &format!("{field}.name"))?;
        let source = string(m.get("module"), &format!("{field}.module"))?;
        if name.trim_start_matches('/').is_empty() {
            return Err(format!("{field}.name must not be empty"));
        }
        let stored = stored_module_name(name);
        if !seen.insert(stored.clone()) {
            return Err(format!("{field}: module {stored:?} appears twice"));
        }
        out.push((stored, source.to_owned()));
    }
    Ok(out)
}

fn check_policies(policies: Option<&Value>, field: &str) -> Result<(), String> {
    let Some(Value::Array(list)) = policies else {
        return Err(format!("{field}.authn_policies must be an array of policy names"));
    };
    let known = |name: &Value, at: &str| -> Result<(), String> {
        let name = string(Some(name), at)?;
        if AUTHN_POLICIES.contains(&name) {
            Ok(())
        } else {
            Err(format!(
                "{at}: {name:?} is not an authentication policy ({})",
                AUTHN_POLICIES.join(", ")
            ))
        }
    };
    for (i, policy) in list.iter().enumerate() {
        let at = format!("{field}.authn_policies[{i}]");
        match policy {
            Value::Object(o) => {
                let Some(Value::Array(all)) = o.get("all_of") else {
                    return Err(format!("{at} must be a policy name or {{\"all_of\": [names]}}"));
                };
                for (j, sub) in all.iter().enumerate() {
                    known(sub, &format!("{at}.all_of[{j}]"))?;
                }
            }
            other => known(other, &at)?,
        }
    }
    Ok(())
}

fn check_endpoint(info: &Value, field: &str, modules: &BTreeSet<String>) -> Result<Value, String> {
    let props = object(info, field)?;
    let module = string(props.get("js_module"), &format!("{field}.js_module"))?;
    let stored = stored_module_name(module);
    if !modules.contains(&stored) {
        return Err(format!("{field}.js_module: module {module:?} is not in the bundle"));
    }
    let function = string(props.get("js_function"), &format!("{field}.js_function"))?;
    if function.is_empty() {
        return Err(format!("{field}.js_function must not be empty"));
    }
    one_of(props.get("mode"), &MODES, &format!("{field}.mode"))?;
    one_of(
        props.get("forwarding_required"),
        &FORWARDING,
        &format!("{field}.forwarding_required"),
    )?;
    if let Some(r) = props.get("redirection_strategy") {
        one_of(Some(r), &REDIRECTION, &format!("{field}.redirection_strategy"))?;
    }
    check_policies(props.get("authn_policies"), field)?;
    match props.get("openapi") {
        None | Some(Value::Null) | Some(Value::Object(_)) => {}
        Some(other) => return Err(format!("{field}.openapi must be an object, not {}", kind(other))),
    }
    match props.get("openapi_hidden") {
        None | Some(Value::Null) | Some(Value::Bool(_)) => {}
        Some(other) => return Err(format!("{field}.openapi_hidden must be a boolean, not {}", kind(other))),
    }
    let mut out = props.clone();
    out.insert("js_module".into(), Value::String(stored));
    if !matches!(out.get("openapi"), Some(Value::Object(_))) {
        out.insert("openapi".into(), json!({}));
    }
    if !matches!(out.get("openapi_hidden"), Some(Value::Bool(_))) {
        out.insert("openapi_hidden".into(), Value::Bool(false));
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(endpoint: Value) -> Value {
        json!({
            "metadata": {"endpoints": {"/records/{id}": {"get": endpoint}}},
            "modules": [{"name": "endpoints/all.js", "module": "export function get() {}"}],
        })
    }

    fn good() -> Value {
        json!({"js_module": "endpoints/all.js", "js_function": "get", "mode": "readonly",
               "authn_policies": ["user_cert", {"all_of": ["jwt", "no_auth"]}], "forwarding_required": "sometimes"})
    }

    #[test]
    fn a_good_bundle_becomes_rows() {
        let rows = check_bundle(&bundle(good()), 10).unwrap();
        assert_eq!(
            rows.modules,
            vec![("/endpoints/all.js".to_owned(), "export function get() {}".to_owned())]
        );
        assert_eq!(rows.endpoints[0].0, r#"{"uri_path":"/records/{id}","verb":"GET"}"#);
        let v: Value = serde_json::from_str(&rows.endpoints[0].1).unwrap();
        assert_eq!(v["js_module"], "/endpoints/all.js");
        assert_eq!(v["openapi"], json!({}));
        assert_eq!(v["openapi_hidden"], false);
    }

    #[test]
    fn bad_endpoints_are_refused_by_name() {
        let cases = [
            ("js_module", json!("missing.js"), "not in the bundle"),
            ("mode", json!("sometimes"), "mode must be one of"),
            ("authn_policies", json!(["password"]), "not an authentication policy"),
            ("forwarding_required", json!(true), "must be a string"),
            ("openapi", json!([]), "openapi must be an object"),
        ];
        for (field, value, expected) in cases {
            let mut e = good();
            e[field] = value;
            let err = check_bundle(&bundle(e), 10).unwrap_err();
            assert!(err.contains(expected), "{field}: {err}");
        }
        let err = check_bundle(&bundle(good()), MAX_JS_APP_BUNDLE_BYTES + 1).unwrap_err();
        assert!(err.contains("more than"), "{err}");
    }
}
