//! The `kv_snapshot` target's input layout and properties over `consort_kv::Store::from_snapshot` (CCF's KV
//! snapshot format: a public domain with its header, and a private-domain plaintext), and its seeds. Shared,
//! through `#[path]`, with consort-kv's `fuzz_replay` test, so the seeds are replayed with the fuzzer's checks.

use consort_kv::{CommitOutcome, SnapshotHeader, Store};

/// How the target reads its input: a u32 (little-endian) length of the public domain, that many bytes (fewer if
/// the input is shorter), and the rest as the private plaintext.
pub fn split(data: &[u8]) -> (&[u8], &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<4>() else {
        return (data, &[]);
    };
    let len = (u32::from_le_bytes(*len) as usize).min(rest.len());
    rest.split_at(len)
}

/// The input [`split`] reads as `public` and `private`.
pub fn join(public: &[u8], private: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(public.len()).unwrap_or(u32::MAX).to_le_bytes().to_vec();
    out.extend_from_slice(public);
    out.extend_from_slice(private);
    out
}

/// Runs the target on `data`: returns the restored store and header if `from_snapshot` accepted the two domains,
/// after checking that the store is at (and committed at) the snapshot's version, that it snapshots again into
/// domains that restore the same state and header, that this second snapshot is a fixed point, and that the
/// store takes a new transaction at the next version. Panics when a property fails.
pub fn check(data: &[u8]) -> Option<(Store, SnapshotHeader)> {
    let (public, private) = split(data);
    let (store, header) = Store::from_snapshot(public, private).ok()?;
    let version = header.version;
    assert_eq!(
        store.current_version(),
        version,
        "restored store is not at the snapshot's version"
    );
    assert_eq!(
        store.committed_version(),
        version,
        "restored store is not committed at its version"
    );
    let (public2, private2) = store
        .try_snapshot(&header)
        .unwrap_or_else(|e| panic!("a restored store cannot snapshot its own version: {e}"));
    let (again, header2) = Store::from_snapshot(&public2, &private2)
        .unwrap_or_else(|e| panic!("a restored store's own snapshot is refused: {e}"));
    assert_eq!(header2, header, "the header changed through a re-snapshot");
    assert_eq!(
        again.digest(),
        store.digest(),
        "the state changed through a re-snapshot"
    );
    let third = again
        .try_snapshot(&header2)
        .unwrap_or_else(|e| panic!("second re-snapshot: {e}"));
    assert_eq!(third, (public2, private2), "re-snapshotting is not a fixed point");
    // The restored store goes on: a write lands at the next version, and leaves the restored state's digest
    // different (the version at least changed).
    let before = store.digest();
    let mut tx = store.begin();
    tx.put("public:fuzz.after", b"k", b"v");
    match store.commit(tx, |v, _| v) {
        Ok(CommitOutcome::Committed { version: v, .. }) => assert_eq!(v, version + 1, "next write's version"),
        other => panic!("a write on a restored store: {other:?}"),
    }
    assert_ne!(store.digest(), before);
    Some((again, header))
}

/// One write of a seed transaction: map, key, and the value (None: a removal).
type Write<'a> = (&'a str, &'a [u8], Option<&'a [u8]>);

/// A store with public and private maps, some keys overwritten and removed, and a map emptied, at version 6.
fn sample_store() -> Store {
    let store = Store::new();
    let writes: [&[Write<'_>]; 6] = [
        &[
            ("public:records", b"a", Some(b"1")),
            ("records", b"a", Some(b"secret 1")),
        ],
        &[
            ("public:records", b"b", Some(b"2")),
            ("public:gone", b"x", Some(b"temporary")),
        ],
        &[
            ("records", b"a", Some(b"secret 1 again")),
            ("records", b"longer key 0123456789", Some(b"")),
        ],
        &[("public:records", b"a", None), ("public:gone", b"x", None)],
        &[("public:ccf.gov.service.info", &[0; 8], Some(br#"{"status": "Open"}"#))],
        &[("private map", b"\x00\xff", Some(&[7; 40]))],
    ];
    for tx_writes in writes {
        let mut tx = store.begin();
        for (map, key, value) in tx_writes {
            match value {
                Some(v) => tx.put(map, key, v),
                None => tx.remove(map, key),
            }
        }
        // Only the seed builder calls this; a refused commit is a bug in the fixture.
        assert!(matches!(
            store.commit(tx, |_, _| ()),
            Ok(CommitOutcome::Committed { .. })
        ));
    }
    store
}

/// Seeds: the snapshot of an empty store, of a small store of public and private maps (with its header's hash and
/// view history as a node writes them), and the same state with a tombstone (a deleted key, which CCF's snapshots
/// may carry and Consort's do not write) added to the public domain.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let empty = Store::new();
    let (public, private) = empty.snapshot(&SnapshotHeader::default());
    out.push(("empty".to_string(), join(&public, &private)));
    let store = sample_store();
    let header = SnapshotHeader {
        version: 6,
        hash_at_snapshot: consort_crypto::sha256(b"signature entry at 6").to_vec(),
        view_history: vec![1, 1, 4],
    };
    let (public, private) = store.snapshot(&header);
    out.push(("sample".to_string(), join(&public, &private)));
    out.push(("sample_public_only".to_string(), join(&public, &[])));
    out.push((
        "sample_with_tombstone".to_string(),
        join(&with_tombstone(&public), &private),
    ));
    out
}

/// `public` with one more map holding a tombstone: key "dead", version with the top bit set, no value.
fn with_tombstone(public: &[u8]) -> Vec<u8> {
    let name = b"public:dead";
    let mut entries = Vec::new();
    entries.extend_from_slice(&4u64.to_le_bytes()); // key size
    entries.extend_from_slice(b"dead\0\0\0\0"); // key, padded to 8
    entries.extend_from_slice(&8u64.to_le_bytes()); // value size: the version alone
    entries.extend_from_slice(&(3u64 | (1 << 63)).to_le_bytes());
    let mut out = public.to_vec();
    out.extend_from_slice(&(name.len() as u64).to_le_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(&3u64.to_le_bytes()); // map version
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    out.extend_from_slice(&entries);
    out
}
