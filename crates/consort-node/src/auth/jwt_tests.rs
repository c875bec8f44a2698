//! Unit tests of bearer-token validation: each refusal with its 401 message.

use super::*;
use consort_crypto::{Curve, SigningKey};

const ISSUER: &str = "https://idp.example";
const NOW: u64 = 1_700_000_000;

/// A token signer: an EC key (ES256/ES384) or an RSA one (RS256), under a kid.
enum Signer {
    Ec(SigningKey),
    Rsa { private: String, public: String },
}

impl Signer {
    fn public_pem(&self) -> String {
        match self {
            Signer::Ec(k) => k.verifying_key().to_pem(),
            Signer::Rsa { public, .. } => public.clone(),
        }
    }

    fn alg(&self) -> &'static str {
        match self {
            Signer::Ec(k) if k.curve() == Curve::P256 => "ES256",
            Signer::Ec(_) => "ES384",
            Signer::Rsa { .. } => "RS256",
        }
    }

    fn sign(&self, input: &[u8]) -> Vec<u8> {
        match self {
            Signer::Ec(k) => k.sign_raw(input, k.curve().default_hash()),
            Signer::Rsa { private, .. } => jose::sign_rs256(private, input).unwrap(),
        }
    }

    fn token(&self, kid: &str, claims: &Value) -> String {
        let header = serde_json::json!({"alg": self.alg(), "kid": kid, "typ": "JWT"});
        sign_token(&header, claims, |input| self.sign(input))
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn sign_token(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = sign(input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

fn rsa_signer() -> Signer {
    static KEY: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    let (private, public) = KEY
        .get_or_init(|| consort_crypto::rsa_keys::generate_pem(2048).unwrap())
        .clone();
    Signer::Rsa { private, public }
}

fn claims() -> Value {
    serde_json::json!({"iss": ISSUER, "sub": "alice", "exp": NOW + 600, "nbf": NOW - 60, "aud": "consort"})
}

/// A store where `kid` is `signer`'s key from ISSUER, and ISSUER is configured with `issuer_json`.
fn store_with(kid: &str, signer: &Signer, issuer_json: Value) -> Store {
    let store = Store::new();
    let mut tx = store.begin();
    let records = serde_json::json!([{"issuer": ISSUER, "public_key": signer.public_pem(), "constraint": null}]);
    tx.put(JWT_KEYS_TABLE, kid.as_bytes(), records.to_string().as_bytes());
    tx.put(JWT_ISSUERS_TABLE, ISSUER.as_bytes(), issuer_json.to_string().as_bytes());
    store.commit(tx, |_, _| ()).unwrap();
    store
}

fn issuer_plain() -> Value {
    serde_json::json!({"auto_refresh": false, "ca_cert_bundle_name": null})
}

fn refusal(store: &Store, token: &str) -> String {
    let headers = vec![("authorization".to_string(), format!("Bearer {token}"))];
    let cred = Credentials {
        cert_id: None,
        headers: &headers,
        body: b"",
        now_unix: NOW,
    };
    authenticate(store, &cred).expect_err("the token must be refused")
}

#[test]
fn valid_tokens_of_each_alg_are_accepted_with_their_claims() {
    for signer in [
        Signer::Ec(SigningKey::generate(Curve::P256)),
        Signer::Ec(SigningKey::generate(Curve::P384)),
        rsa_signer(),
    ] {
        let store = store_with("k1", &signer, issuer_plain());
        let caller = validate(&store, &signer.token("k1", &claims()), NOW).unwrap();
        assert_eq!(caller.key_issuer, ISSUER);
        assert_eq!(caller.payload["sub"], "alice");
        assert_eq!(caller.header["alg"], signer.alg());
        assert_eq!(caller.header["kid"], "k1");
    }
}

#[test]
fn time_claims_are_checked() {
    let signer = Signer::Ec(SigningKey::generate(Curve::P256));
    let store = store_with("k1", &signer, issuer_plain());
    let mut c = claims();
    c["exp"] = serde_json::json!(NOW - 1);
    assert!(refusal(&store, &signer.token("k1", &c)).contains("expired"));
    c["exp"] = serde_json::json!(NOW);
    assert!(refusal(&store, &signer.token("k1", &c)).contains("expired"));
    let mut c = claims();
    c["nbf"] = serde_json::json!(NOW + 30);
    assert!(refusal(&store, &signer.token("k1", &c)).contains("not yet valid"));
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    assert!(refusal(&store, &signer.token("k1", &c)).contains("no numeric exp"));
    // nbf is optional.
    let mut c = claims();
    c.as_object_mut().unwrap().remove("nbf");
    validate(&store, &signer.token("k1", &c), NOW).unwrap();
}

#[test]
fn issuer_and_audience_are_checked() {
    let signer = Signer::Ec(SigningKey::generate(Curve::P256));
    let store = store_with("k1", &signer, issuer_plain());
    let mut c = claims();
    c["iss"] = serde_json::json!("https://evil.example");
    assert!(refusal(&store, &signer.token("k1", &c)).contains("wrong issuer"));
    c.as_object_mut().unwrap().remove("iss");
    assert!(refusal(&store, &signer.token("k1", &c)).contains("wrong issuer"));

    let with_aud = serde_json::json!({"auto_refresh": false, "audience": ["consort", "other"]});
    let store = store_with("k1", &signer, with_aud);
    validate(&store, &signer.token("k1", &claims()), NOW).unwrap();
    let mut c = claims();
    c["aud"] = serde_json::json!(["x", "other"]);
    validate(&store, &signer.token("k1", &c), NOW).unwrap();
    c["aud"] = serde_json::json!("somebody-else");
    assert!(refusal(&store, &signer.token("k1", &c)).contains("wrong audience"));
    c.as_object_mut().unwrap().remove("aud");
    assert!(refusal(&store, &signer.token("k1", &c)).contains("wrong audience"));
}

#[test]
fn issuer_constraints_with_a_tenant() {
    assert!(issuer_fits(
        "https://a/t1/v2.0",
        "https://a/{tenantid}/v2.0",
        Some("t1")
    ));
    assert!(!issuer_fits(
        "https://a/t1/v2.0",
        "https://a/{tenantid}/v2.0",
        Some("t2")
    ));
    assert!(!issuer_fits("https://a/t1/v2.0", "https://a/{tenantid}/v2.0", None));
    assert!(issuer_fits("https://a", "https://a", None));
}

#[test]
fn unknown_kids_and_wrong_keys_are_refused() {
    let signer = Signer::Ec(SigningKey::generate(Curve::P256));
    let store = store_with("k1", &signer, issuer_plain());
    assert!(refusal(&store, &signer.token("k2", &claims())).contains("unknown kid 'k2'"));
    // Signed by another key under the registered kid.
    let other = Signer::Ec(SigningKey::generate(Curve::P256));
    assert!(refusal(&store, &other.token("k1", &claims())).contains("bad signature"));
    // An RSA signature offered for an EC key, and an ES384 one for a P-256 key.
    let rsa = rsa_signer();
    assert!(refusal(&store, &rsa.token("k1", &claims())).contains("does not fit alg RS256"));
    let p384 = Signer::Ec(SigningKey::generate(Curve::P384));
    assert!(refusal(&store, &p384.token("k1", &claims())).contains("does not fit alg ES384"));
}

#[test]
fn alg_none_and_other_algs_are_refused() {
    let signer = Signer::Ec(SigningKey::generate(Curve::P256));
    let store = store_with("k1", &signer, issuer_plain());
    for alg in ["none", "None", "NONE"] {
        let header = serde_json::json!({"alg": alg, "kid": "k1"});
        let token = sign_token(&header, &claims(), |_| vec![]);
        assert!(refusal(&store, &token).contains("alg 'none' is refused"), "{alg}");
    }
    for alg in ["HS256", "PS256", "ES512"] {
        let header = serde_json::json!({"alg": alg, "kid": "k1"});
        let token = sign_token(&header, &claims(), |i| signer.sign(i));
        assert!(refusal(&store, &token).contains("unsupported alg"), "{alg}");
    }
}

#[test]
fn tampered_tokens_are_refused() {
    let signer = Signer::Ec(SigningKey::generate(Curve::P256));
    let store = store_with("k1", &signer, issuer_plain());
    let token = signer.token("k1", &claims());
    let parts: Vec<&str> = token.split('.').collect();
    // Another payload under the original signature.
    let mut c = claims();
    c["sub"] = serde_json::json!("mallory");
    let forged = format!("{}.{}.{}", parts[0], b64(c.to_string().as_bytes()), parts[2]);
    assert!(refusal(&store, &forged).contains("bad signature"));
    // One bit of the signature flipped.
    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    sig[10] ^= 1;
    let flipped = format!("{}.{}.{}", parts[0], parts[1], b64(&sig));
    assert!(refusal(&store, &flipped).contains("bad signature"));
}

#[test]
fn malformed_and_oversized_tokens_are_refused() {
    let signer = Signer::Ec(SigningKey::generate(Curve::P256));
    let store = store_with("k1", &signer, issuer_plain());
    for (token, why) in [
        ("abc", "three dot-separated parts"),
        ("a.b.c.d", "three dot-separated parts"),
        ("!!.e30.", "header is not base64url"),
        ("bm90IGpzb24.e30.", "header is not JSON"),
        ("WzFd.e30.", "must be JSON objects"),
        ("e30.e30.", "no alg"),
    ] {
        assert!(
            refusal(&store, token).contains(why),
            "{token}: {}",
            refusal(&store, token)
        );
    }
    let header = serde_json::json!({"alg": "ES256"});
    assert!(refusal(&store, &sign_token(&header, &claims(), |_| vec![])).contains("no kid"));
    let mut c = claims();
    c["pad"] = serde_json::json!("x".repeat(MAX_JWT_SIZE_BYTES));
    let msg = refusal(&store, &signer.token("k1", &c));
    assert!(msg.contains("MAX_JWT_SIZE_BYTES"), "{msg}");
}

#[test]
fn the_authorization_header_must_carry_a_bearer_token() {
    let store = Store::new();
    let cred = |headers: &[(String, String)]| {
        let cred = Credentials {
            cert_id: None,
            headers,
            body: b"",
            now_unix: NOW,
        };
        authenticate(&store, &cred).unwrap_err()
    };
    assert!(cred(&[]).contains("missing Authorization header"));
    let basic = [("authorization".to_string(), "Basic dXNlcjpwdw==".to_string())];
    assert!(cred(&basic).contains("not a bearer token"));
}
