//! A constitution written the way CCF's default constitution is (tables written by the JavaScript, effects through
//! `ccf.refreshAppBytecodeCache`, `ccf.setJwtPublicSigningKeys`, `ccf.removeJwtPublicSigningKeys`,
//! `ccf.network.*`, `ccf.crypto.digest`, `ccf.node.*`) runs on Consort's host, and the host's own checks refuse
//! bad JWKS even when the constitution does not check them.
//!
//! CCF's own constitution is not part of this repository. To run the same scenario against it:
//!
//! ```text
//! mkdir /tmp/ccf-constitution   # outside the repository; never commit these files
//! # put CCF 6's samples/constitutions/default/{actions,validate,resolve,apply}.js there
//! CCF_CONSTITUTION_DIR=/tmp/ccf-constitution cargo test -p consort-gov --test ccf_constitution -- --ignored
//! ```

mod common;

use std::cell::RefCell;

use common::*;
use consort_crypto::Curve;
use consort_gov::{tables, CertificateIssuer, GovEnv, HostAction};
use serde_json::{json, Value};

const FIXTURE: &str = include_str!("fixtures/ccf_style_constitution.js");
const NODE: &str = "aa00000000000000000000000000000000000000000000000000000000000001";
const CSR: &str = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n";
const ISSUER: &str = "https://127.0.0.1:4321";

/// Issues recognisable stand-in certificates and records what it was asked.
#[derive(Default)]
struct FakeIssuer {
    asked: RefCell<Vec<String>>,
}

impl CertificateIssuer for FakeIssuer {
    fn endorse_csr(&self, csr_pem: &str, valid_from: &str, days: u64) -> Result<String, String> {
        self.asked.borrow_mut().push(format!("endorse {valid_from} {days}"));
        assert_eq!(csr_pem, CSR);
        Ok(format!("ENDORSED {valid_from} {days}"))
    }
    fn renew_service_certificate(&self, valid_from: &str, days: u64) -> Result<String, String> {
        self.asked.borrow_mut().push(format!("renew {valid_from} {days}"));
        Ok(format!("RENEWED {valid_from} {days}"))
    }
}

fn with_node_and_service(c: &Consortium) {
    let mut tx = c.store.begin();
    let node = json!({"status": "Pending", "certificate_signing_request": CSR});
    tx.put(tables::NODES_INFO, NODE.as_bytes(), node.to_string().as_bytes());
    let service = json!({"cert": cert_pem("service"), "status": "Open"});
    tx.put(
        tables::SERVICE_INFO,
        &tables::SINGLETON_KEY,
        service.to_string().as_bytes(),
    );
    c.store.commit(tx, |_, _| ()).unwrap();
}

fn one(name: &str, args: Value) -> Value {
    json!([{ "name": name, "args": args }])
}

/// The scenario both constitutions run: members and users, a JS app, JWT issuers and keys, certificates from
/// the node, a digest comparison, node actions.
fn scenario(constitution: &str) {
    let c = Consortium::new(constitution);
    with_node_and_service(&c);

    let user = member("user");
    c.must_pass(
        "set_user",
        json!({"cert": user.cert_pem, "user_data": {"role": "reader"}}),
    );
    assert!(c.get(tables::USERS_CERTS, user.id.as_bytes()).is_some());
    c.must_pass("remove_user", json!({"user_id": user.id}));
    assert!(c.get(tables::USERS_CERTS, user.id.as_bytes()).is_none());
    let m1 = member("m1");
    c.must_pass("set_member", json!({"cert": m1.cert_pem}));
    assert!(c.get(tables::MEMBERS_ACKS, m1.id.as_bytes()).is_some());

    c.must_pass(
        "set_js_app",
        json!({"bundle": bundle(json!({"/records/{id}": {"get": endpoint("readonly")}}))}),
    );
    assert_eq!(c.entries(tables::MODULES)[0].0, b"/endpoints/all.js".to_vec());
    let (k, v) = c.entries(tables::ENDPOINTS).remove(0);
    assert_eq!(
        consort_gov::endpoint_from_key(&k),
        Some(("/records/{id}".into(), "GET".into()))
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&v).unwrap()["js_module"],
        "/endpoints/all.js"
    );

    jwt_steps(&c);
    certificate_steps(&c);

    let policy = "some security policy";
    let host_data = hex::encode(consort_crypto::sha256(policy.as_bytes()));
    c.must_pass(
        "add_snp_host_data",
        json!({"host_data": host_data, "security_policy": policy}),
    );
    assert!(c.get(tables::NODES_SNP_HOST_DATA, host_data.as_bytes()).is_some());
    let out = c.must_pass("trigger_snapshot", Value::Null);
    assert_eq!(out.actions, vec![HostAction::TriggerSnapshot]);
    let err = c.must_fail("trigger_acme_refresh", json!({}));
    assert!(err.to_string().contains("not supported by Consort"), "{err}");
}

fn jwt_steps(c: &Consortium) {
    let (ec, ec_pem) = ec_jwk(Curve::P256, "ec1");
    let (rsa, _) = rsa_jwk("rsa1");
    c.must_pass("set_jwt_issuer", json!({"issuer": ISSUER, "jwks": {"keys": [ec, rsa]}}));
    let issuer = consort_gov::jwt_issuer(&c.get(tables::JWT_ISSUERS, ISSUER.as_bytes()).unwrap()).unwrap();
    assert!(!issuer.auto_refresh);
    let row = c.get_json(tables::JWT_PUBLIC_SIGNING_KEYS_METADATA, b"ec1").unwrap();
    assert_eq!(row[0]["issuer"], ISSUER);
    assert!(same_pem(row[0]["public_key"].as_str().unwrap(), &ec_pem));
    assert!(c.get(tables::JWT_PUBLIC_SIGNING_KEYS_METADATA, b"rsa1").is_some());

    let (next, _) = ec_jwk(Curve::P384, "ec2");
    c.must_pass(
        "set_jwt_public_signing_keys",
        json!({"issuer": ISSUER, "jwks": {"keys": [next]}}),
    );
    let kids: Vec<Vec<u8>> = c
        .entries(tables::JWT_PUBLIC_SIGNING_KEYS_METADATA)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(kids, vec![b"ec2".to_vec()]);

    // A key whose point is not on its curve passes a type-only check, and the host refuses it.
    let (mut bad, _) = ec_jwk(Curve::P256, "bad");
    bad["y"] = bad["x"].clone();
    let err = c.must_fail(
        "set_jwt_public_signing_keys",
        json!({"issuer": ISSUER, "jwks": {"keys": [bad]}}),
    );
    assert!(err.to_string().contains("not a point"), "{err}");

    c.must_pass("remove_jwt_issuer", json!({"issuer": ISSUER}));
    assert!(c.entries(tables::JWT_PUBLIC_SIGNING_KEYS_METADATA).is_empty());
    assert!(c.entries(tables::JWT_ISSUERS).is_empty());
}

fn certificate_steps(c: &Consortium) {
    let trust = one(
        "transition_node_to_trusted",
        json!({"node_id": NODE, "valid_from": "20240101000000Z", "validity_period_days": 30}),
    );
    // Without a certificate issuer the proposal fails and the node stays Pending.
    let err = c.pass(trust.clone()).unwrap_err();
    assert!(err.to_string().contains("cannot issue certificates"), "{err}");
    assert_eq!(
        c.get_json(tables::NODES_INFO, NODE.as_bytes()).unwrap()["status"],
        "Pending"
    );

    let issuer = FakeIssuer::default();
    let env = GovEnv {
        certificates: Some(&issuer),
        ..GovEnv::default()
    };
    c.pass_with(trust, &env).unwrap();
    assert_eq!(
        c.get_json(tables::NODES_INFO, NODE.as_bytes()).unwrap()["status"],
        "Trusted"
    );
    assert_eq!(
        c.get_str(tables::NODES_ENDORSED_CERTIFICATES, NODE).unwrap(),
        "ENDORSED 20240101000000Z 30"
    );

    let renew = one(
        "set_service_certificate_validity",
        json!({"valid_from": "20240101000000Z", "validity_period_days": 7}),
    );
    c.pass_with(renew, &env).unwrap();
    let service = c.get_json(tables::SERVICE_INFO, &tables::SINGLETON_KEY).unwrap();
    assert_eq!(service["cert"], "RENEWED 20240101000000Z 7");
    assert_eq!(
        *issuer.asked.borrow(),
        vec!["endorse 20240101000000Z 30", "renew 20240101000000Z 7"]
    );
}

#[test]
fn a_ccf_style_constitution_runs_on_consorts_host() {
    scenario(FIXTURE);
}

/// CCF's own default constitution, from `$CCF_CONSTITUTION_DIR` (see the module comment).
#[test]
#[ignore = "needs CCF's constitution files in CCF_CONSTITUTION_DIR"]
fn ccfs_own_default_constitution_runs_on_consorts_host() {
    let dir = std::env::var("CCF_CONSTITUTION_DIR").expect("set CCF_CONSTITUTION_DIR");
    let constitution: Vec<String> = ["actions.js", "validate.js", "resolve.js", "apply.js"]
        .iter()
        .map(|f| std::fs::read_to_string(std::path::Path::new(&dir).join(f)).unwrap())
        .collect();
    let constitution = constitution.join("\n");
    scenario(&constitution);

    // CCF's own validation refuses a bundle naming a module it lacks, and writes nothing.
    let c = Consortium::new(&constitution);
    let mut e = endpoint("readonly");
    e["js_module"] = json!("missing.js");
    let err = c.must_fail("set_js_app", json!({"bundle": bundle(json!({"/x": {"get": e}}))}));
    assert!(err.to_string().contains("missing.js"), "{err}");
}
