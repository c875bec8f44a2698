//! AES-256-GCM with detached tags, as CCF's ledger uses it (12-byte IV, 16-byte tag).

use aes_gcm::aead::{AeadInPlace, KeyInit};

/// Size of the GCM tag in bytes.
pub const GCM_TAG_SIZE: usize = 16;
/// Size of the GCM IV in bytes.
pub const GCM_IV_SIZE: usize = 12;

/// Decryption failed: wrong key, tampered ciphertext, tag or additional data.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("AES-GCM authentication failed")]
pub struct AeadError;

/// A 256-bit AES-GCM key.
#[derive(Clone)]
pub struct Aes256GcmKey {
    raw: [u8; 32],
    cipher: aes_gcm::Aes256Gcm,
}

impl std::fmt::Debug for Aes256GcmKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Aes256GcmKey(..)")
    }
}

impl Aes256GcmKey {
    /// Wraps a raw 32-byte AES-256 key.
    pub fn from_bytes(raw: [u8; 32]) -> Self {
        let cipher = aes_gcm::Aes256Gcm::new(&raw.into());
        Self { raw, cipher }
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        Self::from_bytes(crate::random_array())
    }

    /// The raw key bytes (to seal or hand over the ledger secret).
    pub fn raw(&self) -> &[u8; 32] {
        &self.raw
    }

    /// Encrypts `plaintext` in place of a copy; returns (ciphertext, tag). `aad` is authenticated, not encrypted.
    pub fn encrypt(&self, iv: &[u8; GCM_IV_SIZE], plaintext: &[u8], aad: &[u8]) -> (Vec<u8>, [u8; GCM_TAG_SIZE]) {
        let mut buf = plaintext.to_vec();
        let tag = self
            .cipher
            .encrypt_in_place_detached(iv.into(), aad, &mut buf)
            // invariant: AES-GCM fails only for inputs beyond 64 GiB; ledger entries and snapshots are far smaller.
            .expect("AES-GCM encryption only fails for inputs beyond 64 GiB");
        (buf, tag.into())
    }

    /// Decrypts and authenticates; returns the plaintext or [`AeadError`].
    pub fn decrypt(
        &self,
        iv: &[u8; GCM_IV_SIZE],
        ciphertext: &[u8],
        tag: &[u8; GCM_TAG_SIZE],
        aad: &[u8],
    ) -> Result<Vec<u8>, AeadError> {
        let mut buf = ciphertext.to_vec();
        self.cipher
            .decrypt_in_place_detached(iv.into(), aad, &mut buf, tag.into())
            .map_err(|_| AeadError)?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper_detection() {
        let key = Aes256GcmKey::generate();
        let iv = [7u8; 12];
        let (ct, tag) = key.encrypt(&iv, b"secret orders", b"public header");
        assert_ne!(ct, b"secret orders");
        assert_eq!(key.decrypt(&iv, &ct, &tag, b"public header").unwrap(), b"secret orders");
        // Tampered additional data, ciphertext, tag, IV or key all fail.
        assert_eq!(key.decrypt(&iv, &ct, &tag, b"public headeR"), Err(AeadError));
        let mut bad = ct.clone();
        bad[0] ^= 1;
        assert_eq!(key.decrypt(&iv, &bad, &tag, b"public header"), Err(AeadError));
        let mut bad_tag = tag;
        bad_tag[15] ^= 1;
        assert_eq!(key.decrypt(&iv, &ct, &bad_tag, b"public header"), Err(AeadError));
        assert_eq!(key.decrypt(&[8u8; 12], &ct, &tag, b"public header"), Err(AeadError));
        assert_eq!(
            Aes256GcmKey::generate().decrypt(&iv, &ct, &tag, b"public header"),
            Err(AeadError)
        );
    }

    #[test]
    fn empty_plaintext_still_authenticates_aad() {
        let key = Aes256GcmKey::from_bytes([1u8; 32]);
        let (ct, tag) = key.encrypt(&[0u8; 12], b"", b"aad");
        assert!(ct.is_empty());
        assert!(key.decrypt(&[0u8; 12], &ct, &tag, b"aad").is_ok());
        assert!(key.decrypt(&[0u8; 12], &ct, &tag, b"aaD").is_err());
    }
}
