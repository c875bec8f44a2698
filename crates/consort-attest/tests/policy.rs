//! The join policy over SNP and virtual claims: each refusal names what did not match.

use consort_attest::{check_policy, Claims, JoinPolicy, PlatformKind, PolicyError, SnpClaims, SnpProduct, SnpTcb};

const TCB: SnpTcb = SnpTcb {
    boot_loader: 3,
    tee: 0,
    snp: 8,
    microcode: 115,
    fmc: None,
};

fn snp_claims() -> Claims {
    Claims {
        kind: PlatformKind::Snp,
        measurement: "7a".repeat(48),
        host_data: "00".repeat(32),
        report_data: vec![0; 64],
        snp: Some(SnpClaims {
            product: SnpProduct::Milan,
            reported_tcb: TCB,
            chip_id: "d4".repeat(64),
            vmpl: 0,
            guest_svn: 0,
            guest_policy: 0x30000,
            debug_allowed: false,
            report_version: 2,
        }),
        security_warning: None,
    }
}

fn snp_policy() -> JoinPolicy {
    JoinPolicy {
        code_ids: vec![],
        snp_measurements: vec!["7A".repeat(48)],
        snp_host_data: vec!["00".repeat(32)],
        snp_min_tcb: vec![(SnpProduct::Milan, TCB)],
    }
}

#[test]
fn accepted_snp_claims_pass() {
    check_policy(&snp_claims(), &snp_policy()).unwrap();
}

#[test]
fn each_snp_mismatch_is_named() {
    let claims = snp_claims();

    let policy = JoinPolicy {
        snp_measurements: vec!["11".repeat(48)],
        ..snp_policy()
    };
    let err = check_policy(&claims, &policy).unwrap_err();
    assert!(err.to_string().contains(&claims.measurement), "{err}");

    let policy = JoinPolicy {
        snp_host_data: vec![],
        ..snp_policy()
    };
    assert_eq!(
        check_policy(&claims, &policy),
        Err(PolicyError::HostDataNotAllowed(claims.host_data.clone()))
    );

    let policy = JoinPolicy {
        snp_min_tcb: vec![(SnpProduct::Genoa, TCB)],
        ..snp_policy()
    };
    assert_eq!(
        check_policy(&claims, &policy),
        Err(PolicyError::NoMinimumTcb(SnpProduct::Milan))
    );

    let minimum = SnpTcb { microcode: 116, ..TCB };
    let policy = JoinPolicy {
        snp_min_tcb: vec![(SnpProduct::Milan, minimum)],
        ..snp_policy()
    };
    let err = check_policy(&claims, &policy).unwrap_err();
    assert!(matches!(err, PolicyError::TcbBelowMinimum { .. }));
    assert!(err.to_string().contains("microcode=115"), "{err}");

    let mut debuggable = claims.clone();
    if let Some(snp) = debuggable.snp.as_mut() {
        snp.debug_allowed = true;
    }
    assert_eq!(check_policy(&debuggable, &snp_policy()), Err(PolicyError::DebugGuest));
}

#[test]
fn a_report_from_a_lower_vmpl_or_a_migratable_guest_is_refused_naming_why() {
    assert_eq!(check_policy(&snp_claims(), &snp_policy()), Ok(()));
    let mut lower = snp_claims();
    if let Some(snp) = lower.snp.as_mut() {
        snp.vmpl = 2;
    }
    let err = check_policy(&lower, &snp_policy()).unwrap_err();
    assert_eq!(err, PolicyError::NotVmpl0(2));
    assert!(err.to_string().contains("VMPL 2"), "{err}");

    let mut migratable = snp_claims();
    if let Some(snp) = migratable.snp.as_mut() {
        snp.guest_policy |= consort_attest::GUEST_POLICY_MIGRATE_MA;
    }
    let err = check_policy(&migratable, &snp_policy()).unwrap_err();
    assert_eq!(err, PolicyError::MigrationAgentAllowed(0x70000));
    assert!(err.to_string().contains("migration agent"), "{err}");
}

#[test]
fn virtual_claims_are_judged_by_code_ids_only() {
    let claims = Claims {
        kind: PlatformKind::Virtual,
        measurement: "ab".repeat(32),
        host_data: "ab".repeat(32),
        report_data: vec![0; 32],
        snp: None,
        security_warning: Some(consort_attest::VIRTUAL_SECURITY_WARNING),
    };
    // SNP allowlists do not admit virtual code.
    let policy = JoinPolicy {
        snp_measurements: vec!["ab".repeat(32)],
        ..JoinPolicy::default()
    };
    assert!(matches!(
        check_policy(&claims, &policy),
        Err(PolicyError::MeasurementNotAllowed { .. })
    ));
    let policy = JoinPolicy {
        code_ids: vec!["ab".repeat(32)],
        ..JoinPolicy::default()
    };
    check_policy(&claims, &policy).unwrap();
}
