//! Certificate signing requests (PKCS#10, built and parsed by rcgen over x509-parser) and certificates with a
//! validity the caller chooses: what a service needs to endorse a node from its request and to re-issue its own
//! certificate, as CCF's `generateEndorsedCertificate` and `generateNetworkCertificate` do.

use crate::x509::{rcgen_key, rcgen_subject, GeneratedCert};
use crate::{CertParams, CryptoError, ParsedCert, SigningKey, VerifyingKey};

/// The PEM label of a certificate signing request.
const CSR_LABEL: &str = "CERTIFICATE REQUEST";

/// The last second an X.509 time can name (9999-12-31T23:59:59Z), as Unix seconds.
const MAX_CERT_TIME_UNIX_S: i64 = 253_402_300_799;

const DAY_S: i64 = 86_400;

/// When a certificate is valid: from `not_before_unix_s` for `days` days (the last second included, so the
/// certificate's `notAfter` is `not_before + days * 86400 - 1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Start of validity, seconds since the Unix epoch.
    pub not_before_unix_s: i64,
    /// Length of validity in days (at least 1).
    pub days: u32,
}

impl Validity {
    /// `notAfter`, seconds since the Unix epoch.
    pub fn not_after_unix_s(&self) -> i64 {
        self.not_before_unix_s + i64::from(self.days) * DAY_S - 1
    }

    fn apply(&self, params: &mut rcgen::CertificateParams) -> Result<(), CryptoError> {
        let not_after = self.not_after_unix_s();
        if self.days == 0 || self.not_before_unix_s < 0 || not_after > MAX_CERT_TIME_UNIX_S {
            return Err(CryptoError::ValidityOutOfRange);
        }
        // Both are non-negative here: the casts cannot wrap.
        let at = |s: i64| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s as u64);
        params.not_before = at(self.not_before_unix_s).into();
        params.not_after = at(not_after).into();
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&crate::random_array::<16>()[..15]));
        Ok(())
    }
}

/// A PEM certificate signing request for `key`, asking for `params`' subject common name and alternative names
/// (its validity and CA flag are the issuer's to choose, and are not part of a request).
pub fn signing_request(key: &SigningKey, params: &CertParams) -> Result<String, CryptoError> {
    let kp = rcgen_key(key)?;
    let request = rcgen_subject(params)?.serialize_request(&kp)?;
    Ok(request.pem()?)
}

/// A parsed and verified signing request: rcgen's parameters for the certificate and the DER it came from.
struct Request {
    params: rcgen::CertificateSigningRequestParams,
    key: VerifyingKey,
}

fn parse_request(csr_pem: &str) -> Result<Request, CryptoError> {
    let block = ::pem::parse(csr_pem)?;
    if block.tag() != CSR_LABEL {
        return Err(CryptoError::PemBlockUnexpected {
            expected: CSR_LABEL,
            found: block.tag().to_string(),
        });
    }
    let der = block.contents();
    // rcgen checks the request's self-signature and refuses extensions it would not carry over.
    let params = rcgen::CertificateSigningRequestParams::from_der(&der.into())
        .map_err(|e| CryptoError::SigningRequest(e.into()))?;
    use x509_parser::prelude::FromDer;
    let (_, parsed) = x509_parser::certification_request::X509CertificationRequest::from_der(der)
        .map_err(|e| CryptoError::Certificate(e.into()))?;
    let key = VerifyingKey::from_spki_der(parsed.certification_request_info.subject_pki.raw)?;
    Ok(Request { params, key })
}

/// The key a PEM signing request is for, once its signature (made with that key) verifies.
pub fn request_key(csr_pem: &str) -> Result<VerifyingKey, CryptoError> {
    Ok(parse_request(csr_pem)?.key)
}

/// Issues a certificate for the key and subject (common name, alternative names) of the PEM signing request
/// `csr_pem`, valid over `validity`, signed by `issuer_key` whose certificate is `issuer_cert_der`. The result is
/// never a CA. Fails if the request does not verify, or `issuer_key` is not the key of `issuer_cert_der`.
pub fn issue_for_request(
    csr_pem: &str,
    validity: Validity,
    issuer_key: &SigningKey,
    issuer_cert_der: &[u8],
) -> Result<GeneratedCert, CryptoError> {
    let Request { mut params, key } = parse_request(csr_pem)?;
    let certified = ParsedCert::from_der(issuer_cert_der)?.public_key()?;
    if certified != issuer_key.verifying_key() {
        return Err(CryptoError::IssuerKeyMismatch);
    }
    let issuer_kp = rcgen_key(issuer_key)?;
    let issuer =
        rcgen::CertificateParams::from_ca_cert_der(&issuer_cert_der.to_vec().into())?.self_signed(&issuer_kp)?;
    params.params.is_ca = rcgen::IsCa::NoCa;
    validity.apply(&mut params.params)?;
    let cert = params.signed_by(&issuer, &issuer_kp)?;
    let issued = GeneratedCert {
        der: cert.der().to_vec(),
        pem: cert.pem(),
    };
    // rcgen names the key's algorithm after the request's signature algorithm; make sure that named the key's curve.
    if ParsedCert::from_der(&issued.der)?.public_key()? != key {
        return Err(CryptoError::SigningRequestKeyMismatch);
    }
    Ok(issued)
}

/// Re-issues the self-signed certificate `cert_der` (subject, alternative names, CA flag and key usages kept) over
/// the same key `key`, valid over `validity`. Fails if `key` is not the key `cert_der` certifies.
pub fn renew_self_signed(cert_der: &[u8], key: &SigningKey, validity: Validity) -> Result<GeneratedCert, CryptoError> {
    if ParsedCert::from_der(cert_der)?.public_key()? != key.verifying_key() {
        return Err(CryptoError::IssuerKeyMismatch);
    }
    let kp = rcgen_key(key)?;
    let mut params = rcgen::CertificateParams::from_ca_cert_der(&cert_der.to_vec().into())?;
    validity.apply(&mut params)?;
    let cert = params.self_signed(&kp)?;
    Ok(GeneratedCert {
        der: cert.der().to_vec(),
        pem: cert.pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{x509, Curve};

    fn service() -> (SigningKey, x509::GeneratedCert) {
        let key = SigningKey::generate(Curve::P384);
        let mut params = CertParams::new("CCF Service");
        params.is_ca = true;
        let cert = x509::self_signed(&key, &params).unwrap();
        (key, cert)
    }

    const JAN_2024: i64 = 1_704_067_200;

    #[test]
    fn a_request_is_endorsed_for_its_key_and_subject_with_the_validity_asked() {
        let (service_key, service_cert) = service();
        for curve in [Curve::P256, Curve::P384] {
            let node_key = SigningKey::generate(curve);
            let mut params = CertParams::new("CCF Node");
            params.subject_alt_names = vec!["127.0.0.1".into(), "localhost".into()];
            let csr = signing_request(&node_key, &params).unwrap();
            assert!(csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"), "{csr}");
            assert_eq!(request_key(&csr).unwrap(), node_key.verifying_key());

            let validity = Validity {
                not_before_unix_s: JAN_2024,
                days: 30,
            };
            let cert = issue_for_request(&csr, validity, &service_key, &service_cert.der).unwrap();
            let parsed = ParsedCert::from_pem(&cert.pem).unwrap();
            assert_eq!(parsed.public_key().unwrap(), node_key.verifying_key());
            assert_eq!(parsed.subject_cn.as_deref(), Some("CCF Node"));
            assert_eq!(parsed.issuer_cn.as_deref(), Some("CCF Service"));
            assert!(!parsed.is_ca);
            assert_eq!(parsed.not_before, JAN_2024);
            assert_eq!(parsed.not_after, JAN_2024 + 30 * 86_400 - 1);
            parsed.verify_signed_by(&service_key.verifying_key()).unwrap();
        }
    }

    #[test]
    fn tampered_foreign_and_malformed_requests_are_refused() {
        let (service_key, service_cert) = service();
        let validity = Validity {
            not_before_unix_s: JAN_2024,
            days: 1,
        };
        let node_key = SigningKey::generate(Curve::P384);
        let csr = signing_request(&node_key, &CertParams::new("CCF Node")).unwrap();
        // Another subject under the same signature: the signature no longer verifies.
        let block = ::pem::parse(&csr).unwrap();
        let mut der = block.contents().to_vec();
        let at = der.windows(4).position(|w| w == b"Node").unwrap();
        der[at] = b'X';
        let tampered = ::pem::encode(&::pem::Pem::new(CSR_LABEL, der));
        let err = issue_for_request(&tampered, validity, &service_key, &service_cert.der).unwrap_err();
        assert!(matches!(err, CryptoError::SigningRequest(_)), "{err:?}");
        // A certificate is not a request.
        let err = request_key(&service_cert.pem).unwrap_err();
        assert!(matches!(err, CryptoError::PemBlockUnexpected { .. }), "{err:?}");
        assert!(request_key("garbage").is_err());
        let junk = ::pem::encode(&::pem::Pem::new(CSR_LABEL, vec![0x30, 0x03, 1, 2, 3]));
        assert!(request_key(&junk).is_err());
        // Only the service key may sign under the service certificate.
        let wrong = SigningKey::generate(Curve::P384);
        let err = issue_for_request(&csr, validity, &wrong, &service_cert.der).unwrap_err();
        assert_eq!(err, CryptoError::IssuerKeyMismatch);
        // No validity before 1970, of zero days, or past year 9999.
        for bad in [(-1, 1), (JAN_2024, 0), (MAX_CERT_TIME_UNIX_S, 2)] {
            let v = Validity {
                not_before_unix_s: bad.0,
                days: bad.1,
            };
            let err = issue_for_request(&csr, v, &service_key, &service_cert.der).unwrap_err();
            assert_eq!(err, CryptoError::ValidityOutOfRange, "{bad:?}");
        }
    }

    #[test]
    fn a_renewed_service_certificate_keeps_key_subject_and_ca_and_takes_the_new_validity() {
        let (service_key, service_cert) = service();
        let validity = Validity {
            not_before_unix_s: JAN_2024,
            days: 7,
        };
        let renewed = renew_self_signed(&service_cert.der, &service_key, validity).unwrap();
        let (old, new) = (
            ParsedCert::from_der(&service_cert.der).unwrap(),
            ParsedCert::from_der(&renewed.der).unwrap(),
        );
        assert_ne!(old.der, new.der);
        assert_eq!(new.spki_der, old.spki_der);
        assert_eq!(new.subject_cn, old.subject_cn);
        assert!(new.is_ca);
        assert_eq!((new.not_before, new.not_after), (JAN_2024, JAN_2024 + 7 * 86_400 - 1));
        new.verify_signed_by(&service_key.verifying_key()).unwrap();
        // A node certificate issued under the old service certificate verifies under the renewed one's key.
        let node = x509::issue(
            &SigningKey::generate(Curve::P384).verifying_key(),
            &CertParams::new("CCF Node"),
            &service_key,
            &service_cert.der,
        )
        .unwrap();
        ParsedCert::from_der(&node.der)
            .unwrap()
            .verify_signed_by(&new.public_key().unwrap())
            .unwrap();
        let wrong = SigningKey::generate(Curve::P384);
        assert_eq!(
            renew_self_signed(&service_cert.der, &wrong, validity).unwrap_err(),
            CryptoError::IssuerKeyMismatch
        );
    }
}
