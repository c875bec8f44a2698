//! Recovery shares end to end without IO: issue for three members with threshold 2, each member decrypts their
//! share with their RSA key, two shares restore the ledger secret and one never does; wrong, corrupted and other
//! members' shares are refused on their own; the record's JSON has CCF's field names and round-trips.

use consort_crypto::shamir::SHARE_SIZE_BYTES;
use consort_crypto::{oaep, rsa_keys};
use consort_ledger::secrets::shares::{
    self, RecoveryMember, RecoverySharesInfo, ShareRefusal, SharesError, RECOVERY_SHARES_TABLE,
    WRAPPED_SECRET_SIZE_BYTES,
};
use consort_ledger::LedgerSecret;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::sync::OnceLock;

/// A member: (id, private key PEM, public key PEM).
type Member = (String, String, String);

/// Three members with 2048-bit RSA keys (generated once: key generation is the slow part of these tests).
fn members() -> &'static [Member] {
    static MEMBERS: OnceLock<Vec<Member>> = OnceLock::new();
    MEMBERS.get_or_init(|| {
        (0..3)
            .map(|i| {
                let (private, public) = rsa_keys::generate_pem(rsa_keys::MEMBER_ENCRYPTION_KEY_BITS).unwrap();
                (format!("{i:064x}"), private, public)
            })
            .collect()
    })
}

fn recovery_members(members: &[Member]) -> Vec<RecoveryMember<'_>> {
    members
        .iter()
        .map(|(id, _, public)| RecoveryMember {
            member_id: id,
            encryption_key_pem: public,
        })
        .collect()
}

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// Issues 2-of-3 shares of `secret` and returns the record with each member's decrypted share.
fn issue_two_of_three(secret: &LedgerSecret) -> (RecoverySharesInfo, Vec<Vec<u8>>) {
    let info = shares::issue(secret, &recovery_members(members()), 2, Some(7), &mut rng(1)).unwrap();
    let decrypted = members()
        .iter()
        .map(|(id, private, _)| oaep::decrypt(private, &info.encrypted_shares[id]).unwrap())
        .collect();
    (info, decrypted)
}

#[test]
fn any_two_of_three_decrypted_shares_restore_the_secret() {
    let secret = LedgerSecret::from_bytes([42u8; 32]);
    let (info, decrypted) = issue_two_of_three(&secret);
    assert_eq!(info.wrapped_latest_ledger_secret.len(), WRAPPED_SECRET_SIZE_BYTES);
    for (i, (id, _, _)) in members().iter().enumerate() {
        assert_eq!(decrypted[i].len(), SHARE_SIZE_BYTES);
        assert_eq!(shares::check_share(&info, id, &decrypted[i]), Ok(()));
    }
    for pair in [[0, 1], [1, 2], [2, 0]] {
        let chosen: Vec<Vec<u8>> = pair.iter().map(|&i| decrypted[i].clone()).collect();
        let restored = shares::restore(&info, &chosen, 2).unwrap();
        assert_eq!(restored.raw(), secret.raw(), "members {pair:?}");
    }
    let restored = shares::restore(&info, &decrypted, 2).unwrap();
    assert_eq!(restored.raw(), secret.raw(), "all three shares");
}

#[test]
fn one_share_is_never_enough() {
    let secret = LedgerSecret::from_bytes([3u8; 32]);
    let (info, decrypted) = issue_two_of_three(&secret);
    for share in &decrypted {
        let err = shares::restore(&info, std::slice::from_ref(share), 2).unwrap_err();
        assert_eq!(
            err,
            SharesError::NotEnoughShares {
                submitted: 1,
                threshold: 2
            }
        );
        assert_eq!(err.to_string(), "recovery: 1 shares submitted, 2 needed");
        // Even a caller that passes a lower threshold gets an error, not a wrong secret.
        let err = shares::restore(&info, std::slice::from_ref(share), 1).unwrap_err();
        assert!(matches!(err, SharesError::Unwrap(_)), "{err:?}");
    }
    assert_eq!(
        shares::restore(&info, &[], 2).unwrap_err(),
        (SharesError::NotEnoughShares {
            submitted: 0,
            threshold: 2
        })
    );
}

#[test]
fn a_corrupted_share_is_refused_by_check_share_and_restore() {
    let (info, decrypted) = issue_two_of_three(&LedgerSecret::from_bytes([5u8; 32]));
    let id = &members()[0].0;
    for position in [0, 1, 16, SHARE_SIZE_BYTES - 1] {
        let mut corrupted = decrypted[0].clone();
        corrupted[position] ^= 0x40;
        assert_eq!(
            shares::check_share(&info, id, &corrupted),
            Err(ShareRefusal::DigestMismatch { member_id: id.clone() }),
            "byte {position}"
        );
        let err = shares::restore(&info, &[corrupted, decrypted[1].clone()], 2).unwrap_err();
        assert_eq!(err, SharesError::UnknownShare { index: 0 }, "byte {position}");
    }
    let truncated = &decrypted[0][..SHARE_SIZE_BYTES - 1];
    assert!(matches!(
        shares::check_share(&info, id, truncated),
        Err(ShareRefusal::Malformed { .. })
    ));
    assert!(matches!(
        shares::restore(&info, &[truncated.to_vec(), decrypted[1].clone()], 2),
        Err(SharesError::MalformedShare { index: 0, .. })
    ));
}

#[test]
fn a_share_of_another_member_or_of_a_non_member_is_refused() {
    let (info, decrypted) = issue_two_of_three(&LedgerSecret::from_bytes([6u8; 32]));
    let (id0, id1) = (&members()[0].0, &members()[1].0);
    assert_eq!(
        shares::check_share(&info, id0, &decrypted[1]),
        Err(ShareRefusal::DigestMismatch { member_id: id0.clone() })
    );
    assert_eq!(
        shares::check_share(&info, id1, &decrypted[0]),
        Err(ShareRefusal::DigestMismatch { member_id: id1.clone() })
    );
    let outsider = "f".repeat(64);
    assert_eq!(
        shares::check_share(&info, &outsider, &decrypted[0]),
        Err(ShareRefusal::NotRecoveryMember {
            member_id: outsider.clone()
        })
    );
    // A share from an earlier issue (shares are re-issued on every change) is not one of this record's.
    let (older, older_decrypted) = {
        let info = shares::issue(
            &LedgerSecret::from_bytes([6u8; 32]),
            &recovery_members(members()),
            2,
            None,
            &mut rng(99),
        )
        .unwrap();
        let share = oaep::decrypt(&members()[0].1, &info.encrypted_shares[id0]).unwrap();
        (info, share)
    };
    assert_ne!(older, info);
    assert_eq!(
        shares::check_share(&info, id0, &older_decrypted),
        Err(ShareRefusal::DigestMismatch { member_id: id0.clone() })
    );
}

#[test]
fn an_altered_record_gives_an_error_never_a_wrong_secret() {
    let secret = LedgerSecret::from_bytes([8u8; 32]);
    let (info, decrypted) = issue_two_of_three(&secret);
    for position in [0, 15, 16, 27, 28, WRAPPED_SECRET_SIZE_BYTES - 1] {
        let mut altered = info.clone();
        altered.wrapped_latest_ledger_secret[position] ^= 1;
        let err = shares::restore(&altered, &decrypted[..2], 2).unwrap_err();
        assert!(matches!(err, SharesError::Unwrap(_)), "byte {position}: {err:?}");
    }
    let mut short = info.clone();
    short.wrapped_latest_ledger_secret.pop();
    assert_eq!(
        shares::restore(&short, &decrypted[..2], 2).unwrap_err(),
        (SharesError::WrappedSecretLength {
            found: WRAPPED_SECRET_SIZE_BYTES - 1
        })
    );
    let flood = vec![decrypted[0].clone(); 256];
    assert_eq!(
        shares::restore(&info, &flood, 2).unwrap_err(),
        SharesError::TooManyShares { submitted: 256 }
    );
    // The same share twice does not make two.
    assert!(matches!(
        shares::restore(&info, &[decrypted[0].clone(), decrypted[0].clone()], 2),
        Err(SharesError::Sharing(_))
    ));
}

#[test]
fn issue_refuses_impossible_parameters() {
    let secret = LedgerSecret::from_bytes([1u8; 32]);
    let all = recovery_members(members());
    let issue =
        |members: &[RecoveryMember<'_>], threshold| shares::issue(&secret, members, threshold, None, &mut rng(2));
    assert_eq!(issue(&[], 1), Err(SharesError::NoRecoveryMembers));
    assert_eq!(issue(&all, 0), Err(SharesError::ThresholdZero));
    assert_eq!(
        issue(&all, 4),
        Err(SharesError::ThresholdAboveMembers {
            threshold: 4,
            members: 3
        })
    );
    let twice = [all[0], all[1], all[0]];
    assert_eq!(
        issue(&twice, 2),
        Err(SharesError::DuplicateMember {
            member_id: members()[0].0.clone()
        })
    );
    let many: Vec<RecoveryMember<'_>> = vec![all[0]; 256];
    assert_eq!(issue(&many, 2), Err(SharesError::TooManyMembers { members: 256 }));
    let bad_key = [
        all[0],
        RecoveryMember {
            member_id: "bad",
            encryption_key_pem: "not a key",
        },
    ];
    let err = issue(&bad_key, 1).unwrap_err();
    assert!(
        matches!(&err, SharesError::EncryptShare { member_id, .. } if member_id == "bad"),
        "{err:?}"
    );
    assert!(std::error::Error::source(&err).is_some());
}

#[test]
fn one_member_with_threshold_one_restores_alone() {
    let secret = LedgerSecret::from_bytes([9u8; 32]);
    let info = shares::issue(&secret, &recovery_members(&members()[..1]), 1, None, &mut rng(3)).unwrap();
    let (id, private, _) = &members()[0];
    let share = oaep::decrypt(private, &info.encrypted_shares[id]).unwrap();
    assert_eq!(shares::check_share(&info, id, &share), Ok(()));
    assert_eq!(shares::restore(&info, &[share], 1).unwrap().raw(), secret.raw());
}

#[test]
fn issuing_is_deterministic_for_a_seed_and_fresh_for_another() {
    let secret = LedgerSecret::from_bytes([4u8; 32]);
    let all = recovery_members(members());
    let a = shares::issue(&secret, &all, 2, None, &mut rng(10)).unwrap();
    let b = shares::issue(&secret, &all, 2, None, &mut rng(10)).unwrap();
    let c = shares::issue(&secret, &all, 2, None, &mut rng(11)).unwrap();
    assert_eq!(a, b);
    assert_ne!(a.wrapped_latest_ledger_secret, c.wrapped_latest_ledger_secret);
    assert_ne!(a.share_digests, c.share_digests);
}

#[test]
fn json_has_ccf_field_names_and_round_trips() {
    use base64::Engine;
    let (info, _) = issue_two_of_three(&LedgerSecret::from_bytes([2u8; 32]));
    assert_eq!(RECOVERY_SHARES_TABLE, "public:ccf.internal.recovery_shares");
    let json = serde_json::to_value(&info).unwrap();
    let object = json.as_object().unwrap();
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "encrypted_shares",
            "previous_secret_stored_version",
            "share_digests",
            "wrapped_latest_ledger_secret"
        ]
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    assert_eq!(
        b64.decode(json["wrapped_latest_ledger_secret"].as_str().unwrap())
            .unwrap(),
        info.wrapped_latest_ledger_secret
    );
    for (id, _, _) in members() {
        let encrypted = json["encrypted_shares"][id].as_str().unwrap();
        assert_eq!(b64.decode(encrypted).unwrap(), info.encrypted_shares[id]);
        let digest = json["share_digests"][id].as_str().unwrap();
        assert_eq!(digest.len(), 64);
        assert!(digest.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }
    assert_eq!(json["previous_secret_stored_version"], 7);
    let back: RecoverySharesInfo = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back, info);

    // The optional field is omitted when absent, and a record without it (or with null) reads back.
    let mut without = info.clone();
    without.previous_secret_stored_version = None;
    let json = serde_json::to_value(&without).unwrap();
    assert!(json.get("previous_secret_stored_version").is_none());
    let mut with_null = json.clone();
    with_null["previous_secret_stored_version"] = serde_json::Value::Null;
    assert_eq!(
        serde_json::from_value::<RecoverySharesInfo>(with_null).unwrap(),
        without
    );
}

#[test]
fn a_record_in_ccf_shape_reads_and_refuses_every_share_for_want_of_digests() {
    let (info, decrypted) = issue_two_of_three(&LedgerSecret::from_bytes([2u8; 32]));
    let mut json = serde_json::to_value(&info).unwrap();
    json.as_object_mut().unwrap().remove("share_digests");
    let ccf_shaped: RecoverySharesInfo = serde_json::from_value(json).unwrap();
    assert!(ccf_shaped.share_digests.is_empty());
    let id = &members()[0].0;
    assert_eq!(
        shares::check_share(&ccf_shaped, id, &decrypted[0]),
        Err(ShareRefusal::NoDigest { member_id: id.clone() })
    );
}

#[test]
fn malformed_json_is_an_error() {
    let bad_base64 = r#"{"wrapped_latest_ledger_secret": "@@", "encrypted_shares": {}}"#;
    assert!(serde_json::from_str::<RecoverySharesInfo>(bad_base64).is_err());
    let bad_share = r#"{"wrapped_latest_ledger_secret": "", "encrypted_shares": {"m": "%%"}}"#;
    let err = serde_json::from_str::<RecoverySharesInfo>(bad_share).unwrap_err();
    assert!(err.to_string().contains("encrypted share of m"), "{err}");
    let missing = r#"{"encrypted_shares": {}}"#;
    assert!(serde_json::from_str::<RecoverySharesInfo>(missing).is_err());
}
