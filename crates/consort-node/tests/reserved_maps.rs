//! Applications cannot write the maps that belong to the node and governance (`public:ccf.*`): such a write is
//! refused with 403 and leaves no trace in the store or the ledger.

use consort_kv::Tx;
use consort_node::apps::{App, AppRequest, AppResponse, AuthPolicies, AuthPolicy, Caller, EndpointInfo, Mode};
use consort_node::config::NodeConfig;
use consort_node::identity::Identities;
use consort_node::node::Node;

/// A fresh single-node service (one member, in a temporary directory) running `app`.
fn service_with(app: Box<dyn App>) -> (tempfile::TempDir, std::sync::Arc<Node>) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = NodeConfig::default();
    cfg.storage.ledger_dir = dir.path().join("ledger");
    cfg.storage.snapshots_dir = dir.path().join("snapshots");
    cfg.storage.secrets_dir = dir.path().to_path_buf();
    let member = dir.path().join("member0_cert.pem");
    let key = consort_crypto::SigningKey::generate(consort_crypto::Curve::P384);
    let cert = consort_crypto::x509::self_signed(&key, &consort_crypto::CertParams::new("member0")).unwrap();
    std::fs::write(&member, cert.pem).unwrap();
    cfg.start.members = vec![consort_node::config::IdentityConfig {
        cert: member,
        encryption_public_key: None,
        data: None,
    }];
    let ids = Identities::generate(
        &consort_attest::VirtualPlatform::new([0; 32]),
        dir.path(),
        &["127.0.0.1".into()],
    )
    .unwrap();
    let svc = Node::new(consort_node::engine::Engine::open(cfg, ids).unwrap(), app);
    (dir, svc)
}

/// A hostile app that writes whatever map the request path names.
struct MapWriter;

impl App for MapWriter {
    fn endpoint(&self, _method: &str, _path: &str) -> Option<EndpointInfo> {
        Some(EndpointInfo {
            auth: AuthPolicies::only(AuthPolicy::NoAuth),
            mode: Mode::ReadWrite,
        })
    }
    fn handle(&self, req: &AppRequest<'_>, tx: &mut Tx<'static>) -> AppResponse {
        tx.put(req.path.trim_start_matches('/'), b"key", req.body);
        AppResponse::ok(serde_json::Value::Bool(true))
    }
    fn openapi_paths(&self) -> serde_json::Value {
        serde_json::json!({})
    }
}

#[test]
fn app_writes_to_reserved_maps_are_refused_and_leave_no_trace() {
    let (_dir, svc) = service_with(Box::new(MapWriter));

    for map in [
        "public:ccf.gov.users.certs",
        "public:ccf.gov.members.info",
        "public:ccf.internal.signatures",
    ] {
        let before = svc.engine().store().current_version();
        let path = format!("/{map}");
        let req = AppRequest {
            method: "POST",
            path: &path,
            query: "",
            headers: &[],
            body: b"evil",
            caller: &Caller::Anonymous,
            historical: None,
        };
        let (resp, _) = svc.execute_app(&req, false);
        assert_eq!(resp.status, 403, "{map}");
        assert_eq!(resp.body["error"]["code"], "ReservedMap");
        assert_eq!(
            svc.engine().store().current_version(),
            before,
            "a refused write must not commit"
        );
        assert!(!svc.engine().store().read_only().has(map, b"key"));
    }
    // An ordinary application map is writable.
    let req = AppRequest {
        method: "POST",
        path: "/public:app.data",
        query: "",
        headers: &[],
        body: b"ok",
        caller: &Caller::Anonymous,
        historical: None,
    };
    let (resp, txid) = svc.execute_app(&req, false);
    assert_eq!(resp.status, 200);
    assert_eq!(txid.seqno, svc.engine().store().current_version());
}

/// An app whose "read-only" endpoint writes anyway.
struct SneakyReader;

impl App for SneakyReader {
    fn endpoint(&self, _method: &str, _path: &str) -> Option<EndpointInfo> {
        Some(EndpointInfo {
            auth: AuthPolicies::only(AuthPolicy::NoAuth),
            mode: Mode::ReadOnly,
        })
    }
    fn handle(&self, _req: &AppRequest<'_>, tx: &mut Tx<'static>) -> AppResponse {
        tx.put("public:app.data", b"key", b"sneaky");
        AppResponse::ok(serde_json::Value::Bool(true))
    }
    fn openapi_paths(&self) -> serde_json::Value {
        serde_json::json!({})
    }
}

#[test]
fn a_read_only_endpoint_cannot_write_around_consensus() {
    let (_dir, svc) = service_with(Box::new(SneakyReader));
    let before = svc.engine().store().current_version();
    let req = AppRequest {
        method: "GET",
        path: "/x",
        query: "",
        headers: &[],
        body: b"",
        caller: &Caller::Anonymous,
        historical: None,
    };
    let (resp, _) = svc.execute_app(&req, true);
    assert_eq!(resp.status, 500);
    assert_eq!(svc.engine().store().current_version(), before);
    assert!(!svc.engine().store().read_only().has("public:app.data", b"key"));
}
