//! Signed governance requests: COSE Sign1 envelopes (RFC 9052) signed by a member key, as CCF's
//! `ccf_cose_sign1` tool makes them, and the verification every `/gov` endpoint that takes a body runs first.
//!
//! Protected headers: `alg` (ES256 for P-256 keys, ES384 for P-384), `kid` (the member id: hex SHA-256 of the
//! member certificate's DER, as the bytes of that hex string, as CCF writes it), `ccf.gov.msg.type`,
//! `ccf.gov.msg.created_at` (integer seconds since the epoch) and, for ballots and withdrawals,
//! `ccf.gov.msg.proposal_id`. The signature is over the COSE `Signature1` structure with empty external AAD;
//! the envelope must carry CBOR tag 18 (COSE_Sign1), as CCF requires.

use coset::cbor::value::Value;
use coset::iana;
use coset::TaggedCborSerializable;
use coset::{CoseSign1, CoseSign1Builder, HeaderBuilder, Label, RegisteredLabelWithPrivate};

use consort_crypto::{Curve, HashAlg, ParsedCert, SigningKey, VerifyingKey};

use crate::error::{AlgorithmFault, CoseFault, CreatedAtFault, HeaderFault, SignatureRejected};
use crate::kv::KvRead;
use crate::limits::{MAX_CREATED_AT_FUTURE_SKEW_SECONDS, MAX_CREATED_AT_SECONDS, MAX_GOV_REQUEST_SIZE_BYTES};
use crate::model::{member_info, MemberStatus};
use crate::{tables, GovError};

/// Protected header label of the governance message type.
pub const HEADER_MSG_TYPE: &str = "ccf.gov.msg.type";
/// Protected header label of the creation time (integer seconds since the epoch).
pub const HEADER_CREATED_AT: &str = "ccf.gov.msg.created_at";
/// Protected header label of the proposal id (ballots and withdrawals).
pub const HEADER_PROPOSAL_ID: &str = "ccf.gov.msg.proposal_id";

/// The governance message types (`ccf.gov.msg.type`), as CCF names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MsgType {
    /// `proposal`: a new proposal (`proposals:create`).
    Proposal,
    /// `ballot`: a member's ballot on a proposal.
    Ballot,
    /// `withdrawal`: the proposer withdraws a proposal.
    Withdrawal,
    /// `ack`: a member signs the state digest to become Active.
    Ack,
    /// `state_digest`: a member asks for the state digest to ack.
    StateDigest,
    /// `recovery_share`: a member submits its recovery share.
    RecoveryShare,
    /// `encrypted_recovery_share`: a member submits its encrypted recovery share.
    EncryptedRecoveryShare,
}

impl MsgType {
    /// The `ccf.gov.msg.type` string, as CCF writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            MsgType::Proposal => "proposal",
            MsgType::Ballot => "ballot",
            MsgType::Withdrawal => "withdrawal",
            MsgType::Ack => "ack",
            MsgType::StateDigest => "state_digest",
            MsgType::RecoveryShare => "recovery_share",
            MsgType::EncryptedRecoveryShare => "encrypted_recovery_share",
        }
    }

    /// Whether the signed request must carry `ccf.gov.msg.proposal_id`.
    pub fn needs_proposal_id(self) -> bool {
        matches!(self, MsgType::Ballot | MsgType::Withdrawal)
    }

    /// Whether only Active members may send it (CCF's `ActiveMemberCOSESign1AuthnPolicy`); `ack` and
    /// `state_digest` are how an Accepted member becomes Active, so any member may send those.
    pub fn needs_active_member(self) -> bool {
        !matches!(self, MsgType::Ack | MsgType::StateDigest)
    }
}

/// A governance request whose signature, signer and headers checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRequest {
    /// The signer: hex SHA-256 of the member certificate's DER.
    pub member_id: String,
    /// The message type (`ccf.gov.msg.type`), checked against the endpoint's.
    pub msg_type: MsgType,
    /// The signed payload (proposal JSON, ballot JSON, ack JSON, ...).
    pub payload: Vec<u8>,
    /// `ccf.gov.msg.created_at`, seconds since the epoch.
    pub created_at: i64,
    /// `ccf.gov.msg.proposal_id`, when present.
    pub proposal_id: Option<String>,
    /// The signature (r ‖ s) in its canonical low-S form. A signature (r, s) and its twin (r, n - s) both verify
    /// and both are accepted (CCF's `ccf_cose_sign1` signs with python-ecdsa, which emits either), so the
    /// signature as received is not a stable name for a request: this canonical form is.
    pub signature: Vec<u8>,
    /// SHA-256 of the COSE `Sig_structure` (the to-be-signed bytes: context, protected headers, empty external
    /// AAD, payload). It names what the member signed independently of how the signature or the unprotected
    /// parts of the envelope are encoded, so the replay window is keyed on it.
    pub signed_digest: [u8; 32],
    /// The whole COSE Sign1 envelope as received, recorded in `public:ccf.gov.cose_history`.
    pub envelope: Vec<u8>,
}

impl VerifiedRequest {
    /// SHA-256 of the canonical signature: CCF's request digest, used in proposal ids. For a low-S signature it
    /// is CCF's value; a high-S one gets the digest of its low-S twin, so both forms name one proposal.
    pub fn request_digest(&self) -> [u8; 32] {
        consort_crypto::sha256(&self.signature)
    }
}

fn alg_for_curve(curve: Curve) -> (iana::Algorithm, HashAlg) {
    match curve {
        Curve::P256 => (iana::Algorithm::ES256, HashAlg::Sha256),
        Curve::P384 => (iana::Algorithm::ES384, HashAlg::Sha384),
    }
}

fn text_header<'a>(rest: &'a [(Label, Value)], name: &str) -> Option<&'a Value> {
    rest.iter()
        .find(|(l, _)| matches!(l, Label::Text(t) if t == name))
        .map(|(_, v)| v)
}

/// Verifies a governance request: parses the tagged COSE Sign1 `body`, finds the member named by `kid`
/// (`public:ccf.gov.members.certs`), checks the algorithm against the member's key, the signature, the message
/// type, the proposal id (for ballots and withdrawals: it must be present and, when `expected_proposal_id` is
/// given — the id from the URL — equal to it), that the member is Active where the type requires it, and that
/// `created_at` is not more than [`MAX_CREATED_AT_FUTURE_SKEW_SECONDS`] after `now_seconds`.
///
/// Replay protection of proposals (the recent-proposal window) is part of [`crate::create_proposal`], which
/// records the request in the same transaction; ballots and withdrawals are idempotent, as in CCF.
pub fn verify_gov_request(
    kv: &mut dyn KvRead,
    body: &[u8],
    expected_type: MsgType,
    expected_proposal_id: Option<&str>,
    now_seconds: i64,
) -> Result<VerifiedRequest, GovError> {
    if body.len() > MAX_GOV_REQUEST_SIZE_BYTES {
        return Err(GovError::TooLarge {
            what: "governance request",
            size: body.len(),
            limit: MAX_GOV_REQUEST_SIZE_BYTES,
        });
    }
    let sign1 = CoseSign1::from_tagged_slice(body).map_err(|e| GovError::MalformedCose(e.into()))?;
    let headers = SignedHeaders::read(&sign1.protected.header)?;
    let payload = sign1
        .payload
        .clone()
        .ok_or(GovError::MalformedCose(CoseFault::DetachedPayload))?;

    // Authenticate before judging the content, so unauthenticated callers learn nothing about it.
    let key = member_key(kv, &headers.kid)?;
    let (expected_alg, hash) = alg_for_curve(key.curve());
    if headers.alg != expected_alg {
        return Err(GovError::UnsupportedAlgorithm(AlgorithmFault::KeyMismatch {
            signed: headers.alg,
            expected: expected_alg,
        }));
    }
    let signed = sign1.tbs_data(b"");
    let signature = key
        .verify_raw_canonical(&signed, hash, &sign1.signature)
        .map_err(|source| {
            GovError::InvalidSignature(SignatureRejected {
                member_id: headers.kid.clone(),
                source,
            })
        })?;

    headers.check(expected_type, expected_proposal_id, now_seconds)?;
    if expected_type.needs_active_member() {
        let info = member_info(kv, &headers.kid)?.ok_or_else(|| GovError::UnknownMember(headers.kid.clone()))?;
        if info.status != MemberStatus::Active {
            return Err(GovError::MemberNotActive(headers.kid));
        }
    }

    Ok(VerifiedRequest {
        member_id: headers.kid,
        msg_type: expected_type,
        payload,
        created_at: headers.created_at,
        proposal_id: headers.proposal_id,
        signature,
        signed_digest: consort_crypto::sha256(&signed),
        envelope: body.to_vec(),
    })
}

/// The protected headers of a governance request, read but not yet checked against the endpoint.
struct SignedHeaders {
    kid: String,
    alg: iana::Algorithm,
    msg_type: String,
    created_at: i64,
    proposal_id: Option<String>,
}

impl SignedHeaders {
    /// Reads `kid`, `alg` and the `ccf.gov.msg.*` headers, refusing missing ones and ones of the wrong type.
    fn read(header: &coset::Header) -> Result<Self, GovError> {
        let kid = std::str::from_utf8(&header.key_id)
            .map_err(|e| GovError::InvalidHeader(HeaderFault::KidNotUtf8(e)))?
            .to_owned();
        if kid.is_empty() {
            return Err(GovError::InvalidHeader(HeaderFault::Missing("kid")));
        }
        let alg = match &header.alg {
            Some(RegisteredLabelWithPrivate::Assigned(a)) => *a,
            Some(other) => {
                return Err(GovError::UnsupportedAlgorithm(AlgorithmFault::Unregistered(
                    other.clone(),
                )))
            }
            None => return Err(GovError::InvalidHeader(HeaderFault::Missing("alg"))),
        };
        let msg_type = match text_header(&header.rest, HEADER_MSG_TYPE) {
            Some(Value::Text(t)) => t.clone(),
            Some(_) => return Err(GovError::InvalidHeader(HeaderFault::NotText(HEADER_MSG_TYPE))),
            None => return Err(GovError::InvalidHeader(HeaderFault::Missing(HEADER_MSG_TYPE))),
        };
        let created_at = match text_header(&header.rest, HEADER_CREATED_AT) {
            Some(Value::Integer(i)) => {
                i64::try_from(i128::from(*i)).map_err(|e| GovError::InvalidCreatedAt(CreatedAtFault::NotI64(e)))?
            }
            Some(_) => return Err(GovError::InvalidHeader(HeaderFault::NotInteger(HEADER_CREATED_AT))),
            None => return Err(GovError::InvalidHeader(HeaderFault::Missing(HEADER_CREATED_AT))),
        };
        let proposal_id = match text_header(&header.rest, HEADER_PROPOSAL_ID) {
            Some(Value::Text(t)) => Some(t.clone()),
            Some(_) => return Err(GovError::InvalidHeader(HeaderFault::NotText(HEADER_PROPOSAL_ID))),
            None => None,
        };
        Ok(SignedHeaders {
            kid,
            alg,
            msg_type,
            created_at,
            proposal_id,
        })
    }

    /// Checks the authenticated headers against the endpoint: the message type, the proposal id (present for
    /// ballots and withdrawals, and equal to the URL's when given) and `created_at` (in range, not too far
    /// ahead of `now_seconds`).
    fn check(
        &self,
        expected_type: MsgType,
        expected_proposal_id: Option<&str>,
        now_seconds: i64,
    ) -> Result<(), GovError> {
        if self.msg_type != expected_type.as_str() {
            return Err(GovError::WrongMessageType {
                expected: expected_type.as_str().into(),
                got: self.msg_type.clone(),
            });
        }
        if expected_type.needs_proposal_id() {
            let Some(signed) = &self.proposal_id else {
                return Err(GovError::InvalidHeader(HeaderFault::Missing(HEADER_PROPOSAL_ID)));
            };
            if expected_proposal_id.is_some_and(|p| p != signed) {
                return Err(GovError::InvalidResourceName(
                    "authenticated proposal id does not match URL".into(),
                ));
            }
        }
        let created_at = self.created_at;
        if !(0..=MAX_CREATED_AT_SECONDS).contains(&created_at) {
            return Err(GovError::InvalidCreatedAt(CreatedAtFault::OutOfRange(created_at)));
        }
        if created_at > now_seconds.saturating_add(MAX_CREATED_AT_FUTURE_SKEW_SECONDS) {
            return Err(GovError::InvalidCreatedAt(CreatedAtFault::InFuture {
                created_at,
                max_skew_seconds: MAX_CREATED_AT_FUTURE_SKEW_SECONDS,
                now_seconds,
            }));
        }
        Ok(())
    }
}

/// The public key of the member whose id is `kid`, from `public:ccf.gov.members.certs`.
fn member_key(kv: &mut dyn KvRead, kid: &str) -> Result<VerifyingKey, GovError> {
    let cert_pem = kv
        .read(tables::MEMBERS_CERTS, kid.as_bytes())
        .ok_or_else(|| GovError::UnknownMember(kid.to_owned()))?;
    let unusable = |source| GovError::MemberCertificate {
        member_id: kid.to_owned(),
        source,
    };
    let cert_text = std::str::from_utf8(&cert_pem).map_err(|e| unusable(consort_crypto::CryptoError::from(e)))?;
    ParsedCert::from_pem(cert_text)
        .and_then(|cert| cert.public_key())
        .map_err(unusable)
}

/// Signs a governance request as CCF's `ccf_cose_sign1` does: a tagged COSE Sign1 with `alg` from the key's
/// curve, `kid` = `member_id` (hex SHA-256 of the member certificate DER, see [`consort_crypto::cert_id`]),
/// `ccf.gov.msg.type`, `ccf.gov.msg.created_at` and, if given, `ccf.gov.msg.proposal_id`.
pub fn sign_gov_request(
    key: &SigningKey,
    member_id: &str,
    msg_type: MsgType,
    created_at: i64,
    proposal_id: Option<&str>,
    payload: &[u8],
) -> Vec<u8> {
    let (alg, hash) = alg_for_curve(key.curve());
    let mut protected = HeaderBuilder::new()
        .algorithm(alg)
        .key_id(member_id.as_bytes().to_vec())
        .text_value(HEADER_MSG_TYPE.into(), Value::Text(msg_type.as_str().into()))
        .text_value(HEADER_CREATED_AT.into(), Value::Integer(created_at.into()));
    if let Some(p) = proposal_id {
        protected = protected.text_value(HEADER_PROPOSAL_ID.into(), Value::Text(p.into()));
    }
    let sign1 = CoseSign1Builder::new()
        .protected(protected.build())
        .payload(payload.to_vec())
        .create_signature(b"", |data| key.sign_raw(data, hash))
        .build();
    // invariant: our own header values are plain text and integers without duplicate labels: encoding cannot fail.
    sign1.to_tagged_vec().expect("COSE Sign1 encodes")
}
