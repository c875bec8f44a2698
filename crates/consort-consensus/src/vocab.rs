//! The vocabulary of replication, in one place: seqnos, views, Raft ids and node ids as their own types, transaction
//! ids (view and seqno), CCF's transaction status, and the Raft role of a replica.
//!
//! The numbers are newtypes over `u64` so that a seqno cannot be passed where a view or a Raft id is expected;
//! they convert to and from `u64` only where Consort talks to raft-rs (whose protobuf types use `u64`) or to the
//! ledger's on-disk format. Each prints and serialises as the bare number.

use raft::StateRole;
use serde::{Deserialize, Serialize};

macro_rules! number {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// Wraps a number.
            pub const fn new(n: u64) -> Self {
                $name(n)
            }

            /// The number.
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Display::fmt(&self.0, f)
            }
        }

        /// Compares with a bare number (a literal, or a `u64` from raft-rs or the ledger); two different
        /// vocabulary types still do not compare.
        impl PartialEq<u64> for $name {
            fn eq(&self, other: &u64) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<$name> for u64 {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialOrd<u64> for $name {
            fn partial_cmp(&self, other: &u64) -> Option<std::cmp::Ordering> {
                self.0.partial_cmp(other)
            }
        }

        impl PartialOrd<$name> for u64 {
            fn partial_cmp(&self, other: &$name) -> Option<std::cmp::Ordering> {
                self.partial_cmp(&other.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map($name)
            }
        }
    };
}

number!(
    /// A transaction's position in the ledger (a Raft index). Seqno 0 is "before the first transaction".
    Seqno
);
number!(
    /// A view (a Raft term): the period one primary is in charge.
    View
);
number!(
    /// A replica's Raft id, derived from its [`NodeId`] ([`NodeId::raft_id`]). 0 is Raft's "nobody".
    RaftId
);

impl Seqno {
    /// The seqno after this one.
    #[must_use]
    pub const fn next(self) -> Seqno {
        Seqno(self.0 + 1)
    }

    /// How many seqnos `self` is past `earlier` (0 if it is not).
    pub const fn since(self, earlier: Seqno) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// `seqno + n`: the seqno `n` after this one.
impl std::ops::Add<u64> for Seqno {
    type Output = Seqno;
    fn add(self, n: u64) -> Seqno {
        Seqno(self.0 + n)
    }
}

/// `view + n`: the view `n` after this one.
impl std::ops::Add<u64> for View {
    type Output = View;
    fn add(self, n: u64) -> View {
        View(self.0 + n)
    }
}

/// A node id: the hex SHA-256 of the node's public key (64 lowercase or uppercase hex digits). Parsing refuses
/// anything else, so a `NodeId` in hand is well formed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeId(String);

impl NodeId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The node's Raft id: the first 8 bytes of the node id as a big-endian u64, never 0 (Raft's "nobody").
    /// Every node derives every other node's Raft id from its node id alone.
    pub fn raft_id(&self) -> RaftId {
        let bytes = hex::decode(self.0.get(..16).unwrap_or("")).unwrap_or_default();
        let mut be = [0u8; 8];
        for (d, s) in be.iter_mut().zip(bytes.iter()) {
            *d = *s;
        }
        RaftId(u64::from_be_bytes(be).max(1))
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for NodeId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.len() == 64 && s.bytes().all(|c| c.is_ascii_hexdigit()) {
            Ok(NodeId(s.to_string()))
        } else {
            Err(format!("{s:?} is not a node id (64 hex digits)"))
        }
    }
}

impl TryFrom<String> for NodeId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<NodeId> for String {
    fn from(id: NodeId) -> String {
        id.0
    }
}

impl AsRef<str> for NodeId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for NodeId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// A transaction id: view (Raft term) and seqno (Raft index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TxId {
    /// The view (Raft term) the transaction was written in.
    pub view: View,
    /// The transaction's position in the ledger (Raft index).
    pub seqno: Seqno,
}

impl TxId {
    /// The transaction id `view.seqno`.
    pub const fn new(view: View, seqno: Seqno) -> Self {
        TxId { view, seqno }
    }
}

impl std::fmt::Display for TxId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.view, self.seqno)
    }
}

/// Parses CCF's `<view>.<seqno>` form.
impl std::str::FromStr for TxId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (v, n) = s
            .split_once('.')
            .ok_or_else(|| format!("{s:?} is not of the form <view>.<seqno>"))?;
        let view = v.parse().map_err(|_| format!("bad view in {s:?}"))?;
        let seqno = n.parse().map_err(|_| format!("bad seqno in {s:?}"))?;
        Ok(TxId { view, seqno })
    }
}

/// CCF's transaction status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxStatus {
    /// This replica cannot tell yet (it has not seen the seqno, or seen it in another view without a later commit).
    Unknown,
    /// In this replica's log, not yet covered by a committed signature.
    Pending,
    /// Covered by a committed signature transaction: final.
    Committed,
    /// Can never be committed: another transaction holds its seqno for good. Final.
    Invalid,
}

impl TxStatus {
    /// CCF's name of the status (as in `GET /tx` answers).
    pub fn as_str(self) -> &'static str {
        match self {
            TxStatus::Unknown => "Unknown",
            TxStatus::Pending => "Pending",
            TxStatus::Committed => "Committed",
            TxStatus::Invalid => "Invalid",
        }
    }
}

/// Raft role of a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A backup following a primary.
    Follower,
    /// Checking, before a real election, that a majority would vote for it (Raft pre-vote).
    PreCandidate,
    /// Campaigning for votes to become primary.
    Candidate,
    /// The primary.
    Leader,
}

impl From<StateRole> for Role {
    fn from(r: StateRole) -> Self {
        match r {
            StateRole::Follower => Role::Follower,
            StateRole::PreCandidate => Role::PreCandidate,
            StateRole::Candidate => Role::Candidate,
            StateRole::Leader => Role::Leader,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_parse_and_serialise_as_the_bare_number() {
        assert_eq!(Seqno(42).to_string(), "42");
        assert_eq!("7".parse::<View>(), Ok(View(7)));
        assert!("x".parse::<RaftId>().is_err());
        assert_eq!(serde_json::to_string(&Seqno(9)).ok().as_deref(), Some("9"));
        assert_eq!(serde_json::from_str::<View>("3").ok(), Some(View(3)));
        assert_eq!(Seqno(5).next(), Seqno(6));
        assert_eq!(Seqno(5) + 3, Seqno(8));
        assert_eq!(View(2) + 1, View(3));
        assert_eq!(Seqno(9).since(Seqno(4)), 5);
    }

    #[test]
    fn tx_ids_keep_the_view_dot_seqno_text() {
        let tx = TxId::new(View(2), Seqno(15));
        assert_eq!(tx.to_string(), "2.15");
        assert_eq!("2.15".parse::<TxId>(), Ok(tx));
        assert!("2-15".parse::<TxId>().is_err());
        assert!("a.15".parse::<TxId>().is_err());
    }

    #[test]
    fn node_ids_are_64_hex_digits_and_give_the_raft_id() {
        let id: NodeId = format!("0102030405060708{}", "ab".repeat(24)).parse().unwrap();
        assert_eq!(id.raft_id(), RaftId(0x0102_0304_0506_0708));
        let zero: NodeId = "00".repeat(32).parse().unwrap();
        assert_eq!(zero.raft_id(), RaftId(1), "never Raft's nobody");
        let upper: NodeId = format!("ABCDEF0123456789{}", "0".repeat(48)).parse().unwrap();
        assert_eq!(upper.raft_id(), RaftId(0xabcd_ef01_2345_6789));
        assert!("not hex".parse::<NodeId>().is_err());
        assert!("".parse::<NodeId>().is_err());
        assert!("0".repeat(63).parse::<NodeId>().is_err());
        assert!(format!("{}g", "0".repeat(63)).parse::<NodeId>().is_err());
        assert_eq!(
            serde_json::to_string(&zero).ok(),
            Some(format!("\"{}\"", "0".repeat(64)))
        );
        assert!(serde_json::from_str::<NodeId>("\"abc\"").is_err());
    }
}
