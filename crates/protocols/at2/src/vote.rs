//! The certificate that makes an account's transfers unique: proposals,
//! votes, and the batch a node broadcasts (see the crate docs, "Accounts
//! owned by clients").

use crate::ledger::MAX_BATCH;
use crate::transfer::SignedTransfer;
use byzscale_core::codec;
use byzscale_core::crypto::{Crypto, Digest, Signature};
use byzscale_core::{Addr, NodeId};
use serde::{Deserialize, Serialize};

/// Domain separation of proposal digests.
pub const PROPOSAL_DOMAIN: &str = "byzscale-at2-proposal-v1";
/// Domain separation of vote signatures.
pub const VOTE_DOMAIN: &str = "byzscale-at2-vote-v1";

/// Indices of a proposal as half-open ranges `[start, end)`, ascending,
/// disjoint and non-empty.
pub type Ranges = Vec<(u32, u32)>;

/// The ranges of the `true` entries of `yes`.
pub fn ranges_of(yes: &[bool]) -> Ranges {
    let mut out: Ranges = Vec::new();
    for (i, y) in yes.iter().enumerate() {
        if *y {
            match out.last_mut() {
                Some((_, end)) if *end == i as u32 => *end += 1,
                _ => out.push((i as u32, i as u32 + 1)),
            }
        }
    }
    out
}

/// Whether `r` is well-formed for a proposal of `len` transfers.
pub fn ranges_ok(r: &Ranges, len: usize) -> bool {
    let mut floor = 0u32;
    for (k, (s, e)) in r.iter().enumerate() {
        if s >= e || (*e as usize) > len || (k > 0 && *s <= floor) {
            return false;
        }
        floor = *e;
    }
    true
}

/// The digest of proposal `pid` of `proposer` (BLAKE3, metered).
pub fn proposal_digest(
    crypto: &Crypto,
    proposer: NodeId,
    pid: u64,
    transfers: &[SignedTransfer],
) -> Digest {
    crypto.hash(&codec::to_bytes(&(
        PROPOSAL_DOMAIN,
        proposer,
        pid,
        transfers,
    )))
}

/// The bytes a voter signs: it endorses the transfers at `yes` of the
/// proposal `(proposer, pid)` with digest `digest`.
pub fn vote_bytes(proposer: NodeId, pid: u64, digest: &Digest, yes: &Ranges) -> Vec<u8> {
    codec::to_bytes(&(VOTE_DOMAIN, proposer, pid, digest, yes))
}

/// One member's signed vote on a proposal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    pub voter: NodeId,
    pub yes: Ranges,
    pub sig: Signature,
}

/// What a node broadcasts: one of its proposals with the votes it gathered.
/// The transfers with at least a quorum of `yes` votes are certified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub pid: u64,
    pub transfers: Vec<SignedTransfer>,
    pub votes: Vec<Vote>,
}

impl Batch {
    /// The certified transfers' indices, from `source`'s batch, for a group
    /// of `members` with vote quorum `quorum`; and the voters whose vote
    /// did not verify. A malformed batch (too long, empty, too many or
    /// repeated voters, non-members, bad ranges) is an error. Every correct
    /// process runs exactly this on the same delivered batch, so they all
    /// certify the same transfers.
    pub fn certify(
        &self,
        crypto: &Crypto,
        source: NodeId,
        members: &[NodeId],
        quorum: usize,
    ) -> Result<(Vec<usize>, Vec<NodeId>), String> {
        let n = self.transfers.len();
        if n == 0 || n > MAX_BATCH {
            return Err(format!("{n} transfers in a batch"));
        }
        if self.votes.len() > members.len() {
            return Err(format!("{} votes in a batch", self.votes.len()));
        }
        let mut voters = std::collections::BTreeSet::new();
        for v in &self.votes {
            if !members.contains(&v.voter) || !voters.insert(v.voter) {
                return Err(format!("a vote of {} (not a member, or twice)", v.voter));
            }
            if !ranges_ok(&v.yes, n) {
                return Err(format!("malformed ranges in the vote of {}", v.voter));
            }
        }
        let digest = proposal_digest(crypto, source, self.pid, &self.transfers);
        let bytes: Vec<Vec<u8>> = self
            .votes
            .iter()
            .map(|v| vote_bytes(source, self.pid, &digest, &v.yes))
            .collect();
        let items: Vec<(Addr, &[u8], &Signature)> = self
            .votes
            .iter()
            .zip(&bytes)
            .map(|(v, b)| (Addr::Node(v.voter), b.as_slice(), &v.sig))
            .collect();
        let ok: Vec<bool> = if crypto.verify_batch(&items).is_ok() {
            vec![true; items.len()]
        } else {
            items
                .iter()
                .map(|(a, b, s)| crypto.verify(*a, b, s).is_ok())
                .collect()
        };
        let mut count = vec![0usize; n];
        let mut bad = Vec::new();
        for (v, ok) in self.votes.iter().zip(ok) {
            if !ok {
                bad.push(v.voter);
                continue;
            }
            for (s, e) in &v.yes {
                for c in &mut count[*s as usize..*e as usize] {
                    *c += 1;
                }
            }
        }
        let certified = (0..n).filter(|i| count[*i] >= quorum).collect();
        Ok((certified, bad))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(
            ranges_of(&[true, true, false, true, false, false, true]),
            vec![(0, 2), (3, 4), (6, 7)]
        );
        assert!(ranges_of(&[false, false]).is_empty());
        assert!(ranges_ok(&vec![(0, 2), (3, 4)], 4));
        assert!(ranges_ok(&vec![], 0));
        for bad in [
            vec![(0, 5)],
            vec![(1, 1)],
            vec![(2, 3), (0, 1)],
            vec![(0, 2), (1, 3)],
            vec![(0, 2), (2, 3)],
        ] {
            assert!(!ranges_ok(&bad, 4), "{bad:?}");
        }
    }
}
