//! Recovery replay support: decoding a ledger chunk's entries ahead of applying them, and [`Offload`], the
//! second core a node may lend to do that decoding while the replica applies the previous chunk.

use crate::codec::{decode, DecodedEntry};
use crate::ConsensusError;
use consort_ledger::{parse_entry, ChunkEntries, LedgerSecret};

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
}

impl DecodedChunk {
    /// Decodes every entry of `chunk` from seqno `from` on. Pure: safe to run on another thread.
    pub fn decode(secret: &LedgerSecret, chunk: ChunkEntries, from: u64) -> Self {
        let mut entries = Vec::with_capacity(chunk.len());
        let mut error = None;
        for (seqno, bytes) in chunk.iter().filter(|(s, _)| *s >= from) {
            let decoded = parse_entry(bytes)
                .map_err(|e| ConsensusError::entry(seqno, e.to_string()))
                .and_then(|(entry, _)| Ok((entry.view, decode(secret, bytes, entry.view, seqno, true)?)));
            match decoded {
                Ok((view, d)) => entries.push((seqno, view, d)),
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        DecodedChunk { chunk, entries, error }
    }

    /// The highest signature transaction in this chunk at or below `raft_commit`: every entry up to it is
    /// committed (Raft committed the signature, and CCF's commit rule makes what it covers Committed).
    pub fn committed_through(&self, raft_commit: u64) -> Option<u64> {
        self.entries
            .iter()
            .rev()
            .find(|(seqno, _, d)| *seqno <= raft_commit && d.info.is_signature)
            .map(|(seqno, _, _)| *seqno)
    }
}
