//! Fixtures shared by the fuzz targets and `examples/fuzz_seeds.rs`: the fixed member table of `gov_request`, the
//! running Raft cluster of `node_frames`, and how both targets split their input, so that the seeds the example
//! writes are read by the targets exactly as it meant them. The modules hold the properties of the targets whose
//! seeds are replayed in the main workspace's tests (which include them with `#[path]`).

pub mod kv_snapshot;
pub mod ledger_load;
pub mod merkle_tree;
pub mod signature_record;
pub mod signature_replica;

pub use ledger_load::{ledger_dir_files, ledger_dir_input, LEDGER_LOAD_MAX_FILES};

use consort_consensus::testing::{fixture_identities, Cluster, Message as Sent};
use consort_consensus::{Action, Event, PersistedState, RaftId, ReplicaConfig};
use consort_crypto::SigningKey;
use consort_gov::{genesis, MemberSpec, MsgType, DEFAULT_CONSTITUTION};
use consort_kv::{CommitOutcome, Store};
use consort_ledger::LedgerSecret;
use std::collections::BTreeMap;

/// The members of `gov_request`'s table: private key PEM and certificate PEM (member 0 on P-384, member 1 on P-256,
/// so both algorithms are reached). Test keys made for the fuzzer; they sign nothing else.
pub const GOV_MEMBERS: [(&str, &str); 2] = [
    (
        include_str!("../gov/member0_privk.pem"),
        include_str!("../gov/member0_cert.pem"),
    ),
    (
        include_str!("../gov/member1_privk.pem"),
        include_str!("../gov/member1_cert.pem"),
    ),
];

/// The time `gov_request` verifies at (seconds since the epoch); the seeds are created at it.
pub const GOV_NOW: i64 = 1_700_000_000;

/// The proposal id `gov_request` passes as the URL's when the input asks for one; the seed ballots name it.
pub const GOV_PROPOSAL_ID: &str = "1f7ab6e2c2d6a0f0e7a8c0b5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5";

/// The message types, indexed by the low three bits of `gov_request`'s first byte (7 wraps to 0).
pub const GOV_MSG_TYPES: [MsgType; 7] = [
    MsgType::Proposal,
    MsgType::Ballot,
    MsgType::Withdrawal,
    MsgType::Ack,
    MsgType::StateDigest,
    MsgType::RecoveryShare,
    MsgType::EncryptedRecoveryShare,
];

/// Bit of `gov_request`'s first byte that makes it pass [`GOV_PROPOSAL_ID`] as the URL's proposal id.
pub const GOV_WITH_PROPOSAL_ID: u8 = 0x08;

/// How `gov_request` reads its input: the first byte picks the expected message type and whether the URL names a
/// proposal; the rest is the request body.
pub fn gov_split(data: &[u8]) -> Option<(MsgType, Option<&'static str>, &[u8])> {
    let (&first, body) = data.split_first()?;
    let msg_type = GOV_MSG_TYPES[usize::from(first & 0x07) % GOV_MSG_TYPES.len()];
    let proposal_id = (first & GOV_WITH_PROPOSAL_ID != 0).then_some(GOV_PROPOSAL_ID);
    Some((msg_type, proposal_id, body))
}

/// The first byte [`gov_split`] reads as `msg_type` and `with_proposal_id`.
pub fn gov_prefix(msg_type: MsgType, with_proposal_id: bool) -> u8 {
    let index = GOV_MSG_TYPES.iter().position(|t| *t == msg_type).unwrap_or(0) as u8;
    index | if with_proposal_id { GOV_WITH_PROPOSAL_ID } else { 0 }
}

/// The signing keys of [`GOV_MEMBERS`] and their member ids.
pub fn gov_signers() -> Vec<(SigningKey, String)> {
    GOV_MEMBERS
        .iter()
        .map(|(key, cert)| {
            let key = SigningKey::from_pem(key).expect("fixture member key parses");
            let id = consort_crypto::ParsedCert::from_pem(cert)
                .expect("fixture member certificate parses")
                .cert_id();
            (key, id)
        })
        .collect()
}

/// A store holding the governance genesis state with [`GOV_MEMBERS`] as its (Active) members.
pub fn gov_store() -> Store {
    let store = Store::new();
    let mut tx = store.begin();
    let members: Vec<MemberSpec> = GOV_MEMBERS
        .iter()
        .map(|(_, cert)| MemberSpec {
            cert_pem: (*cert).into(),
            encryption_public_key_pem: None,
            member_data: None,
            recovery_role: None,
        })
        .collect();
    genesis(&mut tx, &members, &[], DEFAULT_CONSTITUTION, 1).expect("fixture genesis");
    store.commit(tx, |_, _| ()).expect("fixture genesis commits");
    store
}

/// Replicas in `node_frames`'s cluster (Raft ids 1 to 3).
pub const REPLICAS: u64 = 3;

/// How `node_frames` reads a Raft input: the first byte's low three bits are the Raft id the channel authenticated
/// (0 to 7, so non-members and this replica's own id are reached too) and the next two bits pick the receiving
/// replica (index 0 to 2, 3 wraps to 0); the rest is the encoded Raft message.
pub fn raft_split(data: &[u8]) -> Option<(u64, usize, &[u8])> {
    let (&first, message) = data.split_first()?;
    let from = u64::from(first & 0x07);
    let to = usize::from((first >> 3) & 0x03) % REPLICAS as usize;
    Some((from, to, message))
}

/// The first byte [`raft_split`] reads as sender `from` and receiver Raft id `to`.
pub fn raft_prefix(from: u64, to: u64) -> u8 {
    ((from & 0x07) as u8) | ((((to - 1) % REPLICAS) as u8) << 3)
}

/// Three replicas with replica 1 elected and a few writes committed, and the messages they exchanged on the way.
pub fn running_cluster() -> (Cluster, Vec<Sent>) {
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
            ..Default::default()
        };
        let i = cluster.add_node(cfg, ids[id as usize - 1].clone(), trusted.clone(), persisted);
        cluster.start(i).expect("fixture replica opens");
    }
    let mut seen = Vec::new();
    let halts = step_and_settle(&mut cluster, 0, Event::Campaign, &mut seen);
    assert!(halts.is_empty(), "fixture cluster halted: {halts:?}");
    for key in 0..4u64 {
        let store = cluster.replica(0).store().clone();
        let mut tx = store.begin();
        tx.put("public:records", &key.to_le_bytes(), b"v");
        let (version, write_set) = match store.commit(tx, |v, ws| (v, ws.clone())) {
            Ok(CommitOutcome::Committed { result, .. }) => result,
            other => panic!("fixture write: {other:?}"),
        };
        let halts = step_and_settle(&mut cluster, 0, Event::Propose { version, write_set }, &mut seen);
        assert!(halts.is_empty(), "fixture cluster halted: {halts:?}");
    }
    for _ in 0..5 {
        for i in 0..REPLICAS as usize {
            let halts = step_and_settle(&mut cluster, i, Event::Tick, &mut seen);
            assert!(halts.is_empty(), "fixture cluster halted: {halts:?}");
        }
    }
    assert!(cluster.replica(0).is_leader(), "fixture cluster elected replica 1");
    (cluster, seen)
}

/// Steps replica `i` with `event`, carries out every persist at once and delivers what the replicas send until the
/// network is quiet (or a bounded number of deliveries), recording the delivered messages in `seen`. Returns the
/// halts any replica reported.
pub fn step_and_settle(cluster: &mut Cluster, i: usize, event: Event, seen: &mut Vec<Sent>) -> Vec<Action> {
    let mut halts = Vec::new();
    let mut keep =
        |actions: Vec<Action>| halts.extend(actions.into_iter().filter(|a| matches!(a, Action::Halted { .. })));
    keep(cluster.step(i, event));
    persist_all(cluster, i, &mut keep);
    for _ in 0..10_000 {
        if cluster.net.is_empty() {
            break;
        }
        let m = cluster.net.remove(0);
        seen.push(m.clone());
        let to = m.to as usize - 1;
        if cluster.nodes.get(to).is_none_or(|n| n.replica.is_none()) {
            continue;
        }
        keep(cluster.step(
            to,
            Event::Receive {
                from: RaftId(m.from),
                message: m.bytes,
            },
        ));
        persist_all(cluster, to, &mut keep);
    }
    halts
}

fn persist_all(cluster: &mut Cluster, i: usize, keep: &mut impl FnMut(Vec<Action>)) {
    while !cluster.nodes[i].pending.is_empty() {
        match cluster.persist(i, 1) {
            Ok(actions) => keep(actions),
            Err(e) => panic!("fixture disk refused a persist: {e}"),
        }
    }
    cluster.nodes[i].builds.clear();
}
