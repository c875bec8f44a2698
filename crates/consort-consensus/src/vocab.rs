//! The vocabulary of replication, in one place: transaction ids (view and seqno), CCF's transaction status, and
//! the Raft role of a replica.

use raft::StateRole;

/// A transaction id: view (Raft term) and seqno (Raft index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TxId {
    /// The view (Raft term) the transaction was written in.
    pub view: u64,
    /// The transaction's position in the ledger (Raft index).
    pub seqno: u64,
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
