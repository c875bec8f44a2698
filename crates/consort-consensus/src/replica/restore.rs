//! The replica's side of a disaster recovery's last step: which old seqnos it still cannot read, and taking the
//! old private state and secrets in once the members' shares restored them (see [`crate::recovery`]).

use super::Replica;
use crate::error::ConsensusError;
use crate::recovery::{is_private, PrivateRestore, RecoveryFault};
use consort_ledger::{ChunkEntries, LedgerStorage};

impl<S: LedgerStorage> Replica<S> {
    /// For a recovered service whose old ledger secrets are not restored yet: the last seqno of the old part
    /// (entries 1 to it have their private domains unread). `None` when this replica reads every entry.
    pub fn private_pending_through(&self) -> Option<u64> {
        let secrets = &self.node.store().secrets;
        (!secrets.covers(1)).then(|| secrets.first_version() - 1)
    }

    /// The ledger chunk holding `seqno`, for a [`PrivateRestore`] to read outside the node's lock.
    pub fn read_chunk_of(&self, seqno: u64) -> Result<ChunkEntries, ConsensusError> {
        Ok(self.node.store().ledger.read_chunk_of(seqno)?)
    }

    /// Takes in a finished [`PrivateRestore`]: the old private maps go under the live store (keys written since
    /// keep their newer state) and the old secrets into the keyring, before the recovered service's own. Returns
    /// how many keys were restored. From then on the replica reads every entry, and snapshots resume.
    pub fn finish_private_restore(&mut self, restore: PrivateRestore) -> Result<usize, ConsensusError> {
        let Some(through) = self.private_pending_through() else {
            return Err(RecoveryFault::NothingToRestore.into());
        };
        if restore.through() != through {
            return Err(RecoveryFault::Incomplete {
                next: restore.next_seqno().unwrap_or(restore.through() + 1),
                through,
            }
            .into());
        }
        let verified_root = self
            .recovery_root
            .ok_or(RecoveryFault::NotTheVerifiedLedger { through })?;
        let (old, private) = restore.into_parts(verified_root)?;
        let log = self.node.mut_store();
        let secrets = log.secrets.with_older(&old).map_err(RecoveryFault::Keyring)?;
        let restored = log
            .store
            .merge_older(private, is_private)
            .map_err(RecoveryFault::Merge)?;
        log.secrets = secrets;
        Ok(restored)
    }
}
