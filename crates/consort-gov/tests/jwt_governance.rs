//! JWT issuers and signing keys under Consort's default constitution: `set_jwt_issuer` (with and without keys),
//! `set_jwt_public_signing_keys` and `remove_jwt_issuer` keep `public:ccf.gov.jwt.issuers` and
//! `public:ccf.gov.jwt.public_signing_keys_metadata` in the contract formats; bad key sets and unknown issuers
//! are refused and write nothing.

mod common;

use common::*;
use consort_crypto::Curve;
use consort_gov::{tables, DEFAULT_CONSTITUTION};
use serde_json::{json, Value};

const ISSUER: &str = "https://127.0.0.1:4321";
const OTHER: &str = "https://login.example.com";

fn keys_of(c: &Consortium, kid: &str) -> Option<Vec<Value>> {
    c.get_json(tables::JWT_PUBLIC_SIGNING_KEYS_METADATA, kid.as_bytes())
        .map(|v| v.as_array().unwrap().clone())
}

#[test]
fn set_jwt_issuer_with_keys_writes_the_issuer_and_every_key_as_pem() {
    let c = Consortium::new(DEFAULT_CONSTITUTION);
    let (rsa, rsa_pem) = rsa_jwk("rsa1");
    let (ec, ec_pem) = ec_jwk(Curve::P384, "ec1");
    let (x5c, x5c_pem) = x5c_jwk("cert1");
    c.must_pass(
        "set_jwt_issuer",
        json!({"issuer": ISSUER, "jwks": {"keys": [rsa, ec, x5c]}}),
    );
    assert_eq!(
        c.get_json(tables::JWT_ISSUERS, ISSUER.as_bytes()).unwrap(),
        json!({"auto_refresh": false, "ca_cert_bundle_name": null})
    );
    for (kid, pem) in [("rsa1", &rsa_pem), ("ec1", &ec_pem), ("cert1", &x5c_pem)] {
        let entries = keys_of(&c, kid).unwrap_or_else(|| panic!("no row for {kid}"));
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0]["issuer"], ISSUER);
        assert_eq!(entries[0]["constraint"], Value::Null);
        let stored = entries[0]["public_key"].as_str().unwrap();
        assert!(stored.starts_with("-----BEGIN PUBLIC KEY-----"), "{stored}");
        assert!(same_pem(stored, pem), "{kid}: {stored} is not {pem}");
    }
}

#[test]
fn keys_are_replaced_per_issuer_and_removed_with_it() {
    let c = Consortium::new(DEFAULT_CONSTITUTION);
    let (a, _) = ec_jwk(Curve::P256, "shared");
    let (b, _) = ec_jwk(Curve::P256, "old");
    c.must_pass("set_jwt_issuer", json!({"issuer": ISSUER, "jwks": {"keys": [a, b]}}));
    let (mut other, _) = ec_jwk(Curve::P256, "shared");
    other["issuer"] = json!("https://example.com"); // a constraint naming a parent domain is allowed
    c.must_pass("set_jwt_issuer", json!({"issuer": OTHER, "jwks": {"keys": [other]}}));
    let shared = keys_of(&c, "shared").unwrap();
    assert_eq!(shared.len(), 2, "one entry per issuer that published the kid");
    assert_eq!(shared[1]["issuer"], OTHER);
    assert_eq!(shared[1]["constraint"], "https://example.com");

    // The issuer's new set replaces its old one: "old" goes, "new" comes, the other issuer's entry stays.
    let (new, new_pem) = ec_jwk(Curve::P384, "new");
    c.must_pass(
        "set_jwt_public_signing_keys",
        json!({"issuer": ISSUER, "jwks": {"keys": [new]}}),
    );
    assert!(keys_of(&c, "old").is_none());
    assert!(same_pem(
        keys_of(&c, "new").unwrap()[0]["public_key"].as_str().unwrap(),
        &new_pem
    ));
    assert_eq!(keys_of(&c, "shared").unwrap().len(), 1);

    c.must_pass("remove_jwt_issuer", json!({"issuer": OTHER}));
    assert!(c.get(tables::JWT_ISSUERS, OTHER.as_bytes()).is_none());
    assert!(keys_of(&c, "shared").is_none(), "a kid no issuer publishes is removed");
    assert_eq!(keys_of(&c, "new").unwrap()[0]["issuer"], ISSUER);
    c.must_pass("remove_jwt_issuer", json!({"issuer": ISSUER}));
    assert!(c.entries(tables::JWT_PUBLIC_SIGNING_KEYS_METADATA).is_empty());
    assert!(c.entries(tables::JWT_ISSUERS).is_empty());
}

#[test]
fn auto_refresh_needs_an_https_issuer_and_a_known_ca_bundle() {
    let c = Consortium::new(DEFAULT_CONSTITUTION);
    let args = json!({"issuer": ISSUER, "auto_refresh": true, "ca_cert_bundle_name": "idp"});
    let err = c.must_fail("set_jwt_issuer", args.clone());
    assert!(err.to_string().contains("no CA certificate bundle"), "{err}");
    c.must_fail(
        "set_jwt_issuer",
        json!({"issuer": "http://insecure", "auto_refresh": true, "ca_cert_bundle_name": "idp"}),
    );
    c.must_fail("set_jwt_issuer", json!({"issuer": ISSUER, "auto_refresh": true}));
    c.must_pass(
        "set_ca_cert_bundle",
        json!({"name": "idp", "cert_bundle": cert_pem("ca")}),
    );
    c.must_pass("set_jwt_issuer", args);
    let row = c.get(tables::JWT_ISSUERS, ISSUER.as_bytes()).unwrap();
    assert_eq!(
        consort_gov::jwt_issuer(&row).unwrap(),
        consort_gov::JwtIssuer {
            auto_refresh: true,
            ca_cert_bundle_name: Some("idp".into())
        }
    );
}

#[test]
fn bad_key_sets_and_unknown_issuers_are_refused_and_write_nothing() {
    let c = Consortium::new(DEFAULT_CONSTITUTION);
    let (good, _) = ec_jwk(Curve::P256, "good");
    c.must_pass(
        "set_jwt_issuer",
        json!({"issuer": ISSUER, "jwks": {"keys": [good.clone()]}}),
    );

    let (ec, _) = ec_jwk(Curve::P256, "k");
    let mut off_curve = ec.clone();
    off_curve["y"] = ec["x"].clone();
    let mut wrong_crv = ec.clone();
    wrong_crv["crv"] = json!("secp256k1");
    let mut no_kid = ec.clone();
    no_kid.as_object_mut().unwrap().remove("kid");
    let mut foreign = ec.clone();
    foreign["issuer"] = json!("https://evil.example.net");
    let small_rsa = json!({"kty": "RSA", "kid": "k", "n": "AQAB", "e": "AQAB"});
    let cases = [
        (json!({"keys": [off_curve]}), "not a point"),
        (json!({"keys": [wrong_crv]}), "not supported"),
        (json!({"keys": [no_kid]}), "has no kid"),
        (json!({"keys": [foreign]}), "issuer constraint"),
        (json!({"keys": [small_rsa]}), "RSA"),
        (
            json!({"keys": [{"kty": "EC", "kid": "k", "x5c": ["bm90IGEgY2VydA=="]}]}),
            "not an X.509 certificate",
        ),
        (
            json!({"keys": [{"kty": "oct", "kid": "k", "k": "c2VjcmV0"}]}),
            "neither",
        ),
        (json!({"keys": []}), "no keys"),
        (json!({"keys": [good.clone(), good.clone()]}), "appears twice"),
        (json!("keys"), "keys array"),
    ];
    for (jwks, expected) in cases {
        for action in ["set_jwt_issuer", "set_jwt_public_signing_keys"] {
            let err = c.must_fail(action, json!({"issuer": ISSUER, "jwks": jwks.clone()}));
            assert!(
                err.to_string().contains(expected),
                "{action}: expected {expected:?} in {err}"
            );
        }
    }
    // An issuer nobody set cannot be given keys.
    let err = c.must_fail(
        "set_jwt_public_signing_keys",
        json!({"issuer": OTHER, "jwks": {"keys": [good]}}),
    );
    assert!(err.to_string().contains("not a known JWT issuer"), "{err}");
    assert_eq!(keys_of(&c, "good").unwrap().len(), 1);
}
