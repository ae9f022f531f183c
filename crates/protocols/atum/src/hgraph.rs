//! The H-graph (thesis §5.3.2): `hc` Hamiltonian cycles over the vgroups,
//! each an independent uniformly random order, so every vgroup has `2·hc`
//! incident links (parallel links allowed, as in the thesis' multigraph).

use rand::seq::SliceRandom;
use rand::Rng;

use crate::AtumError;

/// `hc` cycles over vgroups `0..v`, stored as successor and predecessor per
/// cycle (what the overlay's insert-after-successor and gap closing will
/// edit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HGraph {
    succ: Vec<Vec<u32>>,
    pred: Vec<Vec<u32>>,
}

impl HGraph {
    /// `hc` independent uniformly random Hamiltonian cycles over `v` vgroups.
    pub fn random(v: usize, hc: usize, rng: &mut impl Rng) -> Result<HGraph, AtumError> {
        if v < 2 {
            return Err(AtumError::TooFewVgroups(v));
        }
        if hc == 0 {
            return Err(AtumError::NoCycles);
        }
        let (mut succ, mut pred) = (Vec::with_capacity(hc), Vec::with_capacity(hc));
        let mut order: Vec<u32> = (0..v as u32).collect();
        for _ in 0..hc {
            order.shuffle(rng);
            let (mut s, mut p) = (vec![0; v], vec![0; v]);
            for (i, &x) in order.iter().enumerate() {
                let next = order[(i + 1) % v];
                s[x as usize] = next;
                p[next as usize] = x;
            }
            succ.push(s);
            pred.push(p);
        }
        Ok(HGraph { succ, pred })
    }

    /// How many vgroups.
    pub fn vgroups(&self) -> usize {
        self.succ[0].len()
    }

    /// How many cycles.
    pub fn cycles(&self) -> usize {
        self.succ.len()
    }

    /// The `2·hc` neighbours of `x`: successor and predecessor in each cycle.
    pub fn neighbours(&self, x: u32) -> impl Iterator<Item = u32> + '_ {
        (0..self.cycles()).flat_map(move |c| [self.succ[c][x as usize], self.pred[c][x as usize]])
    }

    /// The end of a walk of `rwl` hops from `start`, each along one of the
    /// `2·hc` incident links chosen uniformly.
    pub fn walk(&self, start: u32, rwl: usize, rng: &mut impl Rng) -> u32 {
        let mut x = start as usize;
        for _ in 0..rwl {
            let link = rng.gen_range(0..2 * self.cycles());
            let table = if link % 2 == 0 {
                &self.succ
            } else {
                &self.pred
            };
            x = table[link / 2][x] as usize;
        }
        x as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    proptest! {
        /// Each cycle visits every vgroup once and the two directions agree.
        #[test]
        fn every_cycle_is_hamiltonian(v in 2usize..200, hc in 1usize..8, seed: u64) {
            let g = HGraph::random(v, hc, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap();
            for c in 0..hc {
                let mut seen = vec![false; v];
                let mut x = 0u32;
                for _ in 0..v {
                    prop_assert!(!seen[x as usize]);
                    seen[x as usize] = true;
                    prop_assert_eq!(g.pred[c][g.succ[c][x as usize] as usize], x);
                    x = g.succ[c][x as usize];
                }
                prop_assert_eq!(x, 0);
            }
            prop_assert_eq!(g.neighbours(1).count(), 2 * hc);
        }
    }

    #[test]
    fn refuses_degenerate_graphs() {
        let rng = &mut ChaCha8Rng::seed_from_u64(1);
        assert_eq!(HGraph::random(1, 3, rng), Err(AtumError::TooFewVgroups(1)));
        assert_eq!(HGraph::random(10, 0, rng), Err(AtumError::NoCycles));
    }

    #[test]
    fn a_walk_moves_along_links() {
        let rng = &mut ChaCha8Rng::seed_from_u64(2);
        let g = HGraph::random(50, 3, rng).unwrap();
        assert_eq!(g.walk(7, 0, rng), 7);
        for _ in 0..100 {
            let end = g.walk(7, 1, rng);
            assert!(g.neighbours(7).any(|n| n == end));
        }
    }
}
