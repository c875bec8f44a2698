//! The node crate's layering (ARCHITECTURE.md, "Code map"): the engine knows nothing of the network or the
//! endpoints, the network knows nothing of the endpoints or the node that holds them, and the applications know
//! only the KV store. A `use crate::<layer>` or `crate::<layer>::` path in code outside tests breaks the build here.

use std::path::{Path, PathBuf};

fn node_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../consort-node/src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code lines of a file before its `#[cfg(test)]` module, without `//` comments.
fn code_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = vec![];
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        let code = line.split("//").next().unwrap_or("");
        out.push((i + 1, code.to_string()));
    }
    out
}

/// Every `crate::<module>` that the files of folder `layer` (or file `layer.rs`) name in code.
fn violations(layer: &str, forbidden: &[&str]) -> Vec<String> {
    let src = node_src();
    let mut files = vec![];
    let dir = src.join(layer);
    if dir.is_dir() {
        rust_files(&dir, &mut files);
    }
    let file = src.join(format!("{layer}.rs"));
    if file.is_file() {
        files.push(file);
    }
    assert!(!files.is_empty(), "no node layer named {layer}");
    let mut found = vec![];
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (n, code) in code_lines(&text) {
            for m in forbidden {
                if code.contains(&format!("crate::{m}::")) || code.contains(&format!("crate::{m};")) {
                    found.push(format!("{}:{n}: {layer} must not use crate::{m}", f.display()));
                }
            }
        }
    }
    found
}

#[test]
fn node_layers_point_downwards() {
    let mut all = vec![];
    all.extend(violations(
        "engine",
        &["net", "api", "node", "launch", "joiner", "apps"],
    ));
    all.extend(violations("net", &["api", "node", "launch", "joiner", "apps"]));
    all.extend(violations(
        "apps",
        &["engine", "net", "api", "node", "launch", "joiner"],
    ));
    all.extend(violations("api", &["launch", "joiner"]));
    assert!(all.is_empty(), "layering broken:\n{}", all.join("\n"));
}

#[test]
fn the_layer_check_sees_a_violation() {
    let text = "use crate::api::TXID_HEADER;\n// crate::api:: in a comment is fine\n#[cfg(test)]\nuse crate::api::x;";
    let hits: Vec<_> = code_lines(text)
        .into_iter()
        .filter(|(_, c)| c.contains("crate::api::"))
        .collect();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].0, 1);
}
