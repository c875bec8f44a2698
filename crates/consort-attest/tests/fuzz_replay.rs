//! Replays fuzzing inputs in every `cargo test`: the `attest_evidence` seeds still reach the checks they were made
//! for, and every seed and every input in `fuzz/regressions/attest_evidence/` (inputs that once crashed the target,
//! when there are any) returns, not panics.

use std::path::{Path, PathBuf};

use consort_attest::{verify, AttestError, Evidence, PlatformKind};

/// The key the fuzz target presents.
const PRESENTED_KEY: &[u8] = b"fuzz presented key";
const VCEK_MILAN: &[u8] = include_bytes!("data/vcek_milan.der");

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

fn seed(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds/attest_evidence")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What the fuzz target does with one input; the results of each path.
fn run_target(data: &[u8]) -> Vec<Result<consort_attest::Claims, AttestError>> {
    let mut results = Vec::new();
    if let Ok(evidence) = Evidence::from_any_json(data) {
        results.push(verify(&evidence, PRESENTED_KEY));
    }
    for format in [PlatformKind::Snp, PlatformKind::Virtual] {
        let evidence = Evidence {
            format,
            quote: data.to_vec(),
            endorsements: VCEK_MILAN.to_vec(),
        };
        results.push(verify(&evidence, PRESENTED_KEY));
    }
    results
}

#[test]
fn snp_seeds_pass_every_check_but_the_key_binding() {
    for name in ["snp_report.bin", "snp_evidence.json", "snp_node_quote.json"] {
        let results = run_target(&seed(name));
        assert!(
            results.contains(&Err(AttestError::KeyBindingMismatch)),
            "{name}: {results:?}"
        );
    }
}

#[test]
fn virtual_seeds_verify() {
    for name in ["virtual_quote.json", "virtual_evidence.json"] {
        let results = run_target(&seed(name));
        assert!(results.iter().any(Result::is_ok), "{name}: {results:?}");
    }
}

#[test]
fn fuzz_regressions_do_not_panic() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut inputs = files(&fuzz.join("seeds/attest_evidence"), false);
    assert!(inputs.len() >= 5, "the attest_evidence seeds are missing");
    inputs.extend(files(&fuzz.join("regressions/attest_evidence"), true));
    for input in inputs {
        // Any result is fine; returning at all is the test.
        let _ = run_target(&std::fs::read(&input).unwrap());
    }
}
