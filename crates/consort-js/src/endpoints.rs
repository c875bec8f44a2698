//! The endpoints of the deployed app bundle (CCF's `public:ccf.gov.endpoints`), matched by method and path,
//! with path templates (`/records/{id}`).

use consort_kv::ReadTx;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Endpoint definitions: key JSON `{"uri_path","verb"}`, value JSON properties.
pub const ENDPOINTS_TABLE: &str = "public:ccf.gov.endpoints";
/// Module sources: key module name (with a leading `/`), value source.
pub const MODULES_TABLE: &str = "public:ccf.gov.modules";

/// How an endpoint runs (CCF's `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointMode {
    /// A write transaction on the primary.
    Readwrite,
    /// A read on the node that receives the request.
    Readonly,
    /// A read of the state of a past transaction.
    Historical,
}

#[derive(Deserialize)]
struct Key {
    uri_path: String,
    verb: String,
}

#[derive(Deserialize)]
struct Properties {
    js_module: String,
    js_function: String,
    #[serde(default = "readwrite")]
    mode: EndpointMode,
    #[serde(default)]
    authn_policies: Vec<serde_json::Value>,
    #[serde(default)]
    openapi: serde_json::Value,
    #[serde(default)]
    openapi_hidden: bool,
}

fn readwrite() -> EndpointMode {
    EndpointMode::Readwrite
}

/// One segment of a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// One endpoint of the bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// Upper-case HTTP method.
    pub verb: String,
    /// Path relative to `/app`, template parameters in braces.
    pub uri_path: String,
    segments: Vec<Segment>,
    /// Module (as stored, with its leading `/`) and exported function that handle the request.
    pub js_module: String,
    /// The exported function that handles the request.
    pub js_function: String,
    /// How the endpoint runs.
    pub mode: EndpointMode,
    /// Policy names (CCF's); unknown names are kept so the node can refuse them.
    pub authn_policies: Vec<String>,
    /// The OpenAPI operation object listed in `/app/api`.
    pub openapi: serde_json::Value,
    /// Whether `/app/api` leaves the endpoint out.
    pub openapi_hidden: bool,
}

impl Endpoint {
    fn parse(key: &[u8], value: &[u8]) -> Option<Endpoint> {
        // Consort's constitution writes the key as JSON; CCF's own writes "VERB /path".
        let key: Key = serde_json::from_slice(key).ok().or_else(|| {
            let (verb, path) = std::str::from_utf8(key).ok()?.split_once(' ')?;
            Some(Key {
                uri_path: path.to_string(),
                verb: verb.to_string(),
            })
        })?;
        let props: Properties = serde_json::from_slice(value).ok()?;
        let uri_path = if key.uri_path.starts_with('/') {
            key.uri_path
        } else {
            format!("/{}", key.uri_path)
        };
        let segments = split(&uri_path)
            .map(|s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => Segment::Param(name.to_string()),
                None => Segment::Literal(s.to_string()),
            })
            .collect();
        let authn_policies = props
            .authn_policies
            .iter()
            .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_string))
            .collect();
        Some(Endpoint {
            verb: key.verb.to_ascii_uppercase(),
            uri_path,
            segments,
            js_module: props.js_module,
            js_function: props.js_function,
            mode: props.mode,
            authn_policies,
            openapi: props.openapi,
            openapi_hidden: props.openapi_hidden,
        })
    }

    /// The template parameters if `path` matches this endpoint's template.
    fn matches(&self, path: &str) -> Option<BTreeMap<String, String>> {
        let mut params = BTreeMap::new();
        let mut parts = split(path);
        for segment in &self.segments {
            let part = parts.next()?;
            match segment {
                Segment::Literal(l) if l == part => {}
                Segment::Literal(_) => return None,
                Segment::Param(name) => {
                    params.insert(name.clone(), part.to_string());
                }
            }
        }
        parts.next().is_none().then_some(params)
    }

    fn is_template(&self) -> bool {
        self.segments.iter().any(|s| matches!(s, Segment::Param(_)))
    }
}

fn split(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

/// All endpoints of the deployed bundle and its modules, as of one read of the tables.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    endpoints: Vec<Endpoint>,
    /// Module name -> source.
    pub modules: Arc<BTreeMap<String, String>>,
}

impl Endpoints {
    /// Reads the endpoint and module tables (rows that do not parse are skipped: governance validated them).
    pub fn read(tx: &ReadTx<'_>) -> Self {
        let mut endpoints = Vec::new();
        tx.foreach(ENDPOINTS_TABLE, |k, v| {
            endpoints.extend(Endpoint::parse(k, v));
            true
        });
        // Literal paths win over templates, as in CCF.
        endpoints.sort_by_key(Endpoint::is_template);
        let mut modules = BTreeMap::new();
        tx.foreach(MODULES_TABLE, |k, v| {
            if let (Ok(name), Ok(source)) = (std::str::from_utf8(k), std::str::from_utf8(v)) {
                modules.insert(name.to_string(), source.to_string());
            }
            true
        });
        Endpoints {
            endpoints,
            modules: Arc::new(modules),
        }
    }

    /// Whether no bundle is deployed.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// The endpoint for `method` `path` (relative to `/app`) and its template parameters.
    pub fn find(&self, method: &str, path: &str) -> Option<(&Endpoint, BTreeMap<String, String>)> {
        self.endpoints
            .iter()
            .filter(|e| e.verb.eq_ignore_ascii_case(method))
            .find_map(|e| e.matches(path).map(|params| (e, params)))
    }

    /// Every endpoint.
    pub fn iter(&self) -> impl Iterator<Item = &Endpoint> {
        self.endpoints.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use consort_kv::Store;

    fn store_with(rows: &[(&str, &str, serde_json::Value)]) -> Store {
        let store = Store::new();
        let mut tx = store.begin();
        for (verb, path, props) in rows {
            let key = serde_json::json!({"uri_path": path, "verb": verb}).to_string();
            tx.put(ENDPOINTS_TABLE, key.as_bytes(), props.to_string().as_bytes());
        }
        tx.put(MODULES_TABLE, b"/m.js", b"export function f() {}");
        store.commit(tx, |_, _| ()).expect("commit");
        store
    }

    #[test]
    fn literal_paths_win_over_templates_and_templates_bind_parameters() {
        let props = |f: &str| serde_json::json!({"js_module": "/m.js", "js_function": f, "mode": "readonly", "authn_policies": ["user_cert"]});
        let store = store_with(&[
            ("GET", "/records/{id}", props("one")),
            ("GET", "/records/all", props("all")),
            ("POST", "/records/{id}/tags/{tag}", props("tag")),
        ]);
        let eps = Endpoints::read(&store.read_only());
        let (e, params) = eps.find("GET", "/records/all").expect("literal");
        assert_eq!(e.js_function, "all");
        assert!(params.is_empty());
        let (e, params) = eps.find("get", "/records/42").expect("template");
        assert_eq!((e.js_function.as_str(), params["id"].as_str()), ("one", "42"));
        let (_, params) = eps.find("POST", "/records/7/tags/x").expect("two params");
        assert_eq!((params["id"].as_str(), params["tag"].as_str()), ("7", "x"));
        assert!(eps.find("GET", "/records").is_none());
        assert!(eps.find("GET", "/records/1/more").is_none());
        assert!(eps.find("DELETE", "/records/1").is_none());
        assert_eq!(
            eps.modules.get("/m.js").map(String::as_str),
            Some("export function f() {}")
        );
        // CCF's constitution's key form.
        let store = Store::new();
        let mut tx = store.begin();
        tx.put(ENDPOINTS_TABLE, b"PUT /jobs/{id}", props("put").to_string().as_bytes());
        store.commit(tx, |_, _| ()).expect("commit");
        let eps = Endpoints::read(&store.read_only());
        assert_eq!(eps.find("PUT", "/jobs/3").expect("CCF key").0.js_function, "put");
    }

    #[test]
    fn rows_that_do_not_parse_are_skipped() {
        let store = Store::new();
        let mut tx = store.begin();
        tx.put(ENDPOINTS_TABLE, b"notjson", b"{}");
        tx.put(ENDPOINTS_TABLE, br#"{"uri_path":"/a","verb":"GET"}"#, b"[1]");
        store.commit(tx, |_, _| ()).expect("commit");
        assert!(Endpoints::read(&store.read_only()).is_empty());
    }
}
