//! The member side of disaster recovery against a real sandbox: `consort sandbox --recovery-members 3
//! --recovery-threshold 2` opens with three Active recovery members; each fetches and decrypts exactly the share the
//! service issued (checked against the record in the ledger, and two of them restore the node's ledger secret);
//! `consort gov recovery-share` checks a share, reports a missing share, a key that does not decrypt, and the
//! node's refusal of a submission to a service that is not recovering; and the sandbox refuses recovery sizes it
//! does not make.

mod common;

use common::*;
use consort_cli::recovery_share::{self as rs, RecoveryShareError};
use consort_kv::WriteSet;
use consort_ledger::secrets::shares::{self, RecoverySharesInfo, RECOVERY_SHARES_TABLE};
use consort_ledger::SINGLETON_KEY;
use std::path::Path;
use std::time::Duration;

/// Longest the test may run: its nodes are killed (on drop) when it expires.
const TEST_TIMEOUT: Duration = Duration::from_secs(300);

/// The latest recovery-shares record in a ledger directory.
fn latest_shares_record(ledger: &Path) -> RecoverySharesInfo {
    ledger_entries(ledger)
        .iter()
        .rev()
        .find_map(|e| {
            let (_, ws) = WriteSet::deserialise_public(&e.public_domain).ok()?;
            let value = ws
                .maps
                .get(RECOVERY_SHARES_TABLE)?
                .writes
                .get(&SINGLETON_KEY[..])?
                .clone()?;
            Some(serde_json::from_slice(&value).unwrap())
        })
        .expect("no recovery shares record in the ledger")
}

fn ws_file(ws: &Path, name: &str) -> String {
    std::fs::read_to_string(ws.join(name)).unwrap()
}

/// Runs `consort gov --workspace WS --cert WS/<member>_cert.pem --key WS/<member>_privk.pem recovery-share ARGS`.
fn cli_recovery_share(ws: &Path, member: &str, args: &[&str]) -> (bool, String) {
    let path = |suffix: &str| ws.join(format!("{member}{suffix}")).to_str().unwrap().to_string();
    let (cert, key) = (path("_cert.pem"), path("_privk.pem"));
    let mut all = vec![
        "gov",
        "--workspace",
        ws.to_str().unwrap(),
        "--cert",
        &cert,
        "--key",
        &key,
        "recovery-share",
    ];
    all.extend_from_slice(args);
    run_consort(&all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_recovery_members_each_fetch_and_decrypt_the_share_the_service_issued() {
    tokio::time::timeout(TEST_TIMEOUT, three_members())
        .await
        .expect("test exceeded its time bound");
}

async fn three_members() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("sandbox");
    let sandbox = DetachedSandbox::start(&ws, 1, &["--recovery-members", "3", "--recovery-threshold", "2"], &[]);
    // The sandbox says where the members' keys are.
    for i in 0..3 {
        assert!(
            ws.join(format!("member{i}_enc_privk.pem")).exists(),
            "{}",
            sandbox.output
        );
    }
    assert!(
        sandbox.output.contains("member0..member2") && sandbox.output.contains("enc_privk.pem"),
        "{}",
        sandbox.output
    );
    let conn = sandbox.connect(0, false).await;

    // Three Active members, each a recovery member (with an encryption key).
    let members = conn
        .get(&format!("/gov/service/members?api-version={}", rs::API_VERSION))
        .await
        .unwrap();
    let members = members.json().unwrap();
    let ids: Vec<String> = (0..3)
        .map(|i| rs::member_id(&ws_file(&ws, &format!("member{i}_cert.pem"))).unwrap())
        .collect();
    let listed = members["value"].as_array().unwrap();
    for id in &ids {
        let m = listed
            .iter()
            .find(|m| m["memberId"] == id.as_str())
            .unwrap_or_else(|| panic!("{id} in {members}"));
        assert_eq!(m["status"], "Active", "{m}");
        assert!(m["publicEncryptionKey"].is_string(), "{m}");
    }

    // Each member's share decrypts with their key and is the one the record in the ledger holds for them.
    let record = latest_shares_record(&sandbox.node_dir(0).join("ledger"));
    assert_eq!(record.encrypted_shares.len(), 3);
    let mut decrypted = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let encrypted = rs::fetch_encrypted_share(&conn, id).await.unwrap();
        assert_eq!(
            Some(&encrypted),
            record.encrypted_shares.get(id),
            "member{i}'s share is not the issued one"
        );
        let share = rs::decrypt_share(&ws_file(&ws, &format!("member{i}_enc_privk.pem")), id, &encrypted).unwrap();
        shares::check_share(&record, id, &share).unwrap_or_else(|e| panic!("member{i}: {e}"));
        decrypted.push(share);
    }
    // Two of them restore the node's ledger secret, any two, and one alone does not: the threshold is 2.
    let alone = shares::restore(&record, &decrypted[..1], 1);
    assert!(alone.is_err(), "one share restored the secret");
    let sealed = std::fs::read(sandbox.node_dir(0).join("ledger_secret")).unwrap();
    for pair in [[0, 1], [1, 2], [0, 2]] {
        let two: Vec<Vec<u8>> = pair.iter().map(|&i| decrypted[i].clone()).collect();
        let secret = shares::restore(&record, &two, 2).unwrap();
        let hex = hex::encode(secret.raw());
        assert!(
            sealed.windows(hex.len()).any(|w| w == hex.as_bytes()),
            "restored a secret the node does not hold"
        );
    }
    // Another member's key does not open member0's share.
    let wrong = rs::decrypt_share(
        &ws_file(&ws, "member1_enc_privk.pem"),
        &ids[0],
        record.encrypted_shares.get(&ids[0]).unwrap(),
    );
    assert!(matches!(wrong, Err(RecoveryShareError::WrongKey { .. })), "{wrong:?}");

    cli_checks(&ws, &conn, &ids, &decrypted).await;
}

/// `consort gov recovery-share` against the open sandbox.
async fn cli_checks(ws: &Path, conn: &consort_node::net::client::Connection, ids: &[String], decrypted: &[Vec<u8>]) {
    // --check-only: fetch and decrypt, submit nothing.
    let (ok, out) = cli_recovery_share(ws, "member2", &["--check-only"]);
    assert!(ok, "{out}");
    assert!(out.contains(&ids[2]) && out.contains("decrypts"), "{out}");

    // A key that is not the member's: refused before anything is submitted, saying so.
    let other = ws.join("member1_enc_privk.pem");
    let (ok, out) = cli_recovery_share(ws, "member2", &["--member-enc-privk", other.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(out.contains("does not decrypt the recovery share"), "{out}");
    // The member's signing key given as the encryption key.
    let signing = ws.join("member2_privk.pem");
    let (ok, out) = cli_recovery_share(
        ws,
        "member2",
        &["--member-enc-privk", signing.to_str().unwrap(), "--check-only"],
    );
    assert!(!ok && out.contains("not an RSA private key"), "{out}");

    // Somebody who is not a member has no share: the node's 404 and its message are reported.
    keygen(ws, "stranger");
    let stranger_id = rs::member_id(&ws_file(ws, "stranger_cert.pem")).unwrap();
    let (ok, out) = cli_recovery_share(ws, "stranger", &["--member-enc-privk", other.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("no recovery share for member") && out.contains(&stranger_id),
        "{out}"
    );
    assert!(out.contains("HTTP 404"), "{out}");
    match rs::fetch_encrypted_share(conn, &stranger_id).await {
        Err(RecoveryShareError::NoShare { refusal, .. }) => {
            assert!(
                out.contains(&refusal.message),
                "{out} lacks the node's message {}",
                refusal.message
            )
        }
        other => panic!("{other:?}"),
    }

    // Submitting to a service that is Open (not recovering) is refused by the node: the CLI fails with the node's
    // status and message, whatever they are.
    let member2 = consort_crypto::SigningKey::from_pem(&ws_file(ws, "member2_privk.pem")).unwrap();
    let signed = rs::sign_share(&member2, &ids[2], &decrypted[2], now_seconds());
    let refusal = match rs::submit_share(conn, &ids[2], signed).await {
        Err(RecoveryShareError::SubmitRefused { refusal, .. }) => refusal,
        other => panic!("an open service took a recovery share: {other:?}"),
    };
    assert!((400..500).contains(&refusal.status), "{refusal}");
    let (ok, out) = cli_recovery_share(ws, "member2", &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!("HTTP {}", refusal.status)),
        "{out} lacks the status of {refusal}"
    );
    assert!(
        out.contains(&refusal.message),
        "{out} lacks the node's message {}",
        refusal.message
    );
    assert!(out.contains("refused the recovery share"), "{out}");
}

fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn the_sandbox_refuses_recovery_sizes_it_does_not_make() {
    let tmp = tempfile::tempdir().unwrap();
    for (members, threshold) in [("2", "3"), ("0", "1"), ("3", "0"), ("17", "2")] {
        let ws = tmp.path().join(format!("ws-{members}-{threshold}"));
        let (ok, out) = run_consort(&[
            "sandbox",
            "--nodes",
            "1",
            "--workspace",
            ws.to_str().unwrap(),
            "--recovery-members",
            members,
            "--recovery-threshold",
            threshold,
        ]);
        assert!(!ok, "{members}/{threshold}: {out}");
        assert!(
            out.contains(&format!(
                "--recovery-members {members} --recovery-threshold {threshold}"
            )) && out.contains("1 <= threshold <= members <= 16"),
            "{out}"
        );
        // Refused before anything was made.
        assert!(!ws.exists(), "{members}/{threshold} made {}", ws.display());
    }
}
