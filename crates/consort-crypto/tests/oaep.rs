//! RSA-OAEP-SHA-256: round trips, PKCS#1 and PKCS#8 keys, refusals of bad keys and ciphertexts, and interop with
//! OpenSSL exactly as CCF's `submit_recovery_share.sh` runs it, on a key from the `ccf` package's
//! `keygenerator.sh --gen-enc-key`. The interop tests are skipped, with a message, when openssl or the ccf venv
//! (`CCF_VENV`, else the workspace's `.venv`, else `/opt/ccfvenv`) is missing, except under CI (`CI=true`), where
//! that is a failure.

use consort_crypto::{oaep, rsa_keys, CryptoError};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
use rsa::pkcs8::{DecodePrivateKey, LineEnding};
use std::path::{Path, PathBuf};
use std::process::Command;

fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(14)
}

fn key_pair() -> (String, String) {
    rsa_keys::generate_pem(2048).unwrap()
}

#[test]
fn a_ciphertext_decrypts_to_the_plaintext_with_the_matching_key() {
    let (private, public) = key_pair();
    let plaintext = b"one recovery share of 33 bytes..";
    let ciphertext = oaep::encrypt(&public, plaintext, &mut rng()).unwrap();
    assert_eq!(ciphertext.len(), 256, "a 2048-bit key gives 256-byte ciphertexts");
    assert_ne!(&ciphertext[..plaintext.len()], plaintext);
    assert_eq!(oaep::decrypt(&private, &ciphertext).unwrap(), plaintext);
}

#[test]
fn encryption_is_randomised_and_deterministic_for_a_given_rng() {
    let (_, public) = key_pair();
    let a = oaep::encrypt(&public, b"share", &mut rng()).unwrap();
    let b = oaep::encrypt(&public, b"share", &mut rng()).unwrap();
    let c = oaep::encrypt(&public, b"share", &mut ChaCha20Rng::seed_from_u64(15)).unwrap();
    assert_eq!(a, b, "the same seed gives the same ciphertext");
    assert_ne!(a, c, "another seed gives another ciphertext");
}

#[test]
fn pkcs1_keys_are_accepted_for_both_directions() {
    let (private, _) = key_pair();
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(&private).unwrap();
    let private_pkcs1 = key.to_pkcs1_pem(LineEnding::LF).unwrap().to_string();
    let public_pkcs1 = key.to_public_key().to_pkcs1_pem(LineEnding::LF).unwrap();
    assert!(private_pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    assert!(public_pkcs1.starts_with("-----BEGIN RSA PUBLIC KEY-----"));
    let ciphertext = oaep::encrypt(&public_pkcs1, b"pkcs1", &mut rng()).unwrap();
    assert_eq!(oaep::decrypt(&private_pkcs1, &ciphertext).unwrap(), b"pkcs1");
    assert_eq!(oaep::decrypt(&private, &ciphertext).unwrap(), b"pkcs1");
}

#[test]
fn a_wrong_key_is_an_error() {
    let (_, public) = key_pair();
    let (other_private, _) = key_pair();
    let ciphertext = oaep::encrypt(&public, b"for someone else", &mut rng()).unwrap();
    let err = oaep::decrypt(&other_private, &ciphertext).unwrap_err();
    assert!(matches!(err, CryptoError::OaepDecrypt(_)), "{err:?}");
    assert!(std::error::Error::source(&err).is_some(), "the rsa error is kept");
}

#[test]
fn truncated_extended_or_altered_ciphertexts_are_errors() {
    let (private, public) = key_pair();
    let ciphertext = oaep::encrypt(&public, b"share bytes", &mut rng()).unwrap();
    for cut in [0, 1, 128, 255] {
        let err = oaep::decrypt(&private, &ciphertext[..cut]).unwrap_err();
        assert!(matches!(err, CryptoError::OaepDecrypt(_)), "cut at {cut}: {err:?}");
    }
    let mut longer = ciphertext.clone();
    longer.push(0);
    assert!(matches!(
        oaep::decrypt(&private, &longer),
        Err(CryptoError::OaepDecrypt(_))
    ));
    for position in [0, 1, 17, 100, 200, 255] {
        let mut altered = ciphertext.clone();
        altered[position] ^= 0x01;
        let err = oaep::decrypt(&private, &altered).unwrap_err();
        assert!(matches!(err, CryptoError::OaepDecrypt(_)), "byte {position}: {err:?}");
    }
    let all_ones = vec![0xffu8; ciphertext.len()];
    assert!(matches!(
        oaep::decrypt(&private, &all_ones),
        Err(CryptoError::OaepDecrypt(_))
    ));
}

#[test]
fn a_plaintext_longer_than_the_key_allows_is_an_error() {
    let (_, public) = key_pair();
    // 2048-bit key: at most 256 - 2 * 32 - 2 = 190 bytes.
    assert!(oaep::encrypt(&public, &[7u8; 190], &mut rng()).is_ok());
    let err = oaep::encrypt(&public, &[7u8; 191], &mut rng()).unwrap_err();
    assert!(matches!(err, CryptoError::OaepEncrypt(_)), "{err:?}");
}

#[test]
fn bad_pem_is_an_error_never_a_panic() {
    let (private, public) = key_pair();
    let ciphertext = oaep::encrypt(&public, b"x", &mut rng()).unwrap();
    let garbage_base64 = "-----BEGIN PUBLIC KEY-----\n@@@@\n-----END PUBLIC KEY-----\n";
    assert!(matches!(
        oaep::encrypt(garbage_base64, b"x", &mut rng()),
        Err(CryptoError::PemSyntax(_))
    ));
    assert!(matches!(
        oaep::encrypt("not a pem at all", b"x", &mut rng()),
        Err(CryptoError::PemBlockMissing { .. })
    ));
    // A private key where a public one is expected, and the other way round: no block of the kind looked for.
    assert!(matches!(
        oaep::encrypt(&private, b"x", &mut rng()),
        Err(CryptoError::PemBlockMissing { .. })
    ));
    assert!(matches!(
        oaep::decrypt(&public, &ciphertext),
        Err(CryptoError::PemBlockMissing { .. })
    ));
    // An EC key in the right kind of block is not an RSA key.
    let ec = consort_crypto::SigningKey::generate(consort_crypto::Curve::P256);
    let ec_public = ec.verifying_key().to_pem();
    assert!(matches!(
        oaep::encrypt(&ec_public, b"x", &mut rng()),
        Err(CryptoError::PublicKey(_))
    ));
    let ec_private = ec.to_pkcs8_pem();
    assert!(matches!(
        oaep::decrypt(&ec_private, &ciphertext),
        Err(CryptoError::PrivateKey(_))
    ));
    // Bytes that base64-decode but are no PKCS#1 key.
    let bad_pkcs1 = "-----BEGIN RSA PUBLIC KEY-----\nAAAA\n-----END RSA PUBLIC KEY-----\n";
    let err = oaep::encrypt(bad_pkcs1, b"x", &mut rng()).unwrap_err();
    assert!(matches!(err, CryptoError::Pkcs1Key(_)), "{err:?}");
    assert!(err.to_string().starts_with("malformed or unsupported key: "), "{err}");
}

/// The ccf venv's `bin` directory and a working openssl, or None (with a message) when either is missing. Under
/// CI their absence is a failure.
fn interop_tools() -> Option<PathBuf> {
    let venv = std::env::var("CCF_VENV").map(PathBuf::from).unwrap_or_else(|_| {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv");
        if workspace.exists() {
            workspace
        } else {
            PathBuf::from("/opt/ccfvenv")
        }
    });
    let keygenerator = venv.join("bin/keygenerator.sh");
    let openssl = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    let missing = match (openssl, keygenerator.exists()) {
        (true, true) => return Some(venv.join("bin")),
        (false, _) => "openssl is not on PATH".to_string(),
        (true, false) => format!("no {} (set CCF_VENV)", keygenerator.display()),
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("OAEP interop cannot run under CI: {missing}");
    }
    eprintln!("SKIPPED: OAEP interop with openssl not run: {missing}");
    None
}

/// Runs `keygenerator.sh --name m --gen-enc-key` in `dir`; returns (private key PEM path, public key PEM).
fn ccf_member_encryption_key(bin: &Path, dir: &Path) -> (PathBuf, String) {
    let out = Command::new("bash")
        .arg(bin.join("keygenerator.sh"))
        .args(["--name", "m", "--gen-enc-key"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "keygenerator.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = std::fs::read_to_string(dir.join("m_enc_pubk.pem")).unwrap();
    (dir.join("m_enc_privk.pem"), public)
}

#[test]
fn openssl_decrypts_our_ciphertext_as_submit_recovery_share_does() {
    let Some(bin) = interop_tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (private_path, public) = ccf_member_encryption_key(&bin, dir.path());
    let share: Vec<u8> = (0u8..33).collect();
    let ciphertext = oaep::encrypt(&public, &share, &mut rng()).unwrap();
    let ciphertext_path = dir.path().join("share.enc");
    std::fs::write(&ciphertext_path, &ciphertext).unwrap();
    let out = Command::new("openssl")
        .args(["pkeyutl", "-decrypt", "-inkey"])
        .arg(&private_path)
        .args([
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            "rsa_oaep_md:sha256",
            "-in",
        ])
        .arg(&ciphertext_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, share);
    // And our decryption reads the key keygenerator.sh wrote.
    let private = std::fs::read_to_string(&private_path).unwrap();
    assert_eq!(oaep::decrypt(&private, &ciphertext).unwrap(), share);
}

#[test]
fn we_decrypt_what_openssl_encrypts_with_the_same_padding() {
    let Some(bin) = interop_tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (private_path, _) = ccf_member_encryption_key(&bin, dir.path());
    let plaintext_path = dir.path().join("share");
    std::fs::write(&plaintext_path, b"a share from openssl").unwrap();
    let out = Command::new("openssl")
        .args(["pkeyutl", "-encrypt", "-pubin", "-inkey"])
        .arg(dir.path().join("m_enc_pubk.pem"))
        .args([
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            "rsa_oaep_md:sha256",
            "-in",
        ])
        .arg(&plaintext_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let private = std::fs::read_to_string(&private_path).unwrap();
    assert_eq!(oaep::decrypt(&private, &out.stdout).unwrap(), b"a share from openssl");
}

mod random_input {
    use super::*;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    fn private_key() -> &'static str {
        static KEY: OnceLock<String> = OnceLock::new();
        KEY.get_or_init(|| rsa_keys::generate_pem(1024).unwrap().0)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn random_ciphertexts_are_refused(ciphertext in proptest::collection::vec(any::<u8>(), 0..300)) {
            let err = oaep::decrypt(private_key(), &ciphertext).unwrap_err();
            prop_assert!(matches!(err, CryptoError::OaepDecrypt(_)), "{:?}", err);
        }

        #[test]
        fn random_pem_text_is_an_error_not_a_panic(text in "(-----BEGIN (RSA )?(PUBLIC|PRIVATE) KEY-----\n)?[A-Za-z0-9+/=\n]{0,200}(-----END (RSA )?(PUBLIC|PRIVATE) KEY-----\n)?") {
            prop_assert!(oaep::encrypt(&text, b"x", &mut rng()).is_err());
            prop_assert!(oaep::decrypt(&text, &[0u8; 128]).is_err());
        }
    }
}
