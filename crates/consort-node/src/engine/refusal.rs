//! Why a node refuses to start from what it found on disk: a typed reason (naming the files or directories an
//! operator must look at) instead of a message, shared by the launcher ([`crate::NodeError::Refused`]) and the
//! engine ([`super::EngineError::Refused`]).

use super::PEERS_FILE;
use crate::identity::NotANodeId;
use consort_consensus::NodeId;
use consort_crypto::CryptoError;
use std::path::PathBuf;

/// The node's secrets and ledger directories, named in a refusal so the operator knows where to look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDirs {
    /// `storage.secrets_dir`.
    pub secrets: PathBuf,
    /// `storage.ledger_dir`.
    pub ledger: PathBuf,
}

impl std::fmt::Display for NodeDirs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "secrets in {}, ledger in {}",
            self.secrets.display(),
            self.ledger.display()
        )
    }
}

/// Why the node must not start (see [`super::Start`]); each says what to change.
#[derive(Debug, thiserror::Error)]
pub enum StartRefusal {
    /// A join record without an identity: a join was interrupted before it saved the identity.
    #[error(
        "{} holds a join record but no identity (a join was interrupted): run `join` again, not `start`",
        .secrets_dir.display()
    )]
    InterruptedJoin {
        /// The secrets directory.
        secrets_dir: PathBuf,
    },
    /// `recover` on a node that has an identity but never recovered: it would replace a running service's node.
    #[error(
        "{} holds the identity of a node that did not recover a service: `recover` needs an empty secrets directory",
        .secrets_dir.display()
    )]
    RecoverOverIdentity {
        /// The secrets directory.
        secrets_dir: PathBuf,
    },
    /// A ledger without an identity: starting would found a new service over another's ledger.
    #[error(
        "{} holds a ledger but {} holds no identity: refusing to start a new service over it",
        .ledger_dir.display(), .secrets_dir.display()
    )]
    LedgerWithoutIdentity {
        /// The ledger directory.
        ledger_dir: PathBuf,
        /// The secrets directory.
        secrets_dir: PathBuf,
    },
    /// The peers file names a node whose certificate the service did not endorse for that node id.
    #[error("{PEERS_FILE} names node {node_id} with a certificate the service did not endorse for it")]
    UnendorsedPeer {
        /// The node id as the file names it.
        node_id: String,
        /// What is wrong with the certificate.
        #[source]
        cause: PeerCertFault,
    },
    /// The join record puts this (joined) node in the service's first membership.
    #[error("the join record names this node in the service's first membership, which no joiner is in ({dirs})")]
    JoinerInFirstMembership {
        /// Where the node's files are.
        dirs: NodeDirs,
    },
    /// Genesis over a ledger or Raft state.
    #[error("genesis refused: the node already holds a ledger or Raft state ({dirs})")]
    GenesisOverState {
        /// Where the node's files are.
        dirs: NodeDirs,
    },
    /// Started as a joined node without a join record.
    #[error("started as joined but holds no join record ({dirs})")]
    JoinedWithoutRecord {
        /// Where the node's files are.
        dirs: NodeDirs,
    },
    /// An identity whose ledger, Raft state and snapshot are gone: it may have voted and acknowledged entries it
    /// no longer has.
    #[error(
        "this node holds an identity but its ledger, Raft state and snapshot are gone: it may have voted and \
         acknowledged entries it no longer has, so it refuses to start (start a new node and join it; if it \
         crashed while it started a new service, before writing anything, start that service afresh) ({dirs})"
    )]
    StateGone {
        /// Where the node's files are.
        dirs: NodeDirs,
    },
    /// The Raft state file is gone while the ledger holds entries.
    #[error(
        "{} is missing but the ledger in {} holds entries: this node may have voted or acknowledged entries \
         that its Raft state no longer records, so it refuses to start (restore the file, or start a new node \
         and join it)",
        .hard_state.display(), .ledger_dir.display()
    )]
    HardStateMissing {
        /// The Raft state file.
        hard_state: PathBuf,
        /// The ledger directory.
        ledger_dir: PathBuf,
    },
}

/// Why a certificate in the peers file is not one the service endorsed for the node id it is saved under.
#[derive(Debug, thiserror::Error)]
pub enum PeerCertFault {
    /// The certificate does not parse.
    #[error("the certificate does not parse: {0}")]
    Unparsable(#[source] CryptoError),
    /// The certificate is not signed by the service key.
    #[error("the certificate is not signed by the service key: {0}")]
    NotEndorsed(#[source] CryptoError),
    /// The certificate is for another key than the node id names.
    #[error("the certificate is for the key of node {cert_node}")]
    OtherKey {
        /// The node id of the certificate's key.
        cert_node: String,
    },
    /// The file's key is not a node id.
    #[error("{0}")]
    NotANodeId(#[source] NotANodeId),
}

/// The node id `node_id` (as the peers file names it) if `cert` is a certificate the service key signed for the
/// key that node id names.
pub(super) fn endorsed_peer(
    node_id: &str,
    cert: &str,
    service_key: &consort_crypto::VerifyingKey,
) -> Result<NodeId, PeerCertFault> {
    let parsed = consort_crypto::ParsedCert::from_pem(cert).map_err(PeerCertFault::Unparsable)?;
    parsed
        .verify_signed_by(service_key)
        .map_err(PeerCertFault::NotEndorsed)?;
    let cert_node = parsed.key_id();
    if cert_node != node_id {
        return Err(PeerCertFault::OtherKey { cert_node });
    }
    // Endorsed for the key its node id names, so a well-formed node id.
    crate::identity::parse_node_id(node_id).map_err(PeerCertFault::NotANodeId)
}

#[cfg(test)]
mod tests {
    use super::*;
    use consort_crypto::x509::{self, CertParams};
    use consort_crypto::{Curve, SigningKey};
    use std::error::Error as _;

    fn dirs() -> NodeDirs {
        NodeDirs {
            secrets: "/n/secrets".into(),
            ledger: "/n/ledger".into(),
        }
    }

    /// The texts operators and tests read are the ones the refusals had as messages.
    #[test]
    fn refusals_say_what_they_said_as_text() {
        let cases = [
            (
                StartRefusal::GenesisOverState { dirs: dirs() },
                "genesis refused: the node already holds a ledger or Raft state (secrets in /n/secrets, ledger in \
                 /n/ledger)",
            ),
            (
                StartRefusal::JoinedWithoutRecord { dirs: dirs() },
                "started as joined but holds no join record (secrets in /n/secrets, ledger in /n/ledger)",
            ),
            (
                StartRefusal::InterruptedJoin {
                    secrets_dir: "/n/secrets".into(),
                },
                "/n/secrets holds a join record but no identity (a join was interrupted): run `join` again, not \
                 `start`",
            ),
            (
                StartRefusal::LedgerWithoutIdentity {
                    ledger_dir: "/n/ledger".into(),
                    secrets_dir: "/n/secrets".into(),
                },
                "/n/ledger holds a ledger but /n/secrets holds no identity: refusing to start a new service over it",
            ),
        ];
        for (refusal, text) in cases {
            assert_eq!(refusal.to_string(), text);
        }
        let engine = super::super::EngineError::Refused(StartRefusal::JoinedWithoutRecord { dirs: dirs() });
        assert!(
            engine.to_string().starts_with("refusing to start: started as joined"),
            "{engine}"
        );
        assert!(engine.source().is_some_and(|s| s.is::<StartRefusal>()));
    }

    fn service() -> (SigningKey, Vec<u8>) {
        let key = SigningKey::generate(Curve::P384);
        let cert = x509::self_signed(&key, &CertParams::new("CCF Service")).unwrap();
        (key, cert.der)
    }

    fn node_cert(service: &(SigningKey, Vec<u8>)) -> (String, String) {
        let key = SigningKey::generate(Curve::P384);
        let cert = x509::issue(
            &key.verifying_key(),
            &CertParams::new("CCF Node"),
            &service.0,
            &service.1,
        )
        .unwrap();
        (consort_crypto::key_id(&key.verifying_key().to_spki_der()), cert.pem)
    }

    #[test]
    fn an_endorsed_peer_gives_its_node_id() {
        let service = service();
        let (id, pem) = node_cert(&service);
        let node = endorsed_peer(&id, &pem, &service.0.verifying_key()).unwrap();
        assert_eq!(node.to_string(), id);
    }

    #[test]
    fn an_unendorsed_peer_keeps_why_in_its_source_chain() {
        let (service, other) = (service(), service());
        let (id, pem) = node_cert(&other);
        let fault = endorsed_peer(&id, &pem, &service.0.verifying_key()).unwrap_err();
        assert!(matches!(fault, PeerCertFault::NotEndorsed(_)), "{fault:?}");
        let refusal = StartRefusal::UnendorsedPeer {
            node_id: id.clone(),
            cause: fault,
        };
        assert_eq!(
            refusal.to_string(),
            format!("peers.json names node {id} with a certificate the service did not endorse for it")
        );
        let cause = refusal.source().expect("the fault is kept");
        assert!(cause.source().is_some_and(|c| c.is::<CryptoError>()), "{cause:?}");

        let (second, _) = node_cert(&service);
        let (_, pem) = node_cert(&service);
        let fault = endorsed_peer(&second, &pem, &service.0.verifying_key()).unwrap_err();
        assert!(matches!(fault, PeerCertFault::OtherKey { .. }), "{fault:?}");
        let fault = endorsed_peer(&second, "not a certificate", &service.0.verifying_key()).unwrap_err();
        assert!(matches!(fault, PeerCertFault::Unparsable(_)), "{fault:?}");
    }
}
