//! Fuzz target: arbitrary bytes as a JSON receipt, verified against a fixed service certificate. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// The service certificate the seed receipts in `seeds/receipt_verify/` are valid under.
const SERVICE_CERT_PEM: &str = include_str!("../service_cert.pem");

fuzz_target!(|data: &[u8]| {
    let _ = consort_receipt::verify_json(data, SERVICE_CERT_PEM);
});
