//! The `jwt` policy: bearer tokens (compact JWS, RFC 7519) validated against the keys governance (or the node's
//! key refresh) stored for an issuer.
//!
//! A token is accepted when its `kid` names a key in `public:ccf.gov.jwt.public_signing_keys_metadata`, its `alg`
//! (RS256, ES256 or ES384 only; `none` and everything else is refused) fits that key and the signature verifies,
//! it has not expired (`exp`, required) and is already valid (`nbf`, when present), its `iss` is the key's issuer
//! (or fits the key's issuer constraint), and, when the issuer is configured with an `audience`, its `aud` names
//! it. Signatures are checked before claims, so a caller without a valid signature learns nothing about them.

use super::Credentials;
use crate::apps::JwtCaller;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use consort_crypto::{jose, Curve, HashAlg, VerifyingKey};
use consort_kv::Store;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Issuers (issuer URL -> JSON [`IssuerInfo`]).
pub const JWT_ISSUERS_TABLE: &str = "public:ccf.gov.jwt.issuers";
/// Token signing keys (JWK `kid` -> JSON array of [`KeyMetadata`], one per issuer that published the kid).
pub const JWT_KEYS_TABLE: &str = "public:ccf.gov.jwt.public_signing_keys_metadata";
/// CA certificate bundles (name -> PEM), which key refresh trusts for an issuer's HTTPS endpoints.
pub const CA_CERT_BUNDLES_TABLE: &str = "public:ccf.gov.tls.ca_cert_bundles";

/// Largest token accepted (the whole compact serialisation), in bytes. Identity providers' tokens are a few KiB.
pub const MAX_JWT_SIZE_BYTES: usize = 16 * 1024;

/// One issuer's record of a signing key (`public:ccf.gov.jwt.public_signing_keys_metadata`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyMetadata {
    /// The issuer that published the key.
    pub issuer: String,
    /// The key, as a SubjectPublicKeyInfo PEM.
    pub public_key: String,
    /// When set, a token's `iss` must fit this instead of equalling `issuer` (see [`issuer_fits`]).
    #[serde(default)]
    pub constraint: Option<String>,
}

/// An issuer as governance configured it (`public:ccf.gov.jwt.issuers`); other CCF fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct IssuerInfo {
    /// Whether the primary refreshes the issuer's keys from its OpenID configuration.
    #[serde(default)]
    pub auto_refresh: bool,
    /// The CA bundle (`public:ccf.gov.tls.ca_cert_bundles`) trusted for the issuer's HTTPS endpoints.
    #[serde(default)]
    pub ca_cert_bundle_name: Option<String>,
    /// Consort's addition (CCF leaves audience checks to apps): when set, a token's `aud` (a string or an array)
    /// must name one of these.
    #[serde(default, deserialize_with = "one_or_many")]
    pub audience: Option<Vec<String>>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => None,
        Some(OneOrMany::One(s)) => Some(vec![s]),
        Some(OneOrMany::Many(v)) => Some(v),
    })
}

/// Why a bearer token was refused; each renders as the 401's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtRefusal {
    #[error("JWT: missing Authorization header with a bearer token")]
    Missing,
    #[error("JWT: the Authorization header is not a bearer token")]
    NotBearer,
    #[error("JWT: the token is {size} bytes, over the limit MAX_JWT_SIZE_BYTES ({MAX_JWT_SIZE_BYTES})")]
    TooLarge { size: usize },
    #[error("JWT: malformed token: {0}")]
    Malformed(&'static str),
    #[error("JWT: alg 'none' is refused: tokens must be signed")]
    AlgNone,
    #[error("JWT: unsupported alg '{0}' (accepted: RS256, ES256, ES384)")]
    UnsupportedAlg(String),
    #[error("JWT: the header has no kid")]
    MissingKid,
    #[error("JWT: unknown kid '{0}': no issuer's signing key has it")]
    UnknownKid(String),
    #[error("JWT: the key of kid '{kid}' does not fit alg {alg}")]
    AlgKeyMismatch { kid: String, alg: &'static str },
    #[error("JWT: bad signature: it does not verify under the key of kid '{0}'")]
    BadSignature(String),
    #[error("JWT: the token has no numeric exp claim")]
    MissingExp,
    #[error("JWT: the token expired at {exp} (now {now})")]
    Expired { exp: u64, now: u64 },
    #[error("JWT: the token is not yet valid: nbf {nbf} is after now ({now})")]
    NotYetValid { nbf: u64, now: u64 },
    #[error("JWT: wrong issuer: iss {iss:?} is not the key's issuer {expected}")]
    WrongIssuer { iss: Option<String>, expected: String },
    #[error("JWT: wrong audience: aud {aud} names none of the issuer's audiences {expected:?}")]
    WrongAudience { aud: String, expected: Vec<String> },
}

/// The JWS algorithms accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alg {
    Rs256,
    Es256,
    Es384,
}

impl Alg {
    fn parse(name: &str) -> Result<Self, JwtRefusal> {
        match name {
            "RS256" => Ok(Alg::Rs256),
            "ES256" => Ok(Alg::Es256),
            "ES384" => Ok(Alg::Es384),
            n if n.eq_ignore_ascii_case("none") => Err(JwtRefusal::AlgNone),
            other => Err(JwtRefusal::UnsupportedAlg(other.chars().take(32).collect())),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
        }
    }
}

/// A compact JWS split and decoded, not yet verified.
#[derive(Debug)]
struct Token {
    header: Value,
    payload: Value,
    alg: Alg,
    kid: String,
    /// `base64url(header) . base64url(payload)`: what was signed.
    signing_input: Vec<u8>,
    signature: Vec<u8>,
}

fn decode_part(part: &str, what: &'static str) -> Result<Vec<u8>, JwtRefusal> {
    URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| JwtRefusal::Malformed(what))
}

fn parse_token(token: &str) -> Result<Token, JwtRefusal> {
    if token.len() > MAX_JWT_SIZE_BYTES {
        return Err(JwtRefusal::TooLarge { size: token.len() });
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwtRefusal::Malformed("a compact JWS has three dot-separated parts"));
    };
    let header: Value = serde_json::from_slice(&decode_part(h, "the header is not base64url")?)
        .map_err(|_| JwtRefusal::Malformed("the header is not JSON"))?;
    let payload: Value = serde_json::from_slice(&decode_part(p, "the payload is not base64url")?)
        .map_err(|_| JwtRefusal::Malformed("the payload is not JSON"))?;
    if !header.is_object() || !payload.is_object() {
        return Err(JwtRefusal::Malformed("the header and the payload must be JSON objects"));
    }
    let signature = decode_part(s, "the signature is not base64url")?;
    let alg = match header.get("alg") {
        Some(Value::String(a)) => Alg::parse(a)?,
        _ => return Err(JwtRefusal::Malformed("the header has no alg")),
    };
    let kid = match header.get("kid") {
        Some(Value::String(k)) if !k.is_empty() => k.clone(),
        _ => return Err(JwtRefusal::MissingKid),
    };
    Ok(Token {
        header,
        payload,
        alg,
        kid,
        signing_input: format!("{h}.{p}").into_bytes(),
        signature,
    })
}

/// Whether `signature` over `msg` verifies under `public_key_pem` with `alg` (the key's kind must fit the alg).
fn verify(alg: Alg, public_key_pem: &str, msg: &[u8], signature: &[u8]) -> Result<bool, ()> {
    match alg {
        Alg::Rs256 if jose::is_rsa_public_key(public_key_pem) => {
            Ok(jose::verify_rs256(public_key_pem, msg, signature).is_ok())
        }
        Alg::Es256 | Alg::Es384 => {
            let key = VerifyingKey::from_pem(public_key_pem).map_err(|_| ())?;
            let (curve, hash) = match alg {
                Alg::Es256 => (Curve::P256, HashAlg::Sha256),
                _ => (Curve::P384, HashAlg::Sha384),
            };
            if key.curve() != curve {
                return Err(());
            }
            Ok(key.verify_raw(msg, hash, signature).is_ok())
        }
        Alg::Rs256 => Err(()),
    }
}

/// Whether the token issuer `iss` fits a key's issuer constraint: equal to it, or, for a constraint naming the
/// tenant as `{tenantid}` (multi-tenant identity providers), equal once the token's `tid` is put in its place.
pub fn issuer_fits(iss: &str, constraint: &str, tid: Option<&str>) -> bool {
    if iss == constraint {
        return true;
    }
    match tid {
        Some(tid) if constraint.contains("{tenantid}") => constraint.replace("{tenantid}", tid) == iss,
        _ => false,
    }
}

/// A numeric date claim (seconds since the epoch; fractions are cut), if present and numeric.
fn date_claim(payload: &Value, name: &str) -> Option<u64> {
    let v = payload.get(name)?;
    v.as_u64()
        .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
}

/// Checks the claims of a token whose signature verified under `key`.
fn check_claims(payload: &Value, key: &KeyMetadata, issuer: &IssuerInfo, now: u64) -> Result<(), JwtRefusal> {
    let exp = date_claim(payload, "exp").ok_or(JwtRefusal::MissingExp)?;
    if exp <= now {
        return Err(JwtRefusal::Expired { exp, now });
    }
    if let Some(nbf) = date_claim(payload, "nbf") {
        if nbf > now {
            return Err(JwtRefusal::NotYetValid { nbf, now });
        }
    }
    let iss = payload.get("iss").and_then(Value::as_str);
    let tid = payload.get("tid").and_then(Value::as_str);
    let expected = key.constraint.as_deref().unwrap_or(&key.issuer);
    if !iss.is_some_and(|iss| issuer_fits(iss, expected, tid)) {
        return Err(JwtRefusal::WrongIssuer {
            iss: iss.map(str::to_string),
            expected: expected.to_string(),
        });
    }
    if let Some(audiences) = &issuer.audience {
        let aud = payload.get("aud").cloned().unwrap_or(Value::Null);
        let named = |a: &str| audiences.iter().any(|x| x == a);
        let ok = match &aud {
            Value::String(a) => named(a),
            Value::Array(all) => all.iter().filter_map(Value::as_str).any(named),
            _ => false,
        };
        if !ok {
            return Err(JwtRefusal::WrongAudience {
                aud: aud.to_string(),
                expected: audiences.clone(),
            });
        }
    }
    Ok(())
}

/// The records of `kid` in the signing-keys table (an unreadable value counts as none).
pub fn key_records(store: &Store, kid: &str) -> Vec<KeyMetadata> {
    store
        .read_only()
        .get(JWT_KEYS_TABLE, kid.as_bytes())
        .and_then(|v| serde_json::from_slice(&v).ok())
        .unwrap_or_default()
}

/// The issuer's configuration, if governance set one that parses.
pub fn issuer_info(store: &Store, issuer: &str) -> Option<IssuerInfo> {
    store
        .read_only()
        .get(JWT_ISSUERS_TABLE, issuer.as_bytes())
        .and_then(|v| serde_json::from_slice(&v).ok())
}

/// Validates a compact JWS against the keys in `store` at time `now` (seconds since the epoch).
pub fn validate(store: &Store, token: &str, now: u64) -> Result<JwtCaller, JwtRefusal> {
    let token = parse_token(token)?;
    let records = key_records(store, &token.kid);
    if records.is_empty() {
        return Err(JwtRefusal::UnknownKid(token.kid.chars().take(128).collect()));
    }
    let mut refusal = None;
    for key in &records {
        match verify(token.alg, &key.public_key, &token.signing_input, &token.signature) {
            Ok(true) => {}
            Ok(false) => {
                refusal.get_or_insert(JwtRefusal::BadSignature(token.kid.clone()));
                continue;
            }
            Err(()) => {
                refusal.get_or_insert(JwtRefusal::AlgKeyMismatch {
                    kid: token.kid.clone(),
                    alg: token.alg.name(),
                });
                continue;
            }
        }
        let issuer = issuer_info(store, &key.issuer).unwrap_or_default();
        match check_claims(&token.payload, key, &issuer, now) {
            Ok(()) => {
                return Ok(JwtCaller {
                    key_issuer: key.issuer.clone(),
                    header: token.header,
                    payload: token.payload,
                })
            }
            // A verified signature's claim refusal says more than another issuer's key mismatch.
            Err(why) => refusal = Some(why),
        }
    }
    Err(refusal.unwrap_or(JwtRefusal::BadSignature(token.kid)))
}

/// The caller a bearer token in `Authorization` names, if the token is valid.
pub fn authenticate(store: &Store, cred: &Credentials<'_>) -> Result<JwtCaller, String> {
    authenticate_typed(store, cred).map_err(|e| e.to_string())
}

fn authenticate_typed(store: &Store, cred: &Credentials<'_>) -> Result<JwtCaller, JwtRefusal> {
    let value = super::header(cred.headers, "authorization").ok_or(JwtRefusal::Missing)?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(JwtRefusal::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(JwtRefusal::NotBearer);
    }
    validate(store, token.trim(), cred.now_unix)
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
