//! Certificates the service key signs on governance's behalf (`consort_gov::CertificateIssuer`: CCF's
//! `generateEndorsedCertificate` and `generateNetworkCertificate`), a node's certificate signing request, and which
//! service certificate the node shows once members renewed it.
//!
//! A renewed service certificate (`set_service_certificate_validity` in CCF's constitution) is stored by the
//! constitution in `public:ccf.gov.service.info`'s `cert`. It certifies the same key under the same subject, so
//! everything signed before (node certificates, receipts, ledger signatures) verifies under both. Consort adopts it
//! where the node hands the service certificate out: `GET /node/network` and the join answer (which a joiner saves
//! as its `service_cert.pem`). A running node's own `service_cert.pem` and its TLS trust anchors are not rewritten:
//! they hold the same key and name, which is all that verification reads.

use super::Engine;
use crate::identity::Identities;
use consort_crypto::csr::{self, Validity};
use consort_crypto::{CertParams, CryptoError, ParsedCert, SigningKey};

/// Longest validity, in days, the node issues a certificate for when a constitution asks. The constitution sets
/// the policy (CCF's checks `maximum_node_certificate_validity_days`); this bound only keeps the arithmetic and the
/// certificate's dates sane whatever a constitution passes.
pub const MAX_ISSUED_CERT_VALIDITY_DAYS: u64 = 3_650;

/// The parameters of a node certificate: common name "CCF Node", the host of `rpc_address` and `localhost` as
/// alternative names. Both a node's signing request and the certificates the service issues it use them.
pub fn node_cert_params(rpc_address: &str) -> CertParams {
    let mut params = CertParams::new("CCF Node");
    let host = rpc_address.rsplit_once(':').map(|(h, _)| h.to_string());
    params.subject_alt_names = host.into_iter().chain(["localhost".to_string()]).collect();
    params
}

/// The PEM certificate signing request a node records in its `public:ccf.gov.nodes.info` row
/// (`certificate_signing_request`), from which CCF's `transition_node_to_trusted` endorses it.
pub fn node_signing_request(node_key: &SigningKey, rpc_address: &str) -> Result<String, CryptoError> {
    csr::signing_request(node_key, &node_cert_params(rpc_address))
}

/// Signs certificates with the service key for governance (see the module documentation).
pub struct ServiceIssuer<'a> {
    ids: &'a Identities,
}

impl std::fmt::Debug for ServiceIssuer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceIssuer").finish_non_exhaustive()
    }
}

impl<'a> ServiceIssuer<'a> {
    /// An issuer signing with the service key of `ids`.
    pub fn new(ids: &'a Identities) -> Self {
        ServiceIssuer { ids }
    }

    fn service_der(&self) -> Result<Vec<u8>, String> {
        Ok(ParsedCert::from_pem(&self.ids.service_cert_pem)
            .map_err(|e| format!("service certificate: {e}"))?
            .der)
    }
}

impl consort_gov::CertificateIssuer for ServiceIssuer<'_> {
    fn endorse_csr(&self, csr_pem: &str, valid_from: &str, validity_period_days: u64) -> Result<String, String> {
        let validity = validity(valid_from, validity_period_days)?;
        csr::issue_for_request(csr_pem, validity, &self.ids.service_key, &self.service_der()?)
            .map(|c| c.pem)
            .map_err(|e| e.to_string())
    }

    fn renew_service_certificate(&self, valid_from: &str, validity_period_days: u64) -> Result<String, String> {
        let validity = validity(valid_from, validity_period_days)?;
        csr::renew_self_signed(&self.service_der()?, &self.ids.service_key, validity)
            .map(|c| c.pem)
            .map_err(|e| e.to_string())
    }
}

fn validity(valid_from: &str, days: u64) -> Result<Validity, String> {
    if !(1..=MAX_ISSUED_CERT_VALIDITY_DAYS).contains(&days) {
        return Err(format!(
            "validity period of {days} days is outside 1..={MAX_ISSUED_CERT_VALIDITY_DAYS}"
        ));
    }
    Ok(Validity {
        not_before_unix_s: parse_cert_time(valid_from)?,
        // At most MAX_ISSUED_CERT_VALIDITY_DAYS: fits.
        days: days as u32,
    })
}

/// Parses the times CCF's constitutions pass as `valid_from`: X.509's GeneralizedTime (`YYYYMMDDhhmmssZ`) and
/// UTCTime (`YYMMDDhhmmssZ`), or ISO 8601 (`YYYY-MM-DD`, optionally `Thh:mm:ss` or ` hh:mm:ss`, fractional
/// seconds, and `Z` or `±hh:mm`). Returns Unix seconds.
pub fn parse_cert_time(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not a time (want YYYYMMDDhhmmssZ or ISO 8601)");
    let digits = |s: &str| -> Option<i64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let s = text.trim();
    let compact = s.strip_suffix('Z').filter(|c| c.bytes().all(|b| b.is_ascii_digit()));
    let (date, time, offset_s) = match compact {
        Some(c) if c.len() == 14 => ((c[0..4].to_string(), &c[4..6], &c[6..8]), &c[8..14], 0),
        Some(c) if c.len() == 12 => {
            // UTCTime: 50-99 are 1950-1999, 00-49 are 2000-2049 (RFC 5280).
            let yy = digits(&c[0..2]).ok_or_else(bad)?;
            let year = if yy >= 50 { 1900 + yy } else { 2000 + yy };
            ((year.to_string(), &c[2..4], &c[4..6]), &c[6..12], 0)
        }
        Some(_) => return Err(bad()),
        None => return parse_iso8601(s).ok_or_else(bad),
    };
    let field = |t: &str| digits(t).ok_or_else(bad);
    let (h, m, sec) = (field(&time[0..2])?, field(&time[2..4])?, field(&time[4..6])?);
    civil_to_unix(field(&date.0)?, field(date.1)?, field(date.2)?, (h, m, sec))
        .map(|t| t - offset_s)
        .ok_or_else(bad)
}

fn parse_iso8601(s: &str) -> Option<i64> {
    let num = |t: &str| -> Option<i64> { t.bytes().all(|b| b.is_ascii_digit()).then(|| t.parse().ok())? };
    let (date, rest) = (s.get(0..10)?, s.get(10..)?);
    let [y, mo, d]: [&str; 3] = date.split('-').collect::<Vec<_>>().try_into().ok()?;
    if y.len() != 4 || mo.len() != 2 || d.len() != 2 {
        return None;
    }
    let mut hms = (0, 0, 0);
    let mut offset_s = 0;
    if !rest.is_empty() {
        let rest = rest.strip_prefix(['T', ' '])?;
        let time = rest.get(0..8)?;
        let [h, mi, sec]: [&str; 3] = time.split(':').collect::<Vec<_>>().try_into().ok()?;
        hms = (num(h)?, num(mi)?, num(sec)?);
        let mut zone = &rest[8..];
        if let Some(frac) = zone.strip_prefix('.') {
            let end = frac.find(|c: char| !c.is_ascii_digit()).unwrap_or(frac.len());
            zone = &frac[end..];
        }
        offset_s = match zone {
            "" | "Z" => 0,
            z if z.len() == 6 && z.as_bytes()[3] == b':' => {
                let sign = match z.as_bytes()[0] {
                    b'+' => 1,
                    b'-' => -1,
                    _ => return None,
                };
                sign * (num(&z[1..3])? * 3_600 + num(&z[4..6])? * 60)
            }
            _ => return None,
        };
    }
    civil_to_unix(num(y)?, num(mo)?, num(d)?, hms).map(|t| t - offset_s)
}

/// Seconds since the Unix epoch of a proleptic Gregorian date and time (UTC), if it is a real one.
fn civil_to_unix(year: i64, month: i64, day: i64, (h, m, s): (i64, i64, i64)) -> Option<i64> {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let valid = (1..=9999).contains(&year)
        && (1..=12).contains(&month)
        && day >= 1
        && day <= month_days[(month - 1) as usize]
        && (0..24).contains(&h)
        && (0..60).contains(&m)
        && (0..=60).contains(&s);
    if !valid {
        return None;
    }
    // Days before this year since 1970, then before this month, then this month's.
    let y = year - 1;
    let days_before_year = 365 * (year - 1970) + (y / 4 - y / 100 + y / 400) - (1969 / 4 - 1969 / 100 + 1969 / 400);
    let days_before_month: i64 = month_days[..(month - 1) as usize].iter().sum();
    let days = days_before_year + days_before_month + day - 1;
    Some(days * 86_400 + h * 3_600 + m * 60 + s)
}

impl Engine {
    /// The service certificate this node hands out: the one governance last recorded in
    /// `public:ccf.gov.service.info` when it certifies this service's key (a renewal), else the node's own.
    pub fn current_service_cert_pem(&self) -> String {
        let own = &self.ids.service_cert_pem;
        let recorded = self.service_info().and_then(|i| i["cert"].as_str().map(str::to_string));
        let service_key = self.ids.service_key.verifying_key();
        match recorded {
            Some(pem)
                if ParsedCert::from_pem(&pem)
                    .and_then(|c| c.public_key())
                    .is_ok_and(|k| k == service_key) =>
            {
                pem
            }
            _ => own.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ccf_time_strings_parse_to_unix_seconds() {
        let jan_2024 = 1_704_067_200;
        for (text, want) in [
            ("20240101000000Z", jan_2024),
            ("240101000000Z", jan_2024),
            ("700101000000Z", 0),
            ("2024-01-01", jan_2024),
            ("2024-01-01T00:00:00", jan_2024),
            ("2024-01-01T00:00:00Z", jan_2024),
            ("2024-01-01 00:00:00.123456", jan_2024),
            ("2024-01-01T01:30:00+01:30", jan_2024),
            ("2023-12-31T23:00:00-01:00", jan_2024),
            ("20240229120000Z", jan_2024 + 59 * 86_400 + 12 * 3_600),
            ("19700101000001Z", 1),
        ] {
            assert_eq!(parse_cert_time(text), Ok(want), "{text}");
        }
        for text in [
            "",
            "now",
            "2024010100000Z",
            "20240101000000",
            "20230229000000Z",
            "20241301000000Z",
            "20240101250000Z",
            "2024-1-01",
            "2024-01-01T00:00",
            "2024-01-01T00:00:00+0100",
            "2024-01-01X00:00:00",
            "+2024-01-01",
        ] {
            assert!(parse_cert_time(text).is_err(), "{text}");
        }
    }

    #[test]
    fn validity_periods_outside_the_bounds_are_refused() {
        assert!(validity("20240101000000Z", 0).is_err());
        assert!(validity("20240101000000Z", MAX_ISSUED_CERT_VALIDITY_DAYS + 1).is_err());
        assert!(validity("not a time", 1).is_err());
        let v = validity("20240101000000Z", 365).unwrap();
        assert_eq!((v.not_before_unix_s, v.days), (1_704_067_200, 365));
    }

    #[test]
    fn node_certificate_parameters_name_the_rpc_host_and_localhost() {
        let p = node_cert_params("10.0.0.7:8000");
        assert_eq!(p.subject_cn, "CCF Node");
        assert_eq!(p.subject_alt_names, vec!["10.0.0.7".to_string(), "localhost".into()]);
    }
}
