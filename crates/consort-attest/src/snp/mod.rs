//! Offline verification of AMD SEV-SNP attestation reports (`AMD_SEV_SNP_v1`).
//!
//! [`verify_report`] checks, in order: the report is exactly one canonical 1,184-byte report; its signature
//! algorithm is ECDSA P-384 with SHA-384; the VCEK from the endorsements chains to a built-in AMD root (ARK
//! self-signed, ARK signs ASK, ASK signs VCEK) of Milan, Genoa or Turin; the VCEK's own TCB and chip id extensions
//! match the report; the VCEK signs the report; and the report data is SHA-256 of the presented public key
//! followed by 32 zero bytes. Parsing and signature checks are the `sev` crate's; this module adds the canonical
//! encoding check, because `sev` verifies the signature over its own re-encoding of the parsed report, which
//! writes zeros where the raw report had reserved bytes: without the check a flipped reserved byte would pass.
//!
//! Certificate validity dates are not checked: the core has no clock, and AMD's VCEKs are issued per TCB, so the
//! TCB policy ([`crate::check_policy`]) is what retires old firmware.

mod roots;
mod vcek;

use serde::{Deserialize, Serialize};
use sev::certs::snp::{Certificate, Verifiable};
use sev::firmware::guest::AttestationReport;
use sev::parser::ByteParser;

use crate::{key_digest, AttestError, Claims, PlatformKind};

pub use roots::builtin_roots_pem;

/// Length of an SEV-SNP attestation report in bytes.
pub const REPORT_LEN: usize = 1184;
/// Length of the signed part of a report: everything before the signature at offset 0x2A0.
pub const SIGNED_LEN: usize = 0x2A0;
/// The signature's R and S each take 72 little-endian bytes of which P-384 uses 48.
const SIG_COMPONENT_LEN: usize = 72;
const P384_SCALAR_LEN: usize = 48;
/// The report's signature algorithm field for ECDSA P-384 with SHA-384, the only one AMD defines.
const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;

/// An AMD EPYC generation with SEV-SNP, each with its own ARK/ASK.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SnpProduct {
    /// 3rd generation EPYC.
    Milan,
    /// 4th generation EPYC.
    Genoa,
    /// 5th generation EPYC.
    Turin,
}

impl SnpProduct {
    /// Every product this crate has roots for.
    pub const ALL: [SnpProduct; 3] = [SnpProduct::Milan, SnpProduct::Genoa, SnpProduct::Turin];

    /// AMD's product name.
    pub fn name(self) -> &'static str {
        match self {
            SnpProduct::Milan => "Milan",
            SnpProduct::Genoa => "Genoa",
            SnpProduct::Turin => "Turin",
        }
    }

    /// The CPUID (family, model and stepping) that keys this product's minimum TCB in
    /// `public:ccf.gov.nodes.snp.tcb_versions`, as CCF writes it: 8 lowercase hex digits. Turin's is the value in
    /// AMD's revision guide, which CCF 7 adopted (CCF 6 wrote `00b00f11`).
    pub fn cpuid(self) -> &'static str {
        match self {
            SnpProduct::Milan => "00a00f11",
            SnpProduct::Genoa => "00a10f11",
            SnpProduct::Turin => "00b00f21",
        }
    }

    /// The product whose [`SnpProduct::cpuid`] is `cpuid` (exactly, lowercase), if any.
    pub fn from_cpuid(cpuid: &str) -> Option<SnpProduct> {
        SnpProduct::ALL.into_iter().find(|p| p.cpuid() == cpuid)
    }
}

impl std::fmt::Display for SnpProduct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A TCB version: the security version numbers of the firmware components, with CCF's field names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SnpTcb {
    /// SVN of the PSP bootloader.
    pub boot_loader: u8,
    /// SVN of the PSP operating system.
    pub tee: u8,
    /// SVN of the SNP firmware.
    pub snp: u8,
    /// Lowest microcode patch level of all cores.
    pub microcode: u8,
    /// SVN of the FMC firmware (Turin and later only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fmc: Option<u8>,
}

impl SnpTcb {
    /// Whether every component is at or above `minimum`'s (an FMC minimum binds only when the minimum has one).
    pub fn at_least(&self, minimum: &SnpTcb) -> bool {
        let fmc_ok = match minimum.fmc {
            Some(min) => self.fmc.is_some_and(|fmc| fmc >= min),
            None => true,
        };
        self.boot_loader >= minimum.boot_loader
            && self.tee >= minimum.tee
            && self.snp >= minimum.snp
            && self.microcode >= minimum.microcode
            && fmc_ok
    }
}

impl std::fmt::Display for SnpTcb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "boot_loader={} tee={} snp={} microcode={}",
            self.boot_loader, self.tee, self.snp, self.microcode
        )?;
        if let Some(fmc) = self.fmc {
            write!(f, " fmc={fmc}")?;
        }
        Ok(())
    }
}

impl From<sev::firmware::host::TcbVersion> for SnpTcb {
    fn from(tcb: sev::firmware::host::TcbVersion) -> Self {
        SnpTcb {
            boot_loader: tcb.bootloader,
            tee: tcb.tee,
            snp: tcb.snp,
            microcode: tcb.microcode,
            fmc: tcb.fmc,
        }
    }
}

/// The SNP facts of a verified report beyond measurement and host data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SnpClaims {
    /// The product whose AMD root the VCEK chains to.
    pub product: SnpProduct,
    /// The TCB the report was signed at (its VCEK is specific to this TCB).
    pub reported_tcb: SnpTcb,
    /// The chip id, lowercase hex.
    pub chip_id: String,
    /// The VM privilege level that requested the report.
    pub vmpl: u32,
    /// The guest's security version number.
    pub guest_svn: u32,
    /// The guest policy bits fixed at launch.
    pub guest_policy: u64,
    /// Whether the guest policy lets the host debug the guest (read its memory): such a guest proves nothing.
    pub debug_allowed: bool,
    /// The report format version.
    pub report_version: u32,
}

/// The report data a node requests for its key: SHA-256 of the key's DER, then 32 zero bytes.
pub fn expected_report_data(public_key_der: &[u8]) -> [u8; 64] {
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(&key_digest(public_key_der));
    out
}

/// Checks that `report_data` binds `public_key_der` (see [`expected_report_data`]).
pub fn check_report_data(report_data: &[u8; 64], public_key_der: &[u8]) -> Result<(), AttestError> {
    if *report_data == expected_report_data(public_key_der) {
        Ok(())
    } else {
        Err(AttestError::KeyBindingMismatch)
    }
}

/// Parses a raw report, refusing anything but one canonical 1,184-byte encoding.
pub fn parse_report(raw: &[u8]) -> Result<AttestationReport, AttestError> {
    if raw.len() != REPORT_LEN {
        return Err(AttestError::Malformed(format!(
            "an SNP report is {REPORT_LEN} bytes, not {}",
            raw.len()
        )));
    }
    let report = AttestationReport::from_bytes(raw).map_err(|e| AttestError::Malformed(format!("SNP report: {e}")))?;
    let reencoded = report
        .to_bytes()
        .map_err(|e| AttestError::Malformed(format!("SNP report: {e}")))?;
    if reencoded.as_slice() != raw {
        // Reserved bytes that are not zero, or fields the parser normalises: the signature check below covers the
        // re-encoding, so only a report equal to it is accepted.
        return Err(AttestError::Malformed(
            "SNP report is not in canonical form (reserved bytes set)".into(),
        ));
    }
    // The signature check reads only the low 48 bytes of R and S: refuse anything in the high bytes, so that one
    // signed report has one encoding.
    let signature = &raw[SIGNED_LEN..SIGNED_LEN + 2 * SIG_COMPONENT_LEN];
    let padding_is_zero = signature
        .chunks(SIG_COMPONENT_LEN)
        .all(|component| component[P384_SCALAR_LEN..].iter().all(|b| *b == 0));
    if !padding_is_zero {
        return Err(AttestError::Malformed(
            "SNP report signature has bytes set beyond P-384's 48".into(),
        ));
    }
    Ok(report)
}

/// Verifies the report's endorsement chain and signature; returns the parsed report and the VCEK's product.
/// Does not look at the report data: [`verify_report`] does.
pub fn verify_report_signature(
    raw: &[u8],
    endorsements: &[u8],
) -> Result<(AttestationReport, SnpProduct), AttestError> {
    let report = parse_report(raw)?;
    if report.sig_algo != SIG_ALGO_ECDSA_P384_SHA384 {
        return Err(AttestError::Unsupported(format!(
            "signature algorithm {}",
            report.sig_algo
        )));
    }
    let vcek_der = vcek::vcek_der(endorsements)?;
    let vcek = Certificate::from_der(&vcek_der).map_err(|e| AttestError::Endorsements(format!("VCEK: {e}")))?;
    let product = chain_product(&vcek)?;
    vcek::check_matches_report(&vcek_der, &report)?;
    (&vcek, &report)
        .verify()
        .map_err(|e| AttestError::Signature(e.to_string()))?;
    Ok((report, product))
}

/// The product whose built-in root signs the VCEK in `endorsements`: lets a node check the endorsements its host
/// configured at start, before it sends them to anyone.
pub fn endorsements_product(endorsements: &[u8]) -> Result<SnpProduct, AttestError> {
    let vcek_der = vcek::vcek_der(endorsements)?;
    let vcek = Certificate::from_der(&vcek_der).map_err(|e| AttestError::Endorsements(format!("VCEK: {e}")))?;
    chain_product(&vcek)
}

/// The product whose built-in ARK -> ASK chain signs `vcek`.
fn chain_product(vcek: &Certificate) -> Result<SnpProduct, AttestError> {
    // The ARK -> ASK links were checked once when the roots were loaded; only ASK -> VCEK remains.
    for (product, ca) in roots::builtin_chains()? {
        if (&ca.ask, vcek).verify().is_ok() {
            return Ok(*product);
        }
    }
    Err(AttestError::Endorsements(
        "the VCEK is not signed by the built-in ASK of Milan, Genoa or Turin".into(),
    ))
}

/// Verifies an SNP report offline (see the module documentation) and returns its claims.
pub fn verify_report(raw: &[u8], endorsements: &[u8], presented_public_key_der: &[u8]) -> Result<Claims, AttestError> {
    let (report, product) = verify_report_signature(raw, endorsements)?;
    check_report_data(&report.report_data, presented_public_key_der)?;
    Ok(claims_of(&report, product))
}

/// The claims of a report whose signature and endorsements have been verified. Only [`verify_report`] (after the
/// key binding check) and tests may call it: the claims say the report data was checked.
pub(crate) fn claims_of(report: &AttestationReport, product: SnpProduct) -> Claims {
    Claims {
        kind: PlatformKind::Snp,
        measurement: hex::encode(report.measurement),
        host_data: hex::encode(report.host_data),
        report_data: report.report_data.to_vec(),
        snp: Some(SnpClaims {
            product,
            reported_tcb: report.reported_tcb.into(),
            chip_id: hex::encode(report.chip_id),
            vmpl: report.vmpl,
            guest_svn: report.guest_svn,
            guest_policy: report.policy.0,
            debug_allowed: report.policy.debug_allowed(),
            report_version: report.version,
        }),
        security_warning: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcb_comparison_is_per_component() {
        let min = SnpTcb {
            boot_loader: 3,
            tee: 0,
            snp: 8,
            microcode: 115,
            fmc: None,
        };
        assert!(min.at_least(&min));
        assert!(SnpTcb { microcode: 200, ..min }.at_least(&min));
        assert!(!SnpTcb {
            snp: 7,
            microcode: 200,
            ..min
        }
        .at_least(&min));
        assert!(!SnpTcb { boot_loader: 2, ..min }.at_least(&min));
        let with_fmc = SnpTcb { fmc: Some(1), ..min };
        assert!(
            !min.at_least(&with_fmc),
            "a missing FMC SVN does not meet an FMC minimum"
        );
        assert!(SnpTcb { fmc: Some(2), ..min }.at_least(&with_fmc));
        assert_eq!(serde_json::to_value(min).unwrap()["boot_loader"], 3);
    }

    #[test]
    fn cpuids_name_their_products_and_nothing_else() {
        for product in SnpProduct::ALL {
            assert_eq!(SnpProduct::from_cpuid(product.cpuid()), Some(product));
        }
        for other in ["", "00A00F11", "00a00f10", "Milan", "00b00f11"] {
            assert_eq!(SnpProduct::from_cpuid(other), None, "{other}");
        }
    }

    #[test]
    fn report_data_binding() {
        let key = b"some key der";
        let data = expected_report_data(key);
        assert_eq!(&data[..32], &key_digest(key));
        assert!(check_report_data(&data, key).is_ok());
        assert_eq!(
            check_report_data(&data, b"another key"),
            Err(AttestError::KeyBindingMismatch)
        );
        let mut tail = data;
        tail[63] = 1;
        assert_eq!(
            check_report_data(&tail, key),
            Err(AttestError::KeyBindingMismatch),
            "the tail must be zero"
        );
    }

    #[test]
    fn wrong_lengths_are_malformed() {
        for len in [0, 1, REPORT_LEN - 1, REPORT_LEN + 1] {
            assert!(
                matches!(parse_report(&vec![0u8; len]), Err(AttestError::Malformed(_))),
                "len {len}"
            );
        }
        assert!(matches!(
            parse_report(&[0u8; REPORT_LEN]),
            Err(AttestError::Malformed(_))
        ));
    }
}
