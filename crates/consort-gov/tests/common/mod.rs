//! Helpers shared by the application-platform governance tests: a one-member consortium over an in-memory
//! store, proposals passed by that member's ballot, and table reads.
#![allow(dead_code, reason = "each test binary uses a different part of these helpers")]

use std::cell::Cell;

use consort_crypto::x509::self_signed;
use consort_crypto::{CertParams, Curve, SigningKey};
use consort_gov::*;
use consort_kv::Store;
use serde_json::{json, Value};

pub const NOW: i64 = 1_700_000_000;
pub const ROOT: [u8; 32] = [7u8; 32];

pub struct Member {
    pub key: SigningKey,
    pub cert_pem: String,
    pub id: String,
}

pub fn member(name: &str) -> Member {
    let key = SigningKey::generate(Curve::P256);
    let cert = self_signed(&key, &CertParams::new(name)).unwrap();
    Member {
        id: consort_crypto::cert_id(&cert.der),
        key,
        cert_pem: cert.pem,
    }
}

/// A store after genesis with one active member and `constitution`, and the proposals' clock.
pub struct Consortium {
    pub store: Store,
    pub member: Member,
    clock: Cell<i64>,
}

impl Consortium {
    pub fn new(constitution: &str) -> Self {
        let member = member("m0");
        let store = Store::new();
        let mut tx = store.begin();
        let spec = MemberSpec {
            cert_pem: member.cert_pem.clone(),
            encryption_public_key_pem: None,
            member_data: None,
            recovery_role: None,
        };
        genesis(&mut tx, &[spec], &[], constitution, 1).unwrap();
        store.commit(tx, |_, _| ()).unwrap();
        Consortium {
            store,
            member,
            clock: Cell::new(NOW),
        }
    }

    fn signed(&self, ty: MsgType, pid: Option<&str>, payload: &[u8]) -> (Vec<u8>, i64) {
        let at = self.clock.get() + 1;
        self.clock.set(at);
        let m = &self.member;
        (sign_gov_request(&m.key, &m.id, ty, at, pid, payload), at)
    }

    /// Proposes `actions` and votes for them with `env`; commits only what succeeded.
    pub fn pass_with(&self, actions: Value, env: &GovEnv<'_>) -> Result<ProposalOutcome, GovError> {
        let proposal = json!({ "actions": actions }).to_string();
        let (body, at) = self.signed(MsgType::Proposal, None, proposal.as_bytes());
        let mut tx = self.store.begin();
        let req = verify_gov_request(&mut tx, &body, MsgType::Proposal, None, at)?;
        let created = create_proposal(&mut tx, &req, &ROOT, env)?;
        self.store.commit(tx, |_, _| ()).unwrap();
        let pid = created.proposal_id;
        let ballot = json!({"ballot": "export function vote(proposal, proposerId) { return true; }"}).to_string();
        let (body, at) = self.signed(MsgType::Ballot, Some(&pid), ballot.as_bytes());
        let mut tx = self.store.begin();
        let req = verify_gov_request(&mut tx, &body, MsgType::Ballot, Some(&pid), at)?;
        let out = submit_ballot(&mut tx, &req, &pid, &self.member.id, env)?;
        self.store.commit(tx, |_, _| ()).unwrap();
        Ok(out)
    }

    pub fn pass(&self, actions: Value) -> Result<ProposalOutcome, GovError> {
        self.pass_with(actions, &GovEnv::default())
    }

    /// Passes one action and asserts it was accepted.
    pub fn must_pass(&self, name: &str, args: Value) -> ProposalOutcome {
        let out = self
            .pass(json!([{ "name": name, "args": args }]))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(out.info.state, ProposalState::Accepted, "{name}");
        out
    }

    /// Passes one action and returns the error, asserting that the store did not change.
    pub fn must_fail(&self, name: &str, args: Value) -> GovError {
        let before = self.snapshot();
        let err = self
            .pass(json!([{ "name": name, "args": args }]))
            .expect_err(&format!("{name} should fail"));
        assert_eq!(self.snapshot(), before, "{name}: a refused proposal wrote something");
        err
    }

    /// Every entry of the application platform's tables.
    pub fn snapshot(&self) -> Vec<(String, Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        for map in [
            tables::MODULES,
            tables::ENDPOINTS,
            tables::JS_RUNTIME_OPTIONS,
            tables::JWT_ISSUERS,
            tables::JWT_PUBLIC_SIGNING_KEYS_METADATA,
            tables::CA_CERT_BUNDLES,
            tables::USERS_CERTS,
            tables::MEMBERS_CERTS,
        ] {
            for (k, v) in self.entries(map) {
                out.push((map.to_owned(), k, v));
            }
        }
        out
    }

    pub fn entries(&self, map: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        self.store.read_only().foreach(map, |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            true
        });
        out
    }

    pub fn get(&self, map: &str, key: &[u8]) -> Option<Vec<u8>> {
        self.store.read_only().get(map, key)
    }

    pub fn get_str(&self, map: &str, key: &str) -> Option<String> {
        self.get(map, key.as_bytes()).map(|v| String::from_utf8(v).unwrap())
    }

    pub fn get_json(&self, map: &str, key: &[u8]) -> Option<Value> {
        self.get(map, key).map(|v| serde_json::from_slice(&v).unwrap())
    }
}

/// A self-signed certificate as PEM.
pub fn cert_pem(name: &str) -> String {
    member(name).cert_pem
}

/// A bundle with one module `endpoints/all.js` and the given endpoints metadata.
pub fn bundle(endpoints: Value) -> Value {
    json!({
        "metadata": { "endpoints": endpoints },
        "modules": [{ "name": "endpoints/all.js", "module": "export function get(r) { return {body: 1}; }" }],
    })
}

pub fn endpoint(mode: &str) -> Value {
    json!({
        "js_module": "endpoints/all.js",
        "js_function": "get",
        "mode": mode,
        "authn_policies": ["user_cert"],
        "forwarding_required": "sometimes",
        "openapi": {},
    })
}

/// An EC JWK for a fresh key, and the key's PEM SubjectPublicKeyInfo.
pub fn ec_jwk(curve: Curve, kid: &str) -> (Value, String) {
    use base64::Engine;
    let key = SigningKey::generate(curve);
    let pem = key.verifying_key().to_pem();
    let spki = key.verifying_key().to_spki_der();
    let size = match curve {
        Curve::P256 => 32,
        Curve::P384 => 48,
    };
    let point = &spki[spki.len() - 2 * size..];
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let crv = if size == 32 { "P-256" } else { "P-384" };
    let jwk =
        json!({"kty": "EC", "kid": kid, "crv": crv, "x": b64.encode(&point[..size]), "y": b64.encode(&point[size..])});
    (jwk, pem)
}

/// An RSA JWK for a fresh 2048-bit key, and the key's PEM SubjectPublicKeyInfo.
pub fn rsa_jwk(kid: &str) -> (Value, String) {
    use base64::Engine;
    use rsa::pkcs8::DecodePublicKey;
    use rsa::traits::PublicKeyParts;
    let (_, public) = consort_crypto::rsa_keys::generate_pem(2048).unwrap();
    let key = rsa::RsaPublicKey::from_public_key_pem(&public).unwrap();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jwk = json!({"kty": "RSA", "kid": kid, "n": b64.encode(key.n().to_bytes_be()), "e": b64.encode(key.e().to_bytes_be())});
    (jwk, public)
}

/// An x5c JWK carrying a fresh self-signed certificate, and the certificate's key as PEM.
pub fn x5c_jwk(kid: &str) -> (Value, String) {
    use base64::Engine;
    let key = SigningKey::generate(Curve::P256);
    let cert = self_signed(&key, &CertParams::new("idp")).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    (
        json!({"kty": "EC", "kid": kid, "x5c": [b64.encode(&cert.der)]}),
        key.verifying_key().to_pem(),
    )
}

/// PEM texts compared by their base64 body (line breaks and trailing newlines aside).
pub fn same_pem(a: &str, b: &str) -> bool {
    let body = |s: &str| -> String { s.lines().filter(|l| !l.starts_with("-----")).collect() };
    body(a) == body(b) && !body(a).is_empty()
}
