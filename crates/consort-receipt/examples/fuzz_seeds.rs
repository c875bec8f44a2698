//! Writes the fuzz target's fixed service certificate and seed receipts; run by hand when they need renewing:
//! `cargo run -p consort-receipt --example fuzz_seeds`.

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use consort_crypto::Curve;
use std::path::Path;

fn main() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let seeds = fuzz.join("seeds/receipt_verify");
    std::fs::create_dir_all(&seeds).unwrap();

    // Every seed is valid under the one service certificate the fuzz target uses.
    let mut f = fixture_at(5);
    let (service_key, service_cert) = (f.service_key.clone(), f.service_cert_pem.clone());
    std::fs::write(fuzz.join("service_cert.pem"), &service_cert).unwrap();
    let write = |name: &str, receipt: &consort_receipt::Receipt| {
        consort_receipt::verify(receipt, &service_cert).unwrap();
        std::fs::write(seeds.join(name), serde_json::to_vec_pretty(receipt).unwrap()).unwrap();
    };
    write("direct.json", &f.receipt);

    // Through one endorsement: the node certified by a previous service identity.
    let (old_key, old_cert) = service(Curve::P384);
    let mut ca = consort_crypto::CertParams::new("CCF Service");
    ca.is_ca = true;
    let service_der = consort_crypto::ParsedCert::from_pem(&service_cert).unwrap().der;
    let endorsed = consort_crypto::x509::issue(&old_key.verifying_key(), &ca, &service_key, &service_der).unwrap();
    let mut chained = f.receipt.clone();
    chained.cert = node_cert(&f.node_key, &old_key, &old_cert.der);
    chained.service_endorsements = vec![endorsed.pem];
    write("chained.json", &chained);

    // A signature-transaction receipt.
    f.receipt.leaf = Some(hex::encode(consort_receipt::leaf(&f.receipt).unwrap()));
    f.receipt.leaf_components = None;
    f.receipt.is_signature_transaction = Some(true);
    write("signature_tx.json", &f.receipt);
}
