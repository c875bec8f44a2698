//! Fuzz target: a directory of arbitrary chunk files (layout: `consort_fuzz::ledger_load::ledger_dir_files`) through
//! `Ledger::load`. Must never panic; a load that succeeds must change no file's bytes, read back every entry it
//! indexed, report a torn tail that fits its file, and, once its first write has cut the files to match, load again
//! to the same entries with nothing torn. A refused load must say which file. The checks are in
//! `src/ledger_load.rs`, which consort-ledger's `fuzz_replay_load` test runs over the seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = consort_fuzz::ledger_load::check(data);
});
