//! Node and service identities and the sealed secrets, kept in the node's secrets directory.
//!
//! The node key, the service key and the ledger secret are written sealed through the node's platform
//! (`consort_attest::seal`): a file names the platform that sealed it, and a node refuses a secret file that is not
//! sealed or was sealed by another platform. The virtual platform's seal is a documented stand-in, not protection:
//! the file holds the format tag and the plaintext, and only its mode (0600, owner only) keeps other users out; on
//! SEV-SNP the same files are AES-GCM under a key the hardware derives. A restarted node reloads the same identity.

use consort_attest::Platform;
use consort_consensus::NodeId;
use consort_crypto::x509::{self, CertParams};
use consort_crypto::{Curve, ParsedCert, SigningKey};
use consort_ledger::{LedgerSecret, LedgerSecrets};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// File names inside the secrets directory.
pub const NODE_KEY_FILE: &str = "node_privk.pem";
pub const NODE_CERT_FILE: &str = "node_cert.pem";
pub const SERVICE_KEY_FILE: &str = "service_privk.pem";
pub const SERVICE_CERT_FILE: &str = "service_cert.pem";
/// The ledger secrets, one `<version> <hex>` line each (a lone hex line is version 1), sealed.
pub const LEDGER_SECRET_FILE: &str = "ledger_secret";
/// The node's RSA key that rekeys encrypt the new ledger secret to (PKCS#8 PEM), sealed.
pub const NODE_ENC_KEY_FILE: &str = "node_enc_privk.pem";
/// Size of a node's encryption key.
pub const NODE_ENC_KEY_BITS: usize = 2048;

/// Validity of generated service and node certificates.
pub const CERT_VALIDITY_DAYS: u32 = 365;

/// Everything a node needs to sign and to serve TLS.
#[derive(Clone)]
pub struct Identities {
    pub node_key: SigningKey,
    pub node_cert_pem: String,
    pub node_cert_der: Vec<u8>,
    pub node_id: NodeId,
    pub service_key: SigningKey,
    pub service_cert_pem: String,
    /// The ledger secrets as of loading (the engine's replica holds the live keyring).
    pub ledger_secrets: LedgerSecrets,
    /// The node's RSA encryption key (PKCS#8 PEM) and its public key (SPKI PEM, recorded in the nodes table).
    pub node_enc_key_pem: String,
    pub node_enc_public_pem: String,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identities")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// Error reading or writing identity files: the file, and what was wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("identity {}: {source}", path.display())]
pub struct IdentityError {
    /// The file (or directory) concerned.
    pub path: PathBuf,
    /// What was wrong.
    #[source]
    pub source: IdentityFault,
}

/// What was wrong with an identity file.
#[derive(Debug, thiserror::Error)]
pub enum IdentityFault {
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A text file is not UTF-8.
    #[error("{0}")]
    NotText(#[from] std::string::FromUtf8Error),
    /// A key or certificate does not parse, or could not be made.
    #[error("{0}")]
    Crypto(#[from] consort_crypto::CryptoError),
    /// The platform could not seal or unseal a secret.
    #[error("{0}")]
    Seal(#[from] consort_attest::AttestError),
    /// The certificate's key does not give a node id.
    #[error("{0}")]
    NodeId(#[from] NotANodeId),
    /// The certificate is not for the key in the named file.
    #[error("certificate does not match {key_file}")]
    KeyMismatch {
        /// The key file.
        key_file: &'static str,
    },
    /// The node certificate is not signed by the service key.
    #[error("not endorsed by the service: {0}")]
    NotEndorsed(#[source] consort_crypto::CryptoError),
    /// The ledger secret is not 64 hex characters.
    #[error("expected 64 hex characters")]
    LedgerSecretFormat,
}

/// Text that should have been a node id (64 hex digits) but is not, as [`NodeId`]'s parser described it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotANodeId(pub String);

/// The node id a certificate names: the hex SHA-256 of its public key, checked as a [`NodeId`] once here.
pub fn cert_node_id(cert: &ParsedCert) -> Result<NodeId, NotANodeId> {
    cert.key_id().parse().map_err(NotANodeId)
}

/// Parses a node id arriving as text from outside (a JSON field, a URL path, a table key).
pub fn parse_node_id(text: &str) -> Result<NodeId, NotANodeId> {
    text.parse().map_err(NotANodeId)
}

fn ierr(path: &Path, e: impl Into<IdentityFault>) -> IdentityError {
    IdentityError {
        path: path.to_path_buf(),
        source: e.into(),
    }
}

/// Writes `bytes` to `path` with mode 0600, durably.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    fail::fail_point!("identity::write");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| ierr(path, e))?;
    f.write_all(bytes).map_err(|e| ierr(path, e))?;
    f.sync_all().map_err(|e| ierr(path, e))
}

fn write_public(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    fail::fail_point!("identity::write");
    std::fs::write(path, bytes).map_err(|e| ierr(path, e))
}

fn read(path: &Path) -> Result<Vec<u8>, IdentityError> {
    std::fs::read(path).map_err(|e| ierr(path, e))
}

fn read_text(path: &Path) -> Result<String, IdentityError> {
    String::from_utf8(read(path)?).map_err(|e| ierr(path, e))
}

/// Seals `secret` through the node's platform into `path` (on SEV-SNP under a key the firmware derives from the chip
/// and this guest's measurement; the virtual platform's stand-in only marks the file): mode 0600, written to a
/// temporary file, synced and renamed, so a crash leaves the old or the new file.
pub(crate) fn write_sealed(platform: &dyn Platform, path: &Path, secret: &[u8]) -> Result<(), IdentityError> {
    fail::fail_point!("identity::write");
    let sealed = platform.seal(secret).map_err(|e| ierr(path, e))?;
    crate::platform::write_secret_file(path, &sealed).map_err(|e| ierr(path, e))
}

/// Reads and unseals a secret written by [`write_sealed`]; refuses unsealed files and other platforms' seals.
pub(crate) fn read_sealed_text(platform: &dyn Platform, path: &Path) -> Result<String, IdentityError> {
    let sealed = crate::platform::read_secret_file(path).map_err(|e| ierr(path, e))?;
    let plain = platform.unseal(&sealed).map_err(|e| ierr(path, e))?;
    String::from_utf8(plain).map_err(|e| ierr(path, e))
}

impl Identities {
    /// Whether the secrets directory already holds a complete identity.
    pub fn exist(dir: &Path) -> bool {
        [
            NODE_KEY_FILE,
            NODE_CERT_FILE,
            SERVICE_KEY_FILE,
            SERVICE_CERT_FILE,
            LEDGER_SECRET_FILE,
            NODE_ENC_KEY_FILE,
        ]
        .iter()
        .all(|f| dir.join(f).exists())
    }

    /// Creates a new service (key, self-signed CA certificate, ledger secret) and a node endorsed by it.
    pub fn generate(platform: &dyn Platform, dir: &Path, subject_alt_names: &[String]) -> Result<Self, IdentityError> {
        std::fs::create_dir_all(dir).map_err(|e| ierr(dir, e))?;
        let service_key = SigningKey::generate(Curve::P384);
        let mut sp = CertParams::new("CCF Service");
        sp.is_ca = true;
        sp.validity_days = CERT_VALIDITY_DAYS;
        let service = x509::self_signed(&service_key, &sp).map_err(|e| ierr(dir, e))?;

        let node_key = SigningKey::generate(Curve::P384);
        let mut np = CertParams::new("CCF Node");
        np.subject_alt_names = subject_alt_names.to_vec();
        np.validity_days = CERT_VALIDITY_DAYS;
        let node = x509::issue(&node_key.verifying_key(), &np, &service_key, &service.der).map_err(|e| ierr(dir, e))?;
        let ledger_secrets = LedgerSecrets::new(LedgerSecret::generate());

        write_sealed(
            platform,
            &dir.join(SERVICE_KEY_FILE),
            service_key.to_pkcs8_pem().as_bytes(),
        )?;
        write_sealed(platform, &dir.join(NODE_KEY_FILE), node_key.to_pkcs8_pem().as_bytes())?;
        save_ledger_secrets(platform, dir, &ledger_secrets)?;
        let (enc_key, _) = new_encryption_key(dir)?;
        write_sealed(platform, &dir.join(NODE_ENC_KEY_FILE), enc_key.as_bytes())?;
        write_public(&dir.join(SERVICE_CERT_FILE), service.pem.as_bytes())?;
        write_public(&dir.join(NODE_CERT_FILE), node.pem.as_bytes())?;
        Self::load(platform, dir)
    }

    /// Stores the identity a joining node received from the primary (its own key, its certificate issued by the
    /// service, and the service's key, certificate and ledger secrets) with its own encryption key (whose public
    /// half went with its join request), then loads it back.
    #[allow(clippy::too_many_arguments)] // reason: the parts of one identity, each a distinct file.
    pub fn save_joined(
        platform: &dyn Platform,
        dir: &Path,
        node_key: &SigningKey,
        node_enc_key_pem: &str,
        node_cert_pem: &str,
        service_key_pem: &str,
        service_cert_pem: &str,
        ledger_secrets: &LedgerSecrets,
    ) -> Result<Self, IdentityError> {
        std::fs::create_dir_all(dir).map_err(|e| ierr(dir, e))?;
        write_sealed(platform, &dir.join(SERVICE_KEY_FILE), service_key_pem.as_bytes())?;
        write_sealed(platform, &dir.join(NODE_KEY_FILE), node_key.to_pkcs8_pem().as_bytes())?;
        write_sealed(platform, &dir.join(NODE_ENC_KEY_FILE), node_enc_key_pem.as_bytes())?;
        save_ledger_secrets(platform, dir, ledger_secrets)?;
        write_public(&dir.join(SERVICE_CERT_FILE), service_cert_pem.as_bytes())?;
        write_public(&dir.join(NODE_CERT_FILE), node_cert_pem.as_bytes())?;
        Self::load(platform, dir)
    }

    /// Loads an identity written by [`Identities::generate`].
    pub fn load(platform: &dyn Platform, dir: &Path) -> Result<Self, IdentityError> {
        let p = |f: &str| -> PathBuf { dir.join(f) };
        let node_key = SigningKey::from_pem(&read_sealed_text(platform, &p(NODE_KEY_FILE))?)
            .map_err(|e| ierr(&p(NODE_KEY_FILE), e))?;
        let service_key = SigningKey::from_pem(&read_sealed_text(platform, &p(SERVICE_KEY_FILE))?)
            .map_err(|e| ierr(&p(SERVICE_KEY_FILE), e))?;
        let node_cert_pem = read_text(&p(NODE_CERT_FILE))?;
        let node_cert = ParsedCert::from_pem(&node_cert_pem).map_err(|e| ierr(&p(NODE_CERT_FILE), e))?;
        let service_cert_pem = read_text(&p(SERVICE_CERT_FILE))?;
        let service_cert = ParsedCert::from_pem(&service_cert_pem).map_err(|e| ierr(&p(SERVICE_CERT_FILE), e))?;
        if node_cert.public_key().ok() != Some(node_key.verifying_key()) {
            return Err(ierr(
                &p(NODE_CERT_FILE),
                IdentityFault::KeyMismatch {
                    key_file: NODE_KEY_FILE,
                },
            ));
        }
        if service_cert.public_key().ok() != Some(service_key.verifying_key()) {
            return Err(ierr(
                &p(SERVICE_CERT_FILE),
                IdentityFault::KeyMismatch {
                    key_file: SERVICE_KEY_FILE,
                },
            ));
        }
        node_cert
            .verify_signed_by(&service_key.verifying_key())
            .map_err(|e| ierr(&p(NODE_CERT_FILE), IdentityFault::NotEndorsed(e)))?;
        let secrets_text = read_sealed_text(platform, &p(LEDGER_SECRET_FILE))?;
        let ledger_secrets = parse_ledger_secrets(&secrets_text)
            .ok_or_else(|| ierr(&p(LEDGER_SECRET_FILE), IdentityFault::LedgerSecretFormat))?;
        let node_enc_key_pem = read_sealed_text(platform, &p(NODE_ENC_KEY_FILE))?;
        let node_enc_public_pem =
            consort_crypto::rsa_keys::public_pem(&node_enc_key_pem).map_err(|e| ierr(&p(NODE_ENC_KEY_FILE), e))?;
        let node_id = cert_node_id(&node_cert).map_err(|e| ierr(&p(NODE_CERT_FILE), e))?;
        Ok(Identities {
            node_id,
            node_key,
            node_cert_der: node_cert.der.clone(),
            node_cert_pem,
            service_key,
            service_cert_pem,
            ledger_secrets,
            node_enc_key_pem,
            node_enc_public_pem,
        })
    }
}

/// A fresh RSA encryption key for a node: (PKCS#8 private PEM, SPKI public PEM).
pub fn new_encryption_key(dir: &Path) -> Result<(String, String), IdentityError> {
    consort_crypto::rsa_keys::generate_pem(NODE_ENC_KEY_BITS).map_err(|e| ierr(&dir.join(NODE_ENC_KEY_FILE), e))
}

/// Writes the ledger secrets, sealed, replacing the file atomically (a rekey rewrites it while the node runs).
pub fn save_ledger_secrets(platform: &dyn Platform, dir: &Path, secrets: &LedgerSecrets) -> Result<(), IdentityError> {
    let text: String = secrets
        .iter()
        .map(|(version, s)| format!("{version} {}\n", hex::encode(s.raw())))
        .collect();
    write_sealed(platform, &dir.join(LEDGER_SECRET_FILE), text.as_bytes())
}

/// The keyring in a ledger secrets file; `None` if a line is not `<version> <64 hex digits>` (or a lone hex line,
/// the single-secret format, read as version 1), or the file holds none.
fn parse_ledger_secrets(text: &str) -> Option<LedgerSecrets> {
    let mut pairs = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (version, hex_text) = match line.split_once(' ') {
            Some((v, h)) => (v.parse::<u64>().ok()?, h.trim()),
            None => (1, line),
        };
        let raw: [u8; 32] = hex::decode(hex_text).ok()?.try_into().ok()?;
        pairs.push((version, LedgerSecret::from_bytes(raw)));
    }
    LedgerSecrets::from_versions(pairs)
}

#[cfg(test)]
mod tests {
    /// The virtual platform these tests seal with.
    fn virt() -> consort_attest::VirtualPlatform {
        consort_attest::VirtualPlatform::new([0; 32])
    }
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generate_then_load_gives_same_identity_and_private_files_are_0600() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!Identities::exist(dir.path()));
        let a = Identities::generate(&virt(), dir.path(), &["127.0.0.1".into()]).unwrap();
        assert!(Identities::exist(dir.path()));
        let b = Identities::load(&virt(), dir.path()).unwrap();
        assert_eq!(a.node_id, b.node_id);
        assert_eq!(a.ledger_secrets.latest().1.raw(), b.ledger_secrets.latest().1.raw());
        for f in [NODE_KEY_FILE, SERVICE_KEY_FILE, LEDGER_SECRET_FILE] {
            let mode = std::fs::metadata(dir.path().join(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
    }

    #[test]
    fn mismatched_files_are_refused() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        Identities::generate(&virt(), a.path(), &[]).unwrap();
        Identities::generate(&virt(), b.path(), &[]).unwrap();
        std::fs::copy(b.path().join(NODE_CERT_FILE), a.path().join(NODE_CERT_FILE)).unwrap();
        assert!(Identities::load(&virt(), a.path()).is_err());
        std::fs::write(b.path().join(LEDGER_SECRET_FILE), "zz").unwrap();
        assert!(Identities::load(&virt(), b.path()).is_err());
    }

    #[test]
    fn secrets_are_sealed_and_unsealed_or_foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ids = Identities::generate(&virt(), dir.path(), &[]).unwrap();
        for f in [NODE_KEY_FILE, SERVICE_KEY_FILE, LEDGER_SECRET_FILE] {
            let bytes = std::fs::read(dir.path().join(f)).unwrap();
            assert!(
                bytes.starts_with(consort_attest::seal::VIRTUAL_SEAL_TAG),
                "{f} is not sealed"
            );
        }
        // A host that replaces a sealed secret with a plain one (its own key, say) is refused, naming the file.
        std::fs::write(dir.path().join(NODE_KEY_FILE), ids.node_key.to_pkcs8_pem()).unwrap();
        let err = Identities::load(&virt(), dir.path()).unwrap_err();
        assert!(err.path.ends_with(NODE_KEY_FILE), "{err}");
        assert!(err.source.to_string().contains("not a sealed secret"), "{err}");
        // Another platform's seal is refused too.
        let mut snp = consort_attest::seal::SNP_SEAL_TAG.to_vec();
        snp.extend_from_slice(&[0u8; 64]);
        std::fs::write(dir.path().join(NODE_KEY_FILE), snp).unwrap();
        let err = Identities::load(&virt(), dir.path()).unwrap_err();
        assert!(err.source.to_string().contains("AMD_SEV_SNP_v1"), "{err}");
    }

    /// A platform that seals under a key of its own, as SEV-SNP does under the firmware's derived key.
    struct KeyedPlatform(consort_crypto::Aes256GcmKey);

    impl Platform for KeyedPlatform {
        fn kind(&self) -> consort_attest::PlatformKind {
            consort_attest::PlatformKind::Snp
        }
        fn evidence_for(&self, _: &[u8]) -> Result<consort_attest::Evidence, consort_attest::AttestError> {
            Err(consort_attest::AttestError::Unavailable("test platform".into()))
        }
        fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, consort_attest::AttestError> {
            Ok(consort_attest::seal::aead_seal(&self.0, plaintext))
        }
        fn unseal(&self, sealed: &[u8]) -> Result<Vec<u8>, consort_attest::AttestError> {
            consort_attest::seal::aead_unseal(&self.0, sealed)
        }
        fn security_warning(&self) -> Option<&'static str> {
            None
        }
    }

    #[test]
    fn secrets_are_sealed_through_the_nodes_platform_and_only_it_unseals_them() {
        let dir = tempfile::tempdir().unwrap();
        let platform = KeyedPlatform(consort_crypto::Aes256GcmKey::generate());
        let ids = Identities::generate(&platform, dir.path(), &[]).unwrap();
        for f in [NODE_KEY_FILE, SERVICE_KEY_FILE, LEDGER_SECRET_FILE, NODE_ENC_KEY_FILE] {
            let raw = std::fs::read(dir.path().join(f)).unwrap();
            let text = String::from_utf8_lossy(&raw);
            assert!(!text.contains("PRIVATE KEY"), "{f} holds a key in clear");
            assert!(
                !text.contains(&hex::encode(ids.ledger_secrets.latest().1.raw())),
                "{f} holds the ledger secret in clear"
            );
        }
        assert!(
            Identities::load(&virt(), dir.path()).is_err(),
            "another platform unsealed the secrets"
        );
        let other = KeyedPlatform(consort_crypto::Aes256GcmKey::generate());
        assert!(
            Identities::load(&other, dir.path()).is_err(),
            "another key unsealed the secrets"
        );
        let again = Identities::load(&platform, dir.path()).unwrap();
        assert_eq!(again.node_id, ids.node_id);
    }

    #[test]
    fn the_keyring_file_round_trips_and_reads_the_single_secret_format() {
        let mut k = LedgerSecrets::new(LedgerSecret::from_bytes([1; 32]));
        k.insert(40, LedgerSecret::from_bytes([2; 32])).unwrap();
        let dir = tempfile::tempdir().unwrap();
        save_ledger_secrets(&virt(), dir.path(), &k).unwrap();
        let text = read_sealed_text(&virt(), &dir.path().join(LEDGER_SECRET_FILE)).unwrap();
        let back = parse_ledger_secrets(&text).unwrap();
        assert_eq!(
            back.iter().map(|(v, s)| (v, *s.raw())).collect::<Vec<_>>(),
            vec![(1, [1; 32]), (40, [2; 32])]
        );
        // The format before rekeys: one hex line, version 1.
        let old = parse_ledger_secrets(&format!("{}\n", hex::encode([5u8; 32]))).unwrap();
        assert_eq!(old.latest().0, 1);
        for bad in [
            "",
            "zz",
            "x 0101",
            "3 abcd",
            "0 0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert!(parse_ledger_secrets(bad).is_none(), "{bad:?}");
        }
    }
}
