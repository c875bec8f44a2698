//! JSON-RPC errors with the codes and messages geth gives, which web3.py and ethers recognise.

use serde_json::{json, Value};

/// Invalid JSON.
pub const PARSE_ERROR: i64 = -32700;
/// Not a JSON-RPC 2.0 request object.
pub const INVALID_REQUEST: i64 = -32600;
/// No such method.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Wrong parameters.
pub const INVALID_PARAMS: i64 = -32602;
/// Internal failure (a corrupt stored record).
pub const INTERNAL_ERROR: i64 = -32603;
/// geth's code for transaction refusals (nonce, funds, chain id, sender, gas).
pub const TX_REJECTED: i64 = -32000;
/// A limit was exceeded (geth and providers use it for too-large log queries).
pub const LIMIT_EXCEEDED: i64 = -32005;
/// A response would exceed [`crate::limits::MAX_RESPONSE_BYTES`] (geth's code and message).
pub const RESPONSE_TOO_LARGE: i64 = -32003;
/// A call reverted (`data` holds the revert bytes).
pub const EXECUTION_REVERTED: i64 = 3;

/// One JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RpcError {
    /// The JSON-RPC error code.
    pub code: i64,
    /// The message (geth's text where clients match on it).
    pub message: String,
    /// `data`, hex bytes (`0x...`) for reverts.
    pub data: Option<String>,
}

impl RpcError {
    /// An error without data.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// -32602 with `message`.
    pub fn params(message: impl Into<String>) -> Self {
        RpcError::new(INVALID_PARAMS, message)
    }

    /// -32000 with `message` (a refused transaction).
    pub fn rejected(message: impl Into<String>) -> Self {
        RpcError::new(TX_REJECTED, message)
    }

    /// -32603: a stored record could not be read.
    pub fn internal(message: impl Into<String>) -> Self {
        RpcError::new(INTERNAL_ERROR, message)
    }

    /// Code 3, `execution reverted[: reason]`, with the revert bytes as data.
    pub fn reverted(output: &[u8]) -> Self {
        let message = match revert_reason(output) {
            Some(reason) => format!("execution reverted: {reason}"),
            None => "execution reverted".to_string(),
        };
        RpcError {
            code: EXECUTION_REVERTED,
            message,
            data: Some(crate::hexfmt::data(output)),
        }
    }

    /// The JSON error object.
    pub fn to_json(&self) -> Value {
        match &self.data {
            Some(d) => json!({"code": self.code, "message": self.message, "data": d}),
            None => json!({"code": self.code, "message": self.message}),
        }
    }
}

/// Selector of Solidity's `Error(string)`.
const ERROR_STRING_SELECTOR: [u8; 4] = [0x08, 0xc3, 0x79, 0xa0];

/// The reason string of an `Error(string)` revert, if `output` is one (ABI: selector, offset, length, bytes).
pub fn revert_reason(output: &[u8]) -> Option<String> {
    let body = output.strip_prefix(&ERROR_STRING_SELECTOR)?;
    let word = |at: usize| -> Option<usize> {
        let w = body.get(at..at.checked_add(32)?)?;
        if w[..24].iter().any(|b| *b != 0) {
            return None;
        }
        let mut n = [0u8; 8];
        n.copy_from_slice(&w[24..]);
        usize::try_from(u64::from_be_bytes(n)).ok()
    };
    let offset = word(0)?;
    let len = word(offset)?;
    let start = offset.checked_add(32)?;
    let bytes = body.get(start..start.checked_add(len)?)?;
    String::from_utf8(bytes.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_string_reverts_give_their_reason() {
        let mut out = ERROR_STRING_SELECTOR.to_vec();
        out.extend([0u8; 31].iter().chain(&[0x20]));
        out.extend([0u8; 31].iter().chain(&[5]));
        out.extend(b"nope!");
        out.extend([0u8; 27]);
        assert_eq!(revert_reason(&out).as_deref(), Some("nope!"));
        let e = RpcError::reverted(&out);
        assert_eq!((e.code, e.message.as_str()), (3, "execution reverted: nope!"));
        assert!(e.data.unwrap().starts_with("0x08c379a0"));
        assert_eq!(RpcError::reverted(&[]).message, "execution reverted");
        assert_eq!(revert_reason(&out[..40]), None);
    }
}
