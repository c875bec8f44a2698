//! Files a hostile host can edit in a node's secrets directory are checked before the node believes them: a
//! `peers.json` naming a signer whose certificate the service did not endorse, and a join record that names the
//! node itself in the service's first membership, make the node refuse to start.

use consort_node::config::NodeConfig;
use consort_node::engine::{Engine, EngineError, JoinRecord, OpenOptions, Start, PEERS_FILE};
use consort_node::identity::Identities;

fn config(dir: &std::path::Path) -> NodeConfig {
    let mut cfg = NodeConfig::default();
    cfg.storage.ledger_dir = dir.join("ledger");
    cfg.storage.snapshots_dir = dir.join("snapshots");
    cfg.storage.secrets_dir = dir.to_path_buf();
    cfg
}

/// [`config`] with the member genesis needs.
fn genesis_config(dir: &std::path::Path) -> NodeConfig {
    let mut cfg = config(dir);
    let member_key = consort_crypto::SigningKey::generate(consort_crypto::Curve::P384);
    let member = consort_crypto::x509::self_signed(&member_key, &consort_crypto::CertParams::new("member0")).unwrap();
    let member_path = dir.join("member0_cert.pem");
    std::fs::write(&member_path, member.pem).unwrap();
    cfg.start.members = vec![consort_node::config::IdentityConfig {
        cert: member_path,
        encryption_public_key: None,
        data: None,
    }];
    cfg
}

fn identity(dir: &std::path::Path) -> Identities {
    Identities::generate(
        &consort_attest::VirtualPlatform::new([0; 32]),
        dir,
        &["127.0.0.1".into()],
    )
    .unwrap()
}

fn refused(result: Result<std::sync::Arc<Engine>, EngineError>) -> String {
    match result {
        Err(e @ EngineError::Refused(_)) => e.to_string(),
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("the node started"),
    }
}

#[test]
fn a_signer_the_service_did_not_endorse_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ids = identity(dir.path());
    // The host's own key and a self-signed certificate, under the node id that key gives.
    let key = consort_crypto::SigningKey::generate(consort_crypto::Curve::P384);
    let cert = consort_crypto::x509::self_signed(&key, &consort_crypto::CertParams::new("CCF Node")).unwrap();
    let node_id = consort_crypto::key_id(&key.verifying_key().to_spki_der());
    let peers = serde_json::json!({ node_id: cert.pem });
    std::fs::write(dir.path().join(PEERS_FILE), peers.to_string()).unwrap();
    let err = refused(Engine::open(config(dir.path()), ids));
    assert!(err.contains("did not endorse"), "{err}");
}

#[test]
fn an_endorsed_certificate_under_another_nodes_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ids = identity(dir.path());
    // This node's own endorsed certificate, filed under someone else's node id.
    let peers = serde_json::json!({ "ab".repeat(32): ids.node_cert_pem.clone() });
    std::fs::write(dir.path().join(PEERS_FILE), peers.to_string()).unwrap();
    let err = refused(Engine::open(config(dir.path()), ids));
    assert!(err.contains("did not endorse"), "{err}");
}

#[test]
fn a_join_record_naming_the_node_in_the_first_membership_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ids = identity(dir.path());
    let record = JoinRecord {
        initial_voters: vec![ids.node_id.raft_id().get()],
        peers: vec![],
    };
    record.save(&config(dir.path()), None).unwrap();
    let options = OpenOptions {
        start: Start::Joined,
        attestation: None,
        ..OpenOptions::default()
    };
    let err = refused(Engine::open_with(config(dir.path()), ids, options));
    assert!(err.contains("first membership"), "{err}");
}

#[test]
fn a_join_record_that_does_not_parse_stops_the_node_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let ids = identity(dir.path());
    std::fs::write(
        dir.path().join(consort_node::engine::JOIN_FILE),
        b"{\"initial_voters\": \"all\"}",
    )
    .unwrap();
    let options = OpenOptions {
        start: Start::Joined,
        attestation: None,
        ..OpenOptions::default()
    };
    match Engine::open_with(config(dir.path()), ids, options) {
        Err(e @ EngineError::JoinRecord { .. }) => {
            assert!(e.to_string().contains(consort_node::engine::JOIN_FILE), "{e}")
        }
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("the node started"),
    }
    assert!(
        !dir.path().join("raft_hard_state").exists(),
        "the refused node wrote Raft state"
    );
}

#[test]
fn a_node_whose_raft_state_was_deleted_but_whose_ledger_remains_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let ids = identity(dir.path());
    let platform = consort_attest::VirtualPlatform::new([0; 32]);
    let engine = Engine::open(genesis_config(dir.path()), ids).unwrap();
    // Genesis made the Raft state durable before its first ledger entry, so the ledger is never alone on disk.
    let hard_state = dir.path().join(consort_node::engine::HARD_STATE_FILE);
    assert!(hard_state.exists(), "genesis wrote no Raft state");
    engine.persist_loop(&std::sync::atomic::AtomicBool::new(true));
    drop(engine);
    let ledger_files = std::fs::read_dir(dir.path().join("ledger")).unwrap().count();
    assert!(ledger_files > 0, "genesis wrote no ledger");

    // The host deletes the Raft state (the term and vote this node gave) and keeps the ledger.
    std::fs::remove_file(&hard_state).unwrap();
    let ids = Identities::load(&platform, dir.path()).unwrap();
    let options = OpenOptions {
        start: Start::Restart,
        attestation: None,
        ..OpenOptions::default()
    };
    let err = refused(Engine::open_with(config(dir.path()), ids, options));
    assert!(
        err.contains(consort_node::engine::HARD_STATE_FILE) && err.contains("voted"),
        "{err}"
    );
    assert!(!hard_state.exists(), "the refused node wrote a fresh Raft state");
}

#[test]
fn a_changed_byte_inside_an_encrypted_entry_stops_the_node_naming_the_chunk_file() {
    let dir = tempfile::tempdir().unwrap();
    let ids = identity(dir.path());
    let engine = Engine::open(genesis_config(dir.path()), ids).unwrap();
    for k in 0u64..3 {
        engine
            .execute_write(|tx, _| -> Result<(), ()> {
                tx.put("records", &k.to_le_bytes(), b"private value");
                Ok(())
            })
            .unwrap();
    }
    engine.persist_loop(&std::sync::atomic::AtomicBool::new(true));
    drop(engine);

    // The host flips the last byte of the private domain of the first entry that has one.
    let mut flipped = None;
    for f in std::fs::read_dir(dir.path().join("ledger")).unwrap() {
        let path = f.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        let mut at = 8;
        while let Ok((entry, used)) = consort_ledger::parse_entry(&bytes[at..]) {
            if !entry.encrypted_private.is_empty() {
                let seqno = entry.seqno;
                bytes[at + used - 1] ^= 0x01;
                std::fs::write(&path, &bytes).unwrap();
                flipped = Some((path.clone(), seqno));
                break;
            }
            at += used;
        }
        if flipped.is_some() {
            break;
        }
    }
    let (chunk, seqno) = flipped.expect("no entry with a private domain");
    let platform = consort_attest::VirtualPlatform::new([0; 32]);
    let ids = Identities::load(&platform, dir.path()).unwrap();
    let options = OpenOptions {
        start: Start::Restart,
        attestation: None,
        ..OpenOptions::default()
    };
    match Engine::open_with(config(dir.path()), ids, options) {
        Err(e @ EngineError::DamagedEntry { .. }) => {
            let text = e.to_string();
            assert!(text.contains(&chunk.display().to_string()), "{text}");
            assert!(text.contains(&format!("seqno {seqno}")), "{text}");
        }
        Err(other) => panic!("refused without naming the chunk: {other}"),
        Ok(_) => panic!("the node started over a damaged entry"),
    }
}
