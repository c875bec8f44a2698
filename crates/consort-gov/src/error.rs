//! Typed governance errors, each with CCF's error code string and the HTTP status the node answers with.

/// Why a governance request or operation was refused. The node maps it to
/// `{"error": {"code": e.code(), "message": e.to_string()}}` with status [`GovError::http_status`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GovError {
    /// The body is not a tagged COSE Sign1 structure (bad CBOR, wrong shape, missing payload).
    #[error("malformed COSE Sign1 request: {0}")]
    MalformedCose(String),
    /// A required protected header is missing or has the wrong type.
    #[error("invalid COSE protected header: {0}")]
    InvalidHeader(String),
    /// The signature algorithm is neither ES256 nor ES384, or does not match the signer's key.
    #[error("unsupported or mismatched COSE algorithm: {0}")]
    UnsupportedAlgorithm(String),
    /// No member has the certificate named by `kid`.
    #[error("unknown member {0}")]
    UnknownMember(String),
    /// The signature does not verify under the member's certificate.
    #[error("invalid signature for member {0}")]
    InvalidSignature(String),
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
    InvalidCreatedAt(String),
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
    InvalidInput(String),
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
    Internal(String),
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
