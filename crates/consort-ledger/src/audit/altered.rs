//! Naming the entry a signature shows was altered: when the root a signature signs is not the root of the entries
//! read, the Merkle tree the signature recorded in its tree table says which leaf differs, so the audit can name
//! that transaction (and its chunk) rather than only the signature that found it. A private domain, which the
//! auditor cannot decrypt, is checked this way: its bytes are in the entry's leaf.

use super::{singleton, Finding, Validator};
use crate::merkle::MerkleTree;
use crate::signature::TREE_TABLE;
use consort_kv::WriteSet;

impl Validator {
    /// The finding for a signature at `(view, seqno)` whose signed `root` is not the `computed` root of the
    /// entries read: it names the altered transaction when the signature's tree says which one it is.
    pub(super) fn root_mismatch(
        &self,
        ws: &WriteSet,
        (view, seqno): (u64, u64),
        computed: &[u8; 32],
        root: &[u8; 32],
    ) -> Finding {
        let mismatch = format!(
            "merkle root mismatch at signature {view}.{seqno}: computed {}, signed {}",
            hex::encode(computed),
            hex::encode(root)
        );
        match self.altered_entry(ws, seqno, root) {
            Some((culprit, read, signed)) => Finding {
                reason: format!(
                    "altered after it was signed: its leaf is {}, signature {view}.{seqno} signed {} ({mismatch})",
                    hex::encode(read),
                    hex::encode(signed)
                ),
                source: None,
                culprit: Some(culprit),
            },
            None => format!(
                "{mismatch}; one of the transactions since seqno {} differs from what was signed",
                self.last_verified.1
            )
            .into(),
        }
    }

    /// The first transaction read from a chunk since the last verified signature whose leaf differs from the leaf
    /// in the tree table of the signature at `seqno`, with its leaf as read and as signed. Only a Consort-format tree whose root is
    /// the signed `root` is believed (the signature vouches for its leaves then); otherwise there is no culprit.
    fn altered_entry(&self, ws: &WriteSet, seqno: u64, root: &[u8; 32]) -> Option<(u64, [u8; 32], [u8; 32])> {
        let bytes = singleton(ws, TREE_TABLE).filter(|b| b.starts_with(b"CMT1"))?;
        let signed = MerkleTree::deserialise(bytes).ok()?;
        if signed.len() != seqno || signed.try_root_at(seqno).ok()? != *root {
            return None;
        }
        // The entry at a snapshot the audit started from came with the snapshot, not from a chunk: if it differs,
        // the chunks do not continue that snapshot, which the caller says.
        let after_snapshot = self.snapshot.as_ref().map_or(0, |(origin, _)| origin.seqno + 1);
        let from = self.last_verified.1.max(signed.first_retained()).max(after_snapshot);
        (from..seqno).find_map(|i| {
            let (read, recorded) = (self.tree.leaf(i)?, signed.leaf(i)?);
            (read != recorded).then_some((i, read, recorded))
        })
    }

    /// The view of a transaction no verified signature covers yet, if the replay read it.
    pub(super) fn view_of(&self, seqno: u64) -> Option<u64> {
        self.unverified.iter().find(|(s, _)| *s == seqno).map(|(_, v)| *v)
    }
}
