//! The `ledger_load` target's input layout (a directory of chunk files) and its properties over
//! `consort_ledger::Ledger::load`. Shared, through `#[path]`, with consort-ledger's `fuzz_replay_load` test, so the
//! seeds are laid out and checked exactly as the fuzzer does; it uses nothing but consort-ledger.

use consort_ledger::{Ledger, LedgerError, LedgerStorage, MemStorage};

/// Most chunk files one `ledger_load` input describes.
pub const LEDGER_LOAD_MAX_FILES: usize = 6;

/// How `ledger_load` reads its input: a directory of chunk files, as records `kind ‖ start ‖ end ‖ u16 length
/// (little-endian) ‖ bytes`. `kind % 3` picks the name (`ledger_<start>`, `ledger_<start>-<end>`,
/// `ledger_<start>-<end>.committed`); start and end are single bytes, so gaps, overlaps and wrong ranges are
/// reached too. A record cut short takes the bytes that are there.
pub fn ledger_dir_files(mut data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    while files.len() < LEDGER_LOAD_MAX_FILES && data.len() >= 5 {
        let (kind, start, end) = (data[0], u64::from(data[1]), u64::from(data[2]));
        let len = usize::from(u16::from_le_bytes([data[3], data[4]])).min(data.len() - 5);
        let name = match kind % 3 {
            0 => format!("ledger_{start}"),
            1 => format!("ledger_{start}-{end}"),
            _ => format!("ledger_{start}-{end}.committed"),
        };
        files.push((name, data[5..5 + len].to_vec()));
        data = &data[5 + len..];
    }
    files
}

/// The input [`ledger_dir_files`] reads as `files` (chunk names as the ledger writes them, seqnos below 256, files
/// below 64 KiB); None for a file it cannot describe.
pub fn ledger_dir_input(files: &[(String, Vec<u8>)]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for (name, bytes) in files {
        let rest = name.strip_prefix("ledger_")?;
        let (rest, committed) = match rest.strip_suffix(".committed") {
            Some(r) => (r, true),
            None => (rest, false),
        };
        let (start, end, kind) = match rest.split_once('-') {
            Some((s, e)) => (
                s.parse::<u8>().ok()?,
                e.parse::<u8>().ok()?,
                if committed { 2 } else { 1 },
            ),
            None => (rest.parse::<u8>().ok()?, 0, 0),
        };
        out.extend_from_slice(&[kind, start, end]);
        out.extend_from_slice(&u16::try_from(bytes.len()).ok()?.to_le_bytes());
        out.extend_from_slice(bytes);
    }
    Some(out)
}

/// What `Ledger::load` made of one input, once every property held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It loaded: the entries it indexed (in seqno order), and whether it left out a torn tail.
    Loaded { entries: Vec<Vec<u8>>, torn_tail: bool },
    /// It refused, naming this file (one of the input's).
    Refused { file: String },
}

/// Runs the target on `data`: lays it out as chunk files ([`ledger_dir_files`]) in a `MemStorage` and loads it.
/// A refusal must name one of the files; a load must change no file's bytes, read back every entry it indexed,
/// report a torn tail that fits its file, and, once its first write has cut the files to match, load again to the
/// same entries with nothing torn. Panics when a property fails.
pub fn check(data: &[u8]) -> Outcome {
    let mut disk = MemStorage::new();
    for (name, bytes) in ledger_dir_files(data) {
        disk.files_mut().insert(name, bytes);
    }
    let mut ledger = match Ledger::load(disk.clone(), 1) {
        Ok(l) => l,
        Err(LedgerError::Damaged { name, .. } | LedgerError::Chunk { name, .. }) => {
            assert!(
                disk.files().contains_key(&name),
                "the error names {name}, which is not a file"
            );
            return Outcome::Refused { file: name };
        }
        Err(e) => panic!("a refused load that names no file: {e}"),
    };
    // Loading renames at most (a closed chunk not yet renamed): no file's bytes change.
    assert_eq!(contents(ledger.storage()), contents(&disk));
    let torn_tail = ledger.torn_tail().is_some();
    if let Some(torn) = ledger.torn_tail() {
        let size = disk.files().get(&torn.chunk).map(|f| f.len() as u64);
        assert_eq!(size, Some(torn.offset + torn.bytes), "{torn}");
    }
    let loaded = entries(&ledger);
    assert_eq!(
        loaded.len() as u64,
        ledger.first_seqno().map_or(0, |f| ledger.last_seqno() - f + 1)
    );
    ledger.flush().expect("the first write after a load");
    let again = Ledger::load(ledger.into_storage(), 1).expect("the files cut to what was loaded load again");
    assert_eq!(again.torn_tail(), None);
    assert_eq!(entries(&again), loaded);
    assert!(again.storage().list().is_ok());
    Outcome::Loaded {
        entries: loaded,
        torn_tail,
    }
}

/// Every entry of `ledger`, read chunk by chunk (as replay reads them), checked against one-by-one reads.
fn entries(ledger: &Ledger<MemStorage>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let Some(mut next) = ledger.first_seqno() else {
        return out;
    };
    while next <= ledger.last_seqno() {
        let chunk = ledger.read_chunk_of(next).expect("an indexed chunk reads back");
        for (seqno, bytes) in chunk.iter() {
            assert_eq!(ledger.read_entry(seqno).expect("an indexed entry reads back"), bytes);
            out.push(bytes.to_vec());
        }
        next = chunk.last_seqno() + 1;
    }
    out
}

fn contents(storage: &MemStorage) -> Vec<Vec<u8>> {
    let mut all: Vec<Vec<u8>> = storage.files().values().cloned().collect();
    all.sort();
    all
}
