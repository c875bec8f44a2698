//! JWT authentication end to end: a local OpenID-style HTTPS identity provider (its own CA, 127.0.0.1, a free
//! port), a two-node service whose member0 sets a CA bundle and the issuer with `auto_refresh` by proposal, tokens
//! signed by key A accepted on the primary and on the backup (writes forwarded), then the provider's JWKS rotated
//! to key B: after the primary's refresh B's tokens are accepted and A's refused, on both nodes. Also the
//! `/app/multi_auth` demo telling apart the policy that authenticated each caller.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::*;
use consort_crypto::x509::{self, CertParams};
use consort_crypto::{jose, Curve, SigningKey};
use consort_node::net::client::{Connection, Protocol, Reply};
use http_body_util::Full;
use hyper::body::Bytes;
use serde_json::{json, Value};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Bound on every wait in this test.
const WAIT: Duration = Duration::from_secs(60);

/// The identity provider: serves its OpenID configuration and the JWKS currently in `jwks`.
struct Provider {
    issuer: String,
    ca_pem: String,
    jwks: Arc<Mutex<Value>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start_provider() -> Provider {
    let ca_key = SigningKey::generate(Curve::P256);
    let mut ca_params = CertParams::new("test identity provider CA");
    ca_params.is_ca = true;
    let ca = x509::self_signed(&ca_key, &ca_params).unwrap();
    let server_key = SigningKey::generate(Curve::P256);
    let mut params = CertParams::new("127.0.0.1");
    params.subject_alt_names = vec!["127.0.0.1".into()];
    let cert = x509::issue(&server_key.verifying_key(), &params, &ca_key, &ca.der).unwrap();
    let tls = consort_node::net::tls::server_config(vec![cert.der], &server_key).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("https://{}", listener.local_addr().unwrap());
    let jwks = Arc::new(Mutex::new(json!({"keys": []})));
    let (jwks2, issuer2) = (jwks.clone(), issuer.clone());
    let task = tokio::spawn(async move {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, jwks, issuer) = (acceptor.clone(), jwks2.clone(), issuer2.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else { return };
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let body = match req.uri().path() {
                        "/.well-known/openid-configuration" => {
                            json!({"issuer": issuer, "jwks_uri": format!("{issuer}/keys")})
                        }
                        "/keys" => jwks.lock().unwrap().clone(),
                        _ => json!({}),
                    };
                    async move {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(
                            body.to_string(),
                        ))))
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    Provider {
        issuer,
        ca_pem: ca.pem,
        jwks,
        task,
    }
}

/// A token signing key with its kid: RSA (RS256) or EC P-256 (ES256).
enum TokenKey {
    Rsa {
        kid: String,
        private: String,
        public: String,
    },
    Ec {
        kid: String,
        key: SigningKey,
    },
}

impl TokenKey {
    fn jwk(&self) -> Value {
        let enc = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        match self {
            TokenKey::Rsa { kid, public, .. } => {
                let (n, e) = jose::rsa_components(public).unwrap();
                json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": enc(&n), "e": enc(&e)})
            }
            TokenKey::Ec { kid, key } => {
                let (x, y) = jose::ec_coordinates(&key.verifying_key());
                json!({"kty": "EC", "kid": kid, "crv": "P-256", "x": enc(&x), "y": enc(&y)})
            }
        }
    }

    fn token(&self, issuer: &str, sub: &str) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let (alg, kid) = match self {
            TokenKey::Rsa { kid, .. } => ("RS256", kid),
            TokenKey::Ec { kid, .. } => ("ES256", kid),
        };
        let enc = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let input = format!(
            "{}.{}",
            enc(json!({"alg": alg, "kid": kid, "typ": "JWT"})),
            enc(json!({"iss": issuer, "sub": sub, "exp": now + 600, "nbf": now - 10}))
        );
        let sig = match self {
            TokenKey::Rsa { private, .. } => jose::sign_rs256(private, input.as_bytes()).unwrap(),
            TokenKey::Ec { key, .. } => key.sign_raw(input.as_bytes(), consort_crypto::HashAlg::Sha256),
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

/// Runs `consort gov` as member0 of the service at `address`: proposes `actions` and votes for them.
fn pass_proposal(dir: &std::path::Path, address: &str, actions: Value) {
    let file = dir.join(format!(
        "proposal_{}.json",
        hex::encode(consort_crypto::random_bytes(4))
    ));
    std::fs::write(&file, json!({ "actions": actions }).to_string()).unwrap();
    let gov = |args: &[&str]| {
        let mut cmd = std::process::Command::new(consort_bin());
        cmd.args(["gov", "--address", address])
            .arg("--service-cert")
            .arg(dir.join("service_cert.pem"))
            .arg("--cert")
            .arg(dir.join("member0_cert.pem"))
            .arg("--key")
            .arg(dir.join("member0_privk.pem"))
            .args(args);
        let out = run_bounded(cmd, Duration::from_secs(30));
        assert!(
            out.status.success(),
            "consort gov {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let proposed = gov(&["propose", file.to_str().unwrap()]);
    if proposed["proposalState"] != "Accepted" {
        let id = proposed["proposalId"].as_str().unwrap().to_string();
        let voted = gov(&["vote", &id, "--accept"]);
        assert_eq!(voted["proposalState"], "Accepted", "{voted}");
    }
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn call(conn: &Connection, method: &str, path: &str, token: &str) -> Reply {
    let auth = format!("Bearer {token}");
    conn.request_with_headers(method, path, &[("authorization", &auth)], None)
        .await
        .unwrap()
}

/// The joiner process, killed on drop.
struct Joiner(Option<Child>);

impl Drop for Joiner {
    fn drop(&mut self) {
        kill_child(&mut self.0);
    }
}

/// Starts node 1 joining the open service of `node0` and has member0 trust it; returns it once it serves.
async fn join_backup(root: &std::path::Path, node0: &TestNode) -> (TestNode, Joiner) {
    let dir1 = root.join("n1");
    let service_cert = node0.dir.join("service_cert.pem");
    let target = node0.address.clone();
    let mut node1 = TestNode::configure(&dir1, |cfg| {
        cfg.network.node_to_node_address = Some(format!("127.0.0.1:{}", free_port()));
        cfg.join.target = Some(target);
        cfg.join.service_cert = Some(service_cert.clone());
        cfg.jwt.key_refresh_interval_s = 1;
    });
    std::fs::copy(&service_cert, dir1.join("service_cert.pem")).unwrap();
    let joiner = Joiner(Some(spawn_node(&dir1, "join", &node1.config)));
    let id_file = dir1.join("joining_node_id");
    let mut id = String::new();
    wait_for("the joiner to name itself", async || {
        id = std::fs::read_to_string(&id_file).unwrap_or_default();
        !id.is_empty()
    })
    .await;
    let anon = node0.connect(false).await;
    wait_for("the joiner to be Pending", async || {
        let nodes = anon.get("/node/network/nodes").await.unwrap().json().unwrap();
        nodes["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["node_id"] == id.as_str())
    })
    .await;
    pass_proposal(
        &node0.dir,
        &node0.address,
        json!([{"name": "transition_node_to_trusted", "args": {"node_id": id}}]),
    );
    // node1's own user0 is not a user of this service; tests call it with node0's user0 or anonymously.
    node1.user_cert = node0.user_cert.clone();
    node1.user_key = node0.user_key.clone();
    wait_for("the backup to serve", async || {
        let Ok(tls) = consort_node::net::tls::client_config(&node0.service_cert(), None) else {
            return false;
        };
        let Ok(c) = Connection::connect(&node1.address, tls, Protocol::Http1).await else {
            return false;
        };
        c.get("/node/network").await.is_ok_and(|r| r.status == 200)
    })
    .await;
    (node1, joiner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jwt_issuer_keys_refresh_and_rotate_on_primary_and_backup() {
    let provider = start_provider().await;
    let (private, public) = consort_crypto::rsa_keys::generate_pem(2048).unwrap();
    let key_a = TokenKey::Rsa {
        kid: "key-a".into(),
        private,
        public,
    };
    let key_b = TokenKey::Ec {
        kid: "key-b".into(),
        key: SigningKey::generate(Curve::P256),
    };
    *provider.jwks.lock().unwrap() = json!({"keys": [key_a.jwk()]});

    let tmp = tempfile::tempdir().unwrap();
    let mut node0 = TestNode::configure(&tmp.path().join("n0"), |cfg| {
        cfg.network.node_to_node_address = Some(format!("127.0.0.1:{}", free_port()));
        cfg.jwt.key_refresh_interval_s = 1;
    });
    node0.start().await;
    let (node1, _joiner) = join_backup(tmp.path(), &node0).await;
    let (c0, c1) = (node0.connect(false).await, node1.connect(false).await);

    // Before governance names the issuer, its tokens are unknown.
    let token_a = key_a.token(&provider.issuer, "alice");
    let r = call(&c0, "GET", "/app/jwt", &token_a).await;
    assert_eq!(r.status, 401);
    assert!(String::from_utf8_lossy(&r.body).contains("unknown kid 'key-a'"));

    pass_proposal(
        &node0.dir,
        &node0.address,
        json!([
            {"name": "set_ca_cert_bundle", "args": {"name": "idp", "cert_bundle": provider.ca_pem}},
            {"name": "set_jwt_issuer", "args": {"issuer": provider.issuer, "auto_refresh": true, "ca_cert_bundle_name": "idp"}},
        ]),
    );
    wait_for("key A to be fetched", async || {
        call(&c0, "GET", "/app/jwt", &token_a).await.status == 200
    })
    .await;
    let r = call(&c0, "GET", "/app/jwt", &token_a).await;
    let v = r.json().unwrap();
    assert_eq!(v["issuer"], provider.issuer.as_str());
    assert_eq!(v["claims"]["sub"], "alice");
    // On the backup: a read there, and a write forwarded to the primary (which authenticates it again).
    wait_for("key A on the backup", async || {
        call(&c1, "GET", "/app/jwt", &token_a).await.status == 200
    })
    .await;
    let r = call(&c1, "POST", "/app/jwt", &token_a).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json().unwrap()["claims"]["sub"], "alice");
    // A token whose signature is not key A's is refused on both.
    // Key B's signature under a header naming key A: refused on both nodes.
    let forged = {
        let signed_by_b = key_b.token(&provider.issuer, "mallory");
        let parts: Vec<&str> = signed_by_b.split('.').collect();
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "kid": "key-a"}).to_string());
        format!("{header}.{}.{}", parts[1], parts[2])
    };
    for c in [&c0, &c1] {
        let r = call(c, "POST", "/app/jwt", &forged).await;
        assert_eq!(r.status, 401);
        assert!(String::from_utf8_lossy(&r.body).contains("bad signature"));
    }

    // The provider rotates to key B.
    *provider.jwks.lock().unwrap() = json!({"keys": [key_b.jwk()]});
    let token_b = key_b.token(&provider.issuer, "bob");
    wait_for("key B to be fetched", async || {
        call(&c0, "GET", "/app/jwt", &token_b).await.status == 200
    })
    .await;
    for (name, c) in [("primary", &c0), ("backup", &c1)] {
        wait_for("key A to be gone", async || {
            call(c, "GET", "/app/jwt", &token_a).await.status == 401
        })
        .await;
        let r = call(c, "POST", "/app/jwt", &token_a).await;
        assert_eq!(r.status, 401, "{name}");
        assert!(
            String::from_utf8_lossy(&r.body).contains("unknown kid 'key-a'"),
            "{name}"
        );
        let r = call(c, "POST", "/app/jwt", &token_b).await;
        assert_eq!(r.status, 200, "{name}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json().unwrap()["claims"]["sub"], "bob");
    }
    let metrics = String::from_utf8_lossy(&c0.get("/node/metrics").await.unwrap().body).into_owned();
    let refreshes = metrics
        .lines()
        .find(|l| l.starts_with("consort_jwt_key_refreshes_total"))
        .and_then(|l| l.split_whitespace().last()?.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(refreshes >= 2, "{metrics}");
    println!("jwt key refresh rounds counted on the primary: {refreshes}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_auth_names_the_policy_that_authenticated_each_caller() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = TestNode::configure(tmp.path(), |_| {});
    node.start().await;
    let (anon, user) = (node.connect(false).await, node.connect(true).await);
    let r = anon.get("/app/multi_auth").await.unwrap();
    assert_eq!(r.json().unwrap()["policy"], "no_auth");
    let user_cert = std::fs::read_to_string(&node.user_cert).unwrap();
    let user_id = consort_crypto::ParsedCert::from_pem(&user_cert).unwrap().cert_id();
    let r = user.get("/app/multi_auth").await.unwrap();
    assert_eq!(r.json().unwrap()["policy"], "user_cert");
    assert_eq!(r.json().unwrap()["caller"]["id"], user_id.as_str());

    // user0's COSE Sign1 body over an anonymous connection.
    let key = SigningKey::from_pem(&std::fs::read_to_string(&node.user_key).unwrap()).unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let body = consort_node::auth::cose::sign_user_request(&key, &user_id, b"hello", Some("greeting"), now);
    let r = anon
        .request_typed("POST", "/app/multi_auth", Some(("application/cose", body)))
        .await
        .unwrap();
    let v = r.json().unwrap();
    assert_eq!(v["policy"], "user_cose_sign1", "{v}");
    assert_eq!(v["caller"]["id"], user_id.as_str());
    assert_eq!(v["caller"]["content"], "hello");
    assert_eq!(v["caller"]["protected"]["ccf.msg.type"], "greeting");
    // A stranger's signature falls through to no_auth here, and is refused where only JWTs are accepted.
    let stranger = SigningKey::generate(Curve::P256);
    let body = consort_node::auth::cose::sign_user_request(&stranger, &user_id, b"hello", None, now);
    let r = anon
        .request_typed("POST", "/app/multi_auth", Some(("application/cose", body)))
        .await
        .unwrap();
    assert_eq!(r.json().unwrap()["policy"], "no_auth");
    let r = user.get("/app/jwt").await.unwrap();
    assert_eq!(r.status, 401);
    assert!(String::from_utf8_lossy(&r.body).contains("missing Authorization header"));
}
