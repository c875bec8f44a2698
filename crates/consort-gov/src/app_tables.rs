//! Readers of the application platform's governance tables that accept both the rows Consort's constitution
//! writes and those CCF's own constitution writes, so the node serves an application whichever constitution
//! deployed it.

use serde::{Deserialize, Serialize};

/// An endpoint key of [`crate::tables::ENDPOINTS`] as `(uri_path, VERB)`: Consort's JSON
/// `{"uri_path": "/path", "verb": "GET"}` or CCF's `"GET /path"`.
pub fn endpoint_from_key(raw: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(raw).ok()?;
    if text.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        let path = v.get("uri_path")?.as_str()?;
        let verb = v.get("verb")?.as_str()?;
        return Some((path.to_owned(), verb.to_ascii_uppercase()));
    }
    let (verb, path) = text.split_once(' ')?;
    path.starts_with('/')
        .then(|| (path.to_owned(), verb.to_ascii_uppercase()))
}

/// A CA bundle of [`crate::tables::CA_CERT_BUNDLES`] as PEM: raw (Consort) or a JSON string (CCF).
pub fn ca_cert_bundle_pem(raw: &[u8]) -> Option<String> {
    if raw.first() == Some(&b'"') {
        return serde_json::from_slice(raw).ok();
    }
    String::from_utf8(raw.to_vec()).ok()
}

/// An issuer's row of [`crate::tables::JWT_ISSUERS`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtIssuer {
    /// Whether the node refreshes the issuer's keys from its OpenID configuration.
    #[serde(default)]
    pub auto_refresh: bool,
    /// The CA bundle the refresh's TLS connection trusts.
    #[serde(default)]
    pub ca_cert_bundle_name: Option<String>,
}

/// Reads an issuer's row; fields CCF's constitution leaves out take their defaults, other fields are ignored.
pub fn jwt_issuer(raw: &[u8]) -> Option<JwtIssuer> {
    serde_json::from_slice(raw).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_read() {
        let ours = crate::endpoint_key("/records/{id}", "get");
        assert_eq!(
            endpoint_from_key(ours.as_bytes()),
            Some(("/records/{id}".into(), "GET".into()))
        );
        assert_eq!(
            endpoint_from_key(b"POST /records"),
            Some(("/records".into(), "POST".into()))
        );
        assert_eq!(
            ca_cert_bundle_pem(b"\"-----BEGIN\\n\"").as_deref(),
            Some("-----BEGIN\n")
        );
        assert_eq!(ca_cert_bundle_pem(b"-----BEGIN\n").as_deref(), Some("-----BEGIN\n"));
        assert_eq!(
            jwt_issuer(br#"{"issuer":"x","ca_cert_bundle_name":"b"}"#),
            Some(JwtIssuer {
                auto_refresh: false,
                ca_cert_bundle_name: Some("b".into())
            })
        );
    }
}
