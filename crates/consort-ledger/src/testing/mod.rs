//! Test support, behind the `testing` feature (crates whose tests use it enable it in their
//! `[dev-dependencies]`): the [`LedgerStorage`] conformance suite, and builders of small, valid CCF ledgers
//! (service and node identities, genesis, user transactions, signatures) for tests that need a ledger to read,
//! audit or tamper with. Builders panic on failure: they are only called from tests.

mod conformance;

pub use conformance::storage_conformance;

use crate::entry::{encode_entry, leaf_digest, LedgerSecret};
use crate::ledger::EntryKind;
use crate::merkle::MerkleTree;
use crate::signature::{
    PrimarySignature, ENDORSED_CERTS_TABLE, NODES_INFO_TABLE, SERVICE_INFO_TABLE, SIGNATURES_TABLE, SINGLETON_KEY,
    TREE_TABLE,
};
use crate::LedgerError;
use crate::{Ledger, LedgerStorage, MemStorage};
use consort_crypto::{key_id, sha256, x509, CertParams, Curve, SigningKey};
use consort_kv::{DomainHeader, WriteSet};

/// A service identity and one node endorsed by it, with a ledger secret.
#[derive(Debug, Clone)]
pub struct TestService {
    /// The ledger secret private domains are encrypted with.
    pub secret: LedgerSecret,
    /// The service identity's key.
    pub service_key: SigningKey,
    /// The self-signed service certificate.
    pub service_cert_pem: String,
    /// The node's key, which signs Merkle roots.
    pub node_key: SigningKey,
    /// The node certificate endorsed (issued) by the service key.
    pub node_cert_pem: String,
    /// Hex SHA-256 of the node's public key DER.
    pub node_id: String,
}

impl TestService {
    /// Fresh P-384 service and node keys, as CCF uses.
    pub fn generate() -> Self {
        let service_key = SigningKey::generate(Curve::P384);
        let mut params = CertParams::new("CCF Service");
        params.is_ca = true;
        let service = x509::self_signed(&service_key, &params).expect("self-signing a fresh key");
        let node_key = SigningKey::generate(Curve::P384);
        let node = x509::issue(
            &node_key.verifying_key(),
            &CertParams::new("CCF Node"),
            &service_key,
            &service.der,
        )
        .expect("endorsing a fresh node key");
        let node_id = key_id(&node_key.verifying_key().to_spki_der());
        TestService {
            secret: LedgerSecret::generate(),
            service_key,
            service_cert_pem: service.pem,
            node_key,
            node_cert_pem: node.pem,
            node_id,
        }
    }
}

/// One encoded transaction the builder produced.
#[derive(Debug, Clone)]
pub struct BuiltEntry {
    /// View it was written in.
    pub view: u64,
    /// Its seqno.
    pub seqno: u64,
    /// The encoded entry.
    pub bytes: Vec<u8>,
    /// Whether it is a signature transaction.
    pub is_signature: bool,
}

/// Builds a ledger transaction by transaction, keeping the Merkle tree as a primary would.
#[derive(Debug, Clone)]
pub struct LedgerBuilder {
    /// The identities and secret the entries are made with.
    pub service: TestService,
    /// View of the next entries (tests change it to model an election).
    pub view: u64,
    tree: MerkleTree,
    entries: Vec<BuiltEntry>,
    last_signature: (u64, u64),
}

impl LedgerBuilder {
    /// An empty ledger for `service`, its entries in view 2.
    pub fn new(service: TestService) -> Self {
        LedgerBuilder {
            service,
            view: 2,
            tree: MerkleTree::new(),
            entries: Vec::new(),
            last_signature: (0, 0),
        }
    }

    /// Seqno the next entry gets.
    pub fn next_seqno(&self) -> u64 {
        self.entries.len() as u64 + 1
    }

    /// Every entry built so far, in order.
    pub fn entries(&self) -> &[BuiltEntry] {
        &self.entries
    }

    /// The tree over leaves 0..=last seqno.
    pub fn tree(&self) -> &MerkleTree {
        &self.tree
    }

    /// Appends a transaction with these writes (`public:` maps in the clear, the others encrypted); returns its
    /// seqno.
    pub fn tx(&mut self, ws: &WriteSet) -> u64 {
        self.tx_of_kind(ws, EntryKind::Transaction)
    }

    fn tx_of_kind(&mut self, ws: &WriteSet, kind: EntryKind) -> u64 {
        let seqno = self.next_seqno();
        let ce_digest = self.service.secret.commit_evidence_digest(self.view, seqno);
        let header = DomainHeader::write_set(seqno, [0u8; 32], ce_digest, seqno as i64 - 1);
        let public = ws.serialise_public(&header);
        let private = ws.serialise_private();
        let bytes = encode_entry(&self.service.secret, self.view, seqno, 0, &public, &private);
        self.tree.append(leaf_digest(&sha256(&bytes), &ce_digest, &[0u8; 32]));
        self.entries.push(BuiltEntry {
            view: self.view,
            seqno,
            bytes,
            is_signature: kind == EntryKind::Signature,
        });
        seqno
    }

    /// The genesis transaction: service.info (status, service cert), nodes.info (Trusted) and the endorsed node
    /// certificate.
    pub fn genesis(&mut self, status: &str) -> u64 {
        let s = &self.service;
        let service_info = serde_json::json!({ "cert": s.service_cert_pem, "status": status });
        let node_info = serde_json::json!({
            "status": "Trusted",
            "node_data": null,
            "rpc_interfaces": {},
            "ledger_secret_seqno": 0,
            "public_key": s.node_key.verifying_key().to_pem(),
        });
        let mut ws = WriteSet::default();
        ws.put(SERVICE_INFO_TABLE, &SINGLETON_KEY, service_info.to_string().as_bytes());
        ws.put(NODES_INFO_TABLE, s.node_id.as_bytes(), node_info.to_string().as_bytes());
        ws.put(ENDORSED_CERTS_TABLE, s.node_id.as_bytes(), s.node_cert_pem.as_bytes());
        self.tx(&ws)
    }

    /// A transaction changing the service status.
    pub fn set_service_status(&mut self, status: &str) -> u64 {
        let info = serde_json::json!({ "cert": self.service.service_cert_pem, "status": status });
        let mut ws = WriteSet::default();
        ws.put(SERVICE_INFO_TABLE, &SINGLETON_KEY, info.to_string().as_bytes());
        self.tx(&ws)
    }

    /// A user transaction like the logging app's: one public and one private write.
    pub fn log_tx(&mut self, id: u64, msg: &str) -> u64 {
        let key = id.to_le_bytes();
        let mut ws = WriteSet::default();
        ws.put("public:records", &key, msg.as_bytes());
        ws.put("records", &key, format!("secret {msg}").as_bytes());
        self.tx(&ws)
    }

    /// A signature transaction over the root of every transaction so far.
    pub fn signature(&mut self) -> u64 {
        let seqno = self.next_seqno();
        let root = self.tree.root();
        let s = &self.service;
        let sig = PrimarySignature::new(
            &s.node_key,
            &s.node_id,
            &s.node_cert_pem,
            self.view,
            seqno,
            self.last_signature.0,
            self.last_signature.1,
            &root,
        );
        // The tree table holds the tree of leaves 0..seqno-1, flushed up to the previous signature.
        let mut tree = self.tree.clone();
        tree.flush_to(self.last_signature.1);
        let mut ws = WriteSet::default();
        ws.put(SIGNATURES_TABLE, &SINGLETON_KEY, &sig.to_json_bytes());
        ws.put(TREE_TABLE, &SINGLETON_KEY, &tree.serialise());
        let seqno = self.tx_of_kind(&ws, EntryKind::Signature);
        self.last_signature = (self.view, seqno);
        seqno
    }

    /// Seqno of the last signature transaction (0 if none).
    pub fn last_signature_seqno(&self) -> u64 {
        self.last_signature.1
    }

    /// Appends every entry to `ledger`, commits up to the last signature and settles it (every chunk durable and
    /// under its final name).
    pub fn write_to<S: LedgerStorage>(&self, ledger: &mut Ledger<S>) -> Result<(), LedgerError> {
        for e in &self.entries {
            if e.seqno > ledger.last_seqno() {
                ledger.append(e.seqno, &e.bytes, EntryKind::from(e.is_signature))?;
            }
        }
        ledger.commit(self.last_signature.1)?;
        ledger.settle()
    }

    /// The chunk files (name, bytes) of this ledger written with `chunk_threshold_bytes`, committed up to the
    /// last signature.
    pub fn chunk_files(&self, chunk_threshold_bytes: u64) -> Vec<(String, Vec<u8>)> {
        let (mut ledger, _) = Ledger::open(MemStorage::new(), chunk_threshold_bytes).expect("empty storage opens");
        self.write_to(&mut ledger).expect("builder entries are valid");
        ledger
            .into_storage()
            .files()
            .iter()
            .map(|(n, b)| (n.clone(), b.clone()))
            .collect()
    }

    /// Only the `.committed` chunk files.
    pub fn committed_chunk_files(&self, chunk_threshold_bytes: u64) -> Vec<(String, Vec<u8>)> {
        self.chunk_files(chunk_threshold_bytes)
            .into_iter()
            .filter(|(n, _)| n.ends_with(".committed"))
            .collect()
    }
}

/// A small valid ledger: genesis (service Open), `batches` batches of `per_batch` logging transactions, each
/// followed by a signature.
pub fn sample_ledger(batches: usize, per_batch: usize) -> LedgerBuilder {
    let mut b = LedgerBuilder::new(TestService::generate());
    b.genesis("Opening");
    b.signature();
    b.set_service_status("Open");
    let mut id = 0;
    for _ in 0..batches {
        for _ in 0..per_batch {
            id += 1;
            b.log_tx(id, &format!("message {id}"));
        }
        b.signature();
    }
    b
}
