//! The virtual platform through the public API: the conformance suite, the key binding, tampering, and arbitrary
//! bytes, which must be errors and never panics.

use consort_attest::conformance::check_platform;
use consort_attest::{check_policy, verify, AttestError, Evidence, JoinPolicy, Platform, PlatformKind, PolicyError};
use consort_attest::{VirtualPlatform, VIRTUAL_SECURITY_WARNING};
use proptest::prelude::*;

fn key(n: u8) -> Vec<u8> {
    consort_crypto::SigningKey::generate(consort_crypto::Curve::P256)
        .verifying_key()
        .to_spki_der()
        .into_iter()
        .chain([n])
        .collect()
}

#[test]
fn virtual_platform_passes_the_conformance_suite() {
    check_platform(&VirtualPlatform::new([9; 32]), &key(1), &key(2)).unwrap();
}

#[test]
fn round_trip_returns_the_measurement_and_the_warning() {
    let platform = VirtualPlatform::new([0x5a; 32]);
    let node_key = key(0);
    let evidence = Evidence::from_json(&platform.evidence_for(&node_key).unwrap().to_json()).unwrap();
    let claims = verify(&evidence, &node_key).unwrap();
    assert_eq!(claims.kind, PlatformKind::Virtual);
    assert_eq!(claims.measurement, hex::encode([0x5a; 32]));
    assert_eq!(claims.report_data, consort_attest::key_digest(&node_key));
    assert_eq!(claims.security_warning, Some(VIRTUAL_SECURITY_WARNING));
    assert!(VIRTUAL_SECURITY_WARNING.contains("no hardware guarantee"));
}

#[test]
fn evidence_for_one_key_fails_for_another() {
    let evidence = VirtualPlatform::new([1; 32]).evidence_for(&key(1)).unwrap();
    assert_eq!(verify(&evidence, &key(2)), Err(AttestError::KeyBindingMismatch));
}

#[test]
fn a_tampered_measurement_is_what_the_policy_sees_and_refuses() {
    // Nothing signs a virtual quote, so a changed measurement verifies; the policy is what refuses unknown code.
    let node_key = key(3);
    let genuine = [1u8; 32];
    let policy = JoinPolicy {
        code_ids: vec![hex::encode(genuine)],
        ..JoinPolicy::default()
    };
    let evidence = VirtualPlatform::new(genuine).evidence_for(&node_key).unwrap();
    check_policy(&verify(&evidence, &node_key).unwrap(), &policy).unwrap();

    let mut document: serde_json::Value = serde_json::from_slice(&evidence.quote).unwrap();
    document["measurement"] = hex::encode([2u8; 32]).into();
    let tampered = Evidence {
        quote: document.to_string().into_bytes(),
        ..evidence
    };
    let claims = verify(&tampered, &node_key).unwrap();
    let refusal = check_policy(&claims, &policy).unwrap_err();
    assert!(matches!(refusal, PolicyError::MeasurementNotAllowed { .. }));
    assert!(
        refusal.to_string().contains(&hex::encode([2u8; 32])),
        "the refusal names the measurement: {refusal}"
    );
}

#[test]
fn a_tampered_report_data_fails() {
    let node_key = key(4);
    let evidence = VirtualPlatform::new([1; 32]).evidence_for(&node_key).unwrap();
    let mut document: serde_json::Value = serde_json::from_slice(&evidence.quote).unwrap();
    document["report_data"] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into();
    let tampered = Evidence {
        quote: document.to_string().into_bytes(),
        ..evidence
    };
    assert_eq!(verify(&tampered, &node_key), Err(AttestError::KeyBindingMismatch));
}

#[test]
fn malformed_virtual_quotes_are_errors() {
    let cases: [&[u8]; 6] = [
        b"",
        b"{}",
        b"not json",
        br#"{"measurement":"00","host_data":"00","report_data":""}"#,
        br#"{"measurement":1,"host_data":"00","report_data":""}"#,
        &[0xff; 40],
    ];
    for quote in cases {
        let evidence = Evidence {
            format: PlatformKind::Virtual,
            quote: quote.to_vec(),
            endorsements: vec![],
        };
        assert!(
            matches!(verify(&evidence, b"k"), Err(AttestError::Malformed(_))),
            "{quote:?}"
        );
    }
}

#[test]
fn oversized_evidence_is_refused_before_parsing() {
    let evidence = Evidence {
        format: PlatformKind::Virtual,
        quote: vec![b' '; consort_attest::MAX_QUOTE_BYTES + 1],
        endorsements: vec![],
    };
    assert!(matches!(
        verify(&evidence, b"k"),
        Err(AttestError::TooLarge { what: "quote", .. })
    ));
}

proptest! {
    #[test]
    fn arbitrary_quotes_never_panic(quote in proptest::collection::vec(any::<u8>(), 0..512), snp in any::<bool>()) {
        let format = if snp { PlatformKind::Snp } else { PlatformKind::Virtual };
        let evidence = Evidence { format, quote, endorsements: vec![] };
        prop_assert!(verify(&evidence, b"k").is_err());
    }

    #[test]
    fn arbitrary_json_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Evidence::from_json(&bytes);
    }

    #[test]
    fn arbitrary_sealed_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        let platform = VirtualPlatform::new([0; 32]);
        if let Ok(plain) = platform.unseal(&bytes) {
            prop_assert_eq!(platform.seal(&plain).unwrap(), bytes);
        }
    }
}
