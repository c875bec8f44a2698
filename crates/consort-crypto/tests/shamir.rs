//! Shamir k-of-n sharing: the refusals of `split` and `combine`, the share encoding, and properties over random
//! secrets, thresholds and subsets (any k shares recombine to the secret, k-1 do not, a changed byte changes the
//! result).

use consort_crypto::shamir::{self, Share, MAX_SHARES, SHARE_SIZE_BYTES};
use consort_crypto::ShamirError;
use proptest::prelude::*;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

const SECRET: [u8; 32] = *b"the wrapping key of the ledger!!";

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

#[test]
fn split_refuses_impossible_parameters() {
    let mut r = rng(1);
    assert_eq!(shamir::split(&SECRET, 3, 0, &mut r), Err(ShamirError::ThresholdZero));
    assert_eq!(
        shamir::split(&SECRET, 3, 4, &mut r),
        Err(ShamirError::ThresholdAboveShares {
            threshold: 4,
            shares: 3
        })
    );
    assert_eq!(
        shamir::split(&SECRET, 0, 1, &mut r),
        Err(ShamirError::ThresholdAboveShares {
            threshold: 1,
            shares: 0
        })
    );
    assert_eq!(
        shamir::split(&SECRET, 256, 2, &mut r),
        Err(ShamirError::TooManyShares { shares: 256 })
    );
    assert_eq!(shamir::split(&SECRET, MAX_SHARES, 2, &mut r).unwrap().len(), 255);
}

#[test]
fn shares_are_numbered_from_one_and_encode_as_identifier_then_values() {
    let shares = shamir::split(&SECRET, 5, 3, &mut rng(2)).unwrap();
    let identifiers: Vec<u8> = shares.iter().map(Share::identifier).collect();
    assert_eq!(identifiers, [1, 2, 3, 4, 5]);
    for share in &shares {
        let bytes = share.to_bytes();
        assert_eq!(bytes.len(), SHARE_SIZE_BYTES);
        assert_eq!(bytes[0], share.identifier());
        assert_eq!(&bytes[1..], share.values());
        assert_eq!(&Share::from_bytes(&bytes).unwrap(), share);
        assert_ne!(share.values(), &SECRET, "a share of a 3-of-5 split is not the secret");
    }
    assert_eq!(format!("{:?}", shares[0]), "Share(1, ..)", "Debug hides the values");
}

#[test]
fn the_same_seed_gives_the_same_shares() {
    let a = shamir::split(&SECRET, 4, 2, &mut rng(3)).unwrap();
    let b = shamir::split(&SECRET, 4, 2, &mut rng(3)).unwrap();
    let c = shamir::split(&SECRET, 4, 2, &mut rng(4)).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn a_threshold_of_one_gives_the_secret_to_each_share() {
    let shares = shamir::split(&SECRET, 3, 1, &mut rng(5)).unwrap();
    assert_eq!(shares.len(), 3);
    for share in &shares {
        assert_eq!(shamir::combine(std::slice::from_ref(share)).unwrap(), SECRET);
    }
    assert_eq!(shamir::combine(&shares).unwrap(), SECRET);
}

#[test]
fn malformed_share_bytes_are_refused() {
    assert_eq!(Share::from_bytes(&[]), Err(ShamirError::ShareLength { found: 0 }));
    assert_eq!(Share::from_bytes(&[1; 32]), Err(ShamirError::ShareLength { found: 32 }));
    assert_eq!(Share::from_bytes(&[1; 34]), Err(ShamirError::ShareLength { found: 34 }));
    assert_eq!(Share::from_bytes(&[0; 33]), Err(ShamirError::IdentifierZero));
}

#[test]
fn combine_refuses_no_shares_and_duplicates() {
    assert_eq!(shamir::combine(&[]), Err(ShamirError::NoShares));
    let shares = shamir::split(&SECRET, 3, 2, &mut rng(6)).unwrap();
    let twice = [shares[1].clone(), shares[0].clone(), shares[1].clone()];
    assert_eq!(
        shamir::combine(&twice),
        Err(ShamirError::DuplicateIdentifier { identifier: 2 })
    );
    // A forged share that reuses another's identifier with other values is refused the same way.
    let mut forged = shares[0].to_bytes();
    forged[5] ^= 0xff;
    let forged = Share::from_bytes(&forged).unwrap();
    assert_eq!(
        shamir::combine(&[shares[0].clone(), forged]),
        Err(ShamirError::DuplicateIdentifier { identifier: 1 })
    );
}

/// A secret, a share count n, a threshold k <= n and a permutation picking the shares to use.
fn split_case() -> impl Strategy<Value = ([u8; 32], usize, usize, Vec<usize>, u64)> {
    (any::<[u8; 32]>(), 2usize..=12, any::<u64>()).prop_flat_map(|(secret, n, seed)| {
        let order = Just((0..n).collect::<Vec<usize>>()).prop_shuffle();
        (Just(secret), Just(n), 2usize..=n, order, Just(seed))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_k_of_n_shares_recombine_to_the_secret((secret, n, k, order, seed) in split_case(), extra in 0usize..4) {
        let shares = shamir::split(&secret, n, k, &mut rng(seed)).unwrap();
        let used = (k + extra).min(n);
        let chosen: Vec<Share> = order[..used].iter().map(|&i| shares[i].clone()).collect();
        prop_assert_eq!(shamir::combine(&chosen).unwrap(), secret);
    }

    #[test]
    fn fewer_than_k_shares_give_another_value((secret, n, k, order, seed) in split_case()) {
        let shares = shamir::split(&secret, n, k, &mut rng(seed)).unwrap();
        let chosen: Vec<Share> = order[..k - 1].iter().map(|&i| shares[i].clone()).collect();
        prop_assert_ne!(shamir::combine(&chosen).unwrap(), secret);
    }

    #[test]
    fn a_flipped_value_byte_changes_the_result(
        (secret, n, k, order, seed) in split_case(),
        which in any::<prop::sample::Index>(),
        byte in 1usize..SHARE_SIZE_BYTES,
        bit in 0u8..8,
    ) {
        let shares = shamir::split(&secret, n, k, &mut rng(seed)).unwrap();
        let mut chosen: Vec<Share> = order[..k].iter().map(|&i| shares[i].clone()).collect();
        let victim = which.index(k);
        let mut bytes = chosen[victim].to_bytes();
        bytes[byte] ^= 1 << bit;
        chosen[victim] = Share::from_bytes(&bytes).unwrap();
        let combined = shamir::combine(&chosen).unwrap();
        prop_assert_ne!(combined, secret);
        // Only the secret byte at the flipped position changes: the others interpolate untouched values.
        for (i, (c, s)) in combined.iter().zip(secret.iter()).enumerate() {
            prop_assert_eq!(c == s, i != byte - 1, "byte {}", i);
        }
    }

    #[test]
    fn a_changed_identifier_changes_the_result((secret, n, k, order, seed) in split_case()) {
        let shares = shamir::split(&secret, n, k, &mut rng(seed)).unwrap();
        let mut chosen: Vec<Share> = order[..k].iter().map(|&i| shares[i].clone()).collect();
        let unused = (1..=255u8).find(|id| chosen.iter().all(|s| s.identifier() != *id)).unwrap();
        let mut bytes = chosen[0].to_bytes();
        bytes[0] = unused;
        chosen[0] = Share::from_bytes(&bytes).unwrap();
        prop_assert_ne!(shamir::combine(&chosen).unwrap(), secret);
    }
}

proptest! {
    #[test]
    fn share_bytes_of_any_length_parse_only_at_33_with_a_nonzero_identifier(
        bytes in proptest::collection::vec(any::<u8>(), 0..70)
    ) {
        match Share::from_bytes(&bytes) {
            Ok(share) => {
                prop_assert_eq!(bytes.len(), SHARE_SIZE_BYTES);
                prop_assert_ne!(bytes[0], 0);
                prop_assert_eq!(share.to_bytes(), bytes);
            }
            Err(ShamirError::IdentifierZero) => prop_assert!(bytes.len() == SHARE_SIZE_BYTES && bytes[0] == 0),
            Err(ShamirError::ShareLength { found }) => {
                prop_assert_eq!(found, bytes.len());
                prop_assert_ne!(found, SHARE_SIZE_BYTES);
            }
            Err(other) => prop_assert!(false, "unexpected error {:?}", other),
        }
    }
}
