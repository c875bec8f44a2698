//! The host side of attestation: measuring the executable, writing and reading sealed secret files, and the
//! SEV-SNP guest device. consort-attest verifies and defines formats without IO; everything that touches the
//! machine for it lives here, in the node.

use std::io::{Read, Write};
use std::path::Path;

use consort_attest::{AttestError, Platform, VirtualPlatform};

use crate::config::{AttestationConfig, PlatformChoice};

/// Opens the platform the configuration names. SEV-SNP needs the guest device (checked first, so that a machine
/// without it is told so whatever else is wrong) and endorsements that chain to a built-in AMD root.
pub fn open(cfg: &AttestationConfig) -> Result<Box<dyn Platform>, AttestError> {
    match cfg.platform {
        PlatformChoice::Virtual => Ok(Box::new(virtual_platform_for_current_exe()?)),
        PlatformChoice::Snp => {
            snp_guest::require_device()?;
            let path = cfg
                .snp_endorsements_file
                .as_deref()
                .ok_or_else(|| AttestError::Unavailable("attestation.snp_endorsements_file is not set".into()))?;
            let endorsements = read_endorsements(path)?;
            Ok(Box::new(SnpGuestPlatform::open(endorsements)?))
        }
    }
}

/// Reads the host's endorsements file, within [`consort_attest::MAX_ENDORSEMENTS_BYTES`], and checks that its
/// VCEK chains to one of the built-in AMD roots before any peer is shown it.
fn read_endorsements(path: &Path) -> Result<Vec<u8>, AttestError> {
    let unavailable = |e: &dyn std::fmt::Display| {
        AttestError::Unavailable(format!("attestation.snp_endorsements_file {}: {e}", path.display()))
    };
    let len = std::fs::metadata(path).map_err(|e| unavailable(&e))?.len();
    if len > consort_attest::MAX_ENDORSEMENTS_BYTES as u64 {
        return Err(unavailable(&format_args!(
            "{len} bytes exceeds MAX_ENDORSEMENTS_BYTES ({})",
            consort_attest::MAX_ENDORSEMENTS_BYTES
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| unavailable(&e))?;
    consort_attest::snp::endorsements_product(&bytes).map_err(|e| unavailable(&e))?;
    Ok(bytes)
}

/// SHA-256 of the file at `path`, read in 64 KiB pieces.
pub fn measure_file(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = consort_crypto::Sha256Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finish());
        }
        hasher.update(&buf[..n]);
    }
}

/// SHA-256 of the running executable: the virtual platform's measurement. Read it once at start, before anything
/// could replace the file.
pub fn measure_current_exe() -> Result<[u8; 32], AttestError> {
    let exe = std::env::current_exe().map_err(|e| AttestError::Unavailable(format!("current executable: {e}")))?;
    measure_file(&exe).map_err(|e| AttestError::Unavailable(format!("reading {}: {e}", exe.display())))
}

/// The virtual platform of this process: measures the running executable.
pub fn virtual_platform_for_current_exe() -> Result<VirtualPlatform, AttestError> {
    Ok(VirtualPlatform::new(measure_current_exe()?))
}

/// Writes a sealed secret to `path` with mode 0600 (owner read/write only): written to a temporary file beside it,
/// synced, then renamed over `path`, so a crash leaves the old or the new file and never a torn one.
pub fn write_secret_file(path: &Path, sealed: &[u8]) -> std::io::Result<()> {
    let mut tmp_name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    // A pre-existing temporary file keeps its old mode through `open`; force 0600 before writing the secret.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(sealed)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

/// Reads a sealed secret written by [`write_secret_file`].
pub fn read_secret_file(path: &Path) -> std::io::Result<Vec<u8>> {
    std::fs::read(path)
}

pub use snp_guest::SnpGuestPlatform;

/// The SEV-SNP platform inside an SNP guest, through `/dev/sev-guest` and the `sev` crate's firmware API.
///
/// It cannot be exercised without SNP hardware; on any other machine [`SnpGuestPlatform::open`] returns
/// [`AttestError::Unavailable`] naming the missing device.
mod snp_guest {
    use consort_attest::{seal, AttestError, Evidence, Platform, PlatformKind};

    /// The path of the SEV guest device.
    pub(super) const SEV_GUEST_DEVICE: &str = "/dev/sev-guest";

    /// An SNP guest's platform: reports from the AMD secure processor, endorsements from the host's
    /// configuration, sealing under a key the firmware derives from the chip and this guest's measurement.
    #[derive(Clone, Debug)]
    pub struct SnpGuestPlatform {
        endorsements: Vec<u8>,
        /// The VM privilege level this guest runs at: a sealing key can be requested for it or a less privileged
        /// level only, and the key depends on it, so it is read once from the guest's own report.
        vmpl: u32,
    }

    /// Refuses a machine without the SEV guest device, naming it.
    pub(super) fn require_device() -> Result<(), AttestError> {
        if std::path::Path::new(SEV_GUEST_DEVICE).exists() {
            Ok(())
        } else {
            Err(AttestError::Unavailable(format!(
                "{SEV_GUEST_DEVICE} is absent: this machine is not an SEV-SNP guest, so attestation.platform = \"snp\" \
                 cannot run here"
            )))
        }
    }

    fn unavailable(what: &str, e: impl std::fmt::Display) -> AttestError {
        AttestError::Unavailable(format!("{what} ({SEV_GUEST_DEVICE}): {e}"))
    }

    impl SnpGuestPlatform {
        /// Opens the SNP guest device. `endorsements` are the VCEK (and optionally ASK and ARK) in PEM or DER as
        /// the host provides them for this chip and TCB; they are sent with every report, never fetched here.
        pub fn open(endorsements: Vec<u8>) -> Result<Self, AttestError> {
            require_device()?;
            let own_report = request_report([0; 64])?;
            let vmpl = report_vmpl(&own_report)?;
            Ok(SnpGuestPlatform { endorsements, vmpl })
        }

        fn sealing_key(&self) -> Result<consort_crypto::Aes256GcmKey, AttestError> {
            derive_sealing_key(self.vmpl)
        }
    }

    /// The VMPL field of a report from this guest's own firmware.
    fn report_vmpl(report: &[u8]) -> Result<u32, AttestError> {
        use sev::parser::ByteParser;
        sev::firmware::guest::AttestationReport::from_bytes(report)
            .map(|parsed| parsed.vmpl)
            .map_err(|e| unavailable("parsing this guest's own report", e))
    }

    #[cfg(target_os = "linux")]
    fn open_firmware() -> Result<sev::firmware::guest::Firmware, AttestError> {
        sev::firmware::guest::Firmware::open().map_err(|e| unavailable("opening the SEV guest device", e))
    }

    #[cfg(not(target_os = "linux"))]
    fn open_firmware() -> Result<(), AttestError> {
        Err(AttestError::Unavailable(
            "SEV-SNP guests are supported on Linux only".into(),
        ))
    }

    #[cfg(target_os = "linux")]
    fn request_report(report_data: [u8; 64]) -> Result<Vec<u8>, AttestError> {
        let mut firmware = open_firmware()?;
        // Message version 1 and the guest's own VMPL (None): what every SNP firmware accepts.
        firmware
            .get_report(None, Some(report_data), None)
            .map_err(|e| unavailable("requesting a report", e))
    }

    #[cfg(not(target_os = "linux"))]
    fn request_report(_report_data: [u8; 64]) -> Result<Vec<u8>, AttestError> {
        open_firmware().map(|_| Vec::new())
    }

    /// The sealing key: derived by the firmware from the VCEK root, mixing in this guest's measurement and policy,
    /// so another image or a debuggable launch of the same image derives a different key. The TCB is not mixed
    /// in, so secrets survive firmware updates (the join policy's TCB minimum is what refuses old firmware).
    #[cfg(target_os = "linux")]
    fn derive_sealing_key(vmpl: u32) -> Result<consort_crypto::Aes256GcmKey, AttestError> {
        use sev::firmware::guest::{DerivedKey, GuestFieldSelect};
        let mut fields = GuestFieldSelect::default();
        fields.set_measurement(true);
        fields.set_guest_policy(true);
        let request = DerivedKey::new(false, fields, vmpl, 0, 0, None);
        let mut firmware = open_firmware()?;
        let key = firmware
            .get_derived_key(Some(1), request)
            .map_err(|e| unavailable("deriving the sealing key", e))?;
        Ok(consort_crypto::Aes256GcmKey::from_bytes(key))
    }

    #[cfg(not(target_os = "linux"))]
    fn derive_sealing_key(_vmpl: u32) -> Result<consort_crypto::Aes256GcmKey, AttestError> {
        open_firmware().and_then(|_| Err(AttestError::Unavailable("no SEV guest device".into())))
    }

    impl Platform for SnpGuestPlatform {
        fn kind(&self) -> PlatformKind {
            PlatformKind::Snp
        }

        fn evidence_for(&self, public_key_der: &[u8]) -> Result<Evidence, AttestError> {
            let quote = request_report(consort_attest::snp::expected_report_data(public_key_der))?;
            Ok(Evidence {
                format: PlatformKind::Snp,
                quote,
                endorsements: self.endorsements.clone(),
            })
        }

        fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, AttestError> {
            Ok(seal::aead_seal(&self.sealing_key()?, plaintext))
        }

        fn unseal(&self, sealed: &[u8]) -> Result<Vec<u8>, AttestError> {
            seal::aead_unseal(&self.sealing_key()?, sealed)
        }

        fn security_warning(&self) -> Option<&'static str> {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_files_and_the_running_test_binary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exe");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(measure_file(&path).unwrap(), consort_crypto::sha256(b"abc"));
        let exe = std::env::current_exe().unwrap();
        assert_eq!(
            measure_current_exe().unwrap(),
            consort_crypto::sha256(&std::fs::read(exe).unwrap())
        );
    }

    #[cfg(unix)]
    #[test]
    fn secret_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key.sealed");
        // A stale, world-readable temporary file must not pass its mode on to the secret.
        std::fs::write(dir.path().join("node.key.sealed.tmp"), b"old").unwrap();
        std::fs::set_permissions(
            dir.path().join("node.key.sealed.tmp"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        write_secret_file(&path, b"sealed").unwrap();
        assert_eq!(read_secret_file(&path).unwrap(), b"sealed");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        write_secret_file(&path, b"again").unwrap();
        assert_eq!(read_secret_file(&path).unwrap(), b"again");
    }

    #[test]
    fn snp_guest_is_a_clear_error_without_the_device() {
        if std::path::Path::new(snp_guest::SEV_GUEST_DEVICE).exists() {
            return; // On a real SNP guest the device is there; this test is about every other machine.
        }
        let err = SnpGuestPlatform::open(Vec::new()).unwrap_err();
        assert!(
            matches!(&err, AttestError::Unavailable(m) if m.contains("/dev/sev-guest")),
            "{err}"
        );
        // Through the configuration, with or without a usable endorsements file, the device is what is named.
        for endorsements in [None, Some(std::path::PathBuf::from("/nonexistent/vcek.pem"))] {
            let cfg = AttestationConfig {
                platform: PlatformChoice::Snp,
                snp_endorsements_file: endorsements,
            };
            let err = open(&cfg).err().unwrap();
            assert!(err.to_string().contains("/dev/sev-guest"), "{err}");
        }
    }

    #[test]
    fn the_virtual_platform_is_the_default_and_warns() {
        let platform = open(&AttestationConfig::default()).unwrap();
        assert_eq!(platform.kind(), consort_attest::PlatformKind::Virtual);
        assert!(platform.security_warning().unwrap().contains("no hardware guarantee"));
    }

    #[test]
    fn endorsements_must_exist_chain_to_amd_and_stay_within_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = read_endorsements(&missing).unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, b"not a certificate").unwrap();
        assert!(read_endorsements(&junk).is_err());
        let huge = dir.path().join("huge.pem");
        std::fs::write(&huge, vec![b'A'; consort_attest::MAX_ENDORSEMENTS_BYTES + 1]).unwrap();
        let err = read_endorsements(&huge).unwrap_err();
        assert!(err.to_string().contains("MAX_ENDORSEMENTS_BYTES"), "{err}");
        let vcek = dir.path().join("vcek.der");
        std::fs::write(&vcek, include_bytes!("../../consort-attest/tests/data/vcek_milan.der")).unwrap();
        assert!(read_endorsements(&vcek).is_ok());
    }
}
