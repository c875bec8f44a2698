//! The SEV-SNP test vector (a real Milan report and its VCEK) against the offline verifier: it verifies, and every
//! alteration of it, its endorsements or the presented key fails.

use consort_attest::snp::{self, SnpProduct, SIGNED_LEN};
use consort_attest::{verify, AttestError, Evidence, PlatformKind};
use proptest::prelude::*;

fn report() -> Vec<u8> {
    hex::decode(include_str!("data/report_milan.hex").trim()).unwrap()
}

const VCEK_MILAN: &[u8] = include_bytes!("data/vcek_milan.der");
const VCEK_TURIN: &[u8] = include_bytes!("data/vcek_turin.der");
const MEASUREMENT: &str =
    "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f";

#[test]
fn report_verifies_against_its_vcek_and_the_builtin_milan_chain() {
    let (report, product) = snp::verify_report_signature(&report(), VCEK_MILAN).unwrap();
    assert_eq!(product, SnpProduct::Milan);
    assert_eq!(hex::encode(report.measurement), MEASUREMENT);
}

#[test]
fn pem_endorsements_with_ask_and_ark_are_accepted() {
    let vcek_pem = pem::encode(&pem::Pem::new("CERTIFICATE", VCEK_MILAN.to_vec()));
    let (ark, ask) = snp::builtin_roots_pem(SnpProduct::Milan);
    let mut endorsements = vcek_pem.into_bytes();
    endorsements.extend_from_slice(ask);
    endorsements.extend_from_slice(ark);
    let (_, product) = snp::verify_report_signature(&report(), &endorsements).unwrap();
    assert_eq!(product, SnpProduct::Milan);
}

#[test]
fn report_data_that_does_not_bind_the_presented_key_fails() {
    // The vector's report data is arbitrary bytes from its producer, not a key digest: every key is refused,
    // after every other check has passed.
    let evidence = Evidence {
        format: PlatformKind::Snp,
        quote: report(),
        endorsements: VCEK_MILAN.to_vec(),
    };
    for key in [&b""[..], b"any key", VCEK_MILAN] {
        assert_eq!(verify(&evidence, key), Err(AttestError::KeyBindingMismatch));
    }
    let parsed = snp::parse_report(&report()).unwrap();
    assert!(snp::check_report_data(&parsed.report_data, b"any key").is_err());
}

fn flip(raw: &[u8], index: usize, mask: u8) -> Vec<u8> {
    let mut out = raw.to_vec();
    out[index] ^= mask;
    out
}

#[test]
fn every_flipped_byte_of_the_signed_part_fails() {
    let raw = report();
    for index in 0..SIGNED_LEN {
        let result = snp::verify_report_signature(&flip(&raw, index, 0xff), VCEK_MILAN);
        assert!(result.is_err(), "flipping byte {index:#x} still verified");
    }
}

#[test]
fn flips_outside_the_signed_part_fail_too() {
    // The signature itself and the reserved bytes after it: a non-canonical or wrong signature.
    let raw = report();
    for index in (SIGNED_LEN..raw.len()).step_by(7) {
        assert!(
            snp::verify_report_signature(&flip(&raw, index, 0x01), VCEK_MILAN).is_err(),
            "byte {index:#x}"
        );
    }
}

#[test]
fn a_changed_measurement_fails_at_the_signature() {
    // Measurement bytes pass parsing and the VCEK match; only the signature can catch them.
    let raw = report();
    for index in 0x90..0xC0 {
        let result = snp::verify_report_signature(&flip(&raw, index, 0x80), VCEK_MILAN);
        assert!(
            matches!(result, Err(AttestError::Signature(_))),
            "byte {index:#x}: {result:?}"
        );
    }
}

#[test]
fn reserved_bytes_are_refused_even_though_sev_re_encodes_them() {
    let raw = report();
    // 0x188..0x1A0 is reserved in a version 2 report; sev's parser drops it, so only the canonical check sees it.
    let result = snp::verify_report_signature(&flip(&raw, 0x190, 0x01), VCEK_MILAN);
    assert!(matches!(result, Err(AttestError::Malformed(_))), "{result:?}");
}

#[test]
fn vceks_chain_to_their_own_product_only() {
    assert_eq!(snp::endorsements_product(VCEK_MILAN), Ok(SnpProduct::Milan));
    assert_eq!(snp::endorsements_product(VCEK_TURIN), Ok(SnpProduct::Turin));
    // An ASK is not signed by any ASK: it is not a VCEK of any product.
    let (_, milan_ask) = snp::builtin_roots_pem(SnpProduct::Milan);
    assert!(matches!(
        snp::endorsements_product(milan_ask),
        Err(AttestError::Endorsements(_))
    ));
}

#[test]
fn a_wrong_vcek_fails() {
    // A genuine AMD VCEK of another chip (Turin): it chains to AMD, but not for this report.
    let result = snp::verify_report_signature(&report(), VCEK_TURIN);
    assert!(
        matches!(&result, Err(AttestError::Endorsements(m)) if m.contains("another chip")),
        "{result:?}"
    );

    // The Milan VCEK with a flipped signature byte no longer chains to the built-in ASK.
    let mut tampered = VCEK_MILAN.to_vec();
    let last = tampered.len() - 10;
    tampered[last] ^= 1;
    let result = snp::verify_report_signature(&report(), &tampered);
    assert!(matches!(result, Err(AttestError::Endorsements(_))), "{result:?}");

    for garbage in [
        &b""[..],
        b"   ",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        b"\x30\x03\x02\x01",
    ] {
        let result = snp::verify_report_signature(&report(), garbage);
        assert!(
            matches!(result, Err(AttestError::Endorsements(_))),
            "{garbage:?}: {result:?}"
        );
    }
}

#[test]
fn malformed_reports_are_errors() {
    let raw = report();
    for bad in [&raw[..raw.len() - 1], &[][..], &[0u8; 1184][..]] {
        assert!(matches!(snp::parse_report(bad), Err(AttestError::Malformed(_))));
    }
    let mut longer = raw.clone();
    longer.push(0);
    assert!(snp::parse_report(&longer).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_single_bit_flip_fails(index in 0..1184usize, bit in 0..8u8) {
        let raw = report();
        prop_assert!(snp::verify_report_signature(&flip(&raw, index, 1 << bit), VCEK_MILAN).is_err());
    }

    #[test]
    fn arbitrary_reports_and_endorsements_never_panic(
        quote in proptest::collection::vec(any::<u8>(), 0..1300),
        endorsements in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let evidence = Evidence { format: PlatformKind::Snp, quote, endorsements };
        prop_assert!(verify(&evidence, b"key").is_err());
    }

    #[test]
    fn reports_with_random_bytes_in_place_never_panic(index in 0..1184usize, value in any::<u8>(), len in 1..8usize) {
        // Random runs of bytes inside an otherwise valid report reach deeper parser paths than random reports.
        let mut raw = report();
        let end = (index + len).min(raw.len());
        for byte in &mut raw[index..end] {
            *byte = value;
        }
        let _ = snp::verify_report_signature(&raw, VCEK_MILAN);
    }
}
