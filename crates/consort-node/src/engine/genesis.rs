//! Starting a service: the first node campaigns alone and writes the genesis transaction (service info, itself,
//! members, users, constitution), then optionally opens the service.

use super::{Engine, EngineError, GenesisAttestation, TxId, WriteError};
use consort_consensus::{Event, RaftId};
use consort_ledger::{ENDORSED_CERTS_TABLE, NODES_INFO_TABLE, SERVICE_INFO_TABLE, SINGLETON_KEY};
use std::path::{Path, PathBuf};

/// Why genesis did not complete (governance's refusal of the genesis transaction is [`EngineError::Gov`]).
#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    /// A file the start configuration names (member or user certificate, member key, constitution) is unreadable.
    #[error("{what} {}: {source}", path.display())]
    ReadFile {
        /// What the file holds.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The node did not become primary of its one-voter service.
    #[error("this node did not become primary")]
    NotPrimary,
    /// The node lost the primary role before the genesis transaction was proposed.
    #[error("this node lost the primary role (primary: {:?})", primary.map(RaftId::get))]
    LostPrimary {
        /// The primary's Raft id, if known.
        primary: Option<RaftId>,
    },
    /// The genesis transaction conflicted on every attempt.
    #[error("the genesis transaction conflicted on every attempt")]
    Conflict,
    /// The replica refused the genesis transaction.
    #[error("the replica refused the genesis transaction: {0}")]
    Refused(String),
    /// The service could not be opened at genesis.
    #[error("opening the service: {0}")]
    Open(String),
}

/// Ticks a starting node waits at most to become primary of a one-voter service.
pub(super) const MAX_GENESIS_TICKS: usize = 1_000;

impl Engine {
    /// Starts an election at once if this node is the only voter and not yet primary; drives it to completion.
    pub(super) fn campaign_if_alone(&self) {
        let mut e = self.lock();
        let voters = e.replica.conf_state().voters;
        if voters != [self.raft_id.get()] || e.replica.is_leader() {
            return;
        }
        let actions = e.replica.step(Event::Campaign);
        self.handle(&mut e, actions);
        for _ in 0..MAX_GENESIS_TICKS {
            e = self.persist_pending(e);
            if e.replica.is_leader() {
                break;
            }
            let actions = e.replica.step(Event::Tick);
            self.handle(&mut e, actions);
        }
    }

    /// Genesis: service info, this node, initial members and users; optionally open. Proposed through the replica;
    /// the replica signs it.
    pub(super) fn genesis(&self, attestation: Option<&GenesisAttestation>) -> Result<(), EngineError> {
        let start = &self.cfg.start;
        let gerr = |what: &'static str, path: &Path, source: std::io::Error| GenesisError::ReadFile {
            what,
            path: path.to_path_buf(),
            source,
        };
        let mut members = vec![];
        for m in &start.members {
            let cert_pem = std::fs::read_to_string(&m.cert).map_err(|e| gerr("member cert", &m.cert, e))?;
            let encryption_public_key_pem = match &m.encryption_public_key {
                Some(k) => Some(std::fs::read_to_string(k).map_err(|e| gerr("member key", k, e))?),
                None => None,
            };
            members.push(consort_gov::MemberSpec {
                cert_pem,
                encryption_public_key_pem,
                member_data: m.data.clone(),
                recovery_role: None,
            });
        }
        let mut users = vec![];
        for u in &start.users {
            let cert_pem = std::fs::read_to_string(&u.cert).map_err(|e| gerr("user cert", &u.cert, e))?;
            users.push(consort_gov::UserSpec {
                cert_pem,
                user_data: u.data.clone(),
            });
        }
        let constitution = if start.constitution_files.is_empty() {
            consort_gov::DEFAULT_CONSTITUTION.to_string()
        } else {
            let mut text = String::new();
            for f in &start.constitution_files {
                text.push_str(&std::fs::read_to_string(f).map_err(|e| gerr("constitution", f, e))?);
                text.push('\n');
            }
            text
        };
        let next = {
            let e = self.lock();
            if !e.replica.is_leader() {
                return Err(GenesisError::NotPrimary.into());
            }
            TxId {
                view: e.replica.view(),
                seqno: e.replica.last_seqno() + 1,
            }
        };
        let outcome = self.execute_write(|tx, _| -> Result<(), EngineError> {
            let service_info = serde_json::json!({
                "cert": self.ids.service_cert_pem,
                "status": "Opening",
                "recovery_count": 0,
                "current_service_create_txid": next.to_string(),
            });
            tx.put(SERVICE_INFO_TABLE, &SINGLETON_KEY, service_info.to_string().as_bytes());
            for (table, key, value) in attestation.iter().flat_map(|a| &a.join_policy) {
                tx.put(table, key.as_bytes(), value);
            }
            self.record_self_as_trusted(tx, attestation.map(|a| a.quote_info.clone()));
            consort_gov::genesis(tx, &members, &users, &constitution, start.recovery_threshold)
                .map(|_| ())
                .map_err(EngineError::Gov)
        });
        match outcome {
            Ok(_) => {}
            Err(WriteError::Body(e)) => return Err(e),
            Err(WriteError::Conflict) => return Err(GenesisError::Conflict.into()),
            Err(WriteError::NotPrimary(primary)) => return Err(GenesisError::LostPrimary { primary }.into()),
            Err(WriteError::Refused(reason)) => return Err(GenesisError::Refused(reason).into()),
        }
        if start.open_at_genesis {
            self.set_service_status("Open").map_err(GenesisError::Open)?;
        }
        self.wait_committed_inline(MAX_GENESIS_TICKS);
        Ok(())
    }

    /// Records this node as Trusted, with its endorsed certificate, in the nodes tables: the first node of a new
    /// service (genesis, or a recovery), which no join recorded. `quote_info` is its attestation, if recorded.
    pub(super) fn record_self_as_trusted(&self, tx: &mut consort_kv::Tx<'_>, quote_info: Option<serde_json::Value>) {
        let rpc_address = &self.cfg.network.rpc_address;
        // CCF records every node's signing request, from which `transition_node_to_trusted` endorses it; signing one
        // with the node's own key does not fail, and a row without one only loses that re-endorsement.
        let csr = super::certificates::node_signing_request(&self.ids.node_key, rpc_address)
            .inspect_err(|e| tracing::warn!("no certificate signing request for this node: {e}"))
            .ok();
        let mut node_info = serde_json::json!({
            "status": "Trusted",
            "public_key": self.ids.node_key.verifying_key().to_pem(),
            "rpc_interfaces": {"primary_rpc_interface": {"bind_address": rpc_address}},
            "node_to_node_address": self.cfg.network.node_to_node_address,
            "node_data": null,
            "encryption_pub_key": self.ids.node_enc_public_pem,
            "ledger_secret_seqno": 0,
            "retired_committed": false,
            "quote_info": quote_info,
        });
        if let (Some(csr), Some(row)) = (csr, node_info.as_object_mut()) {
            row.insert("certificate_signing_request".into(), csr.into());
        }
        let id = self.ids.node_id.as_str().as_bytes();
        tx.put(NODES_INFO_TABLE, id, node_info.to_string().as_bytes());
        tx.put(ENDORSED_CERTS_TABLE, id, self.ids.node_cert_pem.as_bytes());
    }

    /// Drives the replica on the calling thread until everything proposed so far is committed (bounded).
    pub(super) fn wait_committed_inline(&self, max_ticks: usize) {
        let mut e = self.lock();
        for _ in 0..max_ticks {
            e = self.persist_pending(e);
            if e.replica.commit_point().seqno >= e.replica.last_seqno() {
                return;
            }
            let actions = e.replica.step(Event::Tick);
            self.handle(&mut e, actions);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn an_unreadable_genesis_file_keeps_the_io_error_as_the_source() {
        let source = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = EngineError::from(GenesisError::ReadFile {
            what: "member cert",
            path: "member0_cert.pem".into(),
            source,
        });
        assert_eq!(err.to_string(), "genesis: member cert member0_cert.pem: no such file");
        let genesis = err.source().expect("the genesis error is kept");
        assert!(genesis.downcast_ref::<GenesisError>().is_some(), "{genesis:?}");
        let io = genesis.source().expect("the i/o error is kept");
        let io = io.downcast_ref::<std::io::Error>().expect("an i/o error");
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    }
}
