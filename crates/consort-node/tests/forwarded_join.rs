//! A join forwarded over the node-to-node channel is believed only from a Trusted node that vouches for the key
//! the request names: a frame from any other node, or one whose vouched caller is another key, is refused and
//! records nothing in the nodes table.

use consort_attest::Platform;
use consort_crypto::{Curve, SigningKey};
use consort_node::api::app::execute_forwarded;
use consort_node::config::NodeConfig;
use consort_node::engine::{node_records, Engine};
use consort_node::identity::Identities;
use consort_node::net::forwarding::ForwardedRequest;
use consort_node::node::Node;
use std::sync::Arc;

/// A fresh single-node service (one member, open at genesis) in a temporary directory.
fn service() -> (tempfile::TempDir, Arc<Node>) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = NodeConfig::default();
    cfg.storage.ledger_dir = dir.path().join("ledger");
    cfg.storage.snapshots_dir = dir.path().join("snapshots");
    cfg.storage.secrets_dir = dir.path().to_path_buf();
    let member = dir.path().join("member0_cert.pem");
    let key = SigningKey::generate(Curve::P384);
    let cert = consort_crypto::x509::self_signed(&key, &consort_crypto::CertParams::new("member0")).unwrap();
    std::fs::write(&member, cert.pem).unwrap();
    cfg.start.members = vec![consort_node::config::IdentityConfig {
        cert: member,
        encryption_public_key: None,
        data: None,
    }];
    cfg.start.open_at_genesis = true;
    let ids = Identities::generate(
        &consort_attest::VirtualPlatform::new([0; 32]),
        dir.path(),
        &["127.0.0.1".into()],
    )
    .unwrap();
    let node = Node::new(
        Engine::open(cfg, ids).unwrap(),
        Box::new(consort_node::apps::Apps::builtin()),
    );
    (dir, node)
}

/// One RSA encryption public key for the test joiners.
fn encryption_key() -> &'static str {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(|| consort_crypto::rsa_keys::generate_pem(2048).unwrap().1)
}

/// A forwarded join for `key`, with virtual evidence for it, vouched for as `caller`.
fn forwarded_join(key: &SigningKey, caller: Option<&str>) -> ForwardedRequest {
    let evidence = consort_attest::VirtualPlatform::new([1u8; 32])
        .evidence_for(&key.verifying_key().to_spki_der())
        .unwrap();
    let body = serde_json::json!({
        "public_key": key.verifying_key().to_pem(),
        "node_to_node_address": "127.0.0.1:1",
        "rpc_address": "127.0.0.1:2",
        "quote_info": evidence.to_json_value(),
        "encryption_public_key": encryption_key(),
    });
    ForwardedRequest {
        id: 7,
        method: "POST".into(),
        target: "/node/join".into(),
        caller: caller.map(str::to_string),
        content_type: "application/json".into(),
        body: body.to_string().into_bytes(),
        headers: vec![],
    }
}

#[test]
fn forwarded_joins_from_untrusted_nodes_or_for_another_key_are_refused_and_record_nothing() {
    let (_dir, node) = service();
    let engine = node.engine();
    let key = SigningKey::generate(Curve::P384);
    let joiner_id: consort_node::engine::NodeId = consort_crypto::key_id(&key.verifying_key().to_spki_der())
        .parse()
        .unwrap();
    let before = engine.store().current_version();

    // From a node the nodes table does not list as Trusted (a stranger, or a Pending or Retired node).
    let stranger: consort_node::engine::NodeId = "ab".repeat(32).parse().unwrap();
    let answer = execute_forwarded(&node, &stranger, &forwarded_join(&key, Some(joiner_id.as_str())));
    assert_eq!(answer.status, 403, "{}", String::from_utf8_lossy(&answer.body));

    // From a Trusted node (this one), but vouching for another key than the request names, or for none.
    let own = engine.identities().node_id.clone();
    let other = consort_crypto::key_id(&SigningKey::generate(Curve::P384).verifying_key().to_spki_der());
    for caller in [Some(other.as_str()), None] {
        let answer = execute_forwarded(&node, &own, &forwarded_join(&key, caller));
        assert_eq!(answer.status, 401, "{}", String::from_utf8_lossy(&answer.body));
        let text = String::from_utf8_lossy(&answer.body);
        assert!(
            !text.contains("service_key") && !text.contains("ledger_secret"),
            "{text}"
        );
    }

    assert_eq!(
        engine.store().current_version(),
        before,
        "a refused join wrote something"
    );
    assert!(node_records(engine).iter().all(|r| r.node_id != joiner_id));

    // The same join vouched for by a Trusted node is judged on its merits: here its code is not in the policy.
    let answer = execute_forwarded(&node, &own, &forwarded_join(&key, Some(joiner_id.as_str())));
    assert_eq!(answer.status, 403, "{}", String::from_utf8_lossy(&answer.body));
    assert!(String::from_utf8_lossy(&answer.body).contains("JoinPolicyRefused"));
    assert!(node_records(engine).iter().all(|r| r.node_id != joiner_id));
}
