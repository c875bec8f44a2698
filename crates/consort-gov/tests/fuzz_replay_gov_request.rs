//! Replays the `gov_request` fuzz target's seeds (`fuzz/seeds/gov_request/`): each must still verify against the
//! fixed member table of `fuzz/gov/`, so the fuzzer keeps starting from requests that reach every check. Also
//! replays the seeds and any crash input kept in `fuzz/regressions/gov_request/`: each must be accepted or refused
//! with a 4xx, not panic.

use std::path::{Path, PathBuf};

use consort_gov::{genesis, verify_gov_request, GovError, MemberSpec, MsgType, VerifiedRequest, DEFAULT_CONSTITUTION};
use consort_kv::Store;

/// The fuzz target's clock (keep in step with `GOV_NOW` in `fuzz/src/lib.rs`).
const NOW: i64 = 1_700_000_000;
/// The URL's proposal id when the input asks for one (`GOV_PROPOSAL_ID` in `fuzz/src/lib.rs`).
const PROPOSAL_ID: &str = "1f7ab6e2c2d6a0f0e7a8c0b5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5";
/// The message type each value of the first byte's low three bits stands for (`GOV_MSG_TYPES`).
const MSG_TYPES: [MsgType; 7] = [
    MsgType::Proposal,
    MsgType::Ballot,
    MsgType::Withdrawal,
    MsgType::Ack,
    MsgType::StateDigest,
    MsgType::RecoveryShare,
    MsgType::EncryptedRecoveryShare,
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn store() -> Store {
    let members: Vec<MemberSpec> = ["member0_cert.pem", "member1_cert.pem"]
        .iter()
        .map(|f| MemberSpec {
            cert_pem: std::fs::read_to_string(repo().join("fuzz/gov").join(f)).expect("fuzz member certificate"),
            encryption_public_key_pem: None,
            member_data: None,
            recovery_role: None,
        })
        .collect();
    let store = Store::new();
    let mut tx = store.begin();
    genesis(&mut tx, &members, &[], DEFAULT_CONSTITUTION, 1).unwrap();
    store.commit(tx, |_, _| ()).unwrap();
    store
}

/// Runs one input as the fuzz target reads it (first byte: type and proposal id flag; the rest: the body).
fn replay(store: &Store, input: &[u8]) -> Option<Result<VerifiedRequest, GovError>> {
    let (&first, body) = input.split_first()?;
    let msg_type = MSG_TYPES[usize::from(first & 0x07) % MSG_TYPES.len()];
    let proposal_id = (first & 0x08 != 0).then_some(PROPOSAL_ID);
    let mut tx = store.begin();
    Some(verify_gov_request(&mut tx, body, msg_type, proposal_id, NOW))
}

/// The entries of `dir`, sorted; a missing directory fails the test unless `optional` (a replay of a directory
/// that does not exist could never fail).
fn files(dir: &Path, optional: bool) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

#[test]
fn gov_request_seeds_verify() {
    let store = store();
    let seeds = files(&repo().join("fuzz/seeds/gov_request"), false);
    assert!(seeds.len() >= 7, "the gov_request seeds are missing");
    for seed in seeds {
        let input = std::fs::read(&seed).unwrap();
        let result = replay(&store, &input).expect("a seed is not empty");
        assert!(result.is_ok(), "{}: {result:?}", seed.display());
    }
}

#[test]
fn gov_request_corpus_is_accepted_or_refused_with_a_4xx() {
    let store = store();
    let mut inputs = files(&repo().join("fuzz/seeds/gov_request"), false);
    assert!(!inputs.is_empty(), "the gov_request seeds are missing");
    inputs.extend(files(&repo().join("fuzz/regressions/gov_request"), true));
    for input in inputs {
        let bytes = std::fs::read(&input).unwrap();
        if let Some(Err(e)) = replay(&store, &bytes) {
            assert!((400..500).contains(&e.http_status()), "{}: {e:?}", input.display());
        }
    }
}
