//! The governed join policy: what a joiner's verified attestation claims must match (`public:ccf.gov.nodes.code_ids`
//! and the SEV-SNP tables), read from the store and applied to every join.

use super::join::ParsedJoin;
use super::ApiError;
use crate::engine::Engine;

/// Verifies the joiner's evidence against the key it proved it holds, then judges the claims by the governed join
/// policy: 403 naming what did not match.
pub fn check_attestation(svc: &Engine, join: &ParsedJoin) -> Result<consort_attest::Claims, ApiError> {
    let claims = consort_attest::verify(&join.evidence, &join.key.to_spki_der())
        .map_err(|e| ApiError::new(403, "InvalidQuote", format!("attestation: {e}")))?;
    let policy = join_policy(svc);
    consort_attest::check_policy(&claims, &policy)
        .map_err(|e| ApiError::new(403, "JoinPolicyRefused", format!("join refused: {e}")))?;
    Ok(claims)
}

/// The join policy as governance set it in the store.
pub fn join_policy(svc: &Engine) -> consort_attest::JoinPolicy {
    let store = svc.store();
    let tx = store.read_only();
    let keys = |table: &str| {
        let mut out = vec![];
        tx.foreach(table, |k, _| {
            out.push(String::from_utf8_lossy(k).to_string());
            true
        });
        out
    };
    let mut snp_min_tcb = vec![];
    tx.foreach(consort_gov::tables::NODES_SNP_TCB_VERSIONS, |k, v| {
        if let Some(entry) = min_tcb_entry(k, v) {
            snp_min_tcb.push(entry);
        }
        true
    });
    consort_attest::JoinPolicy {
        code_ids: keys(consort_gov::tables::NODES_CODE_IDS),
        snp_measurements: keys(consort_gov::tables::NODES_SNP_MEASUREMENTS),
        snp_host_data: keys(consort_gov::tables::NODES_SNP_HOST_DATA),
        snp_min_tcb,
    }
}

/// One entry of `nodes.snp.tcb_versions`: CPUID key, TCB JSON value. An entry for a CPUID of no product this node
/// has roots for cannot match any report and is left out, as is one whose value is not a TCB version (the
/// constitution refuses those; a custom one might not). Leaving an entry out can only refuse joiners, never admit.
fn min_tcb_entry(cpuid: &[u8], value: &[u8]) -> Option<(consort_attest::SnpProduct, consort_attest::SnpTcb)> {
    let product = consort_attest::SnpProduct::from_cpuid(std::str::from_utf8(cpuid).ok()?)?;
    let tcb = serde_json::from_slice(value).ok()?;
    Some((product, tcb))
}

#[cfg(test)]
mod tests {
    use super::*;
    use consort_attest::{SnpProduct, SnpTcb};

    #[test]
    fn tcb_entries_are_read_by_cpuid_and_bad_ones_left_out() {
        let milan = br#"{"boot_loader":3,"tee":0,"snp":8,"microcode":115,"hexstring":"7308000000000003"}"#;
        assert_eq!(
            min_tcb_entry(b"00a00f11", milan),
            Some((
                SnpProduct::Milan,
                SnpTcb {
                    boot_loader: 3,
                    tee: 0,
                    snp: 8,
                    microcode: 115,
                    fmc: None
                }
            ))
        );
        let turin = br#"{"boot_loader":1,"tee":2,"snp":3,"microcode":4,"fmc":5}"#;
        assert_eq!(min_tcb_entry(b"00b00f21", turin).map(|(_, t)| t.fmc), Some(Some(5)));
        assert_eq!(min_tcb_entry(b"Milan", milan), None);
        assert_eq!(min_tcb_entry(b"00a00f12", milan), None);
        assert_eq!(min_tcb_entry(b"00a00f11", br#"{"boot_loader":3}"#), None);
        assert_eq!(
            min_tcb_entry(b"00a00f11", br#"{"boot_loader":300,"tee":0,"snp":0,"microcode":0}"#),
            None
        );
    }
}
