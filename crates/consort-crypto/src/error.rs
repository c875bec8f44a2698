//! Typed errors of the crypto crate, each keeping the dependency's error (pem, pkcs8, pkcs1, spki, sec1, ecdsa,
//! rsa, x509-parser, rcgen, UTF-8) as its source, and [`SharedError`], which lets such an error sit in a `Clone` enum.

use std::sync::Arc;

/// An X.509 or DER parse error from x509-parser.
pub type X509ParseError = x509_parser::nom::Err<x509_parser::error::X509Error>;

/// Errors from this crate. Every malformed input (PEM, DER, signature, key) maps to one of these; nothing panics.
/// Errors that come from a dependency keep it as their [`std::error::Error::source`].
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CryptoError {
    /// Bytes offered as a PEM document that are not UTF-8 text (PEM is ASCII); the UTF-8 error says where.
    #[error("malformed PEM: not UTF-8 text: {0}")]
    PemNotUtf8(#[from] std::str::Utf8Error),
    /// A PEM document that does not parse.
    #[error("malformed PEM: {0}")]
    PemSyntax(#[source] SharedError<pem::PemError>),
    /// A PEM document without the block expected.
    #[error("malformed PEM: no {expected} block")]
    PemBlockMissing {
        /// The block (or blocks) looked for.
        expected: &'static str,
    },
    /// A PEM document whose block is of another kind than expected.
    #[error("malformed PEM: expected {expected}, found {found}")]
    PemBlockUnexpected {
        /// The block expected.
        expected: &'static str,
        /// The block's tag.
        found: String,
    },
    /// A PKCS#8 private key that does not parse or is on an unsupported curve, or that cannot be encoded.
    #[error("malformed or unsupported key: {0}")]
    PrivateKey(#[source] p256::pkcs8::Error),
    /// A SEC1 (`EC PRIVATE KEY`) private key that does not parse or is on an unsupported curve.
    #[error("malformed or unsupported key: {0}")]
    Sec1Key(#[source] p256::elliptic_curve::Error),
    /// A SubjectPublicKeyInfo that does not parse or holds a key on an unsupported curve, or that cannot be encoded.
    #[error("malformed or unsupported key: {0}")]
    PublicKey(#[source] p256::pkcs8::spki::Error),
    /// The key refused to sign the digest (a digest of an unusable length).
    #[error("malformed or unsupported key: {0}")]
    Signing(#[source] SharedError<p256::ecdsa::Error>),
    /// RSA key generation failed.
    #[error("malformed or unsupported key: {0}")]
    Rsa(#[source] SharedError<rsa::Error>),
    /// A PKCS#1 (`RSA PUBLIC KEY` or `RSA PRIVATE KEY`) key that does not parse.
    #[error("malformed or unsupported key: {0}")]
    Pkcs1Key(#[source] SharedError<rsa::pkcs1::Error>),
    /// RSA-OAEP encryption refused the plaintext (longer than the key allows) or the key.
    #[error("RSA-OAEP encryption failed: {0}")]
    OaepEncrypt(#[source] SharedError<rsa::Error>),
    /// RSA-OAEP decryption failed: a wrong key, or a truncated or altered ciphertext (OAEP does not say which).
    #[error("RSA-OAEP decryption failed: {0}")]
    OaepDecrypt(#[source] SharedError<rsa::Error>),
    /// Signature bytes that are not a well-formed signature (bad DER, wrong length, zero or out-of-range scalars).
    #[error("malformed signature: {0}")]
    SignatureFormat(#[source] SharedError<p256::ecdsa::Error>),
    /// A well-formed signature that does not verify under the key.
    #[error("signature verification failed")]
    BadSignature,
    /// A certificate that does not parse.
    #[error("malformed certificate: {0}")]
    Certificate(#[source] SharedError<X509ParseError>),
    /// A certificate followed by more bytes.
    #[error("malformed certificate: trailing bytes after certificate")]
    CertificateTrailingBytes,
    /// A certificate signed with an algorithm other than ECDSA with SHA-256 or SHA-384.
    #[error("malformed certificate: unsupported signature algorithm (want ECDSA SHA-256/384)")]
    UnsupportedSignatureAlgorithm,
    /// rcgen could not build or sign a certificate.
    #[error("certificate generation failed: {0}")]
    CertGen(#[source] SharedError<rcgen::Error>),
    /// The subject key of a certificate to issue does not parse as a SubjectPublicKeyInfo.
    #[error("certificate generation failed: subject key: {0}")]
    SubjectKey(#[source] SharedError<X509ParseError>),
    /// The key asked to issue a certificate is not the key of the issuer certificate: the certificate would name
    /// the issuer but never verify against its key.
    #[error("certificate generation failed: the issuer key is not the key of the issuer certificate")]
    IssuerKeyMismatch,
    /// A PKCS#10 certificate signing request that does not parse, whose signature does not verify, or that asks
    /// for an extension Consort does not issue (anything but subject alternative names and key usages).
    #[error("malformed certificate signing request: {0}")]
    SigningRequest(#[source] SharedError<rcgen::Error>),
    /// A certificate validity that starts before 1970 or ends past what a certificate can say.
    #[error("certificate generation failed: validity out of range")]
    ValidityOutOfRange,
    /// The certificate issued for a signing request does not certify the key the request was signed with.
    #[error("certificate generation failed: the issued certificate does not certify the request's key")]
    SigningRequestKeyMismatch,
}

impl From<pem::PemError> for CryptoError {
    fn from(e: pem::PemError) -> Self {
        CryptoError::PemSyntax(e.into())
    }
}

impl From<rcgen::Error> for CryptoError {
    fn from(e: rcgen::Error) -> Self {
        CryptoError::CertGen(e.into())
    }
}

impl From<rsa::Error> for CryptoError {
    fn from(e: rsa::Error) -> Self {
        CryptoError::Rsa(e.into())
    }
}

impl From<p256::pkcs8::Error> for CryptoError {
    fn from(e: p256::pkcs8::Error) -> Self {
        CryptoError::PrivateKey(e)
    }
}

impl From<p256::pkcs8::spki::Error> for CryptoError {
    fn from(e: p256::pkcs8::spki::Error) -> Self {
        CryptoError::PublicKey(e)
    }
}

/// A dependency's error shared behind an [`Arc`], so that an error enum holding it stays `Clone` and comparable
/// (most dependencies' errors are neither). Two are equal when they say the same thing. It is transparent: it
/// displays as the error it holds and has that error's source; [`SharedError::get`] returns the error itself.
#[derive(Debug)]
pub struct SharedError<E>(Arc<E>);

impl<E> SharedError<E> {
    /// The error shared.
    pub fn get(&self) -> &E {
        &self.0
    }
}

impl<E> From<E> for SharedError<E> {
    fn from(e: E) -> Self {
        SharedError(Arc::new(e))
    }
}

// Not derived: deriving would require `E: Clone`, which is what this type is for.
impl<E> Clone for SharedError<E> {
    fn clone(&self) -> Self {
        SharedError(Arc::clone(&self.0))
    }
}

impl<E: std::fmt::Display> PartialEq for SharedError<E> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}

impl<E: std::fmt::Display> Eq for SharedError<E> {}

impl<E: std::fmt::Display> std::fmt::Display for SharedError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<E: std::error::Error> std::error::Error for SharedError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn a_pem_syntax_error_keeps_the_pem_error_as_its_source() {
        let err = crate::ParsedCert::all_from_pem("-----BEGIN CERTIFICATE-----\n@@@\n-----END CERTIFICATE-----\n")
            .unwrap_err();
        let CryptoError::PemSyntax(shared) = &err else {
            panic!("not a PEM syntax error: {err:?}");
        };
        let source = err.source().expect("the PEM error is kept");
        assert_eq!(source.to_string(), shared.get().to_string());
        assert!(source.downcast_ref::<SharedError<pem::PemError>>().is_some());
        assert!(err.to_string().starts_with("malformed PEM: "), "{err}");
        assert!(err.to_string().ends_with(&source.to_string()), "{err}");
    }

    #[test]
    fn a_key_error_keeps_the_pkcs8_error_as_its_source() {
        let err = crate::SigningKey::from_pkcs8_der(b"not a key").unwrap_err();
        let source = err.source().expect("the pkcs8 error is kept");
        assert!(source.downcast_ref::<p256::pkcs8::Error>().is_some(), "{source:?}");
        assert_eq!(err.to_string(), format!("malformed or unsupported key: {source}"));
    }

    #[test]
    fn a_certificate_error_keeps_the_x509_error_as_its_source() {
        let err = crate::ParsedCert::from_der(&[0x30, 0x82, 0xff, 0xff]).unwrap_err();
        let source = err.source().expect("the x509-parser error is kept");
        let shared = source
            .downcast_ref::<SharedError<X509ParseError>>()
            .expect("an x509-parser error");
        assert_eq!(source.to_string(), shared.get().to_string());
        // Clones share the error and compare equal; the errors stay comparable for callers' tests.
        assert_eq!(err.clone(), err);
        assert_ne!(err, CryptoError::CertificateTrailingBytes);
    }

    #[test]
    fn pem_bytes_that_are_not_utf8_keep_the_utf8_error_as_their_source() {
        let bytes = b"-----BEGIN CERTIFICATE-----\n\xff\n".to_vec();
        let utf8 = std::str::from_utf8(&bytes).unwrap_err();
        let err = CryptoError::from(utf8);
        let source = err.source().expect("the UTF-8 error is kept");
        assert_eq!(source.downcast_ref::<std::str::Utf8Error>(), Some(&utf8));
        assert_eq!(err.to_string(), format!("malformed PEM: not UTF-8 text: {utf8}"));
    }

    #[test]
    fn shared_errors_compare_by_what_they_say() {
        let a = SharedError::from(pem::PemError::MissingData);
        let b = SharedError::from(pem::PemError::MissingData);
        let c = SharedError::from(pem::PemError::MissingBeginTag);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
