//! Sealed-secret formats: what a platform writes to disk in place of a secret.
//!
//! Each format starts with a tag naming it, so a file sealed by one platform is refused by another with a clear
//! error instead of being misread. The virtual format is a stand-in: the tag and the plaintext, no encryption,
//! because a platform without hardware has no key that the host could not read as easily as the file. Its secrecy
//! comes only from the file's mode (0600). The SNP format is AES-256-GCM under a key the SEV firmware derives from
//! the chip's VCEK and the guest's measurement, so only the same code on the same chip can unseal it.

use consort_crypto::{Aes256GcmKey, GCM_IV_SIZE, GCM_TAG_SIZE};

use crate::AttestError;

/// The tag of the virtual platform's stand-in format.
pub const VIRTUAL_SEAL_TAG: &[u8] = b"consort-sealed:Insecure_Virtual:v1\n";
/// The tag of the SNP platform's format.
pub const SNP_SEAL_TAG: &[u8] = b"consort-sealed:AMD_SEV_SNP_v1:v1\n";

fn other_platform(sealed: &[u8]) -> AttestError {
    if sealed.starts_with(SNP_SEAL_TAG) {
        AttestError::Sealing("sealed by the AMD_SEV_SNP_v1 platform".into())
    } else if sealed.starts_with(VIRTUAL_SEAL_TAG) {
        AttestError::Sealing("sealed by the Insecure_Virtual platform".into())
    } else {
        AttestError::Sealing("not a sealed secret (unknown format tag)".into())
    }
}

/// The virtual stand-in: the tag followed by the plaintext, unencrypted.
pub fn virtual_seal(plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(VIRTUAL_SEAL_TAG.len() + plaintext.len());
    out.extend_from_slice(VIRTUAL_SEAL_TAG);
    out.extend_from_slice(plaintext);
    out
}

/// Reverses [`virtual_seal`].
pub fn virtual_unseal(sealed: &[u8]) -> Result<Vec<u8>, AttestError> {
    match sealed.strip_prefix(VIRTUAL_SEAL_TAG) {
        Some(plaintext) => Ok(plaintext.to_vec()),
        None => Err(other_platform(sealed)),
    }
}

/// AES-256-GCM under `key` with a fresh random IV: tag || IV || GCM tag || ciphertext. The format tag is
/// authenticated as associated data.
pub fn aead_seal(key: &Aes256GcmKey, plaintext: &[u8]) -> Vec<u8> {
    let iv: [u8; GCM_IV_SIZE] = consort_crypto::random_array();
    let (ciphertext, tag) = key.encrypt(&iv, plaintext, SNP_SEAL_TAG);
    let mut out = Vec::with_capacity(SNP_SEAL_TAG.len() + GCM_IV_SIZE + GCM_TAG_SIZE + ciphertext.len());
    out.extend_from_slice(SNP_SEAL_TAG);
    out.extend_from_slice(&iv);
    out.extend_from_slice(&tag);
    out.extend_from_slice(&ciphertext);
    out
}

/// Reverses [`aead_seal`]; refuses other formats and any altered byte.
pub fn aead_unseal(key: &Aes256GcmKey, sealed: &[u8]) -> Result<Vec<u8>, AttestError> {
    let body = sealed
        .strip_prefix(SNP_SEAL_TAG)
        .ok_or_else(|| other_platform(sealed))?;
    if body.len() < GCM_IV_SIZE + GCM_TAG_SIZE {
        return Err(AttestError::Sealing("sealed secret is truncated".into()));
    }
    let (iv, rest) = body.split_at(GCM_IV_SIZE);
    let (tag, ciphertext) = rest.split_at(GCM_TAG_SIZE);
    let iv: [u8; GCM_IV_SIZE] = iv.try_into().map_err(|_| AttestError::Sealing("bad IV".into()))?;
    let tag: [u8; GCM_TAG_SIZE] = tag.try_into().map_err(|_| AttestError::Sealing("bad tag".into()))?;
    key.decrypt(&iv, ciphertext, &tag, SNP_SEAL_TAG)
        .map_err(|_| AttestError::Sealing("authentication failed: altered, or sealed under another key".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_round_trip_and_foreign_formats() {
        let sealed = virtual_seal(b"secret");
        assert_eq!(virtual_unseal(&sealed).unwrap(), b"secret");
        assert!(matches!(virtual_unseal(b"secret"), Err(AttestError::Sealing(_))));
        let key = Aes256GcmKey::from_bytes([1; 32]);
        let snp = aead_seal(&key, b"secret");
        let err = virtual_unseal(&snp).unwrap_err();
        assert!(err.to_string().contains("AMD_SEV_SNP_v1"), "{err}");
        assert!(aead_unseal(&key, &sealed)
            .unwrap_err()
            .to_string()
            .contains("Insecure_Virtual"));
    }

    #[test]
    fn aead_round_trip_and_tamper() {
        let key = Aes256GcmKey::from_bytes([2; 32]);
        let sealed = aead_seal(&key, b"ledger secret");
        assert_eq!(aead_unseal(&key, &sealed).unwrap(), b"ledger secret");
        for i in SNP_SEAL_TAG.len()..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(aead_unseal(&key, &bad).is_err(), "flip at {i}");
        }
        assert!(aead_unseal(&Aes256GcmKey::from_bytes([3; 32]), &sealed).is_err());
        assert!(aead_unseal(&key, &sealed[..SNP_SEAL_TAG.len() + 5]).is_err());
    }
}
