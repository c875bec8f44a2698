//! Peers and membership: the Raft id of a node, the peers this node trusts (saved for restarts), the nodes table,
//! and moving the Raft membership towards the Trusted nodes one change at a time.

use super::{fatal, write_atomic, Engine, JoinStart, SeedPeer};
use consort_consensus::{Event, NodeId, RaftId, Seqno};
use consort_ledger::{ENDORSED_CERTS_TABLE, NODES_INFO_TABLE};

/// File in the node directory listing the peers this node trusts (node id -> certificate PEM), so that a restart
/// can verify their signature transactions while replaying the ledger.
pub const PEERS_FILE: &str = "peers.json";

impl Engine {
    /// Records the node id of a Raft peer, and trusts its signatures (remembered in [`PEERS_FILE`]).
    pub fn add_peer(&self, node_id: &NodeId, cert_pem: &str) -> RaftId {
        let id = node_id.raft_id();
        if *node_id == self.node_id {
            return id;
        }
        let mut certs = self.peer_certs.lock().unwrap_or_else(|e| e.into_inner());
        if certs.get(node_id).map(String::as_str) == Some(cert_pem) {
            return id;
        }
        certs.insert(node_id.clone(), cert_pem.to_string());
        let bytes = serde_json::to_vec_pretty(&*certs).unwrap_or_default();
        if let Err(e) = write_atomic(&self.cfg.storage.secrets_dir.join(PEERS_FILE), &bytes) {
            fatal("peers file write", e);
        }
        drop(certs);
        self.peers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, node_id.clone());
        self.lock().replica.trust_node(id, cert_pem.to_string());
        id
    }

    /// On the primary: moves the Raft membership one step towards `trusted` (the Raft ids of the Trusted nodes):
    /// adds a missing node as a learner, or promotes a learner that has caught up with the commit index.
    pub fn reconcile_membership(&self, trusted: &[RaftId], retired: &[RaftId]) {
        use consort_consensus::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2};
        // Raft's membership (and its conf changes) speak bare u64 ids.
        let trusted: Vec<u64> = trusted.iter().map(|id| id.get()).collect();
        let retired: Vec<u64> = retired.iter().map(|id| id.get()).collect();
        let matched = |e: &super::EngineGuard<'_>, id: u64| e.replica.matched(RaftId(id)).map_or(0, Seqno::get);
        let mut e = self.lock();
        if !e.replica.is_leader() {
            return;
        }
        let cs = e.replica.conf_state();
        let single = |change_type, node_id| {
            let mut c = ConfChangeSingle::default();
            c.set_change_type(change_type);
            c.node_id = node_id;
            let mut cc = ConfChangeV2::default();
            cc.mut_changes().push(c);
            cc
        };
        let change = if let Some(&new) = trusted
            .iter()
            .find(|id| !cs.voters.contains(id) && !cs.learners.contains(id))
        {
            Some(single(ConfChangeType::AddLearnerNode, new))
        } else {
            let commit = e.replica.raft_commit_index().get();
            let promote = cs
                .learners
                .iter()
                .find(|l| trusted.contains(l) && matched(&e, **l) >= commit)
                .map(|&l| single(ConfChangeType::AddNode, l));
            // Retirement (governance's remove_node marked the node Retired): the primary takes it out of the
            // Raft membership, one change at a time like every other. Raft's joint agreement on the change keeps
            // every commit. A retired primary first hands its role to the most caught-up other voter, which
            // then removes it.
            let own = e.replica.id().get();
            promote.or_else(|| {
                cs.voters
                    .iter()
                    .chain(cs.learners.iter())
                    .find(|id| retired.contains(id) && **id != own)
                    .map(|&id| single(ConfChangeType::RemoveNode, id))
            })
        };
        if change.is_none() && retired.contains(&e.replica.id().get()) {
            let own = e.replica.id().get();
            let successor = cs
                .voters
                .iter()
                .filter(|id| **id != own && !retired.contains(id))
                .max_by_key(|id| matched(&e, **id))
                .copied();
            match successor {
                Some(to) => {
                    tracing::info!(to, "retired: handing the primary role over");
                    let actions = e.replica.step(Event::TransferLeadership { to: RaftId(to) });
                    self.handle(&mut e, actions);
                }
                None => tracing::warn!("retired, but no other voter can take over the primary role"),
            }
            return;
        }
        if let Some(change) = change {
            let actions = e.replica.step(Event::ProposeConfChange { change });
            if let Some(Err(err)) = self.handle(&mut e, actions) {
                tracing::debug!(%err, "membership change not proposed yet");
            }
        }
    }

    /// Whether `raft_id` is a learner or voter (as this node sees the membership).
    pub fn is_member(&self, raft_id: RaftId) -> bool {
        let raft_id = raft_id.get();
        let cs = self.lock().replica.conf_state();
        cs.voters.contains(&raft_id) || cs.learners.contains(&raft_id)
    }

    /// On the primary: where the joiner with Raft id `raft_id` starts, once its addition to the membership is
    /// committed (`None` before). As in CCF: from the latest committed periodic snapshot if this node has one that
    /// its own log continues; otherwise, if this node's log starts at seqno 1, from seqno 1 (Raft replicates every
    /// entry, so the joiner's ledger is the whole ledger and verifies on its own); otherwise (this node itself
    /// started from a snapshot and wrote none since) from a snapshot at the commit point.
    pub fn join_start_for(&self, raft_id: RaftId) -> Option<JoinStart> {
        let raft_id = raft_id.get();
        let e = self.lock();
        // The membership at the commit point must already hold the joiner. A node that restarted since the change
        // did not see it happen: then every change applied so far must be at or below the commit point.
        let cs = e.replica.conf_state();
        if !cs.voters.contains(&raft_id) && !cs.learners.contains(&raft_id) {
            return None;
        }
        let commit = e.replica.commit_point().seqno.get();
        let covered = match e.member_since.get(&raft_id) {
            Some(&since) => commit >= since,
            None => commit >= e.replica.raft_commit_index(),
        };
        if !covered {
            return None;
        }
        let base = e.replica.base_seqno().get();
        let initial_voters = e
            .replica
            .initial_voters()
            .map(|voters| voters.into_iter().map(RaftId::get).collect());
        // The file is read off the engine lock.
        drop(e);
        if let Some(file) = super::snapshot_files::latest_committed(&self.cfg.storage.snapshots_dir) {
            // A file from before this node's own log starts cannot be followed by entries this node has.
            // The host keeps the file: it is handed out only if the ledger's evidence records its digest.
            if file.seqno >= base {
                match super::snapshot_files::read_verified(&file, self.snapshot_evidence()) {
                    Ok(bytes) => {
                        return Some(JoinStart {
                            snapshot: Some(bytes),
                            initial_voters: vec![],
                        })
                    }
                    Err(err) => tracing::warn!(%err, "not handing this snapshot file to a joiner"),
                }
            }
        }
        if let Some(initial_voters) = initial_voters {
            return Some(JoinStart {
                snapshot: None,
                initial_voters,
            });
        }
        let snapshot = self.lock().replica.snapshot().ok()?;
        Some(JoinStart {
            snapshot: Some(snapshot),
            initial_voters: vec![],
        })
    }

    /// The latest snapshot evidence in this node's store (`public:ccf.internal.snapshot_evidence`).
    fn snapshot_evidence(&self) -> Option<super::snapshot_files::RecordedEvidence> {
        let value = self.store().read_only().get(
            consort_consensus::snapshot::SNAPSHOT_EVIDENCE_TABLE,
            &consort_ledger::SINGLETON_KEY,
        )?;
        super::snapshot_files::RecordedEvidence::parse(&value)
    }

    /// For a node that joined: the nodes its join answer named. Until its own nodes table holds itself (it has
    /// replicated past its admission), the node admits and dials the Trusted ones from this list, since its table
    /// does not know them yet.
    pub fn join_seed(&self) -> &[SeedPeer] {
        &self.join_seed
    }

    /// Whether `node_id` is a Trusted node of this service (per the nodes table).
    pub fn is_trusted_node(&self, node_id: &NodeId) -> bool {
        node_records(self)
            .into_iter()
            .any(|r| r.node_id == *node_id && r.status == "Trusted")
    }
}

/// A node as recorded in the nodes table.
#[derive(Debug, Clone)]
pub struct NodeRecord {
    /// The node's id (hex SHA-256 of its public key).
    pub node_id: NodeId,
    /// `Pending`, `Trusted` or `Retired`.
    pub status: String,
    /// Where it serves clients.
    pub rpc_address: Option<String>,
    /// Where it accepts node-to-node channels.
    pub node_to_node_address: Option<String>,
    /// Its service-endorsed certificate, if it has one.
    pub cert_pem: Option<String>,
}

/// Every node in `public:ccf.gov.nodes.info`, with its endorsed certificate.
pub fn node_records(engine: &Engine) -> Vec<NodeRecord> {
    let store = engine.store();
    let tx = store.read_only();
    let mut out = vec![];
    tx.foreach(NODES_INFO_TABLE, |k, v| {
        // The table's keys are written by this node's join and genesis code, from node ids; a key that is not one
        // names no node that could connect or sign, so it is left out (and logged).
        let key = String::from_utf8_lossy(k);
        let node_id = match key.parse::<NodeId>() {
            Ok(id) => id,
            Err(error) => {
                tracing::warn!(%error, "nodes table key is not a node id");
                return true;
            }
        };
        let info: serde_json::Value = serde_json::from_slice(v).unwrap_or_default();
        out.push(NodeRecord {
            status: info["status"].as_str().unwrap_or("").to_string(),
            rpc_address: info["rpc_interfaces"]["primary_rpc_interface"]["bind_address"]
                .as_str()
                .map(str::to_string),
            node_to_node_address: info["node_to_node_address"].as_str().map(str::to_string),
            cert_pem: None,
            node_id,
        });
        true
    });
    for r in out.iter_mut() {
        r.cert_pem = tx
            .get(ENDORSED_CERTS_TABLE, r.node_id.as_str().as_bytes())
            .map(|c| String::from_utf8_lossy(&c).to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use consort_consensus::NodeId;

    fn raft_id_of(node_id: &str) -> u64 {
        node_id.parse::<NodeId>().expect("a node id").raft_id().get()
    }

    /// The Raft id of a node comes from its [`NodeId`] ([`NodeId::raft_id`]); a string that is not a node id has
    /// none (parsing refuses it), where the `raft_id_of(&str)` this replaced answered 1.
    #[test]
    fn raft_ids_come_from_the_node_id_prefix_and_are_never_zero() {
        let id = "0102030405060708".to_string() + &"ab".repeat(24);
        assert_eq!(raft_id_of(&id), 0x0102_0304_0506_0708);
        assert_eq!(raft_id_of(&"00".repeat(32)), 1);
        assert!("not hex".parse::<NodeId>().is_err());
        assert!("".parse::<NodeId>().is_err());
    }
}
