//! The join policy: judging verified claims against the governed allowlists.
//!
//! Kept apart from [`crate::verify`] so that the evidence check (is this what the hardware said?) and the policy
//! check (do the members accept it?) fail with different errors, and a refusal names exactly what did not match.

use crate::{Claims, PlatformKind, SnpProduct, SnpTcb};

/// The allowlists of the governed join policy, as the node reads them from the KV store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JoinPolicy {
    /// Accepted virtual measurements (`public:ccf.gov.nodes.code_ids`), hex.
    pub code_ids: Vec<String>,
    /// Accepted SNP launch measurements (`public:ccf.gov.nodes.snp.measurements`), hex.
    pub snp_measurements: Vec<String>,
    /// Accepted SNP host data (`public:ccf.gov.nodes.snp.host_data`), hex.
    pub snp_host_data: Vec<String>,
    /// Minimum TCB per product (`public:ccf.gov.nodes.snp.tcb_versions`). CCF keys this table by CPUID; the
    /// product is what the VCEK's chain proves, and a version-2 report carries no CPUID.
    pub snp_min_tcb: Vec<(SnpProduct, SnpTcb)>,
}

/// Why claims were refused by the policy. Each names the value that did not match.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The measurement is not in the allowlist of its format.
    #[error("{kind} measurement {measurement} is not in the join policy")]
    MeasurementNotAllowed {
        /// The evidence format.
        kind: PlatformKind,
        /// The refused measurement, hex.
        measurement: String,
    },
    /// The SNP host data is not in the allowlist.
    #[error("SNP host data {0} is not in the join policy")]
    HostDataNotAllowed(String),
    /// No minimum TCB is governed for the product.
    #[error("no minimum TCB version is set for {0} in the join policy")]
    NoMinimumTcb(SnpProduct),
    /// The reported TCB is below the governed minimum.
    #[error("{product} TCB {reported} is below the join policy's minimum {minimum}")]
    TcbBelowMinimum {
        /// The product.
        product: SnpProduct,
        /// The TCB the report was signed at.
        reported: SnpTcb,
        /// The governed minimum.
        minimum: SnpTcb,
    },
    /// The guest's policy allows the host to debug it, so its memory is open to the host.
    #[error("the SNP guest policy allows debugging, which opens the guest's memory to the host")]
    DebugGuest,
    /// SNP claims came without their SNP part (a programming error in the caller that built them).
    #[error("SNP claims without SNP details")]
    MissingSnpClaims,
}

fn listed(list: &[String], value: &str) -> bool {
    list.iter().any(|entry| entry.eq_ignore_ascii_case(value))
}

/// Checks verified claims against `policy`: for virtual evidence, the measurement is a code id; for SNP, the
/// guest is not debuggable, its measurement and host data are listed, and its TCB meets its product's minimum.
pub fn check_policy(claims: &Claims, policy: &JoinPolicy) -> Result<(), PolicyError> {
    match claims.kind {
        PlatformKind::Virtual => {
            if !listed(&policy.code_ids, &claims.measurement) {
                return Err(PolicyError::MeasurementNotAllowed {
                    kind: claims.kind,
                    measurement: claims.measurement.clone(),
                });
            }
            Ok(())
        }
        PlatformKind::Snp => {
            let snp = claims.snp.as_ref().ok_or(PolicyError::MissingSnpClaims)?;
            if snp.debug_allowed {
                return Err(PolicyError::DebugGuest);
            }
            if !listed(&policy.snp_measurements, &claims.measurement) {
                return Err(PolicyError::MeasurementNotAllowed {
                    kind: claims.kind,
                    measurement: claims.measurement.clone(),
                });
            }
            if !listed(&policy.snp_host_data, &claims.host_data) {
                return Err(PolicyError::HostDataNotAllowed(claims.host_data.clone()));
            }
            let minimum = policy
                .snp_min_tcb
                .iter()
                .find(|(product, _)| *product == snp.product)
                .map(|(_, tcb)| *tcb)
                .ok_or(PolicyError::NoMinimumTcb(snp.product))?;
            if !snp.reported_tcb.at_least(&minimum) {
                return Err(PolicyError::TcbBelowMinimum {
                    product: snp.product,
                    reported: snp.reported_tcb,
                    minimum,
                });
            }
            Ok(())
        }
    }
}
