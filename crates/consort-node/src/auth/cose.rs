//! The `user_cose_sign1` policy: a request body signed by a registered user as COSE Sign1 (RFC 9052).
//!
//! Protected headers, as CCF's user policy reads them: `alg` (ES256 for a P-256 user key, ES384 for P-384), `kid`
//! (the user id: hex SHA-256 of the user certificate's DER, as the bytes of that hex string), and CCF's optional
//! `ccf.msg.type` (text) and `ccf.msg.created_at` (integer seconds). Consort requires `ccf.msg.created_at` and
//! refuses a request created more than [`MAX_USER_COSE_AGE_SECONDS`] ago or ahead of the node's clock, so an
//! envelope captured earlier cannot be replayed later (within that window an app that must refuse repeats keys on
//! the signature). The signature covers the `Signature1` structure with empty external AAD.

use super::{Credentials, USERS_CERTS_TABLE};
use crate::apps::CoseCaller;
use consort_crypto::{Curve, HashAlg, ParsedCert};
use consort_kv::Store;
use coset::cbor::value::Value as Cbor;
use coset::{iana, CborSerializable, CoseSign1, Label, RegisteredLabelWithPrivate, TaggedCborSerializable};

/// Protected header label of the message type (optional).
pub const HEADER_MSG_TYPE: &str = "ccf.msg.type";
/// Protected header label of the creation time (seconds since the epoch; Consort requires it).
pub const HEADER_CREATED_AT: &str = "ccf.msg.created_at";
/// How old (or how far ahead of the node's clock) `ccf.msg.created_at` may be, in seconds.
pub const MAX_USER_COSE_AGE_SECONDS: u64 = 300;

/// Why a COSE Sign1 request body was refused; each renders as the 401's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoseRefusal {
    #[error("COSE: the body is not a COSE Sign1 envelope")]
    NotCose,
    #[error("COSE: the envelope has no payload (detached payloads are not accepted)")]
    Detached,
    #[error("COSE: the protected header has no {0}")]
    MissingHeader(&'static str),
    #[error("COSE: the protected header {0} has the wrong type")]
    HeaderType(&'static str),
    #[error("COSE: kid {0:?} is not a registered user")]
    UnknownUser(String),
    #[error("COSE: the user's certificate is unusable")]
    UserCert,
    #[error("COSE: alg {signed:?} does not fit the user's key (expected {expected:?})")]
    AlgMismatch {
        signed: iana::Algorithm,
        expected: iana::Algorithm,
    },
    #[error("COSE: unsupported alg (accepted: ES256, ES384)")]
    UnsupportedAlg,
    #[error("COSE: bad signature: it does not verify under user {0}'s key")]
    BadSignature(String),
    #[error("COSE: stale or future request: created_at {created_at} is more than {MAX_USER_COSE_AGE_SECONDS} s from now ({now})")]
    Stale { created_at: u64, now: u64 },
}

fn text_header<'a>(header: &'a coset::Header, name: &str) -> Option<&'a Cbor> {
    header
        .rest
        .iter()
        .find(|(l, _)| matches!(l, Label::Text(t) if t == name))
        .map(|(_, v)| v)
}

/// The protected headers as JSON, by name (`alg`, `kid`, and the text-labelled ones).
fn protected_json(header: &coset::Header, kid: &str, alg: iana::Algorithm) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    out.insert("alg".into(), serde_json::json!(alg as i64));
    out.insert("kid".into(), serde_json::json!(kid));
    for (label, value) in &header.rest {
        let Label::Text(name) = label else { continue };
        let v = match value {
            Cbor::Text(t) => serde_json::json!(t),
            Cbor::Integer(i) => i64::try_from(i128::from(*i)).map_or(serde_json::Value::Null, |i| serde_json::json!(i)),
            Cbor::Bool(b) => serde_json::json!(b),
            Cbor::Bytes(b) => serde_json::json!(hex::encode(b)),
            _ => continue,
        };
        out.insert(name.clone(), v);
    }
    serde_json::Value::Object(out)
}

/// Verifies `body` as a user's COSE Sign1 request at time `now` (seconds since the epoch).
pub fn verify(store: &Store, body: &[u8], now: u64) -> Result<CoseCaller, CoseRefusal> {
    let sign1 = CoseSign1::from_tagged_slice(body)
        .or_else(|_| CoseSign1::from_slice(body))
        .map_err(|_| CoseRefusal::NotCose)?;
    let header = &sign1.protected.header;
    let kid = std::str::from_utf8(&header.key_id).map_err(|_| CoseRefusal::HeaderType("kid"))?;
    if kid.is_empty() {
        return Err(CoseRefusal::MissingHeader("kid"));
    }
    let alg = match &header.alg {
        Some(RegisteredLabelWithPrivate::Assigned(a)) => *a,
        Some(_) => return Err(CoseRefusal::UnsupportedAlg),
        None => return Err(CoseRefusal::MissingHeader("alg")),
    };
    let payload = sign1.payload.clone().ok_or(CoseRefusal::Detached)?;

    // Authenticate before judging the content.
    let cert = store
        .read_only()
        .get(USERS_CERTS_TABLE, kid.as_bytes())
        .ok_or_else(|| CoseRefusal::UnknownUser(kid.chars().take(80).collect()))?;
    let key = std::str::from_utf8(&cert)
        .ok()
        .and_then(|pem| ParsedCert::from_pem(pem).ok())
        .and_then(|c| c.public_key().ok())
        .ok_or(CoseRefusal::UserCert)?;
    let (expected, hash) = match key.curve() {
        Curve::P256 => (iana::Algorithm::ES256, HashAlg::Sha256),
        Curve::P384 => (iana::Algorithm::ES384, HashAlg::Sha384),
    };
    if alg != expected {
        return Err(match alg {
            iana::Algorithm::ES256 | iana::Algorithm::ES384 => CoseRefusal::AlgMismatch { signed: alg, expected },
            _ => CoseRefusal::UnsupportedAlg,
        });
    }
    key.verify_raw(&sign1.tbs_data(b""), hash, &sign1.signature)
        .map_err(|_| CoseRefusal::BadSignature(kid.to_string()))?;

    if let Some(t) = text_header(header, HEADER_MSG_TYPE) {
        if !matches!(t, Cbor::Text(_)) {
            return Err(CoseRefusal::HeaderType(HEADER_MSG_TYPE));
        }
    }
    let created_at = match text_header(header, HEADER_CREATED_AT) {
        Some(Cbor::Integer(i)) => {
            u64::try_from(i128::from(*i)).map_err(|_| CoseRefusal::HeaderType(HEADER_CREATED_AT))?
        }
        Some(_) => return Err(CoseRefusal::HeaderType(HEADER_CREATED_AT)),
        None => return Err(CoseRefusal::MissingHeader(HEADER_CREATED_AT)),
    };
    if created_at.abs_diff(now) > MAX_USER_COSE_AGE_SECONDS {
        return Err(CoseRefusal::Stale { created_at, now });
    }
    Ok(CoseCaller {
        user_id: kid.to_string(),
        content: payload,
        protected: protected_json(header, kid, alg),
    })
}

/// The user whose COSE Sign1 signature the body carries, if it verifies.
pub fn authenticate(store: &Store, cred: &Credentials<'_>) -> Result<CoseCaller, String> {
    verify(store, cred.body, cred.now_unix).map_err(|e| e.to_string())
}

/// Signs `payload` as user `user_id` with `key` (ES256 or ES384 by the key's curve), creation time `created_at`
/// and optional message type: the envelope [`verify`] accepts (for clients and tests).
pub fn sign_user_request(
    key: &consort_crypto::SigningKey,
    user_id: &str,
    payload: &[u8],
    msg_type: Option<&str>,
    created_at: u64,
) -> Vec<u8> {
    let (alg, hash) = match key.curve() {
        Curve::P256 => (iana::Algorithm::ES256, HashAlg::Sha256),
        Curve::P384 => (iana::Algorithm::ES384, HashAlg::Sha384),
    };
    let mut protected = coset::HeaderBuilder::new()
        .algorithm(alg)
        .key_id(user_id.as_bytes().to_vec())
        .text_value(HEADER_CREATED_AT.into(), Cbor::Integer(created_at.into()));
    if let Some(t) = msg_type {
        protected = protected.text_value(HEADER_MSG_TYPE.into(), Cbor::Text(t.into()));
    }
    let sign1 = coset::CoseSign1Builder::new()
        .protected(protected.build())
        .payload(payload.to_vec())
        .create_signature(b"", |tbs| key.sign_raw(tbs, hash))
        .build();
    // An envelope built from valid parts always serialises.
    sign1.to_tagged_vec().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use consort_crypto::x509::{self, CertParams};
    use consort_crypto::SigningKey;

    const NOW: u64 = 1_700_000_000;

    fn user(store: &Store, curve: Curve) -> (SigningKey, String) {
        let key = SigningKey::generate(curve);
        let cert = x509::self_signed(&key, &CertParams::new("user")).unwrap();
        let id = consort_crypto::cert_id(&cert.der);
        let mut tx = store.begin();
        tx.put(USERS_CERTS_TABLE, id.as_bytes(), cert.pem.as_bytes());
        store.commit(tx, |_, _| ()).unwrap();
        (key, id)
    }

    #[test]
    fn a_registered_users_signed_body_is_accepted_with_its_headers() {
        let store = Store::new();
        for curve in [Curve::P256, Curve::P384] {
            let (key, id) = user(&store, curve);
            let body = sign_user_request(&key, &id, b"{\"x\":1}", Some("write"), NOW - 10);
            let caller = verify(&store, &body, NOW).unwrap();
            assert_eq!(caller.user_id, id);
            assert_eq!(caller.content, b"{\"x\":1}");
            assert_eq!(caller.protected["ccf.msg.type"], "write");
            assert_eq!(caller.protected["ccf.msg.created_at"], NOW - 10);
            assert_eq!(caller.protected["kid"], id.as_str());
        }
    }

    #[test]
    fn garbage_strangers_tampering_and_stale_requests_are_refused() {
        let store = Store::new();
        let (key, id) = user(&store, Curve::P256);
        let msg = |r: Result<CoseCaller, CoseRefusal>| r.unwrap_err().to_string();
        assert!(msg(verify(&store, b"not cbor", NOW)).contains("not a COSE Sign1"));
        assert!(msg(verify(&store, b"", NOW)).contains("not a COSE Sign1"));
        // A key nobody registered, naming itself or naming the registered user.
        let stranger = SigningKey::generate(Curve::P256);
        let body = sign_user_request(&stranger, "ab12", b"x", None, NOW);
        assert!(msg(verify(&store, &body, NOW)).contains("not a registered user"));
        let body = sign_user_request(&stranger, &id, b"x", None, NOW);
        assert!(msg(verify(&store, &body, NOW)).contains("bad signature"));
        // One byte of the payload changed after signing.
        let mut body = sign_user_request(&key, &id, b"amount=10", None, NOW);
        let at = body.windows(9).position(|w| w == b"amount=10").unwrap();
        body[at + 7] = b'9';
        assert!(msg(verify(&store, &body, NOW)).contains("bad signature"));
        // A P-384 key's ES384 under a P-256 user.
        let body = sign_user_request(&SigningKey::generate(Curve::P384), &id, b"x", None, NOW);
        assert!(msg(verify(&store, &body, NOW)).contains("does not fit the user's key"));
        // Replayed later, or dated ahead.
        let body = sign_user_request(&key, &id, b"x", None, NOW);
        verify(&store, &body, NOW + MAX_USER_COSE_AGE_SECONDS).unwrap();
        assert!(msg(verify(&store, &body, NOW + MAX_USER_COSE_AGE_SECONDS + 1)).contains("stale"));
        assert!(msg(verify(&store, &body, NOW - MAX_USER_COSE_AGE_SECONDS - 1)).contains("stale"));
    }

    #[test]
    fn created_at_is_required() {
        let store = Store::new();
        let (key, id) = user(&store, Curve::P256);
        let sign1 = coset::CoseSign1Builder::new()
            .protected(
                coset::HeaderBuilder::new()
                    .algorithm(iana::Algorithm::ES256)
                    .key_id(id.as_bytes().to_vec())
                    .build(),
            )
            .payload(b"x".to_vec())
            .create_signature(b"", |tbs| key.sign_raw(tbs, HashAlg::Sha256))
            .build();
        let body = sign1.to_tagged_vec().unwrap();
        let why = verify(&store, &body, NOW).unwrap_err().to_string();
        assert!(why.contains("has no ccf.msg.created_at"), "{why}");
    }
}
