//! Evidence as bytes and as CCF's JSON shapes: the join request's `quote_info` and `/node/quotes/self`.
//!
//! CCF encodes byte fields as base64 in JSON; so do we, with the same field and format names, so that tools written
//! for CCF read our quotes.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::{AttestError, MAX_ENDORSEMENTS_BYTES, MAX_EVIDENCE_JSON_BYTES, MAX_QUOTE_BYTES};

/// A quote format, serialised under CCF's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PlatformKind {
    /// No hardware: a document binding the key to the executable's digest.
    #[serde(rename = "Insecure_Virtual")]
    Virtual,
    /// An AMD SEV-SNP attestation report.
    #[serde(rename = "AMD_SEV_SNP_v1")]
    Snp,
}

impl PlatformKind {
    /// CCF's name of the format.
    pub fn ccf_name(self) -> &'static str {
        match self {
            PlatformKind::Virtual => "Insecure_Virtual",
            PlatformKind::Snp => "AMD_SEV_SNP_v1",
        }
    }

    /// The format with CCF's name `name`.
    pub fn from_ccf_name(name: &str) -> Result<Self, AttestError> {
        match name {
            "Insecure_Virtual" => Ok(PlatformKind::Virtual),
            "AMD_SEV_SNP_v1" => Ok(PlatformKind::Snp),
            other => Err(AttestError::UnknownFormat(other.chars().take(64).collect())),
        }
    }
}

impl std::fmt::Display for PlatformKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.ccf_name())
    }
}

/// What a node presents to prove its code and key: the quote and the endorsements that let a verifier check it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    /// The quote's format.
    pub format: PlatformKind,
    /// The raw quote: the SNP report's 1,184 bytes, or the virtual JSON document.
    pub quote: Vec<u8>,
    /// For SNP, the VCEK certificate (PEM or DER), optionally followed by the ASK and ARK in PEM as the host
    /// fetched them; empty for virtual.
    pub endorsements: Vec<u8>,
}

/// CCF's `QuoteInfo` JSON: `{"format", "quote", "endorsements"}` with base64 byte fields.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuoteInfoJson {
    format: String,
    quote: String,
    endorsements: String,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn decode_b64(field: &'static str, text: &str, limit: usize) -> Result<Vec<u8>, AttestError> {
    // Base64 grows data by 4/3; refuse before decoding anything larger than the limit could encode to.
    if text.len() > limit.div_ceil(3) * 4 {
        return Err(AttestError::TooLarge {
            what: field,
            len: text.len() / 4 * 3,
            limit,
        });
    }
    b64()
        .decode(text)
        .map_err(|e| AttestError::Malformed(format!("{field} is not base64: {e}")))
}

impl Evidence {
    /// Refuses a quote or endorsements beyond the crate's limits.
    pub fn check_sizes(&self) -> Result<(), AttestError> {
        if self.quote.len() > MAX_QUOTE_BYTES {
            return Err(AttestError::TooLarge {
                what: "quote",
                len: self.quote.len(),
                limit: MAX_QUOTE_BYTES,
            });
        }
        if self.endorsements.len() > MAX_ENDORSEMENTS_BYTES {
            return Err(AttestError::TooLarge {
                what: "endorsements",
                len: self.endorsements.len(),
                limit: MAX_ENDORSEMENTS_BYTES,
            });
        }
        Ok(())
    }

    /// The evidence as CCF's `QuoteInfo` JSON value (the `quote_info` of a join request).
    pub fn to_json_value(&self) -> serde_json::Value {
        serde_json::json!({
            "format": self.format.ccf_name(),
            "quote": b64().encode(&self.quote),
            "endorsements": b64().encode(&self.endorsements),
        })
    }

    /// The evidence as JSON bytes (see [`Evidence::to_json_value`]).
    pub fn to_json(&self) -> Vec<u8> {
        self.to_json_value().to_string().into_bytes()
    }

    /// Parses CCF's `QuoteInfo` JSON from untrusted bytes; refuses unknown fields and sizes beyond the limits.
    pub fn from_json(bytes: &[u8]) -> Result<Self, AttestError> {
        if bytes.len() > MAX_EVIDENCE_JSON_BYTES {
            return Err(AttestError::TooLarge {
                what: "evidence JSON",
                len: bytes.len(),
                limit: MAX_EVIDENCE_JSON_BYTES,
            });
        }
        let parsed: QuoteInfoJson =
            serde_json::from_slice(bytes).map_err(|e| AttestError::Malformed(format!("evidence JSON: {e}")))?;
        Self::from_parts(&parsed.format, &parsed.quote, &parsed.endorsements)
    }

    /// Parses a `QuoteInfo` JSON value already parsed by the caller (for example inside a join request).
    pub fn from_json_value(value: &serde_json::Value) -> Result<Self, AttestError> {
        let parsed =
            QuoteInfoJson::deserialize(value).map_err(|e| AttestError::Malformed(format!("evidence JSON: {e}")))?;
        Self::from_parts(&parsed.format, &parsed.quote, &parsed.endorsements)
    }

    /// Parses either JSON shape a tool meets: CCF's `QuoteInfo` (`{"format", "quote", "endorsements"}`) or one
    /// `/node/quotes/self` entry ([`NodeQuote`], `{"node_id", "raw", "endorsements", "format", ...}`).
    pub fn from_any_json(bytes: &[u8]) -> Result<Self, AttestError> {
        if bytes.len() > MAX_EVIDENCE_JSON_BYTES {
            return Err(AttestError::TooLarge {
                what: "evidence JSON",
                len: bytes.len(),
                limit: MAX_EVIDENCE_JSON_BYTES,
            });
        }
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| AttestError::Malformed(format!("evidence JSON: {e}")))?;
        if value.get("raw").is_some() {
            let quote =
                NodeQuote::deserialize(&value).map_err(|e| AttestError::Malformed(format!("node quote JSON: {e}")))?;
            quote.evidence()
        } else {
            Self::from_json_value(&value)
        }
    }

    fn from_parts(format: &str, quote_b64: &str, endorsements_b64: &str) -> Result<Self, AttestError> {
        let evidence = Evidence {
            format: PlatformKind::from_ccf_name(format)?,
            quote: decode_b64("quote", quote_b64, MAX_QUOTE_BYTES)?,
            endorsements: decode_b64("endorsements", endorsements_b64, MAX_ENDORSEMENTS_BYTES)?,
        };
        evidence.check_sizes()?;
        Ok(evidence)
    }
}

/// One entry of CCF's `GET /node/quotes/self` and `/node/quotes`:
/// `{"node_id", "raw", "endorsements", "format", "measurement"}` with base64 `raw` and `endorsements`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeQuote {
    /// The node's id (hex SHA-256 of its public key DER).
    pub node_id: String,
    /// The raw quote, base64.
    pub raw: String,
    /// The endorsements, base64.
    pub endorsements: String,
    /// The quote format.
    pub format: PlatformKind,
    /// The measurement in hex, as [`crate::verify`] reads it from the quote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurement: Option<String>,
    /// Consort's addition: the platform's warning when it gives no hardware guarantee.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_warning: Option<String>,
}

impl NodeQuote {
    /// The quote entry for `node_id`'s evidence, with the measurement and warning its verification produced.
    pub fn new(node_id: &str, evidence: &Evidence, claims: Option<&crate::Claims>) -> Self {
        NodeQuote {
            node_id: node_id.to_string(),
            raw: b64().encode(&evidence.quote),
            endorsements: b64().encode(&evidence.endorsements),
            format: evidence.format,
            measurement: claims.map(|c| c.measurement.clone()),
            security_warning: claims.and_then(|c| c.security_warning).map(str::to_string),
        }
    }

    /// The evidence this entry carries (for `consort attest verify` on a saved `/node/quotes/self` answer).
    pub fn evidence(&self) -> Result<Evidence, AttestError> {
        let evidence = Evidence {
            format: self.format,
            quote: decode_b64("raw", &self.raw, MAX_QUOTE_BYTES)?,
            endorsements: decode_b64("endorsements", &self.endorsements, MAX_ENDORSEMENTS_BYTES)?,
        };
        evidence.check_sizes()?;
        Ok(evidence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names_are_ccf_names() {
        for kind in [PlatformKind::Virtual, PlatformKind::Snp] {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.ccf_name()));
            assert_eq!(PlatformKind::from_ccf_name(kind.ccf_name()).unwrap(), kind);
        }
        assert!(matches!(
            PlatformKind::from_ccf_name("OE_SGX_v1"),
            Err(AttestError::UnknownFormat(_))
        ));
    }

    #[test]
    fn json_round_trip_and_limits() {
        let evidence = Evidence {
            format: PlatformKind::Snp,
            quote: vec![1, 2, 3],
            endorsements: b"pem".to_vec(),
        };
        assert_eq!(Evidence::from_json(&evidence.to_json()).unwrap(), evidence);
        assert_eq!(Evidence::from_json_value(&evidence.to_json_value()).unwrap(), evidence);

        let big = Evidence {
            format: PlatformKind::Snp,
            quote: vec![0; MAX_QUOTE_BYTES + 1],
            endorsements: vec![],
        };
        assert!(matches!(
            Evidence::from_json(&big.to_json()),
            Err(AttestError::TooLarge { what: "quote", .. })
        ));
        assert!(matches!(
            Evidence::from_json(b"{\"format\":1}"),
            Err(AttestError::Malformed(_))
        ));
        let extra = br#"{"format":"AMD_SEV_SNP_v1","quote":"","endorsements":"","x":1}"#;
        assert!(matches!(Evidence::from_json(extra), Err(AttestError::Malformed(_))));
        let not_b64 = br#"{"format":"AMD_SEV_SNP_v1","quote":"!!","endorsements":""}"#;
        assert!(matches!(Evidence::from_json(not_b64), Err(AttestError::Malformed(_))));
    }

    #[test]
    fn node_quote_carries_the_evidence() {
        let evidence = Evidence {
            format: PlatformKind::Virtual,
            quote: b"{}".to_vec(),
            endorsements: vec![],
        };
        let quote = NodeQuote::new("ab", &evidence, None);
        let json = serde_json::to_value(&quote).unwrap();
        assert_eq!(json["format"], "Insecure_Virtual");
        assert_eq!(json["raw"], "e30=");
        assert!(json.get("measurement").is_none());
        assert_eq!(Evidence::from_any_json(json.to_string().as_bytes()).unwrap(), evidence);
        let back: NodeQuote = serde_json::from_value(json).unwrap();
        assert_eq!(back.evidence().unwrap(), evidence);
        assert_eq!(Evidence::from_any_json(&evidence.to_json()).unwrap(), evidence);
        assert!(Evidence::from_any_json(b"[]").is_err());
        assert!(Evidence::from_any_json(br#"{"raw": 1}"#).is_err());
    }
}
