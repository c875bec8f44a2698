//! Authentication policies: who is calling, decided per endpoint from the policies it accepts (CCF's
//! `authn_policies`: `user_cert`, `member_cert`, `any_cert`, `jwt`, `user_cose_sign1`, `no_auth`).
//!
//! The node authenticates before the app runs; the app sees only the resulting [`Caller`]. A request is served if
//! any one accepted policy authenticates it (tried in [`AuthPolicy::ALL`] order); otherwise it gets 401 naming
//! what each policy found missing.

pub mod cose;
pub mod jwt;
pub mod refresh;

use crate::apps::{AuthPolicies, AuthPolicy, Caller};
use consort_kv::Store;

/// Users' certificates (user id -> PEM).
pub const USERS_CERTS_TABLE: &str = consort_gov::tables::USERS_CERTS;
/// Members' certificates (member id -> PEM).
pub const MEMBERS_CERTS_TABLE: &str = "public:ccf.gov.members.certs";

/// What a request presents to be authenticated.
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    /// The id (hex SHA-256 of the DER) of the TLS client certificate the connection proved, if any.
    pub cert_id: Option<&'a str>,
    /// Request headers, names in lower case.
    pub headers: &'a [(String, String)],
    /// The request body (a COSE Sign1 envelope for `user_cose_sign1`).
    pub body: &'a [u8],
    /// Seconds since the Unix epoch, for token expiry.
    pub now_unix: u64,
}

/// Why no accepted policy authenticated a request: one reason per policy tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unauthenticated {
    pub reasons: Vec<String>,
}

impl std::fmt::Display for Unauthenticated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.reasons.is_empty() {
            return f.write_str("the endpoint accepts no authentication policy");
        }
        f.write_str(&self.reasons.join("; "))
    }
}

/// The caller of a request per `policies`, or why none of them authenticates it.
pub fn authenticate(store: &Store, policies: AuthPolicies, cred: &Credentials<'_>) -> Result<Caller, Unauthenticated> {
    let mut reasons = Vec::new();
    for policy in policies.iter() {
        match authenticate_one(store, policy, cred) {
            Ok(caller) => return Ok(caller),
            Err(reason) => reasons.push(reason),
        }
    }
    Err(Unauthenticated { reasons })
}

fn authenticate_one(store: &Store, policy: AuthPolicy, cred: &Credentials<'_>) -> Result<Caller, String> {
    let read = store.read_only();
    match policy {
        AuthPolicy::NoAuth => Ok(Caller::Anonymous),
        AuthPolicy::UserCert => match cred.cert_id {
            Some(id) if read.has(USERS_CERTS_TABLE, id.as_bytes()) => Ok(Caller::User(id.to_string())),
            Some(_) => Err("Could not find matching user certificate".into()),
            None => Err("Missing client certificate: this endpoint requires a user TLS certificate".into()),
        },
        AuthPolicy::MemberCert => match cred.cert_id {
            Some(id) if read.has(MEMBERS_CERTS_TABLE, id.as_bytes()) => Ok(Caller::Member(id.to_string())),
            Some(_) => Err("Could not find matching member certificate".into()),
            None => Err("Missing client certificate: this endpoint requires a member TLS certificate".into()),
        },
        AuthPolicy::AnyCert => match cred.cert_id {
            Some(id) => Ok(Caller::AnyCert(id.to_string())),
            None => Err("Missing client certificate".into()),
        },
        AuthPolicy::Jwt => jwt::authenticate(store, cred).map(|c| Caller::Jwt(Box::new(c))),
        AuthPolicy::UserCoseSign1 => cose::authenticate(store, cred).map(|c| Caller::UserCose(Box::new(c))),
    }
}

/// The value of header `name` (lower case), if the request has it.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}
