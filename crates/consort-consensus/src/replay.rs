//! Recovery replay support: decoding a ledger chunk's entries ahead of applying them, and [`Offload`], the
//! second core a node may lend to do that decoding while the replica applies the previous chunk, and the replay
//! itself: every ledger entry taken in order into a replica that has no `RawNode` yet.

use crate::accept::Origin;
use crate::accept::PartialReplicaRef;
use crate::codec::{decode, DecodedEntry, PrivateDomain};
use crate::error::{ConsensusError, Inconsistency};
use crate::log::Log;
use crate::recovery::Trust;
use consort_kv::Commitment;
use consort_ledger::{parse_entry, ChunkEntries, LedgerSecrets, LedgerStorage, MerkleTree};
use std::collections::BTreeSet;

/// A second core lent to replay by the node. This crate starts no threads (it is sans-IO, like time and
/// randomness, concurrency is injected): a node that wants [`crate::Replica::open_with_offload`] to parse, decrypt
/// and hash the next ledger chunk on another core while this one applies the current chunk implements this with
/// a scoped thread. Without it replay runs on the calling thread alone.
pub trait Offload: Sync {
    /// Runs `background` and `foreground` at the same time, `background` on another thread, and returns once both
    /// have finished. (Running one after the other is also correct, only slower.)
    fn run_beside(&self, background: Box<dyn FnOnce() + Send + '_>, foreground: &mut dyn FnMut());
}

/// The entries of one chunk from `from` on, each parsed, checked and decrypted, or the first error (the entries
/// after a bad one are not decoded: replay stops there).
pub(crate) struct DecodedChunk {
    pub chunk: ChunkEntries,
    /// `(seqno, view, entry)` in seqno order.
    pub entries: Vec<(u64, u64, DecodedEntry)>,
    /// Decoding stopped at this error (reported once the entries before it are applied).
    pub error: Option<ConsensusError>,
    /// The first seqno decoded.
    pub from: u64,
    /// The last seqno to decode (entries after it in the chunk are left alone).
    pub through: u64,
    /// How many ledger secrets the keyring held when the chunk was decoded: a rekey applied since (replay learns
    /// rekeys in order) means the entries after it must be decoded again.
    pub secrets_known: usize,
}

impl DecodedChunk {
    /// Decodes every entry of `chunk` from seqno `from` to `through`. Pure: safe to run on another thread. Entries
    /// the keyring does not cover (the old part of a recovered ledger before its secrets are restored) keep their
    /// private domain encrypted.
    pub(crate) fn decode(secrets: &LedgerSecrets, chunk: ChunkEntries, from: u64, through: u64) -> Self {
        let mut entries = Vec::with_capacity(chunk.len());
        let mut error = None;
        for (seqno, bytes) in chunk.iter().filter(|(s, _)| *s >= from && *s <= through) {
            let private = if secrets.covers(seqno) {
                PrivateDomain::Decrypt
            } else {
                PrivateDomain::Skip
            };
            let decoded = parse_entry(bytes)
                .map_err(|e| ConsensusError::entry(seqno, e))
                .and_then(|(entry, _)| {
                    Ok((
                        entry.view,
                        decode(secrets.for_seqno(seqno), bytes, entry.view, seqno, private)?,
                    ))
                });
            match decoded {
                Ok((view, d)) => entries.push((seqno, view, d)),
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        DecodedChunk {
            chunk,
            entries,
            error,
            from,
            through,
            secrets_known: secrets.len(),
        }
    }

    /// The highest signature transaction in this chunk at or below `raft_commit`: every entry up to it is
    /// committed (Raft committed the signature, and CCF's commit rule makes what it covers Committed).
    pub(crate) fn committed_through(&self, raft_commit: u64) -> Option<u64> {
        self.entries
            .iter()
            .rev()
            .find(|(seqno, _, d)| *seqno <= raft_commit && d.info.is_signature)
            .map(|(seqno, _, _)| *seqno)
    }
}

/// The replica's state before its `RawNode` exists (replay at start-up).
pub(crate) struct PartialReplica<'a, S: LedgerStorage> {
    pub(crate) log: Log<S>,
    pub(crate) tree: MerkleTree,
    pub(crate) signatures: BTreeSet<u64>,
    pub(crate) trusted: Trust<'a>,
}

impl<S: LedgerStorage> PartialReplica<'_, S> {
    pub(crate) fn as_ref(&mut self) -> PartialReplicaRef<'_, S> {
        PartialReplicaRef {
            log: &mut self.log,
            tree: &mut self.tree,
            signatures: &mut self.signatures,
            trusted: self.trusted,
            snapshots: None,
        }
    }

    /// Replays the ledger from seqno `from` to `through` (at most its last entry), streaming it one chunk at a time, so memory holds at most two
    /// chunks besides the store and the tree. Each chunk is decoded (parsed, decrypted, hashed) in one pass, on
    /// `offload`'s core while this one applies the previous chunk if there is one; entries are then taken in
    /// order exactly as [`PartialReplicaRef::accept`] would, signatures verified against the recomputed root.
    /// Entries covered by a signature at or below `raft_commit` (the persisted Raft commit index) are committed:
    /// the store keeps no undo records for them.
    pub(crate) fn replay(
        &mut self,
        from: u64,
        through: u64,
        raft_commit: u64,
        offload: Option<&dyn Offload>,
    ) -> Result<(), ConsensusError> {
        let last = self.log.ledger.last_seqno().min(through);
        if from > last {
            return Ok(());
        }
        // Decoding ahead uses the keyring of the moment; `apply_chunk` decodes again after a rekey it applies.
        let mut current = DecodedChunk::decode(&self.log.secrets, self.log.ledger.read_chunk_of(from)?, from, last);
        loop {
            let next_from = current.chunk.last_seqno().min(last) + 1;
            let Some(offload) = offload.filter(|_| next_from <= last) else {
                self.apply_chunk(current, raft_commit)?;
                if next_from > last {
                    return Ok(());
                }
                let chunk = self.log.ledger.read_chunk_of(next_from)?;
                current = DecodedChunk::decode(&self.log.secrets, chunk, next_from, last);
                continue;
            };
            let next_chunk = self.log.ledger.read_chunk_of(next_from)?;
            let secrets = self.log.secrets.clone();
            let mut next = None;
            let mut applied = Ok(());
            let mut current_slot = Some(current);
            offload.run_beside(
                Box::new(|| next = Some(DecodedChunk::decode(&secrets, next_chunk, next_from, last))),
                &mut || {
                    if let Some(c) = current_slot.take() {
                        applied = self.apply_chunk(c, raft_commit);
                    }
                },
            );
            applied?;
            current = next.ok_or(Inconsistency::OffloadDidNotRun)?;
        }
    }

    /// Takes a decoded chunk's entries in order. After an entry that adds a ledger secret (a rekey), the rest of the
    /// chunk is decoded again with the grown keyring: it was decoded ahead without that secret.
    pub(crate) fn apply_chunk(&mut self, mut decoded: DecodedChunk, raft_commit: u64) -> Result<(), ConsensusError> {
        if self.log.secrets.len() != decoded.secrets_known {
            // Decoded ahead, on another core, while the previous chunk applied a rekey.
            decoded = DecodedChunk::decode(&self.log.secrets, decoded.chunk, decoded.from, decoded.through);
        }
        loop {
            let committed_through = decoded.committed_through(raft_commit).unwrap_or(0);
            let mut rekeyed_after = None;
            for (seqno, view, entry) in std::mem::take(&mut decoded.entries) {
                let is_signature = entry.info.is_signature;
                let bytes = decoded
                    .chunk
                    .entry(seqno)
                    .ok_or(Inconsistency::EntryNotInChunk { seqno })?;
                let commitment = if seqno <= committed_through {
                    Commitment::Committed
                } else {
                    Commitment::Uncommitted
                };
                self.as_ref()
                    .accept_decoded(view, seqno, bytes, entry, Origin::Ledger, commitment)?;
                if is_signature && seqno <= raft_commit {
                    // Entries of earlier chunks that this signature covers still had undo records.
                    self.log.store.set_committed(seqno);
                }
                if self.log.secrets.len() != decoded.secrets_known {
                    rekeyed_after = Some(seqno);
                    break;
                }
            }
            match rekeyed_after {
                Some(seqno) if seqno < decoded.chunk.last_seqno().min(decoded.through) => {
                    let through = decoded.through;
                    decoded = DecodedChunk::decode(&self.log.secrets, decoded.chunk, seqno + 1, through);
                }
                _ => {
                    return match decoded.error {
                        Some(e) => Err(e),
                        None => Ok(()),
                    }
                }
            }
        }
    }
}
