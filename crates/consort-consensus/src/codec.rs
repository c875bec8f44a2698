//! The mapping between Raft entries and CCF ledger entries, and the checks on entries that come from peers.
//!
//! - `EntryNormal`: Raft data = the CCF entry bytes. Empty data (Raft's own empty entries) stands for
//!   [`empty_entry`] of that view and seqno.
//! - `EntryConfChangeV2`: Raft data = the `ConfChangeV2` protobuf, Raft context = the CCF entry, whose public
//!   domain writes the same change to [`CONF_CHANGE_TABLE`]. Empty context (Raft's own leave-joint entry) stands
//!   for [`conf_change_entry`] of that change.
//! - `EntryConfChange` (v1) is never produced by Consort and is refused from peers.

use crate::error::{ConfChangeFault, EntryFault};
use crate::limits::MAX_CONF_CHANGES;
use crate::vocab::{Seqno, TxId, View};
use crate::ConsensusError;
use bytes::Bytes;
use consort_crypto::sha256;
use consort_kv::{DomainHeader, WriteBatch, WriteSet};
use consort_ledger::{leaf_digest, parse_entry, try_encode_entry, LedgerSecret, SIGNATURES_TABLE, SINGLETON_KEY};
use protobuf::Message as _;
use raft::eraftpb::{ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, Entry, EntryType};
use serde::{Deserialize, Serialize};

/// Public internal table recording membership changes: key [`SINGLETON_KEY`], value JSON
/// `{"transition": "auto"|"implicit"|"explicit", "changes": [{"change": "add_node"|"remove_node"|"add_learner",
/// "node_id": <raft id>}]}`; an empty `changes` list leaves a joint configuration.
pub const CONF_CHANGE_TABLE: &str = "public:ccf.internal.consensus.conf_change";

/// Claims digest of entries written by this crate: CCF's "no claims".
const NO_CLAIMS: [u8; 32] = [0u8; 32];

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct ConfChangeJson {
    transition: String,
    changes: Vec<ChangeJson>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct ChangeJson {
    change: String,
    node_id: u64,
}

/// The CCF entry of `ws` at `(view, seqno)`: public domain with CCF's header, private domain encrypted.
pub fn encode_write_set_entry(
    secret: &LedgerSecret,
    view: u64,
    seqno: u64,
    ws: &WriteSet,
) -> Result<Vec<u8>, ConsensusError> {
    encode_write_set_entry_with_flags(secret, view, seqno, 0, ws)
}

/// As [`encode_write_set_entry`], with entry header `flags` (e.g. `FLAG_FORCE_CHUNK_AFTER`).
pub fn encode_write_set_entry_with_flags(
    secret: &LedgerSecret,
    view: u64,
    seqno: u64,
    flags: u8,
    ws: &WriteSet,
) -> Result<Vec<u8>, ConsensusError> {
    encode_claimed_entry(secret, (view, seqno), flags, ws, NO_CLAIMS)
}

/// As [`encode_write_set_entry_with_flags`], with the application's claims digest in the entry's header (it
/// becomes part of the transaction's Merkle leaf, so a receipt binds the claims).
pub fn encode_claimed_entry(
    secret: &LedgerSecret,
    (view, seqno): (u64, u64),
    flags: u8,
    ws: &WriteSet,
    claims_digest: [u8; 32],
) -> Result<Vec<u8>, ConsensusError> {
    let ce_digest = secret.commit_evidence_digest(view, seqno);
    let header = DomainHeader::write_set(seqno, claims_digest, ce_digest, seqno as i64 - 1);
    let public = ws.serialise_public(&header);
    let private = ws.serialise_private();
    Ok(try_encode_entry(secret, view, seqno, flags, &public, &private)?)
}

/// The canonical entry for an empty write set at `(view, seqno)`: what a Raft entry with empty data stands for.
pub fn empty_entry(secret: &LedgerSecret, view: u64, seqno: u64) -> Result<Vec<u8>, ConsensusError> {
    encode_write_set_entry(secret, view, seqno, &WriteSet::default())
}

/// The write set recording a membership change.
pub fn conf_change_write_set(cc: &ConfChangeV2) -> WriteSet {
    let json = ConfChangeJson {
        transition: match cc.get_transition() {
            ConfChangeTransition::Auto => "auto",
            ConfChangeTransition::Implicit => "implicit",
            ConfChangeTransition::Explicit => "explicit",
        }
        .to_string(),
        changes: cc
            .get_changes()
            .iter()
            .map(|c| ChangeJson {
                change: match c.get_change_type() {
                    ConfChangeType::AddNode => "add_node",
                    ConfChangeType::RemoveNode => "remove_node",
                    ConfChangeType::AddLearnerNode => "add_learner",
                }
                .to_string(),
                node_id: c.node_id,
            })
            .collect(),
    };
    let mut ws = WriteSet::default();
    // invariant: the record holds only strings and integers, which JSON always represents.
    let value = serde_json::to_vec(&json).expect("serialising a plain struct to JSON cannot fail");
    ws.put(CONF_CHANGE_TABLE, &SINGLETON_KEY, &value);
    ws
}

/// The membership change a public write set records, if any.
pub fn conf_change_of(ws: &WriteSet) -> Result<Option<ConfChangeV2>, ConfChangeFault> {
    let Some(map) = ws.maps.get(CONF_CHANGE_TABLE) else {
        return Ok(None);
    };
    let Some(Some(value)) = map.writes.get(&SINGLETON_KEY[..]) else {
        return Err(ConfChangeFault::NoValue);
    };
    let json: ConfChangeJson = serde_json::from_slice(value).map_err(|e| ConfChangeFault::Json(e.into()))?;
    if json.changes.len() > MAX_CONF_CHANGES {
        return Err(ConfChangeFault::TooMany {
            count: json.changes.len(),
            limit: MAX_CONF_CHANGES,
        });
    }
    let mut cc = ConfChangeV2::default();
    cc.set_transition(match json.transition.as_str() {
        "auto" => ConfChangeTransition::Auto,
        "implicit" => ConfChangeTransition::Implicit,
        "explicit" => ConfChangeTransition::Explicit,
        other => return Err(ConfChangeFault::UnknownTransition(other.to_owned())),
    });
    for c in json.changes {
        let mut single = ConfChangeSingle::default();
        single.set_change_type(match c.change.as_str() {
            "add_node" => ConfChangeType::AddNode,
            "remove_node" => ConfChangeType::RemoveNode,
            "add_learner" => ConfChangeType::AddLearnerNode,
            other => return Err(ConfChangeFault::UnknownChange(other.to_owned())),
        });
        single.node_id = c.node_id;
        cc.mut_changes().push(single);
    }
    Ok(Some(cc))
}

/// The canonical entry recording `cc` at `(view, seqno)`: what a conf change entry with empty context stands for.
pub fn conf_change_entry(
    secret: &LedgerSecret,
    view: u64,
    seqno: u64,
    cc: &ConfChangeV2,
) -> Result<Vec<u8>, ConsensusError> {
    encode_write_set_entry(secret, view, seqno, &conf_change_write_set(cc))
}

/// What this crate needs to know about a CCF entry without decrypting it.
#[derive(Debug, Clone)]
pub struct EntryInfo {
    /// View the entry was written in.
    pub view: u64,
    /// Position of the entry in the ledger.
    pub seqno: u64,
    /// The public write set (no private maps: those need the ledger secret).
    pub public: WriteSet,
    /// Whether the entry is a signature transaction.
    pub is_signature: bool,
    /// The membership change the entry records, if any.
    pub conf_change: Option<ConfChangeV2>,
    /// The entry's Merkle leaf.
    pub leaf: [u8; 32],
}

/// Parses and checks a CCF entry that must be the transaction at `(view, seqno)`.
pub fn inspect(bytes: &[u8], view: u64, seqno: u64) -> Result<EntryInfo, ConsensusError> {
    let bad = |r: EntryFault| ConsensusError::entry(seqno, r);
    let (entry, used) = parse_entry(bytes).map_err(|e| bad(e.into()))?;
    if used != bytes.len() {
        return Err(bad(EntryFault::TrailingBytes(bytes.len() - used)));
    }
    if entry.is_snapshot || entry.seqno != seqno || entry.view != view {
        return Err(bad(EntryFault::NotAtItsPlace {
            entry: TxId::new(View(entry.view), Seqno(entry.seqno)),
            is_snapshot: entry.is_snapshot,
            raft: TxId::new(View(view), Seqno(seqno)),
        }));
    }
    let (header, public) = WriteSet::deserialise_public(entry.public_domain).map_err(|e| bad(e.into()))?;
    if header.version != seqno {
        return Err(bad(EntryFault::VersionNotSeqno(header.version)));
    }
    let conf_change = conf_change_of(&public).map_err(|e| bad(e.into()))?;
    let ce = header.commit_evidence_digest.unwrap_or([0u8; 32]);
    let claims = header.claims_digest.unwrap_or(NO_CLAIMS);
    Ok(EntryInfo {
        view,
        seqno,
        is_signature: public.maps.contains_key(SIGNATURES_TABLE),
        conf_change,
        leaf: leaf_digest(&sha256(bytes), &ce, &claims),
        public,
    })
}

/// The application claims digest an entry's header records (zeros: no claims).
pub fn claims_digest_of(bytes: &[u8], seqno: u64) -> Result<[u8; 32], ConsensusError> {
    let bad = |r: EntryFault| ConsensusError::entry(seqno, r);
    let (entry, _) = parse_entry(bytes).map_err(|e| bad(e.into()))?;
    let (header, _) = WriteSet::deserialise_public(entry.public_domain).map_err(|e| bad(e.into()))?;
    Ok(header.claims_digest.unwrap_or(NO_CLAIMS))
}

/// Decrypts the private domain and returns the whole write set of an entry [`inspect`] accepted.
pub fn full_write_set(secret: &LedgerSecret, bytes: &[u8], info: &EntryInfo) -> Result<WriteSet, ConsensusError> {
    let bad = |r: EntryFault| ConsensusError::entry(info.seqno, r);
    let (entry, _) = parse_entry(bytes).map_err(|e| bad(e.into()))?;
    let private = entry.decrypt_private(secret).map_err(|e| bad(e.into()))?;
    let mut ws = info.public.clone();
    ws.merge(WriteSet::deserialise_private(&private).map_err(|e| bad(e.into()))?);
    Ok(ws)
}

/// An entry [`inspect`]ed and, if asked, decrypted: everything taking an entry into a replica needs that does not
/// depend on the replica's state, so it can be computed ahead (on another core during replay).
#[derive(Debug, Clone)]
pub struct DecodedEntry {
    /// The public parts of the entry: header, public write set, Merkle leaf.
    pub info: EntryInfo,
    /// The private maps' writes; `None` when not decrypted. With `info.public`, the whole write set.
    pub private: Option<WriteBatch>,
}

/// Whether [`decode`] decrypts an entry's private domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrivateDomain {
    /// Decrypt and parse it: the store does not hold the entry's writes yet.
    Decrypt,
    /// Leave it encrypted: the store holds the writes already (the primary's own transactions).
    Skip,
}

/// [`inspect`], then, with [`PrivateDomain::Decrypt`], the private domain decrypted and parsed: one parse and one
/// decryption per entry, and no per-entry B-trees for the private writes.
pub fn decode(
    secret: &LedgerSecret,
    bytes: &[u8],
    view: u64,
    seqno: u64,
    private: PrivateDomain,
) -> Result<DecodedEntry, ConsensusError> {
    let info = inspect(bytes, view, seqno)?;
    let private = if private == PrivateDomain::Decrypt {
        let bad = |r: EntryFault| ConsensusError::entry(seqno, r);
        let (entry, _) = parse_entry(bytes).map_err(|e| bad(e.into()))?;
        let plaintext = entry.decrypt_private(secret).map_err(|e| bad(e.into()))?;
        Some(WriteBatch::deserialise_private(&plaintext).map_err(|e| bad(e.into()))?)
    } else {
        None
    };
    Ok(DecodedEntry { info, private })
}

/// The CCF bytes a Raft entry carries (after [`normalise`]).
pub fn ledger_bytes(e: &Entry) -> &[u8] {
    match e.get_entry_type() {
        EntryType::EntryConfChangeV2 => &e.context,
        _ => &e.data,
    }
}

/// Checks an entry received from a peer: its CCF bytes parse as the entry at its term and index, and a conf change
/// entry's protobuf matches its table write. Entries Raft created with no data are left empty here and get their
/// canonical bytes from [`fill_empty`] when appended in order (a rekey before one may change its secret).
pub fn normalise(e: &mut Entry) -> Result<(), ConsensusError> {
    let (view, seqno) = (e.term, e.index);
    match e.get_entry_type() {
        EntryType::EntryNormal if !e.data.is_empty() => {
            let info = inspect(&e.data, view, seqno)?;
            if info.conf_change.is_some() {
                return Err(ConsensusError::entry(seqno, EntryFault::NormalEntryChangesMembership));
            }
            Ok(())
        }
        EntryType::EntryConfChangeV2 if !e.context.is_empty() => {
            let cc = ConfChangeV2::parse_from_bytes(&e.data)
                .map_err(|err| ConsensusError::entry(seqno, EntryFault::ConfChangeProtobuf(err.into())))?;
            let info = inspect(&e.context, view, seqno)?;
            match info.conf_change {
                Some(recorded) if recorded == cc => Ok(()),
                _ => Err(ConsensusError::entry(seqno, EntryFault::ConfChangeDisagrees)),
            }
        }
        EntryType::EntryConfChange => Err(ConsensusError::entry(seqno, EntryFault::ConfChangeV1)),
        EntryType::EntryConfChangeV2 => ConfChangeV2::parse_from_bytes(&e.data)
            .map(|_| ())
            .map_err(|err| ConsensusError::entry(seqno, EntryFault::ConfChangeProtobuf(err.into()))),
        // Raft's own empty entries.
        EntryType::EntryNormal => Ok(()),
    }
}

/// Fills in the canonical CCF bytes of entries Raft created with no data, and nothing else: for entries already
/// checked by [`normalise`] (received from peers) or made by this replica (its own proposals).
pub fn fill_empty(secret: &LedgerSecret, e: &mut Entry) -> Result<(), ConsensusError> {
    let (view, seqno) = (e.term, e.index);
    match e.get_entry_type() {
        EntryType::EntryNormal if e.data.is_empty() => {
            e.data = Bytes::from(empty_entry(secret, view, seqno)?);
        }
        EntryType::EntryConfChangeV2 if e.context.is_empty() => {
            let cc = ConfChangeV2::parse_from_bytes(&e.data)
                .map_err(|err| ConsensusError::entry(seqno, EntryFault::ConfChangeProtobuf(err.into())))?;
            e.context = Bytes::from(conf_change_entry(secret, view, seqno, &cc)?);
        }
        EntryType::EntryConfChange => return Err(ConsensusError::entry(seqno, EntryFault::ConfChangeV1)),
        _ => {}
    }
    Ok(())
}

/// The Raft entry for CCF entry `bytes` at `(term, index)`, as [`crate::Replica`]'s Raft storage returns it.
pub fn raft_entry(term: u64, index: u64, bytes: Vec<u8>, conf_change: Option<&ConfChangeV2>) -> Entry {
    let mut e = Entry {
        term,
        index,
        ..Default::default()
    };
    match conf_change {
        Some(cc) => {
            e.set_entry_type(EntryType::EntryConfChangeV2);
            e.data = Bytes::from(crate::persisted::encode_protobuf(cc));
            e.context = Bytes::from(bytes);
        }
        None => e.data = Bytes::from(bytes),
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::ConfChangeType;

    fn secret() -> LedgerSecret {
        LedgerSecret::from_bytes([3u8; 32])
    }

    #[test]
    fn empty_data_becomes_the_canonical_empty_entry() {
        let mut e = Entry {
            term: 4,
            index: 9,
            ..Default::default()
        };
        // A peer's empty entry stays empty until it is appended in order.
        normalise(&mut e).unwrap();
        assert!(e.data.is_empty());
        fill_empty(&secret(), &mut e).unwrap();
        assert_eq!(&e.data[..], &empty_entry(&secret(), 4, 9).unwrap()[..]);
        let info = inspect(&e.data, 4, 9).unwrap();
        assert!(info.public.is_empty() && !info.is_signature && info.conf_change.is_none());
        assert!(full_write_set(&secret(), &e.data, &info).unwrap().is_empty());
        // Checked again as a peer's entry: fine; at the wrong index: refused.
        normalise(&mut e).unwrap();
        e.index = 10;
        assert!(matches!(normalise(&mut e), Err(ConsensusError::InvalidEntry { .. })));
    }

    #[test]
    fn conf_change_round_trip_and_mismatch() {
        let mut cc = ConfChangeV2::default();
        let mut single = ConfChangeSingle::default();
        single.set_change_type(ConfChangeType::AddLearnerNode);
        single.node_id = 4;
        cc.mut_changes().push(single);
        let bytes = conf_change_entry(&secret(), 2, 5, &cc).unwrap();
        let info = inspect(&bytes, 2, 5).unwrap();
        assert_eq!(info.conf_change.as_ref(), Some(&cc));
        let mut e = raft_entry(2, 5, bytes, Some(&cc));
        normalise(&mut e).unwrap();
        let mut other = cc.clone();
        other.mut_changes()[0].node_id = 5;
        e.data = Bytes::from(other.write_to_bytes().unwrap());
        assert!(normalise(&mut e).is_err());
        // Empty context: checked as a protobuf when received, derived from it when appended.
        let mut e = raft_entry(2, 5, Vec::new(), Some(&cc));
        normalise(&mut e).unwrap();
        assert!(e.context.is_empty());
        fill_empty(&secret(), &mut e).unwrap();
        assert_eq!(inspect(ledger_bytes(&e), 2, 5).unwrap().conf_change, Some(cc));
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        for data in [&b"x"[..], &[1, 0, 0, 0, 0, 0, 0, 0][..], &[0u8; 64][..]] {
            let mut e = Entry {
                term: 1,
                index: 1,
                data: Bytes::copy_from_slice(data),
                ..Default::default()
            };
            assert!(normalise(&mut e).is_err());
            e.set_entry_type(EntryType::EntryConfChangeV2);
            assert!(normalise(&mut e).is_err());
        }
    }
}
