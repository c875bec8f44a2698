//! Replays the `ledger_load` fuzz target's seeds (`fuzz/seeds/ledger_load/`) in every test run, laid out as chunk
//! files and loaded exactly as the target does (`fuzz/src/ledger_load.rs`, included below): each seed is a valid
//! ledger directory, so each must load with every property the target checks, its entries must parse whole with
//! consecutive seqnos, and its chunks must pass the offline audit. The inputs of `fuzz/minimised/ledger_load/` (the
//! minimised corpus of the recorded runs) and of `fuzz/regressions/ledger_load/` (inputs that once failed the
//! target) must keep every property.

use std::path::{Path, PathBuf};

#[path = "../../../fuzz/src/ledger_load.rs"]
mod ledger_load;

use ledger_load::Outcome;

/// The files of `fuzz/<kind>/ledger_load/` with their names, sorted; an absent directory is an error unless
/// `optional` (a replay of a directory that does not exist could never fail).
fn inputs(kind: &str, optional: bool) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz")
        .join(kind)
        .join("ledger_load");
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
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// What a seed loads to: its entries and whether a torn tail was left out. Panics (naming the seed) if it is
/// refused, breaks a property of the target, or holds entries that do not parse whole in seqno order.
fn load_seed(name: &str, bytes: &[u8]) -> (Vec<Vec<u8>>, bool) {
    let files = ledger_load::ledger_dir_files(bytes);
    assert!(!files.is_empty(), "{name} describes no chunk file");
    // The seed is exactly the layout of its files: nothing after them that the target would ignore.
    assert_eq!(ledger_load::ledger_dir_input(&files).as_deref(), Some(bytes), "{name}");
    let (entries, torn_tail) = match ledger_load::check(bytes) {
        Outcome::Loaded { entries, torn_tail } => (entries, torn_tail),
        Outcome::Refused { file } => panic!("{name}: the load is refused, naming {file}"),
    };
    assert!(!entries.is_empty(), "{name} loads to an empty ledger");
    let mut expected = None;
    for entry in &entries {
        let (view, used) = consort_ledger::parse_entry(entry).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(used, entry.len(), "{name}: seqno {} does not parse whole", view.seqno);
        assert_eq!(
            view.seqno,
            expected.unwrap_or(view.seqno),
            "{name}: seqnos are not consecutive"
        );
        expected = Some(view.seqno + 1);
    }
    (entries, torn_tail)
}

#[test]
fn ledger_load_seeds_load_with_every_property() {
    let seeds = inputs("seeds", false);
    assert!(seeds.len() >= 3, "fuzz/seeds/ledger_load/ holds {} seeds", seeds.len());
    let mut loaded = std::collections::BTreeMap::new();
    for (name, bytes) in &seeds {
        let (entries, torn_tail) = load_seed(name, bytes);
        // Only the seeds written with a torn tail leave one out.
        assert_eq!(
            torn_tail,
            name.contains("torn"),
            "{name}: torn tail reported: {torn_tail}"
        );
        loaded.insert(name.as_str(), entries);
    }
    // The torn tail is dropped, not what comes before it: the same ledger loads with and without it.
    let whole = loaded.get("ledger").expect("fuzz/seeds/ledger_load/ledger");
    assert!(
        loaded.get("torn_tail") == Some(whole),
        "torn_tail loads to other entries than ledger"
    );
    let open = loaded.get("open_chunk").expect("fuzz/seeds/ledger_load/open_chunk");
    assert!(
        whole.ends_with(open),
        "the open chunk alone holds entries the whole ledger does not end with"
    );
    assert!(open.len() < whole.len());
}

/// The minimised corpus of the recorded runs (most inputs refused, some loaded) and the inputs that once failed the
/// target keep every property: `check` panics if one breaks.
#[test]
fn ledger_load_corpus_keeps_every_property() {
    let minimised = inputs("minimised", false);
    assert!(!minimised.is_empty(), "fuzz/minimised/ledger_load/ is empty");
    let mut refused = 0;
    for (_, bytes) in minimised.iter().chain(&inputs("regressions", true)) {
        refused += usize::from(matches!(ledger_load::check(bytes), Outcome::Refused { .. }));
    }
    assert!(refused > 0, "the minimised corpus holds no refused input");
}

/// The seed ledger is genuine, not just well framed: its chunks audit clean, signatures included.
#[test]
fn ledger_load_seed_chunks_audit_clean() {
    let seeds = inputs("seeds", false);
    let (_, bytes) = seeds
        .iter()
        .find(|(n, _)| n == "ledger")
        .expect("fuzz/seeds/ledger_load/ledger");
    let files = ledger_load::ledger_dir_files(bytes);
    assert!(
        files.iter().any(|(n, _)| n.ends_with(".committed")),
        "no committed chunk"
    );
    let report = consort_ledger::audit_chunks(&files).unwrap_or_else(|e| panic!("ledger: {e}"));
    assert!(report.signatures >= 2, "{report:?}");
}
