//! Writes the seed inputs of the `join_request`, `gov_request`, `node_frames`, `ledger_load`, `snapshot_file`,
//! `merkle_tree`, `signature_record` and `kv_snapshot` fuzz targets into `fuzz/seeds/` (for `ledger_load`: a small
//! valid ledger's chunk files, with and without a torn tail; for the last three, what their modules in `src/`
//! build, each checked with the target's own properties before it is written):
//! valid join requests (virtual and SNP evidence), governance requests signed by the fixed members for each
//! message type (a high-S twin too), and forwarded frames and the Raft messages of a cluster electing a primary and
//! committing writes, so that the fuzzer starts past the decoders and reaches the checks behind them.
//!
//! Run: `cd fuzz && cargo run --example fuzz_seeds` (rewrites those directories). `consort-gov`'s
//! `fuzz_replay_gov_request` test checks in every test run that the `gov_request` seeds still verify;
//! `consort-ledger`'s and `consort-kv`'s `fuzz_replay` tests check the `merkle_tree`, `signature_record` and
//! `kv_snapshot` seeds, `consort-ledger`'s `fuzz_replay_load` the `ledger_load` seeds, and `consort-node`'s
//! `fuzz_replay` the `node_frames`, `join_request` and `snapshot_file` seeds.

use std::collections::BTreeSet;
use std::path::Path;

use consort_attest::{Evidence, Platform, PlatformKind, VirtualPlatform};
use consort_consensus::testing::fixture_identities;
use consort_fuzz::{gov_prefix, gov_signers, raft_prefix, running_cluster, GOV_NOW, GOV_PROPOSAL_ID};
use consort_gov::{sign_gov_request, MsgType};
use consort_node::api::join::JoinRequest;
use consort_node::net::forwarding::{ForwardedRequest, ForwardedResponse};

/// Raft messages kept as seeds, at most (the cluster exchanges many alike).
const MAX_RAFT_SEEDS: usize = 40;

fn fresh_dir(dir: &Path) -> std::io::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)
}

fn join_seeds(out: &Path) -> std::io::Result<()> {
    fresh_dir(out)?;
    let key = &fixture_identities()[0].key;
    let spki = key.verifying_key().to_spki_der();
    let virtual_evidence = VirtualPlatform::new(consort_crypto::sha256(b"fuzz"))
        .evidence_for(&spki)
        .map_err(std::io::Error::other)?;
    let attest_data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/consort-attest/tests/data");
    let report = std::fs::read_to_string(attest_data.join("report_milan.hex"))?;
    let snp_evidence = Evidence {
        format: PlatformKind::Snp,
        quote: hex::decode(report.trim()).map_err(std::io::Error::other)?,
        endorsements: std::fs::read(attest_data.join("vcek_milan.der"))?,
    };
    // The node's RSA encryption key that rekeys encrypt new ledger secrets to (required in a join).
    let (_, enc_public) = consort_crypto::rsa_keys::generate_pem(2048).map_err(std::io::Error::other)?;
    for (name, evidence, n2n, rpc) in [
        ("virtual.json", &virtual_evidence, "127.0.0.1:8081", "127.0.0.1:8080"),
        ("snp_ipv6.json", &snp_evidence, "[::1]:9001", "[::1]:9000"),
    ] {
        let request = JoinRequest {
            public_key: key.verifying_key().to_pem(),
            node_to_node_address: n2n.into(),
            rpc_address: rpc.into(),
            quote_info: evidence.to_json_value(),
            encryption_public_key: Some(enc_public.clone()),
            certificate_signing_request: Some(
                consort_node::engine::certificates::node_signing_request(&key, rpc).map_err(std::io::Error::other)?,
            ),
        };
        let body = serde_json::to_vec_pretty(&request).map_err(std::io::Error::other)?;
        consort_node::api::join::parse_join(&body).map_err(|e| std::io::Error::other(e.message))?;
        std::fs::write(out.join(name), body)?;
    }
    Ok(())
}

fn cose_error(e: coset::CoseError) -> std::io::Error {
    std::io::Error::other(format!("{e:?}"))
}

fn gov_seeds(out: &Path) -> std::io::Result<()> {
    fresh_dir(out)?;
    let signers = gov_signers();
    let proposal = br#"{"actions": [{"name": "set_recovery_threshold", "args": {"recovery_threshold": 1}}]}"#;
    let requests: [(&str, usize, MsgType, Option<&str>, &[u8]); 7] = [
        ("proposal_p384", 0, MsgType::Proposal, None, proposal),
        ("proposal_p256", 1, MsgType::Proposal, None, proposal),
        (
            "ballot_p256",
            1,
            MsgType::Ballot,
            Some(GOV_PROPOSAL_ID),
            br#"{"ballot": "export function vote(proposal, proposerId) { return true; }"}"#,
        ),
        ("withdrawal_p384", 0, MsgType::Withdrawal, Some(GOV_PROPOSAL_ID), b""),
        ("ack_p384", 0, MsgType::Ack, None, br#"{"state_digest": "00"}"#),
        ("state_digest_p256", 1, MsgType::StateDigest, None, b""),
        (
            "recovery_share_p384",
            0,
            MsgType::RecoveryShare,
            None,
            br#"{"share": "AAAA"}"#,
        ),
    ];
    for (name, member, msg_type, proposal_id, payload) in requests {
        let (key, id) = &signers[member];
        let body = sign_gov_request(key, id, msg_type, GOV_NOW, proposal_id, payload);
        let mut input = vec![gov_prefix(msg_type, proposal_id.is_some())];
        input.extend_from_slice(&body);
        std::fs::write(out.join(format!("{name}.cose")), &input)?;
        if name == "proposal_p384" {
            // The same request with the signature's twin (r, n - s), which verifies too.
            let mut sign1 =
                <coset::CoseSign1 as coset::TaggedCborSerializable>::from_tagged_slice(&body).map_err(cose_error)?;
            sign1.signature =
                consort_crypto::malleate_raw(key.curve(), &sign1.signature).map_err(std::io::Error::other)?;
            let twin = coset::TaggedCborSerializable::to_tagged_vec(sign1).map_err(cose_error)?;
            let mut input = vec![gov_prefix(msg_type, false)];
            input.extend_from_slice(&twin);
            std::fs::write(out.join("proposal_p384_high_s.cose"), &input)?;
        }
    }
    Ok(())
}

fn frame_seeds(out: &Path) -> std::io::Result<()> {
    fresh_dir(out)?;
    let request = ForwardedRequest {
        id: 7,
        method: "POST".into(),
        target: "/app/log/private?id=1".into(),
        caller: Some("ab".repeat(32)),
        content_type: "application/json".into(),
        body: br#"{"id": 1, "msg": "hello"}"#.to_vec(),
        headers: vec![("authorization".into(), "Bearer e30.e30.sig".into())],
    };
    let response = ForwardedResponse {
        id: 7,
        status: 200,
        txid: Some("2.10".into()),
        content_type: "application/json".into(),
        body: b"{}".to_vec(),
        headers: vec![("x-app".into(), "1".into())],
    };
    std::fs::write(out.join("forwarded_request.cbor"), request.encode())?;
    std::fs::write(out.join("forwarded_response.cbor"), response.encode())?;
    let (_, seen) = running_cluster();
    // Every distinct message once, in the order they were sent, then evenly spaced picks from the whole exchange
    // (election, appends with entries, signatures, heartbeats and their responses).
    let mut distinct = BTreeSet::new();
    let mut inputs = Vec::new();
    for m in seen {
        let mut input = vec![raft_prefix(m.from, m.to)];
        input.extend_from_slice(&m.bytes);
        if distinct.insert(input.clone()) {
            inputs.push(input);
        }
    }
    let step = inputs.len().div_ceil(MAX_RAFT_SEEDS).max(1);
    for (k, input) in inputs.iter().step_by(step).enumerate() {
        std::fs::write(out.join(format!("raft_{k:02}.bin")), input)?;
    }
    Ok(())
}

/// `ledger_load` seeds: the chunk files of a small valid ledger (closed chunks, committed and not, and an open
/// one), the same with a torn tail, and the open chunk alone.
fn ledger_load_seeds(out: &Path) -> std::io::Result<()> {
    use consort_ledger::{testing::sample_ledger, Ledger, MemStorage};
    fresh_dir(out)?;
    let mut b = sample_ledger(2, 2); // signatures at 2, 6 and 9
    b.log_tx(100, "tail");
    b.log_tx(101, "tail");
    let (mut l, _) = Ledger::open(MemStorage::new(), 1).map_err(std::io::Error::other)?;
    for e in b.entries() {
        l.append(e.seqno, &e.bytes, e.is_signature)
            .map_err(std::io::Error::other)?;
    }
    l.commit(6).map_err(std::io::Error::other)?;
    l.settle().map_err(std::io::Error::other)?;
    let files: Vec<(String, Vec<u8>)> = l.storage().files().clone().into_iter().collect();
    let mut torn = files.clone();
    if let Some((_, open)) = torn.iter_mut().find(|(n, _)| !n.contains('-')) {
        open.extend_from_slice(&b.entries()[3].bytes[..40]);
    }
    let open_only: Vec<_> = files.iter().filter(|(n, _)| !n.contains('-')).cloned().collect();
    for (name, set) in [("ledger", &files), ("torn_tail", &torn), ("open_chunk", &open_only)] {
        let input = consort_fuzz::ledger_dir_input(set).ok_or_else(|| std::io::Error::other("seed layout"))?;
        std::fs::write(out.join(name), input)?;
    }
    Ok(())
}

fn write_all(dir: &Path, seeds: Vec<(String, Vec<u8>)>) -> std::io::Result<()> {
    fresh_dir(dir)?;
    for (name, bytes) in seeds {
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}

/// `merkle_tree`, `signature_record` and `kv_snapshot` seeds, each accepted by its target's checks; and a
/// `snapshot_file` seed: the committed snapshot file of the `signature_record` fixture's genuine bundle.
fn module_seeds(seeds: &Path) -> std::io::Result<()> {
    use consort_fuzz::{kv_snapshot, merkle_tree, signature_record, signature_replica};
    let refused = |target: &str, name: &str| std::io::Error::other(format!("{target} seed {name} is refused"));
    let trees = merkle_tree::seeds();
    for (name, bytes) in &trees {
        merkle_tree::check(bytes).ok_or_else(|| refused("merkle_tree", name))?;
    }
    write_all(&seeds.join("merkle_tree"), trees)?;
    let snapshots = kv_snapshot::seeds();
    for (name, bytes) in &snapshots {
        kv_snapshot::check(bytes).ok_or_else(|| refused("kv_snapshot", name))?;
    }
    write_all(&seeds.join("kv_snapshot"), snapshots)?;
    let fx = signature_record::Fixture::new();
    let records = signature_record::seeds(&fx);
    for (name, bytes) in &records {
        signature_record::audit(&fx, bytes).map_err(|e| std::io::Error::other(format!("{name}: {e}")))?;
    }
    let genuine = fx.genuine().to_json_bytes();
    signature_replica::open(&fx, &genuine).map_err(std::io::Error::other)?;
    write_all(&seeds.join("signature_record"), records)?;
    let bundle = signature_replica::bundle(&fx, &genuine).map_err(std::io::Error::other)?;
    let mut snap = consort_consensus::eraftpb::Snapshot::default();
    snap.mut_metadata().index = fx.seqno;
    snap.mut_metadata().term = fx.view;
    snap.data = bundle.into();
    let file = consort_consensus::encode_snapshot(&snap);
    consort_consensus::snapshot_file::split_snapshot_file(&file).map_err(std::io::Error::other)?;
    write_all(
        &seeds.join("snapshot_file"),
        vec![(format!("snapshot_{}_{}.committed", fx.seqno, fx.seqno + 1), file)],
    )
}

fn main() -> std::io::Result<()> {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    module_seeds(&seeds)?;
    ledger_load_seeds(&seeds.join("ledger_load"))?;
    join_seeds(&seeds.join("join_request"))?;
    gov_seeds(&seeds.join("gov_request"))?;
    frame_seeds(&seeds.join("node_frames"))?;
    println!("wrote seeds to {}", seeds.display());
    Ok(())
}
