//! Signature transactions: the JSON a primary writes to `public:ccf.internal.signatures`, the internal table
//! names, and signing/verifying a Merkle root (ECDSA over the 32-byte root taken as a prehashed SHA-256 digest).

use crate::error::SignatureRecordFault;
use crate::LedgerError;
use consort_crypto::{ParsedCert, SigningKey};
use serde::{Deserialize, Serialize};

/// The primary's signature over the Merkle root ([`PrimarySignature`] as JSON); writing it makes a signature
/// transaction.
pub const SIGNATURES_TABLE: &str = "public:ccf.internal.signatures";
/// The serialised Merkle tree, written by each signature transaction.
pub const TREE_TABLE: &str = "public:ccf.internal.tree";
/// The service's certificate and status.
pub const SERVICE_INFO_TABLE: &str = "public:ccf.gov.service.info";
/// Each node's status and public key, by node id.
pub const NODES_INFO_TABLE: &str = "public:ccf.gov.nodes.info";
/// Each node's certificate endorsed by the service key, by node id.
pub const ENDORSED_CERTS_TABLE: &str = "public:ccf.gov.nodes.endorsed_certificates";
/// Users' certificates, by user id.
pub const USERS_CERTS_TABLE: &str = "public:ccf.gov.users.certs";
/// Members' certificates, by member id.
pub const MEMBERS_CERTS_TABLE: &str = "public:ccf.gov.members.certs";
/// CCF 6.x also writes a COSE signature of the root; Consort does not (yet), the auditor ignores it.
pub const COSE_SIGNATURES_TABLE: &str = "public:ccf.internal.cose_signatures";
/// Key of single-entry tables (signatures, tree, service info).
pub const SINGLETON_KEY: [u8; 8] = [0; 8];

/// The `hashing_algorithm` a signature records (CCF's name for SHA-256).
pub const HASHING_ALGORITHM: &str = "SHA256";
/// The `signature_algorithm` a signature records.
pub const SIGNATURE_ALGORITHM: &str = "ECDSA";

/// The value of the signatures table: the primary's signature over the Merkle root of leaves `0..seqno`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct PrimarySignature {
    /// Seqno of the signature transaction itself.
    pub seqno: u64,
    /// Its view.
    pub view: u64,
    /// Seqno of the signer's commit point when it signed (0 if none).
    pub commit_seqno: u64,
    /// View of that commit point.
    pub commit_view: u64,
    /// Hex of the 32-byte Merkle root.
    pub root: String,
    /// Base64 of the DER ECDSA signature.
    pub sig: String,
    /// Node id (hex SHA-256 of the node's public key DER).
    pub node: String,
    /// The signing node's certificate (PEM).
    pub cert: String,
    /// Always [`HASHING_ALGORITHM`].
    pub hashing_algorithm: String,
    /// Always [`SIGNATURE_ALGORITHM`].
    pub signature_algorithm: String,
}

impl PrimarySignature {
    /// Signs `root` and fills in the JSON fields.
    #[allow(
        clippy::too_many_arguments,
        reason = "one argument per field of the signature record CCF defines; a builder would only rename them"
    )]
    pub fn new(
        key: &SigningKey,
        node_id: &str,
        node_cert_pem: &str,
        view: u64,
        seqno: u64,
        commit_view: u64,
        commit_seqno: u64,
        root: &[u8; 32],
    ) -> Self {
        use base64::Engine;
        PrimarySignature {
            seqno,
            view,
            commit_seqno,
            commit_view,
            root: hex::encode(root),
            sig: base64::engine::general_purpose::STANDARD.encode(sign_root(key, root)),
            node: node_id.to_string(),
            cert: node_cert_pem.to_string(),
            hashing_algorithm: HASHING_ALGORITHM.to_string(),
            signature_algorithm: SIGNATURE_ALGORITHM.to_string(),
        }
    }

    /// The JSON stored in the signatures table.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        // invariant: a struct of integers and strings always serialises.
        serde_json::to_vec(self).expect("serialising a plain struct to JSON cannot fail")
    }

    /// Parses the JSON stored in the signatures table.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, LedgerError> {
        serde_json::from_slice(bytes).map_err(|e| LedgerError::SignatureJson(e.into()))
    }

    /// The signature recorded by an entry, if it is a signature transaction.
    pub fn from_entry(entry: &crate::EntryView<'_>) -> Result<Option<Self>, LedgerError> {
        let (_, ws) =
            consort_kv::WriteSet::deserialise_public(entry.public_domain).map_err(LedgerError::PublicDomain)?;
        let Some(map) = ws.maps.get(SIGNATURES_TABLE) else {
            return Ok(None);
        };
        match map.writes.get(&SINGLETON_KEY[..]) {
            Some(Some(value)) => Self::from_json_bytes(value).map(Some),
            _ => Err(LedgerError::Signature(SignatureRecordFault::NoValue)),
        }
    }

    /// The root as bytes.
    pub fn root_bytes(&self) -> Result<[u8; 32], LedgerError> {
        let v =
            hex::decode(&self.root).map_err(|e| LedgerError::Signature(SignatureRecordFault::RootNotHex(e.into())))?;
        v.try_into()
            .map_err(|v: Vec<u8>| LedgerError::Signature(SignatureRecordFault::RootLength(v.len())))
    }

    /// The DER signature as bytes.
    pub fn sig_bytes(&self) -> Result<Vec<u8>, LedgerError> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(&self.sig)
            .map_err(LedgerError::SigBase64)
    }
}

/// DER ECDSA signature over `root`, treated as an already computed SHA-256 digest (as CCF does).
pub fn sign_root(key: &SigningKey, root: &[u8; 32]) -> Vec<u8> {
    // invariant: P-256 and P-384 keys sign any digest of at least half their field size, and a root is 32 bytes.
    key.sign_prehash_der(root)
        .expect("signing a 32-byte digest with a P-256/P-384 key cannot fail")
}

/// Verifies a root signature with the public key of `cert_pem`.
pub fn verify_root(cert_pem: &str, root: &[u8; 32], sig_der: &[u8]) -> Result<(), LedgerError> {
    let crypto = |what| move |source| LedgerError::Crypto { what, source };
    let cert = ParsedCert::from_pem(cert_pem).map_err(crypto("node certificate"))?;
    let key = cert.public_key().map_err(crypto("node key"))?;
    key.verify_prehash_der(root, sig_der)
        .map_err(crypto("root signature does not verify"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use consort_crypto::{x509, CertParams, Curve};

    #[test]
    fn a_root_that_is_not_hex_or_not_32_bytes_says_which_and_keeps_the_hex_error() {
        let key = SigningKey::generate(Curve::P256);
        let cert = x509::self_signed(&key, &CertParams::new("CCF Node")).unwrap();
        let mut sig = PrimarySignature::new(&key, "n", &cert.pem, 2, 10, 2, 5, &[1u8; 32]);
        sig.root = "zz".into();
        let err = sig.root_bytes().unwrap_err();
        let LedgerError::Signature(SignatureRecordFault::RootNotHex(hex_error)) = &err else {
            panic!("not a hex fault: {err:?}");
        };
        let fault = std::error::Error::source(&err).expect("the fault is kept");
        assert_eq!(fault.source().map(|e| e.to_string()), Some(hex_error.get().to_string()));
        assert_eq!(err.to_string(), "signature: root is not hex");
        sig.root = "abcd".into();
        assert_eq!(
            sig.root_bytes(),
            Err(LedgerError::Signature(SignatureRecordFault::RootLength(2)))
        );
    }

    #[test]
    fn sign_and_verify_root() {
        for curve in [Curve::P256, Curve::P384] {
            let key = SigningKey::generate(curve);
            let cert = x509::self_signed(&key, &CertParams::new("CCF Node")).unwrap();
            let root = [42u8; 32];
            let sig = PrimarySignature::new(&key, "n", &cert.pem, 2, 10, 2, 5, &root);
            let back = PrimarySignature::from_json_bytes(&sig.to_json_bytes()).unwrap();
            assert_eq!(back, sig);
            verify_root(&cert.pem, &back.root_bytes().unwrap(), &back.sig_bytes().unwrap()).unwrap();
            assert!(verify_root(&cert.pem, &[43u8; 32], &back.sig_bytes().unwrap()).is_err());
            assert!(verify_root("not a cert", &root, &back.sig_bytes().unwrap()).is_err());
        }
    }
}
