//! Checks the architecture invariants of ARCHITECTURE.md: dependency direction between crates, sans-IO cores,
//! no unsafe code, and a `//!` line at the top of every module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Which workspace crates each crate may depend on (normal dependencies).
fn allowed() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    let mut m = BTreeMap::new();
    m.insert("consort-crypto", BTreeSet::new());
    m.insert("consort-receipt", ["consort-crypto"].into());
    m.insert("consort-kv", ["consort-crypto"].into());
    m.insert("consort-ledger", ["consort-crypto", "consort-kv"].into());
    m.insert("consort-gov", ["consort-crypto", "consort-kv"].into());
    m.insert("consort-attest", ["consort-crypto"].into());
    m.insert(
        "consort-consensus",
        ["consort-crypto", "consort-kv", "consort-ledger"].into(),
    );
    let node = [
        "consort-crypto",
        "consort-kv",
        "consort-ledger",
        "consort-receipt",
        "consort-gov",
        "consort-consensus",
        "consort-attest",
    ];
    m.insert("consort-node", node.into());
    let cli = [
        "consort-crypto",
        "consort-kv",
        "consort-ledger",
        "consort-receipt",
        "consort-gov",
        "consort-node",
        "consort-attest",
    ];
    m.insert("consort-cli", cli.into());
    m
}

fn manifest_deps(manifest: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let doc: toml::Value = toml::from_str(&text).unwrap();
    doc.get("dependencies")
        .and_then(|d| d.as_table())
        .map(|t| t.keys().filter(|k| k.starts_with("consort-")).cloned().collect())
        .unwrap_or_default()
}

#[test]
fn crate_dependencies_point_only_downwards() {
    let root = workspace_root();
    let allowed = allowed();
    let mut seen = 0;
    for entry in std::fs::read_dir(root.join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let Some(ok) = allowed.get(name.as_str()) else {
            panic!("crate {name} is not in the dependency table of this test and ARCHITECTURE.md");
        };
        for dep in manifest_deps(&dir.join("Cargo.toml")) {
            assert!(ok.contains(dep.as_str()), "{name} must not depend on {dep}");
        }
        seen += 1;
    }
    assert_eq!(seen, allowed.len());
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

#[test]
fn cores_do_no_io_and_touch_no_clock() {
    let root = workspace_root();
    let forbidden = [
        "std::fs",
        "std::net",
        "tokio",
        "SystemTime",
        "Instant::now",
        "std::thread::spawn",
        "hyper",
        "rustls",
    ];
    for core in [
        "consort-kv",
        "consort-ledger",
        "consort-receipt",
        "consort-gov",
        "consort-consensus",
    ] {
        let mut files = vec![];
        rust_files(&root.join("crates").join(core).join("src"), &mut files);
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            // Test modules may use the file system (temp dirs for interop checks); production code may not.
            let production = text.split("#[cfg(test)]").next().unwrap_or("");
            for word in forbidden {
                assert!(
                    !production.contains(word),
                    "{} uses {word}: cores are sans-IO",
                    f.display()
                );
            }
        }
    }
}

#[test]
fn every_module_starts_with_a_doc_line_and_no_unsafe() {
    let root = workspace_root();
    let mut files = vec![];
    rust_files(&root.join("crates"), &mut files);
    assert!(files.len() > 20);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(
            text.starts_with("//!"),
            "{} must start with a //! line saying what it is for",
            f.display()
        );
        let (block, func) = (concat!("unsafe", " {"), concat!("unsafe", " fn"));
        assert!(
            !text.contains(block) && !text.contains(func),
            "{} contains unsafe code",
            f.display()
        );
        if f.ends_with("src/lib.rs") || f.ends_with("src/main.rs") {
            assert!(
                text.contains("#![forbid(unsafe_code)]"),
                "{} must forbid unsafe code",
                f.display()
            );
        }
    }
}
