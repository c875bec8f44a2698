//! JSON Web Key Sets given to governance (`set_jwt_issuer`, `set_jwt_public_signing_keys`): each key turned into
//! a PEM SubjectPublicKeyInfo (RSA from `n`/`e`, EC P-256/P-384 from `x`/`y`, or the first `x5c` certificate's
//! key), and the rows of `public:ccf.gov.jwt.public_signing_keys_metadata` that setting or removing an issuer's
//! keys leaves.

use std::collections::{BTreeMap, BTreeSet};

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::MapData;
use crate::limits::{MAX_JWKS_KEYS, MIN_JWT_RSA_MODULUS_BITS};

/// One entry of a kid's row in the signing-keys table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtSigningKey {
    /// The issuer that published the key.
    pub issuer: String,
    /// The key as PEM SubjectPublicKeyInfo.
    pub public_key: String,
    /// The key's own `issuer` claim constraint, if its JWK carried one.
    #[serde(default)]
    pub constraint: Option<String>,
}

/// A key of a checked JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckedKey {
    pub kid: String,
    pub entry: JwtSigningKey,
}

const B64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const B64STD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn text<'a>(jwk: &'a serde_json::Map<String, Value>, field: &str, kid: &str) -> Result<Option<&'a str>, String> {
    match jwk.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
        Some(_) => Err(format!("JWK {kid:?}: {field} must be a non-empty string")),
    }
}

fn b64url(value: &str, field: &str, kid: &str) -> Result<Vec<u8>, String> {
    B64URL
        .decode(value)
        .map_err(|e| format!("JWK {kid:?}: {field} is not base64url: {e}"))
}

fn rsa_pem(n: &str, e: &str, kid: &str) -> Result<String, String> {
    use rsa::pkcs8::{EncodePublicKey, LineEnding};
    use rsa::traits::PublicKeyParts;
    let n = rsa::BigUint::from_bytes_be(&b64url(n, "n", kid)?);
    let e = rsa::BigUint::from_bytes_be(&b64url(e, "e", kid)?);
    let key = rsa::RsaPublicKey::new(n, e).map_err(|err| format!("JWK {kid:?}: not an RSA public key: {err}"))?;
    let bits = key.n().bits();
    if bits < MIN_JWT_RSA_MODULUS_BITS {
        return Err(format!(
            "JWK {kid:?}: RSA modulus of {bits} bits is below the {MIN_JWT_RSA_MODULUS_BITS} accepted"
        ));
    }
    key.to_public_key_pem(LineEnding::LF)
        .map_err(|err| format!("JWK {kid:?}: cannot encode the RSA key: {err}"))
}

fn ec_pem(crv: &str, x: &str, y: &str, kid: &str) -> Result<String, String> {
    use p256::pkcs8::{EncodePublicKey, LineEnding};
    let (x, y) = (b64url(x, "x", kid)?, b64url(y, "y", kid)?);
    let size = match crv {
        "P-256" => 32,
        "P-384" => 48,
        other => return Err(format!("JWK {kid:?}: curve {other:?} is not supported (P-256, P-384)")),
    };
    if x.len() != size || y.len() != size {
        return Err(format!("JWK {kid:?}: x and y of a {crv} key must be {size} bytes each"));
    }
    let mut sec1 = Vec::with_capacity(1 + 2 * size);
    sec1.push(4u8);
    sec1.extend_from_slice(&x);
    sec1.extend_from_slice(&y);
    let not_on_curve = |_| format!("JWK {kid:?}: ({crv}) x, y is not a point of the curve");
    let pem = if size == 32 {
        p256::PublicKey::from_sec1_bytes(&sec1)
            .map_err(not_on_curve)?
            .to_public_key_pem(LineEnding::LF)
    } else {
        p384::PublicKey::from_sec1_bytes(&sec1)
            .map_err(not_on_curve)?
            .to_public_key_pem(LineEnding::LF)
    };
    pem.map_err(|err| format!("JWK {kid:?}: cannot encode the EC key: {err}"))
}

fn x5c_pem(chain: &Value, kid: &str) -> Result<String, String> {
    let first = chain
        .as_array()
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .ok_or_else(|| format!("JWK {kid:?}: x5c must be a non-empty array of base64 certificates"))?;
    let der = B64STD
        .decode(first)
        .map_err(|e| format!("JWK {kid:?}: x5c[0] is not base64: {e}"))?;
    let cert = consort_crypto::ParsedCert::from_der(&der)
        .map_err(|e| format!("JWK {kid:?}: x5c[0] is not an X.509 certificate: {e}"))?;
    Ok(pem::encode_config(
        &pem::Pem::new("PUBLIC KEY", cert.spki_der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    ))
}

/// The host part of a URL (`https://login.example.com:443/x` → `login.example.com`), lower case.
fn url_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host.starts_with('[') {
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        host.split(':').next().unwrap_or(host)
    };
    host.to_ascii_lowercase()
}

/// A key's issuer constraint must name the issuer's domain or a parent of it (as CCF requires).
fn constraint_fits(issuer: &str, constraint: &str) -> bool {
    let (issuer, constraint) = (url_host(issuer), url_host(constraint));
    !constraint.is_empty() && (issuer == constraint || issuer.ends_with(&format!(".{constraint}")))
}

/// Checks every key of `jwks` (`{"keys": [...]}`) published by `issuer`, and converts it.
pub(crate) fn check_jwks(issuer: &str, jwks: &Value) -> Result<Vec<CheckedKey>, String> {
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("jwks must be an object with a keys array")?;
    if keys.is_empty() {
        return Err("jwks has no keys".into());
    }
    if keys.len() > MAX_JWKS_KEYS {
        return Err(format!("jwks holds {} keys, more than {MAX_JWKS_KEYS}", keys.len()));
    }
    let mut out = Vec::with_capacity(keys.len());
    let mut kids = BTreeSet::new();
    for (i, jwk) in keys.iter().enumerate() {
        let jwk = jwk
            .as_object()
            .ok_or_else(|| format!("jwks.keys[{i}] must be an object"))?;
        let kid = match jwk.get("kid") {
            Some(Value::String(k)) if !k.is_empty() => k.clone(),
            _ => return Err(format!("jwks.keys[{i}] has no kid")),
        };
        if !kids.insert(kid.clone()) {
            return Err(format!("JWK {kid:?} appears twice"));
        }
        let public_key = if let (Some(n), Some(e)) = (text(jwk, "n", &kid)?, text(jwk, "e", &kid)?) {
            rsa_pem(n, e, &kid)?
        } else if let (Some(x), Some(y)) = (text(jwk, "x", &kid)?, text(jwk, "y", &kid)?) {
            let crv = text(jwk, "crv", &kid)?.ok_or_else(|| format!("JWK {kid:?}: an EC key needs crv"))?;
            ec_pem(crv, x, y, &kid)?
        } else if let Some(chain) = jwk.get("x5c") {
            x5c_pem(chain, &kid)?
        } else {
            return Err(format!(
                "JWK {kid:?} has neither an RSA (n, e) or EC (x, y, crv) public key nor an x5c certificate"
            ));
        };
        let constraint = text(jwk, "issuer", &kid)?.map(str::to_owned);
        if let Some(c) = &constraint {
            if !constraint_fits(issuer, c) {
                return Err(format!(
                    "JWK {kid:?}: issuer constraint {c:?} is not the domain of issuer {issuer:?} or a parent of it"
                ));
            }
        }
        let entry = JwtSigningKey {
            issuer: issuer.to_owned(),
            public_key,
            constraint,
        };
        out.push(CheckedKey { kid, entry });
    }
    Ok(out)
}

fn row(entries: &[JwtSigningKey]) -> Vec<u8> {
    serde_json::to_vec(entries).unwrap_or_default()
}

fn parse_row(raw: &[u8]) -> Vec<JwtSigningKey> {
    serde_json::from_slice(raw).unwrap_or_default()
}

/// The writes that make `issuer`'s keys exactly `keys` in the signing-keys table `table` (other issuers'
/// entries kept; a kid left with no entry removed; unchanged rows not rewritten).
pub(crate) fn set_issuer_keys(table: &MapData, issuer: &str, keys: &[CheckedKey]) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let mut rows: BTreeMap<Vec<u8>, Vec<JwtSigningKey>> = BTreeMap::new();
    for (kid, raw) in table {
        let entries = parse_row(raw);
        if entries.iter().any(|e| e.issuer == issuer) {
            rows.insert(
                kid.clone(),
                entries.into_iter().filter(|e| e.issuer != issuer).collect(),
            );
        }
    }
    for key in keys {
        let kid = key.kid.as_bytes().to_vec();
        let entries = rows
            .entry(kid.clone())
            .or_insert_with(|| table.get(&kid).map(|raw| parse_row(raw)).unwrap_or_default());
        entries.push(key.entry.clone());
    }
    let mut writes = Vec::new();
    for (kid, entries) in rows {
        let new = (!entries.is_empty()).then(|| row(&entries));
        if table.get(&kid) != new.as_ref() {
            writes.push((kid, new));
        }
    }
    writes
}

/// The writes that remove every key of `issuer` from the signing-keys table `table`.
pub(crate) fn remove_issuer_keys(table: &MapData, issuer: &str) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    set_issuer_keys(table, issuer, &[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hosts_and_constraints() {
        assert_eq!(
            url_host("https://User@Login.Example.com:8443/v2.0?x"),
            "login.example.com"
        );
        assert!(constraint_fits("https://limited.facebook.com", "https://facebook.com"));
        assert!(!constraint_fits("https://facebook.com", "https://limited.facebook.com"));
        assert!(!constraint_fits("https://evilfacebook.com", "https://facebook.com"));
    }

    #[test]
    fn ec_keys_convert_and_bad_points_do_not() {
        let key = consort_crypto::SigningKey::generate(consort_crypto::Curve::P256);
        let jwk: Value =
            serde_json::from_str(&crate::js::host::pub_pem_to_jwk(&key.verifying_key().to_pem(), "k1").unwrap())
                .unwrap();
        let keys = check_jwks("https://issuer", &json!({"keys": [jwk.clone()]})).unwrap();
        assert_eq!(keys[0].entry.public_key.trim(), key.verifying_key().to_pem().trim());
        let mut bad = jwk;
        bad["y"] = bad["x"].clone();
        let err = check_jwks("https://issuer", &json!({"keys": [bad]})).unwrap_err();
        assert!(err.contains("not a point"), "{err}");
    }
}
