//! AMD's public ARK and ASK certificates for each SEV-SNP product, compiled in as the trust roots.
//!
//! The files under `certs/` are AMD's published certificates (the same bytes the `sev` crate ships); the verifier
//! never fetches roots at verify time, so whoever controls the network cannot substitute them.

use std::sync::OnceLock;

use sev::certs::snp::{ca, Certificate, Verifiable};

use super::SnpProduct;
use crate::AttestError;

/// The ARK and ASK of `product`, PEM.
pub fn builtin_roots_pem(product: SnpProduct) -> (&'static [u8], &'static [u8]) {
    match product {
        SnpProduct::Milan => (
            include_bytes!("../../certs/milan_ark.pem"),
            include_bytes!("../../certs/milan_ask.pem"),
        ),
        SnpProduct::Genoa => (
            include_bytes!("../../certs/genoa_ark.pem"),
            include_bytes!("../../certs/genoa_ask.pem"),
        ),
        SnpProduct::Turin => (
            include_bytes!("../../certs/turin_ark.pem"),
            include_bytes!("../../certs/turin_ask.pem"),
        ),
    }
}

type Chains = Vec<(SnpProduct, ca::Chain)>;

fn load() -> Result<Chains, String> {
    SnpProduct::ALL
        .iter()
        .map(|product| {
            let (ark, ask) = builtin_roots_pem(*product);
            let ark = Certificate::from_pem(ark).map_err(|e| format!("built-in {product} ARK: {e}"))?;
            let ask = Certificate::from_pem(ask).map_err(|e| format!("built-in {product} ASK: {e}"))?;
            let chain = ca::Chain { ark, ask };
            // Checked once: the ARK signs itself and the ASK.
            (&chain)
                .verify()
                .map_err(|e| format!("built-in {product} chain: {e}"))?;
            Ok((*product, chain))
        })
        .collect()
}

/// The parsed built-in chains, parsed and checked once per process.
pub(super) fn builtin_chains() -> Result<&'static Chains, AttestError> {
    static CHAINS: OnceLock<Result<Chains, String>> = OnceLock::new();
    CHAINS
        .get_or_init(load)
        .as_ref()
        .map_err(|e| AttestError::Endorsements(e.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_chain_parses_and_verifies() {
        let chains = builtin_chains().unwrap();
        assert_eq!(
            chains.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
            SnpProduct::ALL.to_vec()
        );
    }
}
