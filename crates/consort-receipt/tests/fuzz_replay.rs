//! Replays fuzzing inputs in every `cargo test`: the seed receipts must verify under the fuzz target's service
//! certificate, and every input in `tests/fuzz_regressions/` (inputs that once crashed) must return, not panic.

use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
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
    let seeds = files(&fuzz_dir().join("seeds/receipt_verify"));
    assert!(!seeds.is_empty());
    for seed in seeds {
        let bytes = std::fs::read(&seed).unwrap();
        consort_receipt::verify_json(&bytes, &service_cert).unwrap_or_else(|e| panic!("{}: {e}", seed.display()));
    }
}

#[test]
fn fuzz_regressions_do_not_panic() {
    let service_cert = std::fs::read_to_string(fuzz_dir().join("service_cert.pem")).unwrap();
    for input in files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions")) {
        let bytes = std::fs::read(&input).unwrap();
        // Any result is fine; returning at all is the test.
        let _ = consort_receipt::verify_json(&bytes, &service_cert);
    }
}
