//! The bytes of a chunk file: its header, the position table that a closed chunk ends with, and the checks that
//! a file read back from the host's disk really holds the entries its name and table say.

use crate::entry::{parse_entry, parse_entry_header, ENTRY_HEADER_SIZE, ENTRY_PREFIX_SIZE, ENTRY_VERSION};
use crate::error::{HeaderDamage, TableDamage};
use crate::limits::{MAX_ENTRIES_PER_CHUNK, MAX_ENTRY_SIZE};
use crate::signature::SIGNATURES_TABLE;
use crate::{ChunkDamage, LedgerError};

/// Size of the chunk header (the u64 offset of the position table).
pub const CHUNK_HEADER_SIZE: u64 = 8;

/// Whether an encoded entry is a signature transaction (its public domain writes the signatures table).
pub fn entry_is_signature(entry: &[u8]) -> bool {
    parse_entry(entry)
        .ok()
        .and_then(|(e, _)| consort_kv::WriteSet::deserialise_public(e.public_domain).ok())
        .is_some_and(|(_, ws)| ws.maps.contains_key(SIGNATURES_TABLE))
}

/// How the tail of an open chunk, after its last whole entry, can have been left by an interrupted write (see
/// the module documentation of `crate::ledger` for why only these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TornKind {
    /// Zero bytes to the end of the file: space the file grew by whose data never reached the disk.
    Zeros,
    /// A prefix of the position table of the entries before it: a close cut short.
    PositionTable,
    /// The first bytes of an entry: fewer than a header, or a header whose entry runs past the end of the file.
    PartialEntry,
}

impl TornKind {
    /// What the dropped bytes were, for the log.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            TornKind::Zeros => "zero bytes never written",
            TornKind::PositionTable => "part of an interrupted close's position table",
            TornKind::PartialEntry => "a partial entry",
        }
    }
}

/// An open-named chunk read back: its whole, in-sequence entries and what follows them.
#[derive(Debug)]
pub(crate) struct OpenScan {
    /// Offset of each whole entry.
    pub(crate) offsets: Vec<u64>,
    /// End of the last whole entry ([`CHUNK_HEADER_SIZE`] if there is none).
    pub(crate) entries_end: u64,
    /// What the bytes after `entries_end` are, if there are any.
    pub(crate) torn: Option<TornKind>,
    /// The header's value: 0 while open; the entries' end after a close or a rollback that was interrupted.
    pub(crate) header: u64,
}

/// Reads an open-named chunk (no valid position table): every entry must parse, in sequence, up to a tail that
/// an interrupted append or close can have left ([`TornKind`]); anything else is [`LedgerError::Damaged`].
/// A file shorter than the header (all zero, as it is written) holds no entry. The header must be 0 or the
/// entries' end (or a torn write of it), or, unless a position table follows the entries, beyond their end: a
/// close whose last entries a crash lost (the header is written in place, and may reach the disk before them),
/// or a rollback interrupted before it cleared the header.
pub(crate) fn scan_open_chunk(name: &str, bytes: &[u8], start: u64) -> Result<OpenScan, LedgerError> {
    let len = bytes.len() as u64;
    if len < CHUNK_HEADER_SIZE {
        if bytes.iter().any(|&b| b != 0) {
            let damage = ChunkDamage::BadHeader(HeaderDamage::TornNotZero(len));
            return Err(LedgerError::damaged(name, 0, damage));
        }
        let torn = (len > 0).then_some(TornKind::Zeros);
        return Ok(OpenScan {
            offsets: Vec::new(),
            entries_end: 0,
            torn,
            header: 0,
        });
    }
    let header = read_header(bytes);
    let mut offsets = Vec::new();
    let mut pos = CHUNK_HEADER_SIZE;
    let mut torn = None;
    while pos < len {
        let rest = &bytes[pos as usize..];
        let expected = start + offsets.len() as u64;
        match parse_entry(rest) {
            Ok((e, used)) if e.seqno == expected => {
                offsets.push(pos);
                pos += used as u64;
            }
            parsed => {
                torn = torn_kind(rest, &offsets);
                if torn.is_none() {
                    let damage = entry_damage(parsed.map(|(e, _)| e.seqno), expected);
                    return Err(LedgerError::damaged(name, pos, damage));
                }
                break;
            }
        }
    }
    // A close writes the entries' end over the zero header: a torn write leaves each byte old (0) or new.
    let partly_written = header
        .to_le_bytes()
        .iter()
        .zip(pos.to_le_bytes())
        .all(|(&have, written)| have == 0 || have == written);
    // Past the entries: written by a close whose later bytes a crash lost, or left by an interrupted rollback. But
    // a position table (even part of one) follows the entries it was written for, so its header is theirs.
    let header_ok = partly_written || (torn != Some(TornKind::PositionTable) && header >= pos);
    if !header_ok {
        let damage = ChunkDamage::BadHeader(HeaderDamage::OpenChunkOffset {
            header,
            entries_end: pos,
            len,
        });
        return Err(LedgerError::damaged(name, 0, damage));
    }
    Ok(OpenScan {
        offsets,
        entries_end: pos,
        torn,
        header,
    })
}

/// Whether `tail`, the bytes after the last whole entry of an open chunk whose entries start at `offsets`, is
/// what an interrupted write leaves, and which.
fn torn_kind(tail: &[u8], offsets: &[u64]) -> Option<TornKind> {
    if tail.iter().all(|&b| b == 0) {
        return Some(TornKind::Zeros);
    }
    let table = position_table(offsets);
    if tail.len() <= table.len() && table.starts_with(tail) {
        return Some(TornKind::PositionTable);
    }
    if tail.first() != Some(&ENTRY_VERSION) {
        return None;
    }
    if tail.len() < ENTRY_HEADER_SIZE {
        return Some(TornKind::PartialEntry);
    }
    // A whole header: its size is one this ledger writes, and the entry runs past the end of the file.
    let (_, _, total) = parse_entry_header(tail).ok()?;
    let plausible = (ENTRY_PREFIX_SIZE as u64..=MAX_ENTRY_SIZE as u64).contains(&total);
    (plausible && total > tail.len() as u64).then_some(TornKind::PartialEntry)
}

/// What is wrong with an entry expected to be `expected` that parsed as seqno `parsed`, or did not parse.
fn entry_damage(parsed: Result<u64, LedgerError>, expected: u64) -> ChunkDamage {
    match parsed {
        Ok(got) => ChunkDamage::WrongSeqno { expected, got },
        Err(LedgerError::Truncated {
            what: "entry",
            need,
            have,
        }) => ChunkDamage::LengthBeyondEnd {
            seqno: expected,
            need,
            have,
        },
        Err(source) => ChunkDamage::BadEntry {
            seqno: expected,
            source: Box::new(source),
        },
    }
}

/// Validates a closed chunk: header, position table and every entry; returns (offsets, entries end). Any
/// disagreement is [`LedgerError::Damaged`] at the offset where it was found. `expected_end`, when known from the
/// file name, must match the number of entries.
pub(crate) fn complete_chunk_entries(
    name: &str,
    bytes: &[u8],
    start: u64,
    expected_end: Option<u64>,
) -> Result<(Vec<u64>, u64), LedgerError> {
    let damaged = |offset: u64, damage: ChunkDamage| LedgerError::damaged(name, offset, damage);
    let len = bytes.len() as u64;
    if len < CHUNK_HEADER_SIZE {
        let damage = ChunkDamage::BadHeader(HeaderDamage::Short(len));
        return Err(damaged(0, damage));
    }
    let table_at = read_header(bytes);
    if table_at <= CHUNK_HEADER_SIZE || table_at > len || (len - table_at) & 3 != 0 {
        let damage = ChunkDamage::BadHeader(HeaderDamage::TableOffset { table_at, len });
        return Err(damaged(0, damage));
    }
    let count = (len - table_at) / 4;
    if count == 0 || count > MAX_ENTRIES_PER_CHUNK {
        let damage = ChunkDamage::BadPositionTable(TableDamage::Count(count));
        return Err(damaged(table_at, damage));
    }
    if let Some(end) = expected_end {
        if end - start + 1 != count {
            return Err(damaged(
                table_at,
                ChunkDamage::NameRange {
                    start,
                    end,
                    held: count,
                },
            ));
        }
    }
    let table = &bytes[table_at as usize..];
    let offsets: Vec<u64> = table
        .chunks_exact(4)
        .map(|c| u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        .collect();
    let entries = &bytes[..table_at as usize];
    let mut pos = CHUNK_HEADER_SIZE;
    for (i, &offset) in offsets.iter().enumerate() {
        let seqno = start + i as u64;
        if offset != pos {
            let damage = ChunkDamage::BadPositionTable(TableDamage::Misplaced {
                seqno,
                offset,
                actual: pos,
            });
            return Err(damaged(table_at + 4 * i as u64, damage));
        }
        match parse_entry(&entries[pos as usize..]) {
            Ok((e, used)) if e.seqno == seqno => pos += used as u64,
            parsed => return Err(damaged(pos, entry_damage(parsed.map(|(e, _)| e.seqno), seqno))),
        }
    }
    if pos != table_at {
        let damage = ChunkDamage::BadPositionTable(TableDamage::EntriesEnd {
            entries_end: pos,
            table_at,
        });
        return Err(damaged(pos, damage));
    }
    Ok((offsets, table_at))
}

/// The position table of a chunk whose entries start at `offsets`: one little-endian u32 per entry.
pub(crate) fn position_table(offsets: &[u64]) -> Vec<u8> {
    let mut table = Vec::with_capacity(offsets.len() * 4);
    for &o in offsets {
        // Offsets are below MAX_CHUNK_SIZE = u32::MAX, checked on append.
        table.extend_from_slice(&(o as u32).to_le_bytes());
    }
    table
}

/// The header of a chunk of at least [`CHUNK_HEADER_SIZE`] bytes: the position table's offset (0 while open).
fn read_header(bytes: &[u8]) -> u64 {
    let mut header = [0u8; CHUNK_HEADER_SIZE as usize];
    header.copy_from_slice(&bytes[..CHUNK_HEADER_SIZE as usize]);
    u64::from_le_bytes(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::sample_ledger;
    use std::error::Error;

    #[test]
    fn an_entry_that_does_not_parse_is_named_with_the_parser_error_as_source() {
        let files = sample_ledger(1, 2).committed_chunk_files(1);
        let (name, mut bytes) = files.into_iter().next().unwrap();
        let good = complete_chunk_entries(&name, &bytes, 1, None).unwrap();
        assert_eq!(good.0.first(), Some(&CHUNK_HEADER_SIZE));
        bytes[CHUNK_HEADER_SIZE as usize] = 7;
        let err = complete_chunk_entries(&name, &bytes, 1, None).unwrap_err();
        let LedgerError::Damaged {
            offset,
            damage: ChunkDamage::BadEntry { seqno, source },
            ..
        } = &err
        else {
            panic!("expected a bad entry, got {err}");
        };
        assert_eq!(
            (*offset, *seqno, source.as_ref()),
            (CHUNK_HEADER_SIZE, 1, &LedgerError::UnsupportedVersion(7))
        );
        let damage = err.source().expect("the damage is the source");
        assert_eq!(damage.source().map(|s| s.to_string()), Some(source.to_string()));
    }
}
