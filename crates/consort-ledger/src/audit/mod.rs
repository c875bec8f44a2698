//! The offline auditor behind `consort ledger audit`: replays committed chunk files and checks framing, seqnos,
//! Merkle roots, root signatures, node trust and endorsement, and service status transitions, as CCF's
//! `ledger.py` `LedgerValidator` does, plus stricter framing checks of its own. A ledger that begins after seqno 1
//! (a node that joined from a snapshot) is audited from that snapshot ([`audit_chunks_from_snapshot`]): its public
//! tables give the nodes, certificates, service and Merkle tree at s, its signature entry is checked like any
//! other, and the chunks go on from s+1.

use crate::chunk::{complete_chunk_entries, parse_chunk_name, ChunkName, CHUNK_HEADER_SIZE};
use crate::entry::{leaf_digest, parse_entry};
use crate::limits::MAX_JSON_VALUE_SIZE;
use crate::merkle::MerkleTree;
use crate::signature::{
    verify_root, ENDORSED_CERTS_TABLE, HASHING_ALGORITHM, NODES_INFO_TABLE, SERVICE_INFO_TABLE, SIGNATURES_TABLE,
    SIGNATURE_ALGORITHM, SINGLETON_KEY, TREE_TABLE,
};
use crate::{JsonError, LedgerError};
use consort_crypto::{sha256, CryptoError, ParsedCert};
use consort_kv::{DomainHeader, Key, KvError, Store, Value, WriteSet};
use std::collections::BTreeMap;

mod altered;

/// What a successful audit saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReport {
    /// Transactions read (all of them, signed or not).
    pub transactions: u64,
    /// Signature transactions verified.
    pub signatures: u64,
    /// (view, seqno) of the last verified signature transaction; (0, 0) if none.
    pub last_verified: (u64, u64),
    /// Service status after the last transaction (service.info "status").
    pub service_status: Option<String>,
    /// Nodes in nodes.info after the last transaction.
    pub nodes: usize,
    /// Transactions after the last signature: present but not covered by any signed root.
    pub trailing_unsigned: u64,
    /// Chunk files read.
    pub chunks: usize,
    /// The snapshot the audit started from, if it did not start at seqno 1.
    pub snapshot: Option<SnapshotOrigin>,
}

/// A committed snapshot to start an audit from, taken apart without the ledger secret (the node's
/// `consort_consensus::snapshot_file::split_snapshot_file` does that for its snapshot files).
#[derive(Debug, Clone, Copy)]
pub struct SnapshotStart<'a> {
    /// The snapshot file's name, for errors.
    pub file: &'a str,
    /// Seqno of the signature transaction the snapshot was taken at.
    pub seqno: u64,
    /// Its view.
    pub view: u64,
    /// That signature transaction's ledger entry.
    pub signature_entry: &'a [u8],
    /// The snapshot entry (CCF's snapshot framing) of the state at `seqno`.
    pub snapshot_entry: &'a [u8],
    /// SHA-256 of the snapshot as its evidence transaction records it; checked when the chunks hold that
    /// transaction.
    pub bundle_digest: Option<[u8; 32]>,
}

/// Where an audit that started from a snapshot started, and what it found there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotOrigin {
    /// Seqno of the snapshot's signature transaction.
    pub seqno: u64,
    /// Its view.
    pub view: u64,
    /// The service certificate (PEM) in the snapshot's service.info: everything audited chains to it, so compare
    /// it with the one you trust.
    pub service_cert: String,
    /// Seqno of the evidence transaction whose digest matched the snapshot, if the chunks hold one.
    pub evidence_seqno: Option<u64>,
}

/// Why an audit failed, naming the first bad transaction ("view.seqno") and file when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditError {
    /// Seqno of the first bad transaction, when the failure is in one.
    pub seqno: Option<u64>,
    /// Its view, when its entry could be parsed.
    pub view: Option<u64>,
    /// The chunk file it is in, when known.
    pub file: Option<String>,
    /// What is wrong, for a human: the line `consort ledger audit` prints. It stays text because it is a report
    /// line, often naming several values at once (a root and the root computed, a status and the one expected);
    /// when another layer's error explains the finding, that error is kept with its type in [`AuditError::source`]
    /// (and callers match on that, never on this text).
    pub reason: String,
    /// The error beneath, when the finding is that a parser or a check of another crate failed.
    pub source: Option<Box<AuditCause>>,
}

/// The error of another layer that an audit finding comes from, kept with its own type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditCause {
    /// Entry framing, chunk, Merkle tree or root signature.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A write set that does not parse.
    #[error(transparent)]
    Kv(#[from] KvError),
    /// A certificate or key that does not parse or verify.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A table value that is not JSON.
    #[error(transparent)]
    Json(#[from] JsonError),
    /// A table key or certificate that is not UTF-8.
    #[error(transparent)]
    Utf8(#[from] std::string::FromUtf8Error),
    /// A signature that is not base64.
    #[error(transparent)]
    Base64(#[from] base64::DecodeError),
}

impl std::fmt::Display for AuditError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.view, self.seqno) {
            (Some(v), Some(s)) => write!(f, "transaction {v}.{s}")?,
            (None, Some(s)) => write!(f, "transaction at seqno {s}")?,
            _ => write!(f, "ledger")?,
        }
        if let Some(file) = &self.file {
            write!(f, " in {file}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for AuditError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|c| c as &(dyn std::error::Error + 'static))
    }
}

impl AuditError {
    /// The failure of transaction `seqno` (of `view`, if its entry parsed) in `file`.
    fn at(seqno: u64, view: Option<u64>, file: &str, finding: Finding) -> Self {
        AuditError {
            seqno: Some(seqno),
            view,
            file: Some(file.to_string()),
            reason: finding.reason,
            source: finding.source.map(Box::new),
        }
    }
}

/// What the validator found wrong with one transaction: a reason, and the error beneath it if there is one.
#[derive(Debug)]
struct Finding {
    reason: String,
    source: Option<AuditCause>,
    /// The transaction at fault when it is not the one being checked: an entry altered after it was written
    /// shows only at the next signature, whose signed tree says which leaf differs.
    culprit: Option<u64>,
}

impl Finding {
    /// A finding that another layer's error explains; `reason` is the whole message (it already names the
    /// error), as a human reads it.
    fn caused_by(reason: String, source: impl Into<AuditCause>) -> Self {
        Finding {
            reason,
            source: Some(source.into()),
            culprit: None,
        }
    }

    /// A finding for another layer's error, in that error's own words.
    fn of(source: impl Into<AuditCause>) -> Self {
        let source = source.into();
        Finding {
            reason: source.to_string(),
            source: Some(source),
            culprit: None,
        }
    }
}

impl From<String> for Finding {
    fn from(reason: String) -> Self {
        Finding {
            reason,
            source: None,
            culprit: None,
        }
    }
}

impl From<&str> for Finding {
    fn from(reason: &str) -> Self {
        Finding::from(reason.to_string())
    }
}

fn file_error(file: &str, finding: impl Into<Finding>) -> AuditError {
    let finding = finding.into();
    AuditError {
        seqno: None,
        view: None,
        file: Some(file.to_string()),
        reason: finding.reason,
        source: finding.source.map(Box::new),
    }
}

/// Table of the evidence transaction that records a periodic snapshot's digest (CCF's name; the consensus crate
/// writes it as JSON `{"hash": "<hex SHA-256 of the snapshot>", "version": <snapshot seqno>}`).
const SNAPSHOT_EVIDENCE_TABLE: &str = "public:ccf.internal.snapshot_evidence";

/// Node status as recorded in nodes.info.
#[derive(Debug, Clone)]
struct NodeInfo {
    status: String,
}

/// Replay state: the mirror of `LedgerValidator`.
struct Validator {
    tree: MerkleTree,
    nodes: BTreeMap<String, NodeInfo>,
    node_certs: BTreeMap<String, String>,
    service_status: Option<String>,
    service_cert: Option<String>,
    signatures: u64,
    last_verified: (u64, u64),
    last_view: u64,
    /// The snapshot the replay started from, with its digest and the evidence found for it so far.
    snapshot: Option<(SnapshotOrigin, Option<[u8; 32]>)>,
    /// (seqno, view) of the transactions no verified signature covers yet (from the last one's own entry on), to
    /// name the one a later signature shows was altered.
    unverified: Vec<(u64, u64)>,
}

fn json_value(bytes: &[u8], what: &str) -> Result<serde_json::Value, Finding> {
    if bytes.len() > MAX_JSON_VALUE_SIZE {
        return Err(format!("{what} value of {} bytes exceeds {MAX_JSON_VALUE_SIZE}", bytes.len()).into());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| Finding::caused_by(format!("{what} is not JSON: {e}"), JsonError::from(e)))
}

fn utf8_key(key: &[u8], table: &str) -> Result<String, Finding> {
    String::from_utf8(key.to_vec()).map_err(|e| Finding::caused_by(format!("{table}: key is not UTF-8"), e))
}

fn table<'a>(ws: &'a WriteSet, name: &str) -> Option<&'a BTreeMap<Key, Option<Value>>> {
    ws.maps.get(name).map(|m| &m.writes)
}

/// The value written at [`SINGLETON_KEY`] of a single-entry table, if this transaction wrote one.
fn singleton<'a>(ws: &'a WriteSet, name: &str) -> Option<&'a [u8]> {
    table(ws, name)?.get(&SINGLETON_KEY[..])?.as_deref()
}

/// Wraps another crate's error in a finding that says what failed, in the form `<what>: <error>`.
fn failed<E: Into<AuditCause> + std::fmt::Display>(what: impl std::fmt::Display) -> impl FnOnce(E) -> Finding {
    move |e| Finding::caused_by(format!("{what}: {e}"), e)
}

fn spki_of(pem: &str, what: &str) -> Result<Vec<u8>, Finding> {
    ParsedCert::from_pem(pem).map(|c| c.spki_der).map_err(failed(what))
}

impl Validator {
    fn new() -> Self {
        Validator {
            tree: MerkleTree::new(),
            nodes: BTreeMap::new(),
            node_certs: BTreeMap::new(),
            service_status: None,
            service_cert: None,
            signatures: 0,
            last_verified: (0, 0),
            last_view: 0,
            snapshot: None,
            unverified: Vec::new(),
        }
    }

    /// Checks one transaction and adds its leaf. Errors are reasons; the caller attaches the txid and file.
    fn add(
        &mut self,
        view: u64,
        seqno: u64,
        write_set_digest: [u8; 32],
        hdr: &DomainHeader,
        ws: &WriteSet,
    ) -> Result<(), Finding> {
        if view < self.last_view {
            return Err(format!("view goes back from {} to {view}", self.last_view).into());
        }
        self.last_view = view;
        if hdr.version != seqno {
            return Err(format!("public domain version {} differs from seqno {seqno}", hdr.version).into());
        }
        self.apply_nodes(ws)?;
        if let Some(records) = table(ws, SIGNATURES_TABLE) {
            // ledger.py verifies every record of the table, whatever its key.
            if records.get(&SINGLETON_KEY[..]).is_none() {
                return Err("signatures table without the singleton key".into());
            }
            for value in records.values() {
                let value = value.as_deref().ok_or("signatures table removes a signature")?;
                self.check_signature(view, seqno, value, ws)?;
            }
            self.signatures += 1;
            self.last_verified = (view, seqno);
            self.unverified.clear();
        }
        if table(ws, SERVICE_INFO_TABLE).is_some() {
            // ledger.py parses the value at the well-known key whenever the table is written.
            let value = singleton(ws, SERVICE_INFO_TABLE).ok_or("service.info written without a value at its key")?;
            self.update_service(value)?;
        }
        if let Some(value) = singleton(ws, SNAPSHOT_EVIDENCE_TABLE) {
            self.check_evidence(seqno, value)?;
        }
        let leaf = match (hdr.claims_digest, hdr.commit_evidence_digest) {
            (None, None) => write_set_digest,
            (None, Some(ce)) => {
                let mut both = write_set_digest.to_vec();
                both.extend_from_slice(&ce);
                sha256(&both)
            }
            (Some(claims), Some(ce)) => leaf_digest(&write_set_digest, &ce, &claims),
            (Some(_), None) => return Err("claims digest without commit evidence".into()),
        };
        self.tree.append(leaf);
        self.unverified.push((seqno, view));
        Ok(())
    }

    /// Takes in the writes of a transaction (or of a snapshot's state) to nodes.info and the endorsed certificates.
    fn apply_nodes(&mut self, ws: &WriteSet) -> Result<(), Finding> {
        let mut certs_in_nodes_info = Vec::new();
        for (key, value) in table(ws, NODES_INFO_TABLE).into_iter().flatten() {
            let id = utf8_key(key, NODES_INFO_TABLE)?;
            let Some(value) = value else {
                // ledger.py pops the node, which fails for a node it never saw.
                if self.nodes.remove(&id).is_none() {
                    return Err(format!("nodes.info removes unknown node {id}").into());
                }
                continue;
            };
            let info = json_value(value, "nodes.info")?;
            let status = info
                .get("status")
                .and_then(|s| s.as_str())
                .ok_or_else(|| format!("nodes.info {id}: no status"))?
                .to_string();
            // CCF 1.x recorded a self-signed node certificate here; later versions use endorsed certificates.
            if let Some(cert) = info.get("cert").and_then(|c| c.as_str()) {
                self.node_certs.insert(id.clone(), cert.to_string());
                certs_in_nodes_info.push(id.clone());
            }
            self.nodes.insert(id, NodeInfo { status });
        }
        for (key, value) in table(ws, ENDORSED_CERTS_TABLE).into_iter().flatten() {
            let id = utf8_key(key, ENDORSED_CERTS_TABLE)?;
            let Some(value) = value else {
                if self.node_certs.remove(&id).is_none() {
                    return Err(format!("endorsed certificates remove unknown node {id}").into());
                }
                continue;
            };
            if certs_in_nodes_info.contains(&id) {
                return Err(format!("node {id} has both a self-signed and an endorsed certificate").into());
            }
            let pem = String::from_utf8(value.clone())
                .map_err(|e| Finding::caused_by(format!("endorsed cert of {id} is not UTF-8"), e))?;
            self.node_certs.insert(id, pem);
        }
        Ok(())
    }

    fn check_signature(&mut self, view: u64, seqno: u64, value: &[u8], ws: &WriteSet) -> Result<(), Finding> {
        let sig = json_value(value, "signature")?;
        let field_u64 = |k: &str| {
            sig.get(k)
                .and_then(|v| v.as_u64())
                .ok_or_else(|| format!("signature: no {k}"))
        };
        let field_str = |k: &str| {
            sig.get(k)
                .and_then(|v| v.as_str())
                .ok_or_else(|| format!("signature: no {k}"))
        };
        let (sig_seqno, sig_view) = (field_u64("seqno")?, field_u64("view")?);
        if (sig_view, sig_seqno) != (view, seqno) {
            return Err(format!("signature claims {sig_view}.{sig_seqno}").into());
        }
        for (k, expected) in [
            ("hashing_algorithm", HASHING_ALGORITHM),
            ("signature_algorithm", SIGNATURE_ALGORITHM),
        ] {
            if let Some(v) = sig.get(k) {
                if v.as_str() != Some(expected) {
                    return Err(format!("signature: unsupported {k} {v}").into());
                }
            }
        }
        let node = field_str("node")?;
        // 1. The signer is a known node that is not Pending. Retired nodes may still sign while their
        //    retirement commits (CCF keeps the primary live through reconfiguration), so they are accepted.
        let info = self
            .nodes
            .get(node)
            .ok_or_else(|| format!("signing node {node} is not in nodes.info"))?;
        if info.status != "Trusted" && info.status != "Retired" {
            return Err(format!("signing node {node} has status {}", info.status).into());
        }
        let cert_pem = self
            .node_certs
            .get(node)
            .ok_or_else(|| format!("no certificate for signing node {node}"))?;
        let cert = ParsedCert::from_pem(cert_pem).map_err(failed(format!("certificate of node {node}")))?;
        if cert.key_id() != node {
            return Err(format!("node id {node} is not the key id of its certificate").into());
        }
        if let Some(sig_cert) = sig.get("cert").and_then(|c| c.as_str()) {
            if spki_of(sig_cert, "signature cert")? != cert.spki_der {
                return Err(format!("signature cert key differs from node {node}'s endorsed certificate").into());
            }
        }
        // 2. The node certificate is endorsed by the current service certificate.
        let service_pem = self
            .service_cert
            .as_deref()
            .ok_or("signature before any service certificate")?;
        let service = ParsedCert::from_pem(service_pem).map_err(failed("service certificate"))?;
        let service_key = service.public_key().map_err(failed("service key"))?;
        cert.verify_signed_by(&service_key).map_err(|e| {
            Finding::caused_by(
                format!("certificate of node {node} is not endorsed by the service certificate"),
                e,
            )
        })?;
        // 3. The root signature verifies with the node's key.
        let root_hex = field_str("root")?;
        let root: [u8; 32] = hex::decode(root_hex)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or("signature root is not 32 hex bytes")?;
        let sig_der = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(field_str("sig")?)
                .map_err(|e| Finding::caused_by("signature sig is not base64".to_string(), e))?
        };
        verify_root(cert_pem, &root, &sig_der).map_err(failed(format!("node {node}")))?;
        // 4. The signed root is the root of every transaction before this one.
        let computed = self.tree.root();
        if computed != root {
            return Err(self.root_mismatch(ws, (view, seqno), &computed, &root));
        }
        // A Consort-format tree in the tree table must agree too (CCF's own format is not checked).
        if let Some(tree_bytes) = singleton(ws, TREE_TABLE) {
            if tree_bytes.starts_with(b"CMT1") {
                let tree = MerkleTree::deserialise(tree_bytes).map_err(failed("tree table"))?;
                if tree.len() != seqno || tree.try_root_at(seqno).ok() != Some(root) {
                    return Err(format!("tree table ({} leaves) does not match the signed root", tree.len()).into());
                }
            }
        }
        Ok(())
    }

    /// An evidence transaction for the snapshot the replay started from must record that snapshot's digest.
    fn check_evidence(&mut self, seqno: u64, value: &[u8]) -> Result<(), Finding> {
        let Some((origin, Some(digest))) = &mut self.snapshot else {
            return Ok(());
        };
        let evidence = json_value(value, "snapshot evidence")?;
        if evidence.get("version").and_then(|v| v.as_u64()) != Some(origin.seqno) {
            return Ok(());
        }
        let recorded = evidence
            .get("hash")
            .and_then(|h| h.as_str())
            .ok_or("snapshot evidence without hash")?;
        let digest = hex::encode(*digest);
        if !recorded.eq_ignore_ascii_case(&digest) {
            return Err(format!(
                "snapshot evidence records digest {recorded} for the snapshot at {}, the snapshot file's is {digest}: \
                 not the snapshot this ledger recorded",
                origin.seqno,
            )
            .into());
        }
        origin.evidence_seqno = Some(seqno);
        Ok(())
    }

    fn update_service(&mut self, value: &[u8]) -> Result<(), Finding> {
        let info = json_value(value, "service.info")?;
        let status = info
            .get("status")
            .and_then(|s| s.as_str())
            .ok_or("service.info without status")?;
        let allowed = match (self.service_status.as_deref(), status) {
            // Disaster recovery can start at any point.
            (_, "Opening") => true,
            (Some(old), new) if old == new => true,
            (Some("Opening"), new) => matches!(new, "Open" | "WaitingForRecoveryShares"),
            (Some("Recovering"), new) => new == "WaitingForRecoveryShares",
            (Some("WaitingForRecoveryShares"), new) => new == "Open",
            (Some("Open"), new) => new == "Recovering",
            (None, _) => true,
            (Some(_), _) => false,
        };
        if !allowed {
            return Err(format!(
                "invalid service status transition {} -> {status}",
                self.service_status.as_deref().unwrap_or("none")
            )
            .into());
        }
        let cert = info
            .get("cert")
            .and_then(|c| c.as_str())
            .ok_or("service.info without cert")?;
        self.service_status = Some(status.to_string());
        self.service_cert = Some(cert.to_string());
        Ok(())
    }
}

/// Audits a ledger given as chunk files `(name, bytes)` in any order. Fails on the first problem, naming the
/// transaction and file; trailing transactions after the last signature are reported, not failed.
pub fn audit_chunks(chunks: &[(String, Vec<u8>)]) -> Result<AuditReport, AuditError> {
    audit_from(Validator::new(), 1, chunks)
}

/// Audits a ledger that starts after a committed snapshot: checks the snapshot (its signature entry signed by a
/// node its own tables trust and endorse, over the Merkle tree it stores, and its `hash_at_snapshot`), then the
/// chunks exactly as [`audit_chunks`] does from seqno `snapshot.seqno + 1`, the tree continued from the
/// snapshot's. Chunks must start there: a gap or an overlap is an error. When the chunks hold the snapshot's
/// evidence transaction, its digest must be the snapshot's.
pub fn audit_chunks_from_snapshot(
    snapshot: &SnapshotStart<'_>,
    chunks: &[(String, Vec<u8>)],
) -> Result<AuditReport, AuditError> {
    let validator = Validator::from_snapshot(snapshot)?;
    audit_from(validator, snapshot.seqno + 1, chunks)
}

fn audit_from(mut validator: Validator, first: u64, chunks: &[(String, Vec<u8>)]) -> Result<AuditReport, AuditError> {
    let mut named: Vec<(ChunkName, &String, &Vec<u8>)> = Vec::with_capacity(chunks.len());
    for (name, bytes) in chunks {
        let cname = parse_chunk_name(name).ok_or_else(|| file_error(name, "not a ledger chunk file name"))?;
        named.push((cname, name, bytes));
    }
    named.sort_by_key(|(c, _, _)| c.start);
    let mut expected_seqno = first;
    let count = named.len();
    let starts: Vec<(u64, String)> = named.iter().map(|(c, name, _)| (c.start, name.to_string())).collect();
    // The chunk holding `seqno` (an earlier one than the current when a signature finds an altered entry).
    let file_of = |seqno: u64| {
        starts
            .iter()
            .rev()
            .find(|(start, _)| *start <= seqno)
            .map(|(_, n)| n.clone())
    };
    for (i, (cname, name, bytes)) in named.into_iter().enumerate() {
        if cname.start != expected_seqno {
            return Err(file_error(name, discontinuity(cname.start, expected_seqno, &validator)));
        }
        let (offsets, entries_end) = match cname.end {
            Some(end) => complete_chunk_entries(name, bytes, cname.start, Some(end)).map_err(|e| {
                first_bad_entry(name, bytes, cname.start).unwrap_or_else(|| file_error(name, Finding::of(e)))
            })?,
            None if i + 1 == count => open_chunk_entries(name, bytes, cname.start)?,
            None => return Err(file_error(name, "an open chunk must be the last file")),
        };
        for (j, &offset) in offsets.iter().enumerate() {
            let seqno = cname.start + j as u64;
            let end = offsets.get(j + 1).copied().unwrap_or(entries_end);
            let raw = &bytes[offset as usize..end as usize];
            let at = |view: Option<u64>, finding: Finding| AuditError::at(seqno, view, name, finding);
            let (entry, _) = parse_entry(raw).map_err(|e| at(None, Finding::of(e)))?;
            let view = Some(entry.view);
            if entry.seqno != seqno || entry.is_snapshot {
                return Err(at(view, format!("entry header says seqno {}", entry.seqno).into()));
            }
            let (hdr, ws) = WriteSet::deserialise_public(entry.public_domain).map_err(|e| at(view, Finding::of(e)))?;
            let first_signature = validator.signatures == 0 && table(&ws, SIGNATURES_TABLE).is_some();
            if let Err(f) = validator.add(entry.view, seqno, entry.write_set_digest(), &hdr, &ws) {
                let finding = validator.after_snapshot(first_signature, f);
                return Err(match finding.culprit {
                    Some(c) => AuditError {
                        seqno: Some(c),
                        view: validator.view_of(c),
                        file: file_of(c).or_else(|| Some(name.to_string())),
                        reason: finding.reason,
                        source: finding.source.map(Box::new),
                    },
                    None => at(view, finding),
                });
            }
        }
        expected_seqno = cname.start + offsets.len() as u64;
    }
    let transactions = expected_seqno - first;
    Ok(AuditReport {
        transactions,
        signatures: validator.signatures,
        last_verified: validator.last_verified,
        service_status: validator.service_status,
        nodes: validator.nodes.len(),
        trailing_unsigned: expected_seqno - 1 - validator.last_verified.1,
        chunks: count,
        snapshot: validator.snapshot.map(|(origin, _)| origin),
    })
}

/// Why a chunk starting at `start` does not follow what came before (`expected` is the next seqno due).
fn discontinuity(start: u64, expected: u64, validator: &Validator) -> String {
    let after = match &validator.snapshot {
        Some((origin, _)) if expected == origin.seqno + 1 => format!(" (the snapshot is at {})", origin.seqno),
        _ => String::new(),
    };
    if start > expected {
        format!(
            "starts at seqno {start}, expected {expected}{after}: gap, seqnos {expected} to {} are missing",
            start - 1
        )
    } else {
        format!(
            "starts at seqno {start}, expected {expected}{after}: overlap, seqnos {start} to {} are already covered",
            expected - 1
        )
    }
}

impl Validator {
    /// The state at a snapshot, from its public tables, once its signature entry verifies against them.
    fn from_snapshot(start: &SnapshotStart<'_>) -> Result<Self, AuditError> {
        let (seqno, view) = (start.seqno, start.view);
        let fail = |finding: Finding| AuditError::at(seqno, Some(view), start.file, finding);
        let refuse = |reason: String| Err(fail(reason.into()));
        let (sig, used) = parse_entry(start.signature_entry).map_err(|e| fail(Finding::of(e)))?;
        if used != start.signature_entry.len() || sig.is_snapshot || (sig.view, sig.seqno) != (view, seqno) {
            return refuse(format!("signature entry is not one ledger entry at {view}.{seqno}"));
        }
        let (snap, used) = parse_entry(start.snapshot_entry).map_err(|e| fail(Finding::of(e)))?;
        if used != start.snapshot_entry.len() || !snap.is_snapshot || (snap.view, snap.seqno) != (view, seqno) {
            return refuse(format!("snapshot entry is not one snapshot entry at {view}.{seqno}"));
        }
        // The public tables suffice: the private domain stays encrypted (its integrity is the evidence's job).
        let (store, header) = Store::from_snapshot(snap.public_domain, &[]).map_err(|e| fail(Finding::of(e)))?;
        if header.version != seqno || header.hash_at_snapshot != sha256(start.signature_entry) {
            return refuse("the snapshot's hash_at_snapshot is not the hash of its signature entry".to_string());
        }
        let (hdr, ws) = WriteSet::deserialise_public(sig.public_domain).map_err(|e| fail(Finding::of(e)))?;
        if singleton(&ws, SIGNATURES_TABLE).is_none() {
            return refuse("the snapshot's entry at its seqno is not a signature transaction".to_string());
        }
        let state = store.read_only();
        for t in [SIGNATURES_TABLE, TREE_TABLE] {
            if state.get(t, &SINGLETON_KEY).as_deref() != singleton(&ws, t) {
                return refuse(format!("the snapshot's {t} differs from its signature entry's"));
            }
        }
        let mut tables = WriteSet::default();
        for t in [NODES_INFO_TABLE, ENDORSED_CERTS_TABLE] {
            state.foreach(t, |k, v| {
                tables.put(t, k, v);
                true
            });
        }
        let mut v = Validator::new();
        v.apply_nodes(&tables).map_err(fail)?;
        let service = state
            .get(SERVICE_INFO_TABLE, &SINGLETON_KEY)
            .ok_or_else(|| fail("the snapshot has no service.info".into()))?;
        v.update_service(&service).map_err(fail)?;
        let tree = state.get(TREE_TABLE, &SINGLETON_KEY).unwrap_or_default();
        v.tree = MerkleTree::deserialise(&tree).map_err(|e| fail(Finding::caused_by(format!("tree table: {e}"), e)))?;
        if v.tree.len() != seqno {
            return refuse(format!("the snapshot's tree has {} leaves, not {seqno}", v.tree.len()));
        }
        v.last_view = view;
        v.add(view, seqno, sig.write_set_digest(), &hdr, &ws).map_err(fail)?;
        // The signature at the snapshot is the audit's starting point, not one of the signatures it counts.
        v.signatures = 0;
        let origin = SnapshotOrigin {
            seqno,
            view,
            service_cert: v.service_cert.clone().unwrap_or_default(),
            evidence_seqno: None,
        };
        v.snapshot = Some((origin, start.bundle_digest));
        Ok(v)
    }

    /// A failure of the first signature after a snapshot means the chunks do not continue that snapshot.
    fn after_snapshot(&self, first_signature: bool, mut finding: Finding) -> Finding {
        if let (true, Some((origin, _))) = (first_signature, &self.snapshot) {
            finding.reason = format!(
                "{}; the ledger does not continue the snapshot at {}.{} (another service's snapshot or chunks?)",
                finding.reason, origin.view, origin.seqno
            );
        }
        finding
    }
}

/// When a complete chunk's table does not validate, name the first entry that does not parse in sequence, if
/// that is the cause (a framing error inside an entry rather than in the table).
fn first_bad_entry(name: &str, bytes: &[u8], start: u64) -> Option<AuditError> {
    let mut pos = CHUNK_HEADER_SIZE as usize;
    let mut seqno = start;
    let table_at = bytes
        .get(..8)
        .map(|h| u64::from_le_bytes(h.try_into().unwrap_or([0; 8])) as usize)?;
    let limit = table_at.min(bytes.len());
    while pos < limit {
        match parse_entry(&bytes[pos..limit]) {
            Ok((e, used)) if e.seqno == seqno => {
                pos += used;
                seqno += 1;
            }
            Ok((e, _)) => {
                let finding = format!("entry header says seqno {}", e.seqno).into();
                return Some(AuditError::at(seqno, Some(e.view), name, finding));
            }
            Err(e) => return Some(AuditError::at(seqno, None, name, Finding::of(e))),
        }
    }
    None
}

/// Entries of an open (last) chunk: scanned from the header; a torn or malformed tail is an error for an audit.
fn open_chunk_entries(name: &str, bytes: &[u8], start: u64) -> Result<(Vec<u64>, u64), AuditError> {
    if bytes.len() < CHUNK_HEADER_SIZE as usize {
        return Err(file_error(name, "shorter than the chunk header"));
    }
    let mut offsets = Vec::new();
    let mut pos = CHUNK_HEADER_SIZE as usize;
    while pos < bytes.len() {
        let seqno = start + offsets.len() as u64;
        let (_, used) = parse_entry(&bytes[pos..]).map_err(|e| AuditError::at(seqno, None, name, Finding::of(e)))?;
        offsets.push(pos as u64);
        pos += used;
    }
    Ok((offsets, pos as u64))
}

#[cfg(test)]
mod tests;
