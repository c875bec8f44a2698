//! The `signature_record` target's fixture and its ledger-level properties: a signature record (the JSON of
//! `public:ccf.internal.signatures`) as `consort_ledger::PrimarySignature` parses it and as the offline auditor
//! (`consort_ledger::audit_chunks`) checks it at the third transaction of a fixed ledger, signed by a fixed node
//! (`fuzz/signature/`). Whatever either accepts must be a genuine signature of the fixed node over the fixed
//! root. Shared, through `#[path]`, with consort-ledger's `fuzz_replay` test; the replica's check (a snapshot
//! bundle carrying the record, through `consort_consensus::snapshot::open`) is in `signature_replica.rs`.

use base64::Engine;
use consort_crypto::{key_id, SigningKey, VerifyingKey};
use consort_kv::WriteSet;
use consort_ledger::testing::{LedgerBuilder, TestService};
use consort_ledger::{
    audit_chunks, AuditError, AuditReport, LedgerSecret, PrimarySignature, SIGNATURES_TABLE, SINGLETON_KEY, TREE_TABLE,
};

/// The fixed service identity (P-384, self-signed CA) and the node it endorses. Test keys made for the fuzzer
/// (`openssl genpkey` / `openssl req` / `openssl x509 -req`); they sign nothing else.
pub const SERVICE_PRIVK_PEM: &str = include_str!("../signature/service_privk.pem");
/// The service certificate.
pub const SERVICE_CERT_PEM: &str = include_str!("../signature/service_cert.pem");
/// The node's key, which signs the root.
pub const NODE_PRIVK_PEM: &str = include_str!("../signature/node_privk.pem");
/// The node certificate, issued by the service key.
pub const NODE_CERT_PEM: &str = include_str!("../signature/node_cert.pem");

/// The ledger the record is checked in: genesis (seqno 1) and one logging transaction (2), in view 2; the record
/// is the signature transaction at seqno 3, over the root of leaves 0..3.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The first two transactions.
    pub builder: LedgerBuilder,
    /// Where the record goes.
    pub view: u64,
    /// Where the record goes.
    pub seqno: u64,
    /// The Merkle root a genuine record signs.
    pub root: [u8; 32],
    /// The serialised tree a genuine signature transaction stores beside the record.
    pub tree: Vec<u8>,
    /// The node's public key, taken from its private key (not from any certificate a record names).
    pub node_key: VerifyingKey,
}

impl Fixture {
    /// Builds the fixture from the fixed keys (panics if they do not parse: they are committed test files).
    pub fn new() -> Self {
        let key = |pem: &str| SigningKey::from_pem(pem).unwrap_or_else(|e| panic!("fixture key: {e}"));
        let node_key = key(NODE_PRIVK_PEM);
        let service = TestService {
            secret: LedgerSecret::from_bytes([0x5e; 32]),
            service_key: key(SERVICE_PRIVK_PEM),
            service_cert_pem: SERVICE_CERT_PEM.into(),
            node_id: key_id(&node_key.verifying_key().to_spki_der()),
            node_key: node_key.clone(),
            node_cert_pem: NODE_CERT_PEM.into(),
        };
        let mut builder = LedgerBuilder::new(service);
        builder.genesis("Open");
        builder.log_tx(1, "before the signature");
        let seqno = builder.next_seqno();
        Fixture {
            view: builder.view,
            seqno,
            root: builder.tree().root(),
            tree: builder.tree().serialise(),
            node_key: node_key.verifying_key(),
            builder,
        }
    }

    /// The signature transaction carrying `record`: the ledger's entries with it appended.
    pub fn ledger_with(&self, record: &[u8]) -> LedgerBuilder {
        let mut b = self.builder.clone();
        let mut ws = WriteSet::default();
        ws.put(SIGNATURES_TABLE, &SINGLETON_KEY, record);
        ws.put(TREE_TABLE, &SINGLETON_KEY, &self.tree);
        b.tx(&ws);
        b
    }

    /// A genuine record: the node's signature over the root, at the record's place.
    pub fn genuine(&self) -> PrimarySignature {
        let s = &self.builder.service;
        PrimarySignature::new(
            &s.node_key,
            &s.node_id,
            NODE_CERT_PEM,
            self.view,
            self.seqno,
            0,
            0,
            &self.root,
        )
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

/// Panics unless `root_hex` names the fixture's root and `sig_b64` is the node's signature over it: what a
/// consumer accepted must not be forged.
pub fn assert_genuine(fx: &Fixture, root_hex: &str, sig_b64: &str) {
    let root = hex::decode(root_hex).unwrap_or_else(|e| panic!("accepted root {root_hex:?} is not hex: {e}"));
    assert_eq!(root, fx.root, "accepted a record over another root");
    let der = base64::engine::general_purpose::STANDARD
        .decode(sig_b64)
        .unwrap_or_else(|e| panic!("accepted sig {sig_b64:?} is not base64: {e}"));
    fx.node_key
        .verify_prehash_der(&fx.root, &der)
        .unwrap_or_else(|e| panic!("accepted a signature the node did not make: {e}"));
    let mut other = fx.root;
    other[0] ^= 1;
    assert!(
        fx.node_key.verify_prehash_der(&other, &der).is_err(),
        "the signature verifies any root"
    );
}

/// `PrimarySignature::from_json_bytes`: what it accepts serialises back to a record that parses equal, and its
/// root and signature fields decode to what they encode.
pub fn check_parse(data: &[u8]) -> Option<PrimarySignature> {
    let sig = PrimarySignature::from_json_bytes(data).ok()?;
    let back = PrimarySignature::from_json_bytes(&sig.to_json_bytes())
        .unwrap_or_else(|e| panic!("a parsed record does not parse again: {e}"));
    assert_eq!(back, sig, "a parsed record changes through a round trip");
    if let Ok(root) = sig.root_bytes() {
        assert_eq!(
            hex::encode(root),
            sig.root.to_ascii_lowercase(),
            "root decodes to other bytes"
        );
    }
    if let Ok(der) = sig.sig_bytes() {
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(der),
            sig.sig,
            "sig decodes ambiguously"
        );
    }
    Some(sig)
}

/// The auditor over the fixed ledger with `record` as its signature transaction (one open chunk). When it
/// accepts, the record was verified as the ledger's one signature, and is genuine.
pub fn audit(fx: &Fixture, record: &[u8]) -> Result<AuditReport, AuditError> {
    let ledger = fx.ledger_with(record);
    let mut chunk = 0u64.to_le_bytes().to_vec(); // an open chunk: no position table yet
    for e in ledger.entries() {
        chunk.extend_from_slice(&e.bytes);
    }
    let report = audit_chunks(&[("ledger_1".to_string(), chunk)])?;
    assert_eq!((report.signatures, report.last_verified), (1, (fx.view, fx.seqno)));
    let json: serde_json::Value =
        serde_json::from_slice(record).unwrap_or_else(|e| panic!("the auditor accepted non-JSON: {e}"));
    let field = |k: &str| {
        json.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("accepted without {k}"))
    };
    assert_genuine(fx, field("root"), field("sig"));
    Ok(report)
}

/// Seeds: the genuine record compact (as a primary writes it) and pretty-printed, and without its optional
/// `cert` and algorithm fields (which the auditor accepts and `PrimarySignature` does not).
pub fn seeds(fx: &Fixture) -> Vec<(String, Vec<u8>)> {
    let genuine = fx.genuine();
    let json = |v: &serde_json::Value| serde_json::to_vec(v).unwrap_or_default();
    let mut value = serde_json::to_value(&genuine).unwrap_or_default();
    let pretty = serde_json::to_vec_pretty(&value).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        for k in ["cert", "hashing_algorithm", "signature_algorithm"] {
            map.remove(k);
        }
    }
    vec![
        ("genuine.json".into(), genuine.to_json_bytes()),
        ("genuine_pretty.json".into(), pretty),
        ("genuine_minimal.json".into(), json(&value)),
    ]
}
