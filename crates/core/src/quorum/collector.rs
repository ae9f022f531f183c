//! The matching-value vote collector: votes from distinct voters that carry a
//! value (a reply, a logged batch, a forwarded message, merged results), keyed
//! by its digest and counted in votes of a [`QuorumSystem`].
//!
//! Every protocol that waits for "enough matching copies" uses it: the SMR
//! client (f+1 matching replies, a quorum for unordered reads), log transfer
//! (f+1 matching entries), ByzCast's child streams (f+1 matching copies per
//! index) and result aggregation (f+1 matching results per child).
//!
//! A voter's first vote counts; a later vote for another key is reported as
//! [`Vote::Conflict`] and not counted, so a Byzantine voter can never be in two
//! tallies. Once a value wins, [`Collector::dissenters`] names the voters that
//! backed something else, for the caller's fault log.

use super::{QuorumSystem, Vote};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Votes of distinct voters (by position) for values `V` keyed by `K`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collector<K: Ord, V> {
    /// Each voter's counted key.
    voters: BTreeMap<usize, K>,
    /// Key → (its voters, the value of its first vote).
    values: BTreeMap<K, (BTreeSet<usize>, V)>,
}

impl<K: Ord, V> Default for Collector<K, V> {
    fn default() -> Self {
        Collector {
            voters: BTreeMap::new(),
            values: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone, V> Collector<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Record `voter`'s vote for `key`; `value` is called (and kept) only for
    /// the first vote for `key`. Voters outside `qs` are ignored.
    pub fn add(
        &mut self,
        qs: &QuorumSystem,
        voter: usize,
        key: K,
        value: impl FnOnce() -> V,
    ) -> Vote {
        if voter >= qs.n() {
            return Vote::Duplicate;
        }
        if let Some(k) = self.voters.get(&voter) {
            return if *k == key {
                Vote::Duplicate
            } else {
                Vote::Conflict(self.votes(qs, k))
            };
        }
        self.voters.insert(voter, key.clone());
        let e = self
            .values
            .entry(key)
            .or_insert_with(|| (BTreeSet::new(), value()));
        e.0.insert(voter);
        Vote::Counted(qs.votes(e.0.iter().copied()))
    }

    /// Votes (in weight) for `key`.
    pub fn votes(&self, qs: &QuorumSystem, key: &K) -> u64 {
        self.values
            .get(key)
            .map(|(who, _)| qs.votes(who.iter().copied()))
            .unwrap_or(0)
    }

    /// The key with the most votes, and its value, if it reaches `threshold`
    /// (ties go to the smallest key).
    pub fn winner(&self, qs: &QuorumSystem, threshold: u64) -> Option<(&K, &V)> {
        let mut best: Option<(u64, &K, &V)> = None;
        for (k, (who, v)) in &self.values {
            let n = qs.votes(who.iter().copied());
            if n >= threshold && best.is_none_or(|(b, _, _)| n > b) {
                best = Some((n, k, v));
            }
        }
        best.map(|(_, k, v)| (k, v))
    }

    /// A value backed by a quorum of votes.
    pub fn quorum(&self, qs: &QuorumSystem) -> Option<(&K, &V)> {
        self.winner(qs, qs.quorum())
    }

    /// A value backed by a weak quorum (more votes than any f voters hold).
    pub fn weak(&self, qs: &QuorumSystem) -> Option<(&K, &V)> {
        self.winner(qs, qs.weak())
    }

    /// The most votes any one key holds.
    pub fn best(&self, qs: &QuorumSystem) -> u64 {
        self.values
            .values()
            .map(|(who, _)| qs.votes(who.iter().copied()))
            .max()
            .unwrap_or(0)
    }

    /// Votes (in weight) of everyone who voted, whatever for.
    pub fn participation(&self, qs: &QuorumSystem) -> u64 {
        qs.votes(self.voters.keys().copied())
    }

    /// Whether a quorum can still agree on one key once the voters not heard
    /// from yet have voted.
    pub fn can_reach(&self, qs: &QuorumSystem, threshold: u64) -> bool {
        let missing = qs.total().saturating_sub(self.participation(qs));
        self.best(qs) + missing >= threshold
    }

    /// Voters whose counted vote is not `key`, ascending.
    pub fn dissenters(&self, key: &K) -> Vec<usize> {
        self.voters
            .iter()
            .filter(|(_, k)| *k != key)
            .map(|(v, _)| *v)
            .collect()
    }

    /// Voters of `key`, ascending.
    pub fn voters(&self, key: &K) -> Vec<usize> {
        self.values
            .get(key)
            .map(|(who, _)| who.iter().copied().collect())
            .unwrap_or_default()
    }

    pub fn has_voted(&self, voter: usize) -> bool {
        self.voters.contains_key(&voter)
    }

    /// The value of `key`, if anyone voted for it.
    pub fn value(&self, key: &K) -> Option<&V> {
        self.values.get(key).map(|(_, v)| v)
    }

    /// Number of distinct keys voted for.
    pub fn keys(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.voters.is_empty()
    }

    pub fn clear(&mut self) {
        self.voters.clear();
        self.values.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quorum::FaultModel;

    fn classic(n: usize, f: usize) -> QuorumSystem {
        QuorumSystem::classic(n, f, FaultModel::Bft).unwrap()
    }

    #[test]
    fn first_vote_counts_and_conflicts_are_reported() {
        let qs = classic(4, 1);
        let mut c: Collector<u8, &str> = Collector::new();
        assert_eq!(c.add(&qs, 0, 1, || "a"), Vote::Counted(1));
        assert_eq!(c.add(&qs, 0, 1, || "x"), Vote::Duplicate);
        assert_eq!(c.add(&qs, 0, 2, || "b"), Vote::Conflict(1));
        assert_eq!(c.votes(&qs, &2), 0, "a conflicting vote is not counted");
        assert_eq!(c.add(&qs, 1, 2, || "b"), Vote::Counted(1));
        assert_eq!(c.add(&qs, 2, 1, || "ignored"), Vote::Counted(2));
        assert_eq!(c.value(&1), Some(&"a"), "the first value is kept");
        assert_eq!(c.weak(&qs), Some((&1, &"a")));
        assert_eq!(c.quorum(&qs), None);
        assert_eq!(c.add(&qs, 3, 1, || "a"), Vote::Counted(3));
        assert_eq!(c.quorum(&qs), Some((&1, &"a")));
        assert_eq!(c.dissenters(&1), vec![1]);
        assert_eq!(c.voters(&1), vec![0, 2, 3]);
        assert_eq!(c.add(&qs, 4, 1, || "a"), Vote::Duplicate, "not a member");
    }

    #[test]
    fn counts_in_weights() {
        // WHEAT f=1 Δ=1: weights 2,2,1,1,1 (scaled), quorum 5
        let qs = QuorumSystem::wheat_default(1, 1, FaultModel::Bft).unwrap();
        let mut c: Collector<u8, ()> = Collector::new();
        c.add(&qs, 0, 7, || ());
        c.add(&qs, 1, 7, || ());
        assert_eq!(c.votes(&qs, &7), 4);
        assert_eq!(c.quorum(&qs), None);
        c.add(&qs, 4, 7, || ());
        assert_eq!(c.quorum(&qs).map(|(k, _)| *k), Some(7));
        assert_eq!(c.participation(&qs), 5);
    }

    #[test]
    fn can_reach_tells_when_no_quorum_is_possible() {
        let qs = classic(4, 1);
        let mut c: Collector<u8, ()> = Collector::new();
        c.add(&qs, 0, 1, || ());
        c.add(&qs, 1, 2, || ());
        assert!(
            c.can_reach(&qs, qs.quorum()),
            "two missing votes could join 1"
        );
        c.add(&qs, 2, 3, || ());
        assert!(!c.can_reach(&qs, qs.quorum()));
        assert!(c.can_reach(&qs, qs.weak()));
    }
}
