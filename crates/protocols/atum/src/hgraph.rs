//! The H-graph (thesis §5.3.2; digest §3.4): `hc` Hamiltonian cycles over the
//! vgroups, so every vgroup has `2·hc` incident links (parallel links
//! allowed, as in the thesis' multigraph), and the two changes membership
//! makes to it:
//!
//! - a split inserts the new vgroup E, on each cycle, between the vgroup its
//!   walk on that cycle selected and that vgroup's successor
//!   ([`HGraph::insert`], "insert-after-successor");
//! - a merge removes a vgroup and links its predecessor and successor on
//!   each cycle ([`HGraph::remove`], "gap closing").
//!
//! Both return the vgroups whose neighbours changed (the ones to inform).
//! Vgroups live in dense slots so that walks cost one index per hop.

use std::collections::{BTreeMap, BTreeSet};

use rand::seq::SliceRandom;
use rand::Rng;

use crate::group_msg::VgroupId;
use crate::AtumError;

/// `hc` cycles over a set of vgroups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HGraph {
    ids: Vec<VgroupId>,
    slot: BTreeMap<VgroupId, u32>,
    /// `[cycle][slot]`: the successor's and the predecessor's slot.
    succ: Vec<Vec<u32>>,
    pred: Vec<Vec<u32>>,
}

impl HGraph {
    /// `hc` independent uniformly random Hamiltonian cycles over vgroups
    /// `0..v`.
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
        let ids: Vec<VgroupId> = (0..v as u64).map(VgroupId).collect();
        let slot = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, i as u32))
            .collect();
        Ok(HGraph {
            ids,
            slot,
            succ,
            pred,
        })
    }

    /// How many vgroups.
    pub fn vgroups(&self) -> usize {
        self.ids.len()
    }

    /// How many cycles.
    pub fn cycles(&self) -> usize {
        self.succ.len()
    }

    /// Every vgroup, in id order.
    pub fn ids(&self) -> impl Iterator<Item = VgroupId> + '_ {
        self.slot.keys().copied()
    }

    fn slot_of(&self, id: VgroupId) -> Result<usize, AtumError> {
        self.slot
            .get(&id)
            .map(|s| *s as usize)
            .ok_or(AtumError::NoSuchVgroup(id.0))
    }

    /// The successor of `id` on `cycle`.
    pub fn successor(&self, id: VgroupId, cycle: usize) -> Result<VgroupId, AtumError> {
        Ok(self.ids[self.succ[cycle][self.slot_of(id)?] as usize])
    }

    /// The `2·hc` neighbours of `id`: successor and predecessor on each cycle.
    pub fn neighbours(&self, id: VgroupId) -> Result<Vec<VgroupId>, AtumError> {
        let s = self.slot_of(id)?;
        Ok((0..self.cycles())
            .flat_map(|c| [self.succ[c][s], self.pred[c][s]])
            .map(|x| self.ids[x as usize])
            .collect())
    }

    /// The end of a walk of `rwl` hops from `start`, each along one of the
    /// `2·hc` incident links chosen uniformly.
    pub fn walk(
        &self,
        start: VgroupId,
        rwl: usize,
        rng: &mut impl Rng,
    ) -> Result<VgroupId, AtumError> {
        let mut x = self.slot_of(start)?;
        for _ in 0..rwl {
            let link = rng.gen_range(0..2 * self.cycles());
            let table = if link % 2 == 0 {
                &self.succ
            } else {
                &self.pred
            };
            x = table[link / 2][x] as usize;
        }
        Ok(self.ids[x])
    }

    /// Split: `new` enters each cycle `c` right after `after[c]`. Returns
    /// the vgroups whose neighbours changed (`new` included).
    pub fn insert(
        &mut self,
        new: VgroupId,
        after: &[VgroupId],
    ) -> Result<BTreeSet<VgroupId>, AtumError> {
        if self.slot.contains_key(&new) {
            return Err(AtumError::DuplicateVgroup(new.0));
        }
        if after.len() != self.cycles() {
            return Err(AtumError::OneAnchorPerCycle {
                cycles: self.cycles(),
                got: after.len(),
            });
        }
        let anchors = after
            .iter()
            .map(|a| self.slot_of(*a))
            .collect::<Result<Vec<_>, _>>()?;
        let s = self.ids.len() as u32;
        self.ids.push(new);
        self.slot.insert(new, s);
        let mut changed = BTreeSet::from([new]);
        for (c, &a) in anchors.iter().enumerate() {
            let next = self.succ[c][a];
            self.succ[c].push(next);
            self.pred[c].push(a as u32);
            self.succ[c][a] = s;
            self.pred[c][next as usize] = s;
            changed.extend([self.ids[a], self.ids[next as usize]]);
        }
        Ok(changed)
    }

    /// Merge: `gone` leaves every cycle, its predecessor and successor
    /// linked. Returns the vgroups whose neighbours changed. At least two
    /// vgroups remain.
    pub fn remove(&mut self, gone: VgroupId) -> Result<BTreeSet<VgroupId>, AtumError> {
        let s = self.slot_of(gone)?;
        if self.ids.len() <= 2 {
            return Err(AtumError::TooFewVgroups(self.ids.len() - 1));
        }
        let mut changed = BTreeSet::new();
        for c in 0..self.cycles() {
            let (p, n) = (self.pred[c][s], self.succ[c][s]);
            self.succ[c][p as usize] = n;
            self.pred[c][n as usize] = p;
            changed.extend([self.ids[p as usize], self.ids[n as usize]]);
        }
        // the last slot moves into the freed one
        let last = self.ids.len() - 1;
        for c in 0..self.cycles() {
            if s != last {
                let (p, n) = (self.pred[c][last], self.succ[c][last]);
                self.succ[c][p as usize] = s as u32;
                self.pred[c][n as usize] = s as u32;
            }
            self.succ[c].swap_remove(s);
            self.pred[c].swap_remove(s);
        }
        self.ids.swap_remove(s);
        self.slot.remove(&gone);
        if s != last {
            self.slot.insert(self.ids[s], s as u32);
        }
        changed.remove(&gone);
        Ok(changed)
    }

    /// Whether every cycle visits every vgroup once, both directions agree.
    pub fn is_consistent(&self) -> bool {
        let v = self.ids.len();
        let slots_ok = self.slot.len() == v
            && self
                .ids
                .iter()
                .enumerate()
                .all(|(i, id)| self.slot.get(id) == Some(&(i as u32)));
        slots_ok
            && (0..self.cycles()).all(|c| {
                let mut seen = vec![false; v];
                let mut x = 0usize;
                for _ in 0..v {
                    if seen[x] || self.pred[c][self.succ[c][x] as usize] as usize != x {
                        return false;
                    }
                    seen[x] = true;
                    x = self.succ[c][x] as usize;
                }
                x == 0
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    proptest! {
        /// Random graphs are consistent, and stay so through any sequence of
        /// splits and merges; each change informs exactly the vgroups whose
        /// neighbours changed.
        #[test]
        fn splits_and_merges_keep_every_cycle_hamiltonian(
            v in 2usize..40, hc in 1usize..6, seed: u64, ops in prop::collection::vec(any::<u64>(), 0..60),
        ) {
            let rng = &mut ChaCha8Rng::seed_from_u64(seed);
            let mut g = HGraph::random(v, hc, rng).unwrap();
            prop_assert!(g.is_consistent());
            let mut next = v as u64;
            for op in ops {
                let ids: Vec<VgroupId> = g.ids().collect();
                let before: BTreeMap<VgroupId, Vec<VgroupId>> =
                    ids.iter().map(|i| (*i, g.neighbours(*i).unwrap())).collect();
                let changed = if op % 3 == 0 && ids.len() > 2 {
                    let gone = ids[(op / 3) as usize % ids.len()];
                    g.remove(gone).unwrap()
                } else {
                    let after: Vec<VgroupId> =
                        (0..hc).map(|c| ids[(op as usize + c * 7) % ids.len()]).collect();
                    next += 1;
                    g.insert(VgroupId(next), &after).unwrap()
                };
                prop_assert!(g.is_consistent());
                for id in g.ids() {
                    let moved = before.get(&id) != Some(&g.neighbours(id).unwrap());
                    prop_assert_eq!(moved, changed.contains(&id), "{:?}", id);
                }
            }
        }
    }

    #[test]
    fn a_split_enters_after_the_anchor_on_each_cycle() {
        let rng = &mut ChaCha8Rng::seed_from_u64(4);
        let mut g = HGraph::random(10, 3, rng).unwrap();
        let after = [VgroupId(2), VgroupId(5), VgroupId(2)];
        let old: Vec<VgroupId> = (0..3).map(|c| g.successor(after[c], c).unwrap()).collect();
        g.insert(VgroupId(77), &after).unwrap();
        for c in 0..3 {
            assert_eq!(g.successor(after[c], c).unwrap(), VgroupId(77));
            assert_eq!(g.successor(VgroupId(77), c).unwrap(), old[c]);
        }
        assert_eq!(
            g.insert(VgroupId(77), &after),
            Err(AtumError::DuplicateVgroup(77))
        );
        assert!(g.insert(VgroupId(78), &after[..2]).is_err());
        assert_eq!(
            g.insert(VgroupId(79), &[VgroupId(99); 3]),
            Err(AtumError::NoSuchVgroup(99))
        );
    }

    #[test]
    fn refuses_degenerate_graphs() {
        let rng = &mut ChaCha8Rng::seed_from_u64(1);
        assert_eq!(HGraph::random(1, 3, rng), Err(AtumError::TooFewVgroups(1)));
        assert_eq!(HGraph::random(10, 0, rng), Err(AtumError::NoCycles));
        let mut g = HGraph::random(2, 2, rng).unwrap();
        assert!(g.remove(VgroupId(0)).is_err());
    }

    #[test]
    fn a_walk_moves_along_links() {
        let rng = &mut ChaCha8Rng::seed_from_u64(2);
        let g = HGraph::random(50, 3, rng).unwrap();
        assert_eq!(g.walk(VgroupId(7), 0, rng).unwrap(), VgroupId(7));
        for _ in 0..100 {
            let end = g.walk(VgroupId(7), 1, rng).unwrap();
            assert!(g.neighbours(VgroupId(7)).unwrap().contains(&end));
        }
    }
}
