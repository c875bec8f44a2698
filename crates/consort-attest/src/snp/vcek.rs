//! The VCEK from the host's endorsements, and the check that it is the VCEK of the report's chip and TCB.
//!
//! AMD issues one VCEK per chip and TCB and writes both into the certificate (extensions under
//! 1.3.6.1.4.1.3704.1): the chip id in `hwID` and each component's SVN in its own extension. Comparing them with the
//! report catches a host that pairs a report with another chip's or another TCB's endorsements, with a clearer
//! error than the signature check would give.

use sev::firmware::guest::AttestationReport;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::SnpTcb;
use crate::AttestError;

const OID_BL_SPL: &str = "1.3.6.1.4.1.3704.1.3.1";
const OID_TEE_SPL: &str = "1.3.6.1.4.1.3704.1.3.2";
const OID_SNP_SPL: &str = "1.3.6.1.4.1.3704.1.3.3";
const OID_UCODE_SPL: &str = "1.3.6.1.4.1.3704.1.3.8";
const OID_FMC_SPL: &str = "1.3.6.1.4.1.3704.1.3.9";
const OID_HW_ID: &str = "1.3.6.1.4.1.3704.1.4";

/// The DER of the first certificate in the endorsements: PEM (the VCEK first, then possibly ASK and ARK, which
/// are ignored because the trust roots are built in) or a single DER certificate.
pub(super) fn vcek_der(endorsements: &[u8]) -> Result<Vec<u8>, AttestError> {
    let trimmed = endorsements.trim_ascii_start();
    if trimmed.is_empty() {
        return Err(AttestError::Endorsements(
            "no VCEK certificate in the endorsements".into(),
        ));
    }
    if !trimmed.starts_with(b"-----BEGIN") {
        return Ok(trimmed.to_vec());
    }
    let blocks = pem::parse_many(trimmed).map_err(|e| AttestError::Endorsements(format!("PEM: {e}")))?;
    blocks
        .into_iter()
        .find(|block| block.tag() == "CERTIFICATE")
        .map(|block| block.into_contents())
        .ok_or_else(|| AttestError::Endorsements("no CERTIFICATE block in the endorsements".into()))
}

/// An SVN extension's value: a DER INTEGER that fits a byte.
fn svn(value: &[u8], oid: &str) -> Result<u8, AttestError> {
    let parsed = x509_parser::der_parser::der::parse_der_integer(value)
        .ok()
        .and_then(|(rest, obj)| if rest.is_empty() { obj.as_u32().ok() } else { None })
        .and_then(|v| u8::try_from(v).ok());
    parsed.ok_or_else(|| AttestError::Endorsements(format!("VCEK extension {oid} is not a one-byte SVN")))
}

/// The chip id and TCB a VCEK certifies.
fn vcek_identity(vcek_der: &[u8]) -> Result<(Vec<u8>, SnpTcb), AttestError> {
    let (_, cert) = X509Certificate::from_der(vcek_der).map_err(|e| AttestError::Endorsements(format!("VCEK: {e}")))?;
    let (mut hw_id, mut bl, mut tee, mut snp, mut ucode, mut fmc) = (None, None, None, None, None, None);
    for ext in cert.extensions() {
        let oid = ext.oid.to_id_string();
        match oid.as_str() {
            OID_HW_ID => hw_id = Some(ext.value.to_vec()),
            OID_BL_SPL => bl = Some(svn(ext.value, OID_BL_SPL)?),
            OID_TEE_SPL => tee = Some(svn(ext.value, OID_TEE_SPL)?),
            OID_SNP_SPL => snp = Some(svn(ext.value, OID_SNP_SPL)?),
            OID_UCODE_SPL => ucode = Some(svn(ext.value, OID_UCODE_SPL)?),
            OID_FMC_SPL => fmc = Some(svn(ext.value, OID_FMC_SPL)?),
            _ => {}
        }
    }
    let missing = |name: &str| AttestError::Endorsements(format!("the VCEK has no {name} extension (not a VCEK?)"));
    let tcb = SnpTcb {
        boot_loader: bl.ok_or_else(|| missing("blSPL"))?,
        tee: tee.ok_or_else(|| missing("teeSPL"))?,
        snp: snp.ok_or_else(|| missing("snpSPL"))?,
        microcode: ucode.ok_or_else(|| missing("ucodeSPL"))?,
        fmc,
    };
    Ok((hw_id.ok_or_else(|| missing("hwID"))?, tcb))
}

/// Checks that the VCEK certifies the report's chip id and reported TCB.
pub(super) fn check_matches_report(vcek_der: &[u8], report: &AttestationReport) -> Result<(), AttestError> {
    let (hw_id, vcek_tcb) = vcek_identity(vcek_der)?;
    // Turin VCEKs carry an 8-byte hwID; the report pads the chip id with zeros to 64 bytes.
    let chip_matches = !hw_id.is_empty()
        && hw_id.len() <= report.chip_id.len()
        && report.chip_id[..hw_id.len()] == hw_id[..]
        && report.chip_id[hw_id.len()..].iter().all(|b| *b == 0);
    if !chip_matches {
        return Err(AttestError::Endorsements(
            "the VCEK belongs to another chip than the report's".into(),
        ));
    }
    let reported: SnpTcb = report.reported_tcb.into();
    if reported != vcek_tcb {
        return Err(AttestError::Endorsements(format!(
            "the VCEK is for TCB {vcek_tcb}, the report was signed at TCB {reported}"
        )));
    }
    Ok(())
}
