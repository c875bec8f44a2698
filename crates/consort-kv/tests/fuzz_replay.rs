//! Replays the regression corpus of the `kv_snapshot` fuzz target in every test run, with the target's own checks
//! (`fuzz/src/kv_snapshot.rs`, included below): each seed in `fuzz/seeds/kv_snapshot/` must still restore a store
//! that snapshots again consistently, so the fuzzer keeps starting past the header; every input of
//! `fuzz/minimised/kv_snapshot/` (the minimised corpus of the recorded runs) and of `fuzz/regressions/kv_snapshot/`
//! (inputs that once failed the target) must keep every property.

use std::path::{Path, PathBuf};

#[path = "../../../fuzz/src/kv_snapshot.rs"]
mod kv_snapshot;

/// The files of `fuzz/<kind>/kv_snapshot/`, sorted; an absent directory is an error unless `optional`.
fn inputs(kind: &str, optional: bool) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz")
        .join(kind)
        .join("kv_snapshot");
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

#[test]
fn kv_snapshot_seeds_restore_and_resnapshot() {
    let seeds = inputs("seeds", false);
    assert!(seeds.len() >= 4, "fuzz/seeds/kv_snapshot/ is missing seeds");
    for (path, bytes) in &seeds {
        assert!(kv_snapshot::check(bytes).is_some(), "{} is refused", path.display());
    }
}

#[test]
fn kv_snapshot_corpus_keeps_its_properties() {
    let mut others = inputs("minimised", false);
    assert!(!others.is_empty(), "fuzz/minimised/kv_snapshot/ is empty");
    others.extend(inputs("regressions", true));
    let accepted = others.iter().filter(|(_, b)| kv_snapshot::check(b).is_some()).count();
    assert!(accepted < others.len(), "the minimised corpus holds no refused input");
}

#[test]
fn kv_snapshot_seeds_built_today_restore() {
    let seeds = kv_snapshot::seeds();
    assert_eq!(seeds.len(), 4);
    for (name, bytes) in &seeds {
        let (store, header) = kv_snapshot::check(bytes).unwrap_or_else(|| panic!("{name} is refused"));
        assert_eq!(store.current_version(), header.version);
    }
    // The tombstone seed restores the same state as the plain one: a deleted key is absent.
    let digest = |name: &str| {
        let (_, bytes) = seeds.iter().find(|(n, _)| n == name).unwrap();
        kv_snapshot::check(bytes).unwrap().0.digest()
    };
    assert_eq!(digest("sample"), digest("sample_with_tombstone"));
    assert_ne!(digest("sample"), digest("sample_public_only"));
    // The last byte of the public domain cut off (inside its last map's last value): refused, not restored
    // as a smaller state.
    let (_, sample) = seeds.iter().find(|(n, _)| n == "sample").unwrap();
    let (public, private) = kv_snapshot::split(sample);
    let cut = kv_snapshot::join(&public[..public.len() - 1], private);
    assert!(kv_snapshot::check(&cut).is_none());
}

/// The `write_set` seeds (the public domains of a small ledger's entries) still parse.
#[test]
fn write_set_seeds_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/write_set");
    let mut seeds: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 3, "the write_set seeds are missing");
    for seed in seeds {
        let bytes = std::fs::read(&seed).unwrap();
        let (header, ws) =
            consort_kv::WriteSet::deserialise_public(&bytes).unwrap_or_else(|e| panic!("{}: {e}", seed.display()));
        assert!(header.version >= 1 && !ws.maps.is_empty(), "{}", seed.display());
    }
}
