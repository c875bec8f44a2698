//! JWT signing-key refresh: on the primary, every `[jwt] key_refresh_interval_s`, each issuer configured with
//! `auto_refresh` has its keys fetched from `<issuer>/.well-known/openid-configuration` → `jwks_uri` over HTTPS
//! (trusting only the issuer's `ca_cert_bundle_name` bundle, bounded in size and time) and written into
//! `public:ccf.gov.jwt.public_signing_keys_metadata` in one transaction: the issuer's keys that the JWKS no longer
//! lists are removed, so a rotated-out key stops being valid. A failure is logged and counted
//! (`consort_jwt_key_refresh_failures`) and writes nothing; the issuer's keys stay as they were.
//!
//! It lives beside the policy rather than in `engine/` because it speaks HTTPS, which the engine never does.

use super::jwt::{issuer_info, KeyMetadata, CA_CERT_BUNDLES_TABLE, JWT_ISSUERS_TABLE, JWT_KEYS_TABLE};
use crate::engine::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// Largest OpenID configuration or JWKS document fetched, in bytes.
pub const MAX_JWKS_RESPONSE_BYTES: usize = 1024 * 1024;
/// Most keys taken from one JWKS.
pub const MAX_JWKS_KEYS: usize = 100;
/// Bound on one HTTPS fetch (connect, handshake, request and body).
pub const JWT_FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why one issuer's refresh failed.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("issuer {0} is not an https:// URL with a host")]
    IssuerUrl(String),
    #[error("issuer has no ca_cert_bundle_name, or the bundle {0:?} is not set")]
    NoBundle(Option<String>),
    #[error("CA bundle: {0}")]
    Tls(#[from] crate::net::tls::TlsError),
    #[error("fetch {url}: {why}")]
    Fetch { url: String, why: String },
    #[error("fetch {url}: timed out after {JWT_FETCH_TIMEOUT:?}")]
    Timeout { url: String },
    #[error("fetch {url}: HTTP status {status}")]
    Status { url: String, status: u16 },
    #[error("{what} is not the JSON expected: {why}")]
    Document { what: &'static str, why: String },
    #[error("the JWKS has no usable signing key")]
    NoKeys,
    #[error("writing the keys: {0}")]
    Write(String),
}

/// `https://host[:port][/path]` split into the address to dial and the path.
fn split_https(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("https://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let addr = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:443")
    };
    Some((addr, if path.is_empty() { "/".into() } else { path.to_string() }))
}

/// GETs `url` over HTTPS with `tls`, bounded by [`JWT_FETCH_TIMEOUT`] and [`MAX_JWKS_RESPONSE_BYTES`].
async fn fetch_json(url: &str, tls: crate::net::client::TlsConfig) -> Result<serde_json::Value, RefreshError> {
    let (addr, path) = split_https(url).ok_or_else(|| RefreshError::IssuerUrl(url.to_string()))?;
    let fail = |why: String| RefreshError::Fetch {
        url: url.to_string(),
        why,
    };
    let fetch = async {
        let stream = crate::net::client::connect_tls(&addr, tls, b"http/1.1")
            .await
            .map_err(|e| fail(e.to_string()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| fail(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let host = addr.trim_end_matches(":443");
        let req = hyper::Request::get(path.as_str())
            .header("host", host)
            .header("accept", "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| fail(e.to_string()))?;
        let resp = sender.send_request(req).await.map_err(|e| fail(e.to_string()))?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(RefreshError::Status {
                url: url.to_string(),
                status,
            });
        }
        let body = Limited::new(resp.into_body(), MAX_JWKS_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| {
                fail(format!(
                    "{e} (limit MAX_JWKS_RESPONSE_BYTES = {MAX_JWKS_RESPONSE_BYTES})"
                ))
            })?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|e| RefreshError::Document {
            what: "the response",
            why: e.to_string(),
        })
    };
    tokio::time::timeout(JWT_FETCH_TIMEOUT, fetch)
        .await
        .map_err(|_| RefreshError::Timeout { url: url.to_string() })?
}

fn b64_field(jwk: &serde_json::Value, name: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(jwk.get(name)?.as_str()?.trim_end_matches('='))
        .ok()
}

/// The signing keys of a JWKS document, by kid, as SubjectPublicKeyInfo PEM. Keys marked for encryption, without a
/// kid, or of a kind Consort does not verify are left out.
pub fn jwks_keys(jwks: &serde_json::Value) -> Result<BTreeMap<String, String>, RefreshError> {
    let keys = jwks
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or(RefreshError::Document {
            what: "the JWKS",
            why: "no keys array".into(),
        })?;
    let mut out = BTreeMap::new();
    for jwk in keys.iter().take(MAX_JWKS_KEYS) {
        let Some(kid) = jwk.get("kid").and_then(|k| k.as_str()) else {
            continue;
        };
        if jwk.get("use").and_then(|u| u.as_str()).is_some_and(|u| u != "sig") {
            continue;
        }
        let pem = match jwk.get("kty").and_then(|k| k.as_str()) {
            Some("RSA") => match (b64_field(jwk, "n"), b64_field(jwk, "e")) {
                (Some(n), Some(e)) => consort_crypto::jose::rsa_spki_pem(&n, &e).ok(),
                _ => None,
            },
            Some("EC") => {
                let curve = match jwk.get("crv").and_then(|c| c.as_str()) {
                    Some("P-256") => Some(consort_crypto::Curve::P256),
                    Some("P-384") => Some(consort_crypto::Curve::P384),
                    _ => None,
                };
                match (curve, b64_field(jwk, "x"), b64_field(jwk, "y")) {
                    (Some(c), Some(x), Some(y)) => consort_crypto::jose::ec_spki_pem(c, &x, &y).ok(),
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some(pem) = pem {
            out.insert(kid.to_string(), pem);
        }
    }
    if out.is_empty() {
        return Err(RefreshError::NoKeys);
    }
    Ok(out)
}

/// Fetches `issuer`'s current signing keys, trusting the CA bundle `bundle_pem`.
pub async fn fetch_issuer_keys(issuer: &str, bundle_pem: &str) -> Result<BTreeMap<String, String>, RefreshError> {
    let tls = crate::net::tls::client_config(bundle_pem, None)?;
    let config_url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
    let config = fetch_json(&config_url, tls.clone()).await?;
    let jwks_uri = config
        .get("jwks_uri")
        .and_then(|u| u.as_str())
        .ok_or(RefreshError::Document {
            what: "the OpenID configuration",
            why: "no jwks_uri".into(),
        })?;
    jwks_keys(&fetch_json(jwks_uri, tls).await?)
}

/// Replaces `issuer`'s keys in the signing-keys table with `keys` in one transaction; writes nothing when they
/// are already there. Returns whether it wrote.
pub fn write_issuer_keys(engine: &Engine, issuer: &str, keys: &BTreeMap<String, String>) -> Result<bool, RefreshError> {
    let outcome = engine.execute_write(|tx, _| {
        let mut tables: Vec<(Vec<u8>, Vec<KeyMetadata>)> = vec![];
        tx.foreach(JWT_KEYS_TABLE, |k, v| {
            tables.push((k.to_vec(), serde_json::from_slice(v).unwrap_or_default()));
            true
        });
        let mut seen = BTreeSet::new();
        for (kid, records) in &tables {
            let kid_text = String::from_utf8_lossy(kid).into_owned();
            let mut next: Vec<KeyMetadata> = records.iter().filter(|r| r.issuer != issuer).cloned().collect();
            if let Some(pem) = keys.get(&kid_text) {
                seen.insert(kid_text.clone());
                let constraint = records
                    .iter()
                    .find(|r| r.issuer == issuer)
                    .and_then(|r| r.constraint.clone());
                next.push(KeyMetadata {
                    issuer: issuer.to_string(),
                    public_key: pem.clone(),
                    constraint,
                });
            }
            if &next == records {
                continue;
            }
            if next.is_empty() {
                tx.remove(JWT_KEYS_TABLE, kid);
            } else {
                tx.put(
                    JWT_KEYS_TABLE,
                    kid,
                    serde_json::to_string(&next).unwrap_or_default().as_bytes(),
                );
            }
        }
        for (kid, pem) in keys.iter().filter(|(k, _)| !seen.contains(*k)) {
            let rec = vec![KeyMetadata {
                issuer: issuer.to_string(),
                public_key: pem.clone(),
                constraint: None,
            }];
            tx.put(
                JWT_KEYS_TABLE,
                kid.as_bytes(),
                serde_json::to_string(&rec).unwrap_or_default().as_bytes(),
            );
        }
        Ok::<bool, ()>(tx.has_writes())
    });
    match outcome {
        Ok((wrote, _)) => Ok(wrote),
        Err(e) => Err(RefreshError::Write(format!("{e:?}"))),
    }
}

/// The issuers configured for refresh, each with its CA bundle (or the error that it has none).
fn refreshable_issuers(engine: &Engine) -> Vec<(String, Result<String, RefreshError>)> {
    let store = engine.store();
    let mut names = vec![];
    store.read_only().foreach(JWT_ISSUERS_TABLE, |k, _| {
        names.push(String::from_utf8_lossy(k).into_owned());
        true
    });
    names
        .into_iter()
        .filter_map(|issuer| {
            let info = issuer_info(&store, &issuer)?;
            if !info.auto_refresh {
                return None;
            }
            let bundle = info
                .ca_cert_bundle_name
                .as_deref()
                .and_then(|n| store.read_only().get(CA_CERT_BUNDLES_TABLE, n.as_bytes()))
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or(RefreshError::NoBundle(info.ca_cert_bundle_name));
            Some((issuer, bundle))
        })
        .collect()
}

/// One refresh round: every auto-refresh issuer, on the primary only.
pub async fn refresh_once(engine: &Arc<Engine>) {
    if !engine.is_primary() {
        return;
    }
    for (issuer, bundle) in refreshable_issuers(engine) {
        let result = match bundle {
            Ok(bundle) => fetch_issuer_keys(&issuer, &bundle).await,
            Err(e) => Err(e),
        };
        let result = match result {
            Ok(keys) => {
                let (engine, issuer2) = (engine.clone(), issuer.clone());
                tokio::task::spawn_blocking(move || write_issuer_keys(&engine, &issuer2, &keys))
                    .await
                    .unwrap_or_else(|e| Err(RefreshError::Write(e.to_string())))
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(wrote) => {
                engine.metrics().jwt_key_refreshes.inc();
                tracing::info!(%issuer, wrote, "JWT signing keys refreshed");
            }
            Err(e) => {
                engine.metrics().jwt_key_refresh_failures.inc();
                tracing::warn!(%issuer, error = %e, "JWT signing key refresh failed");
            }
        }
    }
}

/// Refreshes every `interval` until `shutdown` changes.
pub async fn refresh_loop(engine: Arc<Engine>, interval: Duration, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        refresh_once(&engine).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_urls_split_into_address_and_path() {
        assert_eq!(
            split_https("https://127.0.0.1:4321/keys"),
            Some(("127.0.0.1:4321".into(), "/keys".into()))
        );
        assert_eq!(
            split_https("https://idp.example"),
            Some(("idp.example:443".into(), "/".into()))
        );
        assert_eq!(split_https("http://idp.example/x"), None);
        assert_eq!(split_https("https://user@idp.example/x"), None);
        assert_eq!(split_https("https:///x"), None);
    }

    #[test]
    fn jwks_documents_give_their_signing_keys() {
        let ec = consort_crypto::SigningKey::generate(consort_crypto::Curve::P256).verifying_key();
        let (x, y) = consort_crypto::jose::ec_coordinates(&ec);
        let enc = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let jwks = serde_json::json!({"keys": [
            {"kty": "EC", "crv": "P-256", "kid": "a", "x": enc(&x), "y": enc(&y)},
            {"kty": "EC", "crv": "P-256", "kid": "b", "use": "enc", "x": enc(&x), "y": enc(&y)},
            {"kty": "EC", "crv": "P-256", "x": enc(&x), "y": enc(&y)},
            {"kty": "oct", "kid": "c", "k": "AAAA"},
            {"kty": "EC", "crv": "P-256", "kid": "d", "x": enc(&x[1..]), "y": enc(&y)},
        ]});
        let keys = jwks_keys(&jwks).unwrap();
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(keys["a"], ec.to_pem());
        assert!(matches!(
            jwks_keys(&serde_json::json!({"keys": []})),
            Err(RefreshError::NoKeys)
        ));
        assert!(jwks_keys(&serde_json::json!({})).is_err());
    }
}
