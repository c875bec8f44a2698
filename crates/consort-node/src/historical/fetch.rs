//! Building historical states from this node's ledger files: read a committed entry (off the engine lock), check it
//! is the transaction asked for, decrypt its private domain with the ledger secret of its seqno, and put what it
//! wrote into a store of its own. Runs on the cache's fetch threads, never on a request's.

use super::cache::{BuildError, Built};
use super::{HistoricalState, RangeStates};
use crate::engine::storage::FsStorage;
use crate::engine::{Engine, Seqno, TxId};
use consort_consensus::codec;
use consort_kv::Store;
use consort_ledger::{EntrySource, LedgerSecrets, LedgerStorage};
use std::sync::Arc;

/// Bytes a historical state is counted as beyond its entry's: the store, its maps and the receipt.
pub const STATE_OVERHEAD_BYTES: usize = 1024;

/// The store holding what the transaction `id` wrote, decoded from its ledger entry `bytes`, and the bytes it is
/// counted as. The store's only version is 1 (it holds one transaction; the TxID says which).
pub fn decode_state(secrets: &LedgerSecrets, id: TxId, bytes: &[u8]) -> Result<Built<Arc<Store>>, BuildError> {
    let (view, seqno) = (id.view.get(), id.seqno.get());
    if !secrets.covers(seqno) {
        return Err(BuildError::Failed(format!(
            "this node does not hold the ledger secret of {id} yet"
        )));
    }
    let failed = |e: consort_consensus::ConsensusError| BuildError::Failed(format!("entry {id}: {e}"));
    let info = codec::inspect(bytes, view, seqno).map_err(failed)?;
    let ws = codec::full_write_set(secrets.for_seqno(seqno), bytes, &info).map_err(failed)?;
    let store = Store::new();
    store
        .apply_committed(1, ws)
        .map_err(|e| BuildError::Failed(format!("entry {id}: {e}")))?;
    // The decoded writes take about as much as the entry, and the store's maps about as much again.
    Ok((Arc::new(store), 2 * bytes.len() + STATE_OVERHEAD_BYTES))
}

/// The state of the committed transaction `id` with its receipt.
pub fn fetch_state(engine: &Engine, id: TxId) -> Result<Built<Arc<HistoricalState>>, BuildError> {
    let (parts, entry) = engine
        .receipt_with_entry(id)
        .map_err(|e| BuildError::Failed(e.to_string()))?;
    let (store, bytes) = decode_state(&engine.ledger_secrets(), id, &entry)?;
    let state = HistoricalState {
        txid: id,
        store,
        receipt: Some(parts),
    };
    Ok((Arc::new(state), bytes))
}

/// The states of the committed transactions `from..=to`, in order, ending early (at `through`) once they hold
/// `max_bytes`: what does not fit is the next page's. At least one state is always returned.
pub fn fetch_range(
    engine: &Engine,
    from: Seqno,
    to: Seqno,
    max_bytes: usize,
) -> Result<Built<Arc<RangeStates>>, BuildError> {
    let located = engine
        .committed_entries(from, to)
        .map_err(|e| BuildError::Failed(e.to_string()))?;
    let storage = FsStorage::new(&engine.config().storage.ledger_dir)
        .map_err(|e| BuildError::Failed(format!("ledger directory: {e}")))?;
    let secrets = engine.ledger_secrets();
    let mut chunk: Option<(String, Vec<u8>)> = None;
    let mut states = Vec::new();
    let mut held = 0usize;
    let mut through = from;
    for (id, source) in located.entries {
        let bytes = read_entry(&storage, &source, &mut chunk).map_err(|e| BuildError::Failed(format!("{id}: {e}")))?;
        let (store, size) = decode_state(&secrets, id, &bytes)?;
        if !states.is_empty() && held + size > max_bytes {
            break;
        }
        held += size;
        through = id.seqno;
        states.push((id.seqno, store));
    }
    Ok((Arc::new(RangeStates { states, through }), held))
}

/// Reads one entry, keeping the last chunk file read so that the entries of one chunk share a single read.
fn read_entry(
    storage: &FsStorage,
    source: &EntrySource,
    chunk: &mut Option<(String, Vec<u8>)>,
) -> Result<Vec<u8>, consort_ledger::LedgerError> {
    let settled = match source {
        EntrySource::Bytes(b) => return Ok(b.clone()),
        EntrySource::Settled(s) => s,
    };
    let name = settled.chunk_file();
    if chunk.as_ref().map(|(n, _)| n) != Some(&name) {
        let bytes = storage.read(&name)?;
        *chunk = Some((name, bytes));
    }
    match chunk {
        Some((_, bytes)) => settled.read_in(bytes),
        None => settled.read(storage),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use consort_consensus::View;
    use consort_kv::{DomainHeader, WriteSet};
    use consort_ledger::{encode_entry, LedgerSecret};

    fn entry(secret: &LedgerSecret, view: u64, seqno: u64) -> Vec<u8> {
        let mut ws = WriteSet::default();
        ws.put("records", &1u64.to_le_bytes(), b"private one");
        ws.put("public:records", &1u64.to_le_bytes(), b"public one");
        let header = DomainHeader::write_set(seqno, [0; 32], secret.commit_evidence_digest(view, seqno), 0);
        let public = ws.public_part().serialise_public(&header);
        let private = ws.private_part().serialise_private();
        encode_entry(secret, view, seqno, 0, &public, &private)
    }

    #[test]
    fn a_decoded_state_holds_exactly_what_the_transaction_wrote() {
        let secret = LedgerSecret::generate();
        let secrets = LedgerSecrets::new(secret.clone());
        let bytes = entry(&secret, 2, 7);
        let id = TxId::new(View(2), Seqno(7));
        let (store, size) = decode_state(&secrets, id, &bytes).unwrap();
        let tx = store.read_only();
        assert_eq!(tx.get("records", &1u64.to_le_bytes()).unwrap(), b"private one");
        assert_eq!(tx.get("public:records", &1u64.to_le_bytes()).unwrap(), b"public one");
        assert!(tx.get("records", &2u64.to_le_bytes()).is_none());
        assert!(size >= bytes.len());
    }

    #[test]
    fn a_wrong_view_or_secret_or_a_changed_byte_is_refused() {
        let secret = LedgerSecret::generate();
        let secrets = LedgerSecrets::new(secret.clone());
        let bytes = entry(&secret, 2, 7);
        assert!(decode_state(&secrets, TxId::new(View(3), Seqno(7)), &bytes).is_err());
        assert!(decode_state(&secrets, TxId::new(View(2), Seqno(8)), &bytes).is_err());
        let other = LedgerSecrets::new(LedgerSecret::generate());
        assert!(decode_state(&other, TxId::new(View(2), Seqno(7)), &bytes).is_err());
        let mut tampered = bytes.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(decode_state(&secrets, TxId::new(View(2), Seqno(7)), &tampered).is_err());
    }
}
