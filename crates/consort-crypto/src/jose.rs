//! The key and signature forms JSON Web Tokens use (RFC 7515/7518): RS256 (RSASSA-PKCS1-v1_5 with SHA-256)
//! verification, and public keys published as JWKs (RSA `n`/`e`, EC `crv`/`x`/`y`) turned into the
//! SubjectPublicKeyInfo PEM that governance stores. ES256/ES384 verification is [`crate::VerifyingKey::verify_raw`]
//! (a JWS carries raw r||s). The arithmetic and padding are the `rsa`, `p256` and `p384` crates'.

use crate::{CryptoError, Curve, VerifyingKey};
use rsa::pkcs8::{DecodePublicKey, EncodePublicKey, LineEnding};
use rsa::{BigUint, Pkcs1v15Sign, RsaPublicKey};

/// Smallest RSA modulus accepted for token signatures, in bits (RFC 7518 section 3.3 requires 2048).
pub const MIN_RSA_JWT_KEY_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (bounds the cost of one verification).
pub const MAX_RSA_JWT_KEY_BITS: usize = 8192;

/// Reads an RSA `PUBLIC KEY` (SubjectPublicKeyInfo) PEM, refusing moduli outside the accepted sizes.
fn rsa_public_key(spki_pem: &str) -> Result<RsaPublicKey, CryptoError> {
    let key = RsaPublicKey::from_public_key_pem(spki_pem)?;
    let bits = rsa::traits::PublicKeyParts::n(&key).bits();
    if !(MIN_RSA_JWT_KEY_BITS..=MAX_RSA_JWT_KEY_BITS).contains(&bits) {
        return Err(CryptoError::Rsa(rsa::Error::InvalidModulus.into()));
    }
    Ok(key)
}

/// Whether `spki_pem` holds an RSA public key (rather than an EC one).
pub fn is_rsa_public_key(spki_pem: &str) -> bool {
    RsaPublicKey::from_public_key_pem(spki_pem).is_ok()
}

/// Verifies an RS256 signature: RSASSA-PKCS1-v1_5 over SHA-256 of `msg`, by the RSA key in `spki_pem`.
pub fn verify_rs256(spki_pem: &str, msg: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
    let key = rsa_public_key(spki_pem)?;
    key.verify(Pkcs1v15Sign::new::<sha2::Sha256>(), &crate::sha256(msg), signature)
        .map_err(|_| CryptoError::BadSignature)
}

/// Signs `msg` with RS256 under the PKCS#8 RSA private key in `private_pem` (for tests and tools that play an
/// identity provider).
pub fn sign_rs256(private_pem: &str, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
    use rsa::pkcs8::DecodePrivateKey;
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(private_pem)?;
    Ok(key.sign(Pkcs1v15Sign::new::<sha2::Sha256>(), &crate::sha256(msg))?)
}

/// The SubjectPublicKeyInfo PEM of the RSA public key with modulus `n` and exponent `e` (big-endian bytes, as a
/// JWK's base64url-decoded `n` and `e`).
pub fn rsa_spki_pem(n: &[u8], e: &[u8]) -> Result<String, CryptoError> {
    let key = RsaPublicKey::new(BigUint::from_bytes_be(n), BigUint::from_bytes_be(e))?;
    let pem = key.to_public_key_pem(LineEnding::LF)?;
    rsa_public_key(&pem)?;
    Ok(pem)
}

/// The modulus and exponent (big-endian bytes) of the RSA key in `spki_pem`: what a JWK publishes.
pub fn rsa_components(spki_pem: &str) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
    use rsa::traits::PublicKeyParts;
    let key = RsaPublicKey::from_public_key_pem(spki_pem)?;
    Ok((key.n().to_bytes_be(), key.e().to_bytes_be()))
}

/// The SubjectPublicKeyInfo PEM of the EC public key on `curve` at affine coordinates (`x`, `y`), each exactly the
/// curve's field size in bytes (a JWK's `x` and `y`).
pub fn ec_spki_pem(curve: Curve, x: &[u8], y: &[u8]) -> Result<String, CryptoError> {
    let size = curve.raw_signature_size() / 2;
    if x.len() != size || y.len() != size {
        return Err(CryptoError::PublicKey(p256::pkcs8::spki::Error::KeyMalformed));
    }
    let mut sec1 = Vec::with_capacity(1 + 2 * size);
    sec1.push(0x04);
    sec1.extend_from_slice(x);
    sec1.extend_from_slice(y);
    let key = match curve {
        Curve::P256 => p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).map(VerifyingKey::P256),
        Curve::P384 => p384::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).map(VerifyingKey::P384),
    }
    .map_err(|_| CryptoError::PublicKey(p256::pkcs8::spki::Error::KeyMalformed))?;
    Ok(key.to_pem())
}

/// The affine coordinates (`x`, `y`) of an EC public key: what a JWK publishes.
pub fn ec_coordinates(key: &VerifyingKey) -> (Vec<u8>, Vec<u8>) {
    let point = match key {
        VerifyingKey::P256(k) => k.to_encoded_point(false).as_bytes().to_vec(),
        VerifyingKey::P384(k) => k.to_encoded_point(false).as_bytes().to_vec(),
    };
    // An uncompressed SEC1 point is 0x04 || x || y, x and y of equal size.
    let coords = point.get(1..).unwrap_or_default();
    let (x, y) = coords.split_at(coords.len() / 2);
    (x.to_vec(), y.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HashAlg, SigningKey};

    #[test]
    fn rs256_signs_and_verifies_and_refuses_changes() {
        let (private, public) = crate::rsa_keys::generate_pem(2048).unwrap();
        let sig = sign_rs256(&private, b"header.payload").unwrap();
        verify_rs256(&public, b"header.payload", &sig).unwrap();
        assert_eq!(
            verify_rs256(&public, b"header.payloaX", &sig),
            Err(CryptoError::BadSignature)
        );
        let (n, e) = rsa_components(&public).unwrap();
        assert_eq!(rsa_spki_pem(&n, &e).unwrap(), public);
        assert!(is_rsa_public_key(&public));
        let (_, small) = crate::rsa_keys::generate_pem(1024).unwrap();
        assert!(verify_rs256(&small, b"x", &sig).is_err(), "a 1024-bit key is refused");
    }

    #[test]
    fn ec_keys_round_trip_through_coordinates() {
        for curve in [Curve::P256, Curve::P384] {
            let key = SigningKey::generate(curve);
            let (x, y) = ec_coordinates(&key.verifying_key());
            let pem = ec_spki_pem(curve, &x, &y).unwrap();
            assert_eq!(pem, key.verifying_key().to_pem());
            assert!(!is_rsa_public_key(&pem));
            let v = VerifyingKey::from_pem(&pem).unwrap();
            let hash: HashAlg = curve.default_hash();
            v.verify_raw(b"m", hash, &key.sign_raw(b"m", hash)).unwrap();
            assert!(ec_spki_pem(curve, &x[1..], &y).is_err());
        }
    }
}
