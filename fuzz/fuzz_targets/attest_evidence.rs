//! Fuzz target: arbitrary bytes as attestation evidence, in both JSON shapes and as a raw quote of each format,
//! through the offline verifier. Must never panic.
#![no_main]

use consort_attest::{verify, Evidence, PlatformKind};
use libfuzzer_sys::fuzz_target;

/// The VCEK of the Milan test report, so that raw reports near the seed reach the signature check.
const VCEK_MILAN: &[u8] = include_bytes!("../../crates/consort-attest/tests/data/vcek_milan.der");
/// The key presented alongside the evidence (a byte string stands in for a DER key: only its digest is used).
const PRESENTED_KEY: &[u8] = b"fuzz presented key";

fuzz_target!(|data: &[u8]| {
    if let Ok(evidence) = Evidence::from_any_json(data) {
        let _ = verify(&evidence, PRESENTED_KEY);
    }
    for format in [PlatformKind::Snp, PlatformKind::Virtual] {
        let evidence = Evidence {
            format,
            quote: data.to_vec(),
            endorsements: VCEK_MILAN.to_vec(),
        };
        let _ = verify(&evidence, PRESENTED_KEY);
    }
});
