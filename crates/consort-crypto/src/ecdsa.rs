//! ECDSA over P-256 and P-384: key generation, PEM/DER import and export, signing and verification.
//!
//! Signatures are produced over a digest chosen by the caller ([`HashAlg`]), because CCF mixes them: Merkle roots
//! are signed as SHA-256 pre-hashed digests with P-384 node keys, COSE ES384 hashes with SHA-384, and X.509
//! signatures use the hash named by the certificate's algorithm.

use crate::{sha256, sha384, CryptoError};
use p256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding};

/// The elliptic curves Consort signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    /// NIST P-256 (secp256r1): members and users by default, ES256.
    P256,
    /// NIST P-384 (secp384r1): node and service keys, as CCF uses; ES384.
    P384,
}

/// Digest algorithms used before ECDSA signing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlg {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
}

impl HashAlg {
    /// The digest of `msg` under this algorithm (32 or 48 bytes).
    pub fn digest(self, msg: &[u8]) -> Vec<u8> {
        match self {
            HashAlg::Sha256 => sha256(msg).to_vec(),
            HashAlg::Sha384 => sha384(msg).to_vec(),
        }
    }
}

impl Curve {
    /// The hash conventionally paired with the curve (ES256 / ES384, ecdsa-with-SHA256 / SHA384).
    pub fn default_hash(self) -> HashAlg {
        match self {
            Curve::P256 => HashAlg::Sha256,
            Curve::P384 => HashAlg::Sha384,
        }
    }
    /// Size in bytes of a raw (r||s) signature on this curve.
    pub fn raw_signature_size(self) -> usize {
        match self {
            Curve::P256 => 64,
            Curve::P384 => 96,
        }
    }
}

/// An ECDSA private key.
#[derive(Clone)]
pub enum SigningKey {
    /// A P-256 private key.
    P256(p256::ecdsa::SigningKey),
    /// A P-384 private key.
    P384(p384::ecdsa::SigningKey),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({:?})", self.curve())
    }
}

/// An ECDSA public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifyingKey {
    /// A P-256 public key.
    P256(p256::ecdsa::VerifyingKey),
    /// A P-384 public key.
    P384(p384::ecdsa::VerifyingKey),
}

/// The result of DER/PEM-encoding a key this crate holds. Encoding fails only for keys the encoder cannot
/// represent, and every key here was parsed or generated on a supported curve.
fn encoded<T, E: std::fmt::Debug>(result: Result<T, E>) -> T {
    // invariant: encoding a valid P-256/P-384 key cannot fail (see above).
    result.expect("encoding a valid key cannot fail")
}

/// The result of signing a digest made by [`HashAlg::digest`]: 32 or 48 bytes, which both curves accept
/// (a longer digest is truncated, a shorter one padded), so signing cannot fail.
fn signable(result: Result<Vec<u8>, CryptoError>) -> Vec<u8> {
    // invariant: a SHA-256 or SHA-384 digest is always signable on P-256 and P-384 (see above).
    result.expect("digests of 32 or 48 bytes are always signable")
}

impl SigningKey {
    /// A fresh key on `curve` from the operating system's CSPRNG.
    pub fn generate(curve: Curve) -> Self {
        match curve {
            Curve::P256 => SigningKey::P256(p256::ecdsa::SigningKey::random(&mut rand_core::OsRng)),
            Curve::P384 => SigningKey::P384(p384::ecdsa::SigningKey::random(&mut rand_core::OsRng)),
        }
    }

    /// The curve of this key.
    pub fn curve(&self) -> Curve {
        match self {
            SigningKey::P256(_) => Curve::P256,
            SigningKey::P384(_) => Curve::P384,
        }
    }

    /// Reads a PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`, as `openssl ecparam -genkey` writes, possibly after
    /// an `EC PARAMETERS` block) PEM private key on P-256 or P-384.
    pub fn from_pem(pem_text: &str) -> Result<Self, CryptoError> {
        let blocks = pem::parse_many(pem_text)?;
        for block in blocks {
            match block.tag() {
                "PRIVATE KEY" => return Self::from_pkcs8_der(block.contents()),
                "EC PRIVATE KEY" => return Self::from_sec1_der(block.contents()),
                _ => continue,
            }
        }
        Err(CryptoError::PemBlockMissing {
            expected: "PRIVATE KEY or EC PRIVATE KEY",
        })
    }

    /// Reads a PKCS#8 DER private key on P-384 or P-256.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, CryptoError> {
        if let Ok(k) = p384::SecretKey::from_pkcs8_der(der) {
            return Ok(SigningKey::P384(k.into()));
        }
        p256::SecretKey::from_pkcs8_der(der)
            .map(|k| SigningKey::P256(k.into()))
            .map_err(CryptoError::PrivateKey)
    }

    /// Reads a SEC1 (`EC PRIVATE KEY`) DER private key on P-384 or P-256.
    pub fn from_sec1_der(der: &[u8]) -> Result<Self, CryptoError> {
        if let Ok(k) = p384::SecretKey::from_sec1_der(der) {
            return Ok(SigningKey::P384(k.into()));
        }
        p256::SecretKey::from_sec1_der(der)
            .map(|k| SigningKey::P256(k.into()))
            .map_err(CryptoError::Sec1Key)
    }

    /// PKCS#8 PEM encoding of the private key.
    pub fn to_pkcs8_pem(&self) -> String {
        let pem = match self {
            SigningKey::P256(k) => p256::SecretKey::from(k).to_pkcs8_pem(LineEnding::LF),
            SigningKey::P384(k) => p384::SecretKey::from(k).to_pkcs8_pem(LineEnding::LF),
        };
        encoded(pem).to_string()
    }

    /// PKCS#8 DER encoding of the private key.
    pub fn to_pkcs8_der(&self) -> Vec<u8> {
        let doc = match self {
            SigningKey::P256(k) => p256::SecretKey::from(k).to_pkcs8_der(),
            SigningKey::P384(k) => p384::SecretKey::from(k).to_pkcs8_der(),
        };
        encoded(doc).as_bytes().to_vec()
    }

    /// The public half of this key.
    pub fn verifying_key(&self) -> VerifyingKey {
        match self {
            SigningKey::P256(k) => VerifyingKey::P256(*k.verifying_key()),
            SigningKey::P384(k) => VerifyingKey::P384(*k.verifying_key()),
        }
    }

    /// Signs an already computed digest; returns a DER signature.
    pub fn sign_prehash_der(&self, digest: &[u8]) -> Result<Vec<u8>, CryptoError> {
        Ok(match self {
            SigningKey::P256(k) => {
                let s: p256::ecdsa::Signature = k.sign_prehash(digest).map_err(signing_err)?;
                s.to_der().as_bytes().to_vec()
            }
            SigningKey::P384(k) => {
                let s: p384::ecdsa::Signature = k.sign_prehash(digest).map_err(signing_err)?;
                s.to_der().as_bytes().to_vec()
            }
        })
    }

    /// Signs an already computed digest; returns a raw r||s signature (as COSE uses).
    pub fn sign_prehash_raw(&self, digest: &[u8]) -> Result<Vec<u8>, CryptoError> {
        Ok(match self {
            SigningKey::P256(k) => {
                let s: p256::ecdsa::Signature = k.sign_prehash(digest).map_err(signing_err)?;
                s.to_bytes().to_vec()
            }
            SigningKey::P384(k) => {
                let s: p384::ecdsa::Signature = k.sign_prehash(digest).map_err(signing_err)?;
                s.to_bytes().to_vec()
            }
        })
    }

    /// Hashes `msg` with `hash` and signs; DER signature.
    pub fn sign_der(&self, msg: &[u8], hash: HashAlg) -> Vec<u8> {
        signable(self.sign_prehash_der(&hash.digest(msg)))
    }

    /// Hashes `msg` with `hash` and signs; raw r||s signature.
    pub fn sign_raw(&self, msg: &[u8], hash: HashAlg) -> Vec<u8> {
        signable(self.sign_prehash_raw(&hash.digest(msg)))
    }
}

impl VerifyingKey {
    /// Reads a DER SubjectPublicKeyInfo on P-256 or P-384.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, CryptoError> {
        if let Ok(k) = p384::ecdsa::VerifyingKey::from_public_key_der(der) {
            return Ok(VerifyingKey::P384(k));
        }
        p256::ecdsa::VerifyingKey::from_public_key_der(der)
            .map(VerifyingKey::P256)
            .map_err(CryptoError::PublicKey)
    }

    /// Reads a PEM `PUBLIC KEY`.
    pub fn from_pem(pem_text: &str) -> Result<Self, CryptoError> {
        let block = pem::parse(pem_text)?;
        if block.tag() != "PUBLIC KEY" {
            return Err(CryptoError::PemBlockUnexpected {
                expected: "PUBLIC KEY",
                found: block.tag().to_string(),
            });
        }
        Self::from_spki_der(block.contents())
    }

    /// The curve of this key.
    pub fn curve(&self) -> Curve {
        match self {
            VerifyingKey::P256(_) => Curve::P256,
            VerifyingKey::P384(_) => Curve::P384,
        }
    }

    /// DER SubjectPublicKeyInfo.
    pub fn to_spki_der(&self) -> Vec<u8> {
        let doc = match self {
            VerifyingKey::P256(k) => k.to_public_key_der(),
            VerifyingKey::P384(k) => k.to_public_key_der(),
        };
        encoded(doc).as_bytes().to_vec()
    }

    /// PEM `PUBLIC KEY`.
    pub fn to_pem(&self) -> String {
        let pem = match self {
            VerifyingKey::P256(k) => k.to_public_key_pem(LineEnding::LF),
            VerifyingKey::P384(k) => k.to_public_key_pem(LineEnding::LF),
        };
        encoded(pem)
    }

    /// Verifies a DER signature over a digest.
    pub fn verify_prehash_der(&self, digest: &[u8], sig_der: &[u8]) -> Result<(), CryptoError> {
        match self {
            VerifyingKey::P256(k) => {
                let s = p256::ecdsa::Signature::from_der(sig_der).map_err(sig_err)?;
                k.verify_prehash(digest, &s).map_err(|_| CryptoError::BadSignature)
            }
            VerifyingKey::P384(k) => {
                let s = p384::ecdsa::Signature::from_der(sig_der).map_err(sig_err)?;
                k.verify_prehash(digest, &s).map_err(|_| CryptoError::BadSignature)
            }
        }
    }

    /// Verifies a raw r||s signature over a digest.
    pub fn verify_prehash_raw(&self, digest: &[u8], sig_raw: &[u8]) -> Result<(), CryptoError> {
        match self {
            VerifyingKey::P256(k) => {
                let s = p256::ecdsa::Signature::from_slice(sig_raw).map_err(sig_err)?;
                k.verify_prehash(digest, &s).map_err(|_| CryptoError::BadSignature)
            }
            VerifyingKey::P384(k) => {
                let s = p384::ecdsa::Signature::from_slice(sig_raw).map_err(sig_err)?;
                k.verify_prehash(digest, &s).map_err(|_| CryptoError::BadSignature)
            }
        }
    }

    /// Hashes `msg` with `hash`, verifies a raw r||s signature (either form of s, as OpenSSL and so CCF accept)
    /// and returns its canonical encoding: the same r with the low form of s ([`low_s_raw`]). Both forms of one
    /// signature give the same canonical bytes, so a caller that keys anything on a signature keys it on these.
    pub fn verify_raw_canonical(&self, msg: &[u8], hash: HashAlg, sig_raw: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.verify_raw(msg, hash, sig_raw)?;
        low_s_raw(self.curve(), sig_raw)
    }

    /// Hashes `msg` with `hash` and verifies a DER signature.
    pub fn verify_der(&self, msg: &[u8], hash: HashAlg, sig_der: &[u8]) -> Result<(), CryptoError> {
        self.verify_prehash_der(&hash.digest(msg), sig_der)
    }

    /// Hashes `msg` with `hash` and verifies a raw r||s signature.
    pub fn verify_raw(&self, msg: &[u8], hash: HashAlg, sig_raw: &[u8]) -> Result<(), CryptoError> {
        self.verify_prehash_raw(&hash.digest(msg), sig_raw)
    }
}

/// Which of the two valid values of `s` a raw ECDSA signature carries. If (r, s) verifies, so does (r, n - s)
/// for the same key and message (n: the group order); exactly one of them is at most n / 2, the low form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SForm {
    /// s <= n / 2 (what Bitcoin-style verifiers require).
    Low,
    /// s > n / 2: OpenSSL, python-ecdsa (so CCF's tools) and the p256/p384 crates sign without normalising s,
    /// so about half of their signatures have this form.
    High,
}

/// The form of `s` in a raw r||s signature on `curve`; an error if the bytes are not a signature.
pub fn s_form_raw(curve: Curve, sig_raw: &[u8]) -> Result<SForm, CryptoError> {
    let high = match curve {
        Curve::P256 => p256::ecdsa::Signature::from_slice(sig_raw).map(|s| s.normalize_s().is_some()),
        Curve::P384 => p384::ecdsa::Signature::from_slice(sig_raw).map(|s| s.normalize_s().is_some()),
    }
    .map_err(sig_err)?;
    Ok(if high { SForm::High } else { SForm::Low })
}

/// The low-S form of a raw r||s signature on `curve`: the bytes themselves if s is already low, else (r, n - s).
pub fn low_s_raw(curve: Curve, sig_raw: &[u8]) -> Result<Vec<u8>, CryptoError> {
    Ok(match curve {
        Curve::P256 => {
            let s = p256::ecdsa::Signature::from_slice(sig_raw).map_err(sig_err)?;
            s.normalize_s().unwrap_or(s).to_bytes().to_vec()
        }
        Curve::P384 => {
            let s = p384::ecdsa::Signature::from_slice(sig_raw).map_err(sig_err)?;
            s.normalize_s().unwrap_or(s).to_bytes().to_vec()
        }
    })
}

/// The other valid signature (r, n - s) for the same key and message: what anybody holding a signature can
/// compute without the key. Replay protection must not tell the two apart; tests use this to check that.
pub fn malleate_raw(curve: Curve, sig_raw: &[u8]) -> Result<Vec<u8>, CryptoError> {
    match curve {
        Curve::P256 => {
            let sig = p256::ecdsa::Signature::from_slice(sig_raw).map_err(sig_err)?;
            let (r, s) = sig.split_scalars();
            p256::ecdsa::Signature::from_scalars(r.to_bytes(), (-*s).to_bytes())
                .map(|m| m.to_bytes().to_vec())
                .map_err(sig_err)
        }
        Curve::P384 => {
            let sig = p384::ecdsa::Signature::from_slice(sig_raw).map_err(sig_err)?;
            let (r, s) = sig.split_scalars();
            p384::ecdsa::Signature::from_scalars(r.to_bytes(), (-*s).to_bytes())
                .map(|m| m.to_bytes().to_vec())
                .map_err(sig_err)
        }
    }
}

/// Signature bytes that are not a well-formed signature (p256 and p384 share the ecdsa crate's error type).
fn sig_err(e: p256::ecdsa::Error) -> CryptoError {
    CryptoError::SignatureFormat(e.into())
}

/// A digest the key refuses to sign.
fn signing_err(e: p256::ecdsa::Error) -> CryptoError {
    CryptoError::Signing(e.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_both_curves_both_encodings() {
        for curve in [Curve::P256, Curve::P384] {
            let sk = SigningKey::generate(curve);
            let vk = sk.verifying_key();
            for hash in [HashAlg::Sha256, HashAlg::Sha384] {
                let der = sk.sign_der(b"msg", hash);
                vk.verify_der(b"msg", hash, &der).unwrap();
                assert_eq!(vk.verify_der(b"msh", hash, &der), Err(CryptoError::BadSignature));
                let raw = sk.sign_raw(b"msg", hash);
                assert_eq!(raw.len(), curve.raw_signature_size());
                vk.verify_raw(b"msg", hash, &raw).unwrap();
                assert_eq!(vk.verify_raw(b"msh", hash, &raw), Err(CryptoError::BadSignature));
            }
            // A key of the other curve does not verify.
            let other = SigningKey::generate(curve).verifying_key();
            let der = sk.sign_der(b"msg", HashAlg::Sha256);
            assert!(other.verify_der(b"msg", HashAlg::Sha256, &der).is_err());
            // Garbage signatures are a typed error, not a panic.
            assert!(matches!(
                vk.verify_der(b"msg", HashAlg::Sha256, b"\x30\x01"),
                Err(CryptoError::SignatureFormat(_))
            ));
            assert!(vk.verify_raw(b"msg", HashAlg::Sha256, &[0u8; 3]).is_err());
        }
    }

    #[test]
    fn high_s_signatures_verify_as_openssl_accepts_them() {
        // CCF verifies with OpenSSL, which accepts both s and n - s; refusing high-S here would reject signatures
        // CCF accepts. Whatever is keyed by a signature must key it on its canonical form
        // (`verify_raw_canonical`) or on the signed bytes, never on the bytes as received.
        let sk = SigningKey::generate(Curve::P256);
        let digest = sha256(b"root");
        let der = sk.sign_prehash_der(&digest).unwrap();
        let low = p256::ecdsa::Signature::from_der(&der).unwrap();
        let (r, s) = low.split_scalars();
        let high = p256::ecdsa::Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
        assert_ne!(high, low);
        let vk = sk.verifying_key();
        vk.verify_prehash_der(&digest, high.to_der().as_bytes()).unwrap();
        vk.verify_prehash_raw(&digest, &high.to_bytes()).unwrap();
        // A non-minimal (BER) encoding of the same signature is refused, as OpenSSL refuses it.
        // Here: the SEQUENCE length in long form (0x81 L) although it is below 128.
        assert!(der[1] < 0x80);
        let ber = [&[0x30, 0x81, der[1]][..], &der[2..]].concat();
        assert!(vk.verify_prehash_der(&digest, &ber).is_err());
    }

    #[test]
    fn both_forms_of_s_verify_and_share_one_canonical_encoding() {
        for curve in [Curve::P256, Curve::P384] {
            let sk = SigningKey::generate(curve);
            let vk = sk.verifying_key();
            let hash = curve.default_hash();
            // p256/p384 sign without normalising s (like OpenSSL): take the low form of whatever came out.
            let sig = low_s_raw(curve, &sk.sign_raw(b"request", hash)).unwrap();
            assert_eq!(s_form_raw(curve, &sig), Ok(SForm::Low));
            let twin = malleate_raw(curve, &sig).unwrap();
            assert_ne!(twin, sig);
            assert_eq!(s_form_raw(curve, &twin), Ok(SForm::High));
            assert_eq!(malleate_raw(curve, &twin).unwrap(), sig);
            assert_eq!(vk.verify_raw_canonical(b"request", hash, &sig), Ok(sig.clone()));
            assert_eq!(vk.verify_raw_canonical(b"request", hash, &twin), Ok(sig.clone()));
            assert_eq!(low_s_raw(curve, &twin), Ok(sig.clone()));
            assert_eq!(low_s_raw(curve, &sig), Ok(sig.clone()));
            assert_eq!(
                vk.verify_raw_canonical(b"other", hash, &twin),
                Err(CryptoError::BadSignature)
            );
            assert!(matches!(
                low_s_raw(curve, &[0u8; 7]),
                Err(CryptoError::SignatureFormat(_))
            ));
        }
    }

    #[test]
    fn pem_round_trips() {
        for curve in [Curve::P256, Curve::P384] {
            let sk = SigningKey::generate(curve);
            let pem = sk.to_pkcs8_pem();
            let back = SigningKey::from_pem(&pem).unwrap();
            assert_eq!(back.curve(), curve);
            assert_eq!(back.verifying_key(), sk.verifying_key());
            let vk = sk.verifying_key();
            assert_eq!(VerifyingKey::from_pem(&vk.to_pem()).unwrap(), vk);
            assert_eq!(VerifyingKey::from_spki_der(&vk.to_spki_der()).unwrap(), vk);
        }
    }

    #[test]
    fn reads_openssl_sec1_key_with_parameters_block() {
        // Made with `openssl ecparam -name secp384r1 -genkey`, as CCF's keygenerator.sh does.
        let pem = "-----BEGIN EC PARAMETERS-----
BgUrgQQAIg==
-----END EC PARAMETERS-----
-----BEGIN EC PRIVATE KEY-----
MIGkAgEBBDCj+/4duBy2zYGyl2hrYa6paEA/XND+nj7c/3GYOLTH9tnz4jQNXSnv
MbdOFSoUqyegBwYFK4EEACKhZANiAAQU6d9CxRfvDgfokZ1njI9XVHjiaDkuJp7R
6wGEWB7jqYDTyRbU1fcT1mq5UYi1+9JJHsTrXB2mNOtqbIagzs/tH6Oa3k/1Yrxc
l5PNtzYrf8+OfULaY5k2RACrkxT1cRE=
-----END EC PRIVATE KEY-----
";
        let k = SigningKey::from_pem(pem).unwrap();
        assert_eq!(k.curve(), Curve::P384);
        let sig = k.sign_der(b"x", HashAlg::Sha384);
        k.verifying_key().verify_der(b"x", HashAlg::Sha384, &sig).unwrap();
    }

    #[test]
    fn malformed_keys_are_errors() {
        assert!(SigningKey::from_pem("not pem").is_err());
        assert!(SigningKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").is_err());
        assert!(VerifyingKey::from_spki_der(&[0x30, 0x00]).is_err());
    }
}
