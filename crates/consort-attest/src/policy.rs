//! The join policy: judging verified claims against the governed allowlists.
//!
//! Kept apart from [`crate::verify`] so that the evidence check (is this what the hardware said?) and the policy
//! check (do the members accept it?) fail with different errors, and a refusal names exactly what did not match.
//!
//! SEV-SNP TCB: a report passes when every component of the TCB it was signed at is at or above the governed
//! minimum for its product ([`SnpTcb::at_least`]). A product with no governed minimum is refused
//! ([`PolicyError::NoMinimumTcb`]), as CCF 6 refuses a joiner whose CPU model has no entry in
//! `nodes.snp.tcb_versions`: an empty table admits no SNP node, and members must name the firmware they accept.

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
    /// Minimum TCB per product (`public:ccf.gov.nodes.snp.tcb_versions`). CCF keys this table by CPUID, which
    /// the node maps to a product with [`SnpProduct::from_cpuid`]; the product a report is judged as is the one
    /// its VCEK's chain proves, because a version-2 report carries no CPUID.
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
    /// The report was requested from a less privileged VM privilege level than 0: the software that asked for it
    /// (and chose its report data) runs under other guest code whose launch measurement alone covers it.
    #[error("the SNP report was requested at VMPL {0}; the join policy accepts reports from VMPL 0 only")]
    NotVmpl0(u32),
    /// The guest's policy lets a migration agent move it, so its memory can leave the chip the report names.
    #[error(
        "the SNP guest policy allows a migration agent (policy {0:#x}), which can move the guest's memory off the chip"
    )]
    MigrationAgentAllowed(u64),
    /// SNP claims came without their SNP part (a programming error in the caller that built them).
    #[error("SNP claims without SNP details")]
    MissingSnpClaims,
}

/// Bit of the SNP guest policy (fixed at launch) that allows a migration agent to be associated with the guest.
pub const GUEST_POLICY_MIGRATE_MA: u64 = 1 << 18;

fn listed(list: &[String], value: &str) -> bool {
    list.iter().any(|entry| entry.eq_ignore_ascii_case(value))
}

/// Checks verified claims against `policy`: for virtual evidence, the measurement is a code id; for SNP, the
/// guest is not debuggable and allows no migration agent, the report came from VMPL 0, its measurement and host data are listed, and its TCB meets its product's minimum.
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
            if snp.vmpl != 0 {
                return Err(PolicyError::NotVmpl0(snp.vmpl));
            }
            if snp.guest_policy & GUEST_POLICY_MIGRATE_MA != 0 {
                return Err(PolicyError::MigrationAgentAllowed(snp.guest_policy));
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

#[cfg(test)]
mod tests {
    //! The TCB minimum against the real Milan report of `tests/data` (see its README), whose signature and VCEK
    //! chain verify; its report data binds no key we hold, so its claims are built past that one check.

    use super::*;
    use crate::snp::{claims_of, verify_report_signature};

    fn real_claims() -> Claims {
        let raw = hex::decode(include_str!("../tests/data/report_milan.hex").trim()).unwrap();
        let (report, product) = verify_report_signature(&raw, include_bytes!("../tests/data/vcek_milan.der")).unwrap();
        assert_eq!(product, SnpProduct::Milan);
        claims_of(&report, product)
    }

    /// A policy that admits the report's measurement and host data, with `min_tcb` as its TCB table.
    fn policy_for(claims: &Claims, min_tcb: Vec<(SnpProduct, SnpTcb)>) -> JoinPolicy {
        JoinPolicy {
            snp_measurements: vec![claims.measurement.clone()],
            snp_host_data: vec![claims.host_data.clone()],
            snp_min_tcb: min_tcb,
            ..JoinPolicy::default()
        }
    }

    fn reported(claims: &Claims) -> SnpTcb {
        claims.snp.as_ref().unwrap().reported_tcb
    }

    #[test]
    fn the_real_report_at_or_above_its_minimum_passes() {
        let claims = real_claims();
        assert!(
            !claims.snp.as_ref().unwrap().debug_allowed,
            "the vector is not a debug guest"
        );
        let at = reported(&claims);
        check_policy(&claims, &policy_for(&claims, vec![(SnpProduct::Milan, at)])).unwrap();
        let zero = SnpTcb {
            boot_loader: 0,
            tee: 0,
            snp: 0,
            microcode: 0,
            fmc: None,
        };
        check_policy(&claims, &policy_for(&claims, vec![(SnpProduct::Milan, zero)])).unwrap();
    }

    #[test]
    fn the_real_report_below_its_minimum_is_refused_naming_both_tcbs() {
        let claims = real_claims();
        let at = reported(&claims);
        let minimums = [
            SnpTcb {
                microcode: at.microcode.saturating_add(1),
                ..at
            },
            SnpTcb {
                snp: at.snp.saturating_add(1),
                ..at
            },
            SnpTcb {
                boot_loader: at.boot_loader.saturating_add(1),
                ..at
            },
            SnpTcb {
                tee: at.tee.saturating_add(1),
                ..at
            },
            // An FMC minimum (Turin's) admits no Milan TCB, which has no FMC.
            SnpTcb { fmc: Some(0), ..at },
        ];
        for minimum in minimums {
            let err = check_policy(&claims, &policy_for(&claims, vec![(SnpProduct::Milan, minimum)])).unwrap_err();
            assert_eq!(
                err,
                PolicyError::TcbBelowMinimum {
                    product: SnpProduct::Milan,
                    reported: at,
                    minimum,
                }
            );
            let text = err.to_string();
            assert!(text.contains("Milan"), "{text}");
            assert!(text.contains(&at.to_string()), "names the reported TCB: {text}");
            assert!(text.contains(&minimum.to_string()), "names the minimum: {text}");
        }
    }

    #[test]
    fn the_real_report_without_a_minimum_for_its_product_is_refused() {
        let claims = real_claims();
        let at = reported(&claims);
        for table in [vec![], vec![(SnpProduct::Genoa, at), (SnpProduct::Turin, at)]] {
            assert_eq!(
                check_policy(&claims, &policy_for(&claims, table)),
                Err(PolicyError::NoMinimumTcb(SnpProduct::Milan))
            );
        }
    }
}
