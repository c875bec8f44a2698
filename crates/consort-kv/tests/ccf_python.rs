//! Interop: CCF's own Python parser (`ccf.ledger.PublicDomain`) reads our write sets and snapshots.
//!
//! Runs `$CCF_VENV/bin/python` (default `/opt/ccfvenv`); skipped with a message when it is not installed.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use consort_kv::{DomainHeader, SnapshotHeader, Store, WriteSet};

/// Reads hex lines from stdin, one public domain each, and prints what CCF's parser makes of it.
const DUMP: &str = r#"
import sys
from ccf.ledger import PublicDomain
for line in sys.stdin.read().split():
    d = PublicDomain(bytes.fromhex(line))
    print("seqno", d.get_seqno())
    if d._entry_type.value == 1:
        print("snapshot", d._hash_at_snapshot, ",".join(str(v) for v in d._view_history))
    else:
        print("digests", (d.get_claims_digest() or b"").hex(), (d.get_commit_evidence_digest() or b"").hex())
    for name, records in sorted(d.get_tables().items()):
        for k, v in sorted(records.items()):
            print("kv", name, k.hex() or "-", "removed" if v is None else (v.hex() or "-"))
"#;

fn python() -> Option<PathBuf> {
    let venv = std::env::var("CCF_VENV").unwrap_or_else(|_| "/opt/ccfvenv".to_string());
    let python = PathBuf::from(venv).join("bin/python");
    if python.exists() {
        Some(python)
    } else {
        println!(
            "skipping: {} not found (set CCF_VENV to a venv with ccf==6.0.28)",
            python.display()
        );
        None
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn or_dash(s: String) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

fn ccf_dump(python: &PathBuf, domains: &[Vec<u8>]) -> String {
    let mut child = Command::new(python)
        .args(["-c", DUMP])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    let input: Vec<String> = domains.iter().map(|d| hex(d)).collect();
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.join("\n").as_bytes())
        .expect("write to python");
    let out = child.wait_with_output().expect("python output");
    assert!(
        out.status.success(),
        "CCF parser failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// What the dump should say for the maps of `ws`.
fn expected_kv(ws: &WriteSet) -> String {
    let mut out = String::new();
    for (name, map) in &ws.maps {
        for (k, v) in &map.writes {
            let v = v.as_ref().map_or("removed".to_string(), |v| or_dash(hex(v)));
            out += &format!("kv {name} {} {v}\n", or_dash(hex(k)));
        }
    }
    out
}

fn sample_write_set() -> WriteSet {
    let mut ws = WriteSet::default();
    ws.put("public:ccf.gov.service.info", &[0; 8], br#"{"status":"Open"}"#);
    ws.put("public:records", b"key-1", b"value one");
    ws.put("public:records", b"", b"empty key");
    ws.put("public:records", b"empty value", b"");
    ws.remove("public:records", b"gone");
    ws.put("records", b"secret", b"private value");
    ws.remove("records", b"old secret");
    // Edge cases: the empty map name, and a map holding nothing but the removal of a never-present key.
    ws.put("", b"k", b"in the map with the empty name");
    ws.remove("public:only removes", b"never there");
    ws
}

#[test]
fn ccf_parses_our_write_sets() {
    let Some(python) = python() else { return };
    let ws = sample_write_set();
    let header = DomainHeader::write_set(42, [0x11; 32], [0x22; 32], 41);
    let public = ws.serialise_public(&header);
    // CCF's parser has no entry point for a private plaintext, but it is the same per-map sequence: put it behind
    // a header of its own to check that part too.
    let mut private = WriteSet::default().serialise_public(&header);
    private.extend(ws.serialise_private());

    let got = ccf_dump(&python, &[public, private]);
    let digests = format!("digests {} {}\n", hex(&[0x11; 32]), hex(&[0x22; 32]));
    let expected = format!(
        "seqno 42\n{digests}{}seqno 42\n{digests}{}",
        expected_kv(&ws.public_part()),
        expected_kv(&ws.private_part())
    );
    assert_eq!(got, expected);
}

#[test]
fn ccf_parses_our_snapshots() {
    let Some(python) = python() else { return };
    let store = Store::new();
    let mut tx = store.begin();
    let ws = sample_write_set();
    for (name, map) in &ws.maps {
        for (k, v) in &map.writes {
            match v {
                Some(v) => tx.put(name, k, v),
                None => tx.remove(name, k),
            }
        }
    }
    store.commit(tx, |_, _| ()).unwrap();
    let mut tx = store.begin();
    tx.put("public:records", b"12345678", b"aligned");
    tx.put("records", b"x", b"y");
    store.commit(tx, |_, _| ()).unwrap();

    let header = SnapshotHeader {
        version: 2,
        hash_at_snapshot: vec![0xab; 32],
        view_history: vec![1, 2],
    };
    let (public, private) = store.snapshot(&header);
    // As for write sets, check the private plaintext by putting it behind a snapshot header of its own:
    // entry type 1, version 2, max conflict version 2, empty hash, empty view history.
    let mut private_with_header = vec![1u8];
    for field in [2u64, 2, 0, 0] {
        private_with_header.extend(field.to_le_bytes());
    }
    private_with_header.extend(&private);

    let got = ccf_dump(&python, &[public, private_with_header]);

    let mut expected_public = String::new();
    let mut expected_private = String::new();
    let reader = store.read_only();
    for name in store.map_names() {
        let target = if consort_kv::is_public_map(&name) {
            &mut expected_public
        } else {
            &mut expected_private
        };
        reader.foreach(&name, |k, v| {
            *target += &format!("kv {name} {} {}\n", or_dash(hex(k)), or_dash(hex(v)));
            true
        });
    }
    let expected = format!(
        "seqno 2\nsnapshot {} 1,2\n{expected_public}seqno 2\nsnapshot  \n{expected_private}",
        hex(&[0xab; 32])
    );
    assert_eq!(got, expected);
}
