//! The governed limits of JavaScript execution (`set_js_runtime_options`, CCF's `public:ccf.gov.js_runtime_options`).

use serde::{Deserialize, Serialize};

/// Where governance records the runtime options (key: CCF's 8-byte singleton key).
pub const RUNTIME_OPTIONS_TABLE: &str = "public:ccf.gov.js_runtime_options";

/// Limits of one JavaScript call, and what an error answer reveals. Defaults are CCF's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RuntimeOptions {
    /// Most heap one interpreter may allocate (bytes); an allocation beyond fails the call.
    pub max_heap_bytes: usize,
    /// Most native stack the interpreter may use (bytes); deeper recursion fails the call.
    pub max_stack_bytes: usize,
    /// Longest one call may run (milliseconds of wall-clock time); the call is interrupted after it.
    pub max_execution_time_ms: u64,
    /// Log the message and stack of an exception (on the node).
    pub log_exception_details: bool,
    /// Put the exception's message and stack in the 500 answer (else a generic message).
    pub return_exception_details: bool,
    /// Interpreters kept for reuse per worker thread (0: a fresh interpreter per request).
    pub max_cached_interpreters: usize,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            max_heap_bytes: 100 * 1024 * 1024,
            max_stack_bytes: 1024 * 1024,
            max_execution_time_ms: 1000,
            log_exception_details: false,
            return_exception_details: true,
            max_cached_interpreters: 4,
        }
    }
}

impl RuntimeOptions {
    /// The options recorded in the table's value (defaults for absent fields), or the defaults if the value does
    /// not parse (governance validated it when it was written).
    pub fn from_table_value(value: Option<&[u8]>) -> Self {
        value.and_then(|v| serde_json::from_slice(v).ok()).unwrap_or_default()
    }
}
