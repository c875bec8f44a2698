//! Disaster recovery as the replica sees it: a recovered service's ledger continues an old one.
//!
//! When every node of a service is lost, a new node starts on a copy of an old ledger directory. The old part
//! (seqnos 1 to the *recovery base*, its last signature transaction) is replayed with its signatures checked
//! against the certificates its own tables endorse ([`Trust::LedgerTables`]), but with its private domains left
//! encrypted: the recovered node does not have the old ledger secrets yet. The replica then treats the recovery
//! base like a snapshot it started from: Raft's log, membership and terms begin there (the old nodes' membership
//! changes are history), while the store, the Merkle tree, the view history and the ledger keep everything.
//! New transactions continue at base + 1 under a fresh ledger secret.
//!
//! Once the consortium's members have restored the old secrets from their recovery shares, [`PrivateRestore`]
//! decrypts the old part's private domains into a store of their own, chunk by chunk (so that a node can do it
//! outside its engine lock and report progress), and [`crate::Replica::finish_private_restore`] merges those
//! private maps under the live store and adds the old secrets to the keyring. Until then the replica builds no
//! snapshot: one taken then would lack the old private state.

use crate::codec::{decode, PrivateDomain};
use crate::error::{ConsensusError, Inconsistency};
use crate::vocab::RaftId;
use consort_crypto::ParsedCert;
use consort_kv::{Commitment, KvError, Store};
use consort_ledger::{
    parse_entry, ChunkEntries, KeyringError, LedgerSecrets, ENDORSED_CERTS_TABLE, SERVICE_INFO_TABLE, SINGLETON_KEY,
};
use std::collections::BTreeMap;

/// Where a recovered service's ledger continues an old one: the old ledger's last signature transaction. The node
/// keeps it (sealed) and hands it back in [`crate::PersistedState::recovery`] on every start until a snapshot
/// taken after it exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryBase {
    /// Seqno of the old ledger's last signature transaction: the last entry of the old part.
    pub seqno: u64,
}

/// Whose signature transactions an entry taken into the log may carry.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Trust<'a> {
    /// Signers with these certificates (the nodes this node knows to be trusted).
    Certs(&'a BTreeMap<RaftId, String>),
    /// The old part of a recovered ledger: a signer whose certificate the nodes' endorsed-certificates table holds
    /// for it, endorsed by the service certificate the service table holds, both as of the entry before the
    /// signature (as CCF's ledger validator trusts them). The recovered service's members vouch for that service
    /// certificate when they open the service (`previous_service_identity`).
    LedgerTables,
}

/// The tables a signature transaction writes: the signature, the Merkle tree, CCF's COSE signature and Consort's
/// snapshot marker. Under [`Trust::LedgerTables`] a signature transaction that writes anything else is refused.
const SIGNATURE_TABLES: [&str; 4] = [
    consort_ledger::SIGNATURES_TABLE,
    consort_ledger::TREE_TABLE,
    consort_ledger::signature::COSE_SIGNATURES_TABLE,
    crate::snapshot::SNAPSHOT_MARKER_TABLE,
];

/// Under [`Trust::LedgerTables`], the first table a signature transaction's public write set `ws` writes besides
/// [`SIGNATURE_TABLES`] (its private domain must be empty too: checked by the caller), if any.
pub(crate) fn extra_signature_write(ws: &consort_kv::WriteSet) -> Option<&str> {
    ws.maps
        .keys()
        .map(String::as_str)
        .find(|t| !SIGNATURE_TABLES.contains(t))
}

impl Trust<'_> {
    /// Whether `cert` (PEM), signing as `node`, is trusted before the entry applied to `store`.
    pub(crate) fn trusts(&self, store: &Store, node: &str, cert: &str) -> bool {
        match self {
            Trust::Certs(certs) => certs.values().any(|c| c == cert),
            Trust::LedgerTables => endorsed_in(store, node, cert),
        }
    }
}

/// Whether `store`'s endorsed-certificates table holds `cert` for `node`, signed by the key of the service
/// certificate in its service table.
fn endorsed_in(store: &Store, node: &str, cert: &str) -> bool {
    let read = store.read_only();
    let recorded = read.get(ENDORSED_CERTS_TABLE, node.as_bytes());
    if recorded.as_deref() != Some(cert.as_bytes()) {
        return false;
    }
    let Some(service_cert) = read
        .get(SERVICE_INFO_TABLE, &SINGLETON_KEY)
        .and_then(|raw| serde_json::from_slice::<serde_json::Value>(&raw).ok())
        .and_then(|info| info["cert"].as_str().map(str::to_owned))
    else {
        return false;
    };
    let service_key = ParsedCert::from_pem(&service_cert).and_then(|c| c.public_key());
    let node_cert = ParsedCert::from_pem(cert);
    match (service_key, node_cert) {
        (Ok(key), Ok(node_cert)) => node_cert.verify_signed_by(&key).is_ok(),
        _ => false,
    }
}

/// What went wrong recovering a service from an old ledger.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecoveryFault {
    /// The old part does not end with a signature transaction at the recovery base.
    #[error("the old ledger's last signature transaction is {found:?}, expected one at the recovery base {base}")]
    BaseNotASignature {
        /// The recovery base.
        base: u64,
        /// The last signature transaction found at or below it.
        found: Option<u64>,
    },
    /// The ledger ends before the recovery base.
    #[error("the ledger ends at seqno {last}, before the recovery base {base}")]
    LedgerTooShort {
        /// The recovery base.
        base: u64,
        /// The ledger's last seqno.
        last: u64,
    },
    /// A snapshot was asked for while the old part's private state is unread (it would lack it).
    #[error("no snapshot before the private state of seqnos up to {through} is restored")]
    PrivatePending {
        /// The recovery base.
        through: u64,
    },
    /// No private restore is pending: this replica reads every entry it holds.
    #[error("no private restore is pending")]
    NothingToRestore,
    /// The restore was finished before it had read every old entry.
    #[error("the private restore stopped at seqno {next}, before the recovery base {through}")]
    Incomplete {
        /// The next seqno it would have read.
        next: u64,
        /// The recovery base.
        through: u64,
    },
    /// The entries the restore read are not the ones the public replay verified (the ledger changed meanwhile).
    #[error("the old entries read for the restore are not the ones verified at start (seqnos 1 to {through})")]
    NotTheVerifiedLedger {
        /// The recovery base.
        through: u64,
    },
    /// The restored secrets do not fit under the recovered service's.
    #[error("restored ledger secrets: {0}")]
    Keyring(#[source] KeyringError),
    /// The restored private maps could not be merged.
    #[error("merging the restored private maps: {0}")]
    Merge(#[source] KvError),
}

impl From<RecoveryFault> for ConsensusError {
    fn from(f: RecoveryFault) -> Self {
        ConsensusError::Recovery(Box::new(f))
    }
}

/// Whether `map` is a private map (its writes live in the encrypted domain).
pub(crate) fn is_private(map: &str) -> bool {
    !map.starts_with("public:")
}

/// Reads the private domains of a recovered ledger's old part with the restored old secrets, into a store of its
/// own; [`crate::Replica::finish_private_restore`] merges it. Feed it the chunks from [`Self::next_seqno`] on.
pub struct PrivateRestore {
    secrets: LedgerSecrets,
    through: u64,
    next: u64,
    store: Store,
    /// The leaves of the entries read: they must be the entries the public replay verified (a host could swap in
    /// an entry of a rolled-back branch encrypted under the same secret between the two readings).
    tree: consort_ledger::MerkleTree,
}

impl std::fmt::Debug for PrivateRestore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateRestore")
            .field("through", &self.through)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl PrivateRestore {
    /// A restore of seqnos 1 to `through` (the recovery base) with the old service's `secrets`.
    pub fn new(secrets: LedgerSecrets, through: u64) -> Self {
        PrivateRestore {
            secrets,
            through,
            next: 1,
            store: Store::new(),
            tree: consort_ledger::MerkleTree::new(),
        }
    }

    /// The next seqno to read, or `None` when every old entry has been read.
    pub fn next_seqno(&self) -> Option<u64> {
        (self.next <= self.through).then_some(self.next)
    }

    /// The recovery base this restore reads up to.
    pub fn through(&self) -> u64 {
        self.through
    }

    /// Decrypts and applies the private domains of `chunk`'s entries from [`Self::next_seqno`] on, up to the
    /// recovery base. An entry whose private domain does not decrypt (a changed byte fails its AES-GCM tag, or a
    /// wrong secret) stops the restore with an error naming its seqno.
    pub fn apply_chunk(&mut self, chunk: &ChunkEntries) -> Result<(), ConsensusError> {
        let (from, through) = (self.next, self.through);
        for (seqno, bytes) in chunk.iter().filter(|(s, _)| *s >= from && *s <= through) {
            if seqno != self.next {
                return Err(Inconsistency::EntryNotInChunk { seqno: self.next }.into());
            }
            let (entry, _) = parse_entry(bytes).map_err(|e| ConsensusError::entry(seqno, e))?;
            let decoded = decode(
                self.secrets.for_seqno(seqno),
                bytes,
                entry.view,
                seqno,
                PrivateDomain::Decrypt,
            )?;
            let private = decoded.private.ok_or(Inconsistency::NotDecrypted { seqno })?;
            self.store.apply_batch(seqno, private, Commitment::Committed)?;
            self.tree.append(decoded.info.leaf);
            self.next += 1;
        }
        Ok(())
    }

    /// The restored secrets and private state, once every old entry has been read, if the entries read are the
    /// ones whose Merkle root (over seqnos 1 to the base) is `verified_root`.
    pub(crate) fn into_parts(self, verified_root: [u8; 32]) -> Result<(LedgerSecrets, Store), RecoveryFault> {
        if self.next <= self.through {
            return Err(RecoveryFault::Incomplete {
                next: self.next,
                through: self.through,
            });
        }
        if self.tree.root() != verified_root {
            return Err(RecoveryFault::NotTheVerifiedLedger { through: self.through });
        }
        Ok((self.secrets, self.store))
    }
}
