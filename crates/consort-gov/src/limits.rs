//! Every resource limit of governance, in one place.

/// Largest proposal body (the signed payload of a `proposal` request) accepted, in bytes.
pub const MAX_PROPOSAL_SIZE_BYTES: usize = 1024 * 1024;
/// Largest COSE Sign1 governance request accepted, in bytes (proposal plus headers and signature).
pub const MAX_GOV_REQUEST_SIZE_BYTES: usize = MAX_PROPOSAL_SIZE_BYTES + 64 * 1024;
/// Largest ballot source accepted, in bytes.
pub const MAX_BALLOT_SIZE_BYTES: usize = 64 * 1024;
/// How far in the future a request's `ccf.gov.msg.created_at` may lie, relative to the caller's clock.
pub const MAX_CREATED_AT_FUTURE_SKEW_SECONDS: i64 = 300;
/// Largest `created_at` CCF accepts: it is stored as 10 decimal digits.
pub const MAX_CREATED_AT_SECONDS: i64 = 9_999_999_999;
/// Size of the replay window of recent proposals when the service configuration does not set
/// `recent_cose_proposals_window_size` (CCF's default).
pub const DEFAULT_RECENT_COSE_PROPOSALS_WINDOW_SIZE: usize = 100;

/// Resource limits of one JavaScript call (constitution `validate`/`resolve`/`apply`, or one ballot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsLimits {
    /// QuickJS heap limit for the call's runtime, in bytes.
    pub max_heap_bytes: usize,
    /// QuickJS stack limit, in bytes.
    pub max_stack_bytes: usize,
    /// Time budget as a count of QuickJS interrupt polls. QuickJS polls the interrupt handler about every
    /// 10,000 bytecode branches and calls, so the budget counts work done, not wall-clock time: the same call
    /// fails at the same point on every node.
    pub max_interrupt_polls: u64,
}

/// Default JS limits: 64 MiB heap, 512 KiB stack, 2,000 interrupt polls (about 20 million operations).
pub const DEFAULT_JS_LIMITS: JsLimits = JsLimits {
    max_heap_bytes: 64 * 1024 * 1024,
    max_stack_bytes: 512 * 1024,
    max_interrupt_polls: 2_000,
};

/// Most distinct KV maps one JS call may touch (each first touch of a map restarts the call once; see `js`).
pub const MAX_JS_MAPS_PER_CALL: usize = 64;
/// Most `console.log` lines kept from one governance operation.
pub const MAX_JS_LOG_LINES: usize = 256;
/// Longest `console.log` line kept, in bytes.
pub const MAX_JS_LOG_LINE_BYTES: usize = 4096;

/// Largest JavaScript application bundle `set_js_app` accepts: the bundle's JSON (module sources and endpoint
/// metadata), in bytes. Below [`MAX_PROPOSAL_SIZE_BYTES`] so that the refusal names the bundle, not the request.
pub const MAX_JS_APP_BUNDLE_BYTES: usize = 768 * 1024;
/// Most modules one application bundle may hold.
pub const MAX_JS_APP_MODULES: usize = 256;
/// Most endpoints (path and method pairs) one application bundle may declare.
pub const MAX_JS_APP_ENDPOINTS: usize = 1024;
/// Most keys one JSON Web Key Set given to governance may hold.
pub const MAX_JWKS_KEYS: usize = 64;
/// Smallest RSA modulus accepted for a JWT signing key, in bits.
pub const MIN_JWT_RSA_MODULUS_BITS: usize = 2048;
/// Most certificates one JS call may ask the node to issue (`ccf.network.generate*Certificate`); each is answered
/// by re-running the call, as a map load is.
pub const MAX_JS_CERTIFICATES_PER_CALL: usize = 64;
