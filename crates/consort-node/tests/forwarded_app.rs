//! App requests forwarded over the node-to-node channel, as an attacker would send them: the client certificate id
//! a forwarding node vouches for is believed only from a Trusted node, and the primary authenticates the request
//! again with the endpoint's policies (a bearer token it cannot verify is refused); refusals write nothing.

use consort_crypto::{Curve, SigningKey};
use consort_node::api::app::execute_forwarded;
use consort_node::config::{IdentityConfig, NodeConfig};
use consort_node::engine::{Engine, NodeId};
use consort_node::identity::Identities;
use consort_node::net::forwarding::ForwardedRequest;
use consort_node::node::Node;
use std::sync::Arc;

/// A single-node service open at genesis with one member and one user; returns the user's certificate id.
fn service() -> (tempfile::TempDir, Arc<Node>, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = NodeConfig::default();
    cfg.storage.ledger_dir = dir.path().join("ledger");
    cfg.storage.snapshots_dir = dir.path().join("snapshots");
    cfg.storage.secrets_dir = dir.path().to_path_buf();
    let identity = |name: &str| {
        let key = SigningKey::generate(Curve::P384);
        let cert = consort_crypto::x509::self_signed(&key, &consort_crypto::CertParams::new(name)).unwrap();
        let path = dir.path().join(format!("{name}_cert.pem"));
        std::fs::write(&path, &cert.pem).unwrap();
        let id = consort_crypto::ParsedCert::from_pem(&cert.pem).unwrap().cert_id();
        (
            IdentityConfig {
                cert: path,
                encryption_public_key: None,
                data: None,
            },
            id,
        )
    };
    let (member, _) = identity("member0");
    let (user, user_id) = identity("user0");
    cfg.start.members = vec![member];
    cfg.start.users = vec![user];
    cfg.start.open_at_genesis = true;
    let ids = Identities::generate(
        &consort_attest::VirtualPlatform::new([0; 32]),
        dir.path(),
        &["127.0.0.1".into()],
    )
    .unwrap();
    let engine = Engine::open(cfg, ids).unwrap();
    let node = Node::new(engine, Box::new(consort_node::apps::Apps::builtin()));
    (dir, node, user_id)
}

fn write(caller: Option<&str>, headers: Vec<(String, String)>, target: &str) -> ForwardedRequest {
    ForwardedRequest {
        id: 1,
        method: "POST".into(),
        target: target.into(),
        caller: caller.map(str::to_string),
        content_type: "application/json".into(),
        body: br#"{"id": 5, "msg": "forwarded"}"#.to_vec(),
        headers,
    }
}

#[test]
fn a_forwarded_caller_is_believed_only_from_a_trusted_node_and_authenticated_again() {
    let (_dir, node, user) = service();
    let engine = node.engine();
    let before = engine.store().current_version();

    // A node the nodes table does not list as Trusted (an outsider, a Pending or Retired node) names a real user.
    let stranger: NodeId = "cd".repeat(32).parse().unwrap();
    let answer = execute_forwarded(&node, &stranger, &write(Some(&user), vec![], "/app/log/private"));
    assert_eq!(answer.status, 401, "{}", String::from_utf8_lossy(&answer.body));
    // A Trusted node vouching for a certificate that is no user's.
    let own = engine.identities().node_id.clone();
    let answer = execute_forwarded(&node, &own, &write(Some(&"ef".repeat(32)), vec![], "/app/log/private"));
    assert_eq!(answer.status, 401, "{}", String::from_utf8_lossy(&answer.body));
    // A JWT-only endpoint with a bearer token no governed issuer signed.
    let forged = vec![("authorization".to_string(), "Bearer e30.e30.c2ln".to_string())];
    let answer = execute_forwarded(&node, &own, &write(Some(&user), forged, "/app/jwt"));
    assert_eq!(answer.status, 401, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(
        engine.store().current_version(),
        before,
        "a refused forwarded request wrote something"
    );

    // The same write vouched for by a Trusted node for a registered user is executed.
    let answer = execute_forwarded(&node, &own, &write(Some(&user), vec![], "/app/log/private"));
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    assert!(engine.store().current_version() > before);
}
