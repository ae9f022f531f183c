//! The order property of atomic multicast: delivery orders of correct
//! processes, across all groups, must be acyclic (ByzCast, seed 000 §II, and
//! its "Why a tree?" counterexamples).

use byzscale_core::GroupId;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

/// The order property of atomic multicast: the relation `m < m′` iff some
/// correct process delivers `m` before `m′` must be acyclic. Fed with every
/// correct process's deliveries in order; keeps, per process, only the edge
/// from its previous delivery (the transitive closure of a process's
/// consecutive edges is its whole order, so a cycle in `<` is a cycle here).
#[derive(Debug, Clone)]
pub struct OrderChecker<M: Ord + Clone + Debug, P: Ord + Clone> {
    /// m → (m′ → a group that ordered m before m′).
    edges: BTreeMap<M, BTreeMap<M, GroupId>>,
    last: BTreeMap<P, M>,
}

impl<M: Ord + Clone + Debug, P: Ord + Clone> Default for OrderChecker<M, P> {
    fn default() -> Self {
        OrderChecker {
            edges: BTreeMap::new(),
            last: BTreeMap::new(),
        }
    }
}

impl<M: Ord + Clone + Debug, P: Ord + Clone> OrderChecker<M, P> {
    pub fn new() -> Self {
        Self::default()
    }
    /// Process `p` of group `g` delivered `m` (after everything it delivered before).
    pub fn deliver(&mut self, p: P, g: GroupId, m: M) {
        if let Some(prev) = self.last.insert(p, m.clone()) {
            if prev != m {
                self.edges
                    .entry(prev)
                    .or_default()
                    .entry(m.clone())
                    .or_insert(g);
            }
        }
        self.edges.entry(m).or_default();
    }
    /// Process `p` jumped over deliveries (state transfer): no edge across the gap.
    pub fn skip(&mut self, p: &P) {
        self.last.remove(p);
    }
    /// Process `p`, after a [`Self::skip`], is about to deliver the message
    /// that follows `prev` in its group's log (as another process, or `p`
    /// before a restart, delivered it): its next delivery follows `prev`.
    /// Without this, a message delivered first after a gap by every correct
    /// process of its group would be ordered by nothing.
    pub fn resume(&mut self, p: P, prev: M) {
        self.last.entry(p).or_insert(prev);
    }
    /// Every message delivered so far in an order that extends every correct
    /// process's delivery order (`None` if there is a cycle). Deterministic.
    pub fn topological(&self) -> Option<Vec<M>> {
        let mut indeg: BTreeMap<&M, usize> = self.edges.keys().map(|m| (m, 0)).collect();
        for succ in self.edges.values() {
            for m in succ.keys() {
                *indeg.entry(m).or_insert(0) += 1;
            }
        }
        let mut ready: BTreeSet<&M> = indeg
            .iter()
            .filter(|(_, d)| **d == 0)
            .map(|(m, _)| *m)
            .collect();
        let mut out = Vec::with_capacity(indeg.len());
        while let Some(m) = ready.pop_first() {
            out.push(m.clone());
            if let Some(succ) = self.edges.get(m) {
                for n in succ.keys() {
                    let d = indeg.get_mut(n).expect("counted");
                    *d -= 1;
                    if *d == 0 {
                        ready.insert(n);
                    }
                }
            }
        }
        (out.len() == indeg.len()).then_some(out)
    }

    /// A cycle `m1 < m2 < … < m1` as (m, m′, group that ordered m before m′), if any.
    pub fn find_cycle(&self) -> Option<Vec<(M, M, GroupId)>> {
        // iterative DFS, white/grey/black
        let mut color: BTreeMap<&M, u8> = BTreeMap::new();
        for start in self.edges.keys() {
            if color.get(start).copied().unwrap_or(0) != 0 {
                continue;
            }
            let mut stack: Vec<(&M, Vec<&M>)> = vec![(start, self.edges[start].keys().collect())];
            color.insert(start, 1);
            while let Some((node, rest)) = stack.last_mut() {
                let node = *node;
                match rest.pop() {
                    Some(next) => match color.get(next).copied().unwrap_or(0) {
                        0 => {
                            color.insert(next, 1);
                            let succ = self
                                .edges
                                .get(next)
                                .map(|e| e.keys().collect())
                                .unwrap_or_default();
                            stack.push((next, succ));
                        }
                        1 => {
                            // back edge node → next closes a cycle along the stack
                            let at = stack.iter().position(|(n, _)| *n == next).unwrap_or(0);
                            let mut path: Vec<&M> = stack[at..].iter().map(|(n, _)| *n).collect();
                            path.push(next);
                            let cycle = path
                                .windows(2)
                                .map(|w| (w[0].clone(), w[1].clone(), self.edges[w[0]][w[1]]))
                                .collect();
                            return Some(cycle);
                        }
                        _ => {}
                    },
                    None => {
                        color.insert(node, 2);
                        stack.pop();
                    }
                }
            }
        }
        None
    }
}

/// A cycle as text, naming each edge's group with `name`.
pub fn cycle_text<M: Debug>(c: &[(M, M, GroupId)], name: impl Fn(GroupId) -> String) -> String {
    c.iter()
        .map(|(a, b, g)| format!("{a:?} < {b:?} (at {})", name(*g)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(i: u32) -> GroupId {
        GroupId(i)
    }

    /// Seed 000 "Why a tree?" case 1: overlay cycle g1 → g2 → g3 → g1 with
    /// m1 → {g1, g2}, m2 → {g2, g3}, m3 → {g1, g3}: m1 < m3 at g1, m3 < m2 at
    /// g3, m2 < m1 at g2.
    #[test]
    fn acyclicity_flags_the_cycle_counterexample() {
        let mut c: OrderChecker<&str, u32> = OrderChecker::new();
        c.deliver(1, g(1), "m1");
        c.deliver(1, g(1), "m3");
        c.deliver(3, g(3), "m3");
        c.deliver(3, g(3), "m2");
        assert!(c.find_cycle().is_none());
        c.deliver(2, g(2), "m2");
        c.deliver(2, g(2), "m1");
        let cyc = c.find_cycle().expect("a cycle");
        assert_eq!(cyc.len(), 3);
        let text = cycle_text(&cyc, |g| format!("g{}", g.0));
        for part in [
            "\"m1\" < \"m3\" (at g1)",
            "\"m3\" < \"m2\" (at g3)",
            "\"m2\" < \"m1\" (at g2)",
        ] {
            assert!(text.contains(part), "{text}");
        }
    }

    /// Case 2: a group with two parents: m2 < m1 at g2, m1 < m3 at g1, m3 < m2 at g3.
    #[test]
    fn acyclicity_flags_the_two_parents_counterexample() {
        let mut c: OrderChecker<&str, u32> = OrderChecker::new();
        for (p, grp, seq) in [
            (2, 2, ["m2", "m1"]),
            (1, 1, ["m1", "m3"]),
            (3, 3, ["m3", "m2"]),
        ] {
            for m in seq {
                c.deliver(p, g(grp), m);
            }
        }
        let cyc = c.find_cycle().expect("a cycle");
        let text = cycle_text(&cyc, |g| format!("g{}", g.0));
        assert!(
            text.contains("(at g2)") && text.contains("(at g1)") && text.contains("(at g3)"),
            "{text}"
        );
    }

    /// Every process of a group skipped (a whole-group restart from a
    /// checkpoint): without `resume`, the next message follows nothing and
    /// the topological order may put it first.
    #[test]
    fn resume_orders_the_first_delivery_after_a_gap() {
        let mut c: OrderChecker<&str, u32> = OrderChecker::new();
        for p in [1, 2] {
            c.deliver(p, g(1), "b");
            c.deliver(p, g(1), "c");
            c.skip(&p);
        }
        c.deliver(1, g(1), "a");
        assert_eq!(c.topological().unwrap()[0], "a", "unordered");
        let mut c: OrderChecker<&str, u32> = OrderChecker::new();
        for p in [1, 2] {
            c.deliver(p, g(1), "b");
            c.deliver(p, g(1), "c");
            c.skip(&p);
        }
        c.resume(1, "c");
        c.deliver(1, g(1), "a");
        assert_eq!(c.topological().unwrap(), vec!["b", "c", "a"]);
    }

    /// The tree execution of Fig. 1 (b) is acyclic, and a state transfer gap
    /// adds no edge.
    #[test]
    fn acyclicity_accepts_tree_orders() {
        let mut c: OrderChecker<&str, u32> = OrderChecker::new();
        // h2 orders m1 before m2; g1, g2, g3 follow
        for (p, grp, seq) in [
            (1, 1, vec!["m1"]),
            (2, 2, vec!["m1", "m2"]),
            (3, 3, vec!["m2", "m3"]),
            (4, 9, vec!["m1", "m2"]),
        ] {
            for m in seq {
                c.deliver(p, g(grp), m);
            }
        }
        assert!(c.find_cycle().is_none());
        assert_eq!(c.topological().unwrap(), vec!["m1", "m2", "m3"]);
        c.skip(&3);
        c.deliver(3, g(3), "m1");
        assert!(c.find_cycle().is_none());
        c.deliver(5, g(5), "m0");
        c.deliver(5, g(5), "m1");
        let t = c.topological().unwrap();
        assert_eq!(t.len(), 4);
        assert!(t.iter().position(|m| *m == "m0") < t.iter().position(|m| *m == "m1"));
    }
}
