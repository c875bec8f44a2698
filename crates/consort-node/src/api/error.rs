//! The one error answer of every endpoint: an HTTP status, CCF's error code and a message, rendered as CCF's JSON
//! error shape `{"error": {"code": ..., "message": ...}}`. Errors of the lower layers map into it here, so status
//! codes are chosen in one place.

use crate::engine::{ReceiptError, WriteError};
use crate::net::forwarding::ForwardError;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    /// HTTP status (4xx or 5xx; 202 for "not yet").
    pub status: u16,
    /// CCF's error code, e.g. `InvalidInput`.
    pub code: &'static str,
    /// What went wrong, for a person.
    pub message: String,
}

impl ApiError {
    /// An error answer with this status, code and message.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 `InvalidInput`.
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::new(400, "InvalidInput", message)
    }

    /// 500 `InternalError`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// The JSON body: `{"error": {"code", "message"}}`.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code, "message": self.message}})
    }
}

impl From<ReceiptError> for ApiError {
    fn from(e: ReceiptError) -> Self {
        let message = e.to_string();
        match e {
            ReceiptError::NotCommitted(_) | ReceiptError::NoSignatureYet(_) => {
                ApiError::new(202, "TransactionPendingOrUnknown", message)
            }
            ReceiptError::Invalid(_) => ApiError::new(404, "TransactionInvalid", message),
            ReceiptError::Internal(_) => ApiError::internal(message),
        }
    }
}

impl From<ForwardError> for ApiError {
    fn from(e: ForwardError) -> Self {
        let message = e.to_string();
        match e {
            ForwardError::NoPrimary(_) => ApiError::new(503, "NoPrimary", message),
            ForwardError::TooManyInFlight => ApiError::new(503, "TooManyForwardedRequests", message),
            ForwardError::ChannelUnavailable => ApiError::new(503, "ForwardingFailed", message),
            ForwardError::Dropped => ApiError::new(502, "ForwardingFailed", message),
            ForwardError::Timeout { .. } => ApiError::new(504, "ForwardingTimeout", message),
        }
    }
}

impl ApiError {
    /// The answer for a write that did not commit for a reason other than its body's own error.
    pub fn from_write<E>(e: &WriteError<E>) -> Option<Self> {
        match e {
            WriteError::Body(_) => None,
            WriteError::Conflict => Some(ApiError::new(
                409,
                "TransactionConflict",
                "too many concurrent conflicting transactions; retry",
            )),
            WriteError::NotPrimary(_) => Some(ApiError::new(
                503,
                "NotPrimary",
                "this node is not the primary; retry on the primary",
            )),
            WriteError::Refused(msg) => Some(ApiError::new(503, "ProposalRefused", msg.clone())),
        }
    }
}
