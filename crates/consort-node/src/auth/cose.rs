//! The `user_cose_sign1` policy: a request body signed by a registered user as COSE Sign1.

use super::Credentials;
use crate::apps::CoseCaller;
use consort_kv::Store;

/// The user whose COSE Sign1 signature the body carries, if it verifies.
pub fn authenticate(_store: &Store, _cred: &Credentials<'_>) -> Result<CoseCaller, String> {
    Err("COSE Sign1 user authentication is not available yet".into())
}
