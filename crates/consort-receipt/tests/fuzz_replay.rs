//! Replays fuzzing inputs in every `cargo test`: the seed receipts must verify under the fuzz target's service
//! certificate, and every seed and every input in `fuzz/regressions/receipt_verify/` (inputs that once crashed
//! the target, when there are any) must return, not panic.

use std::path::{Path, PathBuf};

/// The files of `dir`, sorted; a missing directory fails the test unless `optional` (a replay of a directory that
/// does not exist could never fail).
fn files(dir: &Path, optional: bool) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => return vec![],
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    let mut paths: Vec<_> = entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    paths.sort();
    paths
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

#[test]
fn fuzz_seeds_verify() {
    let service_cert = std::fs::read_to_string(fuzz_dir().join("service_cert.pem")).unwrap();
    let seeds = files(&fuzz_dir().join("seeds/receipt_verify"), false);
    assert!(!seeds.is_empty());
    for seed in seeds {
        let bytes = std::fs::read(&seed).unwrap();
        consort_receipt::verify_json(&bytes, &service_cert).unwrap_or_else(|e| panic!("{}: {e}", seed.display()));
    }
}

#[test]
fn fuzz_regressions_do_not_panic() {
    let service_cert = std::fs::read_to_string(fuzz_dir().join("service_cert.pem")).unwrap();
    let mut inputs = files(&fuzz_dir().join("seeds/receipt_verify"), false);
    inputs.extend(files(&fuzz_dir().join("regressions/receipt_verify"), true));
    assert!(!inputs.is_empty());
    for input in inputs {
        let bytes = std::fs::read(&input).unwrap();
        // Any result is fine; returning at all is the test.
        let _ = consort_receipt::verify_json(&bytes, &service_cert);
    }
}
