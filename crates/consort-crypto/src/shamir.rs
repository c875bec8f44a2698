//! Shamir k-of-n secret sharing of a 32-byte secret over GF(256) (vsss-rs), for the recovery shares that let a
//! consortium restore the ledger secret without any single member being able to.
//!
//! Each byte of the secret is the constant term of its own random polynomial of degree k-1 over GF(256); share i
//! holds the values of all 32 polynomials at x = i. Any k shares give the polynomials back (Lagrange
//! interpolation at 0); fewer give a value that says nothing about the secret. The arithmetic is vsss-rs's
//! (constant-time, no lookup tables); this module fixes the parameters, the byte encoding and the refusals.
//!
//! A [`Share`] is encoded as `identifier (1 byte, 1..=255) ‖ values (32 bytes)`: 33 bytes. The identifier is the
//! x coordinate; share number i (from 1) of a split has identifier i.
//!
//! Randomness is injected (`&mut impl CryptoRngCore`, rand_core 0.6 as in the rest of the workspace) so that
//! tests and simulations are deterministic; it is handed to vsss-rs through [`Rng010`], an adapter to the
//! rand_core 0.10 traits vsss-rs uses.

use rand_core::CryptoRngCore;
use std::convert::Infallible;
use vsss_rs::Gf256;

/// Size of the secret that is shared, in bytes (an AES-256 key).
pub const SECRET_SIZE_BYTES: usize = 32;
/// Size of an encoded [`Share`], in bytes: the identifier and one value per secret byte.
pub const SHARE_SIZE_BYTES: usize = 1 + SECRET_SIZE_BYTES;
/// Most shares one split can make: GF(256) has 255 non-zero x coordinates.
pub const MAX_SHARES: usize = 255;

/// Why a split or a combination was refused. Nothing here panics on any input.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ShamirError {
    /// A threshold of 0 would need no share at all to recover the secret.
    #[error("Shamir split: the threshold must be at least 1")]
    ThresholdZero,
    /// More shares needed than made: the secret could never be recovered.
    #[error("Shamir split: threshold {threshold} is above the number of shares {shares}")]
    ThresholdAboveShares {
        /// Shares needed.
        threshold: usize,
        /// Shares asked for.
        shares: usize,
    },
    /// More shares than GF(256) has x coordinates.
    #[error("Shamir split: {shares} shares asked for, at most {MAX_SHARES}")]
    TooManyShares {
        /// Shares asked for.
        shares: usize,
    },
    /// Nothing to combine.
    #[error("Shamir combine: no shares")]
    NoShares,
    /// Two shares with the same identifier (the same share twice, or a forged one): interpolation needs distinct
    /// x coordinates.
    #[error("Shamir combine: two shares with identifier {identifier}")]
    DuplicateIdentifier {
        /// The identifier seen twice.
        identifier: u8,
    },
    /// Encoded share bytes of the wrong length.
    #[error("malformed Shamir share: {found} bytes, expected {SHARE_SIZE_BYTES}")]
    ShareLength {
        /// Bytes found.
        found: usize,
    },
    /// An encoded share with identifier 0, which would be the secret itself (x = 0), never a share.
    #[error("malformed Shamir share: identifier 0")]
    IdentifierZero,
    /// vsss-rs refused the split or the combination.
    #[error("Shamir sharing failed: {0}")]
    Sharing(#[source] SharingFault),
}

/// vsss-rs's error, which does not implement [`std::error::Error`] itself, kept as a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharingFault(pub vsss_rs::Error);

impl std::fmt::Display for SharingFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharingFault {}

impl From<vsss_rs::Error> for ShamirError {
    fn from(e: vsss_rs::Error) -> Self {
        ShamirError::Sharing(SharingFault(e))
    }
}

/// One share: an x coordinate (the identifier, never 0) and the 32 polynomial values at it. Its `Debug` does not
/// show the values (they are secret material).
#[derive(Clone, PartialEq, Eq)]
pub struct Share {
    identifier: u8,
    values: [u8; SECRET_SIZE_BYTES],
}

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Share({}, ..)", self.identifier)
    }
}

impl Share {
    /// The share's identifier (x coordinate), 1..=255.
    pub fn identifier(&self) -> u8 {
        self.identifier
    }

    /// The polynomial values at the identifier, one per secret byte.
    pub fn values(&self) -> &[u8; SECRET_SIZE_BYTES] {
        &self.values
    }

    /// The encoding `identifier ‖ values` ([`SHARE_SIZE_BYTES`] bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SHARE_SIZE_BYTES);
        out.push(self.identifier);
        out.extend_from_slice(&self.values);
        out
    }

    /// Parses the encoding of [`Share::to_bytes`]; refuses another length or identifier 0.
    pub fn from_bytes(bytes: &[u8]) -> Result<Share, ShamirError> {
        let (&identifier, rest) = bytes.split_first().ok_or(ShamirError::ShareLength { found: 0 })?;
        let values: [u8; SECRET_SIZE_BYTES] = rest
            .try_into()
            .map_err(|_| ShamirError::ShareLength { found: bytes.len() })?;
        if identifier == 0 {
            return Err(ShamirError::IdentifierZero);
        }
        Ok(Share { identifier, values })
    }
}

/// Splits `secret` into `shares` shares, any `threshold` of which recombine to it, with identifiers 1..=shares.
///
/// Refuses `threshold` 0, `threshold > shares` and `shares > 255`. A threshold of 1 gives every share the secret
/// itself as its values (a polynomial of degree 0), which is what "any one share recovers it" means; vsss-rs
/// starts at 2, so that case is handled here.
pub fn split(
    secret: &[u8; SECRET_SIZE_BYTES],
    shares: usize,
    threshold: usize,
    rng: &mut impl CryptoRngCore,
) -> Result<Vec<Share>, ShamirError> {
    if threshold == 0 {
        return Err(ShamirError::ThresholdZero);
    }
    let count = u8::try_from(shares).map_err(|_| ShamirError::TooManyShares { shares })?;
    if threshold > shares {
        return Err(ShamirError::ThresholdAboveShares { threshold, shares });
    }
    if threshold == 1 {
        return Ok((1..=count)
            .map(|identifier| Share {
                identifier,
                values: *secret,
            })
            .collect());
    }
    let encoded = Gf256::split_bytes(threshold, shares, secret, Rng010(rng))?;
    encoded.iter().map(|bytes| Share::from_bytes(bytes)).collect()
}

/// Recombines shares into the secret by interpolation at 0. Refuses no shares and duplicate identifiers.
///
/// Given at least the threshold of shares of one split, the result is the secret; given fewer, or shares with a
/// changed byte, it is another 32-byte value. Shamir's scheme cannot tell the two apart: a caller that must know
/// checks the result (recovery does, by unwrapping an authenticated ciphertext with it).
pub fn combine(shares: &[Share]) -> Result<[u8; SECRET_SIZE_BYTES], ShamirError> {
    let first = shares.first().ok_or(ShamirError::NoShares)?;
    let mut seen = [false; 256];
    for share in shares {
        let slot = &mut seen[usize::from(share.identifier)];
        if *slot {
            return Err(ShamirError::DuplicateIdentifier {
                identifier: share.identifier,
            });
        }
        *slot = true;
    }
    if shares.len() == 1 {
        // Interpolating one point gives the constant polynomial through it (vsss-rs asks for two points).
        return Ok(first.values);
    }
    let encoded: Vec<Vec<u8>> = shares.iter().map(Share::to_bytes).collect();
    let secret = Gf256::combine_bytes(&encoded)?;
    secret.as_slice().try_into().map_err(|_| ShamirError::ShareLength {
        found: secret.len() + 1,
    })
}

/// A rand_core 0.6 RNG seen through rand_core 0.10's traits, which vsss-rs 6 takes.
struct Rng010<'a, R: CryptoRngCore>(&'a mut R);

impl<R: CryptoRngCore> rand_core_010::TryRng for Rng010<'_, R> {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.0.next_u32())
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.0.next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.0.fill_bytes(dst);
        Ok(())
    }
}

impl<R: CryptoRngCore> rand_core_010::TryCryptoRng for Rng010<'_, R> {}
