//! Replays the regression corpus of the `merkle_tree` and `signature_record` fuzz targets in every test run, with
//! the targets' own checks (`fuzz/src/merkle_tree.rs` and `fuzz/src/signature_record.rs`, included below): each
//! seed in `fuzz/seeds/<target>/` must still be accepted, so the fuzzer keeps starting from inputs that reach every
//! check; every input of `fuzz/minimised/<target>/` (the minimised corpus of the recorded runs) and of
//! `fuzz/regressions/<target>/` (inputs that once failed the target) must keep every property.

use std::path::{Path, PathBuf};

#[path = "../../../fuzz/src/merkle_tree.rs"]
mod merkle_tree;
#[path = "../../../fuzz/src/signature_record.rs"]
mod signature_record;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// Inputs read from a corpus directory: each file's path and bytes.
type Inputs = Vec<(PathBuf, Vec<u8>)>;

/// The files of `fuzz/<kind>/<target>/`, sorted; an absent directory is an error unless `optional`.
fn inputs(kind: &str, target: &str, optional: bool) -> Inputs {
    let dir = fuzz_dir().join(kind).join(target);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    let mut paths: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

/// Seeds, then the minimised corpus, then the regressions of `target`; seeds and minimised corpus must exist.
fn corpus(target: &str) -> (Inputs, Inputs) {
    let seeds = inputs("seeds", target, false);
    assert!(!seeds.is_empty(), "fuzz/seeds/{target}/ is empty");
    let minimised = inputs("minimised", target, false);
    assert!(!minimised.is_empty(), "fuzz/minimised/{target}/ is empty");
    let mut others = minimised;
    others.extend(inputs("regressions", target, true));
    (seeds, others)
}

#[test]
fn merkle_tree_seeds_are_accepted_and_the_corpus_keeps_its_properties() {
    let (seeds, others) = corpus("merkle_tree");
    for (path, bytes) in &seeds {
        assert!(merkle_tree::check(bytes).is_some(), "{} is refused", path.display());
    }
    let mut accepted = 0;
    for (_, bytes) in &others {
        accepted += usize::from(merkle_tree::check(bytes).is_some());
    }
    assert!(accepted < others.len(), "the minimised corpus holds no refused input");
}

#[test]
fn merkle_tree_seeds_built_today_are_accepted() {
    let seeds = merkle_tree::seeds();
    assert!(seeds.len() >= 10);
    for (name, bytes) in seeds {
        assert!(merkle_tree::check(&bytes).is_some(), "{name} is refused");
    }
}

#[test]
fn signature_record_seeds_are_accepted_and_the_corpus_keeps_its_properties() {
    let fx = signature_record::Fixture::new();
    let (seeds, others) = corpus("signature_record");
    for (path, bytes) in &seeds {
        if let Err(e) = signature_record::audit(&fx, bytes) {
            panic!("{} is refused by the auditor: {e}", path.display());
        }
        let _ = signature_record::check_parse(bytes);
    }
    assert!(
        seeds.iter().any(|(_, b)| signature_record::check_parse(b).is_some()),
        "no seed parses as a PrimarySignature"
    );
    for (_, bytes) in &others {
        let _ = signature_record::check_parse(bytes);
        let _ = signature_record::audit(&fx, bytes);
    }
}

#[test]
fn signature_record_fixture_refuses_forgeries() {
    let fx = signature_record::Fixture::new();
    let seeds = signature_record::seeds(&fx);
    assert_eq!(seeds.len(), 3);
    for (name, bytes) in &seeds {
        assert!(signature_record::audit(&fx, bytes).is_ok(), "{name}");
    }
    // The same record over another root, signed by the service key instead of the node's, or with its
    // signature's bytes changed: the auditor refuses each.
    let genuine = fx.genuine();
    let mut other_root = fx.root;
    other_root[31] ^= 1;
    let s = &fx.builder.service;
    let forgeries = [
        consort_ledger::PrimarySignature::new(&s.node_key, &s.node_id, &s.node_cert_pem, 2, 3, 0, 0, &other_root),
        consort_ledger::PrimarySignature::new(&s.service_key, &s.node_id, &s.node_cert_pem, 2, 3, 0, 0, &fx.root),
        consort_ledger::PrimarySignature {
            sig: genuine.sig.replacen('A', "B", 1).replacen('M', "N", 1),
            ..genuine.clone()
        },
    ];
    for forged in forgeries {
        assert_ne!(forged, genuine);
        assert!(
            signature_record::audit(&fx, &forged.to_json_bytes()).is_err(),
            "{forged:?}"
        );
    }
}

/// The `ledger_entry` seeds: each entry parses whole, and each chunk (behind the byte that picks its end seqno)
/// audits clean under the name the target gives it.
#[test]
fn ledger_entry_seeds_parse_and_audit() {
    let seeds = inputs("seeds", "ledger_entry", false);
    let mut chunks = 0;
    for (path, bytes) in &seeds {
        let file = path.file_name().unwrap().to_string_lossy();
        if file.starts_with("entry_") {
            let (_, used) = consort_ledger::parse_entry(bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(used, bytes.len(), "{file}");
            continue;
        }
        let (&end_byte, chunk) = bytes.split_first().unwrap();
        let name = match file.starts_with("open") {
            true => "ledger_1".to_string(),
            false => format!("ledger_1-{}", u64::from(end_byte) + 1),
        };
        let report = consort_ledger::audit_chunks(&[(name, chunk.to_vec())]).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(report.signatures >= 1, "{file}");
        chunks += 1;
    }
    assert!(
        seeds.len() >= 3 && chunks == 2,
        "ledger_entry seeds: {} files, {chunks} chunks",
        seeds.len()
    );
}
