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
    consort_attest::JoinPolicy {
        code_ids: keys(consort_gov::tables::NODES_CODE_IDS),
        snp_measurements: keys(consort_gov::tables::NODES_SNP_MEASUREMENTS),
        snp_host_data: keys(consort_gov::tables::NODES_SNP_HOST_DATA),
        snp_min_tcb: vec![],
    }
}

