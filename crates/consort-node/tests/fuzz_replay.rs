//! Replays the seeds of the node's fuzz targets in every test run, each checked as its kind promises, so the
//! fuzzer keeps starting from inputs that reach the checks behind the decoders: `fuzz/seeds/node_frames/`
//! (forwarded frames decode and re-encode to the same bytes; Raft messages between members reach raft-rs in a
//! replica of a three-replica cluster), `fuzz/seeds/join_request/` (bodies parse as `POST /node/join` parses
//! them, for the key they carry) and `fuzz/seeds/snapshot_file/` (committed snapshot files read and verify as the
//! node reads the ones it hands to joiners). A missing or empty seed directory fails. The minimised corpora of the
//! recorded runs (`fuzz/minimised/<target>/`, which must be there) and the inputs kept in `fuzz/regressions/<target>/`
//! (inputs that once failed the target) must keep the targets' properties; for `node_frames`'s Raft half, without
//! the target's running cluster (`fuzz/src/lib.rs`), that no replica halts in a fresh one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use consort_attest::{AttestError, PlatformKind};
use consort_consensus::testing::{fixture_identities, Cluster};
use consort_consensus::{Action, ConsensusError, Event, MessageError, PersistedState, RaftId, ReplicaConfig};
use consort_ledger::LedgerSecret;
use consort_node::api::join::parse_join;
use consort_node::engine::snapshot_files::{
    list_committed, read_verified, split_snapshot_file, RecordedEvidence, UnusableSnapshot,
};
use consort_node::net::forwarding::{ForwardedRequest, ForwardedResponse};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `fuzz/<kind>/<target>/` with their names, sorted; an absent directory is an error unless
/// `optional` (a replay of a directory that does not exist could never fail).
fn inputs(kind: &str, target: &str, optional: bool) -> Vec<(String, Vec<u8>)> {
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
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// The seeds of `target`, which must be there.
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let seeds = inputs("seeds", target, false);
    assert!(!seeds.is_empty(), "fuzz/seeds/{target}/ is empty");
    seeds
}

/// The minimised corpus of `target`'s recorded runs, which must be there, then the inputs that once failed it.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut all = inputs("minimised", target, false);
    assert!(!all.is_empty(), "fuzz/minimised/{target}/ is empty");
    all.extend(inputs("regressions", target, true));
    all
}

/// Replicas in `node_frames`'s cluster (Raft ids 1 to 3; `REPLICAS` in `fuzz/src/lib.rs`).
const REPLICAS: u64 = 3;

/// How `node_frames` reads a Raft input (`raft_split` in `fuzz/src/lib.rs`): the first byte's low three bits are the
/// sending Raft id, the next two the receiving replica's index (3 wraps to 0); the rest is the message.
fn raft_split(data: &[u8]) -> Option<(u64, usize, &[u8])> {
    let (&first, message) = data.split_first()?;
    Some((
        u64::from(first & 0x07),
        usize::from((first >> 3) & 0x03) % REPLICAS as usize,
        message,
    ))
}

/// Three started replicas that trust each other, configured as `node_frames`'s (`running_cluster` in
/// `fuzz/src/lib.rs`, before its election and writes).
fn cluster() -> Cluster {
    let ids = fixture_identities();
    let trusted: BTreeMap<RaftId, String> = (1..=REPLICAS)
        .map(|id| (RaftId(id), ids[id as usize - 1].cert_pem.clone()))
        .collect();
    let mut cluster = Cluster::new(LedgerSecret::from_bytes([9u8; 32]));
    for id in 1..=REPLICAS {
        let mut cfg = ReplicaConfig::new(RaftId(id));
        cfg.signature_interval_tx = 2;
        let persisted = PersistedState {
            voters: (1..=REPLICAS).collect(),
            recovery: None,
            ..Default::default()
        };
        let i = cluster.add_node(cfg, ids[id as usize - 1].clone(), trusted.clone(), persisted);
        cluster.start(i).unwrap();
    }
    cluster
}

#[test]
fn node_frames_forwarded_seeds_decode_and_re_encode_to_the_same_bytes() {
    let seeds = seeds("node_frames");
    let (mut requests, mut responses) = (0, 0);
    for (name, bytes) in seeds.iter().filter(|(n, _)| n.ends_with(".cbor")) {
        if name.starts_with("forwarded_request") {
            let request = ForwardedRequest::decode(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                request.encode().as_ref(),
                &bytes[..],
                "{name} re-encodes to other bytes"
            );
            assert!(
                ForwardedResponse::decode(bytes).is_err(),
                "{name} decodes as a response too"
            );
            requests += 1;
        } else if name.starts_with("forwarded_response") {
            let response = ForwardedResponse::decode(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                response.encode().as_ref(),
                &bytes[..],
                "{name} re-encodes to other bytes"
            );
            assert!(
                ForwardedRequest::decode(bytes).is_err(),
                "{name} decodes as a request too"
            );
            responses += 1;
        } else {
            panic!("{name}: a frame seed that is neither a forwarded request nor a response");
        }
    }
    assert!(
        requests >= 1 && responses >= 1,
        "{requests} request and {responses} response seeds"
    );
    // The minimised corpus and the inputs that once failed the target: whatever decodes re-decodes to the same
    // frame from its encoding.
    for (name, bytes) in corpus("node_frames") {
        if let Ok(request) = ForwardedRequest::decode(&bytes) {
            assert_eq!(
                ForwardedRequest::decode(&request.encode()).as_ref(),
                Ok(&request),
                "{name}"
            );
        }
        if let Ok(response) = ForwardedResponse::decode(&bytes) {
            assert_eq!(
                ForwardedResponse::decode(&response.encode()).as_ref(),
                Ok(&response),
                "{name}"
            );
        }
    }
}

/// Each Raft seed is a message between two members, as `node_frames` splits it: delivered to its replica, it passes
/// the size limit and decodes as a Raft message, and no replica halts. The guard may refuse what does not fit a
/// fresh replica's state (a heartbeat committing past its empty log), but most seeds get through to raft-rs.
#[test]
fn node_frames_raft_seeds_reach_raft_between_members() {
    let seeds = seeds("node_frames");
    let raft: Vec<_> = seeds.iter().filter(|(n, _)| n.starts_with("raft_")).collect();
    assert!(raft.len() >= 10, "{} Raft seeds", raft.len());
    assert_eq!(
        raft.len() + seeds.iter().filter(|(n, _)| n.ends_with(".cbor")).count(),
        seeds.len(),
        "node_frames seeds that are neither Raft messages nor forwarded frames"
    );
    let mut stepped = 0;
    for (name, bytes) in &raft {
        let (from, to, message) = raft_split(bytes).unwrap_or_else(|| panic!("{name} is empty"));
        assert!((1..=REPLICAS).contains(&from), "{name}: sent by Raft id {from}");
        assert_ne!(from, to as u64 + 1, "{name}: sent to itself");
        let mut cluster = cluster();
        let actions = cluster.step(
            to,
            Event::Receive {
                from: RaftId(from),
                message: message.to_vec(),
            },
        );
        let mut refused = false;
        for a in &actions {
            match a {
                Action::Halted { .. }
                | Action::Dropped {
                    error: ConsensusError::MalformedMessage(MessageError::Decode(_)) | ConsensusError::TooLarge { .. },
                    ..
                } => panic!("{name}: {a:?}"),
                Action::Dropped { .. } => refused = true,
                _ => {}
            }
        }
        stepped += usize::from(!refused);
    }
    assert!(
        stepped * 2 > raft.len(),
        "only {stepped} of {} Raft seeds were stepped",
        raft.len()
    );
}

#[test]
fn join_request_seeds_parse_as_the_join_endpoint_parses_them() {
    let seeds = seeds("join_request");
    let mut formats = Vec::new();
    for (name, bytes) in &seeds {
        let join = parse_join(bytes).unwrap_or_else(|e| panic!("{name}: {} {}: {}", e.status, e.code, e.message));
        let spki = join.key.to_spki_der();
        assert_eq!(join.node_id.as_str(), consort_crypto::key_id(&spki), "{name}");
        // The evidence is what the seed's name says, and binds the key (the SNP test report passes every check
        // but the binding: it was made for another key).
        let verified = consort_attest::verify(&join.evidence, &spki);
        match join.evidence.format {
            PlatformKind::Virtual => {
                assert!(name.starts_with("virtual"), "{name}: virtual evidence");
                assert!(verified.is_ok(), "{name}: {verified:?}");
            }
            PlatformKind::Snp => {
                assert!(name.starts_with("snp"), "{name}: SNP evidence");
                assert!(
                    matches!(verified, Err(AttestError::KeyBindingMismatch)),
                    "{name}: {verified:?}"
                );
            }
        }
        formats.push(join.evidence.format);
    }
    assert!(
        formats.contains(&PlatformKind::Virtual) && formats.contains(&PlatformKind::Snp),
        "{formats:?}"
    );
    for (name, bytes) in corpus("join_request") {
        if let Err(e) = parse_join(&bytes) {
            assert!(
                (400..500).contains(&e.status),
                "{name}: {} {}: {}",
                e.status,
                e.code,
                e.message
            );
        }
    }
}

/// The bundle a snapshot file's Raft snapshot carries, rebuilt from its parts: magic (`MAGIC` in
/// consort-consensus's `snapshot.rs`), the signature entry's length, the signature entry, the snapshot entry.
fn bundle(signature_entry: &[u8], snapshot_entry: &[u8]) -> Vec<u8> {
    let mut out = b"CSB1".to_vec();
    out.extend_from_slice(&(signature_entry.len() as u64).to_le_bytes());
    out.extend_from_slice(signature_entry);
    out.extend_from_slice(snapshot_entry);
    out
}

/// Each seed is a committed snapshot file under its committed name: it splits into entries that parse whole at
/// the seqno it names, is exactly the Raft snapshot of the bundle those parts make, and reads back through
/// `read_verified` (as the node serves it to a joiner) against evidence of that bundle's digest, and only that.
#[test]
fn snapshot_file_seeds_read_and_verify_as_the_node_reads_them() {
    let seeds = seeds("snapshot_file");
    let dir = fuzz_dir().join("seeds/snapshot_file");
    let files = list_committed(&dir);
    assert_eq!(
        files.len(),
        seeds.len(),
        "snapshot_file seeds not named as committed snapshots"
    );
    for file in &files {
        let name = file.path.display();
        let bytes = std::fs::read(&file.path).unwrap();
        let parts = split_snapshot_file(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(parts.seqno, file.seqno, "{name}");
        for entry in [&parts.signature_entry, &parts.snapshot_entry] {
            let (e, used) = consort_ledger::parse_entry(entry).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                (used, e.seqno, e.view),
                (entry.len(), parts.seqno, parts.view),
                "{name}"
            );
        }
        let data = bundle(&parts.signature_entry, &parts.snapshot_entry);
        let digest = consort_crypto::sha256(&data);
        assert_eq!(digest, parts.bundle_digest, "{name}");
        let mut snap = consort_consensus::eraftpb::Snapshot::default();
        snap.mut_metadata().index = parts.seqno;
        snap.mut_metadata().term = parts.view;
        snap.data = data.into();
        assert_eq!(
            consort_consensus::encode_snapshot(&snap),
            bytes,
            "{name} is not the snapshot of its parts"
        );
        let evidence = RecordedEvidence {
            seqno: file.seqno,
            digest,
        };
        assert_eq!(
            read_verified(file, Some(evidence)).unwrap_or_else(|e| panic!("{e}")),
            bytes
        );
        let mut other = evidence;
        other.digest[0] ^= 1;
        assert!(
            matches!(
                read_verified(file, Some(other)),
                Err(UnusableSnapshot::DigestMismatch { .. })
            ),
            "{name} verifies against another digest"
        );
    }
    // The minimised corpus and the inputs that once failed the target: what `split_snapshot_file` accepts parses
    // whole at the seqno it names.
    for (name, bytes) in corpus("snapshot_file") {
        if let Ok(parts) = split_snapshot_file(&bytes) {
            for entry in [&parts.signature_entry, &parts.snapshot_entry] {
                let parsed = consort_ledger::parse_entry(entry).map(|(e, used)| (used, e.seqno));
                assert_eq!(parsed.ok(), Some((entry.len(), parts.seqno)), "{name}");
            }
        }
    }
}

/// The Raft half of `node_frames` over its minimised corpus and regressions: delivered as the target delivers them
/// (to a fresh cluster once one was stepped), no input halts a replica.
#[test]
fn node_frames_corpus_halts_no_replica() {
    let mut fresh = cluster();
    let mut dropped = 0;
    for (name, bytes) in corpus("node_frames") {
        let Some((from, to, message)) = raft_split(&bytes) else {
            continue;
        };
        let actions = fresh.step(
            to,
            Event::Receive {
                from: RaftId(from),
                message: message.to_vec(),
            },
        );
        assert!(
            !actions.iter().any(|a| matches!(a, Action::Halted { .. })),
            "{name}: {actions:?}"
        );
        if actions.iter().any(|a| matches!(a, Action::Dropped { .. })) && fresh.net.is_empty() {
            dropped += 1;
        } else {
            fresh = cluster();
        }
    }
    assert!(dropped > 0, "the minimised corpus holds no refused Raft message");
}
