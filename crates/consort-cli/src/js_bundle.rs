//! Builds a JavaScript app bundle in CCF's shape from an app directory (`app.json` with the endpoints' metadata,
//! and the modules under `src/`), and the `set_js_app` proposal that deploys it.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Largest module file read into a bundle (bytes); governance limits the whole proposal too.
pub const MAX_MODULE_BYTES: u64 = 4 * 1024 * 1024;

/// Why a bundle could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not JSON: {source}", .path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: app.json needs an \"endpoints\" object", .0.display())]
    NoEndpoints(PathBuf),
    #[error("{}: larger than {MAX_MODULE_BYTES} bytes", .0.display())]
    TooLarge(PathBuf),
    #[error("{}: no .js modules under it", .0.display())]
    NoModules(PathBuf),
    #[error("endpoint {endpoint} names module {module}, which is not under src/")]
    UnknownModule { endpoint: String, module: String },
}

fn js_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), BundleError> {
    let read = |e| BundleError::Read {
        path: dir.to_path_buf(),
        source: e,
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(read)?
        .collect::<Result<_, _>>()
        .map_err(read)?;
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let path = e.path();
        if path.is_dir() {
            js_files(&path, out)?;
        } else if path.extension().is_some_and(|x| x == "js" || x == "mjs") {
            out.push(path);
        }
    }
    Ok(())
}

/// The bundle of the app in `dir`: `{"metadata": {"endpoints": ...}, "modules": [{"name", "module"}]}`, module
/// names relative to `dir/src` with `/` separators.
pub fn bundle_from_dir(dir: &Path) -> Result<Value, BundleError> {
    let app_json = dir.join("app.json");
    let text = std::fs::read_to_string(&app_json).map_err(|source| BundleError::Read {
        path: app_json.clone(),
        source,
    })?;
    let app: Value = serde_json::from_str(&text).map_err(|source| BundleError::Json {
        path: app_json.clone(),
        source,
    })?;
    let endpoints = app
        .get("endpoints")
        .filter(|e| e.is_object())
        .ok_or_else(|| BundleError::NoEndpoints(app_json.clone()))?
        .clone();
    let src = dir.join("src");
    let mut files = Vec::new();
    js_files(&src, &mut files)?;
    if files.is_empty() {
        return Err(BundleError::NoModules(src));
    }
    let mut modules = Vec::new();
    for path in files {
        let too_large = std::fs::metadata(&path).is_ok_and(|m| m.len() > MAX_MODULE_BYTES);
        if too_large {
            return Err(BundleError::TooLarge(path));
        }
        let module = std::fs::read_to_string(&path).map_err(|source| BundleError::Read {
            path: path.clone(),
            source,
        })?;
        let rel = path.strip_prefix(&src).unwrap_or(&path);
        let name = rel.iter().map(|p| p.to_string_lossy()).collect::<Vec<_>>().join("/");
        modules.push(json!({"name": name, "module": module}));
    }
    let names: Vec<&str> = modules.iter().filter_map(|m| m["name"].as_str()).collect();
    for (url, methods) in endpoints.as_object().into_iter().flatten() {
        for (method, props) in methods.as_object().into_iter().flatten() {
            let module = props["js_module"].as_str().unwrap_or_default().trim_start_matches('/');
            if !names.contains(&module) {
                return Err(BundleError::UnknownModule {
                    endpoint: format!("{} {url}", method.to_uppercase()),
                    module: module.to_string(),
                });
            }
        }
    }
    Ok(json!({"metadata": {"endpoints": endpoints}, "modules": modules}))
}

/// The proposal `{"actions": [{"name": "set_js_app", "args": {"bundle": ...}}]}`.
pub fn set_js_app_proposal(bundle: Value) -> Value {
    json!({"actions": [{"name": "set_js_app", "args": {"bundle": bundle, "disable_bytecode_cache": false}}]})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(dir: &Path, module: &str) {
        std::fs::create_dir_all(dir.join("src/lib")).unwrap();
        let endpoints = json!({"endpoints": {"/orders/{id}": {"get": {"js_module": module, "js_function": "get",
            "mode": "readonly", "authn_policies": ["user_cert"], "forwarding_required": "sometimes", "openapi": {}}}}});
        std::fs::write(dir.join("app.json"), endpoints.to_string()).unwrap();
        std::fs::write(dir.join("src/orders.js"), "export function get() { return {}; }").unwrap();
        std::fs::write(dir.join("src/lib/util.js"), "export const x = 1;").unwrap();
        std::fs::write(dir.join("src/README.md"), "not a module").unwrap();
    }

    #[test]
    fn a_bundle_holds_the_endpoints_and_every_module_under_src() {
        let dir = tempfile::tempdir().unwrap();
        app(dir.path(), "orders.js");
        let b = bundle_from_dir(dir.path()).unwrap();
        let names: Vec<_> = b["modules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].clone())
            .collect();
        assert_eq!(names, vec![json!("lib/util.js"), json!("orders.js")]);
        assert_eq!(b["metadata"]["endpoints"]["/orders/{id}"]["get"]["js_function"], "get");
        let p = set_js_app_proposal(b);
        assert_eq!(p["actions"][0]["name"], "set_js_app");
    }

    #[test]
    fn an_endpoint_naming_a_missing_module_or_no_app_json_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        app(dir.path(), "missing.js");
        assert!(matches!(
            bundle_from_dir(dir.path()),
            Err(BundleError::UnknownModule { .. })
        ));
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(bundle_from_dir(empty.path()), Err(BundleError::Read { .. })));
    }
}
