//! Signed governance requests: interop with CCF's own tooling (`ccf_cose_sign1`, `keygenerator.sh` and
//! `ccf.cose.validate_cose_sign1` from the `ccf` Python package) and the refusals of bad requests.

use std::path::{Path, PathBuf};
use std::process::Command;

use consort_crypto::x509::self_signed;
use consort_crypto::{CertParams, Curve, ParsedCert, SigningKey};
use consort_gov::*;
use consort_kv::Store;
use serde_json::json;

const NOW: i64 = 1_700_000_000;
/// `NOW` as the ISO 8601 time `ccf_cose_sign1` takes.
const NOW_ISO: &str = "2023-11-14T22:13:20+00:00";
const ROOT: [u8; 32] = [1u8; 32];

/// The venv holding the `ccf` package, or `None` (after saying why) when it is missing outside CI.
fn ccf_venv() -> Option<PathBuf> {
    let venv = PathBuf::from(std::env::var("CCF_VENV").unwrap_or_else(|_| "/opt/ccfvenv".into()));
    if venv.join("bin/ccf_cose_sign1").exists() {
        return Some(venv);
    }
    let msg = format!("ccf Python package not found in {} (set CCF_VENV)", venv.display());
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!("skipping CCF interop check: {msg}");
    None
}

fn setup_with_cert(cert_pem: &str) -> Store {
    let store = Store::new();
    let mut tx = store.begin();
    let spec = MemberSpec {
        cert_pem: cert_pem.into(),
        encryption_public_key_pem: None,
        member_data: None,
        recovery_role: None,
    };
    genesis(&mut tx, &[spec], &[], DEFAULT_CONSTITUTION, 1).unwrap();
    store.commit(tx, |_, _| ()).unwrap();
    store
}

/// Runs CCF's keygenerator.sh in `dir`; returns (cert PEM path, private key PEM path).
fn ccf_keygen(venv: &Path, dir: &Path, name: &str, curve: Option<&str>) -> (PathBuf, PathBuf) {
    let mut cmd = Command::new("bash");
    cmd.arg(venv.join("bin/keygenerator.sh"))
        .args(["--name", name])
        .current_dir(dir);
    if let Some(c) = curve {
        cmd.args(["--curve", c]);
    }
    let out = cmd.output().expect("run keygenerator.sh");
    assert!(
        out.status.success(),
        "keygenerator.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        dir.join(format!("{name}_cert.pem")),
        dir.join(format!("{name}_privk.pem")),
    )
}

fn ccf_sign(
    venv: &Path,
    cert: &Path,
    key: &Path,
    content: &[u8],
    msg_type: &str,
    proposal_id: Option<&str>,
) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let content_path = dir.path().join("content.json");
    std::fs::write(&content_path, content).unwrap();
    let mut cmd = Command::new(venv.join("bin/ccf_cose_sign1"));
    cmd.arg("--content")
        .arg(&content_path)
        .arg("--signing-cert")
        .arg(cert)
        .arg("--signing-key")
        .arg(key)
        .args(["--ccf-gov-msg-type", msg_type, "--ccf-gov-msg-created_at", NOW_ISO]);
    if let Some(p) = proposal_id {
        cmd.args(["--ccf-gov-msg-proposal_id", p]);
    }
    let out = cmd.output().expect("run ccf_cose_sign1");
    assert!(
        out.status.success(),
        "ccf_cose_sign1: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn ccf_signed_requests_are_accepted(curve: Option<&str>) {
    let Some(venv) = ccf_venv() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = ccf_keygen(&venv, dir.path(), "member0", curve);
    let cert_pem = std::fs::read_to_string(&cert_path).unwrap();
    let member_id = ParsedCert::from_pem(&cert_pem).unwrap().cert_id();
    let store = setup_with_cert(&cert_pem);

    let user_key = SigningKey::generate(Curve::P256);
    let user_cert = self_signed(&user_key, &CertParams::new("user0")).unwrap();
    let proposal = json!({"actions": [{"name": "set_user", "args": {"cert": user_cert.pem}}]}).to_string();
    let body = ccf_sign(&venv, &cert_path, &key_path, proposal.as_bytes(), "proposal", None);

    let mut tx = store.begin();
    let req = verify_gov_request(&mut tx, &body, MsgType::Proposal, None, NOW).unwrap();
    assert_eq!(req.member_id, member_id);
    assert_eq!(req.created_at, NOW);
    assert_eq!(req.payload, proposal.as_bytes());
    let out = create_proposal(&mut tx, &req, &ROOT, &GovEnv::default()).unwrap();
    store.commit(tx, |_, _| ()).unwrap();
    let pid = out.proposal_id;

    let ballot = json!({"ballot": "export function vote(proposal, proposerId) { return true; }"}).to_string();
    let body = ccf_sign(&venv, &cert_path, &key_path, ballot.as_bytes(), "ballot", Some(&pid));
    let mut tx = store.begin();
    let req = verify_gov_request(&mut tx, &body, MsgType::Ballot, Some(&pid), NOW).unwrap();
    let out = submit_ballot(&mut tx, &req, &pid, &member_id, &GovEnv::default()).unwrap();
    assert_eq!(out.info.state, ProposalState::Accepted);
    store.commit(tx, |_, _| ()).unwrap();
    assert!(store
        .read_only()
        .has(tables::USERS_CERTS, consort_crypto::cert_id(&user_cert.der).as_bytes()));
}

#[test]
fn ccf_cose_sign1_p384_requests_are_accepted() {
    ccf_signed_requests_are_accepted(None);
}

#[test]
fn ccf_cose_sign1_p256_requests_are_accepted() {
    ccf_signed_requests_are_accepted(Some("secp256r1"));
}

/// CCF's signer (pycose over python-ecdsa, RFC 6979 without low-S normalisation) emits high-S signatures about
/// half of the time, so they must be accepted; the malleated twin of an accepted one must still be a replay.
#[test]
fn ccf_cose_sign1_high_s_requests_are_accepted_and_their_twins_are_replays() {
    let Some(venv) = ccf_venv() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = ccf_keygen(&venv, dir.path(), "member0", None);
    let store = setup_with_cert(&std::fs::read_to_string(&cert_path).unwrap());
    let proposal = json!({"actions": [{"name": "set_recovery_threshold", "args": {"recovery_threshold": 1}}]});
    // Trailing spaces vary the signed bytes, not the proposal; 2^-24 is the chance that no signature is high-S.
    let high = (0..24)
        .map(|spaces| {
            let content = format!("{proposal}{}", " ".repeat(spaces));
            ccf_sign(&venv, &cert_path, &key_path, content.as_bytes(), "proposal", None)
        })
        .find(|body| {
            let sign1 = <coset::CoseSign1 as coset::TaggedCborSerializable>::from_tagged_slice(body).unwrap();
            consort_crypto::s_form_raw(Curve::P384, &sign1.signature) == Ok(consort_crypto::SForm::High)
        })
        .expect("ccf_cose_sign1 made a high-S signature");

    let mut tx = store.begin();
    let req = verify_gov_request(&mut tx, &high, MsgType::Proposal, None, NOW).unwrap();
    let first = create_proposal(&mut tx, &req, &ROOT, &GovEnv::default()).unwrap();
    store.commit(tx, |_, _| ()).unwrap();
    let mut tx = store.begin();
    let twin = verify_gov_request(&mut tx, &malleated(&high), MsgType::Proposal, None, NOW).unwrap();
    let err = create_proposal(&mut tx, &twin, &ROOT, &GovEnv::default()).unwrap_err();
    assert_eq!(err, GovError::ProposalReplay(first.proposal_id));
}

/// Runs CCF's `validate_cose_sign1` on our envelope. The venv's cbor2 (6.x) decodes the array inside a CBOR
/// tag as a tuple (and maps in it as frozendicts), which pycose 1.1 refuses ("Bytes cannot be decoded as COSE
/// message") even for envelopes made by `ccf_cose_sign1` itself; the shim thaws those containers back into a
/// list and dicts and changes nothing else.
const VALIDATE_PY: &str = r#"
import sys
from collections.abc import Mapping
import cbor2
_loads = cbor2.loads
def _loads_with_lists(data, *args, **kwargs):
    value = _loads(data, *args, **kwargs)
    if isinstance(value, cbor2.CBORTag) and isinstance(value.value, tuple):
        thawed = [dict(v) if isinstance(v, Mapping) else v for v in value.value]
        return cbor2.CBORTag(value.tag, thawed)
    return value
cbor2.loads = _loads_with_lists
import pycose.headers
from pycose.messages import Sign1Message
from cryptography.x509 import load_pem_x509_certificate
from ccf.cose import validate_cose_sign1, cert_fingerprint
cert_pem = open(sys.argv[1]).read()
body = open(sys.argv[2], "rb").read()
cert = load_pem_x509_certificate(cert_pem.encode())
validate_cose_sign1(cert.public_key(), body)
msg = Sign1Message.decode(body)
assert msg.phdr[pycose.headers.KID] == cert_fingerprint(cert_pem), "kid"
print(msg.phdr["ccf.gov.msg.type"], msg.phdr["ccf.gov.msg.created_at"], msg.phdr.get("ccf.gov.msg.proposal_id"))
"#;

#[test]
fn our_signer_satisfies_ccf_validate_cose_sign1() {
    let Some(venv) = ccf_venv() else { return };
    for curve in [Curve::P256, Curve::P384] {
        let key = SigningKey::generate(curve);
        let cert = self_signed(&key, &CertParams::new("member0")).unwrap();
        let id = consort_crypto::cert_id(&cert.der);
        let pid = "ab".repeat(32);
        let body = sign_gov_request(&key, &id, MsgType::Ballot, NOW, Some(&pid), br#"{"ballot": "x"}"#);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cert.pem"), &cert.pem).unwrap();
        std::fs::write(dir.path().join("body.cose"), &body).unwrap();
        let out = Command::new(venv.join("bin/python"))
            .args(["-c", VALIDATE_PY])
            .arg(dir.path().join("cert.pem"))
            .arg(dir.path().join("body.cose"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{curve:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("ballot {NOW} {pid}")
        );
    }
}

struct Signer {
    key: SigningKey,
    id: String,
    store: Store,
}

fn signer() -> Signer {
    let key = SigningKey::generate(Curve::P384);
    let cert = self_signed(&key, &CertParams::new("member0")).unwrap();
    Signer {
        id: consort_crypto::cert_id(&cert.der),
        store: setup_with_cert(&cert.pem),
        key,
    }
}

fn proposal_body(s: &Signer, created_at: i64, n: u32) -> Vec<u8> {
    let p = json!({"actions": [{"name": "set_recovery_threshold", "args": {"recovery_threshold": n}}]});
    sign_gov_request(
        &s.key,
        &s.id,
        MsgType::Proposal,
        created_at,
        None,
        p.to_string().as_bytes(),
    )
}

fn submit(s: &Signer, body: &[u8]) -> Result<ProposalOutcome, GovError> {
    let mut tx = s.store.begin();
    let req = verify_gov_request(&mut tx, body, MsgType::Proposal, None, NOW)?;
    let out = create_proposal(&mut tx, &req, &ROOT, &GovEnv::default())?;
    s.store.commit(tx, |_, _| ()).unwrap();
    Ok(out)
}

fn verify(s: &Signer, body: &[u8], ty: MsgType) -> Result<VerifiedRequest, GovError> {
    verify_gov_request(&mut s.store.read_only(), body, ty, None, NOW)
}

#[test]
fn replayed_proposal_is_refused() {
    let s = signer();
    let body = proposal_body(&s, NOW, 1);
    let first = submit(&s, &body).unwrap();
    let err = submit(&s, &body).unwrap_err();
    assert_eq!((err.code(), err.http_status()), ("ProposalReplay", 400));
    assert!(err.to_string().contains(&first.proposal_id), "{err}");
}

#[test]
fn proposal_older_than_the_window_median_is_refused() {
    let s = signer();
    for i in 0..4 {
        submit(&s, &proposal_body(&s, NOW - 100 + i, 1)).unwrap();
    }
    let err = submit(&s, &proposal_body(&s, NOW - 1000, 1)).unwrap_err();
    assert_eq!(err.code(), "ProposalCreatedTooLongAgo");
    assert!(err.to_string().contains(&format!("{:010}", NOW - 98)), "{err}");
}

#[test]
fn replay_window_is_trimmed_to_its_size() {
    let s = signer();
    let n = limits::DEFAULT_RECENT_COSE_PROPOSALS_WINDOW_SIZE as i64 + 5;
    for i in 0..n {
        submit(&s, &proposal_body(&s, NOW - n + i, 1)).unwrap();
    }
    assert_eq!(
        s.store.read_only().key_count(tables::COSE_RECENT_PROPOSALS),
        limits::DEFAULT_RECENT_COSE_PROPOSALS_WINDOW_SIZE
    );
}

#[test]
fn future_created_at_is_refused() {
    let s = signer();
    let body = proposal_body(&s, NOW + limits::MAX_CREATED_AT_FUTURE_SKEW_SECONDS + 1, 1);
    assert_eq!(
        verify(&s, &body, MsgType::Proposal).unwrap_err().code(),
        "InvalidCreatedAt"
    );
    let body = proposal_body(&s, NOW + limits::MAX_CREATED_AT_FUTURE_SKEW_SECONDS, 1);
    assert!(verify(&s, &body, MsgType::Proposal).is_ok());
}

#[test]
fn tampered_signature_is_refused() {
    let s = signer();
    let mut body = proposal_body(&s, NOW, 1);
    let last = body.len() - 1;
    body[last] ^= 1;
    let err = verify(&s, &body, MsgType::Proposal).unwrap_err();
    assert!(matches!(err, GovError::InvalidSignature(_)), "{err:?}");
    assert_eq!((err.code(), err.http_status()), ("InvalidAuthenticationInfo", 401));
}

#[test]
fn tampered_payload_is_refused() {
    let s = signer();
    let body = proposal_body(&s, NOW, 1);
    let needle = br#""recovery_threshold":1"#;
    let pos = body.windows(needle.len()).position(|w| w == needle).unwrap() + needle.len() - 1;
    let mut tampered = body.clone();
    tampered[pos] = b'2';
    assert!(matches!(
        verify(&s, &tampered, MsgType::Proposal),
        Err(GovError::InvalidSignature(_))
    ));
}

#[test]
fn wrong_message_type_is_refused() {
    let s = signer();
    let body = proposal_body(&s, NOW, 1);
    let err = verify(&s, &body, MsgType::Ack).unwrap_err();
    assert!(matches!(&err, GovError::WrongMessageType { expected, got } if expected == "ack" && got == "proposal"));
    assert_eq!(err.http_status(), 401);
}

#[test]
fn malformed_cbor_is_refused() {
    let s = signer();
    let good = proposal_body(&s, NOW, 1);
    let cases: Vec<Vec<u8>> = vec![
        vec![],
        b"not cbor at all".to_vec(),
        vec![0xd2],         // the tag alone
        good[1..].to_vec(), // untagged
        good[..good.len() / 2].to_vec(),
        [good.clone(), vec![0]].concat(),         // trailing byte
        vec![0xd2, 0x84, 0x40, 0xa0, 0xf6, 0x40], // empty protected header, nil payload
    ];
    for body in cases {
        let err = verify(&s, &body, MsgType::Proposal).unwrap_err();
        assert_eq!(err.http_status(), 401, "{body:?}: {err:?}");
        assert!(
            matches!(err, GovError::MalformedCose(_) | GovError::InvalidHeader(_)),
            "{body:?}: {err:?}"
        );
    }
}

#[test]
fn unknown_member_is_refused() {
    let s = signer();
    let stranger = SigningKey::generate(Curve::P384);
    let cert = self_signed(&stranger, &CertParams::new("stranger")).unwrap();
    let id = consort_crypto::cert_id(&cert.der);
    let body = sign_gov_request(&stranger, &id, MsgType::Proposal, NOW, None, b"{}");
    let err = verify(&s, &body, MsgType::Proposal).unwrap_err();
    assert_eq!(err, GovError::UnknownMember(id));
    assert_eq!(err.to_json()["error"]["code"], "InvalidAuthenticationInfo");
    // A member's id with a stranger's key does not verify either.
    let body = sign_gov_request(&stranger, &s.id, MsgType::Proposal, NOW, None, b"{}");
    assert!(matches!(
        verify(&s, &body, MsgType::Proposal),
        Err(GovError::UnsupportedAlgorithm(_) | GovError::InvalidSignature(_))
    ));
}

#[test]
fn ballot_for_another_proposal_is_refused() {
    let s = signer();
    let pid = "ab".repeat(32);
    let body = sign_gov_request(&s.key, &s.id, MsgType::Ballot, NOW, Some(&pid), b"{}");
    let other = "cd".repeat(32);
    let err = verify_gov_request(&mut s.store.read_only(), &body, MsgType::Ballot, Some(&other), NOW).unwrap_err();
    assert_eq!(err.code(), "InvalidResourceName");
    let missing = sign_gov_request(&s.key, &s.id, MsgType::Ballot, NOW, None, b"{}");
    assert!(verify(&s, &missing, MsgType::Ballot).is_err());
}

#[test]
fn oversized_proposal_is_refused() {
    let s = signer();
    let big = vec![b' '; limits::MAX_PROPOSAL_SIZE_BYTES + 1];
    let body = sign_gov_request(&s.key, &s.id, MsgType::Proposal, NOW, None, &big);
    assert_eq!(submit(&s, &body).unwrap_err().http_status(), 413);
}

/// The envelope `body` with its signature replaced by the other valid one, (r, n - s): what anybody who saw a
/// member's request can compute without the member's key.
fn malleated(body: &[u8]) -> Vec<u8> {
    use coset::TaggedCborSerializable;
    let mut sign1 = coset::CoseSign1::from_tagged_slice(body).unwrap();
    let curve = if sign1.signature.len() == Curve::P256.raw_signature_size() {
        Curve::P256
    } else {
        Curve::P384
    };
    sign1.signature = consort_crypto::malleate_raw(curve, &sign1.signature).unwrap();
    sign1.to_tagged_vec().unwrap()
}

/// The envelope `body` with an unprotected header added: the signed bytes stay the same, the envelope does not.
fn with_unprotected_header(body: &[u8]) -> Vec<u8> {
    use coset::TaggedCborSerializable;
    let mut sign1 = coset::CoseSign1::from_tagged_slice(body).unwrap();
    sign1.unprotected.rest.push((
        coset::Label::Text("note".into()),
        coset::cbor::value::Value::Text("replayed".into()),
    ));
    sign1.to_tagged_vec().unwrap()
}

#[test]
fn high_s_variant_of_an_accepted_proposal_is_refused_as_a_replay() {
    let s = signer();
    let body = proposal_body(&s, NOW, 1);
    let twin = malleated(&body);
    assert_ne!(twin, body);
    // Both forms are valid signatures by the member, and name the same request.
    let original = verify(&s, &body, MsgType::Proposal).unwrap();
    let replayed = verify(&s, &twin, MsgType::Proposal).unwrap();
    assert_eq!(replayed.signature, original.signature);
    assert_eq!(replayed.signed_digest, original.signed_digest);
    assert_eq!(proposal_id(&ROOT, &replayed), proposal_id(&ROOT, &original));

    let first = submit(&s, &body).unwrap();
    let err = submit(&s, &twin).unwrap_err();
    assert_eq!((err.code(), err.http_status()), ("ProposalReplay", 400));
    assert!(err.to_string().contains(&first.proposal_id), "{err}");
}

#[test]
fn a_high_s_request_is_accepted_once_and_its_low_s_twin_is_a_replay() {
    let s = signer();
    let high = malleated(&proposal_body(&s, NOW, 1));
    let first = submit(&s, &high).unwrap();
    let low = malleated(&high);
    let err = submit(&s, &low).unwrap_err();
    assert_eq!(err.code(), "ProposalReplay");
    assert!(err.to_string().contains(&first.proposal_id), "{err}");
}

#[test]
fn re_encoding_the_envelope_does_not_bypass_the_replay_window() {
    let s = signer();
    let body = proposal_body(&s, NOW, 1);
    submit(&s, &body).unwrap();
    for variant in [
        with_unprotected_header(&body),
        with_unprotected_header(&malleated(&body)),
    ] {
        assert_ne!(variant, body);
        let err = submit(&s, &variant).unwrap_err();
        assert_eq!(err.code(), "ProposalReplay", "{err}");
    }
    // Another request by the same member (a different created_at) is still accepted.
    submit(&s, &proposal_body(&s, NOW + 1, 1)).unwrap();
}

#[test]
fn an_unusable_member_certificate_is_a_typed_internal_error() {
    let s = signer();
    let body = proposal_body(&s, NOW, 1);
    let mut tx = s.store.begin();
    tx.put(tables::MEMBERS_CERTS, s.id.as_bytes(), b"not a certificate");
    s.store.commit(tx, |_, _| ()).unwrap();
    let err = verify(&s, &body, MsgType::Proposal).unwrap_err();
    assert!(
        matches!(&err, GovError::MemberCertificate { member_id, .. } if *member_id == s.id),
        "{err:?}"
    );
    assert!(std::error::Error::source(&err).is_some());
    assert_eq!((err.code(), err.http_status()), ("InternalError", 500));
}
