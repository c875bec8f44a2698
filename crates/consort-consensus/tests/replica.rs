//! Focused scenarios on a perfect network: the primary's proposals commit only behind a signature, a tampered or
//! untrusted signature transaction halts a backup, bad bytes from peers are dropped, and proposals to a backup
//! are refused with the store rolled back.

use consort_consensus::codec::{encode_write_set_entry, inspect};
use consort_consensus::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2, HardState, Message};
use consort_consensus::testing::FaultyDisk;
use consort_consensus::{Action, ConsensusError, Event, PersistedState, ProposeError, RaftId, Seqno, TxId, TxStatus};
use consort_kv::{CommitOutcome, WriteSet};
use consort_ledger::{Ledger, PrimarySignature, SIGNATURES_TABLE, SINGLETON_KEY};
use protobuf::Message as _;

mod support;
use support::*;

#[test]
fn writes_commit_behind_signatures_on_every_replica() {
    let mut c = Cluster::new(3, all_trusted);
    c.elect(0);
    let txs: Vec<TxId> = (0..7).map(|k| proposed(&c.write(0, k))).collect();
    c.deliver_all();
    c.settle(10);
    for r in c.replicas() {
        let commit = r.commit_point();
        assert!(r.is_signature(commit.seqno), "commit point {commit} is a signature");
        assert_eq!(r.last_seqno(), commit.seqno, "everything got signed and committed");
        for tx in &txs {
            assert_eq!(r.tx_status(*tx), TxStatus::Committed);
        }
        assert_eq!(
            r.store().read_only().get("records", &3u64.to_le_bytes()),
            Some(b"private".to_vec())
        );
        assert_eq!(
            r.tx_status(TxId {
                view: txs[0].view + 1,
                seqno: txs[0].seqno
            }),
            TxStatus::Invalid
        );
        assert_eq!(
            r.tx_status(TxId {
                view: txs[0].view,
                seqno: Seqno(10_000)
            }),
            TxStatus::Unknown
        );
    }
    assert!(
        c.halted.is_empty() && c.dropped.is_empty(),
        "{:?} {:?}",
        c.halted,
        c.dropped
    );
}

#[test]
fn a_backup_refuses_a_proposal_and_rolls_its_store_back() {
    let mut c = Cluster::new(3, all_trusted);
    c.elect(0);
    let before = c.replica(1).store().current_version();
    let actions = c.write(1, 1);
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::ProposalRejected {
            error: ProposeError::NotLeader { leader: Some(1) },
            ..
        }
    )));
    assert_eq!(c.replica(1).store().current_version(), before);
}

fn tamper_signatures(from: u64, _to: u64, bytes: Vec<u8>) -> Vec<u8> {
    let Ok(mut m) = Message::parse_from_bytes(&bytes) else {
        return bytes;
    };
    for e in m.mut_entries().iter_mut() {
        let Ok(info) = inspect(&e.data, e.term, e.index) else {
            continue;
        };
        if !info.is_signature {
            continue;
        }
        let raw = match info
            .public
            .maps
            .get(SIGNATURES_TABLE)
            .and_then(|t| t.writes.get(&SINGLETON_KEY[..]))
        {
            Some(Some(v)) => v.clone(),
            _ => continue,
        };
        let mut sig = PrimarySignature::from_json_bytes(&raw).expect("signature JSON");
        sig.root = hex::encode([0xabu8; 32]);
        let mut ws = WriteSet::default();
        ws.put(SIGNATURES_TABLE, &SINGLETON_KEY, &sig.to_json_bytes());
        e.data = encode_write_set_entry(&secret(), e.term, e.index, &ws)
            .expect("encode")
            .into();
    }
    let _ = from;
    m.write_to_bytes().expect("encode")
}

#[test]
fn a_tampered_signature_halts_the_backup_before_it() {
    let mut c = Cluster::new(3, all_trusted);
    c.elect(0);
    c.tamper = Some(Box::new(tamper_signatures));
    for k in 0..3 {
        c.write(0, k);
    }
    c.deliver_all();
    assert!(!c.halted.is_empty(), "backups must halt");
    for (id, e) in &c.halted {
        assert!(matches!(e, ConsensusError::BadSignature { .. }), "{id}: {e}");
        let r = &c.replica(*id as usize - 1);
        assert!(r.halted().is_some());
        // Nothing at or after the bad signature was taken in.
        assert!(r.last_seqno() < c.replica(0).last_seqno());
    }
    // A halted replica ignores everything.
    assert!(c.step(1, Event::Tick).is_empty());
}

#[test]
fn a_signature_from_an_untrusted_node_halts_the_backup() {
    let mut c = Cluster::new(3, |id| {
        let mut t = all_trusted(id);
        t.remove(&RaftId(1));
        t
    });
    c.elect(0);
    c.write(0, 1);
    c.deliver_all();
    assert!(c.halted.iter().any(
        |(_, e)| matches!(e, ConsensusError::BadSignature { reason, .. } if reason.to_string().contains("trusted"))
    ));
}

#[test]
fn bad_bytes_from_peers_are_dropped() {
    let mut c = Cluster::new(3, all_trusted);
    c.elect(0);
    for bad in [vec![], vec![0xff; 10], b"\x0a\x05hello".to_vec()] {
        let actions = c.step(
            1,
            Event::Receive {
                from: RaftId(1),
                message: bad,
            },
        );
        let _ = actions;
    }
    // A message claiming another sender, and an append whose entry is not a CCF entry.
    let mut m = Message::default();
    m.set_msg_type(consort_consensus::eraftpb::MessageType::MsgAppend);
    m.from = 3;
    m.to = 2;
    let actions = c.step(
        1,
        Event::Receive {
            from: RaftId(1),
            message: m.write_to_bytes().unwrap(),
        },
    );
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::Dropped {
            error: ConsensusError::MalformedMessage(_),
            ..
        }
    )));
    m.from = 1;
    let mut e = consort_consensus::eraftpb::Entry {
        term: 1,
        index: 1,
        ..Default::default()
    };
    e.data = b"not a ledger entry".to_vec().into();
    m.mut_entries().push(e);
    let actions = c.step(
        1,
        Event::Receive {
            from: RaftId(1),
            message: m.write_to_bytes().unwrap(),
        },
    );
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::Dropped {
            error: ConsensusError::InvalidEntry { .. },
            ..
        }
    )));
    assert!(c.halted.is_empty());
    // The cluster still works.
    let tx = proposed(&c.write(0, 5));
    c.deliver_all();
    c.settle(10);
    assert_eq!(c.replica(1).tx_status(tx), TxStatus::Committed);
}

/// A primary whose ledger starts after a snapshot brings a fresh learner up with a Raft snapshot message; the
/// learner installs it (checking the signature it carries) and then follows the ledger.
#[test]
fn a_fresh_learner_gets_a_raft_snapshot_from_a_primary_that_started_from_one() {
    let mut c = Cluster::new(1, all_trusted);
    c.elect(0);
    for k in 0..5 {
        c.write(0, k);
    }
    c.settle(5);
    let snapshot = c.replica(0).snapshot().expect("snapshot");
    let s = c.replica(0).commit_point().seqno;
    for k in 5..9 {
        c.write(0, k);
    }
    c.settle(5);
    // Node 1 restarts from its snapshot and the ledger after it (as after moving to a new disk).
    let r1 = &c.replica(0);
    let (mut ledger, _) = Ledger::open(FaultyDisk::new(), 1 << 20).expect("ledger");
    for seqno in s.get() + 1..=r1.last_seqno().get() {
        let bytes = r1.ledger().read_entry(seqno).expect("entry");
        ledger
            .append(seqno, &bytes, r1.is_signature(Seqno(seqno)))
            .expect("append");
    }
    ledger.flush().expect("flush");
    let hs = HardState {
        term: r1.view().get(),
        vote: 1,
        commit: r1.raft_commit_index().get(),
        ..Default::default()
    };
    let last = TxId {
        view: r1.view_of(r1.last_seqno()).expect("view"),
        seqno: r1.last_seqno(),
    };
    let persisted = PersistedState {
        hard_state: Some(hs),
        snapshot: Some(snapshot),
        voters: vec![1],
        recovery: None,
    };
    c.restart(0, ledger.into_storage(), persisted);
    assert_eq!(c.replica(0).base_seqno(), s);
    assert_eq!(c.replica(0).tx_status(last), TxStatus::Committed);
    c.elect(0);
    // A learner with nothing at all.
    c.add(2, FaultyDisk::new(), PersistedState::default());
    let mut cc = ConfChangeV2::default();
    let mut single = ConfChangeSingle::default();
    single.set_change_type(ConfChangeType::AddLearnerNode);
    single.node_id = 2;
    cc.mut_changes().push(single);
    c.step(0, Event::ProposeConfChange { change: cc });
    c.settle(20);
    assert!(
        c.installed.iter().any(|(id, tx)| *id == 2 && tx.seqno >= s),
        "{:?}",
        c.installed
    );
    let learner = &c.replica(1);
    assert_eq!(learner.tx_status(last), TxStatus::Committed);
    assert_eq!(learner.commit_point(), c.replica(0).commit_point());
    assert_eq!(learner.store().digest(), c.replica(0).store().digest());
    assert!(c.halted.is_empty(), "{:?}", c.halted);
}

/// The Merkle tree in memory keeps paths only from the commit point on; a receipt for any committed transaction
/// still gets a path (from the tree its signature transaction stored) that folds to the root that signature signs,
/// on the primary and on a backup alike.
#[test]
fn receipts_of_transactions_far_below_the_commit_point_fold_to_the_signed_root() {
    let mut c = Cluster::new(3, all_trusted);
    c.elect(0);
    c.write_each(0, 0..60);
    c.settle(10);
    assert!(c.halted.is_empty(), "{:?}", c.halted);
    for r in [&c.replica(0), &c.replica(2)] {
        let commit = r.commit_point().seqno;
        assert!(commit > 60, "commit point {commit}");
        let mut checked = 0;
        for seqno in (1..commit.get()).map(Seqno) {
            if r.is_signature(seqno) {
                continue;
            }
            let sig_seqno = r
                .signature_after(seqno)
                .expect("a signature covers every committed transaction");
            let (sig, path) = r.receipt_parts(seqno, sig_seqno).expect("receipt parts");
            let view = r.view_of(seqno).expect("view");
            let leaf = inspect(&r.ledger().read_entry(seqno.get()).unwrap(), view.get(), seqno.get())
                .unwrap()
                .leaf;
            assert_eq!(
                consort_ledger::fold_proof(&leaf, &path),
                sig.root_bytes().unwrap(),
                "receipt for {seqno} under signature {sig_seqno}"
            );
            checked += 1;
        }
        assert!(checked >= 50, "{checked} receipts checked");
    }
}

/// By default only the primary builds periodic snapshots: backups take the marked signature transactions and the
/// evidence like any other entry, build nothing and report nothing, and the commit point and state stay the same
/// everywhere. A backup that becomes primary counts the interval from the last marked signature.
#[test]
fn by_default_only_the_primary_builds_periodic_snapshots() {
    let mut c = Cluster::with_snapshot_builders(3, all_trusted, 8, false);
    c.elect(0);
    c.write_each(0, 0..40);
    c.settle(10);
    assert!(c.halted.is_empty(), "{:?}", c.halted);
    let built_by = |id: u64| c.builds.iter().filter(|b| b.0 == id).count();
    assert!(
        built_by(1) >= 2,
        "the primary built {} snapshots in 40 writes",
        built_by(1)
    );
    assert_eq!(
        (built_by(2), built_by(3)),
        (0, 0),
        "backups built snapshots: {:?}",
        c.builds
    );
    assert!(
        c.snapshots.iter().any(|s| s.0 == 1),
        "the primary committed no snapshot"
    );
    assert!(
        c.snapshots.iter().all(|s| s.0 == 1),
        "a backup reported a snapshot it did not build"
    );
    let primary = &c.replica(0);
    for r in &c.replicas()[1..] {
        assert_eq!(r.commit_point(), primary.commit_point());
        assert_eq!(r.store().digest(), primary.store().digest());
        assert_eq!(r.snapshot_mismatches(), 0);
    }

    // A backup promoted to primary snapshots one interval after the last marked signature, not at once: hand the
    // role over right after the primary marks one.
    let builds_before = c.builds.len();
    for k in 100..120u64 {
        c.write(0, k);
        c.deliver_all();
        c.settle(1);
        if c.builds.len() > builds_before {
            break;
        }
    }
    let last_marked = c.builds.iter().map(|b| b.1).max().unwrap_or(0);
    let builds_before = c.builds.len();
    c.step(0, Event::TransferLeadership { to: RaftId(2) });
    c.deliver_all();
    c.settle(5);
    assert!(c.replica(1).is_leader(), "replica 2 took over");
    c.write_each(1, 40..60);
    c.settle(10);
    let first_new = c.builds[builds_before..].iter().find(|b| b.0 == 2).map(|b| b.1);
    let first_new = first_new.expect("the new primary built a snapshot within 20 writes");
    assert!(
        first_new >= last_marked + 8,
        "new primary's first snapshot {first_new}, last marked {last_marked}"
    );
    assert!(c.halted.is_empty(), "{:?}", c.halted);
}

/// Periodic snapshots: every replica builds the same snapshot bytes at the same signature, reports it only once
/// its evidence is committed, and a fresh learner that starts from it (a membership that does not name it yet)
/// catches up from the ledger after it.
#[test]
fn periodic_snapshots_are_identical_on_every_replica_and_a_learner_starts_from_one() {
    let mut c = Cluster::with_snapshots(2, all_trusted, 8);
    c.elect(0);
    for k in 0..30u64 {
        c.write(0, k);
        if k % 4 == 3 {
            // Removals and overwrites too, so that tombstones and key versions are in the snapshot.
            let store = c.replica(0).store().clone();
            let mut tx = store.begin();
            tx.remove("records", &(k - 2).to_le_bytes());
            tx.put("public:records", &(k - 1).to_le_bytes(), b"again");
            let (version, write_set) = match store.commit(tx, |v, ws| (v, ws.clone())) {
                Ok(CommitOutcome::Committed { result, .. }) => result,
                other => panic!("{other:?}"),
            };
            c.step(
                0,
                Event::Propose {
                    version,
                    write_set,
                    claims_digest: None,
                },
            );
        }
        c.deliver_all();
        c.settle(1);
    }
    c.settle(10);
    assert!(c.halted.is_empty(), "{:?}", c.halted);
    let by = |id: u64| -> Vec<(u64, u64, Vec<u8>)> {
        c.snapshots
            .iter()
            .filter(|s| s.0 == id)
            .map(|s| (s.1, s.2, s.3.clone()))
            .collect()
    };
    let (primary, backup) = (by(1), by(2));
    assert!(
        primary.len() >= 2,
        "several snapshots in 40 transactions: {}",
        primary.len()
    );
    assert_eq!(primary, backup, "the backup rebuilt byte-identical snapshots");
    for r in c.replicas() {
        assert_eq!(r.snapshot_mismatches(), 0);
    }
    let mut last = 0;
    for (seqno, evidence, _) in &primary {
        assert!(
            c.replica(0).is_signature(Seqno(*seqno)),
            "{seqno} is a signature transaction"
        );
        assert_eq!(*evidence, seqno + 1);
        assert!(*seqno >= last + 8, "snapshots at least the interval apart");
        assert!(
            c.replica(0).commit_point().seqno >= *evidence,
            "reported only once the evidence committed"
        );
        last = *seqno;
    }
    let evidence_seqno = primary[0].1;
    let entry = c
        .replica(1)
        .ledger()
        .read_entry(evidence_seqno)
        .expect("evidence entry");
    let info = inspect(
        &entry,
        c.replica(1).view_of(Seqno(evidence_seqno)).unwrap().get(),
        evidence_seqno,
    )
    .expect("inspect");
    assert!(
        info.public
            .maps
            .contains_key(consort_consensus::snapshot::SNAPSHOT_EVIDENCE_TABLE),
        "the digest is recorded in the ledger"
    );

    // A fresh node starts from the first (oldest) snapshot and follows the ledger from there.
    let (seqno, _, bytes) = primary[0].clone();
    let persisted = PersistedState {
        snapshot: Some(bytes),
        ..Default::default()
    };
    c.add(3, FaultyDisk::new(), persisted);
    assert_eq!(c.replica(2).base_seqno(), seqno);
    let mut cc = ConfChangeV2::default();
    let mut single = ConfChangeSingle::default();
    single.set_change_type(ConfChangeType::AddLearnerNode);
    single.node_id = 3;
    cc.mut_changes().push(single);
    c.step(0, Event::ProposeConfChange { change: cc });
    c.settle(30);
    let tx = proposed(&c.write(0, 1_000));
    c.deliver_all();
    c.settle(10);
    assert!(c.halted.is_empty(), "{:?}", c.halted);
    let learner = &c.replica(2);
    assert!(
        c.installed.iter().all(|(id, _)| *id != 3),
        "caught up from the ledger, no Raft snapshot"
    );
    assert_eq!(learner.tx_status(tx), TxStatus::Committed);
    assert_eq!(learner.store().digest(), c.replica(0).store().digest());
    assert_eq!(learner.merkle_root(), c.replica(0).merkle_root());
}

/// The primary hands its role to a named voter (before its own removal); a transfer to a non-member is refused.
#[test]
fn the_primary_hands_over_to_a_voter_on_request() {
    let mut c = Cluster::new(3, all_trusted);
    c.elect(0);
    let tx = proposed(&c.write(0, 1));
    c.deliver_all();
    c.settle(5);
    let refused = c.step(0, Event::TransferLeadership { to: RaftId(9) });
    assert!(
        refused.iter().any(|a| matches!(a, Action::Dropped { .. })),
        "{refused:?}"
    );
    c.step(0, Event::TransferLeadership { to: RaftId(3) });
    c.deliver_all();
    c.settle(5);
    assert!(c.replica(2).is_leader(), "replica 3 took over");
    assert!(!c.replica(0).is_leader());
    assert!(c.replica(2).view() > tx.view);
    let later = proposed(&c.write(2, 2));
    c.deliver_all();
    c.settle(5);
    for r in c.replicas() {
        assert_eq!(r.tx_status(tx), TxStatus::Committed);
        assert_eq!(r.tx_status(later), TxStatus::Committed);
    }
}
