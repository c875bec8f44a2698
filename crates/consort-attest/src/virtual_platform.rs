//! The `Insecure_Virtual` platform: evidence without hardware, binding a key to the executable's digest.
//!
//! The quote is CCF's virtual document, `{"measurement", "host_data", "report_data"}`: the measurement (and, where
//! CCF 6 puts the package digest, the host data) is SHA-256 of the node's executable, and the report data is
//! base64 of SHA-256 of the node's public key DER. Nothing signs it: whoever can write JSON can claim any
//! measurement for any key. It lets a join policy name code on machines without a TEE and keeps the join protocol
//! the same on every platform; it is no defence against a hostile host.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::{key_digest, seal, AttestError, Claims, Evidence, Platform, PlatformKind};

/// What the virtual platform tells operators, in logs and in `/node/quotes/self`.
pub const VIRTUAL_SECURITY_WARNING: &str = "Insecure_Virtual attestation: no hardware guarantee. The measurement \
     is the executable's SHA-256 as the node itself reports it; any host can forge this evidence. Use SEV-SNP for a \
     service that must not trust its hosts.";

/// CCF's virtual quote document.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct VirtualQuote {
    measurement: String,
    host_data: String,
    report_data: String,
}

/// The virtual platform of a node whose executable has the given SHA-256.
///
/// Sealing is a documented stand-in: [`seal::virtual_seal`] tags the plaintext with its format and nothing more,
/// because without hardware there is no key the host cannot read. The node keeps the sealed files at mode 0600
/// (`consort_node::platform::write_secret_file`).
#[derive(Clone, Debug)]
pub struct VirtualPlatform {
    measurement: [u8; 32],
}

impl VirtualPlatform {
    /// A platform reporting `measurement` (SHA-256 of the executable; see
    /// `consort_node::platform::measure_current_exe`).
    pub fn new(measurement: [u8; 32]) -> Self {
        VirtualPlatform { measurement }
    }

    /// The measurement this platform reports.
    pub fn measurement(&self) -> [u8; 32] {
        self.measurement
    }
}

impl Platform for VirtualPlatform {
    fn kind(&self) -> PlatformKind {
        PlatformKind::Virtual
    }

    fn evidence_for(&self, public_key_der: &[u8]) -> Result<Evidence, AttestError> {
        let measurement = hex::encode(self.measurement);
        let quote = VirtualQuote {
            host_data: measurement.clone(),
            measurement,
            report_data: base64::engine::general_purpose::STANDARD.encode(key_digest(public_key_der)),
        };
        let quote = serde_json::to_vec(&quote).map_err(|e| AttestError::Malformed(e.to_string()))?;
        Ok(Evidence {
            format: PlatformKind::Virtual,
            quote,
            endorsements: Vec::new(),
        })
    }

    fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, AttestError> {
        Ok(seal::virtual_seal(plaintext))
    }

    fn unseal(&self, sealed: &[u8]) -> Result<Vec<u8>, AttestError> {
        seal::virtual_unseal(sealed)
    }

    fn security_warning(&self) -> Option<&'static str> {
        Some(VIRTUAL_SECURITY_WARNING)
    }
}

/// A lowercase-or-uppercase hex string of exactly `len` bytes, returned in lowercase.
fn hex_field(name: &str, text: &str, len: usize) -> Result<String, AttestError> {
    match hex::decode(text) {
        Ok(bytes) if bytes.len() == len => Ok(hex::encode(bytes)),
        _ => Err(AttestError::Malformed(format!(
            "virtual quote {name} is not {len} bytes of hex"
        ))),
    }
}

/// Verifies a virtual quote: it parses, and its report data is SHA-256 of `presented_public_key_der`.
pub(crate) fn verify_quote(quote: &[u8], presented_public_key_der: &[u8]) -> Result<Claims, AttestError> {
    let parsed: VirtualQuote =
        serde_json::from_slice(quote).map_err(|e| AttestError::Malformed(format!("virtual quote: {e}")))?;
    let measurement = hex_field("measurement", &parsed.measurement, 32)?;
    let host_data = hex_field("host_data", &parsed.host_data, 32)?;
    let report_data = base64::engine::general_purpose::STANDARD
        .decode(&parsed.report_data)
        .map_err(|_| AttestError::Malformed("virtual quote report_data is not base64".into()))?;
    if report_data.len() != 32 {
        return Err(AttestError::Malformed(
            "virtual quote report_data is not 32 bytes".into(),
        ));
    }
    if report_data != key_digest(presented_public_key_der) {
        return Err(AttestError::KeyBindingMismatch);
    }
    Ok(Claims {
        kind: PlatformKind::Virtual,
        measurement,
        host_data,
        report_data,
        snp: None,
        security_warning: Some(VIRTUAL_SECURITY_WARNING),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_is_ccf_shaped() {
        let evidence = VirtualPlatform::new([7; 32]).evidence_for(b"key").unwrap();
        let json: serde_json::Value = serde_json::from_slice(&evidence.quote).unwrap();
        assert_eq!(json["measurement"], hex::encode([7; 32]));
        assert_eq!(json["host_data"], hex::encode([7; 32]));
        let report_data = base64::engine::general_purpose::STANDARD.decode(json["report_data"].as_str().unwrap());
        assert_eq!(report_data.unwrap(), key_digest(b"key"));
    }

    #[test]
    fn uppercase_hex_is_normalised() {
        let quote = serde_json::json!({
            "measurement": hex::encode_upper([0xab; 32]),
            "host_data": hex::encode([0; 32]),
            "report_data": base64::engine::general_purpose::STANDARD.encode(key_digest(b"k")),
        });
        let claims = verify_quote(quote.to_string().as_bytes(), b"k").unwrap();
        assert_eq!(claims.measurement, hex::encode([0xab; 32]));
    }

    #[test]
    fn short_fields_are_refused() {
        for (field, value) in [("measurement", "abcd"), ("host_data", "zz"), ("report_data", "AAAA")] {
            let mut quote = serde_json::json!({
                "measurement": hex::encode([1; 32]),
                "host_data": hex::encode([1; 32]),
                "report_data": base64::engine::general_purpose::STANDARD.encode(key_digest(b"k")),
            });
            quote[field] = value.into();
            let result = verify_quote(quote.to_string().as_bytes(), b"k");
            assert!(matches!(result, Err(AttestError::Malformed(_))), "{field}: {result:?}");
        }
    }
}
