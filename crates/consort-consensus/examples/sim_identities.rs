//! Prints fresh node identities (P-256 key and self-signed certificate) for the simulation's fixture file
//! `tests/fixtures/identities.txt`: `cargo run -p consort-consensus --example sim_identities > tests/fixtures/identities.txt`.

use consort_crypto::x509::{self, CertParams};
use consort_crypto::{Curve, SigningKey};

/// Identities in the fixture (the simulation's largest network plus joiners).
const IDENTITIES: usize = 6;

fn main() {
    for _ in 0..IDENTITIES {
        let key = SigningKey::generate(Curve::P256);
        let cert = x509::self_signed(&key, &CertParams::new("CCF Node")).expect("self-signed cert");
        println!("{}{}=====", key.to_pkcs8_pem(), cert.pem);
    }
}
