//! Attestation platforms: a node proves which code it runs and binds its public key to that proof.
//!
//! A [`Platform`] produces [`Evidence`] that binds SHA-256 of the node's public key (DER SubjectPublicKeyInfo) to a
//! measurement of the code, and seals secrets at rest. [`verify`] checks another node's evidence offline and returns
//! its measured [`Claims`]; [`check_policy`] then judges those claims against the governed allowlists.
//!
//! Two platforms, named as CCF names its quote formats:
//! - `Insecure_Virtual` ([`VirtualPlatform`]): no hardware. The measurement is SHA-256 of the node's executable, so
//!   a join policy on code identity means something without a TEE, but anyone can write such evidence for any
//!   measurement: it gives **no hardware guarantee** (see [`VIRTUAL_SECURITY_WARNING`]).
//! - `AMD_SEV_SNP_v1` ([`snp`]): an SEV-SNP attestation report verified against the VCEK the host supplies as
//!   endorsements and AMD's ASK/ARK certificates built into this crate (Milan, Genoa, Turin).
//!
//! The verification core does no IO: no files, no network, no clock. Endorsements arrive inside the evidence (the
//! host fetched them beforehand); trust roots are compiled in. What needs the machine (measuring the executable,
//! asking `/dev/sev-guest` for a report or a sealing key, writing sealed files) lives in the node
//! (`consort_node::platform`).
#![forbid(unsafe_code)]
#![warn(unreachable_pub, missing_docs)]

pub mod conformance;
mod error;
mod evidence;
mod policy;
pub mod seal;
pub mod snp;
mod virtual_platform;

pub use error::AttestError;
pub use evidence::{Evidence, NodeQuote, PlatformKind};
pub use policy::{check_policy, JoinPolicy, PolicyError, GUEST_POLICY_MIGRATE_MA};
pub use snp::{SnpClaims, SnpProduct, SnpTcb};
pub use virtual_platform::{VirtualPlatform, VIRTUAL_SECURITY_WARNING};

/// Largest quote (raw report or virtual document) accepted, in bytes. An SNP report is 1,184 bytes; a virtual quote
/// is a JSON document of about 200 bytes.
pub const MAX_QUOTE_BYTES: usize = 8 * 1024;
/// Largest endorsements blob accepted, in bytes: a VCEK plus its ASK and ARK in PEM take about 6 KiB.
pub const MAX_ENDORSEMENTS_BYTES: usize = 64 * 1024;
/// Largest JSON encoding of evidence accepted, in bytes: base64 of the two limits above plus field names.
pub const MAX_EVIDENCE_JSON_BYTES: usize = 128 * 1024;

/// What a platform does for its node: produce evidence for the node's key and seal secrets at rest.
///
/// Every implementation runs the same suite, [`conformance::check_platform`].
pub trait Platform: Send + Sync {
    /// The quote format this platform produces.
    fn kind(&self) -> PlatformKind;

    /// Evidence that binds `public_key_der` (the node's DER SubjectPublicKeyInfo) to this platform's measurement.
    fn evidence_for(&self, public_key_der: &[u8]) -> Result<Evidence, AttestError>;

    /// Wraps a secret so that only this platform (this code on this machine, where the platform can tell) can
    /// unwrap it. The result is what the node writes to disk.
    fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, AttestError>;

    /// Reverses [`Platform::seal`]; refuses data sealed by another platform or altered since.
    fn unseal(&self, sealed: &[u8]) -> Result<Vec<u8>, AttestError>;

    /// A warning for logs and `/node/quotes/self` when the platform gives no hardware guarantee.
    fn security_warning(&self) -> Option<&'static str>;
}

/// Claims measured by a platform and checked by [`verify`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Claims {
    /// The quote format the claims come from.
    pub kind: PlatformKind,
    /// Code measurement, lowercase hex: SHA-256 of the executable (virtual) or the 48-byte launch digest (SNP).
    pub measurement: String,
    /// Host-provided data bound at launch, lowercase hex (SNP's 32-byte HOST_DATA; the virtual platform repeats
    /// the executable's digest here, where CCF's virtual quotes carry it).
    pub host_data: String,
    /// The report data, which [`verify`] has checked binds the presented key.
    pub report_data: Vec<u8>,
    /// SNP-only facts: product, reported TCB, guest policy.
    pub snp: Option<SnpClaims>,
    /// Set when the evidence carries no hardware guarantee; show it to operators.
    pub security_warning: Option<&'static str>,
}

/// The report data a platform binds for a key: SHA-256 of the key's DER, as CCF does.
pub fn key_digest(public_key_der: &[u8]) -> [u8; 32] {
    consort_crypto::sha256(public_key_der)
}

/// Verifies evidence offline against the key the peer presented (for a joiner: the key of its TLS client
/// certificate) and returns the measured claims. Judge them with [`check_policy`] afterwards.
///
/// Checks, by format: virtual: the document parses and its report data is SHA-256 of `presented_public_key_der`;
/// SNP: everything [`snp::verify_report`] checks. Never panics on any input.
pub fn verify(evidence: &Evidence, presented_public_key_der: &[u8]) -> Result<Claims, AttestError> {
    evidence.check_sizes()?;
    match evidence.format {
        PlatformKind::Virtual => virtual_platform::verify_quote(&evidence.quote, presented_public_key_der),
        PlatformKind::Snp => snp::verify_report(&evidence.quote, &evidence.endorsements, presented_public_key_der),
    }
}
