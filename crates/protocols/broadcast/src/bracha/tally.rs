//! Vote counting for Bracha on top of core's [`VoteCounter`].
//!
//! Core's [`VoteCounter`] tracks voters in a 128-bit set, which is plenty for
//! an SMR group but not for a broadcast among 1000+ processes. [`Tally`] keeps
//! that counter and only shards it: voters are split in blocks of 128 and each
//! block is an ordinary `VoteCounter`; a value's votes are the sum over blocks.
//! With at most 128 members the one block uses the deployment's own
//! [`QuorumSystem`] (so WHEAT weights work); larger groups must use equal
//! weights, and each block counts with a unit-weight system.

use byzscale_core::quorum::{FaultModel, QuorumSystem, Vote, VoteCounter};

/// Voters per block (the width of core's voter set).
pub const BLOCK: usize = 128;

/// How votes of `n` members are counted: one weighted block, or unit-weight
/// blocks of [`BLOCK`] voters.
#[derive(Clone, Debug)]
pub struct TallyLayout {
    blocks: Vec<QuorumSystem>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TallyError {
    #[error("weighted quorums are limited to {BLOCK} members (got {0}); use equal weights")]
    WeightedTooLarge(usize),
}

impl TallyLayout {
    pub fn new(qs: &QuorumSystem) -> Result<Self, TallyError> {
        let n = qs.n();
        if n <= BLOCK {
            return Ok(TallyLayout {
                blocks: vec![qs.clone()],
            });
        }
        if qs.weights().iter().any(|w| *w != 1) {
            return Err(TallyError::WeightedTooLarge(n));
        }
        let blocks = (0..n.div_ceil(BLOCK))
            .map(|b| {
                let size = (n - b * BLOCK).min(BLOCK);
                QuorumSystem::classic(size, 0, FaultModel::Cft)
                    .expect("a non-empty block is a valid system")
            })
            .collect();
        Ok(TallyLayout { blocks })
    }
}

/// Votes of distinct members (by position) for values of type `K`.
#[derive(Clone, Debug)]
pub struct Tally<K: Ord + Clone> {
    blocks: Vec<VoteCounter<K>>,
}

impl<K: Ord + Clone> Tally<K> {
    pub fn new(layout: &TallyLayout) -> Self {
        Tally {
            blocks: layout.blocks.iter().map(|_| VoteCounter::new()).collect(),
        }
    }

    /// Record member `pos`'s vote for `value`. Returns what core's counter saw,
    /// with the value's total votes across blocks.
    pub fn add(&mut self, layout: &TallyLayout, pos: usize, value: K) -> Vote {
        let (b, i) = (pos / BLOCK, pos % BLOCK);
        let (Some(counter), Some(qs)) = (self.blocks.get_mut(b), layout.blocks.get(b)) else {
            return Vote::Duplicate;
        };
        match counter.add(qs, i, value.clone()) {
            Vote::Duplicate => Vote::Duplicate,
            Vote::Counted(_) => Vote::Counted(self.votes(&value)),
            Vote::Conflict(_) => Vote::Conflict(self.votes(&value)),
        }
    }

    /// Member `pos`'s earlier vote, if any: `Some(true)` if it was for
    /// `value`.
    pub fn earlier(&self, pos: usize, value: &K) -> Option<bool> {
        let c = self.blocks.get(pos / BLOCK)?;
        let i = pos % BLOCK;
        c.has_voted(i).then(|| c.voted_for(i, value))
    }

    pub fn votes(&self, value: &K) -> u64 {
        self.blocks.iter().map(|c| c.votes(value)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_groups_use_the_weighted_system() {
        let qs = QuorumSystem::wheat_default(1, 1, FaultModel::Bft).unwrap();
        let l = TallyLayout::new(&qs).unwrap();
        let mut t = Tally::new(&l);
        assert_eq!(t.add(&l, 0, 'a'), Vote::Counted(2));
        assert_eq!(t.add(&l, 0, 'a'), Vote::Duplicate);
        assert_eq!(t.add(&l, 0, 'b'), Vote::Conflict(2));
        assert_eq!(t.add(&l, 4, 'a'), Vote::Counted(3));
    }

    #[test]
    fn large_groups_shard_into_blocks() {
        let qs = QuorumSystem::classic(1000, 333, FaultModel::Bft).unwrap();
        let l = TallyLayout::new(&qs).unwrap();
        let mut t = Tally::new(&l);
        for p in 0..1000 {
            t.add(&l, p, 1u8);
        }
        assert_eq!(t.votes(&1), 1000);
        assert_eq!(t.add(&l, 999, 1), Vote::Duplicate);
        assert_eq!(t.add(&l, 999, 2), Vote::Conflict(1));
        assert_eq!(
            t.add(&l, 1000, 2),
            Vote::Duplicate,
            "out of range is ignored"
        );
        assert!(t.votes(&1) >= qs.quorum());
    }

    #[test]
    fn large_weighted_groups_are_refused() {
        let qs = QuorumSystem::wheat_default(50, 10, FaultModel::Bft).unwrap();
        assert!(TallyLayout::new(&qs).is_err());
    }
}
