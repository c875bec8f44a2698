//! Typed governance errors, each with CCF's error code string and the HTTP status the node answers with, and the
//! small enums that say what was wrong with a request (keeping the underlying error as their source).

use coset::iana::{self, EnumI64};

/// Why a governance request or operation was refused. The node maps it to
/// `{"error": {"code": e.code(), "message": e.to_string()}}` with status [`GovError::http_status`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GovError {
    /// The body is not a tagged COSE Sign1 structure (bad CBOR, wrong shape, missing payload).
    #[error("malformed COSE Sign1 request: {0}")]
    MalformedCose(#[source] CoseFault),
    /// A required protected header is missing or has the wrong type.
    #[error("invalid COSE protected header: {0}")]
    InvalidHeader(#[source] HeaderFault),
    /// The signature algorithm is neither ES256 nor ES384, or does not match the signer's key.
    #[error("unsupported or mismatched COSE algorithm: {0}")]
    UnsupportedAlgorithm(#[source] AlgorithmFault),
    /// No member has the certificate named by `kid`.
    #[error("unknown member {0}")]
    UnknownMember(String),
    /// The signature does not verify under the member's certificate (says "invalid signature for member {id}";
    /// its source is the crypto error).
    #[error(transparent)]
    InvalidSignature(SignatureRejected),
    /// `ccf.gov.msg.type` is not the one this endpoint expects.
    #[error("wrong message type: expected {expected}, got {got}")]
    WrongMessageType {
        /// The type the endpoint takes.
        expected: String,
        /// The type the request was signed with.
        got: String,
    },
    /// The member exists but is not Active.
    #[error("member {0} is not active")]
    MemberNotActive(String),
    /// `ccf.gov.msg.created_at` is too large, or too far in the future.
    #[error("invalid created_at: {0}")]
    InvalidCreatedAt(#[source] CreatedAtFault),
    /// The same proposal request was submitted before.
    #[error("proposal submission replay, already exists as proposal {0}")]
    ProposalReplay(String),
    /// The proposal request is older than the median of the recent window.
    #[error("proposal created too long ago, created_at must be greater than {0}")]
    ProposalTooOld(String),
    /// A request or proposal exceeds a named limit of `limits`.
    #[error("{what} is {size} bytes, more than the limit of {limit}")]
    TooLarge {
        /// What was measured (request, proposal, ballot).
        what: &'static str,
        /// Its size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// A path parameter does not parse, or does not match the signed one.
    #[error("{0}")]
    InvalidResourceName(String),
    /// The signed payload is not what the endpoint expects.
    #[error("invalid input: {0}")]
    InvalidInput(#[source] InputFault),
    /// No proposal with this id.
    #[error("could not find proposal {0}")]
    ProposalNotFound(String),
    /// The proposal is not Open.
    #[error("proposal {id} is in state {state}, not Open")]
    ProposalNotOpen {
        /// The proposal.
        id: String,
        /// Its current state.
        state: String,
    },
    /// The member already submitted a different ballot.
    #[error("different ballot already submitted by {member_id} for {proposal_id}")]
    VoteAlreadyExists {
        /// The voter.
        member_id: String,
        /// The proposal.
        proposal_id: String,
    },
    /// The member has not voted on this proposal.
    #[error("member {member_id} has not voted for proposal {proposal_id}")]
    VoteNotFound {
        /// The member asked about.
        member_id: String,
        /// The proposal.
        proposal_id: String,
    },
    /// Only the proposer may withdraw a proposal.
    #[error("proposal {proposal_id} can only be withdrawn by proposer {proposer_id}, not caller {caller_id}")]
    NotProposer {
        /// The proposal.
        proposal_id: String,
        /// The member who proposed it.
        proposer_id: String,
        /// The member who tried to withdraw it.
        caller_id: String,
    },
    /// The constitution's `validate` rejected the proposal.
    #[error("proposal failed to validate: {0}")]
    ProposalFailedToValidate(String),
    /// The constitution (validate, resolve or apply) threw or exceeded a limit; the operation's transaction must
    /// be dropped.
    #[error("{0}")]
    ProposalFailed(String),
    /// No ACK record for this member.
    #[error("no ACK record exists for member {0}")]
    AckNotFound(String),
    /// The signed state digest is not the expected one.
    #[error("submitted state digest is not valid: expected {expected}, received {received}")]
    StateDigestMismatch {
        /// The digest the member must sign.
        expected: String,
        /// The digest the member signed.
        received: String,
    },
    /// A member's recorded certificate is unusable (not PEM, does not parse, unsupported key): the governance
    /// tables are corrupt, the request cannot be authenticated.
    #[error("internal governance error: certificate of member {member_id} is unusable: {source}")]
    MemberCertificate {
        /// The member named by the request's `kid`.
        member_id: String,
        /// Why the certificate or its key is unusable.
        #[source]
        source: consort_crypto::CryptoError,
    },
    /// A governance table holds a value that is not the JSON it must be.
    #[error("internal governance error: corrupt {table}[{key}]: {source}")]
    CorruptTable {
        /// The table.
        table: String,
        /// The key whose value is corrupt.
        key: String,
        /// The JSON parser's error (shared so that this enum stays `Clone` and comparable).
        #[source]
        source: consort_crypto::SharedError<serde_json::Error>,
    },
    /// The service is in no state to do this (no constitution, no service information, ...).
    #[error("internal governance error: {0}")]
    Internal(#[source] InternalFault),
}

impl GovError {
    /// CCF's error code string for this error.
    pub fn code(&self) -> &'static str {
        match self {
            GovError::MalformedCose(_)
            | GovError::InvalidHeader(_)
            | GovError::UnsupportedAlgorithm(_)
            | GovError::UnknownMember(_)
            | GovError::InvalidSignature(_)
            | GovError::WrongMessageType { .. } => "InvalidAuthenticationInfo",
            GovError::MemberNotActive(_) | GovError::NotProposer { .. } => "AuthorizationFailed",
            GovError::InvalidCreatedAt(_) => "InvalidCreatedAt",
            GovError::ProposalReplay(_) => "ProposalReplay",
            GovError::ProposalTooOld(_) => "ProposalCreatedTooLongAgo",
            GovError::TooLarge { .. } => "RequestBodyTooLarge",
            GovError::InvalidResourceName(_) => "InvalidResourceName",
            GovError::InvalidInput(_) => "InvalidInput",
            GovError::ProposalNotFound(_) => "ProposalNotFound",
            GovError::ProposalNotOpen { .. } => "ProposalNotOpen",
            GovError::VoteAlreadyExists { .. } => "VoteAlreadyExists",
            GovError::VoteNotFound { .. } => "VoteNotFound",
            GovError::ProposalFailedToValidate(_) => "ProposalFailedToValidate",
            GovError::AckNotFound(_) => "ResourceNotFound",
            GovError::StateDigestMismatch { .. } => "StateDigestMismatch",
            GovError::ProposalFailed(_)
            | GovError::MemberCertificate { .. }
            | GovError::CorruptTable { .. }
            | GovError::Internal(_) => "InternalError",
        }
    }

    /// The HTTP status the node answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            GovError::MalformedCose(_)
            | GovError::InvalidHeader(_)
            | GovError::UnsupportedAlgorithm(_)
            | GovError::UnknownMember(_)
            | GovError::InvalidSignature(_)
            | GovError::WrongMessageType { .. } => 401,
            GovError::MemberNotActive(_) | GovError::NotProposer { .. } => 403,
            GovError::ProposalNotFound(_) | GovError::VoteNotFound { .. } | GovError::AckNotFound(_) => 404,
            GovError::TooLarge { .. } => 413,
            GovError::InvalidCreatedAt(_)
            | GovError::ProposalReplay(_)
            | GovError::ProposalTooOld(_)
            | GovError::InvalidResourceName(_)
            | GovError::InvalidInput(_)
            | GovError::ProposalNotOpen { .. }
            | GovError::VoteAlreadyExists { .. }
            | GovError::ProposalFailedToValidate(_)
            | GovError::StateDigestMismatch { .. } => 400,
            GovError::ProposalFailed(_)
            | GovError::MemberCertificate { .. }
            | GovError::CorruptTable { .. }
            | GovError::Internal(_) => 500,
        }
    }

    /// The JSON error body CCF answers with: `{"error": {"code", "message"}}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code(), "message": self.to_string()}})
    }
}

/// Why a body is not a usable COSE Sign1 envelope (see [`GovError::MalformedCose`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoseFault {
    /// The bytes are not tagged COSE Sign1 CBOR (coset's error says where).
    #[error("{0}")]
    Cbor(#[source] consort_crypto::SharedError<coset::CoseError>),
    /// The payload is detached (not carried in the envelope).
    #[error("detached payloads are not accepted")]
    DetachedPayload,
}

impl From<coset::CoseError> for CoseFault {
    fn from(e: coset::CoseError) -> Self {
        CoseFault::Cbor(e.into())
    }
}

/// What is wrong with a protected header (see [`GovError::InvalidHeader`]); headers are named by their label
/// (`kid`, `alg`, or one of [`crate::cose`]'s `HEADER_*`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderFault {
    /// `kid` is not UTF-8, so it cannot be a member id.
    #[error("kid is not a UTF-8 member id")]
    KidNotUtf8(#[source] std::str::Utf8Error),
    /// A required header is absent.
    #[error("missing {0}")]
    Missing(&'static str),
    /// A header that must be a text string is not one.
    #[error("{0} is not a text string")]
    NotText(&'static str),
    /// A header that must be an integer is not one.
    #[error("{0} is not an integer")]
    NotInteger(&'static str),
}

/// Why the signature algorithm is refused (see [`GovError::UnsupportedAlgorithm`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlgorithmFault {
    /// `alg` is a private-use or text label, not an IANA-registered algorithm.
    #[error("{0:?}")]
    Unregistered(coset::Algorithm),
    /// `alg` is not the algorithm of the member's key (ES256 for P-256, ES384 for P-384).
    #[error("alg {} does not match the member's key (expected {})", .signed.to_i64(), .expected.to_i64())]
    KeyMismatch {
        /// The algorithm the request names.
        signed: iana::Algorithm,
        /// The algorithm of the member's key.
        expected: iana::Algorithm,
    },
}

/// A signature that does not verify under the member's certificate (see [`GovError::InvalidSignature`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid signature for member {member_id}")]
pub struct SignatureRejected {
    /// The member named by `kid`.
    pub member_id: String,
    /// Why the signature was refused (malformed, or does not verify).
    #[source]
    pub source: consort_crypto::CryptoError,
}

/// What is wrong with `ccf.gov.msg.created_at` (see [`GovError::InvalidCreatedAt`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreatedAtFault {
    /// The CBOR integer does not fit in an i64.
    #[error("{} is out of range", crate::cose::HEADER_CREATED_AT)]
    NotI64(#[source] std::num::TryFromIntError),
    /// Negative, or beyond [`crate::limits::MAX_CREATED_AT_SECONDS`].
    #[error("created_at {0} is out of range")]
    OutOfRange(i64),
    /// Further ahead of the node's clock than the allowed skew.
    #[error("created_at {created_at} is more than {max_skew_seconds} s in the future (now {now_seconds})")]
    InFuture {
        /// The signed time, seconds since the epoch.
        created_at: i64,
        /// The allowed skew ([`crate::limits::MAX_CREATED_AT_FUTURE_SKEW_SECONDS`]).
        max_skew_seconds: i64,
        /// The node's time, seconds since the epoch.
        now_seconds: i64,
    },
}

/// Why a signed payload or genesis input is refused (see [`GovError::InvalidInput`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputFault {
    /// The signed body is not a JSON object with the named string field.
    #[error("signed request body is not a JSON object containing required string field \"{0}\"")]
    MissingField(&'static str),
    /// A recorded proposal is not UTF-8 text.
    #[error("proposal is not UTF-8")]
    ProposalNotUtf8(#[source] std::str::Utf8Error),
    /// Genesis with no member.
    #[error("genesis needs at least one member")]
    NoGenesisMember,
    /// A genesis member's or user's certificate does not parse.
    #[error("{whose} certificate does not parse: {source}")]
    Certificate {
        /// `member` or `user`.
        whose: &'static str,
        /// The parser's error.
        #[source]
        source: consort_crypto::CryptoError,
    },
    /// The member certificates a transaction wrote break the one-key-one-member invariant.
    #[error("{0}")]
    MemberCerts(#[from] MemberCertFault),
}

/// How the member certificates written by a transaction break the invariant that a member id is SHA-256 of its
/// certificate's DER and a key belongs to one member only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemberCertFault {
    /// The certificate is not UTF-8 text.
    #[error("the certificate of member {member_id} does not parse: {source}")]
    NotUtf8 {
        /// The member id it was written under.
        member_id: String,
        /// Where the text stops being UTF-8.
        #[source]
        source: std::str::Utf8Error,
    },
    /// The certificate does not parse.
    #[error("the certificate of member {member_id} does not parse: {source}")]
    Unparsable {
        /// The member id it was written under.
        member_id: String,
        /// The parser's error.
        #[source]
        source: consort_crypto::CryptoError,
    },
    /// The member id is not the certificate's id.
    #[error(
        "member id {member_id} is not the id of its certificate ({cert_id}): a member id is SHA-256 of the \
         certificate's DER"
    )]
    NotCertId {
        /// The member id it was written under.
        member_id: String,
        /// The certificate's id.
        cert_id: String,
    },
    /// Another member holds a certificate for the same public key.
    #[error(
        "member {member_id} would hold the same public key as member {other}: a key belongs to one member only \
         (the certificate is a re-encoding or a re-issue of member {other}'s)"
    )]
    SharedKey {
        /// The member whose certificate was written.
        member_id: String,
        /// The member already holding the key.
        other: String,
    },
}

/// The service is in no state to do what was asked (see [`GovError::Internal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InternalFault {
    /// No constitution has been set.
    #[error("no constitution is set: proposals cannot be evaluated")]
    NoConstitution,
    /// No signature transaction yet, so no state digest to ack.
    #[error("service has no signatures to ack yet - try again soon")]
    NoSignatureYet,
    /// `public:ccf.gov.service.info` is absent.
    #[error("service information could not be found")]
    NoServiceInfo,
    /// `public:ccf.gov.service.info` is not a JSON object.
    #[error("service information is not a JSON object")]
    ServiceInfoNotObject,
    /// A new proposal's id names an existing proposal.
    #[error("proposal id collision")]
    ProposalIdCollision,
}

#[cfg(test)]
mod tests {
    use super::*;
    use coset::TaggedCborSerializable;
    use std::error::Error as _;

    /// The messages CCF clients see are the ones the variants carried as text before they were typed.
    #[test]
    fn typed_request_errors_render_the_messages_clients_see() {
        let cases = [
            (
                GovError::MalformedCose(CoseFault::DetachedPayload),
                "malformed COSE Sign1 request: detached payloads are not accepted",
            ),
            (
                GovError::InvalidHeader(HeaderFault::Missing("ccf.gov.msg.type")),
                "invalid COSE protected header: missing ccf.gov.msg.type",
            ),
            (
                GovError::InvalidHeader(HeaderFault::NotText("ccf.gov.msg.proposal_id")),
                "invalid COSE protected header: ccf.gov.msg.proposal_id is not a text string",
            ),
            (
                GovError::InvalidHeader(HeaderFault::NotInteger("ccf.gov.msg.created_at")),
                "invalid COSE protected header: ccf.gov.msg.created_at is not an integer",
            ),
            (
                GovError::UnsupportedAlgorithm(AlgorithmFault::KeyMismatch {
                    signed: iana::Algorithm::ES256,
                    expected: iana::Algorithm::ES384,
                }),
                "unsupported or mismatched COSE algorithm: alg -7 does not match the member's key (expected -35)",
            ),
            (
                GovError::UnsupportedAlgorithm(AlgorithmFault::Unregistered(coset::Algorithm::PrivateUse(-65600))),
                "unsupported or mismatched COSE algorithm: PrivateUse(-65600)",
            ),
            (
                GovError::InvalidCreatedAt(CreatedAtFault::OutOfRange(-1)),
                "invalid created_at: created_at -1 is out of range",
            ),
            (
                GovError::InvalidCreatedAt(CreatedAtFault::InFuture {
                    created_at: 1000,
                    max_skew_seconds: 300,
                    now_seconds: 10,
                }),
                "invalid created_at: created_at 1000 is more than 300 s in the future (now 10)",
            ),
            (
                GovError::InvalidInput(InputFault::MissingField("ballot")),
                "invalid input: signed request body is not a JSON object containing required string field \"ballot\"",
            ),
            (
                GovError::InvalidInput(InputFault::NoGenesisMember),
                "invalid input: genesis needs at least one member",
            ),
            (
                GovError::InvalidInput(
                    MemberCertFault::NotCertId {
                        member_id: "aa".into(),
                        cert_id: "bb".into(),
                    }
                    .into(),
                ),
                "invalid input: member id aa is not the id of its certificate (bb): a member id is SHA-256 of the \
                 certificate's DER",
            ),
            (
                GovError::Internal(InternalFault::NoSignatureYet),
                "internal governance error: service has no signatures to ack yet - try again soon",
            ),
        ];
        for (err, message) in cases {
            assert_eq!(err.to_string(), message);
            assert_eq!(err.to_json()["error"]["message"], message);
        }
    }

    #[test]
    fn an_invalid_signature_names_the_member_and_keeps_the_crypto_error_as_its_source() {
        let err = GovError::InvalidSignature(SignatureRejected {
            member_id: "m1".into(),
            source: consort_crypto::CryptoError::BadSignature,
        });
        assert_eq!(err.to_string(), "invalid signature for member m1");
        assert_eq!((err.code(), err.http_status()), ("InvalidAuthenticationInfo", 401));
        // Transparent: the next error in the chain is the crypto error itself, not a repetition of the message.
        let source = err.source().expect("the crypto error is kept");
        assert_eq!(
            source.downcast_ref::<consort_crypto::CryptoError>(),
            Some(&consort_crypto::CryptoError::BadSignature)
        );
    }

    #[test]
    fn malformed_cbor_keeps_coset_error_in_the_chain() {
        let cose = coset::CoseSign1::from_tagged_slice(&[0xff]).unwrap_err();
        let text = cose.to_string();
        let err = GovError::MalformedCose(cose.into());
        assert_eq!(err.to_string(), format!("malformed COSE Sign1 request: {text}"));
        let fault = err.source().expect("the fault is kept");
        let shared = fault
            .source()
            .and_then(|s| s.downcast_ref::<consort_crypto::SharedError<coset::CoseError>>())
            .expect("coset's error is kept under the fault");
        assert_eq!(shared.get().to_string(), text);
    }

    #[test]
    fn a_created_at_beyond_i64_keeps_the_conversion_error() {
        let too_big = i64::try_from(i128::MAX).unwrap_err();
        let err = GovError::InvalidCreatedAt(CreatedAtFault::NotI64(too_big));
        assert_eq!(
            err.to_string(),
            "invalid created_at: ccf.gov.msg.created_at is out of range"
        );
        assert_eq!((err.code(), err.http_status()), ("InvalidCreatedAt", 400));
        let fault = err.source().expect("the fault is kept");
        assert!(fault.source().is_some_and(|s| s.is::<std::num::TryFromIntError>()));
    }

    #[test]
    fn an_unparsable_member_certificate_keeps_the_parser_error() {
        let parse = consort_crypto::ParsedCert::from_pem("not a certificate").unwrap_err();
        let err = GovError::InvalidInput(
            MemberCertFault::Unparsable {
                member_id: "m1".into(),
                source: parse.clone(),
            }
            .into(),
        );
        assert_eq!(
            err.to_string(),
            format!("invalid input: the certificate of member m1 does not parse: {parse}")
        );
        let input = err.source().expect("the input fault is kept");
        let certs = input.source().expect("the member certificate fault is kept");
        assert_eq!(certs.source().and_then(|s| s.downcast_ref()), Some(&parse));
    }
}
