//! The conformance suite every [`LedgerStorage`] implementation must pass: the node's file storage, the
//! simulator's faulty disk and [`crate::MemStorage`] all run it in their tests.

use crate::{LedgerStorage, StorageError};

/// The conformance suite every [`LedgerStorage`] must pass. `make` returns a fresh, empty storage each call.
/// Panics (with a message naming the property) on the first violation.
pub fn storage_conformance(make: impl Fn() -> Box<dyn LedgerStorage>) {
    let not_found = |r: Result<_, StorageError>, what: &str| {
        assert!(matches!(r, Err(StorageError::NotFound(_))), "{what}: expected NotFound");
    };
    // A fresh storage is empty, and missing files are NotFound for every operation that needs one.
    let mut s = make();
    assert_eq!(s.list().unwrap(), Vec::<String>::new(), "fresh storage must be empty");
    not_found(s.read("ledger_1").map(|_| ()), "read missing");
    not_found(s.write_at("ledger_1", 0, b"x"), "write_at missing");
    not_found(s.truncate("ledger_1", 0), "truncate missing");
    not_found(s.rename("ledger_1", "ledger_2"), "rename missing");
    not_found(s.remove("ledger_1"), "remove missing");
    not_found(s.sync("ledger_1"), "sync missing");

    // Append creates, then extends; an empty append creates an empty file.
    s.append("ledger_1", b"hello").unwrap();
    s.append("ledger_1", b" world").unwrap();
    assert_eq!(s.read("ledger_1").unwrap(), b"hello world", "append extends");
    s.append("empty", b"").unwrap();
    assert_eq!(s.read("empty").unwrap(), b"", "empty append creates");
    let mut names = s.list().unwrap();
    names.sort();
    assert_eq!(
        names,
        vec!["empty".to_string(), "ledger_1".to_string()],
        "list names every file"
    );

    // write_at overwrites in place, may extend from within or at the end, not beyond.
    s.write_at("ledger_1", 0, b"J").unwrap();
    assert_eq!(s.read("ledger_1").unwrap(), b"Jello world");
    s.write_at("ledger_1", 9, b"LDS").unwrap();
    assert_eq!(s.read("ledger_1").unwrap(), b"Jello worLDS", "write_at may extend");
    s.write_at("ledger_1", 12, b"!").unwrap();
    assert_eq!(
        s.read("ledger_1").unwrap(),
        b"Jello worLDS!",
        "write_at at the end appends"
    );
    assert!(
        matches!(s.write_at("ledger_1", 20, b"x"), Err(StorageError::OutOfRange(_))),
        "write_at beyond the end must fail"
    );
    assert_eq!(
        s.read("ledger_1").unwrap(),
        b"Jello worLDS!",
        "a failed write_at changes nothing"
    );

    // truncate shrinks only.
    s.truncate("ledger_1", 5).unwrap();
    assert_eq!(s.read("ledger_1").unwrap(), b"Jello");
    assert!(
        matches!(s.truncate("ledger_1", 6), Err(StorageError::OutOfRange(_))),
        "truncate cannot grow"
    );
    s.truncate("ledger_1", 5).unwrap();
    s.truncate("ledger_1", 0).unwrap();
    assert_eq!(s.read("ledger_1").unwrap(), b"");
    s.append("ledger_1", b"again").unwrap();
    assert_eq!(s.read("ledger_1").unwrap(), b"again");

    // rename moves, replacing the target; remove deletes.
    s.rename("ledger_1", "ledger_1-5").unwrap();
    not_found(s.read("ledger_1").map(|_| ()), "rename source is gone");
    assert_eq!(s.read("ledger_1-5").unwrap(), b"again");
    s.append("ledger_1-5.committed", b"old").unwrap();
    s.rename("ledger_1-5", "ledger_1-5.committed").unwrap();
    assert_eq!(
        s.read("ledger_1-5.committed").unwrap(),
        b"again",
        "rename replaces the target"
    );
    s.sync("ledger_1-5.committed").unwrap();
    s.remove("empty").unwrap();
    let mut names = s.list().unwrap();
    names.sort();
    assert_eq!(names, vec!["ledger_1-5.committed".to_string()]);
    s.remove("ledger_1-5.committed").unwrap();
    assert!(s.list().unwrap().is_empty(), "remove deletes");

    // Larger binary content survives intact.
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut s = make();
    s.append("big", &big[..100_000]).unwrap();
    s.append("big", &big[100_000..]).unwrap();
    s.write_at("big", 0, &8u64.to_le_bytes()).unwrap();
    let mut expected = big.clone();
    expected[..8].copy_from_slice(&8u64.to_le_bytes());
    assert_eq!(s.read("big").unwrap(), expected, "binary content round trips");

    // A fresh storage from `make` is independent of earlier ones.
    assert!(make().list().unwrap().is_empty(), "make() must return an empty storage");
}
