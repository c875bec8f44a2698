//! Checks the architecture invariants of ARCHITECTURE.md: dependency direction between crates, sans-IO cores,
//! no unsafe code, and a `//!` line at the top of every module. The house rules that are not about architecture
//! (unwrap, length budgets, reasons for allows) are in `tests/tidy/`.

// The tidy test uses the scanner's other helpers; this test needs only the source scan and the list of cores.
#[allow(dead_code)]
#[path = "tidy/scan.rs"]
mod scan;

use scan::{rust_files, scan_crate_src, workspace_root, CORES};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Which workspace crates each crate may depend on (normal dependencies).
fn allowed() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    let mut m = BTreeMap::new();
    m.insert("consort-crypto", BTreeSet::new());
    m.insert("consort-receipt", ["consort-crypto"].into());
    m.insert("consort-kv", ["consort-crypto"].into());
    m.insert("consort-ledger", ["consort-crypto", "consort-kv"].into());
    m.insert("consort-gov", ["consort-crypto", "consort-kv"].into());
    m.insert("consort-attest", ["consort-crypto"].into());
    m.insert("consort-js", ["consort-crypto", "consort-kv"].into());
    m.insert("consort-evm", ["consort-crypto", "consort-kv"].into());
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
        "consort-js",
        "consort-evm",
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

/// Where a core's production code names an IO, clock or thread API today: (file, word, why). Entries only go:
/// the test fails when one is no longer needed.
const IO_EXCEPTIONS: &[(&str, &str, &str)] = &[
    (
        "crates/consort-crypto/src/x509.rs",
        "std::net",
        "std::net::IpAddr parses a certificate's subject alternative name: a value type, no socket",
    ),
    (
        "crates/consort-crypto/src/x509.rs",
        "SystemTime",
        "a generated certificate's validity is wall-clock time; read only when generating a certificate, never \
         when verifying a ledger or a receipt",
    ),
];

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
    let mut used = vec![false; IO_EXCEPTIONS.len()];
    let mut problems = vec![];
    for core in CORES {
        // Test code may use the file system (temp dirs for interop checks); production code may not. Comments and
        // strings are not code, so a doc line that names what the core does not do is no violation.
        for source in scan_crate_src(&root.join("crates").join(core)) {
            for (i, line) in source.lines.iter().enumerate().filter(|(_, l)| !l.test) {
                for word in forbidden.iter().filter(|w| line.code.contains(*w)) {
                    match IO_EXCEPTIONS
                        .iter()
                        .position(|(p, w, _)| *p == source.path && w == word)
                    {
                        Some(k) => used[k] = true,
                        None => problems.push(format!("{}:{}: uses {word}", source.path, i + 1)),
                    }
                }
            }
        }
    }
    for ((path, word, _), used) in IO_EXCEPTIONS.iter().zip(used) {
        if !used {
            problems.push(format!(
                "{path} no longer uses {word}: remove its entry from IO_EXCEPTIONS"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "cores are sans-IO (an exception needs an IO_EXCEPTIONS entry with its reason):\n  {}",
        problems.join("\n  ")
    );
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
