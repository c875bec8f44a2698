//! What a peer's Raft message may carry: forged senders, messages for another replica, non-members and field
//! values raft-rs 0.7 would panic on are dropped (`Action::Dropped`) and never stepped; random and mutated
//! messages never panic a replica, and the cluster goes on committing after them.

use consort_consensus::eraftpb::{ConfState, Entry, Message, MessageType};
use consort_consensus::testing::{fixture_identities, Cluster, Message as Sent};
use consort_consensus::{Action, Event, PersistedState, RaftId, ReplicaConfig, Seqno, TxId, View};
use consort_kv::CommitOutcome;
use consort_ledger::LedgerSecret;
use proptest::prelude::*;
use protobuf::Message as _;
use std::collections::BTreeMap;

/// Three replicas (Raft ids 1-3) with replica 1 elected and a few writes committed; the messages they exchanged
/// are returned as material for mutations.
fn running_cluster() -> (Cluster, Vec<Sent>) {
    running_cluster_trusting(3)
}

/// [`running_cluster`] whose replicas also trust the fixture nodes up to Raft id `trusted` (beyond the three).
fn running_cluster_trusting(trusted: usize) -> (Cluster, Vec<Sent>) {
    let ids = fixture_identities();
    let trusted: BTreeMap<RaftId, String> = ids
        .iter()
        .take(trusted)
        .enumerate()
        .map(|(i, id)| (RaftId(i as u64 + 1), id.cert_pem.clone()))
        .collect();
    let mut c = Cluster::new(LedgerSecret::from_bytes([9u8; 32]));
    for id in 1..=3u64 {
        let mut cfg = ReplicaConfig::new(RaftId(id));
        cfg.signature_interval_tx = 2;
        let persisted = PersistedState {
            voters: vec![1, 2, 3],
            recovery: None,
            ..Default::default()
        };
        let i = c.add_node(cfg, ids[id as usize - 1].clone(), trusted.clone(), persisted);
        c.start(i).expect("open");
    }
    let mut seen = Vec::new();
    step(&mut c, 0, Event::Campaign, &mut seen);
    for k in 0..4u64 {
        write(&mut c, k, &mut seen);
    }
    settle(&mut c, 5, &mut seen);
    assert!(c.replica(0).is_leader());
    (c, seen)
}

/// Steps replica `i` and carries out its persists at once; returns the halts it reported.
fn step(c: &mut Cluster, i: usize, event: Event, seen: &mut Vec<Sent>) -> Vec<Action> {
    let mut actions = c.step(i, event);
    while !c.nodes[i].pending.is_empty() {
        actions.extend(c.persist(i, 1).expect("sync"));
    }
    c.nodes[i].builds.clear();
    deliver_all(c, seen);
    actions
}

fn deliver_all(c: &mut Cluster, seen: &mut Vec<Sent>) {
    for _ in 0..10_000 {
        if c.net.is_empty() {
            return;
        }
        let m = c.net.remove(0);
        seen.push(m.clone());
        let i = m.to as usize - 1;
        let actions = c.step(
            i,
            Event::Receive {
                from: RaftId(m.from),
                message: m.bytes,
            },
        );
        assert_no_halt(&actions);
        while !c.nodes[i].pending.is_empty() {
            assert_no_halt(&c.persist(i, 1).expect("sync"));
        }
    }
}

fn assert_no_halt(actions: &[Action]) {
    for a in actions {
        assert!(!matches!(a, Action::Halted { .. }), "a replica halted: {a:?}");
    }
}

fn settle(c: &mut Cluster, ticks: usize, seen: &mut Vec<Sent>) {
    for _ in 0..ticks {
        for i in 0..3 {
            step(c, i, Event::Tick, seen);
        }
    }
}

fn write(c: &mut Cluster, key: u64, seen: &mut Vec<Sent>) {
    let store = c.replica(0).store().clone();
    let mut tx = store.begin();
    tx.put("public:records", &key.to_le_bytes(), b"v");
    let (version, write_set) = match store.commit(tx, |v, ws| (v, ws.clone())) {
        Ok(CommitOutcome::Committed { result, .. }) => result,
        other => panic!("{other:?}"),
    };
    step(
        c,
        0,
        Event::Propose {
            version,
            write_set,
            claims_digest: None,
        },
        seen,
    );
}

fn encode(m: &Message) -> Vec<u8> {
    m.write_to_bytes().expect("encodes")
}

/// Delivers `m` to replica `to` as coming from Raft id `from`; returns whether it was dropped.
fn inject(c: &mut Cluster, from: u64, to: u64, m: &Message) -> bool {
    let i = to as usize - 1;
    let actions = c.step(
        i,
        Event::Receive {
            from: RaftId(from),
            message: encode(m),
        },
    );
    assert_no_halt(&actions);
    actions.iter().any(|a| matches!(a, Action::Dropped { .. }))
}

fn message(t: MessageType, from: u64, to: u64, term: u64) -> Message {
    let mut m = Message::default();
    m.set_msg_type(t);
    m.from = from;
    m.to = to;
    m.term = term;
    m
}

fn state(c: &Cluster) -> Vec<(View, Seqno, TxId)> {
    (0..3)
        .map(|i| {
            let r = c.replica(i);
            (r.view(), r.last_seqno(), r.commit_point())
        })
        .collect()
}

#[test]
fn a_heartbeat_committing_beyond_the_log_is_dropped_not_stepped() {
    let (mut c, _) = running_cluster();
    let before = state(&c);
    let last = c.replica(1).last_seqno().get();
    let term = c.replica(0).view().get();
    let mut hb = message(MessageType::MsgHeartbeat, 1, 2, term);
    hb.commit = last + 1_000;
    assert!(inject(&mut c, 1, 2, &hb), "a heartbeat past the log was stepped");
    // The same with a higher term (raft-rs would first make the receiver a follower in that term).
    hb.term = term + 5;
    assert!(inject(&mut c, 1, 2, &hb));
    assert_eq!(state(&c), before);
}

#[test]
fn forged_senders_foreign_receivers_and_local_message_types_are_dropped() {
    let (mut c, _) = running_cluster();
    let before = state(&c);
    let term = c.replica(0).view().get();
    // Replica 3 sends a heartbeat claiming to be the primary (1).
    assert!(inject(&mut c, 3, 2, &message(MessageType::MsgHeartbeat, 1, 2, term)));
    // A message for replica 3 delivered to 2.
    assert!(inject(&mut c, 1, 2, &message(MessageType::MsgHeartbeat, 1, 3, term)));
    // Messages raft-rs only makes for itself: a peer must not make a replica campaign or propose.
    for t in [
        MessageType::MsgHup,
        MessageType::MsgBeat,
        MessageType::MsgPropose,
        MessageType::MsgCheckQuorum,
        MessageType::MsgUnreachable,
        MessageType::MsgSnapStatus,
        MessageType::MsgReadIndex,
        MessageType::MsgTransferLeader,
    ] {
        assert!(inject(&mut c, 3, 2, &message(t, 3, 2, term)), "{t:?} was stepped");
    }
    // A term of 0 would skip raft-rs's term checks.
    assert!(inject(&mut c, 3, 2, &message(MessageType::MsgAppend, 3, 2, 0)));
    assert_eq!(state(&c), before);
}

#[test]
fn non_members_cannot_start_elections_or_act_as_primary() {
    let (mut c, _) = running_cluster();
    let before = state(&c);
    let term = c.replica(0).view().get();
    // Raft id 9 is neither in the membership nor trusted.
    let mut vote = message(MessageType::MsgRequestVote, 9, 2, term + 10);
    vote.index = 1_000;
    vote.log_term = term + 10;
    assert!(inject(&mut c, 9, 2, &vote));
    assert!(inject(
        &mut c,
        9,
        2,
        &message(MessageType::MsgHeartbeat, 9, 2, term + 10)
    ));
    assert!(inject(
        &mut c,
        9,
        1,
        &message(MessageType::MsgAppendResponse, 9, 1, term)
    ));
    assert_eq!(state(&c), before);
}

#[test]
fn only_the_primary_can_hand_over_its_role_and_non_voters_cannot_depose_it() {
    // Raft id 4 is trusted (Trusted in the nodes table, say a learner catching up) but not a voter.
    let (mut c, _) = running_cluster_trusting(4);
    let before = state(&c);
    let term = c.replica(0).view().get();
    let last = c.replica(1).last_seqno().get();
    // MsgTimeoutNow makes raft-rs campaign at once: from a non-voter, from a voter that is not the primary, or from
    // the primary in another term, it is dropped.
    for (from, t) in [(4, term), (3, term), (4, term + 1), (1, term + 1)] {
        let m = message(MessageType::MsgTimeoutNow, from, 2, t);
        assert!(
            inject(&mut c, from, 2, &m),
            "MsgTimeoutNow from {from} in term {t} was stepped"
        );
    }
    // Vote requests from the non-voter reach raft-rs, whose pre-vote and lease ignore them while the primary is
    // heard from.
    for t in [MessageType::MsgRequestPreVote, MessageType::MsgRequestVote] {
        let mut m = message(t, 4, 2, term + 1);
        m.index = last + 10;
        m.log_term = term + 1;
        inject(&mut c, 4, 2, &m);
    }
    assert_eq!(state(&c), before);
    assert!(c.replica(0).is_leader(), "the primary was deposed");
}

#[test]
fn appends_with_inconsistent_indexes_or_terms_are_dropped() {
    let (mut c, _) = running_cluster();
    let before = state(&c);
    let term = c.replica(0).view().get();
    let last = c.replica(1).last_seqno().get();
    let entry = |index: u64, term: u64| Entry {
        index,
        term,
        ..Default::default()
    };
    let append = |entries: Vec<Entry>, index: u64, log_term: u64| {
        let mut m = message(MessageType::MsgAppend, 1, 2, term);
        m.index = index;
        m.log_term = log_term;
        m.commit = index;
        m.set_entries(entries.into());
        m
    };
    // Gaps, reversed indexes, an index that overflows, terms beyond the message's or going backwards.
    assert!(inject(&mut c, 1, 2, &append(vec![entry(last + 2, term)], last, term)));
    assert!(inject(
        &mut c,
        1,
        2,
        &append(vec![entry(last + 1, term), entry(last, term)], last, term)
    ));
    assert!(inject(&mut c, 1, 2, &append(vec![entry(0, term)], u64::MAX, term)));
    assert!(inject(
        &mut c,
        1,
        2,
        &append(vec![entry(last + 1, term + 1)], last, term)
    ));
    assert!(inject(
        &mut c,
        1,
        2,
        &append(vec![entry(last + 1, term - 1)], last, term)
    ));
    // A log term below the committed entry's would send raft-rs's conflict search off the start of the log.
    assert!(inject(&mut c, 1, 2, &append(vec![], last + 50, 0)));
    // An acknowledgement of entries the primary never had.
    let mut ack = message(MessageType::MsgAppendResponse, 2, 1, term);
    ack.index = c.replica(0).last_seqno().get() + 10;
    assert!(inject(&mut c, 2, 1, &ack));
    ack.index = 1;
    ack.reject = true;
    ack.reject_hint = u64::MAX;
    assert!(inject(&mut c, 2, 1, &ack));
    assert_eq!(state(&c), before);
}

#[test]
fn snapshots_with_impossible_memberships_or_bad_bundles_are_dropped() {
    let (mut c, _) = running_cluster();
    let before = state(&c);
    let term = c.replica(0).view().get();
    let last = c.replica(1).last_seqno().get();
    let snapshot = |cs: ConfState, data: &[u8]| {
        let mut m = message(MessageType::MsgSnapshot, 1, 2, term);
        let s = m.mut_snapshot();
        s.mut_metadata().index = last + 10;
        s.mut_metadata().term = term;
        s.mut_metadata().set_conf_state(cs);
        s.data = data.to_vec().into();
        m
    };
    let cs = |voters: Vec<u64>, learners: Vec<u64>, voters_outgoing: Vec<u64>, learners_next: Vec<u64>| ConfState {
        voters,
        learners,
        voters_outgoing,
        learners_next,
        ..Default::default()
    };
    for bad in [
        cs(vec![], vec![2], vec![], vec![]),
        cs(vec![1, 2], vec![2], vec![], vec![]),
        cs(vec![1, 2], vec![], vec![], vec![3]),
        cs(vec![1, 2], vec![], vec![1, 2, 3], vec![2]),
        cs(vec![1, 2, 2], vec![], vec![], vec![]),
    ] {
        assert!(inject(&mut c, 1, 2, &snapshot(bad.clone(), b"")), "{bad:?} was stepped");
    }
    // A valid membership over a bundle that does not open would halt the replica once installed.
    assert!(inject(
        &mut c,
        1,
        2,
        &snapshot(cs(vec![1, 2, 3], vec![], vec![], vec![]), b"junk")
    ));
    assert_eq!(state(&c), before);
}

/// One mutation of a message's fields.
#[derive(Debug, Clone)]
enum Mutation {
    Type(i32),
    From(u64),
    To(u64),
    Term(u64),
    Index(u64),
    LogTerm(u64),
    Commit(u64),
    RejectHint(u64),
    Reject(bool),
    RequestSnapshot(u64),
    DropEntry(usize),
    EntryIndex(usize, u64),
    EntryTerm(usize, u64),
    SnapshotMeta(u64, u64, Vec<u64>, Vec<u64>),
    Truncate(usize),
}

/// Values near the ones a real cluster uses, plus extremes.
fn number() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..20, Just(u64::MAX), Just(u64::MAX - 1), any::<u64>()]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (0i32..20).prop_map(Mutation::Type),
        (0u64..5).prop_map(Mutation::From),
        (0u64..5).prop_map(Mutation::To),
        number().prop_map(Mutation::Term),
        number().prop_map(Mutation::Index),
        number().prop_map(Mutation::LogTerm),
        number().prop_map(Mutation::Commit),
        number().prop_map(Mutation::RejectHint),
        any::<bool>().prop_map(Mutation::Reject),
        number().prop_map(Mutation::RequestSnapshot),
        (0usize..4).prop_map(Mutation::DropEntry),
        ((0usize..4), number()).prop_map(|(i, v)| Mutation::EntryIndex(i, v)),
        ((0usize..4), number()).prop_map(|(i, v)| Mutation::EntryTerm(i, v)),
        (
            number(),
            number(),
            proptest::collection::vec(0u64..5, 0..4),
            proptest::collection::vec(0u64..5, 0..3)
        )
            .prop_map(|(i, t, v, l)| Mutation::SnapshotMeta(i, t, v, l)),
        (0usize..64).prop_map(Mutation::Truncate),
    ]
}

/// Applies `mutations` to the encoded message `bytes` (a truncation cuts the encoding itself).
fn mutate(bytes: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let Ok(mut m) = Message::parse_from_bytes(bytes) else {
        return bytes.to_vec();
    };
    let mut cut = None;
    for mu in mutations {
        match mu.clone() {
            Mutation::Type(t) => {
                if let Some(t) = <MessageType as protobuf::ProtobufEnum>::from_i32(t) {
                    m.set_msg_type(t);
                }
            }
            Mutation::From(v) => m.from = v,
            Mutation::To(v) => m.to = v,
            Mutation::Term(v) => m.term = v,
            Mutation::Index(v) => m.index = v,
            Mutation::LogTerm(v) => m.log_term = v,
            Mutation::Commit(v) => m.commit = v,
            Mutation::RejectHint(v) => m.reject_hint = v,
            Mutation::Reject(v) => m.reject = v,
            Mutation::RequestSnapshot(v) => m.request_snapshot = v,
            Mutation::DropEntry(i) if i < m.entries.len() => {
                m.entries.remove(i);
            }
            Mutation::EntryIndex(i, v) if i < m.entries.len() => m.entries[i].index = v,
            Mutation::EntryTerm(i, v) if i < m.entries.len() => m.entries[i].term = v,
            Mutation::SnapshotMeta(index, term, voters, learners) => {
                let meta = m.mut_snapshot().mut_metadata();
                meta.index = index;
                meta.term = term;
                meta.mut_conf_state().voters = voters;
                meta.mut_conf_state().learners = learners;
            }
            Mutation::Truncate(n) => cut = Some(n),
            _ => {}
        }
    }
    let mut out = encode(&m);
    if let Some(n) = cut {
        out.truncate(n);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Real messages of a running cluster, mutated, and raw random bytes, delivered from any sender to any
    /// replica: no replica panics or halts, and afterwards the primary still commits writes.
    #[test]
    fn mutated_and_random_messages_never_panic_a_replica(
        picks in proptest::collection::vec((any::<prop::sample::Index>(), 1u64..=3, 1u64..=3), 1..12),
        mutations in proptest::collection::vec(proptest::collection::vec(mutation(), 1..4), 12),
        noise in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..96), 0..4),
    ) {
        let (mut c, seen) = running_cluster();
        for (k, (pick, from, to)) in picks.iter().enumerate() {
            let original = &seen[pick.index(seen.len())];
            let bytes = mutate(&original.bytes, &mutations[k % mutations.len()]);
            let i = *to as usize - 1;
            assert_no_halt(&c.step(i, Event::Receive { from: RaftId(*from), message: bytes }));
            while !c.nodes[i].pending.is_empty() {
                assert_no_halt(&c.persist(i, 1).expect("sync"));
            }
        }
        for (k, bytes) in noise.into_iter().enumerate() {
            let to = k % 3;
            assert_no_halt(&c.step(to, Event::Receive { from: RaftId(1 + (k as u64 % 3)), message: bytes }));
        }
        // Whatever was accepted, the cluster elects a primary and commits again.
        let mut seen = Vec::new();
        c.net.clear();
        settle(&mut c, 60, &mut seen);
        let leader = (0..3).find(|&i| c.replica(i).is_leader());
        prop_assert!(leader.is_some(), "no primary after the noise");
        let leader = leader.unwrap_or(0);
        let before = c.replica(leader).commit_point();
        let store = c.replica(leader).store().clone();
        let mut tx = store.begin();
        tx.put("public:records", b"after", b"v");
        if let Ok(CommitOutcome::Committed { result: (version, write_set), .. }) =
            store.commit(tx, |v, ws| (v, ws.clone()))
        {
            step(&mut c, leader, Event::Propose { version, write_set, claims_digest: None }, &mut seen);
        }
        settle(&mut c, 10, &mut seen);
        prop_assert!(c.replica(leader).commit_point().seqno > before.seqno, "commits stopped after the noise");
    }
}
