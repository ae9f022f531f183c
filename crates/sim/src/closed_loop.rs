//! The bookkeeping of closed-loop clients sharing a request quota, which every
//! scenario's workload needs: which client may issue its next request, what
//! is in flight, when all is done; and where each client runs
//! ([`ClientNodes`]).

use crate::engine::NodeIdx;
use std::collections::BTreeMap;

/// Client positions `0..clients`, each issuing requests numbered 1, 2, … up
/// to its quota; `T` is what a scenario remembers of a request in flight.
#[derive(Clone, Debug)]
pub struct ClosedLoop<T> {
    quota: Vec<u64>,
    issued: Vec<u64>,
    inflight: BTreeMap<(usize, u64), T>,
}

impl<T> ClosedLoop<T> {
    /// `total` requests shared by `clients` (the first `total % clients`
    /// clients issue one more).
    pub fn shared(clients: usize, total: u64) -> Self {
        let c = clients as u64;
        let quota = (0..c)
            .map(|i| total / c + u64::from(i < total % c))
            .collect();
        Self::with_quota(quota)
    }

    /// Clients that never run out (fixed-duration runs).
    pub fn unbounded(clients: usize) -> Self {
        Self::with_quota(vec![u64::MAX; clients])
    }

    fn with_quota(quota: Vec<u64>) -> Self {
        ClosedLoop {
            issued: vec![0; quota.len()],
            quota,
            inflight: BTreeMap::new(),
        }
    }

    /// The number of client `c`'s next request, if its quota allows; it is
    /// in flight once [`ClosedLoop::start`]ed.
    pub fn issue(&mut self, c: usize) -> Option<u64> {
        if self.issued[c] >= self.quota[c] {
            return None;
        }
        self.issued[c] += 1;
        Some(self.issued[c])
    }

    /// Request `n` of client `c` is in flight.
    pub fn start(&mut self, c: usize, n: u64, t: T) {
        self.inflight.insert((c, n), t);
    }

    /// Request `n` of client `c` completed; `None` if it was not in flight
    /// (completed twice, or never issued).
    pub fn complete(&mut self, c: usize, n: u64) -> Option<T> {
        self.inflight.remove(&(c, n))
    }

    /// Every client issued its quota and nothing is in flight.
    pub fn done(&self) -> bool {
        self.inflight.is_empty() && self.issued.iter().zip(&self.quota).all(|(i, q)| i >= q)
    }

    /// Requests not completed: in flight or not yet issued.
    pub fn pending(&self) -> u64 {
        let unissued: u64 = self
            .quota
            .iter()
            .zip(&self.issued)
            .map(|(q, i)| q.saturating_sub(*i))
            .fold(0, u64::saturating_add);
        unissued.saturating_add(self.inflight.len() as u64)
    }

    /// Clients that did not complete their quota: (client, requests
    /// completed, quota), where completed means issued and no longer in
    /// flight.
    pub fn unfinished(&self) -> impl Iterator<Item = (usize, u64, u64)> + '_ {
        (0..self.quota.len()).filter_map(|c| {
            let open = self.inflight.range((c, 0)..=(c, u64::MAX)).count() as u64;
            let completed = self.issued[c] - open;
            (completed < self.quota[c]).then_some((c, completed, self.quota[c]))
        })
    }

    /// The requests in flight: ((client, number), what the scenario keeps).
    pub fn in_flight(&self) -> impl Iterator<Item = (&(usize, u64), &T)> {
        self.inflight.iter()
    }
}

/// The simulation nodes of client positions `0..n`: client `c`'s node, and
/// the client at a node.
#[derive(Clone, Debug, Default)]
pub struct ClientNodes {
    nodes: Vec<NodeIdx>,
    by_node: BTreeMap<NodeIdx, usize>,
}

impl ClientNodes {
    /// Client `c` runs at `nodes[c]`.
    pub fn new(nodes: Vec<NodeIdx>) -> Self {
        let by_node = nodes.iter().enumerate().map(|(c, n)| (*n, c)).collect();
        ClientNodes { nodes, by_node }
    }
    /// The client at `node`, if one runs there.
    pub fn at(&self, node: NodeIdx) -> Option<usize> {
        self.by_node.get(&node).copied()
    }
    /// Client `c`'s node.
    pub fn node(&self, c: usize) -> NodeIdx {
        self.nodes[c]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_are_shared_and_completion_is_tracked() {
        let mut l: ClosedLoop<&str> = ClosedLoop::shared(3, 7);
        assert_eq!(l.pending(), 7);
        // client 0 gets 3, clients 1 and 2 get 2
        let ids: Vec<u64> = std::iter::from_fn(|| l.issue(0)).collect();
        assert_eq!(ids, vec![1, 2, 3]);
        assert_eq!(l.issue(1), Some(1));
        l.start(1, 1, "a");
        assert_eq!(l.complete(1, 1), Some("a"));
        assert_eq!(l.complete(1, 1), None, "completed twice");
        assert!(!l.done());
        assert_eq!(l.issue(1), Some(2));
        assert_eq!(l.issue(1), None);
        assert_eq!(l.unfinished().collect::<Vec<_>>(), vec![(2, 0, 2)]);
        for _ in 0..2 {
            l.issue(2);
        }
        assert!(l.done());
        assert_eq!(l.unfinished().count(), 0);
        assert_eq!(l.pending(), 0);
    }

    #[test]
    fn client_nodes_map_both_ways() {
        let nodes = ClientNodes::new(vec![NodeIdx(4), NodeIdx(7)]);
        assert_eq!(nodes.node(1), NodeIdx(7));
        assert_eq!(nodes.at(NodeIdx(4)), Some(0));
        assert_eq!(nodes.at(NodeIdx(5)), None);
    }

    #[test]
    fn unbounded_clients_are_never_done() {
        let mut l: ClosedLoop<()> = ClosedLoop::unbounded(1);
        assert_eq!(l.issue(0), Some(1));
        l.start(0, 1, ());
        assert!(!l.done());
        assert_eq!(l.pending(), u64::MAX, "saturates");
        assert_eq!(l.complete(0, 1), Some(()));
        assert!(!l.done());
    }
}
