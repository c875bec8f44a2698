//! The `jwt` policy: bearer tokens validated against the keys governance set for an issuer.

use super::Credentials;
use crate::apps::JwtCaller;
use consort_kv::Store;

/// The caller a bearer token in `Authorization` names, if the token is valid.
pub fn authenticate(_store: &Store, cred: &Credentials<'_>) -> Result<JwtCaller, String> {
    match super::header(cred.headers, "authorization") {
        None => Err("Missing Authorization header with a bearer token".into()),
        Some(_) => Err("JWT validation is not available yet".into()),
    }
}
