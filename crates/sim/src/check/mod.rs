//! Checkers: properties every run must satisfy, shared by all protocols.
//!
//! - [`LogChecker`]: agreement and gap-free order of a totally ordered log (SMR
//!   slots, a group's delivery sequence), fed incrementally as nodes decide.
//! - [`linearizability`]: a KV client history has a legal sequential witness.
//! - [`order`]: delivery orders across groups are acyclic (atomic multicast).
//!
//! Checkers produce human-readable violation strings (empty = the property
//! holds), so a run's report can list them with the command that replays it.

pub mod linearizability;
pub mod order;

use std::collections::BTreeMap;
use std::fmt::Debug;

/// Most violation strings kept per checker (the count is exact).
const KEEP: usize = 10;

/// Agreement and order of a replicated log, checked as decisions arrive.
///
/// Feed it only correct nodes. Every node must decide positions 1, 2, 3, … in
/// order (or jump forward with [`LogChecker::skip_to`] after a state transfer),
/// and any two nodes deciding the same position must decide the same value.
#[derive(Debug)]
pub struct LogChecker<N: Ord + Clone + Debug, V: PartialEq + Clone + Debug> {
    first: BTreeMap<u64, (N, V)>,
    next: BTreeMap<N, u64>,
    violations: Vec<String>,
    count: usize,
}

impl<N: Ord + Clone + Debug, V: PartialEq + Clone + Debug> Default for LogChecker<N, V> {
    fn default() -> Self {
        LogChecker {
            first: BTreeMap::new(),
            next: BTreeMap::new(),
            violations: Vec::new(),
            count: 0,
        }
    }
}

impl<N: Ord + Clone + Debug, V: PartialEq + Clone + Debug> LogChecker<N, V> {
    pub fn new() -> Self {
        Self::default()
    }

    fn violation(&mut self, s: String) {
        self.count += 1;
        if self.violations.len() < KEEP {
            self.violations.push(s);
        }
    }

    /// `node` decided `value` at position `pos`.
    pub fn decide(&mut self, node: N, pos: u64, value: V) {
        let next = self.next.entry(node.clone()).or_insert(1);
        if pos != *next {
            let expected = *next;
            *next = (*next).max(pos + 1);
            self.violation(format!(
                "order: {node:?} decided position {pos} when {expected} was next"
            ));
        } else {
            *next = pos + 1;
        }
        match self.first.get(&pos) {
            None => {
                self.first.insert(pos, (node, value));
            }
            Some((n0, v0)) if *v0 != value => {
                let msg = format!("agreement: position {pos}: {n0:?} decided {v0:?} but {node:?} decided {value:?}");
                self.violation(msg);
            }
            Some(_) => {}
        }
    }

    /// `node` installed a snapshot covering positions up to `pos`.
    pub fn skip_to(&mut self, node: N, pos: u64) {
        let next = self.next.entry(node.clone()).or_insert(1);
        if pos + 1 < *next {
            let n = *next;
            self.violation(format!(
                "order: {node:?} went back to position {pos} after deciding {}",
                n - 1
            ));
        } else {
            *next = pos + 1;
        }
    }

    /// `node` restarted from its disk holding positions up to `pos`: it may
    /// decide positions it decided before again (replaying its log, or after
    /// a state transfer), and each must agree with what was decided there.
    pub fn restart(&mut self, node: N, pos: u64) {
        self.next.insert(node, pos + 1);
    }

    /// The value decided at `pos`, if any node decided it.
    pub fn decided(&self, pos: u64) -> Option<&V> {
        self.first.get(&pos).map(|(_, v)| v)
    }

    /// Highest position any node decided.
    pub fn highest(&self) -> u64 {
        self.first.keys().next_back().copied().unwrap_or(0)
    }

    pub fn violation_count(&self) -> usize {
        self.count
    }

    pub fn violations(&self) -> &[String] {
        &self.violations
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_flags_conflicting_positions_only() {
        let mut c = LogChecker::new();
        c.decide(0, 1, "a");
        c.decide(0, 2, "b");
        c.decide(1, 1, "a");
        assert_eq!(c.violation_count(), 0);
        c.decide(2, 1, "a");
        c.decide(2, 2, "c");
        assert_eq!(c.violation_count(), 1);
        assert!(
            c.violations()[0].contains("position 2"),
            "{:?}",
            c.violations()
        );
    }

    #[test]
    fn order_flags_holes_but_allows_state_transfer() {
        let mut c: LogChecker<u32, ()> = LogChecker::new();
        c.decide(0, 1, ());
        c.skip_to(0, 10);
        c.decide(0, 11, ());
        assert_eq!(c.violation_count(), 0);
        c.decide(0, 13, ());
        assert_eq!(c.violation_count(), 1);
        c.skip_to(0, 5);
        assert_eq!(c.violation_count(), 2);
    }

    #[test]
    fn a_restarted_node_may_decide_again_but_must_agree() {
        let mut c = LogChecker::new();
        for p in 1..=5 {
            c.decide(0, p, p * 10);
        }
        c.restart(0, 2);
        c.decide(0, 3, 30);
        c.decide(0, 4, 40);
        assert_eq!(c.violation_count(), 0);
        c.decide(0, 5, 55);
        assert_eq!(c.violation_count(), 1);
        assert!(c.violations()[0].starts_with("agreement: position 5"));
        c.decide(0, 7, 70);
        assert_eq!(c.violation_count(), 2, "a hole after a restart");
    }
}
