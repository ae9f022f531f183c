//! The sampling oracle Ω (thesis §4.2, assumption 7; Algorithm 7 `SAMPLE`).
//!
//! Permissioned case: uniform choice from the known member list, driven by the
//! protocol's own seeded RNG (`Cx::rng`), so a simulated run replays exactly and
//! no other process can predict a sample. The member list is shared behind an
//! `Arc` so that 10,000 processes do not hold 10,000 copies of it.
//!
//! Deviation: the oracle never returns the caller itself. A process sampling
//! itself would only count its own echo/ready towards its own threshold; the
//! parameter analysis ([`crate::params`]) accounts for sampling among the N−1
//! others.

use byzscale_core::NodeId;
use rand::{Rng, RngCore};
use rand_distr::{Distribution, Poisson};
use std::sync::Arc;

/// A multiset of processes (a sample drawn with replacement): sorted
/// `(member, multiplicity)` pairs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Multiset(Vec<(NodeId, u32)>);

impl Multiset {
    /// Position among the distinct members and multiplicity of `n`.
    pub fn find(&self, n: &NodeId) -> Option<(usize, u32)> {
        self.0
            .binary_search_by(|(m, _)| m.cmp(n))
            .ok()
            .map(|i| (i, self.0[i].1))
    }
    /// Multiplicity of `n` (0 if absent).
    pub fn count(&self, n: &NodeId) -> u32 {
        self.find(n).map(|(_, c)| c).unwrap_or(0)
    }
    pub fn distinct(&self) -> usize {
        self.0.len()
    }
    /// Total size, with multiplicity.
    pub fn size(&self) -> u32 {
        self.0.iter().map(|(_, c)| c).sum()
    }
    /// Distinct members, ascending.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.0.iter().map(|(m, _)| *m)
    }
    pub fn iter(&self) -> impl Iterator<Item = (NodeId, u32)> + '_ {
        self.0.iter().copied()
    }
}

/// Uniform sampling from the members other than `me`.
#[derive(Clone, Debug)]
pub struct Oracle {
    members: Arc<Vec<NodeId>>,
    my_pos: usize,
}

impl Oracle {
    /// `members` must contain `me` (else every member is a candidate).
    pub fn new(members: Arc<Vec<NodeId>>, me: NodeId) -> Self {
        let my_pos = members.iter().position(|m| *m == me).unwrap_or(usize::MAX);
        Oracle { members, my_pos }
    }

    /// Number of processes the oracle picks from.
    pub fn population(&self) -> usize {
        if self.my_pos < self.members.len() {
            self.members.len() - 1
        } else {
            self.members.len()
        }
    }

    fn at(&self, i: usize) -> NodeId {
        let j = if i >= self.my_pos { i + 1 } else { i };
        self.members[j]
    }

    /// Ω(k): `k` distinct processes (all of them if `k` ≥ the population).
    pub fn distinct(&self, rng: &mut dyn RngCore, k: usize) -> Vec<NodeId> {
        let n = self.population();
        if k >= n {
            return (0..n).map(|i| self.at(i)).collect();
        }
        let mut v: Vec<NodeId> = rand::seq::index::sample(rng, n, k)
            .into_iter()
            .map(|i| self.at(i))
            .collect();
        v.sort_unstable();
        v
    }

    /// SAMPLE(·, k): `k` calls of Ω(1), i.e. with replacement.
    pub fn with_replacement(&self, rng: &mut dyn RngCore, k: usize) -> Multiset {
        let n = self.population();
        if n == 0 {
            return Multiset::default();
        }
        let mut draws: Vec<NodeId> = (0..k).map(|_| self.at(rng.gen_range(0..n))).collect();
        draws.sort_unstable();
        let mut out: Vec<(NodeId, u32)> = Vec::new();
        for d in draws {
            match out.last_mut() {
                Some((m, c)) if *m == d => *c += 1,
                _ => out.push((d, 1)),
            }
        }
        Multiset(out)
    }

    /// Murmur's gossip sample: Ḡ ~ Poisson(G), then Ω(Ḡ).
    pub fn poisson_distinct(&self, rng: &mut dyn RngCore, g: f64) -> Vec<NodeId> {
        let k = if g > 0.0 && g.is_finite() {
            Poisson::new(g).map(|p| p.sample(rng) as usize).unwrap_or(0)
        } else {
            0
        };
        self.distinct(rng, k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn oracle(n: u32, me: u32) -> Oracle {
        Oracle::new(Arc::new((0..n).map(NodeId).collect()), NodeId(me))
    }

    #[test]
    fn never_picks_itself_and_distinct_is_distinct() {
        let o = oracle(10, 4);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for k in 0..12 {
            let s = o.distinct(&mut rng, k);
            assert_eq!(s.len(), k.min(9));
            assert!(!s.contains(&NodeId(4)));
            let mut d = s.clone();
            d.dedup();
            assert_eq!(d, s);
        }
        let m = o.with_replacement(&mut rng, 500);
        assert_eq!(m.count(&NodeId(4)), 0);
        assert_eq!(m.size(), 500);
    }

    #[test]
    fn with_replacement_is_roughly_uniform() {
        // 9 others, 90,000 draws: each count ~ 10,000 ± 95 (1σ); allow 6σ.
        let o = oracle(10, 0);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let m = o.with_replacement(&mut rng, 90_000);
        assert_eq!(m.distinct(), 9);
        for (_, c) in m.iter() {
            assert!((c as i64 - 10_000).abs() < 600, "{c}");
        }
    }

    #[test]
    fn poisson_sizes_average_to_g() {
        let o = oracle(1000, 0);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let total: usize = (0..2000)
            .map(|_| o.poisson_distinct(&mut rng, 12.0).len())
            .sum();
        let mean = total as f64 / 2000.0;
        assert!((mean - 12.0).abs() < 0.5, "{mean}");
    }
}
