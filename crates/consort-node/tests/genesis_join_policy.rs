//! The genesis node starts the join policy with what admits nodes like itself, as CCF 6 does: its code id on the
//! virtual platform; on SEV-SNP its launch measurement, its host data and its report's TCB as the minimum for its
//! product. Anything else still needs governance.

use consort_attest::{
    check_policy, Claims, Evidence, PlatformKind, PolicyError, SnpClaims, SnpProduct, SnpTcb, VirtualPlatform,
};
use consort_node::api::join_policy::join_policy;
use consort_node::config::{IdentityConfig, NodeConfig};
use consort_node::engine::{Engine, OpenOptions, Start};
use consort_node::identity::Identities;
use consort_node::node::SelfAttestation;
use std::sync::Arc;

const TCB: SnpTcb = SnpTcb {
    boot_loader: 4,
    tee: 0,
    snp: 22,
    microcode: 213,
    fmc: None,
};

fn snp_claims() -> Claims {
    Claims {
        kind: PlatformKind::Snp,
        measurement: "5C".repeat(48),
        host_data: "a1".repeat(32),
        report_data: vec![0; 64],
        snp: Some(SnpClaims {
            product: SnpProduct::Genoa,
            reported_tcb: TCB,
            chip_id: "d4".repeat(64),
            vmpl: 0,
            guest_svn: 0,
            guest_policy: 0x30000,
            debug_allowed: false,
            report_version: 3,
        }),
        security_warning: None,
    }
}

/// A genesis engine (one member) whose own attestation is `claims`.
fn genesis_with(dir: &std::path::Path, claims: Claims) -> Arc<Engine> {
    let mut cfg = NodeConfig::default();
    cfg.storage.ledger_dir = dir.join("ledger");
    cfg.storage.snapshots_dir = dir.join("snapshots");
    cfg.storage.secrets_dir = dir.to_path_buf();
    let key = consort_crypto::SigningKey::generate(consort_crypto::Curve::P384);
    let cert = consort_crypto::x509::self_signed(&key, &consort_crypto::CertParams::new("member0")).unwrap();
    std::fs::write(dir.join("member0_cert.pem"), cert.pem).unwrap();
    cfg.start.members = vec![IdentityConfig {
        cert: dir.join("member0_cert.pem"),
        encryption_public_key: None,
        data: None,
    }];
    let ids = Identities::generate(&VirtualPlatform::new([0; 32]), dir, &["127.0.0.1".into()]).unwrap();
    let evidence = Evidence {
        format: claims.kind,
        quote: vec![],
        endorsements: vec![],
    };
    let attestation = SelfAttestation { evidence, claims }.genesis();
    let options = OpenOptions {
        start: Start::Genesis,
        attestation: Some(attestation),
        ..OpenOptions::default()
    };
    Engine::open_with(cfg, ids, options).unwrap()
}

#[test]
fn an_snp_genesis_node_records_a_policy_that_admits_nodes_like_itself_and_no_others() {
    let dir = tempfile::tempdir().unwrap();
    let engine = genesis_with(dir.path(), snp_claims());
    let policy = join_policy(&engine);
    assert_eq!(policy.snp_measurements, vec!["5c".repeat(48)]);
    assert_eq!(policy.snp_host_data, vec!["a1".repeat(32)]);
    assert_eq!(policy.snp_min_tcb, vec![(SnpProduct::Genoa, TCB)]);
    assert!(policy.code_ids.is_empty(), "{:?}", policy.code_ids);
    assert_eq!(check_policy(&snp_claims(), &policy), Ok(()));

    // A node with other host data, older firmware, or another product is refused until governance says otherwise.
    let mut other_host = snp_claims();
    other_host.host_data = "b2".repeat(32);
    assert!(matches!(
        check_policy(&other_host, &policy),
        Err(PolicyError::HostDataNotAllowed(_))
    ));
    let mut older = snp_claims();
    if let Some(snp) = older.snp.as_mut() {
        snp.reported_tcb.microcode = 200;
    }
    assert!(matches!(
        check_policy(&older, &policy),
        Err(PolicyError::TcbBelowMinimum { .. })
    ));
    let mut milan = snp_claims();
    if let Some(snp) = milan.snp.as_mut() {
        snp.product = SnpProduct::Milan;
    }
    assert_eq!(
        check_policy(&milan, &policy),
        Err(PolicyError::NoMinimumTcb(SnpProduct::Milan))
    );
}

#[test]
fn a_virtual_genesis_node_records_its_code_id_only() {
    let dir = tempfile::tempdir().unwrap();
    let claims = Claims {
        kind: PlatformKind::Virtual,
        measurement: "3E".repeat(32),
        host_data: String::new(),
        report_data: vec![],
        snp: None,
        security_warning: None,
    };
    let engine = genesis_with(dir.path(), claims.clone());
    let policy = join_policy(&engine);
    assert_eq!(policy.code_ids, vec!["3e".repeat(32)]);
    assert!(policy.snp_measurements.is_empty() && policy.snp_host_data.is_empty() && policy.snp_min_tcb.is_empty());
    assert_eq!(check_policy(&claims, &policy), Ok(()));
}
