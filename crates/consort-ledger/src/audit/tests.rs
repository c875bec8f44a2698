//! Unit tests of the auditor: findings keep their cause, and an entry altered after it was signed is named.

use super::*;
use crate::entry::ENTRY_HEADER_SIZE;
use crate::testing::sample_ledger;
use std::error::Error;

#[test]
fn a_finding_from_another_layer_keeps_its_error_as_source() {
    let b = sample_ledger(1, 2);
    let mut files = b.committed_chunk_files(1);
    assert!(audit_chunks(&files).is_ok());
    // An entry header claiming a version Consort does not read: the parser's error is the cause.
    let (_, bytes) = &mut files[0];
    bytes[CHUNK_HEADER_SIZE as usize] = 7;
    let err = audit_chunks(&files).unwrap_err();
    assert_eq!(
        err.source.as_deref(),
        Some(&AuditCause::Ledger(LedgerError::UnsupportedVersion(7))),
        "{err}"
    );
    assert!(err.source().is_some_and(|s| s.to_string() == err.reason), "{err}");
}

/// (file index, offset, length) of the entry at `seqno` in complete chunk files.
fn locate(files: &[(String, Vec<u8>)], seqno: u64) -> (usize, usize, usize) {
    for (i, (name, bytes)) in files.iter().enumerate() {
        let c = parse_chunk_name(name).unwrap();
        if (c.start..=c.end.unwrap()).contains(&seqno) {
            let mut pos = CHUNK_HEADER_SIZE as usize;
            for _ in c.start..seqno {
                pos += parse_entry(&bytes[pos..]).unwrap().1;
            }
            return (i, pos, parse_entry(&bytes[pos..]).unwrap().1);
        }
    }
    panic!("no chunk holds {seqno}")
}

#[test]
fn an_entry_altered_after_it_was_signed_is_named_with_its_own_chunk() {
    // Small chunks: each ends at a signature, so the previous signature's entry (covered by the next root) is
    // in another file than the signature that finds it altered.
    let b = sample_ledger(2, 4);
    let files = b.committed_chunk_files(1);
    let sigs: Vec<u64> = b.entries().iter().filter(|e| e.is_signature).map(|e| e.seqno).collect();
    let (previous, sig) = (sigs[sigs.len() - 2], sigs[sigs.len() - 1]);
    // A byte of a private domain (the last of a logging entry), and a byte of the previous signature's GCM tag.
    for (victim, offset_in_entry) in [(sig - 3, None), (previous, Some(ENTRY_HEADER_SIZE + 3))] {
        let (fi, at, len) = locate(&files, victim);
        let mut bad = files.clone();
        bad[fi].1[at + offset_in_entry.unwrap_or(len - 1)] ^= 0x01;
        let err = audit_chunks(&bad).unwrap_err();
        assert_eq!(err.seqno, Some(victim), "{err}");
        assert_eq!(err.file.as_deref(), Some(files[fi].0.as_str()), "{err}");
        assert_eq!(err.view, Some(b.view), "{err}");
        assert!(err.reason.contains(&format!("at signature {}.{sig}", b.view)), "{err}");
    }
    assert_ne!(locate(&files, previous).0, locate(&files, sig).0);
}

#[test]
fn a_signed_tree_that_does_not_match_its_root_names_no_culprit() {
    let b = sample_ledger(2, 4);
    let files = b.committed_chunk_files(1);
    let sig = b.last_signature_seqno();
    let mut bad = files.clone();
    let (fi, at, len) = locate(&files, sig - 3);
    bad[fi].1[at + len - 1] ^= 0x01;
    // The host also changes a leaf of the signature's tree table: the tree no longer has the signed root, so
    // it cannot say which entry is wrong, and the signature is named with the range.
    let (si, sat, slen) = locate(&files, sig);
    let entry = &bad[si].1[sat..sat + slen];
    let tree_at = entry.windows(4).position(|w| w == b"CMT1").unwrap();
    bad[si].1[sat + tree_at + 20] ^= 0x01;
    let err = audit_chunks(&bad).unwrap_err();
    assert_eq!(err.seqno, Some(sig), "{err}");
    assert!(err.reason.contains("one of the transactions since seqno"), "{err}");
}

#[test]
fn a_finding_of_the_validator_alone_has_no_source() {
    let mut b = sample_ledger(1, 1);
    let mut ws = WriteSet::default();
    ws.remove(NODES_INFO_TABLE, b"a-node-that-never-was");
    b.tx(&ws);
    b.signature();
    let err = audit_chunks(&b.committed_chunk_files(1)).unwrap_err();
    assert!(err.source.is_none() && err.source().is_none(), "{err}");
}
