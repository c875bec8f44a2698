//! A receipt's parts gathered in two steps: the replica takes what is cheap while its owner holds it
//! ([`crate::Replica::receipt_sources`]), and [`ReceiptSources::finish`] does the rest without it.

use crate::codec::inspect;
use crate::error::{ConsensusError, EntryFault};
use consort_ledger::{
    EntrySource, MerkleTree, PrimarySignature, ProofStep, SIGNATURES_TABLE, SINGLETON_KEY, TREE_TABLE,
};

/// A receipt's parts as far as the replica gathers them under its owner's lock; [`ReceiptSources::finish`] does
/// the rest (reading an old signature entry, decoding it, and taking the path from the tree it stored).
#[derive(Debug, Clone)]
pub struct ReceiptSources {
    pub(crate) seqno: u64,
    pub(crate) sig_seqno: u64,
    pub(crate) sig_view: u64,
    pub(crate) path: Option<Vec<ProofStep>>,
    /// Where the signature transaction's entry lies.
    pub signature_entry: EntrySource,
}

impl ReceiptSources {
    /// The signature and the Merkle path, given the signature transaction's entry (read from
    /// [`ReceiptSources::signature_entry`]).
    pub fn finish(self, signature_entry: &[u8]) -> Result<(PrimarySignature, Vec<ProofStep>), ConsensusError> {
        let sig_seqno = self.sig_seqno;
        let info = inspect(signature_entry, self.sig_view, sig_seqno)?;
        let value = |table: &'static str| match info
            .public
            .maps
            .get(table)
            .and_then(|m| m.writes.get(&SINGLETON_KEY[..]))
        {
            Some(Some(v)) => Ok(v),
            _ => Err(ConsensusError::entry(sig_seqno, EntryFault::MissingSingleton(table))),
        };
        let path = match self.path {
            Some(path) => path,
            None => MerkleTree::deserialise(value(TREE_TABLE)?)
                .and_then(|stored| stored.path(self.seqno, sig_seqno))
                .map_err(|source| {
                    ConsensusError::entry(
                        sig_seqno,
                        EntryFault::MerklePath {
                            seqno: self.seqno,
                            source,
                        },
                    )
                })?,
        };
        let raw = value(SIGNATURES_TABLE)?.clone();
        let sig = PrimarySignature::from_json_bytes(&raw).map_err(|e| ConsensusError::entry(sig_seqno, e))?;
        Ok((sig, path))
    }
}
