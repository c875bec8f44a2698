//! Consort's cryptographic toolbox: hashes, ECDSA, AES-GCM, RSA-OAEP, Shamir sharing, X.509 and identities behind a
//! byte-level API.
//!
//! Every other crate reaches cryptography through this one, so there is one line of RustCrypto versions in the
//! workspace and one place to audit. Nothing here is hand-written cryptography: it wraps RustCrypto (sha2, hmac,
//! p256, p384, ecdsa, aes-gcm, rsa), vsss-rs (Shamir over GF(256)), rcgen and x509-parser.
#![forbid(unsafe_code)]
#![warn(unreachable_pub, missing_docs)]

pub mod aead;
pub mod csr;
pub mod ecdsa;
mod error;
pub mod hash;
pub mod jose;
pub mod oaep;
pub mod shamir;
pub mod x509;

pub use aead::{AeadError, Aes256GcmKey, GCM_IV_SIZE, GCM_TAG_SIZE};
pub use ecdsa::{low_s_raw, malleate_raw, s_form_raw, Curve, HashAlg, SForm, SigningKey, VerifyingKey};
pub use error::{CryptoError, SharedError, X509ParseError};
pub use hash::{hmac_sha256, sha256, sha384, Sha256Hasher, SHA256_SIZE};
/// The RNG trait (rand_core 0.6) the crate's randomised functions take, so callers need not name rand_core.
pub use rand_core::CryptoRngCore;
pub use shamir::{ShamirError, Share, SharingFault};
pub use x509::{CertParams, ParsedCert};

/// Fills a fresh buffer with `n` bytes from the operating system's CSPRNG.
pub fn random_bytes(n: usize) -> Vec<u8> {
    use rand_core::RngCore;
    let mut out = vec![0u8; n];
    rand_core::OsRng.fill_bytes(&mut out);
    out
}

/// Fills a fixed-size array with bytes from the operating system's CSPRNG.
pub fn random_array<const N: usize>() -> [u8; N] {
    use rand_core::RngCore;
    let mut out = [0u8; N];
    rand_core::OsRng.fill_bytes(&mut out);
    out
}

/// CCF's identity of a certificate holder (members, users): hex SHA-256 of the certificate's DER.
pub fn cert_id(cert_der: &[u8]) -> String {
    hex::encode(sha256(cert_der))
}

/// CCF's identity of a node: hex SHA-256 of its public key's DER (SubjectPublicKeyInfo).
pub fn key_id(spki_der: &[u8]) -> String {
    hex::encode(sha256(spki_der))
}

/// RSA key pairs for members' recovery-share encryption (RSA-OAEP, as CCF uses).
pub mod rsa_keys {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};

    /// Size of generated member encryption keys, in bits (CCF's keygenerator.sh uses 2048).
    pub const MEMBER_ENCRYPTION_KEY_BITS: usize = 2048;

    /// Generates an RSA key pair; returns (PKCS#8 private key PEM, SubjectPublicKeyInfo public key PEM).
    pub fn generate_pem(bits: usize) -> Result<(String, String), crate::CryptoError> {
        let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, bits)?;
        let private = key.to_pkcs8_pem(LineEnding::LF)?;
        let public = key.to_public_key().to_public_key_pem(LineEnding::LF)?;
        Ok((private.to_string(), public))
    }

    /// The SubjectPublicKeyInfo PEM of the RSA private key in `private_pem` (PKCS#8).
    pub fn public_pem(private_pem: &str) -> Result<String, crate::CryptoError> {
        use rsa::pkcs8::DecodePrivateKey;
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(private_pem)?;
        Ok(key.to_public_key().to_public_key_pem(LineEnding::LF)?)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn public_pem_matches_the_generated_one() {
            let (private, public) = super::generate_pem(1024).unwrap();
            assert_eq!(super::public_pem(&private).unwrap(), public);
            assert!(super::public_pem("not a key").is_err());
        }

        #[test]
        fn generates_parseable_pems() {
            let (private, public) = super::generate_pem(1024).unwrap();
            assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"));
            assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));
        }
    }
}
