//! X.509 certificates: generation (self-signed and CA-signed, via rcgen) and parsing and verification (x509-parser).

use crate::{CryptoError, HashAlg, SigningKey, VerifyingKey};
use x509_parser::prelude::*;

/// What to put in a certificate Consort generates.
#[derive(Debug, Clone)]
pub struct CertParams {
    /// Subject common name, e.g. "CCF Service" or "CCF Node".
    pub subject_cn: String,
    /// Subject alternative names: IP addresses are recognised as such, anything else is a DNS name.
    pub subject_alt_names: Vec<String>,
    /// Whether the certificate may sign others (the service certificate does; node certificates do not).
    pub is_ca: bool,
    /// Validity starts now (minus a day, to absorb clock skew) and lasts this many days.
    pub validity_days: u32,
}

impl CertParams {
    /// Parameters for a one-year leaf certificate with common name `subject_cn` and no alternative names.
    pub fn new(subject_cn: &str) -> Self {
        Self {
            subject_cn: subject_cn.to_string(),
            subject_alt_names: vec![],
            is_ca: false,
            validity_days: 365,
        }
    }
}

pub(crate) fn rcgen_key(key: &SigningKey) -> Result<rcgen::KeyPair, CryptoError> {
    rcgen::KeyPair::from_pem(&key.to_pkcs8_pem()).map_err(CryptoError::from)
}

/// The subject of `p` (common name, alternative names), with nothing else set: what a signing request carries.
pub(crate) fn rcgen_subject(p: &CertParams) -> Result<rcgen::CertificateParams, CryptoError> {
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, p.subject_cn.clone());
    params.distinguished_name = dn;
    for san in &p.subject_alt_names {
        let name = match san.parse::<std::net::IpAddr>() {
            Ok(ip) => rcgen::SanType::IpAddress(ip),
            Err(_) => rcgen::SanType::DnsName(san.clone().try_into().map_err(CryptoError::from)?),
        };
        params.subject_alt_names.push(name);
    }
    Ok(params)
}

fn rcgen_params(p: &CertParams) -> Result<rcgen::CertificateParams, CryptoError> {
    let mut params = rcgen_subject(p)?;
    if p.is_ca {
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    }
    // Certificates carry wall-clock validity; this is the one place the crate reads the clock, and it is only
    // used when generating certificates, never when verifying ledgers or receipts (hence the one clock exception).
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now();
    let day = std::time::Duration::from_secs(86_400);
    params.not_before = (now - day).into();
    params.not_after = (now + day * p.validity_days).into();
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&crate::random_array::<16>()[..15]));
    Ok(params)
}

/// A freshly generated certificate in both encodings.
#[derive(Debug, Clone)]
pub struct GeneratedCert {
    /// The certificate's DER.
    pub der: Vec<u8>,
    /// The same certificate as PEM.
    pub pem: String,
}

/// Generates a self-signed certificate for `key`.
pub fn self_signed(key: &SigningKey, params: &CertParams) -> Result<GeneratedCert, CryptoError> {
    let kp = rcgen_key(key)?;
    let cert = rcgen_params(params)?.self_signed(&kp).map_err(CryptoError::from)?;
    Ok(GeneratedCert {
        der: cert.der().to_vec(),
        pem: cert.pem(),
    })
}

/// Public-key wrapper so rcgen can certify a key whose private half we do not hold.
struct SubjectKey {
    raw_point: Vec<u8>,
    alg: &'static rcgen::SignatureAlgorithm,
}

impl rcgen::PublicKeyData for SubjectKey {
    fn der_bytes(&self) -> &[u8] {
        &self.raw_point
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.alg
    }
}

/// Issues a certificate for `subject_key`, signed by `issuer_key` whose certificate is `issuer_cert_der`
/// (for example a node certificate endorsed by the service certificate). Fails if `issuer_key` is not the key
/// that certificate certifies: the result would name an issuer whose key never verifies it.
pub fn issue(
    subject_key: &VerifyingKey,
    params: &CertParams,
    issuer_key: &SigningKey,
    issuer_cert_der: &[u8],
) -> Result<GeneratedCert, CryptoError> {
    let certified = ParsedCert::from_der(issuer_cert_der)?.public_key()?;
    if certified != issuer_key.verifying_key() {
        return Err(CryptoError::IssuerKeyMismatch);
    }
    let issuer_kp = rcgen_key(issuer_key)?;
    let issuer_params =
        rcgen::CertificateParams::from_ca_cert_der(&issuer_cert_der.to_vec().into()).map_err(CryptoError::from)?;
    let issuer = issuer_params.self_signed(&issuer_kp).map_err(CryptoError::from)?;
    let spki = subject_key.to_spki_der();
    let parsed = x509_parser::x509::SubjectPublicKeyInfo::from_der(&spki)
        .map_err(|e| CryptoError::SubjectKey(e.into()))?
        .1;
    let subject = SubjectKey {
        raw_point: parsed.subject_public_key.data.to_vec(),
        alg: match subject_key.curve() {
            crate::Curve::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            crate::Curve::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        },
    };
    let cert = rcgen_params(params)?
        .signed_by(&subject, &issuer, &issuer_kp)
        .map_err(CryptoError::from)?;
    Ok(GeneratedCert {
        der: cert.der().to_vec(),
        pem: cert.pem(),
    })
}

/// A parsed certificate: the parts Consort needs, owned, so the DER can be dropped by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCert {
    /// The certificate's DER, as parsed.
    pub der: Vec<u8>,
    tbs: Vec<u8>,
    sig_hash: Option<HashAlg>,
    signature: Vec<u8>,
    /// DER SubjectPublicKeyInfo.
    pub spki_der: Vec<u8>,
    /// The subject's common name, if it has one.
    pub subject_cn: Option<String>,
    /// The issuer's common name, if it has one.
    pub issuer_cn: Option<String>,
    /// Whether basic constraints mark it as a CA.
    pub is_ca: bool,
    /// Validity bounds as Unix seconds.
    pub not_before: i64,
    /// End of validity, seconds since the epoch.
    pub not_after: i64,
}

impl ParsedCert {
    /// Parses a DER certificate (nothing may follow it).
    pub fn from_der(der: &[u8]) -> Result<Self, CryptoError> {
        let (rest, cert) = X509Certificate::from_der(der).map_err(|e| CryptoError::Certificate(e.into()))?;
        if !rest.is_empty() {
            return Err(CryptoError::CertificateTrailingBytes);
        }
        let alg = &cert.signature_algorithm.algorithm;
        let sig_hash = if *alg == x509_parser::oid_registry::OID_SIG_ECDSA_WITH_SHA256 {
            Some(HashAlg::Sha256)
        } else if *alg == x509_parser::oid_registry::OID_SIG_ECDSA_WITH_SHA384 {
            Some(HashAlg::Sha384)
        } else {
            None
        };
        let cn = |name: &X509Name| {
            name.iter_common_name()
                .next()
                .and_then(|c| c.as_str().ok())
                .map(str::to_string)
        };
        Ok(ParsedCert {
            der: der.to_vec(),
            tbs: cert.tbs_certificate.as_ref().to_vec(),
            sig_hash,
            signature: cert.signature_value.data.to_vec(),
            spki_der: cert.public_key().raw.to_vec(),
            subject_cn: cn(cert.subject()),
            issuer_cn: cn(cert.issuer()),
            is_ca: cert.is_ca(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        })
    }

    /// Parses the first `CERTIFICATE` block of a PEM text.
    pub fn from_pem(pem_text: &str) -> Result<Self, CryptoError> {
        Self::all_from_pem(pem_text)?
            .into_iter()
            .next()
            .ok_or(CryptoError::PemBlockMissing {
                expected: "CERTIFICATE",
            })
    }

    /// Parses every `CERTIFICATE` block of a PEM text (a chain or bundle).
    pub fn all_from_pem(pem_text: &str) -> Result<Vec<Self>, CryptoError> {
        let blocks = ::pem::parse_many(pem_text)?;
        blocks
            .iter()
            .filter(|b| b.tag() == "CERTIFICATE")
            .map(|b| Self::from_der(b.contents()))
            .collect()
    }

    /// PEM encoding of the certificate.
    pub fn to_pem(&self) -> String {
        ::pem::encode_config(
            &::pem::Pem::new("CERTIFICATE", self.der.clone()),
            ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF),
        )
    }

    /// The certified public key (P-256 or P-384).
    pub fn public_key(&self) -> Result<VerifyingKey, CryptoError> {
        VerifyingKey::from_spki_der(&self.spki_der)
    }

    /// CCF id of the holder: hex SHA-256 of the certificate DER.
    pub fn cert_id(&self) -> String {
        crate::cert_id(&self.der)
    }

    /// CCF id of the key: hex SHA-256 of the SubjectPublicKeyInfo DER.
    pub fn key_id(&self) -> String {
        crate::key_id(&self.spki_der)
    }

    /// Checks that this certificate's signature was made by `issuer` (an endorsement check, as CCF's receipts do).
    pub fn verify_signed_by(&self, issuer: &VerifyingKey) -> Result<(), CryptoError> {
        let hash = self.sig_hash.ok_or(CryptoError::UnsupportedSignatureAlgorithm)?;
        issuer.verify_der(&self.tbs, hash, &self.signature)
    }

    /// Whether `unix_seconds` lies within the validity period.
    pub fn is_valid_at(&self, unix_seconds: i64) -> bool {
        self.not_before <= unix_seconds && unix_seconds <= self.not_after
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Curve;

    #[test]
    fn self_signed_and_endorsed_certificates() {
        let service_key = SigningKey::generate(Curve::P384);
        let mut sp = CertParams::new("CCF Service");
        sp.is_ca = true;
        let service = self_signed(&service_key, &sp).unwrap();
        let service_parsed = ParsedCert::from_pem(&service.pem).unwrap();
        assert!(service_parsed.is_ca);
        assert_eq!(service_parsed.subject_cn.as_deref(), Some("CCF Service"));
        service_parsed.verify_signed_by(&service_key.verifying_key()).unwrap();

        let node_key = SigningKey::generate(Curve::P384);
        let mut np = CertParams::new("CCF Node");
        np.subject_alt_names = vec!["127.0.0.1".into(), "localhost".into()];
        let node = issue(&node_key.verifying_key(), &np, &service_key, &service.der).unwrap();
        let node_parsed = ParsedCert::from_der(&node.der).unwrap();
        assert!(!node_parsed.is_ca);
        assert_eq!(node_parsed.issuer_cn.as_deref(), Some("CCF Service"));
        assert_eq!(node_parsed.public_key().unwrap(), node_key.verifying_key());
        node_parsed.verify_signed_by(&service_key.verifying_key()).unwrap();
        // Not endorsed by another key, nor by itself.
        assert_eq!(
            node_parsed.verify_signed_by(&SigningKey::generate(Curve::P384).verifying_key()),
            Err(CryptoError::BadSignature)
        );
        assert!(node_parsed.verify_signed_by(&node_key.verifying_key()).is_err());
        assert_eq!(
            node_parsed.key_id(),
            crate::key_id(&node_key.verifying_key().to_spki_der())
        );
        assert_eq!(node_parsed.cert_id().len(), 64);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(node_parsed.is_valid_at(now));
        assert_eq!(ParsedCert::from_pem(&node_parsed.to_pem()).unwrap(), node_parsed);
    }

    #[test]
    fn issuing_with_a_key_that_is_not_the_issuer_certificates_is_refused() {
        // Such a certificate names the service as issuer but never verifies against the service key.
        let service_key = SigningKey::generate(Curve::P384);
        let mut sp = CertParams::new("CCF Service");
        sp.is_ca = true;
        let service = self_signed(&service_key, &sp).unwrap();
        let node_key = SigningKey::generate(Curve::P384).verifying_key();
        for wrong in [SigningKey::generate(Curve::P384), SigningKey::generate(Curve::P256)] {
            let r = issue(&node_key, &CertParams::new("CCF Node"), &wrong, &service.der);
            assert_eq!(r.map(|c| c.pem), Err(CryptoError::IssuerKeyMismatch));
        }
        assert!(issue(
            &node_key,
            &CertParams::new("CCF Node"),
            &service_key,
            b"not a certificate"
        )
        .is_err());
    }

    #[test]
    fn p256_certificates() {
        let k = SigningKey::generate(Curve::P256);
        let c = self_signed(&k, &CertParams::new("member0")).unwrap();
        let p = ParsedCert::from_der(&c.der).unwrap();
        p.verify_signed_by(&k.verifying_key()).unwrap();
        assert_eq!(p.public_key().unwrap().curve(), Curve::P256);
    }

    #[test]
    fn malformed_certificates_are_errors() {
        assert!(ParsedCert::from_der(&[]).is_err());
        assert!(ParsedCert::from_der(&[0x30, 0x82, 0xff, 0xff]).is_err());
        assert!(ParsedCert::from_pem("garbage").is_err());
        let k = SigningKey::generate(Curve::P256);
        let mut der = self_signed(&k, &CertParams::new("x")).unwrap().der;
        der.push(0);
        assert!(ParsedCert::from_der(&der).is_err());
    }
}
