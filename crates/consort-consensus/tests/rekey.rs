//! Rekeys through the replica: a transaction that writes a new ledger secret, encrypted to each node, makes every
//! later entry use it; backups and a restarted replica take it in log order and read everything; a node left out
//! of the rekey stops at the first entry it cannot read instead of applying anything wrong.

use consort_consensus::{ConsensusError, SecretOpener};
use consort_ledger::secrets::ENCRYPTED_LEDGER_SECRETS_TABLE;
use consort_ledger::{parse_entry, Ledger, LedgerSecret, SINGLETON_KEY};
use std::collections::BTreeMap;
use std::sync::Arc;

mod support;
use support::*;

/// Stands in for a node's encryption key: the table's JSON maps node ids to the secret in hex.
struct HexOpener(String);

impl SecretOpener for HexOpener {
    fn open(&self, value: &[u8]) -> Result<Option<LedgerSecret>, String> {
        let map: BTreeMap<String, String> = serde_json::from_slice(value).map_err(|e| e.to_string())?;
        let Some(h) = map.get(&self.0) else {
            return Ok(None);
        };
        let raw: [u8; 32] = hex::decode(h)
            .map_err(|e| e.to_string())?
            .try_into()
            .map_err(|_| "not 32 bytes".to_string())?;
        Ok(Some(LedgerSecret::from_bytes(raw)))
    }
}

/// A 3-replica cluster whose replicas follow rekeys.
fn cluster() -> Cluster {
    let mut c = Cluster::new(3, all_trusted);
    for i in 0..3 {
        let node_id = c.h.nodes[i].identity.node_id.clone();
        c.h.nodes[i].identity.secret_opener = Some(Arc::new(HexOpener(node_id)));
        let (disk, persisted) = (c.h.nodes[i].disk.clone(), c.h.nodes[i].persisted.clone());
        c.restart(i, disk, persisted);
    }
    c
}

fn rekey(c: &mut Cluster, new: &LedgerSecret, to: &[usize]) -> u64 {
    let copies: BTreeMap<String, String> = to
        .iter()
        .map(|&i| (c.h.nodes[i].identity.node_id.clone(), hex::encode(new.raw())))
        .collect();
    let value = serde_json::to_vec(&copies).unwrap();
    propose(c, 0, &[(ENCRYPTED_LEDGER_SECRETS_TABLE, SINGLETON_KEY.to_vec(), value)])
}

fn write(c: &mut Cluster, k: u64) -> u64 {
    propose(
        c,
        0,
        &[("records", k.to_le_bytes().to_vec(), format!("private {k}").into_bytes())],
    )
}

/// The private domain of entry `seqno` in replica `i`'s ledger opens with `secret`.
fn opens_with(c: &Cluster, i: usize, seqno: u64, secret: &LedgerSecret) -> bool {
    let ledger = Ledger::load(c.h.nodes[i].disk.clone(), 1 << 20).unwrap();
    let bytes = ledger.read_entry(seqno).unwrap();
    let (entry, _) = parse_entry(&bytes).unwrap();
    entry.decrypt_private(secret).is_ok()
}

#[test]
fn after_a_rekey_every_replica_writes_and_reads_with_the_new_secret() {
    let mut c = cluster();
    c.elect(0);
    let before: Vec<u64> = (0..3).map(|k| write(&mut c, k)).collect();
    let new = LedgerSecret::from_bytes([0x42; 32]);
    let at = rekey(&mut c, &new, &[0, 1, 2]);
    let after: Vec<u64> = (3..6).map(|k| write(&mut c, k)).collect();
    c.settle(10);
    assert!(
        c.halted.is_empty() && c.dropped.is_empty(),
        "{:?} {:?}",
        c.halted,
        c.dropped
    );
    for i in 0..3 {
        let r = c.replica(i);
        assert_eq!(r.ledger_secrets().latest().0, at + 1, "replica {i}");
        assert_eq!(r.ledger_secrets().latest().1.raw(), new.raw());
        for k in 0..6u64 {
            assert_eq!(
                r.store().read_only().get("records", &k.to_le_bytes()),
                Some(format!("private {k}").into_bytes()),
                "replica {i} key {k}"
            );
        }
        for &s in &before {
            assert!(opens_with(&c, i, s, &secret()) && !opens_with(&c, i, s, &new));
        }
        assert!(
            opens_with(&c, i, at, &secret()),
            "the rekey itself is written under the old secret"
        );
        for &s in &after {
            assert!(opens_with(&c, i, s, &new) && !opens_with(&c, i, s, &secret()));
        }
    }
    // A restart replays the ledger with only the first secret at hand and learns the rekey on the way.
    let last = c.replica(1).last_seqno();
    let (disk, persisted) = (c.h.nodes[1].disk.clone(), c.h.nodes[1].persisted.clone());
    c.h.crash(1, |_| 0);
    c.restart(1, disk, persisted);
    let r = c.replica(1);
    assert!(r.last_seqno() >= last);
    assert_eq!(r.ledger_secrets().latest().1.raw(), new.raw());
    assert_eq!(
        r.store().read_only().get("records", &5u64.to_le_bytes()),
        Some(b"private 5".to_vec())
    );
}

#[test]
fn a_node_left_out_of_a_rekey_stops_at_the_first_entry_it_cannot_read() {
    let mut c = cluster();
    c.elect(0);
    write(&mut c, 0);
    let new = LedgerSecret::from_bytes([0x43; 32]);
    let at = rekey(&mut c, &new, &[0, 1]);
    write(&mut c, 1);
    c.settle(5);
    let halted: Vec<&(u64, ConsensusError)> = c.halted.iter().filter(|(id, _)| *id == 3).collect();
    assert_eq!(halted.len(), 1, "{:?}", c.halted);
    assert!(
        halted[0].1.to_string().contains(&format!("{}", at + 1)),
        "{}",
        halted[0].1
    );
    // It applied nothing past the rekey; the others went on.
    assert_eq!(c.replica(2).store().current_version(), at);
    assert_eq!(
        c.replica(1).store().read_only().get("records", &1u64.to_le_bytes()),
        Some(b"private 1".to_vec())
    );
    assert!(!c.halted.iter().any(|(id, _)| *id != 3));
}
