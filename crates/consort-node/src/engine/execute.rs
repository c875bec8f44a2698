//! Executing a write transaction on the primary: run the body, commit to the store and propose to the replica
//! under one hold of the engine lock, re-executing on optimistic-concurrency conflicts.

use super::{Engine, TxId};
use consort_consensus::{Event, ProposeError};
use consort_kv::{CommitOutcome, Tx};
use std::sync::Arc;

/// Why [`Engine::execute_write`] did not commit.
#[derive(Debug)]
pub enum WriteError<E> {
    /// The transaction body refused (its writes were dropped).
    Body(E),
    /// Conflicts persisted through every re-execution.
    Conflict,
    /// This node is not the primary (Raft id of the primary, if known): the request must go there.
    NotPrimary(Option<consort_consensus::RaftId>),
    /// The replica refused the proposal (it stopped, or lost the primary role meanwhile).
    Refused(String),
}

impl Engine {
    /// Runs `body` in a transaction and, if it returns Ok and wrote something, commits it to the store and
    /// proposes it to the replica under one hold of the engine lock; re-executes on optimistic-concurrency
    /// conflicts up to `limits.max_occ_attempts` times. `body` can also ask for the current Merkle root (computed on
    /// demand: governance needs it for proposal ids, application writes do not). An Err drops the writes.
    pub fn execute_write<T, E>(
        &self,
        mut body: impl FnMut(&mut Tx<'static>, &dyn Fn() -> [u8; 32]) -> Result<T, E>,
    ) -> Result<(T, TxId), WriteError<E>> {
        self.execute_claimed_write(|tx, root| body(tx, root).map(|v| (v, None)))
    }

    /// As [`Engine::execute_write`], for a body that also names an application claims digest to bind into the
    /// transaction's receipt.
    pub fn execute_claimed_write<T, E>(
        &self,
        mut body: impl FnMut(&mut Tx<'static>, &dyn Fn() -> [u8; 32]) -> Result<(T, Option<[u8; 32]>), E>,
    ) -> Result<(T, TxId), WriteError<E>> {
        let root = || self.lock().replica.merkle_root();
        for _ in 0..self.cfg.limits.max_occ_attempts {
            let store = {
                let e = self.lock();
                if !e.replica.is_leader() {
                    return Err(WriteError::NotPrimary(e.replica.leader()));
                }
                e.replica.store().clone()
            };
            let mut tx = Tx::shared(store.clone());
            let (value, claims_digest) = body(&mut tx, &root).map_err(WriteError::Body)?;
            let mut e = self.lock();
            if !Arc::ptr_eq(&store, e.replica.store()) {
                // A snapshot replaced the store meanwhile: run again on the new one.
                continue;
            }
            if !e.replica.is_leader() {
                return Err(WriteError::NotPrimary(e.replica.leader()));
            }
            match store.commit(tx, |version, ws| (version, ws.clone())) {
                Ok(CommitOutcome::Committed {
                    result: (version, write_set),
                    ..
                }) => {
                    let actions = e.replica.step(Event::Propose {
                        version,
                        write_set,
                        claims_digest,
                    });
                    match self.handle(&mut e, actions) {
                        Some(Ok(txid)) => {
                            self.metrics.transactions.inc();
                            return Ok((value, txid));
                        }
                        Some(Err(ProposeError::NotLeader { leader })) => {
                            return Err(WriteError::NotPrimary(leader.map(consort_consensus::RaftId)))
                        }
                        Some(Err(err)) => return Err(WriteError::Refused(err.to_string())),
                        None => return Err(WriteError::Refused("the replica did not answer the proposal".into())),
                    }
                }
                Ok(CommitOutcome::ReadOnly) => {
                    drop(e);
                    return Ok((value, self.current_txid()));
                }
                Err(_) => {
                    drop(e);
                    self.metrics.occ_conflicts.inc();
                }
            }
        }
        Err(WriteError::Conflict)
    }
}
