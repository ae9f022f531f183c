//! Quorum systems counted in votes, the one quorum abstraction of byzscale.
//!
//! Classic PBFT/BFT-SMaRt quorums are the case where every replica has one vote.
//! WHEAT (seed 004; digest §3.3) adds Δ spare replicas and gives `u` of them the
//! larger weight V_max = 1 + Δ/f:
//!
//! | | BFT | CFT |
//! |---|---|---|
//! | n | 3f+1+Δ | 2f+1+Δ |
//! | u (V_max holders) | 2f | f |
//! | quorum Q_v | 2(f+Δ)+1 | f+Δ+1 |
//! | total votes | 3f+1+3Δ | 2f+1+2Δ |
//!
//! To keep integers every weight is scaled by f (V_min = f, V_max = f+Δ), and so is
//! Q_v. With Δ = 0 this is exactly the classic system. Two thresholds matter:
//! - [`QuorumSystem::quorum`]: any two quorums intersect in a correct replica, and
//!   the correct replicas alone always hold a quorum;
//! - [`QuorumSystem::weak`]: more votes than any f replicas hold, so a set of voters
//!   that reaches it contains at least one correct replica (the "f+1" of PBFT,
//!   counted in votes). In CFT mode replicas do not lie and one vote suffices.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

mod collector;
pub use collector::Collector;

/// Byzantine or crash fault tolerance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FaultModel {
    #[default]
    Bft,
    Cft,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuorumError {
    #[error("{mode:?} with f={f} needs at least {need} replicas, got {n}")]
    TooFewReplicas {
        mode: FaultModel,
        f: usize,
        n: usize,
        need: usize,
    },
    #[error("WHEAT with f={f}, Δ={delta} needs exactly {need} V_max holders, got {got}")]
    VmaxHolders {
        f: usize,
        delta: usize,
        need: usize,
        got: usize,
    },
    #[error("replica index {0} out of range")]
    Index(usize),
    #[error("f must be at least 1 for weighted quorums")]
    ZeroF,
}

/// Weights per replica position and the thresholds derived from them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumSystem {
    pub mode: FaultModel,
    pub f: usize,
    pub delta: usize,
    weights: Vec<u64>,
    total: u64,
    quorum: u64,
    weak: u64,
}

impl QuorumSystem {
    /// Equal weights: n ≥ 3f+1 (BFT) or n ≥ 2f+1 (CFT). The Δ = n − (3f+1) spare
    /// replicas only enlarge the quorum (ceil((n+f+1)/2) resp. a majority).
    pub fn classic(n: usize, f: usize, mode: FaultModel) -> Result<Self, QuorumError> {
        let need = match mode {
            FaultModel::Bft => 3 * f + 1,
            FaultModel::Cft => 2 * f + 1,
        };
        if n < need || n == 0 {
            return Err(QuorumError::TooFewReplicas {
                mode,
                f,
                n,
                need: need.max(1),
            });
        }
        let total = n as u64;
        let quorum = match mode {
            FaultModel::Bft => (n + f + 1).div_ceil(2) as u64,
            FaultModel::Cft => (n / 2 + 1) as u64,
        };
        let weak = match mode {
            FaultModel::Bft => f as u64 + 1,
            FaultModel::Cft => 1,
        };
        Ok(QuorumSystem {
            mode,
            f,
            delta: n - need,
            weights: vec![1; n],
            total,
            quorum,
            weak,
        })
    }

    /// WHEAT weights: `vmax` lists the replica positions holding V_max (2f of them in
    /// BFT, f in CFT); n = 3f+1+Δ (BFT) or 2f+1+Δ (CFT).
    pub fn wheat(
        f: usize,
        delta: usize,
        mode: FaultModel,
        vmax: &[usize],
    ) -> Result<Self, QuorumError> {
        if delta == 0 {
            let n = match mode {
                FaultModel::Bft => 3 * f + 1,
                FaultModel::Cft => 2 * f + 1,
            };
            return Self::classic(n, f, mode);
        }
        if f == 0 {
            return Err(QuorumError::ZeroF);
        }
        let (n, u) = match mode {
            FaultModel::Bft => (3 * f + 1 + delta, 2 * f),
            FaultModel::Cft => (2 * f + 1 + delta, f),
        };
        let mut holders: Vec<usize> = vmax.to_vec();
        holders.sort_unstable();
        holders.dedup();
        if holders.len() != u {
            return Err(QuorumError::VmaxHolders {
                f,
                delta,
                need: u,
                got: holders.len(),
            });
        }
        if let Some(&bad) = holders.iter().find(|&&i| i >= n) {
            return Err(QuorumError::Index(bad));
        }
        let (f64_, d64) = (f as u64, delta as u64);
        let (vmin, vmax_w) = (f64_, f64_ + d64);
        let mut weights = vec![vmin; n];
        for &i in &holders {
            weights[i] = vmax_w;
        }
        let total: u64 = weights.iter().sum();
        let quorum = match mode {
            // 2f·V_max + 1, scaled by f
            FaultModel::Bft => 2 * f64_ * vmax_w + f64_,
            // f·V_max + 1, scaled by f
            FaultModel::Cft => f64_ * vmax_w + f64_,
        };
        let weak = match mode {
            FaultModel::Bft => f64_ * vmax_w + 1,
            FaultModel::Cft => 1,
        };
        Ok(QuorumSystem {
            mode,
            f,
            delta,
            weights,
            total,
            quorum,
            weak,
        })
    }

    /// WHEAT with the first `u` positions holding V_max (the usual default).
    pub fn wheat_default(f: usize, delta: usize, mode: FaultModel) -> Result<Self, QuorumError> {
        let u = match mode {
            FaultModel::Bft => 2 * f,
            FaultModel::Cft => f,
        };
        let holders: Vec<usize> = (0..u).collect();
        Self::wheat(f, delta, mode, &holders)
    }

    pub fn n(&self) -> usize {
        self.weights.len()
    }
    pub fn weight(&self, i: usize) -> u64 {
        self.weights.get(i).copied().unwrap_or(0)
    }
    pub fn weights(&self) -> &[u64] {
        &self.weights
    }
    pub fn total(&self) -> u64 {
        self.total
    }
    /// Votes needed for a quorum (intersecting in a correct replica).
    pub fn quorum(&self) -> u64 {
        self.quorum
    }
    /// Votes that guarantee at least one correct voter (PBFT's f+1).
    pub fn weak(&self) -> u64 {
        self.weak
    }
    /// Total weight of the given replica positions (duplicates counted once).
    pub fn votes<I: IntoIterator<Item = usize>>(&self, members: I) -> u64 {
        let mut seen = 0u128;
        let mut sum = 0;
        for i in members {
            if i < self.weights.len() && i < 128 && seen & (1 << i) == 0 {
                seen |= 1 << i;
                sum += self.weights[i];
            }
        }
        sum
    }
    pub fn is_quorum<I: IntoIterator<Item = usize>>(&self, members: I) -> bool {
        self.votes(members) >= self.quorum
    }
    pub fn is_weak<I: IntoIterator<Item = usize>>(&self, members: I) -> bool {
        self.votes(members) >= self.weak
    }
}

/// Counts votes for values of type `K` from distinct replicas, in weight.
///
/// A replica's vote counts once per value; a Byzantine replica voting for two
/// values is recorded in both (the quorum arithmetic tolerates it) and reported by
/// [`VoteCounter::add`] returning [`Vote::Conflict`] so the caller can log a fault.
#[derive(Clone, Debug)]
pub struct VoteCounter<K: Ord + Clone> {
    tallies: BTreeMap<K, (u64, u128)>,
    voted: u128,
}

/// What [`VoteCounter::add`] observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vote {
    /// A new vote; the value now holds this many votes.
    Counted(u64),
    /// This replica already voted for this value.
    Duplicate,
    /// This replica already voted for a different value (also counted).
    Conflict(u64),
}

impl<K: Ord + Clone> Default for VoteCounter<K> {
    fn default() -> Self {
        VoteCounter {
            tallies: BTreeMap::new(),
            voted: 0,
        }
    }
}

impl<K: Ord + Clone> VoteCounter<K> {
    pub fn new() -> Self {
        Self::default()
    }
    /// Record `voter`'s vote for `value` under `qs`. Replica positions ≥ 128 are
    /// ignored (no group is that large).
    pub fn add(&mut self, qs: &QuorumSystem, voter: usize, value: K) -> Vote {
        if voter >= 128 || voter >= qs.n() {
            return Vote::Duplicate;
        }
        let bit = 1u128 << voter;
        let conflict = self.voted & bit != 0;
        let entry = self.tallies.entry(value).or_insert((0, 0));
        if entry.1 & bit != 0 {
            return Vote::Duplicate;
        }
        entry.1 |= bit;
        entry.0 += qs.weight(voter);
        self.voted |= bit;
        if conflict {
            Vote::Conflict(entry.0)
        } else {
            Vote::Counted(entry.0)
        }
    }
    pub fn votes(&self, value: &K) -> u64 {
        self.tallies.get(value).map(|t| t.0).unwrap_or(0)
    }
    /// Whether `voter` voted, for any value.
    pub fn has_voted(&self, voter: usize) -> bool {
        voter < 128 && self.voted & (1u128 << voter) != 0
    }
    /// Whether `voter` voted for `value`.
    pub fn voted_for(&self, voter: usize, value: &K) -> bool {
        voter < 128
            && self
                .tallies
                .get(value)
                .is_some_and(|t| t.1 & (1u128 << voter) != 0)
    }
    /// Replica positions that voted for `value`, ascending.
    pub fn voters(&self, value: &K) -> Vec<usize> {
        let bits = self.tallies.get(value).map(|t| t.1).unwrap_or(0);
        (0..128).filter(|i| bits & (1u128 << i) != 0).collect()
    }
    /// The value with the most votes, if it reaches `threshold`.
    pub fn winner(&self, threshold: u64) -> Option<&K> {
        self.tallies
            .iter()
            .filter(|(_, t)| t.0 >= threshold)
            .max_by_key(|(_, t)| t.0)
            .map(|(k, _)| k)
    }
    /// Total weight of distinct voters, whatever they voted for.
    pub fn participation(&self, qs: &QuorumSystem) -> u64 {
        qs.votes((0..qs.n()).filter(|i| self.voted & (1u128 << i) != 0))
    }
    pub fn is_empty(&self) -> bool {
        self.voted == 0
    }
    pub fn clear(&mut self) {
        self.tallies.clear();
        self.voted = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Subsets of `n` replicas as bitmasks with their weight.
    fn weight_of(qs: &QuorumSystem, mask: u32) -> u64 {
        (0..qs.n())
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| qs.weight(i))
            .sum()
    }

    /// Exhaustively check: (1) any two quorums intersect in a correct replica for
    /// every faulty set of at most f replicas (BFT) or intersect at all (CFT);
    /// (2) the correct replicas alone always form a quorum; (3) a weak certificate
    /// always contains a correct replica (BFT).
    fn check_exhaustive(qs: &QuorumSystem) {
        let n = qs.n();
        let f = qs.f;
        let all: u32 = (1u32 << n) - 1;
        let faulty_sets: Vec<u32> = (0..=all).filter(|m| m.count_ones() as usize <= f).collect();
        for &x in &faulty_sets {
            let correct = all & !x;
            // availability
            assert!(
                weight_of(qs, correct) >= qs.quorum(),
                "{qs:?}: correct replicas {correct:b} hold no quorum"
            );
            if qs.mode == FaultModel::Bft {
                // weak certificates: the faulty set alone never reaches `weak`
                assert!(
                    weight_of(qs, x) < qs.weak(),
                    "{qs:?}: faulty set {x:b} reaches weak"
                );
                // consistency: no two quorums meet only inside X. Equivalently the
                // correct replicas cannot be split in two parts A, B with
                // w(A)+w(X) ≥ Q and w(B)+w(X) ≥ Q.
                let need = qs.quorum().saturating_sub(weight_of(qs, x));
                let mut a = correct;
                loop {
                    let b = correct & !a;
                    assert!(
                        !(weight_of(qs, a) >= need && weight_of(qs, b) >= need),
                        "{qs:?}: quorums {:b} and {:b} meet only in faulty {x:b}",
                        a | x,
                        b | x
                    );
                    if a == 0 {
                        break;
                    }
                    a = (a - 1) & correct;
                }
            }
        }
        if qs.mode == FaultModel::Cft {
            // two quorums always intersect
            for a in 0..=all {
                if weight_of(qs, a) >= qs.quorum() {
                    assert!(
                        weight_of(qs, all & !a) < qs.quorum(),
                        "{qs:?}: disjoint quorums"
                    );
                }
            }
        }
    }

    #[test]
    fn wheat_properties_hold_exhaustively_for_small_f_and_delta() {
        for f in 1..=3 {
            for delta in 0..=3 {
                for mode in [FaultModel::Bft, FaultModel::Cft] {
                    let qs = QuorumSystem::wheat_default(f, delta, mode).unwrap();
                    check_exhaustive(&qs);
                    // every placement of the V_max holders works too (n ≤ 13)
                    let u = if mode == FaultModel::Bft { 2 * f } else { f };
                    let n = qs.n();
                    if delta > 0 && n <= 9 {
                        for mask in 0u32..(1 << n) {
                            if mask.count_ones() as usize == u {
                                let holders: Vec<usize> =
                                    (0..n).filter(|i| mask & (1 << i) != 0).collect();
                                check_exhaustive(
                                    &QuorumSystem::wheat(f, delta, mode, &holders).unwrap(),
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn seed_example_f1_delta1() {
        // weights (2,2,1,1,1) unscaled: N_v = 7, Q_v = 5 (f = 1 so no scaling)
        let qs = QuorumSystem::wheat_default(1, 1, FaultModel::Bft).unwrap();
        assert_eq!(qs.weights(), &[2, 2, 1, 1, 1]);
        assert_eq!(qs.total(), 7);
        assert_eq!(qs.quorum(), 5);
        // two V_max plus any other replica is a quorum; any 4 of 5 too
        assert!(qs.is_quorum([0, 1, 4]));
        assert!(qs.is_quorum([1, 2, 3, 4]));
        assert!(!qs.is_quorum([0, 2, 3]));
    }

    #[test]
    fn scaled_weights_for_f2() {
        // f = 2, Δ = 1: V_max = 1.5 scaled to 3, V_min to 2
        let qs = QuorumSystem::wheat_default(2, 1, FaultModel::Bft).unwrap();
        assert_eq!(qs.n(), 8);
        assert_eq!(qs.weights(), &[3, 3, 3, 3, 2, 2, 2, 2]);
        assert_eq!(qs.total(), 2 * (3 * 2 + 1 + 3));
        assert_eq!(qs.quorum(), 2 * (2 * (2 + 1) + 1));
    }

    #[test]
    fn classic_quorums() {
        let q4 = QuorumSystem::classic(4, 1, FaultModel::Bft).unwrap();
        assert_eq!((q4.quorum(), q4.weak()), (3, 2));
        let q7 = QuorumSystem::classic(7, 2, FaultModel::Bft).unwrap();
        assert_eq!((q7.quorum(), q7.weak()), (5, 3));
        let c3 = QuorumSystem::classic(3, 1, FaultModel::Cft).unwrap();
        assert_eq!((c3.quorum(), c3.weak()), (2, 1));
        for n in 4..=10 {
            for f in 0..=(n - 1) / 3 {
                check_exhaustive(&QuorumSystem::classic(n, f, FaultModel::Bft).unwrap());
            }
        }
        assert!(QuorumSystem::classic(3, 1, FaultModel::Bft).is_err());
    }

    #[test]
    fn vote_counter_counts_distinct_weighted_voters() {
        let qs = QuorumSystem::wheat_default(1, 1, FaultModel::Bft).unwrap();
        let mut c = VoteCounter::new();
        assert_eq!(c.add(&qs, 0, "a"), Vote::Counted(2));
        assert_eq!(c.add(&qs, 0, "a"), Vote::Duplicate);
        assert_eq!(c.add(&qs, 2, "a"), Vote::Counted(3));
        assert_eq!(c.add(&qs, 2, "b"), Vote::Conflict(1));
        assert_eq!(c.winner(qs.quorum()), None);
        assert_eq!(c.add(&qs, 1, "a"), Vote::Counted(5));
        assert_eq!(c.winner(qs.quorum()), Some(&"a"));
        assert_eq!(c.voters(&"a"), vec![0, 1, 2]);
        assert_eq!(c.add(&qs, 99, "a"), Vote::Duplicate);
    }
}
