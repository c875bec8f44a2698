//! Disaster recovery through the replica: a new node opens a copy of an old service's ledger with a recovery base,
//! replays its public part (signatures checked against the certificates the ledger's own tables endorse), goes on
//! alone under a fresh secret, and takes the old private state in once the old secret is restored; a restart
//! before and after the restore reads the same; damage and wrong secrets are refused naming the transaction.

use consort_consensus::testing::FaultyDisk;
use consort_consensus::{ConsensusError, Event, PersistedState, PrivateRestore, RecoveryBase, RecoveryFault, Replica};
use consort_ledger::{
    parse_entry, Ledger, LedgerSecret, LedgerSecrets, LedgerStorage, ENDORSED_CERTS_TABLE, SERVICE_INFO_TABLE,
    SINGLETON_KEY,
};

mod support;
use support::*;

const OLD_KEYS: u64 = 12;

/// A 3-replica service whose tables endorse replica 1 (its certificate is self-signed, so it stands as the service
/// certificate too), with public and private records, everything committed and the ledger ending at a signature.
/// Returns the service and that signature's seqno.
fn old_service() -> (Cluster, u64) {
    old_service_marked(b"first")
}

/// [`old_service`] whose first record after the tables holds `marker`.
fn old_service_marked(marker: &[u8]) -> (Cluster, u64) {
    let mut c = Cluster::new(3, all_trusted);
    // The tables must come before the first signature, as genesis does on a node.
    for i in 0..3 {
        c.h.nodes[i].config.sign_on_election = false;
        c.h.start(i).unwrap();
    }
    c.elect(0);
    let id = identities()[0].clone();
    let info = serde_json::json!({"cert": id.cert_pem, "status": "Open"}).to_string();
    propose(
        &mut c,
        0,
        &[
            (SERVICE_INFO_TABLE, SINGLETON_KEY.to_vec(), info.into_bytes()),
            (
                ENDORSED_CERTS_TABLE,
                id.node_id.clone().into_bytes(),
                id.cert_pem.clone().into_bytes(),
            ),
        ],
    );
    propose(&mut c, 0, &[("marker", b"m".to_vec(), marker.to_vec())]);
    c.write_each(0, 0..OLD_KEYS);
    c.settle(50);
    let r = c.replica(0);
    assert_eq!(r.commit_point().seqno, r.last_seqno(), "the old ledger ends committed");
    let base = r.commit_point().seqno.get();
    (c, base)
}

/// Opens recovered replica 4 over a copy of replica 1's disk, with `secrets` (the new secret from `base + 1`).
fn recover(c: &mut Cluster, disk: FaultyDisk, base: u64, secrets: LedgerSecrets) -> Result<(), ConsensusError> {
    let persisted = PersistedState {
        voters: vec![4],
        recovery: Some(RecoveryBase { seqno: base }),
        ..Default::default()
    };
    let i =
        c.h.add_node(config(4, 0, false), identities()[3].clone(), all_trusted(4), persisted);
    c.h.nodes[i].disk = disk;
    c.h.nodes[i].secrets = Some(secrets);
    c.h.start(i).map(|_| ())
}

fn new_secret() -> LedgerSecret {
    LedgerSecret::from_bytes([42; 32])
}

fn restore_all(c: &Cluster, i: usize, old: LedgerSecrets) -> Result<PrivateRestore, ConsensusError> {
    let through = c.replica(i).private_pending_through().expect("a restore is pending");
    restore_from(c.replica(i), through, old)
}

/// A restore of seqnos 1 to `through` reading the chunks of `source`'s ledger.
fn restore_from(
    source: &Replica<FaultyDisk>,
    through: u64,
    old: LedgerSecrets,
) -> Result<PrivateRestore, ConsensusError> {
    let mut restore = PrivateRestore::new(old, through);
    while let Some(next) = restore.next_seqno() {
        let chunk = source.read_chunk_of(next)?;
        restore.apply_chunk(&chunk)?;
    }
    Ok(restore)
}

fn private(c: &Cluster, i: usize, k: u64) -> Option<Vec<u8>> {
    c.replica(i).store().read_only().get("records", &k.to_le_bytes())
}

fn public(c: &Cluster, i: usize, k: u64) -> Option<Vec<u8>> {
    c.replica(i).store().read_only().get("public:records", &k.to_le_bytes())
}

#[test]
fn a_recovered_replica_replays_the_public_part_goes_on_and_restores_the_private_part() {
    let (mut c, base) = old_service();
    let disk = c.h.nodes[0].disk.deep_copy();
    let new = LedgerSecret::from_bytes([42; 32]);
    recover(
        &mut c,
        disk,
        base,
        LedgerSecrets::from_versions([(base + 1, new.clone())]).unwrap(),
    )
    .unwrap();
    let i = 3;
    {
        let r = c.replica(i);
        assert_eq!(r.private_pending_through(), Some(base));
        assert_eq!(r.last_seqno().get(), base);
        assert_eq!(public(&c, i, 3), Some(b"public".to_vec()));
        assert_eq!(private(&c, i, 3), None, "the old private domain is not read yet");
        assert!(
            r.snapshot().is_err(),
            "no snapshot while the old private state is missing"
        );
    }
    // Alone now: it elects itself in a later view and commits its own transactions after the base.
    c.h.isolated.extend([1, 2, 3]);
    c.step(i, Event::Campaign);
    c.settle(5);
    assert!(c.replica(i).is_leader());
    let old_view = c.replica(0).view();
    assert!(c.replica(i).view() > old_view);
    let v = propose(
        &mut c,
        i,
        &[("records", b"new".to_vec(), b"written while recovering".to_vec())],
    );
    assert!(v > base + 1, "after the base and the new view's first entry");
    c.settle(20);
    assert!(c.replica(i).commit_point().seqno.get() > v);
    // The entry after the base is written under the new secret.
    let bytes = c.replica(i).ledger().read_entry(v).unwrap();
    let (entry, _) = parse_entry(&bytes).unwrap();
    assert!(entry.decrypt_private(&new).is_ok());

    // A restart before the restore reads the same (the recovery base is still handed back).
    let (disk, persisted) = (c.h.nodes[i].disk.clone(), c.h.nodes[i].persisted.clone());
    c.restart(i, disk, persisted);
    assert_eq!(private(&c, i, 3), None);
    assert_eq!(private(&c, i, 0), None);
    assert!(c.replica(i).store().read_only().get("records", b"new").is_some());

    // The members restored the old secret: the old private state comes in under the newer writes.
    let old = LedgerSecrets::new(secret());
    let restore = restore_all(&c, i, old).unwrap();
    let restored = c.h.replica_mut(i).finish_private_restore(restore).unwrap();
    assert_eq!(restored, OLD_KEYS as usize + 1, "the records and the marker");
    assert_eq!(c.replica(i).private_pending_through(), None);
    for k in 0..OLD_KEYS {
        assert_eq!(private(&c, i, k), Some(b"private".to_vec()), "key {k}");
    }
    assert_eq!(c.replica(i).ledger_secrets().len(), 2);
    assert!(c.replica(i).snapshot().is_ok());

    // A restart with the whole keyring reads the old private domains during replay.
    let keyring = c.replica(i).ledger_secrets().clone();
    c.h.nodes[i].secrets = Some(keyring);
    let (disk, persisted) = (c.h.nodes[i].disk.clone(), c.h.nodes[i].persisted.clone());
    c.restart(i, disk, persisted);
    for k in 0..OLD_KEYS {
        assert_eq!(private(&c, i, k), Some(b"private".to_vec()), "key {k} after restart");
    }
    assert!(c.replica(i).store().read_only().get("records", b"new").is_some());
}

#[test]
fn a_wrong_secret_stops_the_restore_and_a_flipped_private_byte_stops_the_recovery_at_its_signature() {
    let (mut c, base) = old_service();
    let disk = c.h.nodes[0].disk.deep_copy();
    recover(
        &mut c,
        disk,
        base,
        LedgerSecrets::from_versions([(base + 1, new_secret())]).unwrap(),
    )
    .unwrap();
    // A wrong secret fails at the first entry with a private domain.
    let wrong = LedgerSecrets::new(LedgerSecret::from_bytes([1; 32]));
    let err = restore_all(&c, 3, wrong).unwrap_err();
    assert!(matches!(err, ConsensusError::InvalidEntry { .. }), "{err}");
    assert_eq!(c.replica(3).private_pending_through(), Some(base));

    // One flipped byte in the encrypted part of a committed entry of the copy: without the old secret the
    // recovering node cannot read that part, but the entry is no longer the one signed: the signature that covers
    // it fails, naming the range that holds it.
    let copy = c.h.nodes[0].disk.deep_copy();
    let ledger = Ledger::load(copy.clone(), 1 << 20).unwrap();
    // The last entry before the base with a private domain.
    let target = (1..base)
        .rev()
        .find(|&s| {
            !parse_entry(&ledger.read_entry(s).unwrap())
                .unwrap()
                .0
                .encrypted_private
                .is_empty()
        })
        .unwrap();
    let entry = ledger.read_entry(target).unwrap();
    let (name, offset) = ledger
        .chunk_names()
        .into_iter()
        .find_map(|name| {
            let data = copy.read(&name).ok()?;
            let at = data.windows(entry.len()).position(|w| w == entry.as_slice())?;
            Some((name, at))
        })
        .unwrap();
    // The last byte of an entry is ciphertext of its private domain.
    assert!(copy.flip(&name, offset + entry.len() - 1, 0x01));
    let mut c2 = Cluster::new(3, all_trusted);
    let err = recover(
        &mut c2,
        copy,
        base,
        LedgerSecrets::from_versions([(base + 1, new_secret())]).unwrap(),
    )
    .unwrap_err();
    match &err {
        ConsensusError::BadSignature { seqno, reason } => {
            assert!(*seqno >= target, "{err}");
            let text = reason.to_string();
            let from: u64 = text
                .split("from seqno ")
                .nth(1)
                .and_then(|t| t.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{text}"));
            assert!(from <= target && target <= *seqno, "{err}");
        }
        other => panic!("{other}"),
    }
    // Finishing an incomplete restore is refused and changes nothing.
    let partial = PrivateRestore::new(LedgerSecrets::new(secret()), base);
    let err = c.h.replica_mut(3).finish_private_restore(partial).unwrap_err();
    assert!(matches!(err, ConsensusError::Recovery(ref f) if matches!(**f, RecoveryFault::Incomplete { .. })));
    assert_eq!(c.replica(3).private_pending_through(), Some(base));
}

#[test]
fn the_base_must_be_a_signature_and_old_signers_must_be_endorsed_by_the_ledger() {
    let secrets = |v: u64| LedgerSecrets::from_versions([(v, LedgerSecret::from_bytes([3; 32]))]).unwrap();
    // A base that is not the old ledger's last signature.
    let (mut c, base) = old_service();
    let disk = c.h.nodes[0].disk.deep_copy();
    let err = recover(&mut c, disk, base - 1, secrets(base)).unwrap_err();
    assert!(
        matches!(err, ConsensusError::Recovery(ref f) if matches!(**f, RecoveryFault::BaseNotASignature { .. })),
        "{err}"
    );
    // A ledger whose tables endorse nobody: its first signature is refused.
    let mut c = Cluster::new(3, all_trusted);
    c.elect(0);
    c.write_each(0, 0..4);
    c.settle(50);
    let base = c.replica(0).commit_point().seqno.get();
    let disk = c.h.nodes[0].disk.deep_copy();
    let err = recover(&mut c, disk, base, secrets(base + 1)).unwrap_err();
    assert!(matches!(err, ConsensusError::BadSignature { .. }), "{err}");
}

#[test]
fn a_restore_that_reads_other_entries_than_the_replay_verified_is_refused() {
    let (mut c, base) = old_service();
    let disk = c.h.nodes[0].disk.deep_copy();
    recover(
        &mut c,
        disk,
        base,
        LedgerSecrets::from_versions([(base + 1, new_secret())]).unwrap(),
    )
    .unwrap();
    // Another history under the same secret (a rolled-back branch, say): its entries decrypt, but they are not the
    // ones the public replay verified.
    let (other, other_base) = old_service_marked(b"second");
    assert_eq!(other_base, base);
    let restore = restore_from(other.replica(0), base, LedgerSecrets::new(secret())).unwrap();
    let err = c.h.replica_mut(3).finish_private_restore(restore).unwrap_err();
    assert!(
        matches!(err, ConsensusError::Recovery(ref f) if matches!(**f, RecoveryFault::NotTheVerifiedLedger { .. })),
        "{err}"
    );
    assert_eq!(c.replica(3).private_pending_through(), Some(base));
    assert_eq!(private(&c, 3, 0), None);
}

#[test]
fn old_signature_transactions_may_write_only_the_signature_tables() {
    use consort_consensus::testing::extra_signature_write_for_tests as extra;
    let mut ws = consort_kv::WriteSet::default();
    ws.put(consort_ledger::SIGNATURES_TABLE, &SINGLETON_KEY, b"{}");
    ws.put(consort_ledger::TREE_TABLE, &SINGLETON_KEY, b"");
    assert_eq!(extra(&ws), None);
    ws.put(SERVICE_INFO_TABLE, &SINGLETON_KEY, b"{}");
    assert_eq!(extra(&ws).as_deref(), Some(SERVICE_INFO_TABLE));
}
