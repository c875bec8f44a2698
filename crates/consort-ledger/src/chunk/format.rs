//! The bytes of a chunk file: its header, the position table that a closed chunk ends with, and the checks that
//! a file read back from the host's disk really holds the entries its name and table say.

use crate::entry::parse_entry;
use crate::limits::MAX_ENTRIES_PER_CHUNK;
use crate::signature::SIGNATURES_TABLE;
use crate::LedgerError;

/// Size of the chunk header (the u64 offset of the position table).
pub const CHUNK_HEADER_SIZE: u64 = 8;

/// Whether an encoded entry is a signature transaction (its public domain writes the signatures table).
pub fn entry_is_signature(entry: &[u8]) -> bool {
    parse_entry(entry)
        .ok()
        .and_then(|(e, _)| consort_kv::WriteSet::deserialise_public(e.public_domain).ok())
        .is_some_and(|(_, ws)| ws.maps.contains_key(SIGNATURES_TABLE))
}

/// Entries of a chunk's bytes, found by scanning from the header. Returns the offsets and the end of the last
/// whole, well-formed entry with the expected seqno; `Err` only for an entry that parses but is out of sequence.
pub(crate) fn scan_entries(name: &str, bytes: &[u8], start: u64) -> Result<(Vec<u64>, u64), LedgerError> {
    let mut offsets = Vec::new();
    let mut pos = CHUNK_HEADER_SIZE;
    while pos < bytes.len() as u64 {
        let Ok((e, used)) = parse_entry(&bytes[pos as usize..]) else {
            break;
        };
        let expected = start + offsets.len() as u64;
        if e.seqno != expected {
            return Err(LedgerError::chunk(
                name,
                format!("entry at offset {pos} has seqno {}, expected {expected}", e.seqno),
            ));
        }
        offsets.push(pos);
        pos += used as u64;
    }
    Ok((offsets, pos.min(bytes.len() as u64)))
}

/// Validates a complete chunk's header and position table against its entries; returns (offsets, entries end).
/// `expected_end`, when known from the file name, must match the number of entries.
pub(crate) fn complete_chunk_entries(
    name: &str,
    bytes: &[u8],
    start: u64,
    expected_end: Option<u64>,
) -> Result<(Vec<u64>, u64), LedgerError> {
    let err = |m: String| LedgerError::chunk(name, m);
    if (bytes.len() as u64) < CHUNK_HEADER_SIZE {
        return Err(err(format!("{} bytes is shorter than the chunk header", bytes.len())));
    }
    let table_at = read_header(bytes);
    let len = bytes.len() as u64;
    if table_at <= CHUNK_HEADER_SIZE || table_at > len || (len - table_at) & 3 != 0 {
        return Err(err(format!(
            "invalid position table offset {table_at} in a file of {len} bytes"
        )));
    }
    let count = (len - table_at) / 4;
    if count == 0 || count > MAX_ENTRIES_PER_CHUNK {
        return Err(err(format!("position table holds {count} entries")));
    }
    if let Some(end) = expected_end {
        if end - start + 1 != count {
            return Err(err(format!(
                "name says {} entries, position table holds {count}",
                end - start + 1
            )));
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
            return Err(err(format!("position of seqno {seqno} is {offset}, entry is at {pos}")));
        }
        let (e, used) = parse_entry(&entries[pos as usize..]).map_err(|source| LedgerError::ChunkEntry {
            name: name.to_string(),
            seqno,
            source: Box::new(source),
        })?;
        if e.seqno != seqno {
            return Err(err(format!(
                "entry at offset {pos} has seqno {}, expected {seqno}",
                e.seqno
            )));
        }
        pos += used as u64;
    }
    if pos != table_at {
        return Err(err(format!(
            "entries end at {pos}, position table starts at {table_at}"
        )));
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
        let LedgerError::ChunkEntry { seqno, source, .. } = &err else {
            panic!("expected ChunkEntry, got {err}");
        };
        assert_eq!((*seqno, source.as_ref()), (1, &LedgerError::UnsupportedVersion(7)));
        assert_eq!(err.source().map(|s| s.to_string()), Some(source.to_string()));
    }
}
