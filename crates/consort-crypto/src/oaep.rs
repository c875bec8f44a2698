//! RSA-OAEP with SHA-256 (label empty, MGF1 with SHA-256), the encryption CCF uses for members' recovery shares.
//!
//! A ciphertext made by [`encrypt`] is what `openssl pkeyutl -decrypt -pkeyopt rsa_padding_mode:oaep -pkeyopt
//! rsa_oaep_md:sha256` decrypts (OpenSSL's MGF1 digest follows the OAEP digest), which is the command CCF's
//! `submit_recovery_share.sh` runs on a member's machine. Keys come as PEM: public keys as SubjectPublicKeyInfo
//! (`PUBLIC KEY`, what `openssl rsa -pubout` writes and CCF registers) or PKCS#1 (`RSA PUBLIC KEY`); private keys
//! as PKCS#8 (`PRIVATE KEY`, what `openssl genrsa` writes) or PKCS#1 (`RSA PRIVATE KEY`). The RSA arithmetic and
//! the padding are the `rsa` crate's.
//!
//! Randomness is injected (`&mut impl CryptoRngCore`), as everywhere in the cores.

use crate::CryptoError;
use rand_core::CryptoRngCore;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};

/// The PEM blocks accepted for a public key.
const PUBLIC_KEY_BLOCKS: &str = "PUBLIC KEY or RSA PUBLIC KEY";
/// The PEM blocks accepted for a private key.
const PRIVATE_KEY_BLOCKS: &str = "PRIVATE KEY or RSA PRIVATE KEY";

/// Encrypts `plaintext` to the RSA public key in `public_key_pem` with OAEP-SHA-256. The plaintext must be at most
/// the key's size in bytes minus 66 (190 bytes for a 2048-bit key); a longer one is an error.
pub fn encrypt(public_key_pem: &str, plaintext: &[u8], rng: &mut impl CryptoRngCore) -> Result<Vec<u8>, CryptoError> {
    let key = public_key_from_pem(public_key_pem)?;
    key.encrypt(rng, Oaep::new::<sha2::Sha256>(), plaintext)
        .map_err(|e| CryptoError::OaepEncrypt(e.into()))
}

/// Decrypts an OAEP-SHA-256 `ciphertext` with the RSA private key in `private_key_pem`. A wrong key, a truncated
/// or altered ciphertext all give [`CryptoError::OaepDecrypt`] (OAEP does not say which, by design).
pub fn decrypt(private_key_pem: &str, ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let key = private_key_from_pem(private_key_pem)?;
    key.decrypt(Oaep::new::<sha2::Sha256>(), ciphertext)
        .map_err(|e| CryptoError::OaepDecrypt(e.into()))
}

/// Reads an RSA public key from the first PEM block that holds one (`PUBLIC KEY` or `RSA PUBLIC KEY`).
fn public_key_from_pem(pem_text: &str) -> Result<RsaPublicKey, CryptoError> {
    for block in pem::parse_many(pem_text)? {
        match block.tag() {
            "PUBLIC KEY" => return Ok(RsaPublicKey::from_public_key_der(block.contents())?),
            "RSA PUBLIC KEY" => {
                return RsaPublicKey::from_pkcs1_der(block.contents()).map_err(|e| CryptoError::Pkcs1Key(e.into()))
            }
            _ => continue,
        }
    }
    Err(CryptoError::PemBlockMissing {
        expected: PUBLIC_KEY_BLOCKS,
    })
}

/// Reads an RSA private key from the first PEM block that holds one (`PRIVATE KEY` or `RSA PRIVATE KEY`).
fn private_key_from_pem(pem_text: &str) -> Result<RsaPrivateKey, CryptoError> {
    for block in pem::parse_many(pem_text)? {
        match block.tag() {
            "PRIVATE KEY" => return Ok(RsaPrivateKey::from_pkcs8_der(block.contents())?),
            "RSA PRIVATE KEY" => {
                return RsaPrivateKey::from_pkcs1_der(block.contents()).map_err(|e| CryptoError::Pkcs1Key(e.into()))
            }
            _ => continue,
        }
    }
    Err(CryptoError::PemBlockMissing {
        expected: PRIVATE_KEY_BLOCKS,
    })
}
