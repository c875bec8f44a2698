//! What a joining node keeps of the primary's answer before it saves its identity: where its log starts (a
//! committed snapshot, or seqno 1 with the service's first membership), and the nodes it may talk to and whose
//! signatures it accepts until its own copy of the nodes table has caught up. The identity files are written last,
//! so a node that holds an identity always holds its join record: it restarts as the member it joined as, waiting
//! for the primary to bring it up to date, and never as a new one-voter service under the real service identity.

use super::persist::{read_optional, write_atomic};
use super::{Engine, EngineError, PEERS_FILE};
use crate::config::NodeConfig;
use consort_consensus::NodeId;
use std::collections::BTreeMap;

/// The join record's file in the secrets directory.
pub const JOIN_FILE: &str = "join.json";

/// Where a joiner's log starts, as the primary chose it (see [`Engine::join_start_for`]).
#[derive(Debug, Clone)]
pub struct JoinStart {
    /// A committed snapshot to start from; `None` to replicate the ledger from seqno 1.
    pub snapshot: Option<Vec<u8>>,
    /// Without a snapshot: the service's first membership (Raft ids), which is not in the ledger; the changes after
    /// it are, and the joiner replays them on top.
    pub initial_voters: Vec<u64>,
}

/// A node the primary named in its answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SeedPeer {
    /// Its node id (serialized as the bare text).
    pub node_id: NodeId,
    /// Its service-endorsed certificate, PEM.
    pub cert: String,
    /// Where it accepts node-to-node channels.
    pub node_to_node_address: Option<String>,
    /// Its status when the joiner was admitted (Trusted or Retired).
    pub status: String,
}

/// The durable part of a join.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JoinRecord {
    /// See [`JoinStart::initial_voters`] (empty when the node started from a snapshot).
    pub initial_voters: Vec<u64>,
    /// The nodes the primary named, as they were when the joiner was admitted.
    pub peers: Vec<SeedPeer>,
}

impl JoinRecord {
    /// Writes what the node starts from, each file atomically and durably, in this order: the snapshot (if any),
    /// the certificates of the nodes whose signatures it accepts, its initial Raft state, then the record itself. The caller saves the
    /// node's identity after this returns.
    pub fn save(&self, cfg: &NodeConfig, snapshot: Option<&[u8]>) -> Result<(), EngineError> {
        let dir = &cfg.storage.secrets_dir;
        std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
        let path = Engine::snapshot_path(cfg);
        match snapshot {
            Some(s) => write_atomic(&path, s).map_err(|e| EngineError::io(&path, e))?,
            // An interrupted earlier attempt may have left one; this join starts at seqno 1.
            None => match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(EngineError::io(&path, e)),
                _ => {}
            },
        }
        let certs: BTreeMap<&NodeId, &str> = self.peers.iter().map(|p| (&p.node_id, p.cert.as_str())).collect();
        let peers_path = dir.join(PEERS_FILE);
        let bytes = serde_json::to_vec_pretty(&certs).map_err(EngineError::PeersFile)?;
        write_atomic(&peers_path, &bytes).map_err(|e| EngineError::io(&peers_path, e))?;
        // The Raft state a node that never ran starts with, before the identity: a node holding an identity then
        // always holds Raft state, so one whose Raft state is gone was wiped, never merely interrupted here.
        let hard_state_path = Engine::hard_state_path(cfg);
        if !hard_state_path.exists() {
            let initial = consort_consensus::encode_hard_state(&consort_consensus::eraftpb::HardState::default());
            write_atomic(&hard_state_path, &initial).map_err(|e| EngineError::io(&hard_state_path, e))?;
        }
        let path = dir.join(JOIN_FILE);
        let bytes = serde_json::to_vec_pretty(self).map_err(|source| EngineError::JoinRecord {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, &bytes).map_err(|e| EngineError::io(&path, e))
    }

    /// The record in `secrets_dir`, if this node joined a service (`None` for a node that started one).
    pub fn load(secrets_dir: &std::path::Path) -> Result<Option<Self>, EngineError> {
        let path = secrets_dir.join(JOIN_FILE);
        read_optional(&path)?
            .map(|raw| {
                serde_json::from_slice(&raw).map_err(|source| EngineError::JoinRecord {
                    path: path.clone(),
                    source,
                })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_its_absence_means_genesis() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(JoinRecord::load(dir.path()).unwrap(), None);
        let record = JoinRecord {
            initial_voters: vec![7],
            peers: vec![SeedPeer {
                node_id: "ab".repeat(32).parse().unwrap(),
                cert: "PEM".into(),
                node_to_node_address: Some("127.0.0.1:1".into()),
                status: "Trusted".into(),
            }],
        };
        let bytes = serde_json::to_vec(&record).unwrap();
        std::fs::write(dir.path().join(JOIN_FILE), bytes).unwrap();
        assert_eq!(JoinRecord::load(dir.path()).unwrap(), Some(record));
        std::fs::write(dir.path().join(JOIN_FILE), b"{not json").unwrap();
        let err = JoinRecord::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains(JOIN_FILE), "{err}");
    }
}
